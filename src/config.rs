//! The agent's TOML configuration.
//!
//! Every key has a default that works on a stock Debian or RHEL host, so an
//! empty file (or none at all) is a valid configuration. Unknown keys are an
//! error that names the key and its line.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::mib::text::DEFAULT_ROOT;
use crate::snapshot::{ProbeKind, QueueMethodChoice};
use crate::snmp::Oid;
pub use crate::sources::log::follow::StartFrom;
pub use crate::sources::log::input::LogSource;
use crate::sources::probe::settings::{ProbeCheck, ProbeSettings, RoundTrip};
pub use crate::sources::probe::settings::{Secret, TlsMode};

/// Where `run`, `dump` and `check-config` look without `-c`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/postfix-agentx/postfix-agentx.toml";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub agentx: AgentxConfig,
    pub log: LogConfig,
    pub state: StateConfig,
    pub postfix: PostfixConfig,
    pub queue: QueueConfig,
    pub process: ProcessConfig,
    pub alarms: AlarmConfig,
    pub probes: ProbesConfig,
    /// `[[probe]]` tables; empty: one default `smtp` probe against 127.0.0.1:25.
    #[serde(rename = "probe", skip_serializing_if = "Vec::is_empty")]
    pub probe: Vec<ProbeConfig>,
    pub certs: CertsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentxConfig {
    /// `unix:/path`, `tcp:host:port`, or a bare path (unix).
    pub socket: String,
    /// Root OID of the POSTFIX-MIB (see `postfix-agentx mib --root`).
    pub oid_root: String,
    /// Registration priority; 127 is net-snmp's default for subagents, and a
    /// lower number would override the master's own objects.
    pub priority: u8,
    /// Timeout the master should use for our answers, in seconds (0: master's default).
    pub timeout_seconds: u8,
    /// Keep-alive Ping interval, in seconds.
    pub ping_interval_seconds: u64,
    /// Upper bound of the reconnect back-off, in seconds.
    pub reconnect_max_seconds: u64,
}

