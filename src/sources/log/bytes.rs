//! Byte searches in short texts (tokens, addresses, log lines), where
//! a general memchr's per-call setup costs more than the search.

/// For each needle, a mask with bit `i` set where `block[i]` is that needle;
/// bytes past a block shorter than 64 count as no needle. NUL is never a
/// needle here.
#[inline(always)]
pub fn masks64<const N: usize>(block: &[u8], needles: [u8; N]) -> [u64; N] {
    match block.get(..64).and_then(|b| <&[u8; 64]>::try_from(b).ok()) {
        Some(full) => full_masks(full, needles),
        None => {
            let mut padded = [0u8; 64];
            padded[..block.len()].copy_from_slice(block);
            full_masks(&padded, needles)
        }
    }
}

/// A set of bytes, tested sixteen at a time by their two halves: a byte
/// is in the set when the bit that the `high` table gives its high nibble
/// is set in what the `low` table gives its low nibble. One bit per
/// distinct high nibble keeps the test exact (at most eight of them).
pub struct ByteSet {
    low: [u8; 16],
    high: [u8; 16],
    members: [bool; 256],
}

impl ByteSet {
    pub const fn new(bytes: &[u8]) -> ByteSet {
        let mut set = ByteSet {
            low: [0; 16],
            high: [0; 16],
            members: [false; 256],
        };
        let mut bits_used = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let (hi, lo) = ((b >> 4) as usize, (b & 0xF) as usize);
            if set.high[hi] == 0 {
                assert!(bits_used < 8, "more than eight high nibbles");
                set.high[hi] = 1 << bits_used;
                bits_used += 1;
            }
            set.low[lo] |= set.high[hi];
            set.members[b as usize] = true;
            i += 1;
        }
        assert!(
            !set.members[0],
            "NUL pads short blocks: it cannot be a member"
        );
        set
    }
}

/// Bit `i` set where `block[i]` is in `set`; bytes past a block shorter
/// than 64 count as not in it.
#[inline]
pub fn set_mask64(block: &[u8], set: &ByteSet) -> u64 {
    let mut padded = [0u8; 64];
    let full = match block.get(..64) {
        Some(full) => full,
        None => {
            padded[..block.len()].copy_from_slice(block);
            &padded
        }
    };
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("ssse3") {
            // SAFETY: the CPU has SSSE3 (checked just above).
            return unsafe { set_mask64_ssse3(full, set) };
        }
    }
    set_mask64_scalar(full, set)
}

/// [`set_mask64`] a byte at a time, for CPUs without SSSE3.
fn set_mask64_scalar(block: &[u8], set: &ByteSet) -> u64 {
    block.iter().enumerate().fold(0, |mask, (i, &b)| {
        mask | u64::from(set.members[usize::from(b)]) << i
    })
}

/// [`set_mask64`] with byte shuffles as 16-entry tables: a handful of
/// instructions per 16 bytes, whatever the size of the set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn set_mask64_ssse3(block: &[u8], set: &ByteSet) -> u64 {
    use std::arch::x86_64::{
        _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        _mm_setzero_si128, _mm_shuffle_epi8, _mm_srli_epi16,
    };
    // SAFETY (all loads): the tables are 16 bytes, `chunk` is 16 readable
    // bytes, and unaligned loads are allowed.
    let (low, high) = unsafe {
        (
            _mm_loadu_si128(set.low.as_ptr().cast()),
            _mm_loadu_si128(set.high.as_ptr().cast()),
        )
    };
    let nibble = _mm_set1_epi8(0x0F);
    let mut out = 0u64;
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
        let lo_bits = _mm_shuffle_epi8(low, _mm_and_si128(v, nibble));
        let hi_bits = _mm_shuffle_epi8(high, _mm_and_si128(_mm_srli_epi16(v, 4), nibble));
        let outside = _mm_cmpeq_epi8(_mm_and_si128(lo_bits, hi_bits), _mm_setzero_si128());
        let inside = !(_mm_movemask_epi8(outside) as u16);
        out |= u64::from(inside) << (16 * i);
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn full_masks<const N: usize>(block: &[u8; 64], needles: [u8; N]) -> [u64; N] {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let mut out = [0u64; N];
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics
        // are always available; `chunk` is 16 readable bytes and the load
        // needs no alignment.
        let bits = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            needles.map(|needle| {
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(needle as i8))) as u16
            })
        };
        for (mask, bits) in out.iter_mut().zip(bits) {
            *mask |= u64::from(bits) << (16 * i);
        }
    }
    out
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn full_masks<const N: usize>(block: &[u8; 64], needles: [u8; N]) -> [u64; N] {
    let mut out = [0u64; N];
    for (i, &b) in block.iter().enumerate() {
        for (mask, &needle) in out.iter_mut().zip(&needles) {
            *mask |= u64::from(b == needle) << i;
        }
    }
    out
}

