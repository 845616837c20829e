//! Where to resume when the log source changed between two runs (the
//! journal before, a file now, or the other way round), so that a line is
//! counted once: not lost, not twice.
//!
//! The typical case: Postfix logged to the journal only, the agent counted
//! from it, then rsyslog was installed and `/var/log/mail.log` appeared. The
//! file holds again what the journal gave (from rsyslog's start on), plus
//! what came while the agent was stopped.
//!
//! The resume point is the *mark*: the last line counted from the old
//! source, in the syslog form both sources share (`TIME HOST TAG: TEXT`).
//! In the new source, the line with the same `TAG: TEXT` within a few
//! seconds of the mark's time is the same log entry; what follows it is new.
//! If no such line is there (the old source saw something the new one did
//! not), lines stamped no later than the mark count as seen. Comparing
//! times alone would not do: rsyslog stamps a line when it receives it, a
//! little after the journal's time of the same entry.

use super::follow::FilePosition;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How far apart the two sources' times of one entry may be.
const SAME_ENTRY_WINDOW_US: i64 = 5_000_000;
/// The mark is read from at most this many bytes before a saved offset.
const MARK_SEARCH_BYTES: u64 = 64 * 1024;
/// A line is cut here when compared (a log line can be huge).
const MAX_COMPARED_BYTES: usize = 8 * 1024;

/// When a line was logged, as an interval: RFC 3339 stamps are exact to the
/// microsecond; traditional ones (`Dec  5 21:04:31`) cover a whole second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTime {
    pub first_us: i64,
    pub last_us: i64,
}

/// A log line split into its time and the part from the tag on.
#[derive(Debug, PartialEq, Eq)]
pub struct SyslogLine<'a> {
    pub time: LineTime,
    /// `postfix/smtpd[123]: connect from ...`: the host name is left out,
    /// since the journal and rsyslog may spell it differently.
    pub tail: &'a [u8],
}

/// Splits `TIME HOST TAG: TEXT`; None if the line has no time we can read.
pub fn split_syslog_line<'a>(line: &'a [u8], tz: &jiff::tz::TimeZone) -> Option<SyslogLine<'a>> {
    let line = &line[..line.len().min(MAX_COMPARED_BYTES)];
    let (time, rest) = if line.first()?.is_ascii_digit() {
        let end = memchr::memchr(b' ', line)?;
        let stamp: jiff::Timestamp = std::str::from_utf8(&line[..end]).ok()?.parse().ok()?;
        let us = stamp.as_microsecond();
        (
            LineTime {
                first_us: us,
                last_us: us,
            },
            &line[end + 1..],
        )
    } else {
        // "Mmm dd hh:mm:ss " with the day padded by a space: 16 bytes.
        let text = std::str::from_utf8(line.get(..15)?).ok()?;
        if line.get(15) != Some(&b' ') {
            return None;
        }
        (traditional_time(text, tz)?, &line[16..])
    };
    let host_end = memchr::memchr(b' ', rest)?;
    Some(SyslogLine {
        time,
        tail: &rest[host_end + 1..],
    })
}

/// `Dec  5 21:04:31` has no year: the one that puts it not more than a day
/// in the future.
fn traditional_time(text: &str, tz: &jiff::tz::TimeZone) -> Option<LineTime> {
    let now = jiff::Timestamp::now().to_zoned(tz.clone());
    for year in [now.year(), now.year() - 1] {
        let civil =
            jiff::civil::DateTime::strptime("%Y %b %e %H:%M:%S", format!("{year} {text}")).ok()?;
        let zoned = civil.to_zoned(tz.clone()).ok()?;
        let first_us = zoned.timestamp().as_microsecond();
        if first_us <= now.timestamp().as_microsecond() + 86_400_000_000 {
            return Some(LineTime {
                first_us,
                last_us: first_us + 999_999,
            });
        }
    }
    None
}

/// The last line counted from the old source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    time: LineTime,
    tail: Vec<u8>,
}

impl Mark {
    /// None if the line has no readable time.
    pub fn from_line(line: &[u8], tz: &jiff::tz::TimeZone) -> Option<Mark> {
        let split = split_syslog_line(line, tz)?;
        Some(Mark {
            time: split.time,
            tail: split.tail.to_vec(),
        })
    }

    /// A mark known only by its time: a journal cursor's `t=` field (the
    /// entry's time in microseconds, hexadecimal), for a state saved before
    /// the last line was.
    pub fn from_journal_cursor(cursor: &str) -> Option<Mark> {
        let hex = cursor.split(';').find_map(|f| f.strip_prefix("t="))?;
        let us = i64::from_str_radix(hex, 16).ok()?;
        Some(Mark {
            time: LineTime {
                first_us: us,
                last_us: us,
            },
            tail: Vec::new(),
        })
    }

