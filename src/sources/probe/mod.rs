//! Probes: SMTP availability and mail round trips through IMAP or POP3.
//!
//! A probe run is blocking code on its caller's thread: every read and write
//! is bounded by a deadline and by size limits, and polls a cancel flag
//! (shutdown) at least every 250 ms. Nothing here knows about SNMP.

pub mod imap;
pub mod pop3;
pub mod rows;
pub mod settings;
pub mod smtp;
pub mod tls;

use rustls::StreamOwned;
use settings::{ProbeCheck, ProbeSettings, RoundTrip, TlsMode};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tls::{ServedCert, TlsParams};

/// Set when the agent shuts down; a running probe gives up promptly.
pub type Cancel = Arc<AtomicBool>;

/// Longest server line the line protocols (SMTP, POP3 status lines) may send.
pub const MAX_LINE: usize = 4096;
/// Most lines in one SMTP reply.
pub const MAX_REPLY_LINES: usize = 100;
/// Largest IMAP response or POP3 multi-line response we read.
pub const MAX_RESPONSE: usize = 1024 * 1024;
/// Longest reason kept in the probe table.
const MAX_REASON: usize = 200;

/// Why a run did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    /// The deadline passed (status `timeout`) rather than a definite failure.
    pub timeout: bool,
    pub reason: String,
}

impl ProbeFailure {
    pub fn failed(reason: impl Into<String>) -> ProbeFailure {
        ProbeFailure {
            timeout: false,
            reason: shorten(reason.into()),
        }
    }

    pub fn timeout(reason: impl Into<String>) -> ProbeFailure {
        ProbeFailure {
            timeout: true,
            reason: shorten(reason.into()),
        }
    }

    /// The same failure with `prefix: ` in front (which leg of a round trip).
    pub fn context(self, prefix: &str) -> ProbeFailure {
        ProbeFailure {
            timeout: self.timeout,
            reason: shorten(format!("{prefix}: {}", self.reason)),
        }
    }
}