/// Bit `i % 64` of `out[i / 64]` set where `blocks[i]` is `needle`, for
/// whole 64-byte blocks (`blocks.len() == 64 * out.len()`). Used to index
/// a whole read buffer once, so that finding each line's end is a bit scan.
pub fn byte_bitmap(blocks: &[u8], needle: u8, out: &mut [u64]) {
    debug_assert_eq!(blocks.len(), out.len() * 64);
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { byte_bitmap_avx2(blocks, needle, out) };
            return;
        }
    }
    for (block, word) in blocks.chunks_exact(64).zip(out.iter_mut()) {
        let block: &[u8; 64] = block.try_into().unwrap_or(&[0; 64]);
        let [mask] = full_masks(block, [needle]);
        *word = mask;
    }
}

/// [`byte_bitmap`] with 32-byte compares: half the instructions of SSE2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn byte_bitmap_avx2(blocks: &[u8], needle: u8, out: &mut [u64]) {
    use std::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };
    let pattern = _mm256_set1_epi8(needle as i8);
    for (block, word) in blocks.chunks_exact(64).zip(out.iter_mut()) {
        // SAFETY: `block` is 64 readable bytes; unaligned loads are allowed.
        let (lo, hi) = unsafe {
            (
                _mm256_loadu_si256(block.as_ptr().cast()),
                _mm256_loadu_si256(block.as_ptr().add(32).cast()),
            )
        };
        let lo = _mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, pattern)) as u32;
        let hi = _mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, pattern)) as u32;
        *word = u64::from(lo) | u64::from(hi) << 32;
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `word` that is zero. Borrows only run
/// upwards, so the lowest flagged byte is exact (higher ones may not be).
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(LO) & !word & HI
}

#[inline(always)]
fn word_at(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    u64::from_le_bytes(word)
}

/// Position of `needle` in a short haystack: eight bytes at a time with
/// the classic "has zero byte" trick.
#[inline(always)]
pub fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    let pattern = LO.wrapping_mul(u64::from(needle));
    find_by_words(haystack, |word| zero_bytes(word ^ pattern), |b| b == needle)
}

/// Position of the first `a` or `b` in a short haystack.
#[inline(always)]
pub fn find_either(haystack: &[u8], a: u8, b: u8) -> Option<usize> {
    let (pa, pb) = (LO.wrapping_mul(u64::from(a)), LO.wrapping_mul(u64::from(b)));
    find_by_words(
        haystack,
        |word| zero_bytes(word ^ pa) | zero_bytes(word ^ pb),
        |x| x == a || x == b,
    )
}

/// Position of the first `a`, `b` or `c` in a short haystack.
#[inline(always)]
pub fn find_any3(haystack: &[u8], a: u8, b: u8, c: u8) -> Option<usize> {
    let (pa, pb, pc) = (
        LO.wrapping_mul(u64::from(a)),
        LO.wrapping_mul(u64::from(b)),
        LO.wrapping_mul(u64::from(c)),
    );
    find_by_words(
        haystack,
        |word| zero_bytes(word ^ pa) | zero_bytes(word ^ pb) | zero_bytes(word ^ pc),
        |x| x == a || x == b || x == c,
    )
}

