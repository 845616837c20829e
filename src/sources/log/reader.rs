//! Chunked line splitter over any `Read`.
//!
//! Lines are handed out as byte slices borrowed from one reusable buffer,
//! so reading does not allocate per line. A line longer than
//! [`MAX_KEPT_LINE`] is cut: its first bytes are kept (enough to classify a
//! Postfix line) and the rest is skipped up to the newline; it still counts
//! as one line. Bytes after the last newline are not a line yet: when the
//! source reports end of file they stay buffered (see
//! [`LineReader::pending_bytes`]) and a later call continues once more data
//! (and the newline) arrives, which is what a file follower needs.

use super::bytes::masks64;
use std::io::{self, Read};

/// Bytes of a line that are kept; the rest of a longer line is skipped.
pub const MAX_KEPT_LINE: usize = 64 * 1024;
/// Bytes asked from the source per read.
const CHUNK: usize = 128 * 1024;

pub struct LineReader<R> {
    source: R,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The head of an over-long line being skipped up to its newline.
    long_head: Vec<u8>,
    skipping: bool,
    /// Bytes skipped of the current over-long line (beyond `long_head`).
    skipped_in_line: u64,
    /// Total bytes of complete lines (newline included) handed out.
    consumed: u64,
    /// Where the next newline search starts (relative to `start`), so a
    /// partial line is not rescanned after every read.
    scanned: usize,
    /// Newlines of `buf[nl_base..nl_limit]` (at most 64 bytes) as a bit
    /// mask: one vector compare per 64 bytes instead of a memchr call per
    /// line. Emptied whenever the buffer's bytes move.
    nl_base: usize,
    nl_limit: usize,
    nl_mask: u64,
}

impl<R: Read> LineReader<R> {
    pub fn new(source: R) -> LineReader<R> {
        LineReader {
            source,
            buf: vec![0; CHUNK + MAX_KEPT_LINE],
            start: 0,
            end: 0,
            long_head: Vec::new(),
            skipping: false,
            skipped_in_line: 0,
            consumed: 0,
            scanned: 0,
            nl_base: 0,
            nl_limit: 0,
            nl_mask: 0,
        }
    }

    /// Total bytes of the complete lines returned so far, newlines included:
    /// the offset in the source where the next unread line starts.
    pub fn consumed_bytes(&self) -> u64 {
        self.consumed
    }

    /// Bytes after the last complete line that wait for their newline.
    pub fn pending_bytes(&self) -> u64 {
        let kept = if self.skipping {
            self.long_head.len() as u64 + self.skipped_in_line
        } else {
            0
        };
        kept + (self.end - self.start) as u64
    }

    /// The kept head of the partial last line (after end of file).
    pub fn partial_line(&self) -> &[u8] {
        if self.skipping {
            &self.long_head
        } else {
            &self.buf[self.start..self.end]
        }
    }

