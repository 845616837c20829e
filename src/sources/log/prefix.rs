//! The syslog prefix of one Postfix mail log line, read zero-copy.
//!
//! A line is `TIMESTAMP HOST SYSLOGNAME/[SERVICE/]PROGRAM[PID]: MESSAGE`.
//! This module finds the timestamp's end, the host and the tag (with the
//! `head::HeadIndex` bit masks where they lie in the line's head, by search
//! elsewhere), tells Postfix's lines from other programs', and hands the
//! message text to `message::classify`, which decides the event.

use super::bytes::{find_any3, find_byte};
use super::head::{HeadIndex, HEAD};
use super::message::{classify, Event};
use super::tokens::{parse_u32, split_token};

/// What a line is, as far as the counters are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// No recognisable syslog prefix (timestamp, host, `tag[pid]:`).
    Unparsed,
    /// A syslog line from a program that is not Postfix (dovecot, sshd, ...).
    Foreign,
    Postfix(PostfixLine<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostfixLine<'a> {
    pub tag: Tag<'a>,
    pub event: Event<'a>,
}

/// The syslog tag split into its parts: `postfix-out/relay/smtp[12]` has
/// syslog name `postfix-out`, service `relay`, program `smtp`, pid 12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    pub syslog_name: &'a [u8],
    /// The master.cf service (the middle part set by
    /// `syslog_name=postfix/$service_name`), or the program when absent.
    pub service: &'a [u8],
    /// The daemon program: the last part of the tag.
    pub program: &'a [u8],
    /// The text between `[` and `]`, parsed only where a counter needs it
    /// (few lines do).
    pub pid_text: &'a [u8],
}

impl Tag<'_> {
    /// The process id, if the tag has a valid one.
    #[inline]
    pub fn pid(&self) -> Option<u32> {
        parse_u32(self.pid_text)
    }
}

/// Is this syslog name one of Postfix's? `postfix`, any name starting with
/// `postfix` (multi-instance `postfix-out`), or a configured extra name.
#[inline(always)]
fn is_postfix_name(name: &[u8], extra_names: &[Vec<u8>]) -> bool {
    name.starts_with(b"postfix") || extra_names.iter().any(|n| n.as_slice() == name)
}

/// Parse one log line (without its newline). Inlined into the counting
/// loop: returned by value from a call, the line's parts cost a copy.
#[inline(always)]
pub fn parse_line<'a>(line: &'a [u8], extra_names: &[Vec<u8>]) -> Line<'a> {
    let Some(host_start) = timestamp_end(line) else {
        return Line::Unparsed;
    };
    match head_canonical(line, host_start, extra_names) {
        Some(Ok((tag, tag_end))) => {
            let (first, rest) = split_token(line.get(tag_end + 1..).unwrap_or_default());
            return Line::Postfix(PostfixLine {
                tag,
                event: classify(tag.program, first, rest),
            });
        }
        Some(Err(kind)) => return kind.line(),
        None => {}
    }
    let idx = HeadIndex::new(line, host_start);
    let head = match head_in_window(&idx, extra_names) {
        Some(head) => head,
        None => head_anywhere(&idx, extra_names),
    };
    with_head(&idx, head)
}

/// [`parse_line`] without the short paths for host and tag (the canonical
/// shape, the bit masks): the reference the fuzz target compares it with.
#[doc(hidden)]
#[cfg(feature = "oracles")]
pub fn parse_line_searching<'a>(line: &'a [u8], extra_names: &[Vec<u8>]) -> Line<'a> {
    let Some(host_start) = timestamp_end(line) else {
        return Line::Unparsed;
    };
    let idx = HeadIndex::new(line, host_start);
    with_head(&idx, head_anywhere(&idx, extra_names))
}

/// The line for a head found with `idx`.
#[inline(always)]
fn with_head<'a>(idx: &HeadIndex<'a>, head: Head<'a>) -> Line<'a> {
    match head {
        Ok((tag, tag_end)) => {
            let (first, rest) = idx.token_at(tag_end + 1);
            Line::Postfix(PostfixLine {
                tag,
                event: classify(tag.program, first, rest),
            })
        }
        Err(kind) => kind.line(),
    }
}

