//! Client for Postfix's `showq` service (`$queue_directory/public/showq`).
//!
//! The socket is group `postdrop`, so this works without root. Postfix >= 3.0
//! speaks its NUL-separated attribute protocol (`attr_print0`): every
//! attribute is `name\0value\0`, and a list of attributes ends with an empty
//! name (a lone `\0`). From `src/showq/showq.c` (3.x) the stream is:
//!
//! ```text
//! protocol\0mail_queue_list_protocol\0\0     announcement, read first
//! queue_name\0Q\0queue_id\0ID\0time\0T\0size\0S\0forced_expire\0E\0sender\0A\0
//!   (recipient\0R\0reason\0WHY\0)*  \0       one record per message
//! ...
//! \0                                          end of the listing
//! ```
//!
//! `time` is the arrival time from the queue file's `T` record (the file's
//! mtime if there is none); `size` is the message content size from the `S`
//! record (the file size when that record is missing, e.g. in `maildrop`).
//! showq never lists `corrupt`, and skips files that are still being written
//! (mode not yet 0700). Postfix 2.x's showq sent the human `mailq` text
//! instead; that is detected and reported as unsupported.
//!
//! Everything read is bounded ([`ShowqLimits`]); a stream cut short, garbage
//! bytes or an oversized record is a [`ShowqError`], never a panic or a hang.

use crate::snapshot::QueueName;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `MAIL_ATTR_PROTO_SHOWQ` in Postfix's `mail_proto.h`.
const SHOWQ_PROTOCOL: &[u8] = b"mail_queue_list_protocol";

/// Upper bounds on what we accept from showq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowqLimits {
    /// Longest single attribute name or value.
    pub max_string: usize,
    /// Largest record for one message (sender, all recipients and reasons).
    pub max_record: usize,
    /// Largest whole stream.
    pub max_stream: u64,
}

impl Default for ShowqLimits {
    fn default() -> Self {
        ShowqLimits {
            // Addresses and defer reasons are far shorter; this only stops garbage.
            max_string: 64 * 1024,
            // Records are not stored, only counted, so this only has to stop a
            // runaway stream; a message with 100k recipients is ~5 MiB.
            max_record: 16 * 1024 * 1024,
            // ~200 bytes per message: room for millions of queued messages.
            max_stream: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// One message as showq reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowqMessage {
    pub queue: QueueName,
    pub queue_id: String,
    /// Arrival time, seconds since the epoch.
    pub arrival_time: i64,
    /// Message size in bytes.
    pub size: u64,
    pub recipients: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ShowqError {
    #[error("connect to showq socket {path}: {source}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("read from showq: {0}")]
    Io(#[source] io::Error),
    #[error("showq scan exceeded its time budget of {0:?}")]
    Timeout(Duration),
    #[error("showq stream cut short {0}")]
    Truncated(&'static str),
    #[error("showq attribute longer than {limit} bytes (garbage or wrong protocol?)")]
    StringTooLong { limit: usize },
    #[error("showq record for one message larger than {limit} bytes")]
    RecordTooLarge { limit: usize },
    #[error("showq stream larger than {limit} bytes")]
    StreamTooLarge { limit: u64 },
    #[error(
        "showq sent Postfix 2.x text output; only the Postfix >= 3.0 attribute protocol is supported (use method = directory)"
    )]
    TextProtocol,
    #[error("malformed showq response: {0}")]
    Malformed(String),
}

/// Connects to `$queue_directory/public/showq`, reads the whole listing and
/// calls `on_message` for each message.
///
/// The deadline bounds the whole exchange: a showq that stalls makes this
/// return [`ShowqError::Timeout`] at the deadline.
pub fn query_showq(
    queue_directory: &Path,
    deadline: Instant,
    budget: Duration,
    limits: ShowqLimits,
    on_message: impl FnMut(ShowqMessage),
) -> Result<u64, ShowqError> {
    let path = queue_directory.join("public").join("showq");
    let stream = UnixStream::connect(&path).map_err(|source| ShowqError::Connect {
        path: path.clone(),
        source,
    })?;
    let reader = DeadlineReader::new(stream, deadline);
    parse_stream(reader, limits, Some(budget), on_message)
}

/// A read shorter than this means showq writes slower than we read.
const COALESCE_BELOW: usize = 16 * 1024;
/// How long to let showq's output pile up after such a read.
const COALESCE_DELAY: Duration = Duration::from_millis(1);

/// A socket reader that never blocks past `deadline`.
///
/// showq writes each message with its own write(2). A reader that keeps up
/// is woken for every one of them, which costs both processes CPU (for
/// 100 000 messages: tens of thousands of reads on our side, and showq's
/// writes each wake us). So after a short read we wait [`COALESCE_DELAY`]
/// and let the socket buffer fill; showq, the slower side, never waits for
/// us (benches/showq_100k.sh).
struct DeadlineReader {
    stream: UnixStream,
    deadline: Instant,
    last_read_short: bool,
    #[cfg(test)]
    reads: usize,
}

impl DeadlineReader {
    fn new(stream: UnixStream, deadline: Instant) -> DeadlineReader {
        DeadlineReader {
            stream,
            deadline,
            last_read_short: false,
            #[cfg(test)]
            reads: 0,
        }
    }
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.last_read_short {
            let left = self.deadline.saturating_duration_since(Instant::now());
            std::thread::sleep(COALESCE_DELAY.min(left));
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline"));
        }
        self.stream.set_read_timeout(Some(remaining))?;
        #[cfg(test)]
        {
            self.reads += 1;
        }
        match self.stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "deadline"))
            }
            Ok(n) => {
                self.last_read_short = n > 0 && n < COALESCE_BELOW.min(buf.len());
                Ok(n)
            }
            other => other,
        }
    }
}

