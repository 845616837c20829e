//! Following plain log files across rotation, without losing or repeating lines.
//!
//! A [`LogFollower`] follows one or more configured paths. It is blocking code
//! meant for a dedicated thread (or `spawn_blocking`):
//!
//! ```text
//! loop {
//!     let outcome = follower.poll(&mut sink)?;   // deliver every complete line available now
//!     /* log outcome.events, update health, save follower.positions() with the counters */
//!     if !outcome.more { follower.wait(Duration::from_secs(1))?; }  // inotify, bounded
//! }
//! ```
//!
//! How changes are seen: an inotify watch on each file's directory (create,
//! rename, delete, attribute changes) and one on each open file (writes,
//! truncation, rename, delete). Events are only wake-ups: every `poll` checks
//! the path and the open files from scratch (stat, fstat, and the first-line
//! fingerprint whenever the file's size or ctime moved since it last
//! matched), so a missed or coalesced event costs at most one fallback
//! interval (`FollowOptions::fallback_interval`) of delay, never a line.
//!
//! What is handled:
//! - appends; a last line without newline is held (not delivered, not part of
//!   the saved position) until its newline arrives;
//! - rename + create rotation: the old file stays open and is read to its end;
//!   it is kept open for `rotate_wait` after its last write because a syslog
//!   daemon keeps writing to it until it is told to reopen. A trailing line
//!   without newline is delivered when the old file is closed. Then it is closed.
//! - delete + re-create: same as rename (the open fd still reads the deleted file);
//! - copytruncate: the file gets shorter than our read position, or its first
//!   line changes: reading restarts at 0. Before that, the rotated copy (a
//!   sibling with the same first-line fingerprint) is read from our position to
//!   its end, so lines written before the copy are not lost even when we lagged.
//!   Lines written between logrotate's copy and its truncate exist in neither
//!   file: copytruncate itself loses them, nothing reading the files can avoid that;
//! - rotation while the agent was stopped: a saved [`FilePosition`] names
//!   (device, inode, offset, fingerprint of the first line). At start, if the
//!   path is now another file, the saved file is looked for among the
//!   uncompressed siblings in the same directory (`mail.log.1`,
//!   `mail.log-20261129`, ...), by inode (checked against the fingerprint, in
//!   case the inode was reused) or, for copytruncate copies, by fingerprint; it is
//!   finished from the saved offset, then the current file is read from 0.
//!   Compressed siblings (`.gz`, ...) are never read: logrotate's `delaycompress`
//!   keeps the newest rotated file uncompressed precisely so that it can be
//!   finished; if the saved file was already compressed or deleted, the lines
//!   after the saved offset are lost and a [`FollowEvent::SavedFileLost`] says so.
//!   Rotation into another directory (`olddir`) is not followed.
//! - the path missing (waits for it), unreadable (reports the error, retries),
//!   a directory or other non-regular file (reports, retries), truncated.
//! - lines longer than `max_line_bytes` are delivered as one line cut to that
//!   length; the rest is skipped, and a [`FollowEvent::LineTruncated`] notes it.

use super::reader::LineReader;
use inotify::{Inotify, WatchDescriptor, WatchMask};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where to continue reading one file. Saved with the counters; the offset is
/// the byte after the last line delivered, so counters and position agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilePosition {
    /// The configured path this file was read for (a rotated file keeps the
    /// configured path; it is found again by device and inode).
    pub path: PathBuf,
    pub dev: u64,
    pub inode: u64,
    pub offset: u64,
    /// FNV-1a hash of the file's first line (at most [`FINGERPRINT_BYTES`]
    /// bytes, without the newline); 0 while the first line is incomplete.
    pub fingerprint: u64,
}

impl FilePosition {
    /// The position `offset` in `file`, opened for the configured `path`:
    /// what a saved position would be had the file been read up to there.
    pub fn of_open_file(path: &Path, file: &File, offset: u64) -> io::Result<FilePosition> {
        let meta = file.metadata()?;
        Ok(FilePosition {
            path: path.to_path_buf(),
            dev: meta.dev(),
            inode: meta.ino(),
            offset,
            fingerprint: file_fingerprint(file)?.unwrap_or(0),
        })
    }
}

/// Where to start a file that has no saved position (`[log] start_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// Read everything the file already holds.
    Beginning,
    /// Skip what the file holds at start-up (from its last complete line on).
    /// Files that appear later are always read from their beginning.
    End,
}

/// Receives complete lines, without the newline.
pub trait LineSink {
    fn line(&mut self, line: &[u8]);
}

impl LineSink for Vec<Vec<u8>> {
    fn line(&mut self, line: &[u8]) {
        self.push(line.to_vec());
    }
}

#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Longer lines are cut to this many bytes (the rest is skipped). Each
    /// open file's line reader holds a buffer of 128 KiB plus this.
    pub max_line_bytes: usize,
    /// How long a rotated-away file stays open after its last write.
    pub rotate_wait: Duration,
    /// `wait` never sleeps longer than this, to recover from missed events.
    pub fallback_interval: Duration,
    /// One `poll` reads at most this many bytes (over all files); more is
    /// signalled by `PollOutcome::more` so the caller can save state in between.
    pub max_bytes_per_poll: u64,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            max_line_bytes: 64 * 1024,
            rotate_wait: Duration::from_secs(10),
            fallback_interval: Duration::from_secs(5),
            max_bytes_per_poll: 16 * 1024 * 1024,
        }
    }
}