impl Default for AgentxConfig {
    fn default() -> Self {
        AgentxConfig {
            socket: "unix:/run/agentx/master".to_string(),
            oid_root: DEFAULT_ROOT.to_string(),
            priority: 127,
            timeout_seconds: 0,
            ping_interval_seconds: 15,
            reconnect_max_seconds: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub enabled: bool,
    /// Where Postfix logs: files (`path`), the journal, or `auto`.
    pub source: LogSource,
    /// Log files to follow. Empty: the first of /var/log/mail.log,
    /// /var/log/maillog that exists, else Postfix's `maillog_file`.
    pub path: Vec<PathBuf>,
    /// Where to start when there is no saved state.
    pub start_at: StartFrom,
    /// Extra syslog names of Postfix instances (`syslog_name` in main.cf) that
    /// do not start with `postfix`.
    pub syslog_names: Vec<String>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            enabled: true,
            source: LogSource::Auto,
            path: Vec::new(),
            start_at: StartFrom::End,
            syslog_names: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory for the counters and log positions (systemd's StateDirectory).
    pub directory: PathBuf,
    /// How often the state is saved, in seconds (and always on SIGTERM).
    pub save_interval_seconds: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            directory: PathBuf::from("/var/lib/postfix-agentx"),
            save_interval_seconds: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostfixConfig {
    /// Postfix's config directory (`postconf -c`).
    pub config_directory: PathBuf,
    /// Postfix's queue directory. Empty: ask `postconf -h queue_directory`.
    pub queue_directory: Option<PathBuf>,
}

impl Default for PostfixConfig {
    fn default() -> Self {
        PostfixConfig {
            config_directory: PathBuf::from("/etc/postfix"),
            queue_directory: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub enabled: bool,
    pub method: QueueMethodChoice,
    /// Seconds between scans.
    pub interval_seconds: u64,
    /// A scan that takes longer is abandoned and reported as an error.
    pub time_budget_seconds: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            method: QueueMethodChoice::Auto,
            interval_seconds: 30,
            time_budget_seconds: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessConfig {
    pub enabled: bool,
    /// Seconds between scans of /proc.
    pub interval_seconds: u64,
    /// How long qmgr or pickup may be absent while master runs before the
    /// status is `down` rather than `restarting`.
    pub grace_period_seconds: u64,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            enabled: true,
            interval_seconds: 15,
            grace_period_seconds: 60,
        }
    }
}

/// Thresholds for alarms and notifications. A threshold of 0 turns that
/// check off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmConfig {
    pub enabled: bool,
    /// Send SNMP notifications (traps) for raised and cleared alarms.
    pub notifications: bool,
    /// At most this many notifications a minute; the rest are dropped with a
    /// log message (the alarm table still shows every alarm).
    pub notifications_per_minute: u32,
    /// Warning at these queue sizes (messages); critical at `critical_factor` times.
    pub queue_maildrop: u64,
    pub queue_incoming: u64,
    pub queue_active: u64,
    pub queue_deferred: u64,
    pub queue_hold: u64,
    pub queue_corrupt: u64,
    /// All queues but corrupt together.
    pub queue_total: u64,
    pub critical_factor: u64,
    /// A queue alarm clears only below this fraction of its threshold.
    pub clear_ratio: f64,
    /// Warning when the oldest message of a queue (except hold) is older.
    pub oldest_age_seconds: u64,
    /// Critical when master, or qmgr/pickup past their grace period, is down.
    pub process_down: bool,
    /// Critical after this many probe failures in a row.
    pub probe_failures: u64,
    /// Certificate expiry: warning at or below this many days, critical at or below.
    pub cert_warning_days: i64,
    pub cert_critical_days: i64,
    /// Critical on any new `panic:` / `fatal:` line from Postfix.
    pub log_panic: bool,
    pub log_fatal: bool,
    /// How long a panic/fatal alarm stays active after the last such line.
    pub log_alarm_seconds: u64,
    /// Warning when no log line was read for this long while master runs.
    pub log_silence_seconds: u64,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            enabled: true,
            notifications: true,
            notifications_per_minute: 20,
            queue_maildrop: 500,
            queue_incoming: 1000,
            queue_active: 2000,
            queue_deferred: 500,
            queue_hold: 100,
            queue_corrupt: 1,
            queue_total: 5000,
            critical_factor: 4,
            clear_ratio: 0.9,
            oldest_age_seconds: 86_400,
            process_down: true,
            probe_failures: 3,
            cert_warning_days: 21,
            cert_critical_days: 7,
            log_panic: true,
            log_fatal: true,
            log_alarm_seconds: 900,
            log_silence_seconds: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbesConfig {
    /// Master switch for every `[[probe]]`.
    pub enabled: bool,
}

impl Default for ProbesConfig {
    fn default() -> Self {
        ProbesConfig { enabled: true }
    }
}

/// One `[[probe]]` table. Keys left out take their documented defaults,
/// which depend on `type` (see `packaging/postfix-agentx.toml`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ProbeKind,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// host:port; default by type and `tls` (25/465, 143/993, 110/995 on 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Default: 60 for smtp, 300 for round trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
    /// Bound for each connection of a run. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Default: `may` for smtp, `starttls` for round trips (they log in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    /// Verify the server's certificate chain and name. Default: false for
    /// smtp (an availability and expiry check), true for round trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    /// Name checked against the certificate and sent as SNI. Default: the
    /// host part of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// EHLO argument. Default: this host's name (gethostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo_name: Option<String>,
    // Round trips only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_tls: Option<TlsMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// IMAP folder the message is looked for in. Default: INBOX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    /// How long to wait for the message to arrive. Default: 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

fn yes() -> bool {
    true
}

/// This host's name, for EHLO when `helo_name` is not set.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // unless truncated, and we stop at the first NUL or the end.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if rc == 0 && !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) => {
            name.to_string()
        }
        _ => "localhost".to_string(),
    }
}

/// Written out for the redacted Debug: every field except the passwords.
impl std::fmt::Debug for ProbeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("enabled", &self.enabled)
            .field("target", &self.target)
            .field("interval_seconds", &self.interval_seconds)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("tls", &self.tls)
            .field("tls_verify", &self.tls_verify)
            .field("tls_server_name", &self.tls_server_name)
            .field("helo_name", &self.helo_name)
            .field("smtp_target", &self.smtp_target)
            .field("smtp_tls", &self.smtp_tls)
            .field("smtp_user", &self.smtp_user)
            .field("smtp_password", &self.smtp_password)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("mailbox", &self.mailbox)
            .field("wait_seconds", &self.wait_seconds)
            .finish()
    }
}

