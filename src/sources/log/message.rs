//! Classification of a Postfix line's message text (after the syslog
//! prefix, see [`prefix`](super::prefix)): `[QUEUEID: ]EVENT ...`.
//!
//! The event is decided by the first token after the queue id (or after the
//! tag when there is none), never by a substring found elsewhere: addresses,
//! header texts and remote replies are sender-controlled and must not move a
//! counter. Where a field after sender-controlled text is needed (qmgr's
//! `size=`, the delivery `status=`), the address is skipped with its quoting
//! honoured first.

use super::bytes::{find_byte, masks64};
use super::queue_id::is_queue_id;
use super::reject::{classify_reject, StatusClass};
use super::tokens::{parse_u64, skip_address, split_digits, split_token};
use crate::snapshot::RejectReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
    Fatal,
    Panic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// `prog[pid]: warning: ...` and friends. `sasl_failure` is set for
    /// smtpd's `warning: host[addr]: SASL METHOD authentication failed`.
    Severity {
        severity: Severity,
        sasl_failure: bool,
    },
    /// smtpd `connect from host[addr]`.
    SmtpdConnect,
    /// smtpd `disconnect from ...`: ends the session's pending actions.
    SmtpdDisconnect,
    /// smtpd `... TLS connection established from ...`.
    TlsIn,
    /// smtp/lmtp `... TLS connection established to ...`.
    TlsOut,
    /// An event about one message (`NOQUEUE` has `qid == None`).
    Message {
        qid: Option<&'a [u8]>,
        action: Action<'a>,
    },
    /// A Postfix line we do not count.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Sent,
    Deferred,
    Bounced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// smtpd/qmqpd `QID: client=...`: the message comes from a network client.
    Client,
    /// pickup `QID: uid=N from=<...>`: local submission.
    Pickup,
    /// cleanup `QID: message-id=...`: cleanup is processing the content.
    MessageId,
    /// qmgr `QID: from=<...>, size=N, nrcpt=N (queue active)`.
    QueueActive {
        size: u64,
    },
    /// qmgr `QID: from=<...>, status=expired, returned to sender`.
    Expired,
    /// A delivery agent's (or qmgr's) `QID: to=<...>, ..., status=...` line.
    Delivery {
        status: Status,
        delay_ms: u64,
        /// local(8) `status=sent (forwarded as NEWID)`.
        forwarded_as: Option<&'a [u8]>,
    },
    /// `reject:` / `milter-reject:` from smtpd, postscreen or cleanup.
    Reject {
        reason: RejectReason,
        class: StatusClass,
    },
    /// `hold:` / `milter-hold:` from smtpd or cleanup.
    Hold,
    /// `discard:` / `milter-discard:` from smtpd or cleanup.
    Discard,
    /// postsuper `QID: placed on hold`.
    PlacedOnHold,
    /// postsuper `QID: released from hold`.
    ReleasedFromHold,
    /// qmgr/postsuper `QID: removed`: the queue file is gone.
    Removed,
    /// bounce `QID: sender non-delivery notification: NEWID` (and the
    /// delivery status, delay and postmaster variants).
    Notification {
        new_qid: &'a [u8],
    },
    Other,
}
/// Classify the message text of a line from Postfix program `program` (the
/// tag's last part): its first token and the text after it.
#[inline(always)]
pub(super) fn classify<'a>(program: &[u8], first: &'a [u8], rest: &'a [u8]) -> Event<'a> {
    match first {
        b"warning:" => {
            return Event::Severity {
                severity: Severity::Warning,
                sasl_failure: program == b"smtpd" && is_sasl_failure(rest),
            }
        }
        b"error:" => return severity(Severity::Error),
        b"fatal:" => return severity(Severity::Fatal),
        b"panic:" => return severity(Severity::Panic),
        _ => {}
    }
    if let Some(id) = first.strip_suffix(b":") {
        if id == b"NOQUEUE" {
            return Event::Message {
                qid: None,
                action: classify_message(program, rest),
            };
        }
        if is_queue_id(id) {
            return Event::Message {
                qid: Some(id),
                action: classify_message(program, rest),
            };
        }
        return Event::Other;
    }
    match program {
        b"smtpd" => match first {
            b"connect" if rest.starts_with(b"from ") => Event::SmtpdConnect,
            b"disconnect" if rest.starts_with(b"from ") => Event::SmtpdDisconnect,
            b"Anonymous" | b"Trusted" | b"Untrusted" | b"Verified"
                if rest.starts_with(b"TLS connection established from ") =>
            {
                Event::TlsIn
            }
            _ => Event::Other,
        },
        b"smtp" | b"lmtp" => match first {
            b"Anonymous" | b"Trusted" | b"Untrusted" | b"Verified"
                if rest.starts_with(b"TLS connection established to ") =>
            {
                Event::TlsOut
            }
            _ => Event::Other,
        },
        _ => Event::Other,
    }
}

