//! Chunked line splitter over any `Read`: the one splitter of the log, for
//! whole files (`count_files`) and the live follower (`follow`) alike.
//!
//! Lines are handed out as byte slices borrowed from one reusable buffer,
//! so reading does not allocate per line. A line longer than
//! [`MAX_KEPT_LINE`] (or the limit given to [`LineReader::with_max_line`])
//! is cut: its first bytes are kept (enough to classify a Postfix line) and
//! the rest is skipped up to the newline; it still counts as one line.
//! Bytes after the last newline are not a line yet: when the source reports
//! end of file they stay buffered (see [`LineReader::pending_bytes`]) and a
//! later call continues once more data (and the newline) arrives, which is
//! what the follower needs.

use super::bytes::byte_bitmap;
use std::io::{self, Read};

/// Bytes of a line that are kept; the rest of a longer line is skipped.
pub const MAX_KEPT_LINE: usize = 64 * 1024;
/// Bytes asked from the source per read.
const CHUNK: usize = 128 * 1024;
/// Bytes indexed for newlines at a time: small enough to stay in L1.
const INDEX_AHEAD: usize = 4096;

pub struct LineReader<R> {
    source: R,
    /// Bytes of a line that are kept.
    max_line: usize,
    /// `CHUNK + max_line` rounded up to whole 64-byte blocks, so the newline
    /// bitmap covers every byte.
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The head of an over-long line being skipped up to its newline.
    long_head: Vec<u8>,
    skipping: bool,
    /// Bytes skipped of the current over-long line (beyond `long_head`).
    skipped_in_line: u64,
    /// Bytes cut from the line last returned by `next_line`.
    cut: u64,
    /// Total bytes of complete lines (newline included) handed out.
    consumed: u64,
    /// Where the next newline search starts (relative to `start`), so a
    /// partial line is not rescanned after every read.
    scanned: usize,
    /// Newline bitmap of `buf` (bit `i % 64` of word `i / 64`), valid from
    /// the block holding `start + scanned` (searches never start before)
    /// up to `indexed`: finding a line's end is a bit scan, and the bitmap
    /// is filled a few KiB ahead with wide vector compares, so the bytes
    /// are still in the L1 cache when the lines are parsed.
    newlines: Vec<u64>,
    /// A multiple of 64; blocks from here on are not indexed yet.
    indexed: usize,
}

impl<R: Read> LineReader<R> {
    /// Lines cut at [`MAX_KEPT_LINE`] bytes.
    pub fn new(source: R) -> LineReader<R> {
        LineReader::with_max_line(source, MAX_KEPT_LINE)
    }

