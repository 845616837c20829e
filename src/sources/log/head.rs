//! Byte positions in the head of a log line, found once per line.
//!
//! Everything the parser needs after the timestamp and before the event
//! text (host, tag, the `[` and `/` inside the tag, the queue id) lies in the
//! `HEAD` bytes after the timestamp of nearly every line. [`HeadIndex`]
//! compares those bytes against space, `/` and `[` sixteen at a time and
//! keeps one bit per byte, so each later search is a shift and a count of
//! trailing zeros instead of a loop. Searches outside the head fall back to
//! [`find_byte`].

use super::bytes::{find_byte, masks64};

/// Bytes of a line covered by the bit masks.
pub(super) const HEAD: usize = 64;

/// Bit `i` is set when byte `base + i` of the line is the byte searched for.
type Mask = u64;

pub struct HeadIndex<'a> {
    pub(super) line: &'a [u8],
    /// Where the head starts in the line.
    pub(super) base: usize,
    pub(super) space: Mask,
    pub(super) slash: Mask,
    pub(super) open: Mask,
}

impl<'a> HeadIndex<'a> {
    /// Index `line[base..base + HEAD]`; positions are given in `line`.
    #[inline]
    pub fn new(line: &'a [u8], base: usize) -> HeadIndex<'a> {
        let tail = line.get(base..).unwrap_or_default();
        let masks = masks64(tail, [b' ', b'/', b'[']);
        HeadIndex {
            line,
            base,
            space: masks[0],
            slash: masks[1],
            open: masks[2],
        }
    }

    /// Position of the first space at or after `from` (`from >= base`).
    #[inline(always)]
    pub fn space_from(&self, from: usize) -> Option<usize> {
        let end = self.base + HEAD;
        if from < end {
            let rest = self.space >> (from - self.base);
            if rest != 0 {
                return Some(from + rest.trailing_zeros() as usize);
            }
        }
        let from = from.max(end);
        find_byte(self.line.get(from..)?, b' ').map(|p| from + p)
    }

    /// The token starting at `start` and the text after its space.
    #[inline(always)]
    pub fn token_at(&self, start: usize) -> (&'a [u8], &'a [u8]) {
        let line = self.line;
        match self.space_from(start) {
            Some(sp) => (&line[start..sp], &line[sp + 1..]),
            None => (line.get(start..).unwrap_or_default(), &[][..]),
        }
    }

    /// First `[` in `from..to` (`base <= from <= to <= line.len()`).
    #[inline(always)]
    pub fn first_open(&self, from: usize, to: usize) -> Option<usize> {
        self.first_in(self.open, b'[', from, to)
    }

    /// First `/` in `from..to`.
    #[inline(always)]
    pub fn first_slash(&self, from: usize, to: usize) -> Option<usize> {
        self.first_in(self.slash, b'/', from, to)
    }

    /// Last `/` in `from..to`.
    #[inline(always)]
    pub fn last_slash(&self, from: usize, to: usize) -> Option<usize> {
        let (lo, hi) = (from - self.base, to - self.base);
        if hi < HEAD {
            // Keep the bits below `hi`; the highest one must be at or after `lo`.
            let below = self.slash & ((1 << hi) - 1);
            let last = (Mask::BITS - 1).wrapping_sub(below.leading_zeros()) as usize;
            return (below != 0 && last >= lo).then_some(self.base + last);
        }
        self.line[from..to]
            .iter()
            .rposition(|&b| b == b'/')
            .map(|p| from + p)
    }

    #[inline(always)]
    fn first_in(&self, mask: Mask, needle: u8, from: usize, to: usize) -> Option<usize> {
        let (lo, hi) = (from - self.base, to - self.base);
        if hi < HEAD {
            // `lo <= hi < 64`: the first bit at or after `lo` must be before `hi`.
            let at = lo + (mask >> lo).trailing_zeros() as usize;
            return (at < hi).then_some(self.base + at);
        }
        find_byte(&self.line[from..to], needle).map(|p| from + p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every search agrees with a plain byte loop, for lines shorter and
    /// longer than the head and ranges across its end.
    #[test]
    fn searches_agree_with_byte_loops() {
        let mut line = Vec::new();
        for i in 0..300usize {
            line.push(match i % 13 {
                0 => b' ',
                5 => b'/',
                9 => b'[',
                _ => b'a' + (i % 26) as u8,
            });
        }
        for (len, base) in [
            (0, 0),
            (1, 0),
            (15, 0),
            (16, 3),
            (17, 0),
            (63, 0),
            (64, 0),
            (65, 0),
        ]
        .into_iter()
        .chain([
            (100, 20),
            (127, 63),
            (128, 64),
            (129, 65),
            (200, 7),
            (300, 33),
        ]) {
            let line = &line[..len];
            let idx = HeadIndex::new(line, base.min(len));
            for from in base.min(len)..=len {
                let want = line[from..]
                    .iter()
                    .position(|&b| b == b' ')
                    .map(|p| from + p);
                assert_eq!(idx.space_from(from), want, "len {len} from {from}");
                for to in from..=len {
                    let part = &line[from..to];
                    let first = |n: u8| part.iter().position(|&b| b == n).map(|p| from + p);
                    assert_eq!(idx.first_open(from, to), first(b'['));
                    assert_eq!(idx.first_slash(from, to), first(b'/'));
                    let last = part.iter().rposition(|&b| b == b'/').map(|p| from + p);
                    assert_eq!(idx.last_slash(from, to), last, "len {len} {from}..{to}");
                }
            }
        }
    }

    #[test]
    fn token_at_splits_at_the_next_space() {
        let idx = HeadIndex::new(b"ab cd", 0);
        assert_eq!(idx.token_at(0), (&b"ab"[..], &b"cd"[..]));
        assert_eq!(idx.token_at(3), (&b"cd"[..], &b""[..]));
        assert_eq!(idx.token_at(9), (&b""[..], &b""[..]));
    }
}