/// Things worth logging or showing in a health table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowEvent {
    /// Started reading a file.
    Opened {
        path: PathBuf,
        inode: u64,
        offset: u64,
    },
    /// The configured path no longer names the file we read (renamed, deleted,
    /// replaced); that file is read to its end before it is closed.
    Rotated { path: PathBuf, inode: u64 },
    /// The file got shorter than what we had read, or its first line changed.
    Truncated {
        path: PathBuf,
        inode: u64,
        read_pos: u64,
    },
    /// A rotated or copied file was read to its end and closed.
    Finished {
        path: PathBuf,
        inode: u64,
        offset: u64,
    },
    /// At start (or on truncation) the saved file was found under another name.
    ResumedRotated {
        path: PathBuf,
        found: PathBuf,
        inode: u64,
        offset: u64,
    },
    /// The saved file could not be found any more: lines after `offset` are lost.
    SavedFileLost {
        path: PathBuf,
        inode: u64,
        offset: u64,
        reason: String,
    },
    /// A line longer than `max_line_bytes` was cut.
    LineTruncated {
        path: PathBuf,
        kept: usize,
        dropped: u64,
    },
    /// The path cannot be read; `message` is meant for humans. Repeated only
    /// when the message changes.
    Error { path: PathBuf, message: String },
    /// An earlier error is gone.
    Recovered { path: PathBuf },
    /// A file at a rotated log's name was not considered (not a regular file).
    Ignored { path: PathBuf, reason: String },
}

impl FollowEvent {
    /// Worth a warning in the agent's log: lines may be lost, cut or
    /// unreadable, or someone planted a special file beside the log.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            FollowEvent::Truncated { .. }
                | FollowEvent::SavedFileLost { .. }
                | FollowEvent::LineTruncated { .. }
                | FollowEvent::Error { .. }
                | FollowEvent::Ignored { .. }
        )
    }
}

impl fmt::Display for FollowEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FollowEvent::Opened { path, inode, offset } => {
                write!(f, "reading {} (inode {inode}) from offset {offset}", path.display())
            }
            FollowEvent::Rotated { path, inode } => write!(
                f,
                "{} was rotated or removed; finishing the old file (inode {inode})",
                path.display()
            ),
            FollowEvent::Truncated { path, inode, read_pos } => write!(
                f,
                "{} (inode {inode}) was truncated or rewritten below offset {read_pos}; reading it again from 0",
                path.display()
            ),
            FollowEvent::Finished { path, inode, offset } => write!(
                f,
                "finished rotated file of {} (inode {inode}) at offset {offset}",
                path.display()
            ),
            FollowEvent::ResumedRotated { path, found, inode, offset } => write!(
                f,
                "finishing {} (rotated {}, inode {inode}) from saved offset {offset}",
                found.display(),
                path.display()
            ),
            FollowEvent::SavedFileLost { path, inode, offset, reason } => write!(
                f,
                "saved position of {} (inode {inode}, offset {offset}) cannot be resumed: {reason}; lines after it are lost",
                path.display()
            ),
            FollowEvent::LineTruncated { path, kept, dropped } => write!(
                f,
                "a line in {} was longer than {kept} bytes; {dropped} bytes were skipped",
                path.display()
            ),
            FollowEvent::Error { path: _, message } => f.write_str(message),
            FollowEvent::Recovered { path } => write!(f, "{} is readable again", path.display()),
            FollowEvent::Ignored { path, reason } => write!(
                f,
                "ignored {} as a rotated log: {reason}",
                path.display()
            ),
        }
    }
}

#[derive(Debug, Default)]
pub struct PollOutcome {
    pub lines: u64,
    pub bytes: u64,
    /// The byte budget ran out: call `poll` again before `wait`.
    pub more: bool,
    pub events: Vec<FollowEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    Following,
    /// Not an error yet: the file does not exist (or not any more).
    Waiting(String),
    Error(String),
}

#[derive(Debug, Clone)]
pub struct PathStatus {
    pub path: PathBuf,
    pub state: PathState,
    /// The file currently read for this path, and our position in it.
    pub inode: Option<u64>,
    pub offset: Option<u64>,
    /// Rotated files still being finished.
    pub rotated_open: usize,
    pub lines: u64,
    pub truncated_lines: u64,
    /// Number of error episodes (an error that persists counts once).
    pub errors: u64,
}

/// Fingerprint covers at most this many bytes of the first line.
pub const FINGERPRINT_BYTES: usize = 1024;

/// Compressed rotations cannot be half-read files: skip them.
const COMPRESSED_SUFFIXES: [&str; 9] = [
    ".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".lzo", ".Z", ".zip",
];

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // 0 means "unknown".
    if hash == 0 {
        1
    } else {
        hash
    }
}

