//! Thresholds and alarms: which conditions are bad right now, judged from
//! one snapshot, and which alarms were raised or cleared since the last look.
//!
//! Nothing here knows about OIDs or traps: the MIB view shows the active
//! alarms, and `mib::notify` turns raise/clear events into notifications.
//! Alarms are edge-triggered with hysteresis: a value must fall clearly below
//! its threshold (`clear_ratio`) before the alarm clears, so a queue hovering
//! at the threshold does not flap.

use crate::config::AlarmConfig;
use crate::snapshot::{
    Alarm, AlarmEvent, AlarmKind, CertRow, LogCounters, ProbeRow, ProbeState, ProcessState,
    ProcessStatus, QueueName, QueueStatus, Severity, Snapshot,
};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};

/// What an alarm is about: its stable identity. [`Display`](fmt::Display)
/// gives the served name (`postfixAlarmName`, the table index, the
/// notifications' subject after the `:`): `queue:deferred`,
/// `queue-age:deferred`, `queue:total`, `process:master`, `probe:smtp`,
/// `cert:NAME`, `log:panic`, `log:fatal`, `log:silent`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AlarmKey {
    Queue(QueueName),
    QueueAge(QueueName),
    QueueTotal,
    Process(String),
    Probe(String),
    Cert(String),
    LogPanic,
    LogFatal,
    LogSilent,
}

impl fmt::Display for AlarmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlarmKey::Queue(q) => write!(f, "queue:{}", q.name()),
            AlarmKey::QueueAge(q) => write!(f, "queue-age:{}", q.name()),
            AlarmKey::QueueTotal => f.write_str("queue:total"),
            AlarmKey::Process(name) => write!(f, "process:{name}"),
            AlarmKey::Probe(name) => write!(f, "probe:{name}"),
            AlarmKey::Cert(name) => write!(f, "cert:{name}"),
            AlarmKey::LogPanic => f.write_str("log:panic"),
            AlarmKey::LogFatal => f.write_str("log:fatal"),
            AlarmKey::LogSilent => f.write_str("log:silent"),
        }
    }
}

/// A condition found in one evaluation, before hysteresis.
struct Finding {
    key: AlarmKey,
    kind: AlarmKind,
    severity: Severity,
    value: i64,
    threshold: i64,
    text: String,
}

/// An active alarm and its typed key.
struct Active {
    key: AlarmKey,
    alarm: Alarm,
}

/// Keeps the active alarms across evaluations.
pub struct AlarmEngine {
    config: AlarmConfig,
    /// By served name, so that they are ordered by it.
    active: BTreeMap<String, Active>,
    /// Last seen panic/fatal counters and when they last grew.
    log_marks: BTreeMap<AlarmKind, (u64, Option<Instant>)>,
    /// When the log counters last grew, and their last value.
    last_line: (u64, Instant),
}

impl AlarmEngine {
    pub fn new(config: AlarmConfig, now: Instant) -> AlarmEngine {
        AlarmEngine {
            config,
            active: BTreeMap::new(),
            log_marks: BTreeMap::new(),
            last_line: (0, now),
        }
    }

    /// The active alarms, ordered by key.
    pub fn active(&self) -> Vec<Alarm> {
        self.active.values().map(|a| a.alarm.clone()).collect()
    }

    /// Judges `s` and returns what changed since the last call.
    pub fn evaluate(&mut self, s: &Snapshot, now: Instant, wall: SystemTime) -> Vec<AlarmEvent> {
        let findings = self.findings(s, now, wall);
        let mut events = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for f in findings {
            let name = f.key.to_string();
            seen.insert(name.clone());
            match self.active.get_mut(&name) {
                Some(Active { alarm: a, .. }) => {
                    let escalated = a.severity != f.severity;
                    a.value = f.value;
                    a.threshold = f.threshold;
                    a.text = f.text;
                    if escalated {
                        a.severity = f.severity;
                        events.push(AlarmEvent::Raised(a.clone()));
                    }
                }
                None => {
                    let a = Alarm {
                        key: name.clone(),
                        kind: f.kind,
                        severity: f.severity,
                        since: wall,
                        value: f.value,
                        threshold: f.threshold,
                        text: f.text,
                    };
                    events.push(AlarmEvent::Raised(a.clone()));
                    self.active.insert(
                        name,
                        Active {
                            key: f.key,
                            alarm: a,
                        },
                    );
                }
            }
        }
        // Alarms with no finding this time: clear unless hysteresis holds them.
        let keys: Vec<String> = self.active.keys().cloned().collect();
        for key in keys {
            if seen.contains(&key) {
                continue;
            }
            let holds = self
                .active
                .get(&key)
                .is_some_and(|a| self.still_holds(a, s));
            if !holds {
                if let Some(Active { key, alarm: mut a }) = self.active.remove(&key) {
                    if let Some(v) = current_value(&key, &a, s) {
                        a.value = v;
                    }
                    events.push(AlarmEvent::Cleared(a));
                }
            }
        }
        events
    }

