//! The systemd journal as a log source (Debian 12 can log Postfix only there).
//!
//! Runs `journalctl --output=export` (no shell) and turns each entry into a
//! syslog-style line, so the same parser counts journal and file input:
//! `2026-11-29T13:44:00.123456+00:00 HOST IDENT[PID]: MESSAGE` (RFC 3339, the
//! format of Debian 12's rsyslog) or `Nov 29 13:44:00 HOST IDENT[PID]: MESSAGE`.
//!
//! Which entries: journalctl match arguments (`JournalConfig::matches`,
//! default `SYSLOG_FACILITY=2`, the mail facility Postfix logs to), then our
//! own filter on `SYSLOG_IDENTIFIER` prefixes (default `postfix`, which also
//! covers `postfix-out/smtp` of a second instance). A journal match on
//! `SYSLOG_IDENTIFIER` would be exact (`postfix/smtpd` only), hence the prefix.
//!
//! Resuming: every entry carries a cursor; [`JournalFollower::cursor`] is the
//! cursor of the last entry processed (delivered or filtered out) and is
//! passed back as `--after-cursor` after a restart, of the agent or of
//! journalctl. A malformed saved cursor makes journalctl fail; then the cursor
//! is dropped and reading starts at the end (nothing counted twice; what was
//! logged while the agent was down is lost, and an event says so).
//!
//! Blocking model: `poll` never blocks (non-blocking pipe); `wait` blocks in
//! poll(2) on journalctl's output. Same shape as [`super::follow::LogFollower`].
//!
//! `--follow` implies "current boot only" in journalctl unless `--merge` is
//! given, which would skip entries of the previous boot after the saved
//! cursor; so the system journal is read with `--merge` restricted to this
//! machine (`_MACHINE_ID=` from /etc/machine-id), and journal files or
//! directories (tests, exported journals) with `--merge`.

use super::follow::{LineSink, StartFrom};
use super::switch::{CatchUp, Mark};
use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalSource {
    /// The local system journal.
    System,
    /// `--file=PATH` for each.
    Files(Vec<PathBuf>),
    /// `--directory=PATH`.
    Directory(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampStyle {
    /// `2026-11-29T13:44:00.123456+00:00` in the local time zone.
    Rfc3339,
    /// `Nov 29 13:44:00` in the local time zone.
    Traditional,
}

#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub journalctl: PathBuf,
    pub source: JournalSource,
    /// journalctl match arguments (`FIELD=VALUE`); different fields are ANDed.
    pub matches: Vec<String>,
    /// Keep entries whose SYSLOG_IDENTIFIER (or _COMM) starts with one of
    /// these; empty keeps everything.
    pub identifier_prefixes: Vec<String>,
    pub timestamp: TimestampStyle,
    /// Keep reading new entries (`--follow`); otherwise stop at the end.
    pub follow: bool,
    /// Delay before journalctl is started again after it exited.
    pub restart_delay: Duration,
    /// MESSAGE is cut to this many bytes.
    pub max_message_bytes: usize,
    /// One `poll` processes at most this many bytes of journalctl output.
    pub max_bytes_per_poll: usize,
}

impl JournalConfig {
    pub fn new(source: JournalSource) -> JournalConfig {
        JournalConfig {
            journalctl: PathBuf::from("journalctl"),
            source,
            matches: vec!["SYSLOG_FACILITY=2".into()],
            identifier_prefixes: vec!["postfix".into()],
            timestamp: TimestampStyle::Rfc3339,
            follow: true,
            restart_delay: Duration::from_secs(5),
            max_message_bytes: 64 * 1024,
            max_bytes_per_poll: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalEvent {
    /// journalctl was started with these arguments.
    Started { args: Vec<String> },
    /// journalctl ended; `stderr` holds the end of what it said.
    Exited { status: String, stderr: String },
    /// Something went wrong; meant for humans.
    Error { message: String },
    /// The saved cursor was rejected: reading restarts at the end of the journal.
    CursorDropped { cursor: String },
}

impl JournalEvent {
    /// Worth a warning in the agent's log: entries may go uncounted.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            JournalEvent::Error { .. } | JournalEvent::CursorDropped { .. }
        )
    }
}

impl fmt::Display for JournalEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalEvent::Started { args } => write!(f, "started journalctl {}", args.join(" ")),
            JournalEvent::Exited { status, stderr } if stderr.is_empty() => {
                write!(f, "journalctl exited ({status})")
            }
            JournalEvent::Exited { status, stderr } => {
                write!(f, "journalctl exited ({status}): {stderr}")
            }
            JournalEvent::Error { message } => f.write_str(message),
            JournalEvent::CursorDropped { cursor } => write!(
                f,
                "journalctl rejected the saved cursor {cursor:?}; reading from the end of the journal, entries logged while the agent was stopped are not counted"
            ),
        }
    }
}