fn shorten(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct ProbeOutcome {
    pub result: Result<(), ProbeFailure>,
    /// Whole run (for round trips: from sending to finding the message).
    pub latency: Duration,
    /// SMTP probes: connect to complete banner.
    pub banner: Option<Duration>,
    /// The leaf certificate (DER) a TLS server presented in this run.
    pub served_cert: Option<Vec<u8>>,
}

/// Runs `probe` once.
pub fn run(probe: &ProbeSettings, cancel: &Cancel) -> ProbeOutcome {
    let served = ServedCert::default();
    let start = Instant::now();
    let mut banner = None;
    let result = match &probe.check {
        ProbeCheck::Smtp => smtp::probe(probe, cancel, &served, &mut banner),
        ProbeCheck::ImapRoundtrip(rt) => {
            round_trip(probe, rt, Mailbox::Imap, cancel, &served, start)
        }
        ProbeCheck::Pop3Roundtrip(rt) => {
            round_trip(probe, rt, Mailbox::Pop3, cancel, &served, start)
        }
    };
    let latency = match &result {
        Ok(d) => *d,
        Err(_) => start.elapsed(),
    };
    let served_cert = served.lock().ok().and_then(|s| s.clone());
    ProbeOutcome {
        result: result.map(|_| ()),
        latency,
        banner,
        served_cert,
    }
}

/// The Subject prefix that marks this probe's messages (and its leftovers).
pub fn subject_prefix(probe_name: &str) -> String {
    format!("[postfix-agentx probe {probe_name}]")
}

/// A token no earlier run used: pid, time and a counter.
fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}.{:x}.{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where a round trip looks for its message.
#[derive(Clone, Copy)]
enum Mailbox {
    Imap,
    Pop3,
}

/// Sends a message, then polls the mailbox until it shows up; returns the
/// time from the start of the send to finding it.
fn round_trip(
    probe: &ProbeSettings,
    rt: &RoundTrip,
    mailbox: Mailbox,
    cancel: &Cancel,
    served: &ServedCert,
    start: Instant,
) -> Result<Duration, ProbeFailure> {
    let token = unique_token();
    let prefix = subject_prefix(&probe.name);
    smtp::send_probe_message(probe, rt, cancel, &prefix, &token).map_err(|e| e.context("SMTP"))?;
    let wait = rt.wait;
    let give_up = Instant::now() + wait;
    let (leg, folder) = match mailbox {
        Mailbox::Imap => ("IMAP", rt.mailbox.clone()),
        Mailbox::Pop3 => ("POP3", "the POP3 mailbox".to_string()),
    };
    let mut pause = Duration::from_millis(250);
    loop {
        let deadline = Instant::now() + probe.timeout;
        let found = match mailbox {
            Mailbox::Imap => imap::poll(probe, rt, deadline, cancel, served, &prefix, &token),
            Mailbox::Pop3 => pop3::poll(probe, rt, deadline, cancel, served, &prefix, &token),
        }
        .map_err(|e| e.context(leg))?;
        if found {
            return Ok(start.elapsed());
        }
        if Instant::now() >= give_up {
            return Err(ProbeFailure::failed(format!(
                "message not found in {folder} after {} s",
                wait.as_secs()
            )));
        }
        if !sleep_unless_cancelled(pause.min(give_up - Instant::now()), cancel) {
            return Err(ProbeFailure::failed("agent shutting down"));
        }
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

fn sleep_unless_cancelled(d: Duration, cancel: &Cancel) -> bool {
    let end = Instant::now() + d;
    while !cancel.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
    false
}

/// TLS settings of a connection to `target` for `probe`.
pub fn tls_params(probe: &ProbeSettings, target: &str) -> TlsParams {
    TlsParams {
        server_name: probe
            .tls_server_name
            .clone()
            .unwrap_or_else(|| tls::host_of(target).to_string()),
        verify: probe.tls_verify,
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<rustls::ClientConnection, TcpStream>>),
    Closed,
}

/// A client connection with a deadline, size-limited reads and STARTTLS.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    deadline: Instant,
    cancel: Cancel,
}

impl Conn {
    /// Connects to `target` (host:port) before `deadline`.
    pub fn connect(target: &str, deadline: Instant, cancel: &Cancel) -> Result<Conn, ProbeFailure> {
        let addrs = resolve(target, deadline)?;
        let mut last = ProbeFailure::failed(format!("{target} resolves to no address"));
        for addr in addrs {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ProbeFailure::timeout("connect timed out"));
            }
            match TcpStream::connect_timeout(&addr, remaining) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Conn {
                        stream: Stream::Plain(stream),
                        buf: Vec::new(),
                        deadline,
                        cancel: Arc::clone(cancel),
                    });
                }
                Err(e) => last = io_failure(&e, "connecting"),
            }
        }
        Err(last)
    }

    /// Connects and, for implicit TLS, completes the handshake.
    pub fn open(
        target: &str,
        mode: TlsMode,
        params: &TlsParams,
        served: &ServedCert,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Result<Conn, ProbeFailure> {
        let mut conn = Conn::connect(target, deadline, cancel)?;
        if mode == TlsMode::Implicit {
            conn.start_tls(params, served)?;
        }
        Ok(conn)
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match &self.stream {
            Stream::Plain(s) => Some(s),
            Stream::Tls(t) => Some(&t.sock),
            Stream::Closed => None,
        }
    }

    /// Time left, or the failure to report when none is.
    fn slice(&self, what: &str) -> Result<Duration, ProbeFailure> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(ProbeFailure::failed("agent shutting down"));
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ProbeFailure::timeout(format!("timed out {what}")));
        }
        Ok(remaining.min(Duration::from_millis(250)))
    }

    fn fill(&mut self, what: &str) -> Result<(), ProbeFailure> {
        let mut chunk = [0u8; 8192];
        loop {
            let slice = self.slice(what)?;
            let tcp = self
                .tcp()
                .ok_or_else(|| ProbeFailure::failed("connection already closed"))?;
            tcp.set_read_timeout(Some(slice))
                .map_err(|e| io_failure(&e, what))?;
            let read = match &mut self.stream {
                Stream::Plain(s) => s.read(&mut chunk),
                Stream::Tls(t) => t.read(&mut chunk),
                Stream::Closed => return Err(ProbeFailure::failed("connection already closed")),
            };
            match read {
                Ok(0) => {
                    return Err(ProbeFailure::failed(format!(
                        "connection closed by the server {what}"
                    )))
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if is_retry(&e) => continue,
                Err(e) => return Err(io_failure(&e, what)),
            }
        }
    }

    /// One line without its CR LF; longer than `max` bytes is a failure.
    pub fn read_line(&mut self, max: usize, what: &str) -> Result<Vec<u8>, ProbeFailure> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf) {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max {
                    return Err(ProbeFailure::failed(format!(
                        "server line longer than {max} bytes {what}"
                    )));
                }
                return Ok(line);
            }
            if self.buf.len() > max + 1 {
                return Err(ProbeFailure::failed(format!(
                    "server line longer than {max} bytes {what}"
                )));
            }
            self.fill(what)?;
        }
    }

    /// Exactly `n` bytes (an IMAP literal).
    pub fn read_exact(&mut self, n: usize, what: &str) -> Result<Vec<u8>, ProbeFailure> {
        while self.buf.len() < n {
            self.fill(what)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    pub fn send(&mut self, data: &[u8], what: &str) -> Result<(), ProbeFailure> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ProbeFailure::timeout(format!("timed out {what}")));
        }
        if let Some(tcp) = self.tcp() {
            tcp.set_write_timeout(Some(remaining))
                .map_err(|e| io_failure(&e, what))?;
        }
        let result = match &mut self.stream {
            Stream::Plain(s) => s.write_all(data).and_then(|_| s.flush()),
            Stream::Tls(t) => t.write_all(data).and_then(|_| t.flush()),
            Stream::Closed => return Err(ProbeFailure::failed("connection already closed")),
        };
        result.map_err(|e| io_failure(&e, what))
    }

    /// Upgrades a plain connection (after the server accepted STARTTLS/STLS).
    pub fn start_tls(
        &mut self,
        params: &TlsParams,
        served: &ServedCert,
    ) -> Result<(), ProbeFailure> {
        if !self.buf.is_empty() {
            // Bytes sent before the handshake would be read as if they came
            // over TLS (the STARTTLS command injection of CVE-2011-0411).
            return Err(ProbeFailure::failed(
                "server sent data before the TLS handshake",
            ));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(ProbeFailure::failed("TLS already started"));
        };
        let conn = tls::client(params, served).map_err(ProbeFailure::failed)?;
        let mut tls = Box::new(StreamOwned::new(conn, tcp));
        while tls.conn.is_handshaking() {
            let slice = self.slice("in the TLS handshake")?;
            tls.sock
                .set_read_timeout(Some(slice))
                .and_then(|_| tls.sock.set_write_timeout(Some(slice)))
                .map_err(|e| io_failure(&e, "in the TLS handshake"))?;
            match tls.conn.complete_io(&mut tls.sock) {
                Ok(_) => {}
                Err(e) if is_retry(&e) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(ProbeFailure::failed(
                        "TLS handshake failed: connection closed by the server",
                    ))
                }
                Err(e) => return Err(ProbeFailure::failed(format!("TLS handshake failed: {e}"))),
            }
        }
        self.stream = Stream::Tls(tls);
        Ok(())
    }
}