/// Parses a complete showq stream; returns the number of messages.
///
/// Separate from the socket so it can be tested on byte strings.
pub fn parse_showq_stream<R: Read>(
    input: R,
    limits: ShowqLimits,
    on_message: impl FnMut(ShowqMessage),
) -> Result<u64, ShowqError> {
    parse_stream(input, limits, None, on_message)
}

/// `budget` turns socket timeouts into [`ShowqError::Timeout`].
fn parse_stream<R: Read>(
    input: R,
    limits: ShowqLimits,
    budget: Option<Duration>,
    mut on_message: impl FnMut(ShowqMessage),
) -> Result<u64, ShowqError> {
    let mut parser = Parser {
        input: BufReader::with_capacity(64 * 1024, input),
        limits,
        stream_bytes: 0,
        budget,
    };
    parser.read_announcement()?;
    let mut count = 0u64;
    while let Some(message) = parser.read_message()? {
        count += 1;
        on_message(message);
    }
    Ok(count)
}

fn map_timeout(e: io::Error, budget: Option<Duration>) -> ShowqError {
    match (e.kind(), budget) {
        (io::ErrorKind::TimedOut, Some(b)) => ShowqError::Timeout(b),
        _ => ShowqError::Io(e),
    }
}

struct Parser<R: Read> {
    input: BufReader<R>,
    limits: ShowqLimits,
    stream_bytes: u64,
    budget: Option<Duration>,
}

impl<R: Read> Parser<R> {
    /// Reads one NUL-terminated string. `Ok(None)` at a clean end of stream
    /// (no bytes before EOF).
    fn read_string(&mut self, buf: &mut Vec<u8>) -> Result<Option<()>, ShowqError> {
        buf.clear();
        loop {
            let available = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(map_timeout(e, self.budget)),
            };
            if available.is_empty() {
                if buf.is_empty() {
                    return Ok(None);
                }
                return Err(ShowqError::Truncated("inside an attribute"));
            }
            let (chunk, done) = match memchr::memchr(0, available) {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            if buf.len() + chunk.len() > self.limits.max_string {
                return Err(ShowqError::StringTooLong {
                    limit: self.limits.max_string,
                });
            }
            buf.extend_from_slice(chunk);
            let consumed = done.unwrap_or(chunk.len());
            self.input.consume(consumed);
            self.stream_bytes += consumed as u64;
            if self.stream_bytes > self.limits.max_stream {
                return Err(ShowqError::StreamTooLarge {
                    limit: self.limits.max_stream,
                });
            }
            if done.is_some() {
                return Ok(Some(()));
            }
        }
    }

