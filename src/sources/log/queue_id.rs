//! Postfix queue ids, as they appear after the tag (`4F3A21C0D2:`) and in
//! `forwarded as NEWID` / `notification: NEWID`.

/// Byte classes of queue ids: `QID_SHORT` for upper-case hex, `QID_LONG`
/// for the vowel-free base-52 alphabet of long ids (and `z`, their
/// separator).
const QID_SHORT: u8 = 1;
const QID_LONG: u8 = 2;
static QID_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_digit() || (c >= b'A' && c <= b'F') {
            table[b] |= QID_SHORT;
        }
        if c.is_ascii_alphanumeric() && !is_vowel(c) {
            table[b] |= QID_LONG;
        }
        b += 1;
    }
    table
};

/// Is `id` a Postfix queue id? Short form: upper-case hex (microseconds
/// then inode). Long form (`enable_long_queue_ids`): at least 10 characters
/// of the vowel-free base-52 alphabet, the separator `z`, then the inode in
/// base 51 (which has no `z`).
#[inline]
pub fn is_queue_id(id: &[u8]) -> bool {
    if id.len() < 6 || id.len() > 24 {
        return false;
    }
    if is_upper_hex(id) {
        return true;
    }
    let classes = id.iter().fold(QID_SHORT | QID_LONG, |all, &b| {
        all & QID_CLASS[usize::from(b)]
    });
    if id.len() < 12 || classes & QID_LONG == 0 {
        return false;
    }
    match id.iter().rposition(|&b| b == b'z') {
        Some(sep) => sep >= 10 && sep + 1 < id.len(),
        None => false,
    }
}

/// Are all bytes of `id` (6 to 24 of them) `0-9` or `A-F`? Eight bytes at a
/// time: a byte below 0x80 plus a constant stays inside its byte, so each
/// range test is two additions and the high bits.
#[inline]
fn is_upper_hex(id: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word_ok = |w: u64| {
        // Bytes from 0x80 up are never hex; below, no sum leaves its byte.
        if w & HIGH != 0 {
            return false;
        }
        let digit = !(w + 0x46 * LO) & (w + 0x50 * LO);
        let letter = !(w + 0x39 * LO) & (w + 0x3F * LO);
        (digit | letter) & HIGH == HIGH
    };
    let word_at = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&id[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let len = id.len();
    if len < 8 {
        return id
            .iter()
            .all(|&b| QID_CLASS[usize::from(b)] & QID_SHORT != 0);
    }
    // Whole words from the start, then the last eight bytes (overlapping).
    let mut at = 0;
    while at + 8 < len {
        if !word_ok(word_at(at)) {
            return false;
        }
        at += 8;
    }
    word_ok(word_at(len - 8))
}

#[inline]
const fn is_vowel(b: u8) -> bool {
    matches!(b | 0x20, b'a' | b'e' | b'i' | b'o' | b'u')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids() {
        for id in ["4F3A21C0D2", "C0D2A1", "4Mn3Yq0Xb3z9tQ1", "3ZQLFb6XTCz4wtN"] {
            assert!(is_queue_id(id.as_bytes()), "{id}");
        }
        for id in [
            "NOQUEUE",
            "warning",
            "4f3a21c0d2",
            "ABC",
            "reject",
            "4Mn3Yq0Xb39tQ1",
            "removed",
            "statuszzzzzzz",
            "",
        ] {
            assert!(!is_queue_id(id.as_bytes()), "{id}");
        }
    }

    #[test]
    fn upper_hex_check_matches_a_byte_by_byte_one() {
        let alphabet: Vec<u8> = (0u8..=255).collect();
        for len in 6..=24 {
            for &b in &alphabet {
                for pos in [0, len / 2, len - 1] {
                    let mut id = vec![b'7'; len];
                    id[pos] = b;
                    let want = id
                        .iter()
                        .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c));
                    assert_eq!(is_upper_hex(&id), want, "{id:?}");
                }
            }
        }
    }
}