impl ProbeConfig {
    /// The probe that runs when no `[[probe]]` is configured.
    pub fn default_smtp() -> ProbeConfig {
        ProbeConfig {
            name: "smtp".to_string(),
            kind: ProbeKind::Smtp,
            enabled: true,
            target: None,
            interval_seconds: None,
            timeout_seconds: None,
            tls: None,
            tls_verify: None,
            tls_server_name: None,
            helo_name: None,
            smtp_target: None,
            smtp_tls: None,
            smtp_user: None,
            smtp_password: None,
            from: None,
            to: None,
            user: None,
            password: None,
            mailbox: None,
            wait_seconds: None,
        }
    }

    fn tls_mode(&self) -> TlsMode {
        self.tls.unwrap_or(match self.kind {
            ProbeKind::Smtp => TlsMode::May,
            ProbeKind::ImapRoundtrip | ProbeKind::Pop3Roundtrip => TlsMode::Starttls,
        })
    }

    fn target(&self) -> String {
        if let Some(t) = &self.target {
            return t.clone();
        }
        let implicit = self.tls_mode() == TlsMode::Implicit;
        let port = match (self.kind, implicit) {
            (ProbeKind::Smtp, false) => 25,
            (ProbeKind::Smtp, true) => 465,
            (ProbeKind::ImapRoundtrip, false) => 143,
            (ProbeKind::ImapRoundtrip, true) => 993,
            (ProbeKind::Pop3Roundtrip, false) => 110,
            (ProbeKind::Pop3Roundtrip, true) => 995,
        };
        format!("127.0.0.1:{port}")
    }

    fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.interval_seconds.unwrap_or(match self.kind {
            ProbeKind::Smtp => 60,
            ProbeKind::ImapRoundtrip | ProbeKind::Pop3Roundtrip => 300,
        }))
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds.unwrap_or(10))
    }

    fn tls_verify(&self) -> bool {
        self.tls_verify.unwrap_or(self.kind != ProbeKind::Smtp)
    }

    fn helo_name(&self) -> String {
        self.helo_name.clone().unwrap_or_else(host_name)
    }

    fn smtp_tls_mode(&self) -> TlsMode {
        self.smtp_tls.unwrap_or(if self.smtp_user.is_some() {
            TlsMode::Starttls
        } else {
            TlsMode::May
        })
    }

    fn smtp_target(&self) -> String {
        self.smtp_target.clone().unwrap_or_else(|| {
            if self.smtp_tls_mode() == TlsMode::Implicit {
                "127.0.0.1:465".to_string()
            } else {
                "127.0.0.1:25".to_string()
            }
        })
    }

    fn mailbox(&self) -> &str {
        self.mailbox.as_deref().unwrap_or("INBOX")
    }

    fn wait(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.wait_seconds.unwrap_or(60))
    }

    fn holds_password(&self) -> bool {
        self.password.is_some() || self.smtp_password.is_some()
    }

    /// The settings a run uses, every default resolved.
    pub fn settings(&self) -> ProbeSettings {
        let round_trip = || RoundTrip {
            smtp_target: self.smtp_target(),
            smtp_tls: self.smtp_tls_mode(),
            smtp_user: self.smtp_user.clone(),
            smtp_password: self.smtp_password.clone(),
            from: self
                .from
                .clone()
                .or_else(|| self.to.clone())
                .unwrap_or_default(),
            to: self.to.clone().unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
            password: self.password.clone().unwrap_or_default(),
            mailbox: self.mailbox().to_string(),
            wait: self.wait(),
        };
        ProbeSettings {
            name: self.name.clone(),
            enabled: self.enabled,
            interval: self.interval(),
            timeout: self.timeout(),
            target: self.target(),
            tls: self.tls_mode(),
            tls_verify: self.tls_verify(),
            tls_server_name: self.tls_server_name.clone(),
            helo_name: self.helo_name(),
            check: match self.kind {
                ProbeKind::Smtp => ProbeCheck::Smtp,
                ProbeKind::ImapRoundtrip => ProbeCheck::ImapRoundtrip(round_trip()),
                ProbeKind::Pop3Roundtrip => ProbeCheck::Pop3Roundtrip(round_trip()),
            },
        }
    }

    fn validate(&self) -> Result<()> {
        let name = &self.name;
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            bail!(
                "probe name {name:?}: use 1 to 32 characters of A-Z, a-z, 0-9, '-', '_', '.' \
                 (it is the SNMP table index)"
            );
        }
        let ctx = |what: &str| format!("probe {name}: {what}");
        check_host_port(&self.target()).with_context(|| ctx("target"))?;
        if self.interval_seconds == Some(0) || self.timeout_seconds == Some(0) {
            bail!(ctx(
                "interval_seconds and timeout_seconds must be at least 1"
            ));
        }
        if let Some(h) = &self.helo_name {
            if h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic()) {
                bail!(ctx("helo_name must be a host name without spaces"));
            }
        }
        let round_trip_keys = [
            ("smtp_target", self.smtp_target.is_some()),
            ("smtp_tls", self.smtp_tls.is_some()),
            ("smtp_user", self.smtp_user.is_some()),
            ("smtp_password", self.smtp_password.is_some()),
            ("from", self.from.is_some()),
            ("to", self.to.is_some()),
            ("user", self.user.is_some()),
            ("password", self.password.is_some()),
            ("mailbox", self.mailbox.is_some()),
            ("wait_seconds", self.wait_seconds.is_some()),
        ];
        if self.kind == ProbeKind::Smtp {
            if let Some((key, _)) = round_trip_keys.iter().find(|(_, set)| *set) {
                bail!(ctx(&format!(
                    "{key} only applies to imap-roundtrip and pop3-roundtrip probes"
                )));
            }
            return Ok(());
        }
        if self.mailbox.is_some() && self.kind != ProbeKind::ImapRoundtrip {
            bail!(ctx("mailbox only applies to imap-roundtrip probes"));
        }
        if self.tls_mode() == TlsMode::May {
            bail!(ctx(
                "tls = \"may\" would send the password in plain text whenever the server \
                 offers no STARTTLS: use \"starttls\", \"implicit\" or (knowingly) \"none\""
            ));
        }
        for (key, value) in [("to", &self.to), ("user", &self.user)] {
            match value {
                Some(v) if !v.is_empty() => check_line_safe(v).with_context(|| ctx(key))?,
                _ => bail!(ctx(&format!("{key} is required for a round trip"))),
            }
        }
        match &self.password {
            Some(p) => check_line_safe(p.expose()).with_context(|| ctx("password"))?,
            None => bail!(ctx("password is required for a round trip")),
        }
        if let Some(from) = &self.from {
            check_line_safe(from).with_context(|| ctx("from"))?;
        }
        for (key, value) in [("to", &self.to), ("from", &self.from)] {
            if value
                .as_deref()
                .is_some_and(|v| v.contains(|c: char| c.is_whitespace() || c == '<' || c == '>'))
            {
                bail!(ctx(&format!(
                    "{key} must be a bare address (user@domain), without spaces or <>"
                )));
            }
        }
        check_host_port(&self.smtp_target()).with_context(|| ctx("smtp_target"))?;
        match (&self.smtp_user, &self.smtp_password) {
            (Some(u), Some(p)) => {
                check_line_safe(u).with_context(|| ctx("smtp_user"))?;
                check_line_safe(p.expose()).with_context(|| ctx("smtp_password"))?;
                if !matches!(self.smtp_tls_mode(), TlsMode::Starttls | TlsMode::Implicit) {
                    bail!(ctx(
                        "smtp_user needs smtp_tls = \"starttls\" or \"implicit\" \
                         (AUTH is never sent in plain text)"
                    ));
                }
            }
            (None, None) => {}
            _ => bail!(ctx("smtp_user and smtp_password go together")),
        }
        if self.wait_seconds == Some(0) {
            bail!(ctx("wait_seconds must be at least 1"));
        }
        Ok(())
    }
}

fn check_host_port(target: &str) -> Result<()> {
    let ok = target
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        bail!("{target:?} is not host:port");
    }
    Ok(())
}