#[inline]
fn severity<'a>(severity: Severity) -> Event<'a> {
    Event::Severity {
        severity,
        sasl_failure: false,
    }
}

/// `host[addr]: SASL METHOD authentication failed...` (the text after
/// smtpd's `warning: `).
fn is_sasl_failure(rest: &[u8]) -> bool {
    let (client, rest) = split_token(rest);
    if !client.ends_with(b"]:") {
        return false;
    }
    let (word, rest) = split_token(rest);
    if word != b"SASL" {
        return false;
    }
    let (_method, rest) = split_token(rest);
    rest.starts_with(b"authentication failed")
}

/// Classify the text after the queue id.
fn classify_message<'a>(program: &[u8], rest: &'a [u8]) -> Action<'a> {
    // The tokens that start with a `key=` need the key only.
    if let Some(addr) = rest.strip_prefix(b"to=<") {
        return parse_delivery(program, addr).unwrap_or(Action::Other);
    }
    if let Some(addr) = rest.strip_prefix(b"from=<") {
        if program == b"qmgr" {
            return parse_qmgr_from(addr).unwrap_or(Action::Other);
        }
        return Action::Other;
    }
    if rest.starts_with(b"client=") {
        return match program {
            b"smtpd" | b"qmqpd" => Action::Client,
            _ => Action::Other,
        };
    }
    if rest.starts_with(b"uid=") || rest.starts_with(b"sender=") {
        return if program == b"pickup" {
            Action::Pickup
        } else {
            Action::Other
        };
    }
    if rest.starts_with(b"message-id=") || rest.starts_with(b"resent-message-id=") {
        return if program == b"cleanup" {
            Action::MessageId
        } else {
            Action::Other
        };
    }
    let (first, after) = split_token(rest);
    let accepts_actions = matches!(program, b"smtpd" | b"cleanup" | b"postscreen");
    match first {
        b"reject:" | b"milter-reject:" if accepts_actions => {
            let (reason, class) = classify_reject(program, first == b"milter-reject:", after);
            Action::Reject { reason, class }
        }
        b"hold:" | b"milter-hold:" if accepts_actions => Action::Hold,
        b"discard:" | b"milter-discard:" if accepts_actions => Action::Discard,
        b"placed" if program == b"postsuper" && after == b"on hold" => Action::PlacedOnHold,
        b"released" if program == b"postsuper" && after == b"from hold" => Action::ReleasedFromHold,
        b"removed" if after.is_empty() => Action::Removed,
        b"sender" | b"postmaster" if program == b"bounce" => {
            // `... notification: NEWID`: the new id is the last token.
            match memchr::memrchr(b' ', after) {
                Some(sp) if after[..sp].ends_with(b"notification:") => {
                    let new_qid = &after[sp + 1..];
                    if is_queue_id(new_qid) {
                        Action::Notification { new_qid }
                    } else {
                        Action::Other
                    }
                }
                _ => Action::Other,
            }
        }
        _ => Action::Other,
    }
}
/// `to=<ADDR>, [orig_to=<ADDR>, ]relay=..., delay=D, delays=..., dsn=X.Y.Z,
/// status=WORD (text)`; `s` starts after `to=<`.
fn parse_delivery<'a>(program: &[u8], s: &'a [u8]) -> Option<Action<'a>> {
    let mut rest = skip_address(s)?.strip_prefix(b", ")?;
    if let Some(orig) = rest.strip_prefix(b"orig_to=<") {
        rest = skip_address(orig)?.strip_prefix(b", ")?;
    }
    let (after_status, delay_ms) = walk_to_status(rest)?;
    let (word, text) = split_token(after_status);
    let status = match word {
        b"sent" => Status::Sent,
        b"deferred" => Status::Deferred,
        b"bounced" => Status::Bounced,
        _ => return Some(Action::Other),
    };
    let forwarded_as = if status == Status::Sent && program == b"local" {
        text.strip_prefix(b"(forwarded as ")
            .and_then(|t| t.strip_suffix(b")"))
            .filter(|id| is_queue_id(id))
    } else {
        None
    };
    Some(Action::Delivery {
        status,
        delay_ms,
        forwarded_as,
    })
}