#[derive(Debug, Default)]
pub struct JournalPoll {
    /// Entries read (matching or not).
    pub entries: u64,
    /// Lines delivered to the sink.
    pub lines: u64,
    /// More output is waiting: poll again before `wait`.
    pub more: bool,
    /// Not following, and journalctl has printed everything.
    pub finished: bool,
    pub events: Vec<JournalEvent>,
}

/// Fields of an export-format entry that we use.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Entry {
    cursor: Option<Vec<u8>>,
    realtime_us: Option<Vec<u8>>,
    hostname: Option<Vec<u8>>,
    identifier: Option<Vec<u8>>,
    comm: Option<Vec<u8>>,
    syslog_pid: Option<Vec<u8>>,
    pid: Option<Vec<u8>>,
    message: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Cursor,
    Realtime,
    Hostname,
    Identifier,
    Comm,
    SyslogPid,
    Pid,
    Message,
    Ignored,
}

impl Field {
    fn from_name(name: &[u8]) -> Field {
        match name {
            b"__CURSOR" => Field::Cursor,
            b"__REALTIME_TIMESTAMP" => Field::Realtime,
            b"_HOSTNAME" => Field::Hostname,
            b"SYSLOG_IDENTIFIER" => Field::Identifier,
            b"_COMM" => Field::Comm,
            b"SYSLOG_PID" => Field::SyslogPid,
            b"_PID" => Field::Pid,
            b"MESSAGE" => Field::Message,
            _ => Field::Ignored,
        }
    }
}

impl Entry {
    fn slot(&mut self, field: Field) -> Option<&mut Option<Vec<u8>>> {
        match field {
            Field::Cursor => Some(&mut self.cursor),
            Field::Realtime => Some(&mut self.realtime_us),
            Field::Hostname => Some(&mut self.hostname),
            Field::Identifier => Some(&mut self.identifier),
            Field::Comm => Some(&mut self.comm),
            Field::SyslogPid => Some(&mut self.syslog_pid),
            Field::Pid => Some(&mut self.pid),
            Field::Message => Some(&mut self.message),
            Field::Ignored => None,
        }
    }

    /// Starts a field's value; false if the field is not kept (unknown, or
    /// seen before in this entry: the first value wins, as with `journalctl -o short`).
    fn begin(&mut self, field: Field) -> bool {
        match self.slot(field) {
            Some(slot) if slot.is_none() => {
                *slot = Some(Vec::new());
                true
            }
            _ => false,
        }
    }

    /// Appends to a field, keeping at most `cap` bytes.
    fn push(&mut self, field: Field, bytes: &[u8], cap: usize) {
        if let Some(Some(value)) = self.slot(field) {
            let keep = cap.saturating_sub(value.len()).min(bytes.len());
            value.extend_from_slice(&bytes[..keep]);
        }
    }
}

