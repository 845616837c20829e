//! One immutable snapshot of every value the agent serves.
//!
//! Collectors (sources) fill in their part; the MIB view is built from the
//! whole snapshot. Nothing here knows about OIDs or AgentX. A part that no
//! collector has produced yet is `None` and its objects are absent from walks.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub agent: AgentInfo,
    pub log: Option<LogCounters>,
    pub queue: Option<QueueStatus>,
    pub processes: Option<ProcessStatus>,
    /// One row per configured probe (`None`: probes disabled).
    pub probes: Option<Vec<ProbeRow>>,
    /// One row per watched certificate (`None`: certificate watch disabled).
    pub certs: Option<Vec<CertRow>>,
    /// Active alarms (`None`: alarms disabled).
    pub alarms: Option<Vec<Alarm>>,
    /// Per-source health, keyed by source name (`log`, `queue`, `process`, ...).
    pub health: BTreeMap<String, SourceHealth>,
}

impl Snapshot {
    pub fn new(agent: AgentInfo) -> Snapshot {
        Snapshot {
            agent,
            log: None,
            queue: None,
            processes: None,
            probes: None,
            certs: None,
            alarms: None,
            health: BTreeMap::new(),
        }
    }

    /// The health row of `source`, created if new; `detail` replaces the
    /// row's detail unless empty.
    pub fn health_mut(&mut self, source: &str, detail: &str) -> &mut SourceHealth {
        let h = self
            .health
            .entry(source.to_string())
            .or_insert_with(|| SourceHealth::new(detail));
        if !detail.is_empty() {
            h.detail = detail.to_string();
        }
        h
    }
}

#[derive(Debug, Clone)]
pub struct AgentInfo {
    pub version: String,
    pub start_time: SystemTime,
    /// When the counters last lost continuity (fresh state, corrupt state file).
    pub discontinuity_time: SystemTime,
}

/// Counters derived from the Postfix mail log. Every field only grows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LogCounters {
    pub delivered: u64,
    pub forwarded: u64,
    pub received: u64,
    pub generated: u64,
    pub rejected: u64,
    pub discarded: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub expired: u64,
    pub held: u64,
    pub log_fatal: u64,
    pub log_warning: u64,
    pub log_panic: u64,
    pub log_error: u64,
    pub received_bytes: u64,
    pub smtp_connections: u64,
    pub sasl_auth_failures: u64,
    pub tls_connections_in: u64,
    pub tls_connections_out: u64,
    /// Lines read from all log sources.
    pub lines_read: u64,
    /// Lines that were not recognisable syslog lines at all.
    pub lines_unparsed: u64,
    /// Rejections by reason class.
    pub rejects: BTreeMap<RejectReason, RejectCount>,
    /// Delivery outcomes per delivery agent / transport name.
    pub deliveries: BTreeMap<String, DeliveryCount>,
    /// The last `fatal:` line (cut to 255 bytes), for the log:fatal alarm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fatal_line: Option<String>,
    /// The last `panic:` line (cut to 255 bytes), for the log:panic alarm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_panic_line: Option<String>,
}

/// Reason classes for rejections. The discriminant is the MIB index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RejectReason {
    Rbl = 1,
    UnknownUser = 2,
    RelayDenied = 3,
    SenderCheck = 4,
    HeloCheck = 5,
    ClientCheck = 6,
    PolicyService = 7,
    Milter = 8,
    HeaderBodyCheck = 9,
    Postscreen = 10,
    Size = 11,
    Other = 12,
}

impl RejectReason {
    pub const ALL: [RejectReason; 12] = [
        RejectReason::Rbl,
        RejectReason::UnknownUser,
        RejectReason::RelayDenied,
        RejectReason::SenderCheck,
        RejectReason::HeloCheck,
        RejectReason::ClientCheck,
        RejectReason::PolicyService,
        RejectReason::Milter,
        RejectReason::HeaderBodyCheck,
        RejectReason::Postscreen,
        RejectReason::Size,
        RejectReason::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RejectReason::Rbl => "rbl",
            RejectReason::UnknownUser => "unknownUser",
            RejectReason::RelayDenied => "relayDenied",
            RejectReason::SenderCheck => "senderCheck",
            RejectReason::HeloCheck => "heloCheck",
            RejectReason::ClientCheck => "clientCheck",
            RejectReason::PolicyService => "policyService",
            RejectReason::Milter => "milter",
            RejectReason::HeaderBodyCheck => "headerBodyCheck",
            RejectReason::Postscreen => "postscreen",
            RejectReason::Size => "size",
            RejectReason::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RejectCount {
    pub total: u64,
    /// Rejections with a 4xx SMTP status (temporary).
    pub status_4xx: u64,
    /// Rejections with a 5xx SMTP status (permanent).
    pub status_5xx: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeliveryCount {
    pub sent: u64,
    pub deferred: u64,
    pub bounced: u64,
    /// Sum of `delay=` over all counted lines, in milliseconds.
    pub delay_ms_sum: u64,
}

/// The Postfix queues. The discriminant is the MIB index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueName {
    Maildrop = 1,
    Incoming = 2,
    Active = 3,
    Deferred = 4,
    Hold = 5,
    Corrupt = 6,
}

impl QueueName {
    pub const ALL: [QueueName; 6] = [
        QueueName::Maildrop,
        QueueName::Incoming,
        QueueName::Active,
        QueueName::Deferred,
        QueueName::Hold,
        QueueName::Corrupt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            QueueName::Maildrop => "maildrop",
            QueueName::Incoming => "incoming",
            QueueName::Active => "active",
            QueueName::Deferred => "deferred",
            QueueName::Hold => "hold",
            QueueName::Corrupt => "corrupt",
        }
    }

    pub fn from_name(name: &str) -> Option<QueueName> {
        QueueName::ALL.into_iter().find(|q| q.name() == name)
    }
}

/// How the queue was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMethod {
    Showq = 1,
    Directory = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    pub queue: QueueName,
    pub messages: u64,
    pub bytes: u64,
    /// Arrival time of the oldest message, if the queue is not empty.
    pub oldest_arrival: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    pub method: QueueMethod,
    /// Rows for the queues this method can see (showq does not see `corrupt`).
    pub rows: Vec<QueueRow>,
    pub scan_time: SystemTime,
    pub scan_duration: Duration,
}