    fn read_announcement(&mut self) -> Result<(), ShowqError> {
        // Postfix 2.x showq writes text such as "-Queue ID- ..." or
        // "Mail queue is empty"; recognise it before treating bytes as attributes.
        if let Ok(peek) = self.input.fill_buf() {
            if peek.starts_with(b"-Queue ID-") || peek.starts_with(b"Mail queue is empty") {
                return Err(ShowqError::TextProtocol);
            }
        }
        let mut name = Vec::new();
        let mut value = Vec::new();
        if self.read_string(&mut name)?.is_none() {
            return Err(ShowqError::Truncated("before the protocol announcement"));
        }
        if name != b"protocol" {
            return Err(ShowqError::Malformed(format!(
                "expected protocol announcement, got attribute {:?}",
                printable(&name)
            )));
        }
        if self.read_string(&mut value)?.is_none() {
            return Err(ShowqError::Truncated("inside the protocol announcement"));
        }
        if value != SHOWQ_PROTOCOL {
            return Err(ShowqError::Malformed(format!(
                "expected protocol mail_queue_list_protocol, got {:?}",
                printable(&value)
            )));
        }
        if self.read_string(&mut name)?.is_none() {
            return Err(ShowqError::Truncated("after the protocol announcement"));
        }
        if !name.is_empty() {
            return Err(ShowqError::Malformed(format!(
                "unexpected attribute {:?} in the protocol announcement",
                printable(&name)
            )));
        }
        Ok(())
    }

    /// Reads one message record; `Ok(None)` at the end-of-listing marker.
    fn read_message(&mut self) -> Result<Option<ShowqMessage>, ShowqError> {
        let mut name = Vec::new();
        let mut value = Vec::new();
        let record_start = self.stream_bytes;
        if self.read_string(&mut name)?.is_none() {
            return Err(ShowqError::Truncated("before the end-of-listing marker"));
        }
        if name.is_empty() {
            // End of listing. showq closes the connection after it; anything
            // more would be a protocol violation, but it is harmless to us.
            return Ok(None);
        }
        if name != b"queue_name" {
            return Err(ShowqError::Malformed(format!(
                "message record starts with {:?}, expected queue_name",
                printable(&name)
            )));
        }
        let mut queue: Option<QueueName> = None;
        let mut queue_id: Option<String> = None;
        let mut arrival_time: Option<i64> = None;
        let mut size: Option<u64> = None;
        let mut recipients = 0u64;
        loop {
            if self.read_string(&mut value)?.is_none() {
                return Err(ShowqError::Truncated("inside a message record"));
            }
            match name.as_slice() {
                b"queue_name" => {
                    let text = utf8(&value, "queue_name")?;
                    queue = Some(QueueName::from_name(text).ok_or_else(|| {
                        ShowqError::Malformed(format!("unknown queue name {text:?}"))
                    })?);
                }
                b"queue_id" => queue_id = Some(utf8(&value, "queue_id")?.to_owned()),
                b"time" => arrival_time = Some(parse_number(&value, "time")?),
                b"size" => {
                    let n: i64 = parse_number(&value, "size")?;
                    size = Some(u64::try_from(n).map_err(|_| {
                        ShowqError::Malformed(format!("negative message size {n}"))
                    })?);
                }
                b"recipient" => recipients += 1,
                // sender, reason, forced_expire and anything newer Postfix adds.
                _ => {}
            }
            if self.stream_bytes - record_start > self.limits.max_record as u64 {
                return Err(ShowqError::RecordTooLarge {
                    limit: self.limits.max_record,
                });
            }
            if self.read_string(&mut name)?.is_none() {
                return Err(ShowqError::Truncated("inside a message record"));
            }
            if name.is_empty() {
                break;
            }
        }
        let missing = |what: &str| ShowqError::Malformed(format!("message record without {what}"));
        Ok(Some(ShowqMessage {
            queue: queue.ok_or_else(|| missing("queue_name"))?,
            queue_id: queue_id.ok_or_else(|| missing("queue_id"))?,
            arrival_time: arrival_time.ok_or_else(|| missing("time"))?,
            size: size.ok_or_else(|| missing("size"))?,
            recipients,
        }))
    }
}

fn utf8<'a>(value: &'a [u8], what: &str) -> Result<&'a str, ShowqError> {
    std::str::from_utf8(value)
        .map_err(|_| ShowqError::Malformed(format!("{what} is not UTF-8: {:?}", printable(value))))
}

fn parse_number(value: &[u8], what: &str) -> Result<i64, ShowqError> {
    let text = utf8(value, what)?;
    text.parse::<i64>()
        .map_err(|_| ShowqError::Malformed(format!("{what} is not a number: {text:?}")))
}