/// Fingerprint of the file's first line, or None while it is incomplete.
fn file_fingerprint(file: &File) -> io::Result<Option<u64>> {
    let mut buf = [0u8; FINGERPRINT_BYTES + 1];
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read_at(&mut buf[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let data = &buf[..filled];
    match memchr::memchr(b'\n', data) {
        Some(nl) => Ok(Some(fnv1a(&data[..nl.min(FINGERPRINT_BYTES)]))),
        None if filled > FINGERPRINT_BYTES => Ok(Some(fnv1a(&data[..FINGERPRINT_BYTES]))),
        None => Ok(None),
    }
}

/// A file read from a position on, at most `budget` bytes (then it reads
/// as if at its end until the budget is renewed).
struct FileAt {
    file: File,
    /// Next byte to read.
    pos: u64,
    budget: u64,
}

impl io::Read for FileAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.budget).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        self.budget -= n as u64;
        Ok(n)
    }
}

/// One open file and our position in it.
struct Reader {
    /// The file split into lines (the same splitter as for whole files).
    /// Its source's position is the next byte to read: `offset` plus the
    /// bytes of the partial line held (`lines.pending_bytes()`).
    lines: LineReader<FileAt>,
    dev: u64,
    inode: u64,
    /// Where it was opened (for messages).
    found_at: PathBuf,
    /// Byte after the last delivered line.
    offset: u64,
    fingerprint: u64,
    /// Size and change time when the first line last matched `fingerprint`:
    /// while they stay the same, nothing was written or truncated, so an
    /// idle log is not read again at every poll.
    fingerprint_checked: Option<FileStamp>,
    watch: Option<WatchDescriptor>,
    last_data: Instant,
    /// How long to keep it open after its last write once it is rotated away.
    linger: Duration,
}

/// Size and inode change time (`st_ctime`, which every write and truncate
/// sets and no user can set back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    size: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            size: meta.len(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }
}

impl Reader {
    /// Opens a regular file only: a FIFO or device at a log path (anyone
    /// who can write the log directory can put one there) is an error, never
    /// a blocking open.
    fn open(path: &Path, offset: u64, linger: Duration, max_line: usize) -> io::Result<Reader> {
        let (file, meta) = open_regular(path)?;
        Ok(Reader::of_open_file(
            file,
            &meta,
            path.to_path_buf(),
            offset,
            0,
            linger,
            max_line,
        ))
    }

    /// A reader of `file` (whose metadata is `meta`, found at `found_at`)
    /// from `offset`, with no line begun and nothing watched yet;
    /// `fingerprint` is 0 until the first line is known. Lines are cut at
    /// `max_line` bytes.
    fn of_open_file(
        file: File,
        meta: &fs::Metadata,
        found_at: PathBuf,
        offset: u64,
        fingerprint: u64,
        linger: Duration,
        max_line: usize,
    ) -> Reader {
        let source = FileAt {
            file,
            pos: offset,
            budget: 0,
        };
        Reader {
            lines: LineReader::with_max_line(source, max_line),
            dev: meta.dev(),
            inode: meta.ino(),
            found_at,
            offset,
            fingerprint,
            fingerprint_checked: None,
            watch: None,
            last_data: Instant::now(),
            linger,
        }
    }

    fn position(&self, configured: &Path) -> FilePosition {
        FilePosition {
            path: configured.to_path_buf(),
            dev: self.dev,
            inode: self.inode,
            offset: self.offset,
            fingerprint: self.fingerprint,
        }
    }

    fn file(&self) -> &File {
        &self.lines.get_ref().file
    }

    /// Next byte to read: `offset` plus the held partial line.
    fn read_pos(&self) -> u64 {
        self.lines.get_ref().pos
    }

    /// Forgets any partial line and reads on from `offset`.
    fn restart_at(&mut self, offset: u64) {
        self.lines.restart();
        self.lines.get_mut().pos = offset;
        self.offset = offset;
    }

    /// Reads to end of file (or until the budget is used), delivering
    /// complete lines and adding them and the bytes read to `out`. `true`
    /// when the budget ran out first.
    fn read_available(
        &mut self,
        configured: &Path,
        sink: &mut dyn LineSink,
        budget: &mut u64,
        status: &mut PathCounters,
        out: &mut PollOutcome,
    ) -> io::Result<bool> {
        self.lines.get_mut().budget = *budget;
        let delivered = self.deliver_lines(configured, sink, status, out);
        let left = self.lines.get_ref().budget;
        let read = *budget - left;
        out.bytes += read;
        *budget = left;
        if read > 0 {
            self.last_data = Instant::now();
        }
        delivered?;
        if self.fingerprint == 0 && self.read_pos() > 0 {
            if let Some(fp) = file_fingerprint(self.file())? {
                self.fingerprint = fp;
            }
        }
        Ok(left == 0)
    }