    /// When the mark was logged (its first microsecond).
    pub fn first_us(&self) -> i64 {
        self.time.first_us
    }

    fn is_same_entry(&self, line: &SyslogLine) -> bool {
        !self.tail.is_empty()
            && line.tail == self.tail.as_slice()
            && (line.time.first_us - self.time.first_us).abs() <= SAME_ENTRY_WINDOW_US
    }

    /// Logged no later than the mark (within the mark's precision).
    fn not_later(&self, line: &SyslogLine) -> bool {
        line.time.first_us <= self.time.last_us
    }
}

/// The last complete line that ends at `offset` in `file` (the line a saved
/// file position was taken after), as a mark.
pub fn mark_before(file: &File, offset: u64, tz: &jiff::tz::TimeZone) -> io::Result<Option<Mark>> {
    let start = offset.saturating_sub(MARK_SEARCH_BYTES);
    let mut buf = Vec::new();
    let mut reader = file;
    reader.seek(SeekFrom::Start(start))?;
    reader.take(offset - start).read_to_end(&mut buf)?;
    // The byte before `offset` is the saved line's newline.
    let body = match buf.last() {
        Some(b'\n') => &buf[..buf.len() - 1],
        _ => return Ok(None),
    };
    let line_start = memchr::memrchr(b'\n', body).map_or(0, |p| p + 1);
    if line_start == 0 && start > 0 {
        // The line is longer than what was read: no usable mark.
        return Ok(None);
    }
    Ok(Mark::from_line(&body[line_start..], tz))
}

/// Where to start reading a file that may repeat what the old source gave:
/// after the mark's own line if the file has it, else after the last line
/// logged no later than the mark, else at 0.
pub fn file_offset_after(file: &File, mark: &Mark, tz: &jiff::tz::TimeZone) -> io::Result<u64> {
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    reader.seek(SeekFrom::Start(0))?;
    let mut line = Vec::new();
    let mut offset = 0u64;
    let mut same_entry_end = None;
    let mut not_later_end = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break; // end of file, or a line still being written
        }
        offset += n as u64;
        let Some(split) = split_syslog_line(&line[..line.len() - 1], tz) else {
            continue;
        };
        if mark.is_same_entry(&split) {
            same_entry_end = Some(offset);
        } else if mark.not_later(&split) {
            not_later_end = offset;
        } else if split.time.first_us > mark.time.last_us + SAME_ENTRY_WINDOW_US {
            break; // past the window: nothing further can be the mark
        }
    }
    Ok(same_entry_end.unwrap_or(not_later_end))
}

/// Opens a log file without blocking and only if it is a regular file.
fn open_log_file(path: &Path) -> io::Result<File> {
    crate::file_trust::open_regular(path, false).map(|(file, _)| file)
}

/// The mark of saved file positions: the last line read from the newest
/// file that is still where it was. None if none is.
pub fn mark_of_saved_files(saved: &[FilePosition]) -> Option<Mark> {
    let tz = jiff::tz::TimeZone::system();
    // positions() lists each path's rotated files first, its current file last.
    saved.iter().rev().find_map(|pos| {
        let file = open_log_file(&pos.path).ok()?;
        let meta = file.metadata().ok()?;
        if (meta.dev(), meta.ino()) != (pos.dev, pos.inode) || meta.len() < pos.offset {
            return None;
        }
        mark_before(&file, pos.offset, &tz).ok().flatten()
    })
}

/// Positions in `paths` right after what the journal gave (its last line
/// counted, or failing that the time in its cursor), for the files that
/// exist. A file missing now has no position and is read whole when it
/// appears: all of it is new.
pub fn positions_after_journal(
    paths: &[PathBuf],
    last_line: Option<&str>,
    cursor: Option<&str>,
) -> Vec<FilePosition> {
    let tz = jiff::tz::TimeZone::system();
    let mark = last_line
        .and_then(|l| Mark::from_line(l.as_bytes(), &tz))
        .or_else(|| cursor.and_then(Mark::from_journal_cursor));
    let Some(mark) = mark else {
        return Vec::new();
    };
    paths
        .iter()
        .filter_map(|path| {
            let file = open_log_file(path).ok()?;
            let offset = file_offset_after(&file, &mark, &tz).ok()?;
            FilePosition::of_open_file(path, &file, offset).ok()
        })
        .collect()
}

/// Skips, in a stream of lines from the new source, those the old source
/// already gave: everything up to and including the mark's own line, or,
/// without it, the lines logged no later than the mark.
#[derive(Debug)]
pub struct CatchUp {
    mark: Mark,
    done: bool,
    tz: jiff::tz::TimeZone,
}

