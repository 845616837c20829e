//! One IMAP poll of the round trip: log in, find and delete our messages.

use super::settings::{ProbeSettings, RoundTrip, TlsMode};
use super::tls::ServedCert;
use super::{tls_params, Cancel, Conn, ProbeFailure, MAX_RESPONSE};
use std::time::Instant;

/// A tagged response and the untagged lines before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `OK`, `NO` or `BAD`.
    pub status: String,
    pub text: String,
    pub untagged: Vec<String>,
}

struct Client {
    conn: Conn,
    next_tag: u32,
}

impl Client {
    /// Sends `command` with a fresh tag and reads up to its tagged response.
    /// `shown` names the command in reasons (LOGIN's arguments are secret).
    fn command(&mut self, command: &str, shown: &str) -> Result<Response, ProbeFailure> {
        self.next_tag += 1;
        let tag = format!("p{}", self.next_tag);
        let what = format!("waiting for the {shown} response");
        self.conn
            .send(format!("{tag} {command}\r\n").as_bytes(), &what)?;
        read_response(&mut self.conn, Some(&tag), &what)
    }

    /// A command that must answer OK.
    fn ok(&mut self, command: &str, shown: &str) -> Result<Response, ProbeFailure> {
        let r = self.command(command, shown)?;
        if r.status != "OK" {
            return Err(ProbeFailure::failed(format!(
                "{shown} {} {}",
                r.status, r.text
            )));
        }
        Ok(r)
    }
}