    /// Every complete line the source gives now, to `sink`.
    fn deliver_lines(
        &mut self,
        configured: &Path,
        sink: &mut dyn LineSink,
        status: &mut PathCounters,
        out: &mut PollOutcome,
    ) -> io::Result<()> {
        loop {
            let before = self.lines.consumed_bytes();
            let Some(line) = self.lines.next_line()? else {
                return Ok(());
            };
            sink.line(line);
            let kept = line.len();
            let cut = self.lines.last_cut();
            if cut > 0 {
                status.truncated_lines += 1;
                out.events.push(FollowEvent::LineTruncated {
                    path: configured.to_path_buf(),
                    kept,
                    dropped: cut,
                });
            }
            out.lines += 1;
            status.lines += 1;
            self.offset += self.lines.consumed_bytes() - before;
        }
    }

    /// Called when the file will not be read again: a last line without
    /// newline is still a line.
    fn finish(
        &mut self,
        configured: &Path,
        sink: &mut dyn LineSink,
        status: &mut PathCounters,
        events: &mut Vec<FollowEvent>,
    ) -> u64 {
        let pending = self.lines.pending_bytes();
        if pending == 0 {
            return 0;
        }
        let line = self.lines.partial_line();
        sink.line(line);
        let dropped = pending - line.len() as u64;
        if dropped > 0 {
            status.truncated_lines += 1;
            events.push(FollowEvent::LineTruncated {
                path: configured.to_path_buf(),
                kept: line.len(),
                dropped,
            });
        }
        status.lines += 1;
        let read_pos = self.read_pos();
        self.restart_at(read_pos);
        1
    }
}

#[derive(Default)]
struct PathCounters {
    lines: u64,
    truncated_lines: u64,
    errors: u64,
}

/// How to position the first file opened for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartPlan {
    FromZero,
    AtEnd,
    /// The saved file is the current one but could not be opened at start.
    Resume {
        dev: u64,
        inode: u64,
        offset: u64,
        fingerprint: u64,
    },
}

struct FollowedPath {
    path: PathBuf,
    current: Option<Reader>,
    /// Rotated-away files still being finished, oldest first.
    rotated: Vec<Reader>,
    plan: StartPlan,
    state: PathState,
    counters: PathCounters,
}

pub struct LogFollower {
    paths: Vec<FollowedPath>,
    inotify: Inotify,
    options: FollowOptions,
    /// Events found while starting, handed out by the first poll.
    startup_events: Vec<FollowEvent>,
    last_error: Option<String>,
    next_first_path: usize,
}

const DIR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DELETE_SELF);

const FILE_MASK: WatchMask = WatchMask::MODIFY
    .union(WatchMask::ATTRIB)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::CLOSE_WRITE);

/// Opens a regular file without blocking on a special one (see
/// [`crate::file_trust::open_regular`]).
fn open_regular(path: &Path) -> io::Result<(File, fs::Metadata)> {
    crate::file_trust::open_regular(path, false)
}

fn io_message(what: &str, path: &Path, e: &io::Error) -> String {
    let mut msg = format!("cannot {what} {}: {e}", path.display());
    if e.kind() == io::ErrorKind::PermissionDenied {
        msg.push_str(
            "; the agent's user needs read access to it and its directory (on Debian: add the user to group adm)",
        );
    }
    msg
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Uncompressed rotated siblings of `path`: `NAME.*` and `NAME-*` in its directory.
fn rotated_siblings(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return Vec::new();
    };
    let dot = format!("{name}.");
    let dash = format!("{name}-");
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file_name = e.file_name();
            let n = file_name.to_str()?;
            let is_sibling = n.starts_with(&dot) || n.starts_with(&dash);
            let compressed = COMPRESSED_SUFFIXES.iter().any(|s| n.ends_with(s));
            (is_sibling && !compressed).then(|| e.path())
        })
        .collect();
    found.sort();
    found
}

/// Finds the file a saved position refers to among rotated siblings:
/// same inode (and first line, against inode reuse), or, for copies made by
/// copytruncate, same first line and at least `offset` bytes.
///
/// A sibling that is not a regular file (a FIFO planted as `mail.log.0`) is
/// skipped without blocking (`open_regular` fails on it at once) and
/// reported in `events`: whoever can write the log directory planted it.
fn find_rotated(
    path: &Path,
    dev: u64,
    inode: u64,
    fingerprint: u64,
    offset: u64,
    exclude: &[(u64, u64)],
    events: &mut Vec<FollowEvent>,
) -> Option<(PathBuf, File)> {
    let mut same_content = None;
    for p in rotated_siblings(path) {
        let (file, meta) = match open_regular(&p) {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                events.push(FollowEvent::Ignored {
                    path: p,
                    reason: e.to_string(),
                });
                continue;
            }
            // Unreadable or gone: not the file we look for.
            Err(_) => continue,
        };
        if exclude.contains(&(meta.dev(), meta.ino())) || meta.len() < offset {
            continue;
        }
        let same_inode = meta.dev() == dev && meta.ino() == inode;
        let Ok(fp) = file_fingerprint(&file) else {
            continue;
        };
        let fp_ok = match fp {
            Some(f) => fingerprint == 0 || f == fingerprint,
            None => fingerprint == 0,
        };
        if !fp_ok {
            continue;
        }
        if same_inode {
            return Some((p, file));
        }
        if fingerprint != 0 && same_content.is_none() {
            same_content = Some((p, file));
        }
    }
    same_content
}

