//! Counts queue files by reading the queue directories directly.
//!
//! Needs read access to the queue directories (mode 0700, owner `postfix`):
//! root, the `postfix` user or CAP_DAC_READ_SEARCH. Cheaper than showq, which
//! opens and parses every queue file, and it also sees `corrupt`.
//!
//! What counts as a message: a regular file whose name is a valid queue ID
//! (letters, digits, `_`; what Postfix's `mail_queue_id_ok()` accepts), found
//! in the queue directory or in a hashed subdirectory (any single-character
//! subdirectory, at any depth up to [`MAX_HASH_DEPTH`], as Postfix's
//! `mail_scan_dir_next()` does; so a changed `hash_queue_depth` or
//! `hash_queue_names` needs no configuration here). Everything else — other
//! names, symlinks (never followed), devices, other directories — is not a
//! message and is counted in `ignored`. Unlike showq, files that are still
//! being written (mode not yet 0700) are counted: reading the mode would need a
//! stat per file even for counts only.
//!
//! Bytes are queue file sizes (envelope records included), so slightly larger
//! than the message sizes showq reports.
//!
//! Arrival time: Postfix sets the mtime (and atime) of `deferred` files, and of
//! `active` files that came from there, to the next retry time
//! (`qmgr_active_defer()`), so mtime is not the arrival time there. The queue
//! file is created once by cleanup when the message arrives and is only renamed
//! between queues afterwards, so its birth time (statx `STX_BTIME`) is the
//! arrival time (for `maildrop`: when postdrop wrote it; the incoming file made
//! from it by pickup is a new file, a few milliseconds later). Where the file
//! system has no birth time we fall back to mtime, which is the arrival time in
//! `maildrop`, `incoming` and `hold` (for messages never deferred) and the
//! next retry time in `deferred`.
//!
//! A file or subdirectory vanishing during the scan (delivered, moved) is
//! normal and just not counted.

use crate::snapshot::QueueName;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Deepest hashed subdirectory level we descend into (Postfix allows up to 16).
pub const MAX_HASH_DEPTH: usize = 16;

/// Longest name we accept as a queue ID.
const MAX_QUEUE_ID_LEN: usize = 100;

/// How many entries to process between deadline checks.
const DEADLINE_CHECK_EVERY: u32 = 1024;

#[derive(Debug, Clone, Copy)]
pub struct DirScanOptions {
    /// Also sum sizes and find the oldest arrival (one statx per file).
    pub details: bool,
    /// Stop (with [`DirScanError::Timeout`]) when this passes.
    pub deadline: Instant,
    /// Threads for the hashed subdirectories of one queue.
    pub threads: usize,
}

/// Totals for one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirQueueTotals {
    pub messages: u64,
    pub bytes: u64,
    /// Oldest arrival as (seconds, nanoseconds) since the epoch.
    pub oldest: Option<(i64, u32)>,
    /// Directory entries that are not messages (see the module docs).
    pub ignored: u64,
    /// Files for which the file system gave no birth time (mtime was used).
    pub without_birth_time: u64,
}