/// Host and tag of the commonest shapes, `HOST postfix/PROGRAM[PID]: `
/// (Postfix's default syslog name, no service part) and `HOST NAME[PID]: `
/// (a bare syslog name: another program, or a Postfix instance's name),
/// all within reach: three short searches instead of the masks. `None`
/// for any other shape, which the general head then reads, with the same
/// result for these: the host ends at the first space, the tag at the
/// next, its name (after any `postfix/`, no space or `/`) at its first
/// `[`, and it ends in `]:`.
#[inline(always)]
fn head_canonical<'a>(
    line: &'a [u8],
    host_start: usize,
    extra_names: &[Vec<u8>],
) -> Option<Head<'a>> {
    let rest = line.get(host_start..)?;
    let host_len = find_byte(&rest[..rest.len().min(HEAD)], b' ')?;
    if host_len == 0 {
        return None;
    }
    let tag = &rest[host_len + 1..];
    let skip = if tag.get(..8) == Some(b"postfix/") {
        8
    } else {
        0
    };
    let name = &tag[skip..];
    let open = find_any3(&name[..name.len().min(HEAD)], b'[', b' ', b'/')?;
    if open == 0 || name[open] != b'[' {
        return None;
    }
    let after = &name[open + 1..];
    let end = find_byte(&after[..after.len().min(HEAD)], b' ')?;
    if end < 2 || after[end - 1] != b':' || after[end - 2] != b']' {
        return None;
    }
    let program = &name[..open];
    let syslog_name = if skip == 0 {
        if !is_postfix_name(program, extra_names) {
            return Some(Err(NotPostfix::Foreign));
        }
        program
    } else {
        &tag[..7]
    };
    let tag_end = host_start + host_len + 1 + skip + open + 1 + end;
    Some(Ok((
        Tag {
            syslog_name,
            service: program,
            program,
            pid_text: &after[..end - 2],
        },
        tag_end,
    )))
}

/// The tag and the position of the space after it, or what the line is
/// when it has no Postfix tag.
type Head<'a> = Result<(Tag<'a>, usize), NotPostfix>;

/// A line without a Postfix tag. Kept apart from [`Line`] so that a
/// [`Head`] stays small: a large error variant costs copies on every line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotPostfix {
    Unparsed,
    Foreign,
}

impl NotPostfix {
    #[inline(always)]
    fn line<'a>(self) -> Line<'a> {
        match self {
            NotPostfix::Unparsed => Line::Unparsed,
            NotPostfix::Foreign => Line::Foreign,
        }
    }
}

/// Host: one non-empty token. Tag: `name[pid]:` or `name:`, followed by a
/// space or the end of the line; the name is `syslog_name[/service]/program`
/// or a bare syslog name. This is the common case, where host and tag lie
/// in the indexed head: each step is a bit operation on the head's masks
/// (positions relative to its start). `None` when they reach beyond it;
/// then [`head_anywhere`] decides, with the same result.
#[inline(always)]
fn head_in_window<'a>(idx: &HeadIndex<'a>, extra_names: &[Vec<u8>]) -> Option<Head<'a>> {
    let (line, base) = (idx.line, idx.base);
    if idx.space == 0 {
        return None;
    }
    let host_len = idx.space.trailing_zeros() as usize;
    if host_len == 0 {
        return Some(Err(NotPostfix::Unparsed));
    }
    let tag_start = host_len + 1;
    if tag_start >= HEAD {
        return None;
    }
    let later_spaces = idx.space & (idx.space - 1);
    let tag_end = if later_spaces != 0 {
        later_spaces.trailing_zeros() as usize
    } else if line.len() - base <= HEAD {
        line.len() - base
    } else {
        return None;
    };
    if tag_end <= tag_start || line[base + tag_end - 1] != b':' {
        return Some(Err(NotPostfix::Unparsed));
    }
    let colon = tag_end - 1;
    // Bits below `end` (`end < 64`), and bits from the tag's start on.
    let below = |end: usize| (1u64 << end) - 1;
    let in_tag = !below(tag_start);
    let opens = idx.open & below(colon) & in_tag;
    let (name_end, pid_text) = if opens != 0 {
        let open = opens.trailing_zeros() as usize;
        if colon < open + 2 || line[base + colon - 1] != b']' {
            return Some(Err(NotPostfix::Unparsed));
        }
        (open, &line[base + open + 1..base + colon - 1])
    } else {
        (colon, &[][..])
    };
    if name_end == tag_start {
        return Some(Err(NotPostfix::Unparsed));
    }
    let slashes = idx.slash & below(name_end) & in_tag;
    let parts = (slashes != 0).then(|| {
        let after_first = slashes & (slashes - 1);
        let last = (u64::BITS - 1 - slashes.leading_zeros()) as usize;
        let service_end = if after_first != 0 {
            after_first.trailing_zeros() as usize
        } else {
            name_end
        };
        (
            base + slashes.trailing_zeros() as usize,
            base + service_end,
            base + last + 1,
        )
    });
    let name = base + tag_start..base + name_end;
    Some(tag_of(line, name, parts, pid_text, extra_names).map(|tag| (tag, base + tag_end)))
}