impl LogFollower {
    /// Sets up following `paths`. `saved` are positions from `positions()` of
    /// an earlier run (any order, for any of the paths; others are ignored).
    /// Problems with the files themselves are not errors here: they show in
    /// the first `poll`'s events and in `status()`. Fails only if inotify
    /// cannot be set up.
    pub fn new(
        paths: Vec<PathBuf>,
        saved: &[FilePosition],
        start: StartFrom,
        options: FollowOptions,
    ) -> io::Result<LogFollower> {
        let inotify = Inotify::init()?;
        let mut follower = LogFollower {
            paths: Vec::new(),
            inotify,
            options,
            startup_events: Vec::new(),
            last_error: None,
            next_first_path: 0,
        };
        for path in paths {
            let mine: Vec<&FilePosition> = saved.iter().filter(|p| p.path == path).collect();
            let followed = follower.resolve_saved(path, &mine, start);
            follower.paths.push(followed);
        }
        Ok(follower)
    }

    /// Turns saved positions into open rotated files and a plan for the current one.
    fn resolve_saved(
        &mut self,
        path: PathBuf,
        saved: &[&FilePosition],
        start: StartFrom,
    ) -> FollowedPath {
        let mut followed = FollowedPath {
            path,
            current: None,
            rotated: Vec::new(),
            plan: match start {
                StartFrom::Beginning => StartPlan::FromZero,
                StartFrom::End => StartPlan::AtEnd,
            },
            state: PathState::Waiting("not checked yet".into()),
            counters: PathCounters::default(),
        };
        if saved.is_empty() {
            return followed;
        }
        // With any saved position, whatever is in a file we do not recognise is new.
        followed.plan = StartPlan::FromZero;
        let current = open_regular(&followed.path).ok();
        // The file may exist but be unreadable for now: its identity still
        // decides whether it is the saved one (else it would be reread from 0).
        let current_id = fs::metadata(&followed.path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| (m.dev(), m.ino()));
        let mut opened: Vec<(u64, u64)> = Vec::new();
        let mut resume: Option<(u64, u64)> = None;
        for pos in saved {
            if current.is_none() && current_id == Some((pos.dev, pos.inode)) {
                followed.plan = StartPlan::Resume {
                    dev: pos.dev,
                    inode: pos.inode,
                    offset: pos.offset,
                    fingerprint: pos.fingerprint,
                };
                opened.push((pos.dev, pos.inode));
                continue;
            }
            if let Some((file, meta)) = &current {
                if meta.dev() == pos.dev && meta.ino() == pos.inode {
                    let fp = file_fingerprint(file).ok().flatten();
                    let same = pos.fingerprint == 0 || fp == Some(pos.fingerprint);
                    if same && meta.len() >= pos.offset && resume.is_none() {
                        resume = Some((pos.offset, pos.fingerprint));
                        opened.push((pos.dev, pos.inode));
                        continue;
                    }
                    // Truncated (copytruncate) or the inode was reused: the
                    // old content may survive in a copy; the current content is new.
                    self.startup_events.push(FollowEvent::Truncated {
                        path: followed.path.clone(),
                        inode: pos.inode,
                        read_pos: pos.offset,
                    });
                }
            }
            let mut exclude = opened.clone();
            if let Some((_, m)) = &current {
                exclude.push((m.dev(), m.ino()));
            }
            match find_rotated(
                &followed.path,
                pos.dev,
                pos.inode,
                pos.fingerprint,
                pos.offset,
                &exclude,
                &mut self.startup_events,
            ) {
                Some((found, file)) => {
                    let meta = match file.metadata() {
                        Ok(m) => m,
                        Err(e) => {
                            self.startup_events.push(FollowEvent::SavedFileLost {
                                path: followed.path.clone(),
                                inode: pos.inode,
                                offset: pos.offset,
                                reason: io_message("stat", &found, &e),
                            });
                            continue;
                        }
                    };
                    let mut reader = Reader::of_open_file(
                        file,
                        &meta,
                        found.clone(),
                        pos.offset,
                        pos.fingerprint,
                        self.options.rotate_wait,
                        self.options.max_line_bytes,
                    );
                    reader.watch = self.watch_open_file(reader.file());
                    opened.push((reader.dev, reader.inode));
                    self.startup_events.push(FollowEvent::ResumedRotated {
                        path: followed.path.clone(),
                        found,
                        inode: reader.inode,
                        offset: pos.offset,
                    });
                    followed.rotated.push(reader);
                }
                None => self.startup_events.push(FollowEvent::SavedFileLost {
                    path: followed.path.clone(),
                    inode: pos.inode,
                    offset: pos.offset,
                    reason: "no uncompressed file with that inode and first line next to it".into(),
                }),
            }
        }
        // Opened now, not at the first poll, so that a rotation in between
        // is seen as a rotation of this file.
        if let (Some((offset, fingerprint)), Some((file, meta))) = (resume, current) {
            let mut reader = Reader::of_open_file(
                file,
                &meta,
                followed.path.clone(),
                offset,
                fingerprint,
                self.options.rotate_wait,
                self.options.max_line_bytes,
            );
            reader.watch = self.watch_open_file(reader.file());
            self.startup_events.push(FollowEvent::Opened {
                path: followed.path.clone(),
                inode: reader.inode,
                offset,
            });
            followed.current = Some(reader);
            followed.state = PathState::Following;
        }
        followed
    }