impl DirQueueTotals {
    fn merge(&mut self, other: &DirQueueTotals) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.ignored += other.ignored;
        self.without_birth_time += other.without_birth_time;
        self.oldest = match (self.oldest, other.oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    pub fn oldest_system_time(&self) -> Option<SystemTime> {
        let (sec, nsec) = self.oldest?;
        let since_epoch = Duration::new(sec.unsigned_abs(), nsec);
        if sec >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(since_epoch)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(since_epoch)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DirScanError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    /// The deadline passed; `partial` holds what was counted so far.
    #[error("directory scan of {queue} exceeded its time budget")]
    Timeout {
        queue: &'static str,
        partial: DirQueueTotals,
    },
}

/// Counts one queue below `queue_directory`.
///
/// A missing queue directory counts as an empty queue (Postfix creates
/// `hold` and `corrupt` only when first needed on some systems).
pub fn scan_queue(
    queue_directory: &Path,
    queue: QueueName,
    options: &DirScanOptions,
) -> Result<DirQueueTotals, DirScanError> {
    let path = queue_directory.join(queue.name());
    let dir = match Dir::open_path(&path) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            tracing::debug!(path = %path.display(), "queue directory missing; counted as empty");
            return Ok(DirQueueTotals::default());
        }
        Err(source) => {
            return Err(DirScanError::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let timed_out = AtomicBool::new(false);
    let mut walker = Walker::new(options, &timed_out);
    let mut subdirs: Vec<Vec<u8>> = Vec::new();
    let label = path.display().to_string();
    walker
        .scan_dir(&dir, Some(&mut subdirs), 0)
        .map_err(|source| DirScanError::Io {
            path: label.clone(),
            source,
        })?;
    let mut totals = walker.totals;

    // Hashed subdirectories, spread over a few threads: with bytes and ages
    // the statx calls dominate, and they scale with cores.
    let threads = options.threads.clamp(1, subdirs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<DirQueueTotals, DirScanError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut walker = Walker::new(options, &timed_out);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(name) = subdirs.get(i) else { break };
                        let sub_label = format!("{label}/{}", String::from_utf8_lossy(name));
                        walker.scan_subdir(&dir, name, &sub_label, 1)?;
                        if walker.is_timed_out() {
                            break;
                        }
                    }
                    Ok(walker.totals)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(DirScanError::Io {
                        path: label.clone(),
                        source: io::Error::other("directory scan thread panicked"),
                    })
                })
            })
            .collect()
    });
    for r in results {
        totals.merge(&r?);
    }
    if timed_out.load(Ordering::Relaxed) {
        return Err(DirScanError::Timeout {
            queue: queue.name(),
            partial: totals,
        });
    }
    Ok(totals)
}

/// True if Postfix would accept `name` as a queue ID.
pub fn is_queue_id(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUEUE_ID_LEN
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

struct Walker<'a> {
    options: &'a DirScanOptions,
    timed_out: &'a AtomicBool,
    totals: DirQueueTotals,
    buf: Vec<u8>,
    since_check: u32,
}

impl<'a> Walker<'a> {
    fn new(options: &'a DirScanOptions, timed_out: &'a AtomicBool) -> Self {
        Walker {
            options,
            timed_out,
            totals: DirQueueTotals::default(),
            buf: vec![0u8; 64 * 1024],
            since_check: 0,
        }
    }

    fn is_timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    fn check_deadline(&mut self) -> bool {
        self.since_check += 1;
        if self.since_check >= DEADLINE_CHECK_EVERY {
            self.since_check = 0;
            if Instant::now() >= self.options.deadline {
                self.timed_out.store(true, Ordering::Relaxed);
            }
        }
        self.is_timed_out()
    }