    /// Lines cut at `max_line` bytes.
    pub fn with_max_line(source: R, max_line: usize) -> LineReader<R> {
        let buf_len = (CHUNK + max_line).next_multiple_of(64);
        LineReader {
            source,
            max_line,
            buf: vec![0; buf_len],
            start: 0,
            end: 0,
            long_head: Vec::new(),
            skipping: false,
            skipped_in_line: 0,
            cut: 0,
            consumed: 0,
            scanned: 0,
            newlines: vec![0; buf_len / 64],
            indexed: 0,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.source
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.source
    }

    /// Forget the buffered bytes and the partial line, as if made anew over
    /// the source as it is now: [`LineReader::consumed_bytes`] counts from
    /// here again.
    pub fn restart(&mut self) {
        self.start = 0;
        self.end = 0;
        self.long_head.clear();
        self.skipping = false;
        self.skipped_in_line = 0;
        self.cut = 0;
        self.consumed = 0;
        self.scanned = 0;
        self.indexed = 0;
    }

    /// Bytes cut from the line last returned by [`LineReader::next_line`]
    /// (0 when it was returned whole). Not kept by
    /// [`LineReader::for_each_line`].
    pub fn last_cut(&self) -> u64 {
        self.cut
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
                    self.cut = skipped;
                    return Ok(Some(&self.long_head));
                }
                self.consumed += (line_end + 1 - line_start) as u64;
                let line = &self.buf[line_start..line_end];
                if line.len() > self.max_line {
                    self.cut = (line.len() - self.max_line) as u64;
                    return Ok(Some(&self.buf[line_start..line_start + self.max_line]));
                }
                self.cut = 0;
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
            // The block holding the old end was indexed partially.
            self.indexed = self.indexed.min(self.end / 64 * 64);
            self.end += n;
        }
    }

    /// Hand every complete line to `f`, reading the source until it has no
    /// more data: what calling [`LineReader::next_line`] until `None` does,
    /// with the common case (a complete line in the buffer) in one tight
    /// loop over the newline bitmap.
    pub fn for_each_line(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<()> {
        loop {
            if !self.skipping {
                self.scan_lines(&mut f);
            }
            // Refills, over-long lines and the end of the data.
            match self.next_line()? {
                Some(line) => f(line),
                None => return Ok(()),
            }
        }
    }

    /// The complete lines already in the buffer, in order.
    fn scan_lines(&mut self, f: &mut impl FnMut(&[u8])) {
        let end = self.end;
        let max_line = self.max_line;
        let mut pos = self.start;
        // The first `scanned` bytes have no newline (and may not be indexed).
        let from = pos + self.scanned;
        if from >= end {
            return;
        }
        let mut word = from / 64;
        self.ensure_indexed(word);
        let mut bits = self.newlines[word] & (!0u64 << (from % 64));
        loop {
            if bits == 0 {
                word += 1;
                if word * 64 >= end {
                    break;
                }
                self.ensure_indexed(word);
                bits = self.newlines[word];
                continue;
            }
            let newline = word * 64 + bits.trailing_zeros() as usize;
            if newline >= end {
                break;
            }
            bits &= bits - 1;
            let len = (newline - pos).min(max_line);
            f(&self.buf[pos..pos + len]);
            pos = newline + 1;
        }
        self.consumed += (pos - self.start) as u64;
        self.start = pos;
        // No newline in the rest: the next search starts at its end.
        self.scanned = end - pos;
    }

    /// Position of the first newline in `buf[from..end]`.
    #[inline]
    fn next_newline(&mut self, from: usize) -> Option<usize> {
        if from >= self.end {
            return None;
        }
        let mut word = from / 64;
        self.ensure_indexed(word);
        let mut bits = self.newlines[word] & (!0u64 << (from % 64));
        loop {
            if bits != 0 {
                // Bits past `end` are stale: a hit there means none before.
                let at = word * 64 + bits.trailing_zeros() as usize;
                return (at < self.end).then_some(at);
            }
            word += 1;
            if word * 64 >= self.end {
                return None;
            }
            self.ensure_indexed(word);
            bits = self.newlines[word];
        }
    }

    #[inline(always)]
    fn ensure_indexed(&mut self, word: usize) {
        if word * 64 >= self.indexed {
            self.index_from(word);
        }
    }

    /// Index the blocks from `word` on, up to `INDEX_AHEAD` bytes.
    #[inline(never)]
    fn index_from(&mut self, word: usize) {
        let last = self.end.min(word * 64 + INDEX_AHEAD).div_ceil(64);
        byte_bitmap(
            &self.buf[word * 64..last * 64],
            b'\n',
            &mut self.newlines[word..last],
        );
        self.indexed = last * 64;
    }

    /// Make space at the end of the buffer; `false` if nothing can be read.
    fn make_room(&mut self) -> bool {
        let pending = self.end - self.start;
        if self.skipping {
            // Only the newline matters now: drop what we have.
            self.skipped_in_line += pending as u64;
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
            return true;
        }
        if pending >= self.max_line {
            // Over-long line: keep its head, skip the rest.
            self.long_head.clear();
            self.long_head
                .extend_from_slice(&self.buf[self.start..self.start + self.max_line]);
            self.skipped_in_line = (pending - self.max_line) as u64;
            self.skipping = true;
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
            return true;
        }
        if self.end == self.buf.len() || self.start > 0 && self.buf.len() - self.end < CHUNK / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.indexed = 0;
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

    /// A smaller limit (the follower's option), with the bytes cut from each
    /// line reported, whether the line was whole in the buffer or not.
    #[test]
    fn lines_are_cut_at_the_given_limit_and_the_cut_is_reported() {
        let long = vec![b'x'; 300_000];
        let mut data = b"before\n".to_vec();
        data.extend_from_slice(&long);
        data.extend_from_slice(b"\n0123456789\n01234567890\nafter");
        for step in [7, 1000, usize::MAX] {
            let source = Trickle {
                data: data.clone(),
                pos: 0,
                step,
            };
            let mut r = LineReader::with_max_line(source, 10);
            let mut got = Vec::new();
            while let Some(line) = r.next_line().unwrap() {
                let line = line.to_vec();
                got.push((line, r.last_cut()));
            }
            assert_eq!(
                got,
                [
                    (b"before".to_vec(), 0),
                    (vec![b'x'; 10], 299_990),
                    (b"0123456789".to_vec(), 0),
                    (b"0123456789".to_vec(), 1),
                ],
                "{step}"
            );
            assert_eq!(r.partial_line(), b"after");
            assert_eq!(r.consumed_bytes(), data.len() as u64 - 5);
            r.restart();
            assert_eq!((r.pending_bytes(), r.consumed_bytes()), (0, 0));
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

    #[test]
    fn for_each_line_hands_out_what_next_line_does() {
        let mut data = Vec::new();
        for i in 0..3000 {
            data.extend_from_slice(format!("line {i} {}\n", "y".repeat(i * 37 % 700)).as_bytes());
        }
        data.extend_from_slice(&vec![b'L'; 3 * MAX_KEPT_LINE]);
        data.extend_from_slice(b"\nafter long\npartial");
        let mut one_by_one = LineReader::new(&data[..]);
        let want = all_lines(&mut one_by_one);
        for step in [1, 100, 4096, 1 << 20] {
            let mut r = LineReader::new(Trickle {
                data: data.clone(),
                pos: 0,
                step,
            });
            let mut got = Vec::new();
            r.for_each_line(|line| got.push(line.to_vec())).unwrap();
            assert_eq!(got.len(), want.len(), "step {step}");
            assert!(got == want, "step {step}");
            assert_eq!(r.consumed_bytes(), one_by_one.consumed_bytes());
            assert_eq!(r.partial_line(), b"partial");
        }
    }

    /// Pieces of 1 to 64 bytes (sometimes up to 100 000), and pauses: reads
    /// of nothing before the end, as a growing file gives.
    struct Pausing {
        data: Vec<u8>,
        pos: usize,
        state: u64,
    }

    impl Read for Pausing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.state = x;
            let size = match x % 16 {
                0 => 0,
                1 => 1 + (x >> 8) as usize % 100_000,
                _ => 1 + (x >> 8) as usize % 64,
            };
            let n = size.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn for_each_line_with_pauses_gives_every_line_once() {
        let mut data = Vec::new();
        for i in 0..4000usize {
            let len = match i % 97 {
                0 => MAX_KEPT_LINE + 5000,
                1 => 70_000,
                _ => (i * 7919) % 300,
            };
            data.extend((0..len).map(|j| b'a' + ((i + j) % 26) as u8));
            data.push(b'\n');
        }
        let want = all_lines(&mut LineReader::new(&data[..]));
        for seed in 1..40u64 {
            let mut r = LineReader::new(Pausing {
                data: data.clone(),
                pos: 0,
                state: seed * 0x9E37_79B9,
            });
            let mut got = Vec::new();
            // Each pause ends a call, as for a follower; call until done.
            for _ in 0..1_000_000 {
                r.for_each_line(|line| got.push(line.to_vec())).unwrap();
                if r.consumed_bytes() == data.len() as u64 {
                    break;
                }
            }
            assert_eq!(got.len(), want.len(), "seed {seed}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g == w,
                    "seed {seed} line {i}: {} vs {} bytes",
                    g.len(),
                    w.len()
                );
            }
        }
    }
}
