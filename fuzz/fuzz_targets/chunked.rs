//! A reader that hands out its data in pseudo-random pieces, including
//! zero-length reads in the middle ("end of file for now", as a growing log
//! file looks to a follower), so framing code sees every possible split.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

pub struct ChunkedReader<'a> {
    data: &'a [u8],
    pos: usize,
    state: u64,
    /// Whether zero-length reads may come before the data is over.
    allow_pauses: bool,
    /// Set once every byte was handed out (visible after the reader moved).
    done: Rc<Cell<bool>>,
}

impl<'a> ChunkedReader<'a> {
    pub fn new(data: &'a [u8], seed: u64, allow_pauses: bool) -> ChunkedReader<'a> {
        ChunkedReader {
            data,
            pos: 0,
            // xorshift must not start at 0.
            state: seed | 1,
            allow_pauses,
            done: Rc::new(Cell::new(data.is_empty())),
        }
    }

    /// A handle that tells whether all data has been read.
    pub fn done_flag(&self) -> Rc<Cell<bool>> {
        self.done.clone()
    }

    fn next_size(&mut self) -> usize {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        match x % 16 {
            0 if self.allow_pauses => 0,
            1 => 1 + (x >> 8) as usize % 100_000,
            _ => 1 + (x >> 8) as usize % 64,
        }
    }

    pub fn next_chunk(&mut self, max: usize) -> &'a [u8] {
        let n = self.next_size().min(max).min(self.data.len() - self.pos);
        let chunk = &self.data[self.pos..self.pos + n];
        self.pos += n;
        if self.pos >= self.data.len() {
            self.done.set(true);
        }
        chunk
    }
}

impl Read for ChunkedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let chunk = self.next_chunk(buf.len());
        buf[..chunk.len()].copy_from_slice(chunk);
        Ok(chunk.len())
    }
}

/// Splits a fuzz input into a seed (first 8 bytes) and the data.
pub fn seed_and_data(input: &[u8]) -> (u64, &[u8]) {
    if input.len() < 8 {
        return (0x9e37_79b9_7f4a_7c15, input);
    }
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&input[..8]);
    (u64::from_le_bytes(seed), &input[8..])
}