impl CatchUp {
    pub fn new(mark: Mark) -> CatchUp {
        CatchUp {
            mark,
            done: false,
            tz: jiff::tz::TimeZone::system(),
        }
    }

    /// Whether `line` was counted from the old source already.
    pub fn already_counted(&mut self, line: &[u8]) -> bool {
        if self.done {
            return false;
        }
        let Some(split) = split_syslog_line(line, &self.tz) else {
            return false;
        };
        if self.mark.is_same_entry(&split) {
            self.done = true;
            return true;
        }
        if self.mark.not_later(&split) {
            return true;
        }
        self.done = true;
        false
    }

    pub fn mark(&self) -> &Mark {
        &self.mark
    }

    /// True once the first new line has been seen.
    pub fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn utc() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::UTC
    }

    fn file_with(lines: &[&str]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f
    }

    #[test]
    fn splits_both_timestamp_styles() {
        let l = split_syslog_line(
            b"2026-12-05T21:04:31.123456+00:00 mx1 postfix/smtpd[12]: connect from a[192.0.2.1]",
            &utc(),
        )
        .unwrap();
        assert_eq!(l.tail, b"postfix/smtpd[12]: connect from a[192.0.2.1]");
        assert_eq!(l.time.first_us, l.time.last_us);
        assert_eq!(l.time.first_us % 1_000_000, 123_456);
        let year = jiff::Timestamp::now().to_zoned(utc()).year();
        let t = split_syslog_line(
            b"Jan  5 01:02:03 mx1.example.org postfix/qmgr[7]: x",
            &utc(),
        )
        .unwrap();
        assert_eq!(t.tail, b"postfix/qmgr[7]: x");
        assert_eq!(t.time.last_us - t.time.first_us, 999_999);
        let want = jiff::civil::date(year, 1, 5)
            .at(1, 2, 3, 0)
            .to_zoned(utc())
            .unwrap()
            .timestamp()
            .as_microsecond();
        assert_eq!(t.time.first_us, want);
        assert_eq!(split_syslog_line(b"garbage", &utc()), None);
        assert_eq!(split_syslog_line(b"", &utc()), None);
        assert_eq!(
            split_syslog_line(b"2026-13-45T00:00:00Z h t: x", &utc()),
            None
        );
    }

    #[test]
    fn file_resumes_after_the_marks_own_line_even_if_stamped_later() {
        // The journal's time of the last entry is .100; rsyslog stamped the
        // same entry and the one before it a little later.
        let mark = Mark::from_line(
            b"2026-12-05T10:00:00.100000+00:00 journalhost postfix/local[9]: ABC: status=sent",
            &utc(),
        )
        .unwrap();
        let lines = [
            "2026-12-05T09:59:59.000000+00:00 mx postfix/pickup[8]: ABC: uid=0",
            "2026-12-05T10:00:00.101000+00:00 mx postfix/qmgr[7]: ABC: from=<a>",
            "2026-12-05T10:00:00.102000+00:00 mx postfix/local[9]: ABC: status=sent",
            "2026-12-05T10:00:00.200000+00:00 mx postfix/qmgr[7]: ABC: removed",
        ];
        let f = file_with(&lines);
        let off = file_offset_after(&f, &mark, &utc()).unwrap();
        assert_eq!(
            off as usize,
            lines[..3].iter().map(|l| l.len() + 1).sum::<usize>()
        );
    }

    #[test]
    fn file_without_the_mark_resumes_after_what_is_not_later() {
        let mark =
            Mark::from_line(b"2026-12-05T10:00:00.5+00:00 h postfix/x[1]: gone", &utc()).unwrap();
        let old = "2026-12-05T10:00:00.400000+00:00 mx postfix/a[1]: old";
        let f = file_with(&[old, "2026-12-05T10:00:00.600000+00:00 mx postfix/a[1]: new"]);
        assert_eq!(
            file_offset_after(&f, &mark, &utc()).unwrap(),
            old.len() as u64 + 1
        );
        // A file that starts after the mark is new from its first byte.
        let f = file_with(&["2026-12-05T11:00:00+00:00 mx postfix/a[1]: later"]);
        assert_eq!(file_offset_after(&f, &mark, &utc()).unwrap(), 0);
        // An incomplete last line is not passed.
        let older = "2026-12-05T09:00:00+00:00 mx postfix/a[1]: older";
        let mut f = file_with(&[older]);
        write!(f, "2026-12-05T09:00:01+00:00 mx postfix/a[1]: part").unwrap();
        assert_eq!(
            file_offset_after(&f, &mark, &utc()).unwrap(),
            older.len() as u64 + 1
        );
    }

    #[test]
    fn mark_before_reads_the_line_that_ends_at_the_offset() {
        let lines = [
            "2026-12-05T10:00:00+00:00 mx postfix/a[1]: one",
            "2026-12-05T10:00:01+00:00 mx postfix/a[1]: two",
            "2026-12-05T10:00:02+00:00 mx postfix/a[1]: three",
        ];
        let f = file_with(&lines);
        let after_two = (lines[0].len() + lines[1].len() + 2) as u64;
        let m = mark_before(&f, after_two, &utc()).unwrap().unwrap();
        assert_eq!(m.tail, b"postfix/a[1]: two");
        let m = mark_before(&f, lines[0].len() as u64 + 1, &utc())
            .unwrap()
            .unwrap();
        assert_eq!(m.tail, b"postfix/a[1]: one");
        assert_eq!(mark_before(&f, 0, &utc()).unwrap(), None);
        // Not at a line end: no mark.
        assert_eq!(mark_before(&f, after_two - 1, &utc()).unwrap(), None);
    }

    #[test]
    fn cursor_time_is_a_mark_without_a_line() {
        let m = Mark::from_journal_cursor("s=abc;i=1f;b=def;m=12;t=5f0a1b2c3d4e5;x=99").unwrap();
        assert_eq!(m.first_us(), 0x5f0a1b2c3d4e5);
        assert_eq!(Mark::from_journal_cursor("s=abc;i=1f"), None);
        // Only the time decides (0x5f0a1b2c3d4e5 µs is in 2022).
        let before = "2020-01-01T00:00:00+00:00 h postfix/a[1]: x";
        let f = file_with(&[before, "2030-01-01T00:00:00+00:00 h postfix/a[1]: y"]);
        assert_eq!(
            file_offset_after(&f, &m, &utc()).unwrap(),
            before.len() as u64 + 1
        );
    }

    #[test]
    fn saved_positions_and_journal_lines_map_to_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        let lines = [
            "2026-12-05T10:00:00.000001+00:00 mx postfix/a[1]: one",
            "2026-12-05T10:00:00.000002+00:00 mx postfix/a[1]: two",
        ];
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
        let first_end = lines[0].len() as u64 + 1;
        // The journal's last line was "one": the file resumes after it.
        let journal_line = "2026-12-05T10:00:00.000000+00:00 other-name postfix/a[1]: one";
        let pos = positions_after_journal(std::slice::from_ref(&path), Some(journal_line), None);
        assert_eq!(pos.len(), 1);
        assert_eq!(pos[0].offset, first_end);
        // And back: a position after "one" gives "one" as the mark.
        let mark = mark_of_saved_files(&pos).unwrap();
        assert_eq!(mark.tail, b"postfix/a[1]: one");
        // A FIFO at the path is neither opened blockingly nor read.
        let fifo = dir.path().join("fifo.log");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(positions_after_journal(&[fifo], Some(journal_line), None).is_empty());
    }

    #[test]
    fn catch_up_skips_up_to_the_mark_and_then_nothing() {
        // The file's last line, stamped by rsyslog at .102 with second
        // precision lost: traditional format.
        let mark = Mark::from_line(
            b"Dec  5 10:00:00 mx postfix/local[9]: ABC: status=sent",
            &utc(),
        )
        .unwrap();
        let base = mark.first_us();
        let line = |us: i64, tail: &str| {
            let t = jiff::Timestamp::from_microsecond(base + us)
                .unwrap()
                .to_zoned(utc());
            format!("{} h {tail}", t.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z")).into_bytes()
        };
        let mut c = CatchUp::new(mark.clone());
        c.tz = utc();
        assert!(c.already_counted(&line(-5_000_000, "postfix/a[1]: older")));
        assert!(c.already_counted(&line(100_000, "postfix/qmgr[7]: ABC: from=<a>")));
        assert!(c.already_counted(&line(101_000, "postfix/local[9]: ABC: status=sent")));
        assert!(c.finished());
        // In the same second as the mark, but after its own line: new.
        assert!(!c.already_counted(&line(300_000, "postfix/qmgr[7]: ABC: removed")));
        assert!(c.finished());
        assert!(!c.already_counted(&line(-9_000_000, "postfix/a[1]: out of order")));

        // Without the mark's own line: the mark's whole second counts as seen.
        let mut c = CatchUp::new(mark);
        c.tz = utc();
        assert!(c.already_counted(&line(500_000, "postfix/b[2]: same second")));
        assert!(!c.already_counted(&line(1_000_000, "postfix/b[2]: next second")));
    }
}