    /// The next complete line without its newline, or `None` at the end of
    /// the data available now (a partial last line stays buffered; calling
    /// again after the source grew continues with it).
    pub fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            if let Some(line_end) = self.next_newline(self.start + self.scanned) {
                let line_start = self.start;
                self.start = line_end + 1;
                self.scanned = 0;
                if self.skipping {
                    self.skipping = false;
                    let skipped = (line_end - line_start) as u64 + self.skipped_in_line;
                    self.consumed += self.long_head.len() as u64 + skipped + 1;
                    self.skipped_in_line = 0;
                    return Ok(Some(&self.long_head));
                }
                self.consumed += (line_end + 1 - line_start) as u64;
                let line = &self.buf[line_start..line_end];
                if line.len() > MAX_KEPT_LINE {
                    return Ok(Some(&self.buf[line_start..line_start + MAX_KEPT_LINE]));
                }
                return Ok(Some(line));
            }
            self.scanned = self.end - self.start;
            if !self.make_room() {
                return Ok(None);
            }
            let n = loop {
                match self.source.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.end += n;
        }
    }

    /// Position of the first newline in `buf[from..end]`.
    #[inline]
    fn next_newline(&mut self, mut from: usize) -> Option<usize> {
        if from < self.nl_base || from >= self.nl_limit {
            if from >= self.end {
                return None;
            }
            self.load_newlines(from);
        }
        loop {
            let shift = from - self.nl_base;
            let ahead = if shift < 64 { self.nl_mask >> shift } else { 0 };
            if ahead != 0 {
                return Some(from + ahead.trailing_zeros() as usize);
            }
            if self.nl_limit >= self.end {
                return None;
            }
            from = self.nl_limit;
            self.load_newlines(from);
        }
    }

    #[inline]
    fn load_newlines(&mut self, at: usize) {
        let limit = self.end.min(at + 64);
        let [mask] = masks64(&self.buf[at..limit], [b'\n']);
        self.nl_base = at;
        self.nl_limit = limit;
        self.nl_mask = mask;
    }

    /// Make space at the end of the buffer; `false` if nothing can be read.
    fn make_room(&mut self) -> bool {
        // Every branch below may move bytes: forget the newline mask.
        self.nl_base = 0;
        self.nl_limit = 0;
        let pending = self.end - self.start;
        if self.skipping {
            // Only the newline matters now: drop what we have.
            self.skipped_in_line += pending as u64;
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
            return true;
        }
        if pending >= MAX_KEPT_LINE {
            // Over-long line: keep its head, skip the rest.
            self.long_head.clear();
            self.long_head
                .extend_from_slice(&self.buf[self.start..self.start + MAX_KEPT_LINE]);
            self.skipped_in_line = (pending - MAX_KEPT_LINE) as u64;
            self.skipping = true;
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
            return true;
        }
        if self.end == self.buf.len() || self.start > 0 && self.buf.len() - self.end < CHUNK / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end = pending;
            self.start = 0;
        }
        self.end < self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    fn all_lines<R: Read>(reader: &mut LineReader<R>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push(line.to_vec());
        }
        out
    }

    /// A source that returns at most `step` bytes per read.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn splits_lines_with_nul_and_invalid_utf8() {
        let data = b"one\n\xff\xfe two\x00\n\nlast".to_vec();
        let mut r = LineReader::new(&data[..]);
        assert_eq!(
            all_lines(&mut r),
            vec![b"one".to_vec(), b"\xff\xfe two\x00".to_vec(), Vec::new()]
        );
        // The last line has no newline: it is not handed out as a line.
        assert_eq!(r.partial_line(), b"last");
        assert_eq!(r.pending_bytes(), 4);
        assert_eq!(r.consumed_bytes(), data.len() as u64 - 4);
    }

    #[test]
    fn same_lines_whatever_the_read_sizes() {
        let mut data = Vec::new();
        for i in 0..5000 {
            data.extend_from_slice(format!("line number {i} {}\n", "x".repeat(i % 300)).as_bytes());
        }
        let whole = all_lines(&mut LineReader::new(&data[..]));
        for step in [1, 7, 4096, 1 << 20] {
            let mut r = LineReader::new(Trickle {
                data: data.clone(),
                pos: 0,
                step,
            });
            assert_eq!(all_lines(&mut r), whole, "step {step}");
            assert_eq!(r.consumed_bytes(), data.len() as u64);
        }
        assert_eq!(whole.len(), 5000);
    }

    #[test]
    fn huge_line_is_cut_and_counts_once() {
        let mut data = b"before\n".to_vec();
        data.extend_from_slice(b"Nov 29 13:13:38 mx postfix/smtpd[1]: warning: ");
        data.extend_from_slice(&vec![b'a'; 5 * 1024 * 1024]);
        data.extend_from_slice(b"\nafter\n");
        for step in [1 << 20, 65536, 1000] {
            let mut r = LineReader::new(Trickle {
                data: data.clone(),
                pos: 0,
                step,
            });
            let lines = all_lines(&mut r);
            assert_eq!(lines.len(), 3, "step {step}");
            assert_eq!(lines[0], b"before");
            assert_eq!(lines[1].len(), MAX_KEPT_LINE);
            assert!(lines[1].starts_with(b"Nov 29 13:13:38 mx postfix/smtpd[1]: warning: "));
            assert_eq!(lines[2], b"after");
            assert_eq!(r.consumed_bytes(), data.len() as u64);
        }
    }

    /// A file that grows: reads see only what was appended so far.
    #[derive(Clone, Default)]
    struct Growing(Rc<RefCell<(Vec<u8>, usize)>>);

    impl Read for Growing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut inner = self.0.borrow_mut();
            let (data, pos) = &mut *inner;
            let n = buf.len().min(data.len() - *pos);
            buf[..n].copy_from_slice(&data[*pos..*pos + n]);
            *pos += n;
            Ok(n)
        }
    }

    #[test]
    fn partial_last_line_waits_for_its_newline() {
        let file = Growing::default();
        let mut r = LineReader::new(file.clone());
        file.0.borrow_mut().0.extend_from_slice(b"first\nsec");
        assert_eq!(r.next_line().unwrap(), Some(&b"first"[..]));
        assert_eq!(r.next_line().unwrap(), None);
        assert_eq!(r.pending_bytes(), 3);
        file.0.borrow_mut().0.extend_from_slice(b"ond\nthi");
        assert_eq!(r.next_line().unwrap(), Some(&b"second"[..]));
        assert_eq!(r.next_line().unwrap(), None);
        file.0.borrow_mut().0.extend_from_slice(b"rd\n");
        assert_eq!(r.next_line().unwrap(), Some(&b"third"[..]));
        assert_eq!(r.next_line().unwrap(), None);
        assert_eq!(r.pending_bytes(), 0);
        assert_eq!(r.consumed_bytes(), 19);
    }

    #[test]
    fn partial_huge_line_waits_too() {
        let file = Growing::default();
        let mut r = LineReader::new(file.clone());
        file.0
            .borrow_mut()
            .0
            .extend_from_slice(&vec![b'z'; 3 * MAX_KEPT_LINE]);
        assert_eq!(r.next_line().unwrap(), None);
        assert_eq!(r.pending_bytes(), 3 * MAX_KEPT_LINE as u64);
        file.0.borrow_mut().0.extend_from_slice(b"zz\nnext\n");
        assert_eq!(r.next_line().unwrap().map(<[u8]>::len), Some(MAX_KEPT_LINE));
        assert_eq!(r.next_line().unwrap(), Some(&b"next"[..]));
        assert_eq!(r.consumed_bytes(), 3 * MAX_KEPT_LINE as u64 + 8);
    }
}