/// Resolves `target` before `deadline`. The system resolver cannot be
/// interrupted, so a name lookup runs on a helper thread that is abandoned
/// (and ends on its own) when the deadline passes.
fn resolve(target: &str, deadline: Instant) -> Result<Vec<SocketAddr>, ProbeFailure> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = target.to_string();
    std::thread::Builder::new()
        .name("probe-resolve".to_string())
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        })
        .map_err(|e| ProbeFailure::failed(format!("cannot start a resolver thread: {e}")))?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(remaining) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(ProbeFailure::failed(format!(
            "cannot resolve {target}: {e}"
        ))),
        Err(_) => Err(ProbeFailure::timeout(format!(
            "timed out resolving {target}"
        ))),
    }
}

fn is_retry(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// A short, stable reason for an I/O error.
fn io_failure(e: &std::io::Error, what: &str) -> ProbeFailure {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => ProbeFailure::failed("connection refused"),
        K::TimedOut | K::WouldBlock => ProbeFailure::timeout(format!("timed out {what}")),
        K::ConnectionReset => {
            ProbeFailure::failed(format!("connection reset by the server {what}"))
        }
        K::BrokenPipe => ProbeFailure::failed(format!("connection closed by the server {what}")),
        K::UnexpectedEof => ProbeFailure::failed(format!("connection closed by the server {what}")),
        _ => ProbeFailure::failed(format!("{what}: {e}")),
    }
}