/// The first byte that `flag` marks (high bit of the byte in an 8-byte
/// little-endian word) or, in the last partial word, that `is_match` accepts.
#[inline(always)]
fn find_by_words(
    haystack: &[u8],
    flag: impl Fn(u64) -> u64,
    is_match: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let found = flag(word_at(chunk));
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&x| is_match(x))
        .map(|p| offset + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_matches_position() {
        let hay: Vec<u8> = (0..40u8).collect();
        for needle in 0..45u8 {
            for start in 0..hay.len() {
                let want = hay[start..].iter().position(|&b| b == needle);
                assert_eq!(find_byte(&hay[start..], needle), want);
            }
        }
    }

    #[test]
    fn find_any3_matches_position() {
        let hay: Vec<u8> = (0..40u8).rev().chain(0..40).collect();
        for (a, b, c) in [(3, 30, 17), (0, 39, 50), (50, 7, 60), (60, 61, 62)] {
            for start in 0..hay.len() {
                let want = hay[start..]
                    .iter()
                    .position(|&x| x == a || x == b || x == c);
                assert_eq!(find_any3(&hay[start..], a, b, c), want);
            }
        }
    }

    #[test]
    fn find_either_matches_position() {
        let hay: Vec<u8> = (0..40u8).rev().chain(0..40).collect();
        for (a, b) in [(3, 30), (0, 39), (50, 7), (60, 61)] {
            for start in 0..hay.len() {
                let want = hay[start..].iter().position(|&x| x == a || x == b);
                assert_eq!(find_either(&hay[start..], a, b), want);
            }
        }
    }

    #[test]
    fn masks_mark_every_needle_in_full_and_short_blocks() {
        let block: Vec<u8> = (0..64u8).map(|i| b"ab\n /"[usize::from(i) % 5]).collect();
        for len in [0, 1, 16, 33, 63, 64] {
            let [nl, slash] = masks64(&block[..len], [b'\n', b'/']);
            for (i, &b) in block[..len].iter().enumerate() {
                assert_eq!(nl >> i & 1 == 1, b == b'\n', "len {len} byte {i}");
                assert_eq!(slash >> i & 1 == 1, b == b'/', "len {len} byte {i}");
            }
            assert_eq!(
                nl >> len.min(63) >> (len / 64),
                if len == 64 { nl >> 63 } else { 0 }
            );
        }
    }

    #[test]
    fn set_mask_marks_every_member_in_full_and_short_blocks() {
        const SET: ByteSet = ByteSet::new(b"bUuRMmSHCPGp;\xff");
        let block: Vec<u8> = (0..64u32).map(|i| (i * 37 % 251) as u8 + 1).collect();
        let members = b"bUuRMmSHCPGp;\xff";
        for block in [
            block,
            b"xUser unknown; from=<Relay access\xff\x80p;;bG".to_vec(),
        ] {
            for len in [0, 1, 15, 16, 17, 40, 63, 64]
                .into_iter()
                .filter(|&l| l <= block.len())
            {
                let mask = set_mask64(&block[..len], &SET);
                for (i, b) in block.iter().enumerate() {
                    let want = i < len && members.contains(b);
                    assert_eq!(mask >> i & 1 == 1, want, "len {len} byte {i}");
                }
            }
        }
        // Every byte value, in and out of the set, by both paths.
        let all: Vec<u8> = (0..=255u8).collect();
        for block in all.chunks(64) {
            let mask = set_mask64(block, &SET);
            assert_eq!(set_mask64_scalar(block, &SET), mask);
            for (i, b) in block.iter().enumerate() {
                assert_eq!(mask >> i & 1 == 1, members.contains(b), "byte {b:#x}");
            }
        }
    }

    #[test]
    fn bitmap_marks_every_needle() {
        let data: Vec<u8> = (0..640u32)
            .map(|i| b"ab\n /x\n"[(i * 7 % 11 % 7) as usize])
            .collect();
        let mut out = vec![0u64; 10];
        byte_bitmap(&data, b'\n', &mut out);
        for (i, &b) in data.iter().enumerate() {
            assert_eq!(out[i / 64] >> (i % 64) & 1 == 1, b == b'\n', "byte {i}");
        }
    }
}