impl QueueStatus {
    /// All messages in all queues except `corrupt`.
    pub fn total(&self) -> u64 {
        self.rows
            .iter()
            .filter(|r| r.queue != QueueName::Corrupt)
            .map(|r| r.messages)
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    Running = 1,
    Restarting = 2,
    Down = 3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    /// Daemon name from `argv[0]` (`master`, `qmgr`, `smtpd`, ...).
    pub name: String,
    /// Master.cf service names (`-n`) seen for this daemon, comma-separated.
    pub services: String,
    pub instances: u32,
    /// User+system CPU in centiseconds; never goes backwards.
    pub cpu_centiseconds: u64,
    /// CPU use over the last scan interval, in percent of one core.
    pub cpu_percent: u32,
    pub rss_bytes: u64,
    pub vsize_bytes: u64,
    pub state: ProcessState,
    pub oldest_start: Option<SystemTime>,
    /// New pids seen for a single-instance daemon (pickup, qmgr, ...).
    pub restarts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStatus {
    /// The Postfix instance's config directory, if known.
    pub config_directory: String,
    pub rows: Vec<ProcessRow>,
    pub scan_time: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Ok = 1,
    Error = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHealth {
    pub state: HealthState,
    /// Free text: what the source is reading and how (`/var/log/mail.log`, `showq`).
    pub detail: String,
    pub last_success: Option<SystemTime>,
    pub last_error: String,
    pub error_count: u64,
    /// How long the last collection took; `None` for sources that are not
    /// collected periodically (the log, the AgentX session, the state).
    pub last_duration: Option<Duration>,
}

impl SourceHealth {
    pub fn new(detail: impl Into<String>) -> SourceHealth {
        SourceHealth {
            state: HealthState::Ok,
            detail: detail.into(),
            last_success: None,
            last_error: String::new(),
            error_count: 0,
            last_duration: None,
        }
    }

    pub fn success(&mut self, now: SystemTime) {
        self.state = HealthState::Ok;
        self.last_success = Some(now);
    }

    pub fn failure(&mut self, error: impl Into<String>) {
        self.state = HealthState::Error;
        self.last_error = error.into();
        self.error_count = self.error_count.saturating_add(1);
    }
}

/// What a probe does. The discriminant is the MIB enumeration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    Smtp = 1,
    ImapRoundtrip = 2,
    Pop3Roundtrip = 3,
}

/// Result of a probe's last run. The discriminant is the MIB enumeration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeState {
    Ok = 1,
    Failed = 2,
    Timeout = 3,
    Disabled = 4,
    Pending = 5,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRow {
    /// The probe's name from the configuration (the table index).
    pub name: String,
    pub kind: ProbeKind,
    /// `host:port` the probe connects to.
    pub target: String,
    pub state: ProbeState,
    /// Duration of the last run, in milliseconds.
    pub latency_ms: u64,
    /// SMTP probes: time from connect to the banner, in milliseconds.
    pub banner_ms: u64,
    pub successes: u64,
    pub failures: u64,
    /// Failures in a row since the last success (for thresholds).
    pub consecutive_failures: u64,
    pub last_success: Option<SystemTime>,
    /// A short human reason for the last failure; empty after a success.
    pub last_error: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    /// The certificate's name (its file, or `probe:NAME` for a served one): the table index.
    pub name: String,
    pub subject: String,
    pub not_after: SystemTime,
    /// Whole days until notAfter; negative once expired.
    pub days_to_expiry: i64,
}

/// What an alarm is about. The discriminant is the MIB enumeration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlarmKind {
    QueueSize = 1,
    QueueAge = 2,
    ProcessDown = 3,
    ProbeFailed = 4,
    CertExpiry = 5,
    LogPanic = 6,
    LogFatal = 7,
    LogSilent = 8,
}

impl AlarmKind {
    pub const ALL: [AlarmKind; 8] = [
        AlarmKind::QueueSize,
        AlarmKind::QueueAge,
        AlarmKind::ProcessDown,
        AlarmKind::ProbeFailed,
        AlarmKind::CertExpiry,
        AlarmKind::LogPanic,
        AlarmKind::LogFatal,
        AlarmKind::LogSilent,
    ];
}

/// The discriminant is the MIB enumeration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning = 2,
    Critical = 3,
}

/// One active alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// Stable identity: `queue:deferred`, `process:qmgr`, `probe:smtp`, ...
    pub key: String,
    pub kind: AlarmKind,
    pub severity: Severity,
    pub since: SystemTime,
    pub value: i64,
    pub threshold: i64,
    pub text: String,
}

/// A change to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmEvent {
    /// New, or its severity changed.
    Raised(Alarm),
    /// Gone; carries the alarm as it was last seen, with the current value.
    Cleared(Alarm),
}

/// The configured counting method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMethodChoice {
    #[default]
    Auto,
    Showq,
    Directory,
}