/// [`head_in_window`] for any line: searches past the indexed head when
/// the host or the tag reach beyond it (rare: a very long host name).
#[inline(never)]
fn head_anywhere<'a>(idx: &HeadIndex<'a>, extra_names: &[Vec<u8>]) -> Head<'a> {
    let (line, host_start) = (idx.line, idx.base);
    let Some(host_end) = idx.space_from(host_start) else {
        return Err(NotPostfix::Unparsed);
    };
    if host_end == host_start {
        return Err(NotPostfix::Unparsed);
    }
    let tag_start = host_end + 1;
    let tag_end = idx.space_from(tag_start).unwrap_or(line.len());
    if tag_end <= tag_start || line[tag_end - 1] != b':' {
        return Err(NotPostfix::Unparsed);
    }
    let colon = tag_end - 1;
    let (name_end, pid_text) = match idx.first_open(tag_start, colon) {
        Some(open) => {
            if colon < open + 2 || line[colon - 1] != b']' {
                return Err(NotPostfix::Unparsed);
            }
            (open, &line[open + 1..colon - 1])
        }
        None => (colon, &[][..]),
    };
    if name_end == tag_start {
        return Err(NotPostfix::Unparsed);
    }
    let parts = idx.first_slash(tag_start, name_end).map(|slash| {
        let program_start = idx.last_slash(slash + 1, name_end).unwrap_or(slash) + 1;
        let service_end = idx.first_slash(slash + 1, name_end).unwrap_or(name_end);
        (slash, service_end, program_start)
    });
    tag_of(line, tag_start..name_end, parts, pid_text, extra_names).map(|tag| (tag, tag_end))
}

/// The tag of a name at `name` in the line: with `parts` (first `/`, end
/// of the service, start of the program) `syslog_name/service[/...]/program`,
/// else a bare syslog name. Not Postfix's: the line is foreign.
#[inline(always)]
fn tag_of<'a>(
    line: &'a [u8],
    name: std::ops::Range<usize>,
    parts: Option<(usize, usize, usize)>,
    pid_text: &'a [u8],
    extra_names: &[Vec<u8>],
) -> Result<Tag<'a>, NotPostfix> {
    let (syslog_name, service, program) = match parts {
        Some((slash, service_end, program_start)) => (
            &line[name.start..slash],
            &line[slash + 1..service_end],
            &line[program_start..name.end],
        ),
        None => {
            let whole = &line[name];
            (whole, whole, whole)
        }
    };
    if !is_postfix_name(syslog_name, extra_names) {
        return Err(NotPostfix::Foreign);
    }
    Ok(Tag {
        syslog_name,
        service,
        program,
        pid_text,
    })
}