/// Incremental parser of journalctl's export format: `NAME=value\n` for text
/// fields, `NAME\n` + little-endian u64 length + bytes + `\n` for binary
/// ones, a blank line after each entry. Memory per entry is bounded by the
/// caps on kept fields; other fields are skipped as they stream by.
#[derive(Debug)]
struct ExportParser {
    state: ParseState,
    entry: Entry,
    cap: usize,
    /// Whether the value being read is kept (see `Entry::begin`).
    keeping: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParseState {
    LineStart,
    /// Inside a text value (after `=`) that did not fit in one read.
    TextValue(Field),
    Binary(Field, u64),
    BinaryNewline,
}

/// A field name line longer than this is garbage, not export format.
const MAX_FIELD_NAME: usize = 4096;

impl ExportParser {
    fn new(cap: usize) -> ExportParser {
        ExportParser {
            state: ParseState::LineStart,
            entry: Entry::default(),
            cap,
            keeping: false,
        }
    }

    /// Consumes as much of `data` as possible; returns (bytes consumed,
    /// completed entries). Unconsumed bytes must be offered again with more.
    fn feed(&mut self, data: &[u8], entries: &mut Vec<Entry>) -> Result<usize, String> {
        let mut pos = 0;
        loop {
            let rest = &data[pos..];
            match self.state {
                ParseState::LineStart => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let Some(nl) = memchr::memchr(b'\n', rest) else {
                        // A long text value: take the name and stream the value.
                        if let Some(eq) = memchr::memchr(b'=', rest) {
                            let field = Field::from_name(&rest[..eq]);
                            self.keeping = self.entry.begin(field);
                            if self.keeping {
                                self.entry.push(field, &rest[eq + 1..], self.cap);
                            }
                            self.state = ParseState::TextValue(field);
                            return Ok(data.len());
                        }
                        if rest.len() > MAX_FIELD_NAME {
                            return Err(
                                "journalctl output is not in export format (field name too long)"
                                    .into(),
                            );
                        }
                        return Ok(pos);
                    };
                    let line = &rest[..nl];
                    if line.is_empty() {
                        entries.push(std::mem::take(&mut self.entry));
                        pos += 1;
                    } else if let Some(eq) = memchr::memchr(b'=', line) {
                        let field = Field::from_name(&line[..eq]);
                        if self.entry.begin(field) {
                            self.entry.push(field, &line[eq + 1..], self.cap);
                        }
                        pos += nl + 1;
                    } else {
                        if rest.len() < nl + 1 + 8 {
                            return Ok(pos);
                        }
                        let mut len = [0u8; 8];
                        len.copy_from_slice(&rest[nl + 1..nl + 9]);
                        let field = Field::from_name(line);
                        self.keeping = self.entry.begin(field);
                        self.state = ParseState::Binary(field, u64::from_le_bytes(len));
                        pos += nl + 9;
                    }
                }
                ParseState::TextValue(field) => match memchr::memchr(b'\n', rest) {
                    Some(nl) => {
                        if self.keeping {
                            self.entry.push(field, &rest[..nl], self.cap);
                        }
                        self.state = ParseState::LineStart;
                        pos += nl + 1;
                    }
                    None => {
                        if self.keeping {
                            self.entry.push(field, rest, self.cap);
                        }
                        return Ok(data.len());
                    }
                },
                ParseState::Binary(field, remaining) => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    if self.keeping {
                        self.entry.push(field, &rest[..take], self.cap);
                    }
                    let left = remaining - take as u64;
                    pos += take;
                    if left == 0 {
                        self.state = ParseState::BinaryNewline;
                    } else {
                        self.state = ParseState::Binary(field, left);
                        return Ok(pos);
                    }
                }
                ParseState::BinaryNewline => {
                    let Some(&b) = rest.first() else {
                        return Ok(pos);
                    };
                    if b != b'\n' {
                        return Err("journalctl output is not in export format (binary field not followed by newline)".into());
                    }
                    pos += 1;
                    self.state = ParseState::LineStart;
                }
            }
        }
    }
}