    /// Watches the open file itself (through /proc, so it is exactly the
    /// inode we read even if the path was replaced meanwhile).
    fn watch_open_file(&mut self, file: &File) -> Option<WatchDescriptor> {
        let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        self.inotify.watches().add(proc_path, FILE_MASK).ok()
    }

    fn unwatch(&mut self, watch: Option<WatchDescriptor>) {
        if let Some(wd) = watch {
            // Fails harmlessly when the kernel already dropped it (file deleted).
            let _ = self.inotify.watches().remove(wd);
        }
    }

    /// Delivers every complete line available now (up to the byte budget), in
    /// order: rotated files first, then the current file, path by path.
    pub fn poll(&mut self, sink: &mut dyn LineSink) -> io::Result<PollOutcome> {
        let mut outcome = PollOutcome {
            events: std::mem::take(&mut self.startup_events),
            ..PollOutcome::default()
        };
        let mut budget = self.options.max_bytes_per_poll;
        // Start with another path each time so a busy one cannot starve the others.
        let n = self.paths.len();
        let first = self.next_first_path;
        self.next_first_path = if n == 0 { 0 } else { (first + 1) % n };
        for k in 0..n {
            self.poll_path((first + k) % n, sink, &mut budget, &mut outcome);
            if outcome.more {
                break;
            }
        }
        for ev in &outcome.events {
            if let FollowEvent::Error { message, .. } = ev {
                self.last_error = Some(message.clone());
            }
        }
        Ok(outcome)
    }

    fn poll_path(
        &mut self,
        idx: usize,
        sink: &mut dyn LineSink,
        budget: &mut u64,
        out: &mut PollOutcome,
    ) {
        let path = self.paths[idx].path.clone();
        // Re-adding is idempotent and repairs the watch after the directory was recreated.
        let _ = self.inotify.watches().add(parent_dir(&path), DIR_MASK);

        // Does the path still name the file we read? If not, the old file is
        // finished below before the new one is opened: its lines are older.
        enum Check {
            Missing,
            Failed(String),
            File(u64, u64),
        }
        let check = match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Check::Missing,
            Err(e) => Check::Failed(io_message("stat", &path, &e)),
            Ok(meta) if !meta.is_file() => Check::Failed(format!(
                "{} is {}, not a log file",
                path.display(),
                crate::file_trust::kind_name(meta.file_type())
            )),
            Ok(meta) => Check::File(meta.dev(), meta.ino()),
        };
        let current_id = self.paths[idx].current.as_ref().map(|r| (r.dev, r.inode));
        let replaced = match &check {
            Check::Missing => true,
            // A stat error (e.g. on the directory) does not prove rotation.
            Check::Failed(_) => matches!(fs::symlink_metadata(&path), Ok(m) if !m.is_file()),
            Check::File(dev, ino) => current_id.is_some_and(|c| c != (*dev, *ino)),
        };
        if replaced {
            self.rotate_out(idx, out);
        }

        // Rotated files first.
        let mut i = 0;
        while i < self.paths[idx].rotated.len() {
            let done = {
                let p = &mut self.paths[idx];
                let reader = &mut p.rotated[i];
                match reader.read_available(&path, sink, budget, &mut p.counters, out) {
                    Ok(true) => {
                        out.more = true;
                        return;
                    }
                    Ok(false) => reader.last_data.elapsed() >= reader.linger,
                    Err(e) => {
                        out.events.push(FollowEvent::Error {
                            path: path.clone(),
                            message: io_message("read rotated file", &reader.found_at, &e),
                        });
                        true
                    }
                }
            };
            if done {
                let p = &mut self.paths[idx];
                let mut reader = p.rotated.remove(i);
                out.lines += reader.finish(&path, sink, &mut p.counters, &mut out.events);
                out.events.push(FollowEvent::Finished {
                    path: path.clone(),
                    inode: reader.inode,
                    offset: reader.offset,
                });
                self.unwatch(reader.watch.take());
            } else {
                i += 1;
            }
        }