/// Reads lines (with literals) until the line tagged `tag`, or for `None`
/// the first untagged line (the greeting). The whole response is limited to
/// [`MAX_RESPONSE`] bytes.
fn read_response(conn: &mut Conn, tag: Option<&str>, what: &str) -> Result<Response, ProbeFailure> {
    let mut total = 0usize;
    let mut untagged = Vec::new();
    loop {
        let line = read_logical_line(conn, &mut total, what)?;
        let text = String::from_utf8_lossy(&line).into_owned();
        let (first, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        match tag {
            Some(tag) if first == tag => {
                let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
                return Ok(Response {
                    status: status.to_ascii_uppercase(),
                    text: text.to_string(),
                    untagged,
                });
            }
            None if first == "*" => {
                let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
                return Ok(Response {
                    status: status.to_ascii_uppercase(),
                    text: text.to_string(),
                    untagged,
                });
            }
            _ if first == "*" => {
                if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case("BYE") {
                    return Err(ProbeFailure::failed(format!("server said {rest}")));
                }
                untagged.push(rest.to_string());
            }
            _ => {
                return Err(ProbeFailure::failed(format!(
                    "unexpected IMAP line {:?} {what}",
                    text.chars().take(60).collect::<String>()
                )))
            }
        }
    }
}

/// One response line with any `{N}` literals read in place.
fn read_logical_line(
    conn: &mut Conn,
    total: &mut usize,
    what: &str,
) -> Result<Vec<u8>, ProbeFailure> {
    let mut out = Vec::new();
    loop {
        let limit = MAX_RESPONSE.saturating_sub(*total);
        if limit == 0 {
            return Err(too_big());
        }
        let line = conn.read_line(limit, what).map_err(|e| {
            if e.reason.contains("longer than") {
                too_big()
            } else {
                e
            }
        })?;
        *total += line.len() + 2;
        out.extend_from_slice(&line);
        let Some(n) = literal_length(&line) else {
            return Ok(out);
        };
        if n > MAX_RESPONSE.saturating_sub(*total) {
            return Err(too_big());
        }
        *total += n;
        out.extend_from_slice(&conn.read_exact(n, what)?);
    }
}

fn too_big() -> ProbeFailure {
    ProbeFailure::failed(format!("IMAP response larger than {MAX_RESPONSE} bytes"))
}

/// `N` if the line ends with an IMAP literal announcement `{N}` (or `{N+}`).
pub fn literal_length(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// UIDs from `SEARCH n n n` untagged lines.
pub fn search_uids(untagged: &[String]) -> Vec<u32> {
    untagged
        .iter()
        .filter_map(|l| {
            let (word, rest) = l.split_once(' ').unwrap_or((l.as_str(), ""));
            word.eq_ignore_ascii_case("SEARCH").then_some(rest)
        })
        .flat_map(|rest| rest.split_whitespace().filter_map(|n| n.parse().ok()))
        .collect()
}

/// An IMAP quoted string.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Logs in, deletes every message of this probe (`prefix` in the Subject),
/// and returns whether the one with `token` was among them.
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
    let greeting = read_response(&mut conn, None, "waiting for the greeting")?;
    if greeting.status != "OK" {
        return Err(ProbeFailure::failed(format!(
            "greeting {} {}",
            greeting.status, greeting.text
        )));
    }
    let mut c = Client { conn, next_tag: 0 };
    if mode == TlsMode::Starttls {
        let r = c.command("STARTTLS", "STARTTLS")?;
        if r.status != "OK" {
            return Err(ProbeFailure::failed(format!(
                "STARTTLS not offered ({} {})",
                r.status, r.text
            )));
        }
        c.conn.start_tls(&params, served)?;
    }
    let (user, password) = (rt.user.as_str(), rt.password.expose());
    let login = c.command(
        &format!("LOGIN {} {}", quote(user), quote(password)),
        "LOGIN",
    )?;
    if login.status != "OK" {
        return Err(ProbeFailure::failed(format!(
            "login failed: {} {}",
            login.status, login.text
        )));
    }
    let caps = c.ok("CAPABILITY", "CAPABILITY")?;
    let uidplus = caps.untagged.iter().any(|l| {
        l.split_whitespace()
            .any(|w| w.eq_ignore_ascii_case("UIDPLUS"))
    });
    c.ok(&format!("SELECT {}", quote(&rt.mailbox)), "SELECT")?;
    let ours = search_uids(
        &c.ok(&format!("UID SEARCH SUBJECT {}", quote(prefix)), "SEARCH")?
            .untagged,
    );
    let mut found = false;
    if !ours.is_empty() {
        found = !search_uids(
            &c.ok(&format!("UID SEARCH SUBJECT {}", quote(token)), "SEARCH")?
                .untagged,
        )
        .is_empty();
        let set = ours
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        c.ok(
            &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
            "STORE",
        )?;
        // UID EXPUNGE removes only our messages; plain EXPUNGE would also
        // remove anything else a user marked deleted in this mailbox.
        if uidplus {
            c.ok(&format!("UID EXPUNGE {set}"), "EXPUNGE")?;
        } else {
            c.ok("EXPUNGE", "EXPUNGE")?;
        }
    }
    let _ = c.command("LOGOUT", "LOGOUT");
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_recognised() {
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] {42}"), Some(42));
        assert_eq!(literal_length(b"a LOGIN {5+}"), Some(5));
        assert_eq!(literal_length(b"* OK {x}"), None);
        assert_eq!(literal_length(b"* OK done"), None);
        assert_eq!(literal_length(b"{}"), None);
    }

    #[test]
    fn search_results_are_parsed() {
        let lines = vec![
            "SEARCH 3 17 42".to_string(),
            "5 EXISTS".to_string(),
            "search".to_string(),
        ];
        assert_eq!(search_uids(&lines), [3, 17, 42]);
        assert!(search_uids(&["SEARCH".to_string()]).is_empty());
    }

    #[test]
    fn responses_with_literals_are_read_whole() {
        let (mut c, h) = super::super::test_conn_to(
            b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\n* SEARCH 7\r\np1 OK done\r\n".to_vec(),
        );
        let r = read_response(&mut c, Some("p1"), "t").unwrap();
        assert_eq!(r.status, "OK");
        assert_eq!(r.untagged[0], "1 FETCH (BODY[] {5}ab\r\nc)");
        assert_eq!(search_uids(&r.untagged), [7]);
        h.join().unwrap();
    }

    #[test]
    fn oversized_responses_and_garbage_fail() {
        let (mut c, h) = super::super::test_conn_to(b"* 1 FETCH (BODY[] {2000000}\r\n".to_vec());
        let err = read_response(&mut c, Some("p1"), "t").unwrap_err();
        assert!(err.reason.contains("larger than"), "{err:?}");
        h.join().unwrap();

        let mut big = b"* ".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_RESPONSE + 10));
        let (mut c, h) = super::super::test_conn_to(big);
        let err = read_response(&mut c, Some("p1"), "t").unwrap_err();
        assert!(err.reason.contains("larger than"), "{err:?}");
        h.join().unwrap();

        let (mut c, h) = super::super::test_conn_to(b"HTTP/1.1 400 Bad Request\r\n".to_vec());
        let err = read_response(&mut c, Some("p1"), "t").unwrap_err();
        assert!(err.reason.contains("unexpected IMAP line"), "{err:?}");
        h.join().unwrap();

        let (mut c, h) = super::super::test_conn_to(b"* BYE shutting down\r\n".to_vec());
        let err = read_response(&mut c, Some("p1"), "t").unwrap_err();
        assert_eq!(err.reason, "server said BYE shutting down");
        h.join().unwrap();
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quote(r#"pa"ss\word"#), r#""pa\"ss\\word""#);
    }
}
