//! Reason class and SMTP status class of a rejection, from Postfix's own
//! wording in the reply text. The client chooses the `<address>` and the
//! envelope summary after `; from=<`, so neither is searched.

use super::bytes::{find_byte, set_mask64, ByteSet};
use super::tokens::{skip_address, split_digits, split_token};
use crate::snapshot::RejectReason;
use memchr::memmem;

/// The SMTP status class of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Temporary,
    Permanent,
    Unknown,
}

/// Reason class and SMTP status class of `reject: ...` text (after the
/// `reject:` token). smtpd/postscreen: `CMD from host[addr][:port]: 550 5.7.1
/// <addr>: reason; from=<..> ...`; cleanup: `header|body TEXT from ...; ...:
/// 5.7.1 text`.
pub(super) fn classify_reject(
    program: &[u8],
    milter: bool,
    text: &[u8],
) -> (RejectReason, StatusClass) {
    if program == b"cleanup" && !milter {
        let class = match memmem::rfind(text, b">: ") {
            Some(at) => status_class(&text[at + 3..]),
            None => StatusClass::Unknown,
        };
        let (what, _) = split_token(text);
        let reason = if matches!(
            what,
            b"header" | b"body" | b"mime-header" | b"nested-header"
        ) {
            RejectReason::HeaderBodyCheck
        } else if memmem::find(text, b"too big").is_some() {
            RejectReason::Size
        } else {
            RejectReason::Other
        };
        return (reason, class);
    }
    // smtpd / postscreen / milter: skip `CMD from host[addr][:port]: `.
    let reply = match find_byte(text, b']') {
        Some(close) => {
            let after = &text[close + 1..];
            let after = match after.strip_prefix(b":") {
                Some(port) if port.first().is_some_and(u8::is_ascii_digit) => split_digits(port).1,
                _ => after,
            };
            after.strip_prefix(b": ").unwrap_or(after)
        }
        None => text,
    };
    let class = status_class(reply);
    if program == b"postscreen" {
        return (RejectReason::Postscreen, class);
    }
    if milter {
        return (RejectReason::Milter, class);
    }
    // Skip the reply code, the enhanced status and an `<address>: ` the
    // client chose, then look at Postfix's wording.
    let (code, after) = split_token(reply);
    let mut reason_text = if code.len() == 3 { after } else { reply };
    if reason_text.first().is_some_and(u8::is_ascii_digit) {
        reason_text = split_token(reason_text).1;
    }
    if let Some(addr) = reason_text.strip_prefix(b"<") {
        if let Some(after) = skip_address(addr) {
            reason_text = after.strip_prefix(b": ").unwrap_or(after);
        }
    }
    (reject_reason(reason_text), class)
}

/// Postfix's wording for each reason class, in the order they are tried:
/// where a text holds several, the first in this list decides.
const REASON_WORDING: [(&[u8], RejectReason); 12] = [
    (b"blocked using ", RejectReason::Rbl),
    (b"User unknown", RejectReason::UnknownUser),
    (b"user unknown", RejectReason::UnknownUser),
    (b"Relay access denied", RejectReason::RelayDenied),
    (b"Message size exceeds fixed limit", RejectReason::Size),
    (b"message file too big", RejectReason::Size),
    (b"Sender address rejected", RejectReason::SenderCheck),
    (b"Helo command rejected", RejectReason::HeloCheck),
    (b"Client host rejected", RejectReason::ClientCheck),
    (b"Policy Rejection", RejectReason::PolicyService),
    (b"Greylisted", RejectReason::PolicyService),
    (b"policy service", RejectReason::PolicyService),
];

/// Where smtpd's envelope summary starts: the reason text ends there.
const ENVELOPE: &[u8] = b"; from=<";
/// Bit in [`FIRST_BYTES`] for the start of [`ENVELOPE`].
const ENVELOPE_BIT: u16 = 1 << 15;

/// For each byte, the wordings (bit `i` for `REASON_WORDING[i]`) that start
/// with it, so one pass over the text finds them all.
static FIRST_BYTES: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < REASON_WORDING.len() {
        table[REASON_WORDING[i].0[0] as usize] |= 1 << i;
        i += 1;
    }
    table[ENVELOPE[0] as usize] |= ENVELOPE_BIT;
    table
};

/// The first four bytes of each wording (all are longer), little-endian:
/// a candidate position is dropped with one compare instead of a call.
const WORDING_HEADS: [u32; REASON_WORDING.len()] = {
    let mut heads = [0u32; REASON_WORDING.len()];
    let mut i = 0;
    while i < REASON_WORDING.len() {
        let w = REASON_WORDING[i].0;
        heads[i] = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        i += 1;
    }
    heads
};