/// Where the host starts: after an RFC 3164 (`Nov 29 13:13:38`, optionally
/// with fractional seconds) or RFC 3339 (`2026-11-29T13:13:38.123456+00:00`)
/// timestamp and the space after it.
#[inline]
fn timestamp_end(line: &[u8]) -> Option<usize> {
    // The fixed-width part as an array: one length check for all tests.
    let t: &[u8; 16] = line.get(..16)?.try_into().ok()?;
    if t[0].is_ascii_digit() {
        // RFC 3339: YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm)
        if !(t[1].is_ascii_digit()
            && t[2].is_ascii_digit()
            && t[3].is_ascii_digit()
            && (t[4] == b'-')
            && (t[7] == b'-')
            && ((t[10] | 0x20) == b't')
            && (t[13] == b':'))
        {
            return None;
        }
        // At least `YYYY-MM-DDThh:mm:ss` before the space.
        return find_byte(line.get(19..)?, b' ').map(|sp| 19 + sp + 1);
    }
    // RFC 3164: Mmm dd hh:mm:ss (day space-padded)
    if !(t[0].is_ascii_uppercase()
        && t[1].is_ascii_lowercase()
        && t[2].is_ascii_lowercase()
        && (t[3] == b' ')
        && (t[6] == b' ')
        && (t[9] == b':')
        && (t[12] == b':')
        && t[7].is_ascii_digit()
        && t[14].is_ascii_digit())
    {
        return None;
    }
    match t[15] {
        b' ' => Some(16),
        b'.' => {
            let digits = line[16..].iter().take_while(|b| b.is_ascii_digit()).count();
            (line.get(16 + digits) == Some(&b' ')).then_some(16 + digits + 1)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::log::message::Action;

    #[test]
    fn tag_parts() {
        let line =
            b"Nov 29 13:13:38 mx postfix-out/submission/smtpd[42]: connect from c[192.0.2.1]";
        let Line::Postfix(p) = parse_line(line, &[]) else {
            panic!("not a Postfix line");
        };
        assert_eq!(p.tag.syslog_name, b"postfix-out");
        assert_eq!(p.tag.service, b"submission");
        assert_eq!(p.tag.program, b"smtpd");
        assert_eq!(p.tag.pid(), Some(42));
        assert_eq!(p.event, Event::SmtpdConnect);
    }

    #[test]
    fn pids_are_u32_or_nothing() {
        let pid = |text: &[u8]| {
            Tag {
                syslog_name: b"postfix",
                service: b"smtpd",
                program: b"smtpd",
                pid_text: text,
            }
            .pid()
        };
        assert_eq!(pid(b"4294967295"), Some(u32::MAX));
        assert_eq!(pid(b"0000000042"), Some(42));
        for bad in [&b"4294967296"[..], b"00000000042", b"", b"4a", b"-1", b" 1"] {
            assert_eq!(pid(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_line(b"Nov 29 13:13:38 mx sshd[1]: x", &[]),
            Line::Foreign
        );
        assert_eq!(parse_line(b"Nov 29 13:13:38 mx", &[]), Line::Unparsed);
        assert_eq!(
            parse_line(b"29 Nov 13:13:38 mx postfix/smtpd[1]: x", &[]),
            Line::Unparsed
        );
        assert_eq!(
            parse_line(b"Nov 29 13:13:38 mx postfix/smtpd[1 x", &[]),
            Line::Unparsed
        );
        assert!(matches!(
            parse_line(
                b"2026-11-29T13:13:38.123456+00:00 mx postfix/qmgr[1]: 4F3A21C0D2: removed",
                &[]
            ),
            Line::Postfix(PostfixLine {
                event: Event::Message {
                    action: Action::Removed,
                    ..
                },
                ..
            })
        ));
    }

    /// Host and tag shapes around the edges of the indexed head: the bit
    /// path and the search path must agree on every one.
    #[test]
    fn short_head_paths_agree_with_head_anywhere() {
        let tags = [
            "postfix/smtpd[42]:",
            "postfix/submission/smtpd[42]:",
            "postfix-out/a/b/smtp[1]:",
            "postfix:",
            "postfix[7]:",
            "postfix/qmgr:",
            "sshd[1]:",
            "extra/smtpd[3]:",
            "postfix/smtpd[]:",
            "postfix/smtpd[4:",
            "postfix/smtpd4]:",
            "[4]:",
            "/x[4]:",
            "postfix/smtpd[42]",
            ":",
            "",
            "postfix//smtpd[1]:",
            "postfix/smtpd/[1]:",
            "post[fix/smtpd[1]:",
            "postfix/smtpd[[1]:",
            "postfix/smtpd[1]2]:",
            "postfix/sm tpd[1]:",
            "postfix/[1]:",
            "postfix/smtpd[1]:x",
            "postfix/trivial-rewrite[9]:",
            "dovecot[9]:",
            "extra[9]:",
            "postfix-out[9]:",
            "dove/cot[9]:",
        ];
        let names = vec![b"extra".to_vec()];
        let mut checked = 0;
        let mut canonical = 0;
        for stamp in ["Nov 29 13:13:38 ", "2026-11-29T13:13:38.123456+00:00 "] {
            for host_len in (0..8).chain(40..70) {
                for tag in tags {
                    for tail in ["", " x", " 4F3A21C0D2: removed", "  two spaces"] {
                        let line = format!("{stamp}{}{}{tag}{tail}", "h".repeat(host_len), " ");
                        for text in [line.clone(), line.replacen(' ', "  ", 1)] {
                            let line = text.as_bytes();
                            let Some(host_start) = timestamp_end(line) else {
                                continue;
                            };
                            let idx = HeadIndex::new(line, host_start);
                            let general = head_anywhere(&idx, &names);
                            if let Some(fast) = head_in_window(&idx, &names) {
                                assert_eq!(fast, general, "{text:?}");
                                checked += 1;
                            }
                            if let Some(short) = head_canonical(line, host_start, &names) {
                                assert_eq!(short, general, "{text:?}");
                                canonical += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 3000, "{checked}");
        assert!(canonical > 100, "{canonical}");
    }
}
