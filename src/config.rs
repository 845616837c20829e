//! The agent's TOML configuration.
//!
//! Every key has a default that works on a stock Debian or RHEL host, so an
//! empty file (or none at all) is a valid configuration. Unknown keys are an
//! error that names the key and its line.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::mib::text::DEFAULT_ROOT;
use crate::snmp::Oid;
use crate::sources::queue::QueueMethodChoice;

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
            socket: "unix:/var/agentx/master".to_string(),
            oid_root: DEFAULT_ROOT.to_string(),
            priority: 127,
            timeout_seconds: 0,
            ping_interval_seconds: 15,
            reconnect_max_seconds: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Count only lines written after the agent first starts.
    End,
    /// Count the whole existing log on first start.
    Beginning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// Log files if one is found, else the systemd journal.
    Auto,
    File,
    Journal,
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
    pub start_at: StartAt,
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
            start_at: StartAt::End,
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
    pub fn load(path: &Path, explicit: bool) -> Result<Config> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes)
                    .with_context(|| format!("{} is not UTF-8", path.display()))?;
                Config::from_toml(&text, &path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                tracing::info!(
                    "no configuration file at {}; using the defaults",
                    path.display()
                );
                Ok(Config::default())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!(c.agentx.priority, 127);
        assert_eq!(c.agentx.socket, "unix:/var/agentx/master");
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
}
