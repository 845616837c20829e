//! What one probe run needs, every default resolved: built once from the
//! configuration's `[[probe]]` table (which keeps the keys as the admin wrote
//! them, for line-numbered errors) and handed to the probe thread.

use crate::snapshot::ProbeKind;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a probe protects a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text.
    None,
    /// STARTTLS if the server offers it, plain text otherwise (SMTP only).
    May,
    /// STARTTLS (STLS for POP3), required: a server without it fails the probe.
    Starttls,
    /// TLS from the first byte (SMTPS 465, IMAPS 993, POP3S 995).
    Implicit,
}

/// A password: never printed, not by `Debug` (logs, panics) nor by
/// `Serialize` (`check-config` shows the effective configuration).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The password itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"(redacted)\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str("(redacted)")
    }
}

/// One probe.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// The table index and the thread's name.
    pub name: String,
    /// A disabled probe keeps its row (state `disabled`) and never runs.
    pub enabled: bool,
    pub interval: Duration,
    /// Bound for each connection of a run.
    pub timeout: Duration,
    /// host:port probed: the SMTP server, or the mailbox server of a round trip.
    pub target: String,
    pub tls: TlsMode,
    /// Verify the certificate chain and name.
    pub tls_verify: bool,
    /// Checked against the certificate and sent as SNI; `None`: the
    /// target's host.
    pub tls_server_name: Option<String>,
    /// EHLO argument.
    pub helo_name: String,
    pub check: ProbeCheck,
}

/// What a run checks.
#[derive(Debug, Clone)]
pub enum ProbeCheck {
    /// Banner, EHLO, TLS as configured, QUIT.
    Smtp,
    /// Send a message through SMTP, find it in an IMAP folder.
    ImapRoundtrip(RoundTrip),
    /// Send a message through SMTP, find it in a POP3 mailbox.
    Pop3Roundtrip(RoundTrip),
}

/// The send leg and the mailbox login of a round trip.
#[derive(Debug, Clone)]
pub struct RoundTrip {
    pub smtp_target: String,
    pub smtp_tls: TlsMode,
    /// SMTP AUTH, when both are set.
    pub smtp_user: Option<String>,
    pub smtp_password: Option<Secret>,
    pub from: String,
    pub to: String,
    pub user: String,
    pub password: Secret,
    /// IMAP folder (POP3 has one mailbox).
    pub mailbox: String,
    /// How long to wait for the message to arrive.
    pub wait: Duration,
}

impl ProbeSettings {
    pub fn kind(&self) -> ProbeKind {
        match self.check {
            ProbeCheck::Smtp => ProbeKind::Smtp,
            ProbeCheck::ImapRoundtrip(_) => ProbeKind::ImapRoundtrip,
            ProbeCheck::Pop3Roundtrip(_) => ProbeKind::Pop3Roundtrip,
        }
    }
}
