//! One POP3 poll of the round trip: log in, find and delete our messages.

use super::settings::{ProbeSettings, RoundTrip, TlsMode};
use super::tls::ServedCert;
use super::{tls_params, Cancel, Conn, ProbeFailure, MAX_LINE, MAX_RESPONSE};
use std::time::Instant;

/// Messages looked at per poll (the newest ones): the probe mailbox is
/// meant to be dedicated, and TOP on thousands of messages would be slow.
const MAX_SCANNED: u64 = 200;

/// Reads a status line; `-ERR` is a failure named `shown`.
fn status(conn: &mut Conn, shown: &str) -> Result<String, ProbeFailure> {
    let what = format!("waiting for the {shown} response");
    let line = conn.read_line(MAX_LINE, &what)?;
    let text = String::from_utf8_lossy(&line).into_owned();
    if let Some(rest) = text.strip_prefix("+OK") {
        return Ok(rest.trim().to_string());
    }
    if text.starts_with("-ERR") {
        return Err(ProbeFailure::failed(format!("{shown} {text}")));
    }
    Err(ProbeFailure::failed(format!(
        "malformed POP3 reply {:?} {what}",
        text.chars().take(60).collect::<String>()
    )))
}

fn command(conn: &mut Conn, line: &str, shown: &str) -> Result<String, ProbeFailure> {
    conn.send(
        format!("{line}\r\n").as_bytes(),
        &format!("sending {shown}"),
    )?;
    status(conn, shown)
}

/// The lines of a multi-line response up to the lone `.`, dot-unstuffed,
/// limited to [`MAX_RESPONSE`] bytes in all.
fn multi_line(conn: &mut Conn, what: &str) -> Result<Vec<Vec<u8>>, ProbeFailure> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    loop {
        let line = conn.read_line(MAX_LINE.max(64 * 1024), what)?;
        total += line.len() + 2;
        if total > MAX_RESPONSE {
            return Err(ProbeFailure::failed(format!(
                "POP3 response larger than {MAX_RESPONSE} bytes"
            )));
        }
        if line == b"." {
            return Ok(lines);
        }
        let line = match line.strip_prefix(b".") {
            Some(rest) => rest.to_vec(),
            None => line,
        };
        lines.push(line);
    }
}

/// The unfolded Subject header of a header block.
pub fn subject(header_lines: &[Vec<u8>]) -> Option<String> {
    let mut subject: Option<String> = None;
    for line in header_lines {
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if text.starts_with(' ') || text.starts_with('\t') {
            // A continuation of the previous header.
            if let Some(s) = subject.as_mut() {
                s.push(' ');
                s.push_str(text.trim());
            }
            continue;
        }
        if subject.is_some() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            if name.eq_ignore_ascii_case("subject") {
                subject = Some(value.trim().to_string());
            }
        }
    }
    subject
}

/// Logs in, marks every message of this probe (`prefix` in the Subject) for
/// deletion, commits with QUIT, and returns whether the one with `token`
/// was among them.
pub fn poll(
    probe: &ProbeSettings,
    rt: &RoundTrip,
    deadline: Instant,
    cancel: &Cancel,
    served: &ServedCert,
    prefix: &str,
    token: &str,
) -> Result<bool, ProbeFailure> {
    let target = probe.target.clone();
    let params = tls_params(probe, &target);
    let mode = probe.tls;
    let mut conn = Conn::open(&target, mode, &params, served, deadline, cancel)?;
    status(&mut conn, "greeting")?;
    if mode == TlsMode::Starttls {
        command(&mut conn, "STLS", "STLS")
            .map_err(|e| ProbeFailure::failed(format!("STLS not offered ({})", e.reason)))?;
        conn.start_tls(&params, served)?;
    }
    let (user, password) = (rt.user.as_str(), rt.password.expose());
    command(&mut conn, &format!("USER {user}"), "USER")
        .map_err(|e| ProbeFailure::failed(format!("login failed: {}", e.reason)))?;
    conn.send(format!("PASS {password}\r\n").as_bytes(), "sending PASS")?;
    status(&mut conn, "PASS")
        .map_err(|e| ProbeFailure::failed(format!("login failed: {}", e.reason)))?;
    let stat = command(&mut conn, "STAT", "STAT")?;
    let count: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ProbeFailure::failed(format!("malformed STAT reply {stat:?}")))?;
    let mut found = false;
    let mut deleted = 0u64;
    for n in (count.saturating_sub(MAX_SCANNED) + 1..=count).rev() {
        command(&mut conn, &format!("TOP {n} 0"), "TOP")?;
        let header = multi_line(&mut conn, "reading a message header")?;
        let Some(subject) = subject(&header) else {
            continue;
        };
        if subject.contains(prefix) {
            found |= subject.contains(token);
            command(&mut conn, &format!("DELE {n}"), "DELE")?;
            deleted += 1;
        }
    }
    // Deletions take effect only on QUIT (the UPDATE state).
    let quit = command(&mut conn, "QUIT", "QUIT");
    if deleted > 0 {
        quit?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Vec<u8>> {
        text.lines().map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multi_line_responses_are_unstuffed_and_limited() {
        let (mut c, h) =
            super::super::test_conn_to(b"+OK 2 messages\r\nSubject: x\r\n..dot\r\n.\r\n".to_vec());
        assert_eq!(status(&mut c, "TOP").unwrap(), "2 messages");
        let lines = multi_line(&mut c, "t").unwrap();
        assert_eq!(lines, vec![b"Subject: x".to_vec(), b".dot".to_vec()]);
        h.join().unwrap();

        let line = format!("{}\r\n", "x".repeat(60_000));
        let (mut c, h) = super::super::test_conn_to(line.repeat(20).into_bytes());
        let err = multi_line(&mut c, "t").unwrap_err();
        assert!(err.reason.contains("larger than"), "{err:?}");
        h.join().unwrap();

        let (mut c, h) =
            super::super::test_conn_to(b"-ERR [AUTH] Authentication failed.\r\nHELLO\r\n".to_vec());
        let err = status(&mut c, "PASS").unwrap_err();
        assert_eq!(err.reason, "PASS -ERR [AUTH] Authentication failed.");
        let err = status(&mut c, "STAT").unwrap_err();
        assert!(err.reason.starts_with("malformed POP3 reply"), "{err:?}");
        h.join().unwrap();
    }

    #[test]
    fn subject_is_found_and_unfolded() {
        let h = lines("From: a@b\nSubject: [postfix-agentx probe p]\n tok123\nTo: c@d\n");
        assert_eq!(
            subject(&h).as_deref(),
            Some("[postfix-agentx probe p] tok123")
        );
        let h = lines("SUBJECT: x\n\nSubject: body line");
        assert_eq!(subject(&h).as_deref(), Some("x"));
        assert_eq!(subject(&lines("From: a\n\nSubject: in body")), None);
    }
}