/// At most 64 bytes of `bytes`, lossily decoded, for error messages.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(out: &mut Vec<u8>, name: &str, value: &str) {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }

    fn announcement() -> Vec<u8> {
        let mut out = Vec::new();
        attr(&mut out, "protocol", "mail_queue_list_protocol");
        out.push(0);
        out
    }

    fn message(out: &mut Vec<u8>, queue: &str, id: &str, time: i64, size: u64, rcpts: usize) {
        attr(out, "queue_name", queue);
        attr(out, "queue_id", id);
        attr(out, "time", &time.to_string());
        attr(out, "size", &size.to_string());
        attr(out, "forced_expire", "0");
        attr(out, "sender", "a@example.org");
        for i in 0..rcpts {
            attr(out, "recipient", &format!("r{i}@example.net"));
            attr(out, "reason", "");
        }
        out.push(0);
    }

    fn parse(bytes: &[u8]) -> Result<Vec<ShowqMessage>, ShowqError> {
        parse_with(bytes, ShowqLimits::default())
    }

    fn parse_with(bytes: &[u8], limits: ShowqLimits) -> Result<Vec<ShowqMessage>, ShowqError> {
        let mut messages = Vec::new();
        parse_showq_stream(bytes, limits, |m| messages.push(m))?;
        Ok(messages)
    }

    #[test]
    fn empty_queue() {
        let mut s = announcement();
        s.push(0);
        assert_eq!(parse(&s).unwrap(), vec![]);
    }

    #[test]
    fn messages_in_several_queues() {
        let mut s = announcement();
        message(&mut s, "active", "4ABC", 1_700_000_000, 1234, 2);
        message(&mut s, "deferred", "5DEF", 1_600_000_000, 99, 1);
        message(&mut s, "hold", "6F0", 1_650_000_000, 0, 0);
        s.push(0);
        let m = parse(&s).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].queue, QueueName::Active);
        assert_eq!(m[0].queue_id, "4ABC");
        assert_eq!(m[0].arrival_time, 1_700_000_000);
        assert_eq!(m[0].size, 1234);
        assert_eq!(m[0].recipients, 2);
        assert_eq!(m[1].queue, QueueName::Deferred);
        assert_eq!(m[2].queue, QueueName::Hold);
        assert_eq!(m[2].recipients, 0);
    }

    #[test]
    fn unknown_attributes_are_ignored() {
        let mut s = announcement();
        attr(&mut s, "queue_name", "incoming");
        attr(&mut s, "queue_id", "ABC");
        attr(&mut s, "future_attribute", "whatever");
        attr(&mut s, "time", "5");
        attr(&mut s, "size", "6");
        s.push(0);
        s.push(0);
        let m = parse(&s).unwrap();
        assert_eq!(m[0].queue, QueueName::Incoming);
        assert_eq!(m[0].size, 6);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut s = announcement();
        message(&mut s, "active", "4ABC", 1_700_000_000, 1234, 2);
        message(&mut s, "deferred", "5DEF", 1_600_000_000, 99, 1);
        s.push(0);
        for cut in 0..s.len() {
            let r = parse(&s[..cut]);
            assert!(
                matches!(r, Err(ShowqError::Truncated(_))),
                "cut at {cut}: {r:?}"
            );
        }
        assert!(parse(&s).is_ok());
    }

    #[test]
    fn garbage_bytes_are_errors() {
        for garbage in [
            &b"\xff\xfe\xfd garbage without any nul"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"protocol\0smtp\0\0\0",
            b"protocol\0showq\0\0\0",
            b"protocol\0mail_queue_list_protocol\0extra\0x\0\0\0",
            b"protocol\0mail_queue_list_protocol\0\0sender\0x\0\0\0",
            b"protocol\0mail_queue_list_protocol\0\0queue_name\0nosuchqueue\0\0\0",
            b"protocol\0mail_queue_list_protocol\0\0queue_name\0active\0queue_id\0A\0time\0soon\0size\x001\0\0\0",
            b"protocol\0mail_queue_list_protocol\0\0queue_name\0active\0queue_id\0A\0time\x001\0size\0-5\0\0\0",
            b"protocol\0mail_queue_list_protocol\0\0queue_name\0active\0time\x001\0size\x001\0\0\0",
            b"protocol\0mail_queue_list_protocol\0\0queue_name\0\xff\0\0\0",
        ] {
            let r = parse(garbage);
            assert!(r.is_err(), "{garbage:?} parsed as {r:?}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small xorshift generator: deterministic, no extra dependency.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..2000usize {
            let mut bytes = announcement();
            for _ in 0..len % 200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Bias towards NULs so that records actually get parsed.
                let b = (x & 0xff) as u8;
                bytes.push(if b < 64 { 0 } else { b });
            }
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn oversized_string_is_rejected() {
        let mut s = announcement();
        attr(&mut s, "queue_name", "active");
        attr(&mut s, "queue_id", &"A".repeat(100_000));
        let r = parse(&s);
        assert!(matches!(r, Err(ShowqError::StringTooLong { .. })), "{r:?}");
    }

    #[test]
    fn oversized_record_is_rejected() {
        let mut s = announcement();
        message(&mut s, "active", "4ABC", 1, 1, 10_000);
        s.push(0);
        let limits = ShowqLimits {
            max_record: 100_000,
            ..ShowqLimits::default()
        };
        let r = parse_with(&s, limits);
        assert!(matches!(r, Err(ShowqError::RecordTooLarge { .. })), "{r:?}");
        // The same stream is fine with the default record limit.
        assert_eq!(parse(&s).unwrap()[0].recipients, 10_000);
    }

    #[test]
    fn oversized_stream_is_rejected() {
        let mut s = announcement();
        for i in 0..100 {
            message(&mut s, "deferred", &format!("ID{i}"), 1, 1, 1);
        }
        s.push(0);
        let limits = ShowqLimits {
            max_stream: 1000,
            ..ShowqLimits::default()
        };
        let r = parse_with(&s, limits);
        assert!(matches!(r, Err(ShowqError::StreamTooLarge { .. })), "{r:?}");
    }

    #[test]
    fn postfix2_text_output_is_recognised() {
        let r = parse(b"Mail queue is empty\n");
        assert!(matches!(r, Err(ShowqError::TextProtocol)), "{r:?}");
        let r = parse(b"-Queue ID- --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
        assert!(matches!(r, Err(ShowqError::TextProtocol)), "{r:?}");
    }

    #[test]
    fn stalled_socket_times_out() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let budget = Duration::from_millis(200);
        let reader = DeadlineReader::new(ours, Instant::now() + budget);
        let started = Instant::now();
        let r = parse_stream(reader, ShowqLimits::default(), Some(budget), |_| {});
        assert!(matches!(r, Err(ShowqError::Timeout(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(theirs);
    }

    #[test]
    fn trickling_socket_times_out_near_the_deadline() {
        // Bytes keep arriving, so no single read times out: the deadline
        // must still end the listing.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = theirs.write_all(&announcement());
            let _ = theirs.write_all(b"queue_name\0active\0queue_id\0");
            for _ in 0..300 {
                if theirs.write_all(b"A").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let budget = Duration::from_millis(300);
        let started = Instant::now();
        let reader = DeadlineReader::new(ours, started + budget);
        let r = parse_stream(reader, ShowqLimits::default(), Some(budget), |_| {});
        let took = started.elapsed();
        assert!(matches!(r, Err(ShowqError::Timeout(_))), "{r:?}");
        assert!(took >= budget, "{took:?}");
        // Well before the writer stops (300 bytes, 5 ms apart).
        assert!(took < budget + Duration::from_millis(700), "{took:?}");
        drop(r);
        writer.join().unwrap();
    }

    #[test]
    fn a_listing_written_message_by_message_is_read_in_batches() {
        // Like showq: one write per message, a little slower than we read.
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            theirs.write_all(&announcement()).unwrap();
            for i in 0..2000 {
                let mut m = Vec::new();
                message(&mut m, "deferred", &format!("ID{i}"), 1, 100, 1);
                theirs.write_all(&m).unwrap();
                std::thread::sleep(Duration::from_micros(50));
            }
            theirs.write_all(&[0]).unwrap();
        });
        let mut reader = DeadlineReader::new(ours, Instant::now() + Duration::from_secs(30));
        let mut count = 0;
        let r = parse_stream(&mut reader, ShowqLimits::default(), None, |_| count += 1);
        writer.join().unwrap();
        assert_eq!(r.unwrap(), 2000);
        assert_eq!(count, 2000);
        // One read per write without the pause after short reads.
        assert!(reader.reads < 1000, "{} reads", reader.reads);
    }
}