/// The text after `status=` and the `delay=` in milliseconds, from the
/// fields after a delivery's addresses: `relay=..., delay=D, delays=...,
/// dsn=X.Y.Z, status=...`. Only Postfix-controlled values remain here
/// (relay host from DNS or config, numbers, dsn), so the fields are walked
/// in order, from one `, ` to the next; the commas of the next 64 bytes are
/// found at once.
#[inline]
fn walk_to_status(mut rest: &[u8]) -> Option<(&[u8], u64)> {
    let mut delay_ms = 0;
    loop {
        let [mut commas] = masks64(rest, [b',']);
        let mut at = 0;
        loop {
            let field = &rest[at..];
            if let Some(after) = field.strip_prefix(b"status=") {
                return Some((after, delay_ms));
            }
            if let Some(value) = field.strip_prefix(b"delay=") {
                delay_ms = parse_seconds_ms(value);
            }
            if commas == 0 {
                // No comma left in the indexed bytes: search on, and index
                // again from the next field.
                let from = at.max(64);
                let comma = from + find_byte(rest.get(from..)?, b',')?;
                rest = rest[comma + 1..].strip_prefix(b" ")?;
                break;
            }
            let comma = commas.trailing_zeros() as usize;
            commas &= commas - 1;
            if rest.get(comma + 1) != Some(&b' ') {
                return None;
            }
            at = comma + 2;
        }
    }
}

/// `1.23` seconds (any number of decimals) → milliseconds.
fn parse_seconds_ms(value: &[u8]) -> u64 {
    let (int, frac) = split_digits(value);
    let seconds = parse_u64(int).unwrap_or(0);
    let mut ms = 0u64;
    if let Some(frac) = frac.strip_prefix(b".") {
        let (digits, _) = split_digits(frac);
        let mut scale = 100;
        for &d in digits.iter().take(3) {
            ms += u64::from(d - b'0') * scale;
            scale /= 10;
        }
    }
    seconds.saturating_mul(1000).saturating_add(ms)
}

/// qmgr `from=<ADDR>, size=N, nrcpt=N (queue active)` or
/// `from=<ADDR>, status=expired, returned to sender`; `s` starts after `from=<`.
fn parse_qmgr_from(s: &[u8]) -> Option<Action<'_>> {
    let rest = skip_address(s)?;
    if let Some(sizes) = rest.strip_prefix(b", size=") {
        let (size, after) = split_digits(sizes);
        let after = after.strip_prefix(b", nrcpt=")?;
        let (_nrcpt, after) = split_digits(after);
        if after == b" (queue active)" {
            return Some(Action::QueueActive {
                size: parse_u64(size)?,
            });
        }
        return Some(Action::Other);
    }
    if rest == b", status=expired, returned to sender" {
        return Some(Action::Expired);
    }
    Some(Action::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_fields_are_walked_to_the_status() {
        let walk = |t: &str| walk_to_status(t.as_bytes()).map(|(s, d)| (s.to_vec(), d));
        let status = |s: &str, d| Some((s.as_bytes().to_vec(), d));
        assert_eq!(
            walk("relay=local, delay=0.09, delays=0.08/0.01/0/0, dsn=2.0.0, status=sent (x)"),
            status("sent (x)", 90)
        );
        // Fields beyond the 64 indexed bytes, and a long relay name.
        let relay = format!("relay={}[192.0.2.1]:25", "m".repeat(90));
        assert_eq!(
            walk(&format!(
                "{relay}, delay=1.5, delays=1/0/0/0.5, dsn=4.4.1, status=deferred (c)"
            )),
            status("deferred (c)", 1500)
        );
        assert_eq!(
            walk("relay=none, conn_use=2, delay=3, delays=1/1/1/0, dsn=5.0.0, status=bounced"),
            status("bounced", 3000)
        );
        assert_eq!(walk("relay=local, delay=0.09,status=sent"), None);
        assert_eq!(walk("relay=local, delay=0.09"), None);
        assert_eq!(walk(""), None);
        for cut in 0..70 {
            let text = format!("{}, status=sent", "r".repeat(cut));
            assert_eq!(walk(&text), status("sent", 0), "{cut}");
        }
    }

    #[test]
    fn delay_parsing() {
        assert_eq!(parse_seconds_ms(b"0.52"), 520);
        assert_eq!(parse_seconds_ms(b"12"), 12_000);
        assert_eq!(parse_seconds_ms(b"1.23456"), 1234);
        assert_eq!(parse_seconds_ms(b"x"), 0);
    }
}
