//! The SMTP client side: the availability probe and the round trips' send.

use super::settings::{ProbeSettings, RoundTrip, TlsMode};
use super::tls::{ServedCert, TlsParams};
use super::{base64, tls_params, Cancel, Conn, ProbeFailure, MAX_LINE, MAX_REPLY_LINES};
use std::time::{Duration, Instant};

/// One complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, without code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// `554 5.7.1 go away` (first line only, for a short reason).
    pub fn summary(&self) -> String {
        let first = self.lines.first().map(String::as_str).unwrap_or("");
        if first.is_empty() {
            self.code.to_string()
        } else {
            format!("{} {first}", self.code)
        }
    }

    /// EHLO keywords (upper case), one per line after the greeting.
    pub fn extensions(&self) -> Vec<String> {
        self.lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_ascii_uppercase)
            .collect()
    }

    fn has_auth_plain(&self) -> bool {
        self.lines.iter().skip(1).any(|l| {
            let mut words = l.split_whitespace().map(str::to_ascii_uppercase);
            words.next().is_some_and(|w| w == "AUTH" || w == "AUTH=") && words.any(|w| w == "PLAIN")
        })
    }
}

/// Assembles a reply from lines; `Ok(Some)` once the last line is in.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    pub fn push(&mut self, line: &[u8]) -> Result<Option<Reply>, String> {
        let shown = || String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
        let digits = line
            .get(..3)
            .filter(|d| d.iter().all(u8::is_ascii_digit) && (b'2'..=b'5').contains(&d[0]));
        let Some(digits) = digits else {
            return Err(format!("malformed reply {:?}", shown()));
        };
        let code = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        let (more, text) = match line.get(3) {
            None => (false, &[][..]),
            Some(b' ') => (false, &line[4..]),
            Some(b'-') => (true, &line[4..]),
            Some(_) => return Err(format!("malformed reply {:?}", shown())),
        };
        if *self.code.get_or_insert(code) != code {
            return Err(format!(
                "reply codes differ within one reply: {:?}",
                shown()
            ));
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(format!("reply longer than {MAX_REPLY_LINES} lines"));
        }
        self.lines
            .push(String::from_utf8_lossy(text).trim_end().to_string());
        if more {
            return Ok(None);
        }
        self.code = None;
        Ok(Some(Reply {
            code,
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

/// An SMTP session after the banner and EHLO (and STARTTLS, if used).
pub struct Session {
    conn: Conn,
    pub ehlo: Reply,
    /// Connect to complete banner.
    pub banner_time: Duration,
}

impl Session {
    pub fn reply(&mut self, what: &str) -> Result<Reply, ProbeFailure> {
        read_reply(&mut self.conn, what)
    }

    /// Sends `line` and reads the reply; a code outside `ok` is a failure
    /// named `verb CODE TEXT`.
    pub fn command(&mut self, line: &str, verb: &str, ok: &[u16]) -> Result<Reply, ProbeFailure> {
        let what = format!("waiting for the {verb} reply");
        self.conn.send(format!("{line}\r\n").as_bytes(), &what)?;
        let reply = self.reply(&what)?;
        if !ok.contains(&reply.code) {
            return Err(ProbeFailure::failed(format!("{verb} {}", reply.summary())));
        }
        Ok(reply)
    }

    /// QUIT; a server that closes without 221 is not worth failing over.
    pub fn quit(mut self) {
        let _ = self.command("QUIT", "QUIT", &[221]);
    }
}

fn read_reply(conn: &mut Conn, what: &str) -> Result<Reply, ProbeFailure> {
    let mut parser = ReplyParser::default();
    loop {
        let line = conn.read_line(MAX_LINE, what)?;
        if let Some(reply) = parser.push(&line).map_err(ProbeFailure::failed)? {
            return Ok(reply);
        }
    }
}

/// Connects, requires a 220 banner, EHLO, then TLS as `mode` asks.
pub fn open(
    target: &str,
    mode: TlsMode,
    params: &TlsParams,
    helo: &str,
    served: &ServedCert,
    deadline: Instant,
    cancel: &Cancel,
) -> Result<Session, ProbeFailure> {
    let start = Instant::now();
    let mut conn = Conn::open(target, mode, params, served, deadline, cancel)?;
    let banner = read_reply(&mut conn, "waiting for the banner")?;
    let banner_time = start.elapsed();
    if banner.code != 220 {
        return Err(ProbeFailure::failed(format!("banner {}", banner.summary())));
    }
    let mut session = Session {
        conn,
        ehlo: banner,
        banner_time,
    };
    session.ehlo = session.command(&format!("EHLO {helo}"), "EHLO", &[250])?;
    let offered = session.ehlo.extensions().iter().any(|e| e == "STARTTLS");
    match mode {
        TlsMode::Starttls | TlsMode::May if offered => {
            session.command("STARTTLS", "STARTTLS", &[220])?;
            session.conn.start_tls(params, served)?;
            session.ehlo =
                session.command(&format!("EHLO {helo}"), "EHLO after STARTTLS", &[250])?;
        }
        TlsMode::Starttls => return Err(ProbeFailure::failed("STARTTLS not offered")),
        TlsMode::May | TlsMode::None | TlsMode::Implicit => {}
    }
    Ok(session)
}

/// The availability probe: banner, EHLO, TLS as configured, QUIT.
pub fn probe(
    probe: &ProbeSettings,
    cancel: &Cancel,
    served: &ServedCert,
    banner: &mut Option<Duration>,
) -> Result<Duration, ProbeFailure> {
    let start = Instant::now();
    let target = probe.target.clone();
    let session = open(
        &target,
        probe.tls,
        &super::tls_params(probe, &target),
        &probe.helo_name,
        served,
        start + probe.timeout,
        cancel,
    )?;
    *banner = Some(session.banner_time);
    session.quit();
    Ok(start.elapsed())
}

/// Sends the round trip's message (Subject `PREFIX TOKEN`) to `to`.
pub fn send_probe_message(
    probe: &ProbeSettings,
    rt: &RoundTrip,
    cancel: &Cancel,
    subject_prefix: &str,
    token: &str,
) -> Result<(), ProbeFailure> {
    let target = rt.smtp_target.clone();
    // The served certificate of the SMTP leg is not recorded: the table's
    // `probe:NAME` row is the mailbox server's.
    let served = ServedCert::default();
    let mode = rt.smtp_tls;
    let mut s = open(
        &target,
        mode,
        &tls_params(probe, &target),
        &probe.helo_name,
        &served,
        Instant::now() + probe.timeout,
        cancel,
    )?;
    if let (Some(user), Some(password)) = (&rt.smtp_user, &rt.smtp_password) {
        if !s.conn.is_tls() {
            return Err(ProbeFailure::failed("refusing AUTH without TLS"));
        }
        if !s.ehlo.has_auth_plain() {
            return Err(ProbeFailure::failed("AUTH PLAIN not offered"));
        }
        let blob = base64(format!("\0{user}\0{}", password.expose()).as_bytes());
        // Sent directly: the command line holds the password and must not
        // end up in a failure reason.
        s.conn
            .send(format!("AUTH PLAIN {blob}\r\n").as_bytes(), "sending AUTH")?;
        let reply = s.reply("waiting for the AUTH reply")?;
        if reply.code != 235 {
            return Err(ProbeFailure::failed(format!("AUTH {}", reply.summary())));
        }
    }
    let (from, to) = (rt.from.as_str(), rt.to.as_str());
    s.command(&format!("MAIL FROM:<{from}>"), "MAIL FROM", &[250])?;
    s.command(&format!("RCPT TO:<{to}>"), "RCPT TO", &[250, 251])?;
    s.command("DATA", "DATA", &[354])?;
    let message = probe_message(&probe.name, from, to, subject_prefix, token);
    s.conn.send(message.as_bytes(), "sending the message")?;
    let reply = s.reply("waiting for the reply to the message")?;
    if reply.code != 250 {
        return Err(ProbeFailure::failed(format!("DATA {}", reply.summary())));
    }
    s.quit();
    Ok(())
}

/// The message text, dot-terminated, CR LF line ends (no line starts with a dot).
fn probe_message(name: &str, from: &str, to: &str, subject_prefix: &str, token: &str) -> String {
    let date =
        jiff::fmt::rfc2822::to_string(&jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC))
            .unwrap_or_default();
    let mut m = String::new();
    m.push_str(&format!("From: <{from}>\r\n"));
    m.push_str(&format!("To: <{to}>\r\n"));
    m.push_str(&format!("Subject: {subject_prefix} {token}\r\n"));
    if !date.is_empty() {
        m.push_str(&format!("Date: {date}\r\n"));
    }
    m.push_str(&format!("Message-ID: <{token}@postfix-agentx.invalid>\r\n"));
    m.push_str("Auto-Submitted: auto-generated\r\n");
    m.push_str(&format!("X-Postfix-Agentx-Probe: {name}\r\n"));
    m.push_str("\r\n");
    m.push_str(&format!(
        "Sent by the postfix-agentx probe \"{name}\" to measure delivery.\r\n\
         The probe deletes it as soon as it finds it.\r\n"
    ));
    m.push_str(".\r\n");
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<Vec<Reply>, String> {
        let mut p = ReplyParser::default();
        let mut out = Vec::new();
        for l in lines {
            if let Some(r) = p.push(l.as_bytes())? {
                out.push(r);
            }
        }
        Ok(out)
    }

    #[test]
    fn multi_line_reply_and_extensions() {
        let r = parse(&[
            "250-mx.example.org",
            "250-PIPELINING",
            "250-STARTTLS",
            "250-AUTH LOGIN PLAIN",
            "250 8BITMIME",
        ])
        .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, 250);
        assert_eq!(
            r[0].extensions(),
            ["PIPELINING", "STARTTLS", "AUTH", "8BITMIME"]
        );
        assert!(r[0].has_auth_plain());
    }

    #[test]
    fn single_line_and_bare_code() {
        let r = parse(&["554 5.7.1 go away", "221"]).unwrap();
        assert_eq!(r[0].summary(), "554 5.7.1 go away");
        assert_eq!(r[1].summary(), "221");
        assert!(r[1].lines[0].is_empty());
    }

    #[test]
    fn garbage_and_mixed_codes_are_errors() {
        assert!(parse(&["HTTP/1.1 400 Bad Request"]).is_err());
        assert!(parse(&["SSH-2.0-OpenSSH"]).is_err());
        assert!(parse(&["250x"]).is_err());
        assert!(parse(&["099 nope"]).is_err());
        assert!(parse(&["25"]).is_err());
        assert!(parse(&["250-a", "251 b"]).is_err());
    }

    #[test]
    fn too_many_lines_is_an_error() {
        let lines: Vec<String> = (0..=MAX_REPLY_LINES).map(|i| format!("250-l{i}")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let err = parse(&refs).unwrap_err();
        assert!(err.contains("100 lines"), "{err}");
    }

    #[test]
    fn message_has_the_token_and_no_leading_dots() {
        let m = probe_message("rt", "a@x", "b@y", "[postfix-agentx probe rt]", "tok");
        assert!(m.contains("Subject: [postfix-agentx probe rt] tok\r\n"));
        assert!(m.ends_with("\r\n.\r\n"));
        assert_eq!(m.matches("\r\n.").count(), 1);
    }
}