/// RFC 4648 base64 (AUTH PLAIN); small enough not to need a crate.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// For the protocol modules' tests: a connection to a one-shot local server
/// that sends `data` and then waits.
#[cfg(test)]
pub(crate) fn test_conn_to(data: Vec<u8>) -> (Conn, std::thread::JoinHandle<()>) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let h = std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(&data);
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    });
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    (
        Conn::connect(&addr, deadline, &Cancel::default()).expect("connect"),
        h,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn reasons_are_shortened_on_a_char_boundary() {
        let f = ProbeFailure::failed("é".repeat(300));
        assert!(f.reason.len() <= MAX_REASON);
        assert!(f.reason.ends_with("..."));
    }

    fn server(reply: &'static [u8]) -> (String, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let _ = s.write_all(reply);
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        (addr, h)
    }

    #[test]
    fn lines_are_split_and_limited() {
        let (addr, h) = server(b"one\r\ntwo\n0123456789ABCDEF\r\n");
        let cancel = Cancel::default();
        let mut c = Conn::connect(&addr, Instant::now() + Duration::from_secs(5), &cancel).unwrap();
        assert_eq!(c.read_line(10, "t").unwrap(), b"one");
        assert_eq!(c.read_line(10, "t").unwrap(), b"two");
        let err = c.read_line(10, "t").unwrap_err();
        assert!(err.reason.contains("longer than 10"), "{err:?}");
        h.join().unwrap();
    }

    #[test]
    fn closed_connection_and_deadline_are_reported() {
        let (addr, h) = server(b"partial");
        let cancel = Cancel::default();
        let mut c = Conn::connect(&addr, Instant::now() + Duration::from_secs(5), &cancel).unwrap();
        let err = c.read_line(100, "waiting for the banner").unwrap_err();
        assert!(!err.timeout);
        assert_eq!(
            err.reason,
            "connection closed by the server waiting for the banner"
        );
        h.join().unwrap();

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let mut c =
            Conn::connect(&addr, Instant::now() + Duration::from_millis(400), &cancel).unwrap();
        let err = c.read_line(100, "waiting for the banner").unwrap_err();
        assert!(err.timeout, "{err:?}");
        drop(l);
    }

    #[test]
    fn names_resolve_and_bad_names_fail() {
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(!resolve("localhost:25", deadline).unwrap().is_empty());
        assert_eq!(resolve("127.0.0.1:25", deadline).unwrap().len(), 1);
        let err = resolve("no-such-host.invalid:25", deadline).unwrap_err();
        assert!(err.reason.contains("no-such-host.invalid"), "{err:?}");
    }

    #[test]
    fn refused_connection_is_named() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = Conn::connect(
            &format!("127.0.0.1:{port}"),
            Instant::now() + Duration::from_secs(2),
            &Cancel::default(),
        )
        .err()
        .unwrap();
        assert_eq!(err.reason, "connection refused");
    }
}