    /// The conditions that are bad in `s`, rule family by rule family.
    fn findings(&mut self, s: &Snapshot, now: Instant, wall: SystemTime) -> Vec<Finding> {
        let c = &self.config;
        let mut out = Vec::new();
        if let Some(q) = &s.queue {
            queue_findings(c, q, wall, &mut out);
        }
        let master_running = s.processes.as_ref().is_some_and(|p| {
            p.rows
                .iter()
                .any(|r| r.name == "master" && r.state == ProcessState::Running)
        });
        if let Some(p) = &s.processes {
            process_findings(c, p, &mut out);
        }
        if let Some(probes) = &s.probes {
            probe_findings(c, probes, &mut out);
        }
        if let Some(certs) = &s.certs {
            cert_findings(c, certs, &mut out);
        }
        if let Some(log) = &s.log {
            self.log_findings(log, master_running, now, &mut out);
        }
        out
    }

    /// Panic and fatal lines seen lately, and a log gone silent while
    /// Postfix runs.
    fn log_findings(
        &mut self,
        log: &LogCounters,
        master_running: bool,
        now: Instant,
        out: &mut Vec<Finding>,
    ) {
        let c = &self.config;
        let hold = Duration::from_secs(c.log_alarm_seconds);
        for (kind, key, count, word, last_line, enabled) in [
            (
                AlarmKind::LogPanic,
                AlarmKey::LogPanic,
                log.log_panic,
                "panic",
                &log.last_panic_line,
                c.log_panic,
            ),
            (
                AlarmKind::LogFatal,
                AlarmKey::LogFatal,
                log.log_fatal,
                "fatal",
                &log.last_fatal_line,
                c.log_fatal,
            ),
        ] {
            let mark = self.log_marks.entry(kind).or_insert((count, None));
            if count > mark.0 {
                mark.1 = Some(now);
            }
            let recent = mark.1.is_some_and(|t| now.duration_since(t) < hold);
            let new_lines = count.saturating_sub(mark.0);
            if enabled && recent {
                out.push(Finding {
                    key,
                    kind,
                    severity: Severity::Critical,
                    value: to_i64(count),
                    threshold: 1,
                    text: match last_line {
                        Some(line) => line.clone(),
                        None => format!("{new_lines} new {word} lines"),
                    },
                });
            }
            if count > mark.0 {
                mark.0 = count;
            }
        }
        if log.lines_read > self.last_line.0 {
            self.last_line = (log.lines_read, now);
        }
        let silent = now.duration_since(self.last_line.1).as_secs();
        if c.log_silence_seconds > 0 && master_running && silent >= c.log_silence_seconds {
            out.push(Finding {
                key: AlarmKey::LogSilent,
                kind: AlarmKind::LogSilent,
                severity: Severity::Warning,
                value: to_i64(silent),
                threshold: to_i64(c.log_silence_seconds),
                text: format!("no mail log line read for {silent} s while Postfix runs"),
            });
        }
    }

    /// Hysteresis: a size alarm holds until the value is below
    /// `clear_ratio` × threshold.
    fn still_holds(&self, a: &Active, s: &Snapshot) -> bool {
        if a.alarm.kind != AlarmKind::QueueSize {
            return false;
        }
        match current_value(&a.key, &a.alarm, s) {
            Some(v) => (v as f64) >= (a.alarm.threshold as f64) * self.config.clear_ratio,
            None => false,
        }
    }
}