/// Formats an entry as a syslog line, or None if the identifier filter drops it.
fn format_entry(entry: &Entry, config: &JournalConfig, tz: &jiff::tz::TimeZone) -> Option<Vec<u8>> {
    let ident: &[u8] = entry
        .identifier
        .as_deref()
        .or(entry.comm.as_deref())
        .unwrap_or(b"unknown");
    if !config.identifier_prefixes.is_empty()
        && !config
            .identifier_prefixes
            .iter()
            .any(|p| ident.starts_with(p.as_bytes()))
    {
        return None;
    }
    let micros = entry
        .realtime_us
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let ts = jiff::Timestamp::from_microsecond(micros).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let zoned = ts.to_zoned(tz.clone());
    let stamp = match config.timestamp {
        TimestampStyle::Rfc3339 => zoned.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string(),
        TimestampStyle::Traditional => zoned.strftime("%b %e %H:%M:%S").to_string(),
    };
    let mut line = Vec::with_capacity(128);
    line.extend_from_slice(stamp.as_bytes());
    line.push(b' ');
    line.extend_from_slice(entry.hostname.as_deref().unwrap_or(b"localhost"));
    line.push(b' ');
    line.extend_from_slice(ident);
    if let Some(pid) = entry.syslog_pid.as_deref().or(entry.pid.as_deref()) {
        line.push(b'[');
        line.extend_from_slice(pid);
        line.push(b']');
    }
    line.extend_from_slice(b": ");
    let start = line.len();
    line.extend_from_slice(entry.message.as_deref().unwrap_or(b""));
    // One entry, one line.
    for b in &mut line[start..] {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    Some(line)
}

fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

struct Running {
    child: Child,
    stdout: ChildStdout,
    stderr: ChildStderr,
    stdout_eof: bool,
    stderr_tail: Vec<u8>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const STDERR_KEEP: usize = 4096;
const READ_CHUNK: usize = 64 * 1024;

pub struct JournalFollower {
    config: JournalConfig,
    cursor: Option<String>,
    start: StartFrom,
    running: Option<Running>,
    /// Not before this instant may journalctl be started (again).
    next_start: Instant,
    parser: ExportParser,
    pending: Vec<u8>,
    tz: jiff::tz::TimeZone,
    finished: bool,
    last_error: Option<String>,
    /// After a switch from a log file: skips what the file already gave.
    catch_up: Option<CatchUp>,
    /// The last line delivered, saved so that a later switch to a file
    /// knows where the journal stopped.
    last_line: Vec<u8>,
}

impl JournalFollower {
    /// `cursor`: from an earlier run's [`JournalFollower::cursor`]. Without
    /// one, `start` says whether to read the whole journal or only new entries.
    /// journalctl is started by the first `poll`.
    pub fn new(config: JournalConfig, cursor: Option<String>, start: StartFrom) -> JournalFollower {
        let cap = config.max_message_bytes.max(256);
        JournalFollower {
            config,
            cursor,
            start,
            running: None,
            next_start: Instant::now(),
            parser: ExportParser::new(cap),
            pending: Vec::new(),
            tz: jiff::tz::TimeZone::system(),
            finished: false,
            last_error: None,
            catch_up: None,
            last_line: Vec::new(),
        }
    }

    /// Starts without a cursor at the entries around `mark`, the last line
    /// counted from a log file, and skips those the file already gave.
    pub fn resume_after_file(&mut self, mark: Mark) {
        self.cursor = None;
        self.start = StartFrom::Beginning;
        self.catch_up = Some(CatchUp::new(mark));
    }

    /// The last line delivered (empty before the first).
    pub fn last_line(&self) -> &[u8] {
        &self.last_line
    }

    /// Cursor of the last entry processed; save it with the counters.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// journalctl arguments shared by the follower and the end-of-journal probe.
    fn source_args(&self) -> Vec<String> {
        let mut args = vec!["--output=export".to_string(), "--no-pager".to_string()];
        let mut matches = Vec::new();
        match &self.config.source {
            JournalSource::System => {
                if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
                    let id = id.trim();
                    if !id.is_empty() {
                        args.push("--merge".into());
                        matches.push(format!("_MACHINE_ID={id}"));
                    }
                }
            }
            JournalSource::Files(files) => {
                args.push("--merge".into());
                args.extend(files.iter().map(|f| format!("--file={}", f.display())));
            }
            JournalSource::Directory(dir) => {
                args.push("--merge".into());
                args.push(format!("--directory={}", dir.display()));
            }
        }
        args.extend(matches);
        args.extend(self.config.matches.iter().cloned());
        args
    }

    /// Cursor of the newest matching entry, to start "at the end" with a
    /// cursor in hand (so a restart before the first new entry loses nothing).
    fn newest_cursor(&self) -> Result<Option<String>, String> {
        let mut args = self.source_args();
        args.insert(2, "--lines=1".into());
        let out = Command::new(&self.config.journalctl)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_message(&e))?;
        if !out.status.success() {
            return Err(format!(
                "journalctl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mut parser = ExportParser::new(4096);
        let mut entries = Vec::new();
        parser.feed(&out.stdout, &mut entries)?;
        Ok(entries
            .last()
            .and_then(|e| e.cursor.as_ref())
            .map(|c| String::from_utf8_lossy(c).into_owned()))
    }

    fn spawn_message(&self, e: &io::Error) -> String {
        let mut msg = format!("cannot run {}: {e}", self.config.journalctl.display());
        if e.kind() == io::ErrorKind::NotFound {
            msg.push_str(" (apt-get install -y systemd)");
        }
        msg
    }

    fn spawn(&mut self, events: &mut Vec<JournalEvent>) -> Result<(), String> {
        if self.cursor.is_none() && self.start == StartFrom::End {
            self.cursor = self.newest_cursor()?;
            // Whatever follows the newest entry (or the whole journal, if it
            // had no matching entry yet) is new.
            self.start = StartFrom::Beginning;
        }
        let mut args = self.source_args();
        if self.config.follow {
            args.push("--follow".into());
        }
        // --follow would otherwise start with the last 10 entries.
        args.push("--no-tail".into());
        if let Some(c) = &self.cursor {
            args.push(format!("--after-cursor={c}"));
        } else if let Some(c) = self.catch_up.as_ref().filter(|c| !c.finished()) {
            // A minute before the mark: the journal's time of an entry is a
            // little earlier than a file's stamp of it.
            let since = c.mark().first_us().div_euclid(1_000_000) - 60;
            args.push(format!("--since=@{since}"));
        }
        let mut child = Command::new(&self.config.journalctl)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_message(&e))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("journalctl started without pipes".into());
        };
        let running = Running {
            child,
            stdout,
            stderr,
            stdout_eof: false,
            stderr_tail: Vec::new(),
        };
        set_nonblocking(&running.stdout)
            .map_err(|e| format!("cannot set up journalctl pipe: {e}"))?;
        set_nonblocking(&running.stderr)
            .map_err(|e| format!("cannot set up journalctl pipe: {e}"))?;
        self.running = Some(running);
        self.parser = ExportParser::new(self.config.max_message_bytes.max(256));
        self.pending.clear();
        events.push(JournalEvent::Started { args });
        Ok(())
    }

    /// Delivers every entry available now as a line; never blocks.
    pub fn poll(&mut self, sink: &mut dyn LineSink) -> io::Result<JournalPoll> {
        let mut out = JournalPoll::default();
        if self.finished {
            out.finished = true;
            return Ok(out);
        }
        if self.running.is_none() {
            if Instant::now() < self.next_start {
                return Ok(out);
            }
            if let Err(message) = self.spawn(&mut out.events) {
                self.next_start = Instant::now() + self.config.restart_delay;
                self.last_error = Some(message.clone());
                out.events.push(JournalEvent::Error { message });
                return Ok(out);
            }
        }
        let mut budget = self.config.max_bytes_per_poll;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut entries = Vec::new();
        let mut parse_error = None;
        if let Some(run) = self.running.as_mut() {
            drain_stderr(run);
            while !run.stdout_eof {
                if budget == 0 {
                    out.more = true;
                    break;
                }
                match run.stdout.read(&mut buf) {
                    Ok(0) => run.stdout_eof = true,
                    Ok(n) => {
                        budget = budget.saturating_sub(n);
                        self.pending.extend_from_slice(&buf[..n]);
                        match self.parser.feed(&self.pending, &mut entries) {
                            Ok(used) => {
                                self.pending.drain(..used);
                            }
                            Err(e) => {
                                parse_error = Some(e);
                                break;
                            }
                        }
                        for entry in entries.drain(..) {
                            out.entries += 1;
                            if let Some(line) = format_entry(&entry, &self.config, &self.tz) {
                                let seen = self
                                    .catch_up
                                    .as_mut()
                                    .is_some_and(|c| c.already_counted(&line));
                                if !seen {
                                    sink.line(&line);
                                    out.lines += 1;
                                    self.last_line.clear();
                                    self.last_line.extend_from_slice(&line);
                                }
                            }
                            if let Some(c) = entry.cursor {
                                self.cursor = Some(String::from_utf8_lossy(&c).into_owned());
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        parse_error = Some(format!("cannot read journalctl output: {e}"));
                        break;
                    }
                }
            }
        }
        if let Some(message) = parse_error {
            self.last_error = Some(message.clone());
            out.events.push(JournalEvent::Error { message });
            self.stop_child(&mut out, true);
            return Ok(out);
        }
        let eof = self.running.as_ref().is_some_and(|r| r.stdout_eof);
        if eof {
            self.stop_child(&mut out, false);
        }
        Ok(out)
    }

    /// Reaps journalctl and decides how to go on.
    fn stop_child(&mut self, out: &mut JournalPoll, killed: bool) {
        let Some(mut run) = self.running.take() else {
            return;
        };
        if killed {
            let _ = run.child.kill();
        }
        let status: Option<ExitStatus> = run.child.wait().ok();
        // After exit the pipe holds all it will ever hold.
        drain_stderr(&mut run);
        let stderr = String::from_utf8_lossy(&run.stderr_tail).trim().to_string();
        let ok = status.is_some_and(|s| s.success());
        let status_text = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown status".into());
        if !ok && !killed && stderr.contains("cursor") {
            if let Some(cursor) = self.cursor.take() {
                out.events.push(JournalEvent::CursorDropped { cursor });
                self.start = StartFrom::End;
            }
        }
        if ok && !self.config.follow && !killed {
            self.finished = true;
            out.finished = true;
        } else {
            if !ok {
                self.last_error = Some(format!("journalctl exited ({status_text}): {stderr}"));
            }
            self.next_start = Instant::now() + self.config.restart_delay;
        }
        out.events.push(JournalEvent::Exited {
            status: status_text,
            stderr,
        });
    }

    /// Blocks until journalctl has output, a restart is due, or `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let Some(run) = self.running.as_ref() else {
            if !self.finished {
                let left = self.next_start.saturating_duration_since(Instant::now());
                std::thread::sleep(left.min(timeout));
            }
            return Ok(());
        };
        let mut fds = [
            libc::pollfd {
                fd: run.stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: run.stderr.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: two valid pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Keeps the last STDERR_KEEP bytes of journalctl's stderr without blocking.
fn drain_stderr(run: &mut Running) {
    let mut buf = [0u8; 4096];
    loop {
        match run.stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                run.stderr_tail.extend_from_slice(&buf[..n]);
                if run.stderr_tail.len() > STDERR_KEEP {
                    let cut = run.stderr_tail.len() - STDERR_KEEP;
                    run.stderr_tail.drain(..cut);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

impl Drop for JournalFollower {
    fn drop(&mut self) {
        // Running's own Drop kills and reaps journalctl.
        self.running.take();
    }
}

// The follower runs on its own thread: keep it Send.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<JournalFollower>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(data: &[u8], chunk: usize) -> Vec<Entry> {
        let mut p = ExportParser::new(64);
        let mut pending = Vec::new();
        let mut entries = Vec::new();
        for piece in data.chunks(chunk) {
            pending.extend_from_slice(piece);
            let used = p.feed(&pending, &mut entries).unwrap();
            pending.drain(..used);
        }
        entries
    }

    fn export_sample() -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(b"__CURSOR=c1\n__REALTIME_TIMESTAMP=1764424800000000\n_HOSTNAME=mx1\nSYSLOG_IDENTIFIER=postfix/smtpd\n_PID=123\nMESSAGE=connect from a[192.0.2.1]\n\n");
        d.extend_from_slice(b"__CURSOR=c2\nSYSLOG_IDENTIFIER=postfix/qmgr\nMESSAGE\n");
        let msg = b"two\nlines \xff";
        d.extend_from_slice(&(msg.len() as u64).to_le_bytes());
        d.extend_from_slice(msg);
        d.extend_from_slice(b"\n_BINARY_IGNORED\n");
        d.extend_from_slice(&3u64.to_le_bytes());
        d.extend_from_slice(b"x\ny\n\n");
        d
    }

    #[test]
    fn export_parser_handles_any_split() {
        let data = export_sample();
        let whole = parse_all(&data, data.len());
        assert_eq!(whole.len(), 2);
        assert_eq!(
            whole[0].message.as_deref(),
            Some(&b"connect from a[192.0.2.1]"[..])
        );
        assert_eq!(whole[1].message.as_deref(), Some(&b"two\nlines \xff"[..]));
        assert_eq!(whole[1].cursor.as_deref(), Some(&b"c2"[..]));
        for chunk in 1..data.len() {
            assert_eq!(parse_all(&data, chunk), whole, "chunk size {chunk}");
        }
    }

    #[test]
    fn export_parser_caps_long_fields() {
        let mut data = b"MESSAGE=".to_vec();
        data.extend(std::iter::repeat(b'a').take(10_000));
        data.extend_from_slice(b"\n__CURSOR=c\n\n");
        for chunk in [7, 100, 20_000] {
            let e = parse_all(&data, chunk);
            assert_eq!(e.len(), 1);
            assert_eq!(e[0].message.as_ref().map(|m| m.len()), Some(64));
            assert_eq!(e[0].cursor.as_deref(), Some(&b"c"[..]));
        }
    }

    #[test]
    fn export_parser_rejects_garbage() {
        let mut p = ExportParser::new(64);
        let mut entries = Vec::new();
        assert!(p.feed(&[b'x'; 10_000], &mut entries).is_err());
    }

    #[test]
    fn entry_formats_as_syslog_line_and_filters_identifiers() {
        let config = JournalConfig::new(JournalSource::System);
        let tz = jiff::tz::TimeZone::UTC;
        let entries = parse_all(&export_sample(), 4096);
        let line = format_entry(&entries[0], &config, &tz).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "2025-11-29T14:00:00.000000+00:00 mx1 postfix/smtpd[123]: connect from a[192.0.2.1]"
        );
        let line = format_entry(&entries[1], &config, &tz).unwrap();
        assert_eq!(
            &line[..],
            &b"1970-01-01T00:00:00.000000+00:00 localhost postfix/qmgr: two lines \xff"[..]
        );
        let mut traditional = config.clone();
        traditional.timestamp = TimestampStyle::Traditional;
        let line = format_entry(&entries[0], &traditional, &tz).unwrap();
        assert!(line.starts_with(b"Nov 29 14:00:00 mx1 postfix/smtpd[123]: "));
        let mut other = config.clone();
        other.identifier_prefixes = vec!["sshd".into()];
        assert!(format_entry(&entries[0], &other, &tz).is_none());
    }
}