        match check {
            Check::Missing => {
                // A file that appears later is new: all of it is to be read.
                if self.paths[idx].plan == StartPlan::AtEnd {
                    self.paths[idx].plan = StartPlan::FromZero;
                }
                let msg = format!("{} does not exist (yet)", path.display());
                self.set_state(idx, PathState::Waiting(msg), out);
            }
            Check::Failed(msg) => self.set_state(idx, PathState::Error(msg), out),
            Check::File(dev, ino) => {
                let p = &mut self.paths[idx];
                // A rotated file moved back (`mv mail.log.1 mail.log`) is
                // continued, not read again from 0.
                if p.current.is_none() {
                    if let Some(i) = p
                        .rotated
                        .iter()
                        .position(|r| r.dev == dev && r.inode == ino)
                    {
                        let reader = p.rotated.remove(i);
                        p.current = Some(reader);
                    }
                }
                if self.paths[idx].current.is_none() {
                    if let Err(msg) = self.open_current(idx, out) {
                        self.set_state(idx, PathState::Error(msg), out);
                        return;
                    }
                }
                self.read_current(idx, sink, budget, out);
            }
        }
    }

    /// Moves the current file (if any) to the rotated list to be finished.
    fn rotate_out(&mut self, idx: usize, out: &mut PollOutcome) {
        let rotate_wait = self.options.rotate_wait;
        let p = &mut self.paths[idx];
        if let Some(mut reader) = p.current.take() {
            out.events.push(FollowEvent::Rotated {
                path: p.path.clone(),
                inode: reader.inode,
            });
            reader.linger = rotate_wait;
            reader.last_data = Instant::now();
            p.rotated.push(reader);
        }
    }

    fn open_current(&mut self, idx: usize, out: &mut PollOutcome) -> Result<(), String> {
        let path = self.paths[idx].path.clone();
        let mut reader = Reader::open(
            &path,
            0,
            self.options.rotate_wait,
            self.options.max_line_bytes,
        )
        .map_err(|e| io_message("open", &path, &e))?;
        if !reader
            .file()
            .metadata()
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            return Err(format!("{} is not a regular file", path.display()));
        }
        let plan = std::mem::replace(&mut self.paths[idx].plan, StartPlan::FromZero);
        let offset = match plan {
            StartPlan::FromZero => 0,
            StartPlan::Resume {
                dev,
                inode,
                offset,
                fingerprint,
            } if dev == reader.dev && inode == reader.inode => {
                let len = reader
                    .file()
                    .metadata()
                    .map_err(|e| io_message("stat", &path, &e))?
                    .len();
                let fp =
                    file_fingerprint(reader.file()).map_err(|e| io_message("read", &path, &e))?;
                if len >= offset && (fingerprint == 0 || fp == Some(fingerprint)) {
                    offset
                } else {
                    0
                }
            }
            StartPlan::Resume { .. } => 0,
            StartPlan::AtEnd => end_of_last_line(reader.file(), self.options.max_line_bytes)
                .map_err(|e| io_message("read", &path, &e))?,
        };
        reader.restart_at(offset);
        reader.fingerprint_checked = None;
        if offset > 0 {
            reader.fingerprint = file_fingerprint(reader.file())
                .map_err(|e| io_message("read", &path, &e))?
                .unwrap_or(0);
        }
        reader.watch = self.watch_open_file(reader.file());
        out.events.push(FollowEvent::Opened {
            path: path.clone(),
            inode: reader.inode,
            offset,
        });
        self.paths[idx].current = Some(reader);
        self.set_state(idx, PathState::Following, out);
        Ok(())
    }

    fn read_current(
        &mut self,
        idx: usize,
        sink: &mut dyn LineSink,
        budget: &mut u64,
        out: &mut PollOutcome,
    ) {
        let path = self.paths[idx].path.clone();
        if let Err(msg) = self.check_truncation(idx, sink, budget, out) {
            self.set_state(idx, PathState::Error(msg), out);
            return;
        }
        let p = &mut self.paths[idx];
        let Some(reader) = p.current.as_mut() else {
            return;
        };
        match reader.read_available(&path, sink, budget, &mut p.counters, out) {
            Ok(budget_exhausted) => {
                out.more |= budget_exhausted;
                self.set_state(idx, PathState::Following, out);
            }
            Err(e) => {
                let msg = io_message("read", &path, &e);
                self.set_state(idx, PathState::Error(msg), out);
            }
        }
    }

    /// copytruncate (or anything rewriting the file in place): the file is
    /// shorter than what we read, or its first line changed.
    fn check_truncation(
        &mut self,
        idx: usize,
        sink: &mut dyn LineSink,
        budget: &mut u64,
        out: &mut PollOutcome,
    ) -> Result<(), String> {
        let path = self.paths[idx].path.clone();
        let (truncated, dev, inode, fingerprint, read_pos) = {
            let Some(reader) = self.paths[idx].current.as_mut() else {
                return Ok(());
            };
            let stamp = FileStamp::of(
                &reader
                    .file()
                    .metadata()
                    .map_err(|e| io_message("stat", &path, &e))?,
            );
            let mut truncated = stamp.size < reader.read_pos();
            if !truncated && reader.fingerprint != 0 && reader.fingerprint_checked != Some(stamp) {
                let fp =
                    file_fingerprint(reader.file()).map_err(|e| io_message("read", &path, &e))?;
                truncated = fp != Some(reader.fingerprint);
                reader.fingerprint_checked = (!truncated).then_some(stamp);
            }
            (
                truncated,
                reader.dev,
                reader.inode,
                reader.fingerprint,
                reader.read_pos(),
            )
        };
        if !truncated {
            return Ok(());
        }
        out.events.push(FollowEvent::Truncated {
            path: path.clone(),
            inode,
            read_pos,
        });
        let mut exclude: Vec<(u64, u64)> = vec![(dev, inode)];
        exclude.extend(self.paths[idx].rotated.iter().map(|r| (r.dev, r.inode)));
        // The copy made by copytruncate holds what we had not read yet.
        let copy = if fingerprint != 0 {
            find_rotated(
                &path,
                u64::MAX,
                u64::MAX,
                fingerprint,
                read_pos,
                &exclude,
                &mut out.events,
            )
        } else {
            None
        };
        let max_line = self.options.max_line_bytes;
        let p = &mut self.paths[idx];
        let Some(reader) = p.current.as_mut() else {
            return Ok(());
        };
        match copy {
            Some((found, file)) => {
                let meta = file
                    .metadata()
                    .map_err(|e| io_message("stat", &found, &e))?;
                let mut copy_reader = Reader::of_open_file(
                    file,
                    &meta,
                    found.clone(),
                    reader.offset,
                    fingerprint,
                    // A copy is complete when we find it.
                    Duration::ZERO,
                    max_line,
                );
                // The copy continues where the truncated file was read up to,
                // with its unfinished line: it takes over the line reader
                // (its partial line and read position), reading the copy.
                std::mem::swap(&mut copy_reader.lines, &mut reader.lines);
                std::mem::swap(
                    &mut copy_reader.lines.get_mut().file,
                    &mut reader.lines.get_mut().file,
                );
                out.events.push(FollowEvent::ResumedRotated {
                    path: path.clone(),
                    found,
                    inode: copy_reader.inode,
                    offset: copy_reader.offset,
                });
                out.more |= copy_reader
                    .read_available(&path, sink, budget, &mut p.counters, out)
                    .map_err(|e| io_message("read", &copy_reader.found_at, &e))?;
                // Finished (and its last partial line delivered) by the rotated loop.
                p.rotated.push(copy_reader);
            }
            None => {
                // The rest of a held partial line is gone with the old content.
                out.lines += reader.finish(&path, sink, &mut p.counters, &mut out.events);
            }
        }
        reader.restart_at(0);
        reader.fingerprint = 0;
        reader.fingerprint_checked = None;
        Ok(())
    }

    fn set_state(&mut self, idx: usize, state: PathState, out: &mut PollOutcome) {
        let p = &mut self.paths[idx];
        if p.state == state {
            return;
        }
        let was_error = matches!(p.state, PathState::Error(_));
        match &state {
            PathState::Error(message) => {
                p.counters.errors += 1;
                out.events.push(FollowEvent::Error {
                    path: p.path.clone(),
                    message: message.clone(),
                });
            }
            _ if was_error => out.events.push(FollowEvent::Recovered {
                path: p.path.clone(),
            }),
            _ => {}
        }
        p.state = state;
    }

    /// Positions to save: for each path, rotated files still being finished
    /// (oldest first), then the current file. Each offset is the byte after
    /// the last line delivered.
    pub fn positions(&self) -> Vec<FilePosition> {
        let mut out = Vec::new();
        for p in &self.paths {
            out.extend(p.rotated.iter().map(|r| r.position(&p.path)));
            if let Some(r) = &p.current {
                out.push(r.position(&p.path));
            }
        }
        out
    }

    pub fn status(&self) -> Vec<PathStatus> {
        self.paths
            .iter()
            .map(|p| PathStatus {
                path: p.path.clone(),
                state: p.state.clone(),
                inode: p.current.as_ref().map(|r| r.inode),
                offset: p.current.as_ref().map(|r| r.offset),
                rotated_open: p.rotated.len(),
                lines: p.counters.lines,
                truncated_lines: p.counters.truncated_lines,
                errors: p.counters.errors,
            })
            .collect()
    }

    /// The most recent error message, for a health table (kept after recovery;
    /// `status()` tells whether a path is in error now).
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Blocks until inotify reports something, a rotated file's wait expires,
    /// the fallback interval passes, or `timeout` — whichever is first.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let mut sleep = timeout.min(self.options.fallback_interval);
        for p in &self.paths {
            for r in &p.rotated {
                let left = r.linger.saturating_sub(r.last_data.elapsed());
                sleep = sleep.min(left + Duration::from_millis(1));
            }
        }
        let mut pfd = libc::pollfd {
            fd: self.inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(sleep.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, count 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // Drain the events: they are only wake-ups, poll() rechecks everything.
        let mut buf = [0u8; 4096];
        loop {
            match self.inotify.read_events(&mut buf) {
                Ok(events) => {
                    if events.count() == 0 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Offset just after the last newline (so a line being written is read whole).
fn end_of_last_line(file: &File, max_line: usize) -> io::Result<u64> {
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(0);
    }
    let window = size.min(max_line as u64);
    let start = size - window;
    let mut buf = vec![0u8; usize::try_from(window).unwrap_or(max_line)];
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read_at(&mut buf[filled..], start + filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(match memchr::memrchr(b'\n', &buf[..filled]) {
        Some(nl) => start + nl as u64 + 1,
        // No newline in the last max_line bytes: skip that (over-long) line.
        None => size,
    })
}

// The follower runs on its own thread: keep it Send.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<LogFollower>();
};