/// Values that go into protocol command lines must not break them.
fn check_line_safe(value: &str) -> Result<()> {
    if value.is_empty() || value.chars().any(|c| c.is_control()) {
        bail!("must be non-empty, without control characters (CR, LF, NUL, ...)");
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CertsConfig {
    pub enabled: bool,
    /// Extra PEM files to watch (the first certificate of each).
    pub files: Vec<PathBuf>,
    /// Seconds between reads of the files.
    pub interval_seconds: u64,
    /// Also watch the certificates Postfix is configured with (postconf).
    pub from_postfix: bool,
}

impl Default for CertsConfig {
    fn default() -> Self {
        CertsConfig {
            enabled: true,
            files: Vec::new(),
            interval_seconds: 3600,
            from_postfix: true,
        }
    }
}

impl AlarmConfig {
    /// The warning threshold of a queue, if that check is on.
    pub fn queue_threshold(&self, q: crate::snapshot::QueueName) -> Option<u64> {
        use crate::snapshot::QueueName;
        let t = match q {
            QueueName::Maildrop => self.queue_maildrop,
            QueueName::Incoming => self.queue_incoming,
            QueueName::Active => self.queue_active,
            QueueName::Deferred => self.queue_deferred,
            QueueName::Hold => self.queue_hold,
            QueueName::Corrupt => self.queue_corrupt,
        };
        (t > 0).then_some(t)
    }
}

impl Config {
    /// The probes that run, defaults resolved: the configured ones, or the
    /// default smtp probe.
    pub fn probes(&self) -> Vec<ProbeSettings> {
        if self.probe.is_empty() {
            vec![ProbeConfig::default_smtp().settings()]
        } else {
            self.probe.iter().map(ProbeConfig::settings).collect()
        }
    }

    /// True if any probe carries a password (the file must then be private).
    pub fn holds_password(&self) -> bool {
        self.probe.iter().any(ProbeConfig::holds_password)
    }

    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            // toml's message names the unknown key; add the line number.
            let line = e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            match line {
                Some(line) => anyhow::anyhow!("{origin}, line {line}: {}", e.message()),
                None => anyhow::anyhow!("{origin}: {}", e.message()),
            }
        })?;
        config.validate().with_context(|| format!("in {origin}"))?;
        Ok(config)
    }

    /// Loads `path`; with `explicit == false` a missing file means defaults.
    /// The file decides what the agent reads and where it writes, so one
    /// that another unprivileged user can change is refused
    /// ([`check_config_owner`]).
    pub fn load(path: &Path, explicit: bool) -> Result<Config> {
        use std::io::Read;
        let (mut file, meta) = match crate::file_trust::open_regular(path, false) {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                tracing::info!(
                    "no configuration file at {}; using the defaults",
                    path.display()
                );
                return Ok(Config::default());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        check_config_owner(path, &meta, crate::file_trust::effective_uid())?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let text =
            String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
        let config = Config::from_toml(&text, &path.display().to_string())?;
        if config.holds_password() {
            check_private(path)?;
        }
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<()> {
        self.oid_root()?;
        if self.agentx.socket.trim().is_empty() {
            bail!("agentx.socket must not be empty");
        }
        if self.queue.interval_seconds == 0 || self.process.interval_seconds == 0 {
            bail!("queue.interval_seconds and process.interval_seconds must be at least 1");
        }
        if self.state.save_interval_seconds == 0 {
            bail!("state.save_interval_seconds must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.alarms.clear_ratio) {
            bail!("alarms.clear_ratio must be between 0 and 1");
        }
        if self.alarms.critical_factor == 0 {
            bail!("alarms.critical_factor must be at least 1");
        }
        if self.alarms.cert_critical_days > self.alarms.cert_warning_days {
            bail!("alarms.cert_critical_days must not exceed alarms.cert_warning_days");
        }
        if self.agentx.ping_interval_seconds == 0 || self.agentx.reconnect_max_seconds == 0 {
            bail!(
                "agentx.ping_interval_seconds and agentx.reconnect_max_seconds must be at least 1"
            );
        }
        if self.certs.interval_seconds == 0 {
            bail!("certs.interval_seconds must be at least 1");
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &self.probe {
            p.validate()?;
            if !names.insert(p.name.as_str()) {
                bail!("two probes are named {:?}; names must be unique", p.name);
            }
        }
        Ok(())
    }

    pub fn oid_root(&self) -> Result<Oid> {
        let root = Oid::parse(&self.agentx.oid_root)
            .map_err(|e| anyhow::anyhow!("agentx.oid_root: {e}"))?;
        if root.len() < 2 || root.as_slice()[0] != 1 {
            bail!(
                "agentx.oid_root {} must start with 1 and have at least two sub-identifiers",
                self.agentx.oid_root
            );
        }
        Ok(root)
    }
}

/// Refuses a configuration file that a user other than root and the agent's
/// own can change: group- or world-writable, or owned by another unprivileged
/// user. Whoever can write it chooses the state directory and the log paths.
pub fn check_config_owner(path: &Path, meta: &std::fs::Metadata, agent_uid: u32) -> Result<()> {
    match crate::file_trust::writable_by_others("configuration file", path, meta, agent_uid) {
        None => Ok(()),
        Some(why) => bail!(
            "{why}; make it root's and not writable by others: `chown root {p} && chmod go-w {p}`",
            p = path.display()
        ),
    }
}

/// Refuses a configuration file with passwords that other users can read.
pub fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o007 != 0 {
        bail!(
            "{} holds passwords but other users can read it (mode {:04o}); \
             run `chmod 640 {}` (owner root, group of the agent's user)",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!(c.agentx.priority, 127);
        assert_eq!(c.agentx.socket, "unix:/run/agentx/master");
        assert_eq!(c.queue.interval_seconds, 30);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::from_toml("[agentx]\nsocket = \"/x\"\nsokcet = 1\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("sokcet"), "{err}");
    }

    #[test]
    fn bad_root_is_rejected() {
        let err = format!(
            "{:#}",
            Config::from_toml("[agentx]\noid_root = \"1.x\"\n", "f").unwrap_err()
        );
        assert!(err.contains("oid_root"), "{err}");
    }

    #[test]
    fn the_packaged_example_is_valid_and_complete() {
        let text = include_str!("../packaging/postfix-agentx.toml");
        Config::from_toml(text, "example").unwrap();
        // Every key must be present in the example (commented out), so the
        // example documents every setting.
        let defaults = toml::to_string(&Config::default()).unwrap();
        let mut section = String::new();
        for line in defaults.lines() {
            if line.starts_with('[') {
                section = line.to_string();
                assert!(text.contains(&section), "example lacks {section}");
            } else if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    text.contains(&format!("# {key} = ")) || text.contains(&format!("{key} = ")),
                    "example lacks {section} {key}"
                );
            }
        }
    }

    const ROUND_TRIP: &str = r#"
[[probe]]
name = "rt"
type = "imap-roundtrip"
to = "probe@example.org"
user = "probe"
password = "hunter2-secret"
smtp_user = "sub"
smtp_password = "other-secret"
"#;

    #[test]
    fn passwords_never_show_in_debug_or_check_config_output() {
        let c = Config::from_toml(ROUND_TRIP, "t").unwrap();
        let debug = format!("{c:?} {:?}", c.probe[0]);
        assert!(
            !debug.contains("hunter2") && !debug.contains("other-secret"),
            "{debug}"
        );
        assert!(debug.contains("redacted"), "{debug}");
        let rendered = toml::to_string_pretty(&c).unwrap();
        assert!(!rendered.contains("hunter2"), "{rendered}");
        assert_eq!(
            c.probe[0].password.as_ref().unwrap().expose(),
            "hunter2-secret"
        );
        // The default smtp probe is replaced by the configured one.
        assert_eq!(c.probes().len(), 1);
        assert_eq!(c.probe[0].smtp_tls_mode(), TlsMode::Starttls);
        assert_eq!(c.probe[0].target(), "127.0.0.1:143");
        assert!(c.probe[0].tls_verify());
    }

    #[test]
    fn group_or_world_writable_config_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "").unwrap();
        for mode in [0o664, 0o646, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = format!("{:#}", Config::load(&path, true).unwrap_err());
            assert!(
                err.contains("writable by users other than its owner")
                    && err.contains(&format!("mode {mode:04o}"))
                    && err.contains("chmod go-w"),
                "{err}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Config::load(&path, true).unwrap();
    }

    #[test]
    fn config_of_another_unprivileged_user_is_refused_and_roots_is_not() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let owner = meta.uid();
        // Our own file, as seen by our own uid: fine.
        check_config_owner(&path, &meta, owner).unwrap();
        // Seen by an agent running as another user: refused, unless the
        // owner is root (then it is a root-owned config: fine).
        let other = owner.wrapping_add(1).max(1);
        let verdict = check_config_owner(&path, &meta, other);
        if owner == 0 {
            verdict.unwrap();
        } else {
            let err = format!("{:#}", verdict.unwrap_err());
            assert!(err.contains("belongs to another user"), "{err}");
        }
    }

    #[test]
    fn a_fifo_as_config_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let err = format!("{:#}", Config::load(&path, true).unwrap_err());
        assert!(err.contains("is a FIFO"), "{err}");
    }

    #[test]
    fn world_readable_file_with_passwords_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, ROUND_TRIP).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", Config::load(&path, true).unwrap_err());
        assert!(
            err.contains("chmod 640") && err.contains("agent.toml"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        Config::load(&path, true).unwrap();
        // Without passwords the mode does not matter.
        std::fs::write(&path, "[probes]\nenabled = true\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Config::load(&path, true).unwrap();
    }

    #[test]
    fn default_probe_is_smtp_on_localhost() {
        let c = Config::from_toml("", "t").unwrap();
        let p = c.probes();
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].name.as_str(), p[0].target.as_str()),
            ("smtp", "127.0.0.1:25")
        );
        assert_eq!(p[0].tls, TlsMode::May);
        assert!(!p[0].tls_verify);
        assert_eq!(p[0].interval.as_secs(), 60);
        assert!(matches!(p[0].check, ProbeCheck::Smtp));
    }

    #[test]
    fn bad_probes_are_rejected_with_a_reason() {
        let cases = [
            ("[[probe]]\nname = \"a b\"\ntype = \"smtp\"\n", "probe name"),
            ("[[probe]]\nname = \"a\"\ntype = \"smtp\"\n[[probe]]\nname = \"a\"\ntype = \"smtp\"\n", "unique"),
            ("[[probe]]\nname = \"a\"\ntype = \"smtp\"\ntarget = \"localhost\"\n", "host:port"),
            ("[[probe]]\nname = \"a\"\ntype = \"smtp\"\nuser = \"x\"\n", "only applies"),
            ("[[probe]]\nname = \"a\"\ntype = \"smtp\"\ntimeout_seconds = 0\n", "at least 1"),
            ("[[probe]]\nname = \"a\"\ntype = \"pop3-roundtrip\"\nto = \"x@y\"\nuser = \"u\"\n", "password is required"),
            ("[[probe]]\nname = \"a\"\ntype = \"pop3-roundtrip\"\nto = \"x@y\"\nuser = \"u\"\npassword = \"p\"\nmailbox = \"INBOX\"\n", "mailbox only"),
            ("[[probe]]\nname = \"a\"\ntype = \"imap-roundtrip\"\nto = \"x@y\"\nuser = \"u\"\npassword = \"p\"\ntls = \"may\"\n", "plain text"),
            ("[[probe]]\nname = \"a\"\ntype = \"imap-roundtrip\"\nto = \"x@y\"\nuser = \"u\"\npassword = \"p\"\nsmtp_user = \"s\"\nsmtp_password = \"p\"\nsmtp_tls = \"none\"\n", "smtp_tls"),
            ("[[probe]]\nname = \"a\"\ntype = \"imap-roundtrip\"\nto = \"x@y\"\nuser = \"u\"\npassword = \"p\\r\\nA LOGOUT\"\n", "control"),
            ("[[probe]]\nname = \"a\"\ntype = \"smtp\"\nbogus = 1\n", "bogus"),
            ("[[probe]]\nname = \"a\"\ntype = \"ftp\"\n", "ftp"),
            ("[certs]\ninterval_seconds = 0\n", "certs.interval_seconds"),
            (
                "[[probe]]\nname = \"a\"\ntype = \"imap-roundtrip\"\nto = \"<x@y>\"\nuser = \"u\"\npassword = \"p\"\n",
                "bare address",
            ),
        ];
        for (text, needle) in cases {
            let err = format!("{:#}", Config::from_toml(text, "t").unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
