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

use std::io::{self, Read};

/// Bytes of a line that are kept; the rest of a longer line is skipped.
pub const MAX_KEPT_LINE: usize = 64 * 1024;
/// Bytes asked from the source per read.
const CHUNK: usize = 1024 * 1024;

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
            let window = &self.buf[self.start + self.scanned..self.end];
            if let Some(pos) = memchr::memchr(b'\n', window) {
                let line_end = self.start + self.scanned + pos;
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