    fn scan_subdir(
        &mut self,
        parent: &Dir,
        name: &[u8],
        label: &str,
        depth: usize,
    ) -> Result<(), DirScanError> {
        let io_err = |source| DirScanError::Io {
            path: label.to_owned(),
            source,
        };
        let dir = match parent.open_subdir(name) {
            Ok(d) => d,
            // Vanished, or replaced by something that is not a directory.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Ok(())
            }
            // O_NOFOLLOW on a symlink: not ours to follow.
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                self.totals.ignored += 1;
                return Ok(());
            }
            Err(e) => return Err(io_err(e)),
        };
        let mut subdirs = Vec::new();
        self.scan_dir(&dir, Some(&mut subdirs), depth)
            .map_err(io_err)?;
        for sub in subdirs {
            if self.is_timed_out() {
                break;
            }
            let sub_label = format!("{label}/{}", String::from_utf8_lossy(&sub));
            self.scan_subdir(&dir, &sub, &sub_label, depth + 1)?;
        }
        Ok(())
    }

    /// Counts the files of one directory; collects hash subdirectory names.
    fn scan_dir(
        &mut self,
        dir: &Dir,
        mut subdirs: Option<&mut Vec<Vec<u8>>>,
        depth: usize,
    ) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = (|| -> io::Result<()> {
            loop {
                let n = dir.getdents(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                for entry in DirentIter::new(&buf[..n]) {
                    if entry.name == b"." || entry.name == b".." {
                        continue;
                    }
                    if self.check_deadline() {
                        return Ok(());
                    }
                    let kind = match entry.d_type {
                        libc::DT_UNKNOWN => match dir.lstat_type(entry.c_name) {
                            Ok(k) => k,
                            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                            Err(e) => return Err(e),
                        },
                        t => t,
                    };
                    match kind {
                        libc::DT_REG if is_queue_id(entry.name) => {
                            self.count_file(dir, entry.c_name)?
                        }
                        libc::DT_DIR if entry.name.len() == 1 && depth < MAX_HASH_DEPTH => {
                            match subdirs.as_deref_mut() {
                                Some(list) => list.push(entry.name.to_vec()),
                                None => self.totals.ignored += 1,
                            }
                        }
                        _ => self.totals.ignored += 1,
                    }
                }
            }
        })();
        self.buf = buf;
        result
    }

    fn count_file(&mut self, dir: &Dir, name: &CStr) -> io::Result<()> {
        if !self.options.details {
            self.totals.messages += 1;
            return Ok(());
        }
        let st = match dir.statx(name) {
            Ok(st) => st,
            // Delivered or moved since the directory was read.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        };
        // Replaced by a symlink or something else between getdents and statx.
        if u32::from(st.stx_mode) & libc::S_IFMT != libc::S_IFREG {
            self.totals.ignored += 1;
            return Ok(());
        }
        self.totals.messages += 1;
        self.totals.bytes += st.stx_size;
        let time = if st.stx_mask & libc::STATX_BTIME != 0 {
            (st.stx_btime.tv_sec, st.stx_btime.tv_nsec)
        } else {
            self.totals.without_birth_time += 1;
            (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec)
        };
        self.totals.oldest = Some(match self.totals.oldest {
            Some(old) => old.min(time),
            None => time,
        });
        Ok(())
    }
}

/// An open directory, read with getdents64 and statx relative to its fd (no
/// path building, no symlink following).
struct Dir {
    fd: OwnedFd,
}