/// The bytes that start a wording or the envelope.
static STARTING_BYTES: ByteSet = {
    let mut bytes = [0u8; REASON_WORDING.len() + 1];
    let mut i = 0;
    while i < REASON_WORDING.len() {
        bytes[i] = REASON_WORDING[i].0[0];
        i += 1;
    }
    bytes[i] = ENVELOPE[0];
    ByteSet::new(&bytes)
};

/// The reason class of smtpd's reply text (after any `<address>: `), up
/// to the envelope summary: the wording that comes first in
/// [`REASON_WORDING`] wins. The positions where a wording could start are
/// found 64 bytes at a time with vector compares; only those are looked
/// at (most bytes of a text start none).
#[doc(hidden)]
pub fn reject_reason(text: &[u8]) -> RejectReason {
    let mut best = REASON_WORDING.len();
    let mut base = 0;
    'text: while base < text.len() {
        let mut starts = set_mask64(&text[base..], &STARTING_BYTES);
        while starts != 0 {
            let at = base + starts.trailing_zeros() as usize;
            starts &= starts - 1;
            let rest = &text[at..];
            let mut candidates = FIRST_BYTES[usize::from(rest[0])];
            if candidates & ENVELOPE_BIT != 0 && rest.starts_with(ENVELOPE) {
                break 'text;
            }
            candidates &= !ENVELOPE_BIT;
            let Some(head) = rest.get(..4) else {
                continue;
            };
            let head = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            while candidates != 0 {
                let i = candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                if i < best && WORDING_HEADS[i] == head && rest.starts_with(REASON_WORDING[i].0) {
                    best = i;
                }
            }
            if best == 0 {
                break 'text;
            }
        }
        base += 64;
    }
    REASON_WORDING
        .get(best)
        .map_or(RejectReason::Other, |(_, reason)| *reason)
}

/// [`reject_reason`] one byte at a time, with no shortcut: the definition
/// it is tested against (unit test and the `log_line` fuzz target).
#[doc(hidden)]
#[cfg(any(test, feature = "oracles"))]
pub fn reject_reason_bytewise(text: &[u8]) -> RejectReason {
    let mut best = REASON_WORDING.len();
    for (at, &byte) in text.iter().enumerate() {
        let mut candidates = FIRST_BYTES[usize::from(byte)];
        if candidates == 0 {
            continue;
        }
        if candidates & ENVELOPE_BIT != 0 && text[at..].starts_with(ENVELOPE) {
            break;
        }
        candidates &= !ENVELOPE_BIT;
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if i < best && text[at..].starts_with(REASON_WORDING[i].0) {
                best = i;
            }
        }
        if best == 0 {
            break;
        }
    }
    REASON_WORDING
        .get(best)
        .map_or(RejectReason::Other, |(_, reason)| *reason)
}

/// `4...` → temporary, `5...` → permanent (SMTP code or enhanced status).
#[inline]
fn status_class(reply: &[u8]) -> StatusClass {
    match reply.first() {
        Some(b'4') => StatusClass::Temporary,
        Some(b'5') => StatusClass::Permanent,
        _ => StatusClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_reason_priority_and_envelope_end() {
        let reason = |t: &str| reject_reason(t.as_bytes());
        assert_eq!(
            reason("Client host rejected: x; blocked using zen; from=<a> to=<b>"),
            RejectReason::Rbl
        );
        assert_eq!(
            reason("Sender address rejected: undeliverable: user unknown"),
            RejectReason::UnknownUser
        );
        // Sender-controlled envelope text after `; from=<` does not count.
        assert_eq!(
            reason("Some text; from=<blocked using @x> to=<User unknown@y>"),
            RejectReason::Other
        );
        assert_eq!(
            reason("Greylisted, see http://x"),
            RejectReason::PolicyService
        );
        assert_eq!(reason(""), RejectReason::Other);
    }

    /// The vector search and the byte loop agree on texts built from
    /// the wordings, pieces of them, the envelope and other bytes, in every
    /// order and overlap a small generator reaches.
    #[test]
    fn reject_reason_search_agrees_with_the_byte_loop() {
        let mut pieces: Vec<&[u8]> = REASON_WORDING.iter().map(|(w, _)| *w).collect();
        pieces.extend([
            ENVELOPE, b"; from", b"; ", b"Us", b"bl", b"x", b" ", b";", b"\xff", b"\0",
        ]);
        for (w, _) in REASON_WORDING {
            pieces.push(&w[..w.len() / 2]);
            pieces.push(&w[1..]);
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200_000 {
            let mut text = Vec::new();
            for _ in 0..next(6) {
                text.extend_from_slice(pieces[next(pieces.len())]);
            }
            let want = reject_reason_bytewise(&text);
            assert_eq!(
                reject_reason(&text),
                want,
                "{:?}",
                String::from_utf8_lossy(&text)
            );
            seen.insert(format!("{want:?}"));
        }
        // Every class a wording names (eight), and Other, came out.
        assert_eq!(seen.len(), 9, "{seen:?}");
    }
}
