//! Small byte-token helpers shared by the line grammar (`prefix`,
//! `message`, `reject`): numbers, space-separated tokens, quoted addresses.

use super::bytes::{find_byte, find_either};

/// Out of line: only rare lines need a pid (see `prefix::Tag::pid`).
#[inline(never)]
pub(super) fn parse_u32(digits: &[u8]) -> Option<u32> {
    if digits.len() > 10 {
        return None;
    }
    parse_u64(digits).and_then(|value| u32::try_from(value).ok())
}

#[inline]
pub(super) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    Some(value)
}

/// Leading ASCII digits of `s`, and the rest.
#[inline]
pub(super) fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    s.split_at(n)
}

/// The first space-separated token and the text after the space.
#[inline]
pub(super) fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    match find_byte(s, b' ') {
        Some(sp) => (&s[..sp], &s[sp + 1..]),
        None => (s, &[][..]),
    }
}

/// Skip an address after its opening `<`, honouring `"..."` quoting with
/// backslash escapes, and return the text after the closing `>`.
#[inline]
pub(super) fn skip_address(s: &[u8]) -> Option<&[u8]> {
    // Fast path: no quote before the first `>` (nearly every address).
    let at = find_either(s, b'>', b'"')?;
    if s[at] == b'>' {
        return Some(&s[at + 1..]);
    }
    let mut in_quote = false;
    let mut i = at;
    while i < s.len() {
        match s[i] {
            b'>' if !in_quote => return Some(&s[i + 1..]),
            b'"' => in_quote = !in_quote,
            b'\\' if in_quote => i += 1,
            _ => {}
        }
        i += 1;
    }
    None
}