impl Dir {
    fn open_path(path: &Path) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        Self::openat(libc::AT_FDCWD, &c)
    }

    fn open_subdir(&self, name: &[u8]) -> io::Result<Dir> {
        let c = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
        Self::openat(self.fd.as_raw_fd(), &c)
    }

    fn openat(dirfd: libc::c_int, name: &CString) -> io::Result<Dir> {
        // SAFETY: name is a valid NUL-terminated string; the returned fd is
        // owned by us alone.
        let fd = unsafe {
            libc::openat(
                dirfd,
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly opened, valid descriptor.
        Ok(Dir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Fills `buf` with dirent64 records; returns the byte count (0 at end).
    fn getdents(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // The directory itself was removed while we read it.
                Some(libc::ENOENT) => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    fn statx(&self, name: &CStr) -> io::Result<libc::statx> {
        // SAFETY: all-zero is a valid statx value.
        let mut st: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd, NUL-terminated name and a writable statx buffer.
        let rc = unsafe {
            libc::statx(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC,
                libc::STATX_TYPE | libc::STATX_SIZE | libc::STATX_MTIME | libc::STATX_BTIME,
                &mut st,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st)
    }

    /// The DT_* type of an entry, for file systems that do not fill d_type.
    fn lstat_type(&self, name: &CStr) -> io::Result<u8> {
        let st = self.statx(name)?;
        Ok(match u32::from(st.stx_mode) & libc::S_IFMT {
            libc::S_IFREG => libc::DT_REG,
            libc::S_IFDIR => libc::DT_DIR,
            libc::S_IFLNK => libc::DT_LNK,
            _ => libc::DT_UNKNOWN,
        })
    }
}

struct Dirent<'a> {
    d_type: u8,
    name: &'a [u8],
    /// The same name with its NUL, for the *at() calls without a copy.
    c_name: &'a CStr,
}

/// Walks the `linux_dirent64` records in a getdents64 buffer:
/// `u64 d_ino, i64 d_off, u16 d_reclen, u8 d_type, char d_name[]` (NUL-terminated).
struct DirentIter<'a> {
    buf: &'a [u8],
}

impl<'a> DirentIter<'a> {
    fn new(buf: &'a [u8]) -> Self {
        DirentIter { buf }
    }
}

const DIRENT_NAME_OFFSET: usize = 19;

impl<'a> Iterator for DirentIter<'a> {
    type Item = Dirent<'a>;

    fn next(&mut self) -> Option<Dirent<'a>> {
        if self.buf.len() < DIRENT_NAME_OFFSET {
            return None;
        }
        let reclen = u16::from_ne_bytes([self.buf[16], self.buf[17]]) as usize;
        // The kernel never produces these; stop rather than misread.
        if reclen < DIRENT_NAME_OFFSET || reclen > self.buf.len() {
            return None;
        }
        let record = &self.buf[..reclen];
        self.buf = &self.buf[reclen..];
        let raw_name = &record[DIRENT_NAME_OFFSET..];
        // The kernel always NUL-terminates d_name inside d_reclen; a record
        // without one is skipped rather than misread.
        let name_len = memchr::memchr(0, raw_name)?;
        let c_name = CStr::from_bytes_with_nul(&raw_name[..=name_len]).ok()?;
        Some(Dirent {
            d_type: record[18],
            name: &raw_name[..name_len],
            c_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn options(details: bool) -> DirScanOptions {
        DirScanOptions {
            details,
            deadline: Instant::now() + Duration::from_secs(60),
            threads: 2,
        }
    }

    fn write(path: &Path, bytes: usize) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, vec![b'x'; bytes]).unwrap();
    }

    #[test]
    fn queue_ids() {
        assert!(is_queue_id(b"4F2A81C0B1"));
        assert!(is_queue_id(b"4YQ1sV0Jz3zHT6d"));
        assert!(!is_queue_id(b""));
        assert!(!is_queue_id(b".hidden"));
        assert!(!is_queue_id(b"a-b"));
        assert!(!is_queue_id(b"with space"));
        assert!(!is_queue_id(&[b'A'; 101]));
    }

    #[test]
    fn counts_flat_and_hashed_files() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path();
        write(&q.join("deferred/A/A1B2C3"), 10);
        write(&q.join("deferred/A/A1B2C4"), 20);
        write(&q.join("deferred/3/31B2C4"), 30);
        write(&q.join("deferred/3/F/3FB2C4"), 40); // hash_queue_depth 2
        write(&q.join("deferred/FLATFILE"), 5); // from before hashing was enabled
        write(&q.join("active/ABCDEF"), 7);
        fs::create_dir_all(q.join("hold")).unwrap();
        for details in [false, true] {
            let d = scan_queue(q, QueueName::Deferred, &options(details)).unwrap();
            assert_eq!(d.messages, 5);
            assert_eq!(d.ignored, 0);
            let a = scan_queue(q, QueueName::Active, &options(details)).unwrap();
            assert_eq!(a.messages, 1);
            let h = scan_queue(q, QueueName::Hold, &options(details)).unwrap();
            assert_eq!(h, DirQueueTotals::default());
            // Missing directory: empty, not an error.
            let c = scan_queue(q, QueueName::Corrupt, &options(details)).unwrap();
            assert_eq!(c.messages, 0);
            if details {
                assert_eq!(d.bytes, 105);
                assert!(d.oldest.is_some());
                assert_eq!(a.bytes, 7);
            } else {
                assert_eq!(d.bytes, 0);
                assert_eq!(d.oldest, None);
            }
        }
    }

    #[test]
    fn oldest_uses_birth_or_modification_time() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path();
        write(&q.join("hold/AAAA"), 1);
        let before = SystemTime::now() - Duration::from_secs(5);
        let d = scan_queue(q, QueueName::Hold, &options(true)).unwrap();
        let oldest = d.oldest_system_time().unwrap();
        assert!(oldest > before && oldest <= SystemTime::now(), "{oldest:?}");
        if d.without_birth_time == 1 {
            // No btime here: mtime is used, so an old mtime shows through.
            let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
            fs::File::options()
                .write(true)
                .open(q.join("hold/AAAA"))
                .unwrap()
                .set_modified(old)
                .unwrap();
            let d = scan_queue(q, QueueName::Hold, &options(true)).unwrap();
            assert_eq!(d.oldest_system_time(), Some(old));
        }
    }

    #[test]
    fn bad_names_symlinks_and_other_dirs_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path();
        write(&q.join("incoming/GOOD1"), 1);
        write(&q.join("incoming/bad-name"), 1);
        write(&q.join("incoming/.tmp"), 1);
        write(&q.join("incoming/with space"), 1);
        fs::create_dir_all(q.join("incoming/longdirname")).unwrap();
        write(&q.join("incoming/longdirname/INSIDE"), 1);
        // A symlink to a file and to a directory full of files: never followed.
        let outside = tmp.path().join("outside");
        write(&outside.join("X1"), 1);
        write(&outside.join("X2"), 1);
        symlink(outside.join("X1"), q.join("incoming/LINKED")).unwrap();
        symlink(&outside, q.join("incoming/B")).unwrap();
        for details in [false, true] {
            let r = scan_queue(q, QueueName::Incoming, &options(details)).unwrap();
            assert_eq!(r.messages, 1, "details={details}");
            assert_eq!(r.ignored, 6, "details={details}");
        }
    }

    #[test]
    fn symlinked_queue_directory_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path().join("q");
        write(&tmp.path().join("elsewhere/ABC"), 1);
        fs::create_dir_all(&q).unwrap();
        symlink(tmp.path().join("elsewhere"), q.join("active")).unwrap();
        let r = scan_queue(&q, QueueName::Active, &options(true));
        assert!(matches!(r, Err(DirScanError::Io { .. })), "{r:?}");
    }

    #[test]
    fn unreadable_queue_is_an_error() {
        if unsafe { libc::geteuid() } == 0 {
            // root reads everything; covered by the real-Postfix test as nobody.
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path();
        write(&q.join("active/ABC"), 1);
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(q.join("active"), fs::Permissions::from_mode(0o000)).unwrap();
        let r = scan_queue(q, QueueName::Active, &options(true));
        assert!(matches!(r, Err(DirScanError::Io { .. })), "{r:?}");
    }

    #[test]
    fn vanishing_files_and_directories_are_normal() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path().to_path_buf();
        for h in "0123456789ABCDEF".chars() {
            for i in 0..100 {
                write(&q.join(format!("deferred/{h}/{h}{i:05}")), 1);
            }
        }
        // Another thread deletes whole hash directories while we scan.
        let deleter = {
            let q = q.clone();
            std::thread::spawn(move || {
                for h in "0123456789ABCDEF".chars().rev() {
                    fs::remove_dir_all(q.join(format!("deferred/{h}"))).unwrap();
                }
            })
        };
        let mut scans = 0;
        while !deleter.is_finished() || scans == 0 {
            let r = scan_queue(&q, QueueName::Deferred, &options(true)).unwrap();
            assert!(r.messages <= 16 * 100);
            scans += 1;
        }
        deleter.join().unwrap();
        let r = scan_queue(&q, QueueName::Deferred, &options(true)).unwrap();
        assert_eq!(r.messages, 0);
    }

    #[test]
    fn deadline_gives_partial_result() {
        let tmp = tempfile::tempdir().unwrap();
        let q = tmp.path();
        for i in 0..5000 {
            write(&q.join(format!("active/A{i:05}")), 1);
        }
        let opts = DirScanOptions {
            details: true,
            deadline: Instant::now(),
            threads: 1,
        };
        match scan_queue(q, QueueName::Active, &opts) {
            Err(DirScanError::Timeout { partial, .. }) => assert!(partial.messages < 5000),
            other => panic!("expected timeout, got {other:?}"),
        }
    }

    #[test]
    fn dirent_iter_stops_on_bad_records() {
        // reclen 0 and reclen beyond the buffer must not loop or panic.
        let mut buf = vec![0u8; 40];
        assert_eq!(DirentIter::new(&buf).count(), 0);
        buf[16] = 200;
        assert_eq!(DirentIter::new(&buf).count(), 0);
        buf[16] = 24;
        buf[19] = b'A';
        let names: Vec<_> = DirentIter::new(&buf).map(|d| d.name.to_vec()).collect();
        assert_eq!(names, vec![b"A".to_vec()]);
    }
}