/// The value a size alarm is judged on, now.
fn current_value(key: &AlarmKey, a: &Alarm, s: &Snapshot) -> Option<i64> {
    match a.kind {
        AlarmKind::QueueSize => {
            let q = s.queue.as_ref()?;
            match key {
                AlarmKey::QueueTotal => Some(to_i64(q.total())),
                AlarmKey::Queue(name) => q
                    .rows
                    .iter()
                    .find(|r| r.queue == *name)
                    .map(|r| to_i64(r.messages)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Queues over their size threshold (each, and all together), and queues
/// whose oldest message is too old.
fn queue_findings(c: &AlarmConfig, q: &QueueStatus, wall: SystemTime, out: &mut Vec<Finding>) {
    for row in &q.rows {
        if let Some(t) = c.queue_threshold(row.queue) {
            if row.messages >= t {
                out.push(Finding {
                    key: AlarmKey::Queue(row.queue),
                    kind: AlarmKind::QueueSize,
                    severity: if row.messages >= t.saturating_mul(c.critical_factor) {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    value: to_i64(row.messages),
                    threshold: to_i64(t),
                    text: format!(
                        "{} queue holds {} messages (threshold {t})",
                        row.queue.name(),
                        row.messages
                    ),
                });
            }
        }
        // Held mail waits for the admin by design: its age is no alarm.
        if row.queue != QueueName::Hold && c.oldest_age_seconds > 0 {
            if let Some(arrival) = row.oldest_arrival {
                let age = wall.duration_since(arrival).map_or(0, |d| d.as_secs());
                if age >= c.oldest_age_seconds {
                    out.push(Finding {
                        key: AlarmKey::QueueAge(row.queue),
                        kind: AlarmKind::QueueAge,
                        severity: Severity::Warning,
                        value: to_i64(age),
                        threshold: to_i64(c.oldest_age_seconds),
                        text: format!(
                            "oldest message in the {} queue is {age} s old (threshold {} s)",
                            row.queue.name(),
                            c.oldest_age_seconds
                        ),
                    });
                }
            }
        }
    }
    let total = q.total();
    if c.queue_total > 0 && total >= c.queue_total {
        out.push(Finding {
            key: AlarmKey::QueueTotal,
            kind: AlarmKind::QueueSize,
            severity: if total >= c.queue_total.saturating_mul(c.critical_factor) {
                Severity::Critical
            } else {
                Severity::Warning
            },
            value: to_i64(total),
            threshold: to_i64(c.queue_total),
            text: format!(
                "all queues hold {total} messages (threshold {})",
                c.queue_total
            ),
        });
    }
}

/// Daemons that are down.
fn process_findings(c: &AlarmConfig, p: &ProcessStatus, out: &mut Vec<Finding>) {
    // With master down, Postfix is stopped: one alarm for master, not
    // one more for each daemon that went with it.
    let master_down = p
        .rows
        .iter()
        .any(|r| r.name == "master" && r.state == ProcessState::Down);
    for row in &p.rows {
        if master_down && row.name != "master" {
            continue;
        }
        // `restarting` is a routine restart (pickup after max_use), never an alarm.
        if row.state == ProcessState::Down && c.process_down {
            out.push(Finding {
                key: AlarmKey::Process(row.name.clone()),
                kind: AlarmKind::ProcessDown,
                severity: Severity::Critical,
                value: i64::from(row.instances),
                threshold: 1,
                text: format!("{} is down", row.name),
            });
        }
    }
}

/// Probes that failed often enough in a row.
fn probe_findings(c: &AlarmConfig, probes: &[ProbeRow], out: &mut Vec<Finding>) {
    for p in probes {
        if c.probe_failures > 0
            && matches!(p.state, ProbeState::Failed | ProbeState::Timeout)
            && p.consecutive_failures >= c.probe_failures
        {
            out.push(Finding {
                key: AlarmKey::Probe(p.name.clone()),
                kind: AlarmKind::ProbeFailed,
                severity: Severity::Critical,
                value: to_i64(p.consecutive_failures),
                threshold: to_i64(c.probe_failures),
                text: format!("probe {} failed: {}", p.name, p.last_error),
            });
        }
    }
}

/// Certificates expiring soon, or expired.
fn cert_findings(c: &AlarmConfig, certs: &[CertRow], out: &mut Vec<Finding>) {
    for cert in certs {
        let severity = if cert.days_to_expiry <= c.cert_critical_days {
            Severity::Critical
        } else if cert.days_to_expiry <= c.cert_warning_days {
            Severity::Warning
        } else {
            continue;
        };
        out.push(Finding {
            key: AlarmKey::Cert(cert.name.clone()),
            kind: AlarmKind::CertExpiry,
            severity,
            value: cert.days_to_expiry,
            threshold: match severity {
                Severity::Critical => c.cert_critical_days,
                Severity::Warning => c.cert_warning_days,
            },
            text: if cert.days_to_expiry < 0 {
                format!(
                    "certificate {} expired {} days ago",
                    cert.name, -cert.days_to_expiry
                )
            } else {
                format!(
                    "certificate {} expires in {} days",
                    cert.name, cert.days_to_expiry
                )
            },
        });
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::*;

    fn snapshot(deferred: u64) -> Snapshot {
        let mut s = Snapshot::new(AgentInfo {
            version: "t".into(),
            start_time: SystemTime::UNIX_EPOCH,
            discontinuity_time: SystemTime::UNIX_EPOCH,
        });
        s.queue = Some(QueueStatus {
            method: QueueMethod::Showq,
            rows: vec![QueueRow {
                queue: QueueName::Deferred,
                messages: deferred,
                bytes: 0,
                oldest_arrival: None,
            }],
            scan_time: SystemTime::UNIX_EPOCH,
            scan_duration: Duration::ZERO,
        });
        s
    }

    fn config() -> AlarmConfig {
        AlarmConfig::default()
    }

    #[test]
    fn queue_alarm_raises_once_escalates_and_clears_with_hysteresis() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut e = AlarmEngine::new(config(), now);
        let t = config().queue_deferred;
        assert!(e.evaluate(&snapshot(t - 1), now, wall).is_empty());
        let ev = e.evaluate(&snapshot(t), now, wall);
        assert!(
            matches!(&ev[..], [AlarmEvent::Raised(a)] if a.key == "queue:deferred" && a.severity == Severity::Warning)
        );
        // Holding: no new event.
        assert!(e.evaluate(&snapshot(t + 1), now, wall).is_empty());
        // Escalation to critical is a new raise.
        let ev = e.evaluate(&snapshot(t * config().critical_factor), now, wall);
        assert!(matches!(&ev[..], [AlarmEvent::Raised(a)] if a.severity == Severity::Critical));
        // Just below the threshold: still held (hysteresis).
        assert!(e.evaluate(&snapshot(t - 1), now, wall).is_empty());
        assert_eq!(e.active().len(), 1);
        // Well below: cleared, with the current value.
        let ev = e.evaluate(&snapshot(t / 2), now, wall);
        assert!(matches!(&ev[..], [AlarmEvent::Cleared(a)] if a.value == (t / 2) as i64));
        assert!(e.active().is_empty());
    }

    /// A process row with nothing but a name and a state.
    fn process_row(name: &str, state: ProcessState) -> ProcessRow {
        ProcessRow {
            name: name.into(),
            services: String::new(),
            instances: 0,
            cpu_centiseconds: 0,
            cpu_percent: 0,
            rss_bytes: 0,
            vsize_bytes: 0,
            state,
            oldest_start: None,
            restarts: 0,
        }
    }

    #[test]
    fn restarting_is_not_down() {
        let now = Instant::now();
        let mut e = AlarmEngine::new(config(), now);
        let mut s = snapshot(0);
        let row = |state| process_row("pickup", state);
        s.processes = Some(ProcessStatus {
            config_directory: String::new(),
            rows: vec![row(ProcessState::Restarting)],
            scan_time: SystemTime::UNIX_EPOCH,
        });
        assert!(e.evaluate(&s, now, SystemTime::now()).is_empty());
        s.processes.as_mut().unwrap().rows = vec![row(ProcessState::Down)];
        let ev = e.evaluate(&s, now, SystemTime::now());
        assert!(matches!(&ev[..], [AlarmEvent::Raised(a)] if a.key == "process:pickup"));
    }

    #[test]
    fn postfix_stopped_is_one_alarm_for_master() {
        let now = Instant::now();
        let mut e = AlarmEngine::new(config(), now);
        let mut s = snapshot(0);
        let daemons = ["master", "qmgr", "pickup", "tlsmgr", "anvil"];
        s.processes = Some(ProcessStatus {
            config_directory: String::new(),
            rows: daemons
                .iter()
                .map(|d| process_row(d, ProcessState::Down))
                .collect(),
            scan_time: SystemTime::UNIX_EPOCH,
        });
        let ev = e.evaluate(&s, now, SystemTime::now());
        assert!(
            matches!(&ev[..], [AlarmEvent::Raised(a)] if a.key == "process:master"),
            "{ev:?}"
        );
        // Master back, qmgr still down: that one is its own alarm now.
        let rows = &mut s.processes.as_mut().unwrap().rows;
        rows[0].state = ProcessState::Running;
        rows[2].state = ProcessState::Running;
        rows[3].state = ProcessState::Running;
        rows[4].state = ProcessState::Running;
        let ev = e.evaluate(&s, now, SystemTime::now());
        assert!(ev
            .iter()
            .any(|x| matches!(x, AlarmEvent::Cleared(a) if a.key == "process:master")));
        assert!(ev
            .iter()
            .any(|x| matches!(x, AlarmEvent::Raised(a) if a.key == "process:qmgr")));
        assert_eq!(ev.len(), 2, "{ev:?}");
    }

    #[test]
    fn a_fatal_line_raises_and_clears_after_the_quiet_period() {
        let now = Instant::now();
        let mut e = AlarmEngine::new(config(), now);
        let mut s = snapshot(0);
        s.log = Some(LogCounters::default());
        assert!(e.evaluate(&s, now, SystemTime::now()).is_empty());
        s.log.as_mut().unwrap().log_fatal = 1;
        let ev = e.evaluate(&s, now, SystemTime::now());
        assert!(matches!(&ev[..], [AlarmEvent::Raised(a)] if a.kind == AlarmKind::LogFatal));
        let later = now + Duration::from_secs(config().log_alarm_seconds + 1);
        let ev = e.evaluate(&s, later, SystemTime::now());
        assert!(matches!(&ev[..], [AlarmEvent::Cleared(a)] if a.kind == AlarmKind::LogFatal));
    }

    /// Each alarm shows the last line of its own kind: a panic logged after
    /// a fatal line does not become the fatal alarm's text.
    #[test]
    fn fatal_and_panic_alarms_each_show_their_own_last_line() {
        let now = Instant::now();
        let mut e = AlarmEngine::new(config(), now);
        let mut s = snapshot(0);
        s.log = Some(LogCounters::default());
        assert!(e.evaluate(&s, now, SystemTime::now()).is_empty());
        let log = s.log.as_mut().unwrap();
        log.log_fatal = 1;
        log.log_panic = 1;
        log.last_fatal_line = Some("postfix/smtpd[1]: fatal: f".into());
        log.last_panic_line = Some("postfix/qmgr[2]: panic: p".into());
        let ev = e.evaluate(&s, now, SystemTime::now());
        let text = |kind| {
            ev.iter().find_map(|x| match x {
                AlarmEvent::Raised(a) if a.kind == kind => Some(a.text.clone()),
                _ => None,
            })
        };
        assert_eq!(
            text(AlarmKind::LogFatal).as_deref(),
            Some("postfix/smtpd[1]: fatal: f")
        );
        assert_eq!(
            text(AlarmKind::LogPanic).as_deref(),
            Some("postfix/qmgr[2]: panic: p")
        );
    }

    /// The served names stay what they were as strings.
    #[test]
    fn alarm_keys_display_as_served_names() {
        for (key, name) in [
            (AlarmKey::Queue(QueueName::Deferred), "queue:deferred"),
            (
                AlarmKey::QueueAge(QueueName::Deferred),
                "queue-age:deferred",
            ),
            (AlarmKey::QueueTotal, "queue:total"),
            (AlarmKey::Process("master".into()), "process:master"),
            (AlarmKey::Probe("smtp".into()), "probe:smtp"),
            (AlarmKey::Cert("/etc/x.pem".into()), "cert:/etc/x.pem"),
            (AlarmKey::LogPanic, "log:panic"),
            (AlarmKey::LogFatal, "log:fatal"),
            (AlarmKey::LogSilent, "log:silent"),
        ] {
            assert_eq!(key.to_string(), name);
        }
    }

    #[test]
    fn counters_present_at_start_raise_nothing() {
        // Old panics from before the agent started are history, not news.
        let now = Instant::now();
        let mut e = AlarmEngine::new(config(), now);
        let mut s = snapshot(0);
        s.log = Some(LogCounters {
            log_panic: 5,
            ..LogCounters::default()
        });
        assert!(e.evaluate(&s, now, SystemTime::now()).is_empty());
    }
}
