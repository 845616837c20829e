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
    Alarm, AlarmEvent, AlarmKind, ProbeState, ProcessState, QueueName, Severity, Snapshot,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

/// A condition found in one evaluation, before hysteresis.
struct Finding {
    key: String,
    kind: AlarmKind,
    severity: Severity,
    value: i64,
    threshold: i64,
    text: String,
}

/// Keeps the active alarms across evaluations.
pub struct AlarmEngine {
    config: AlarmConfig,
    active: BTreeMap<String, Alarm>,
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
        self.active.values().cloned().collect()
    }

    /// The worst active severity, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.active.values().map(|a| a.severity).max()
    }

    /// Judges `s` and returns what changed since the last call.
    pub fn evaluate(&mut self, s: &Snapshot, now: Instant, wall: SystemTime) -> Vec<AlarmEvent> {
        let findings = self.findings(s, now, wall);
        let mut events = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for f in findings {
            seen.insert(f.key.clone());
            match self.active.get_mut(&f.key) {
                Some(a) => {
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
                        key: f.key.clone(),
                        kind: f.kind,
                        severity: f.severity,
                        since: wall,
                        value: f.value,
                        threshold: f.threshold,
                        text: f.text,
                    };
                    events.push(AlarmEvent::Raised(a.clone()));
                    self.active.insert(f.key, a);
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
                if let Some(mut a) = self.active.remove(&key) {
                    if let Some(v) = self.current_value(&a, s) {
                        a.value = v;
                    }
                    events.push(AlarmEvent::Cleared(a));
                }
            }
        }
        events
    }

    fn findings(&mut self, s: &Snapshot, now: Instant, wall: SystemTime) -> Vec<Finding> {
        let c = &self.config;
        let mut out = Vec::new();
        if let Some(q) = &s.queue {
            for row in &q.rows {
                if let Some(t) = c.queue_threshold(row.queue) {
                    if row.messages >= t {
                        out.push(Finding {
                            key: format!("queue:{}", row.queue.name()),
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
                                key: format!("queue-age:{}", row.queue.name()),
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
                    key: "queue:total".into(),
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
        let master_running = s.processes.as_ref().is_some_and(|p| {
            p.rows
                .iter()
                .any(|r| r.name == "master" && r.state == ProcessState::Running)
        });
        if let Some(p) = &s.processes {
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
                        key: format!("process:{}", row.name),
                        kind: AlarmKind::ProcessDown,
                        severity: Severity::Critical,
                        value: i64::from(row.instances),
                        threshold: 1,
                        text: format!("{} is down", row.name),
                    });
                }
            }
        }
        if let Some(probes) = &s.probes {
            for p in probes {
                if c.probe_failures > 0
                    && matches!(p.state, ProbeState::Failed | ProbeState::Timeout)
                    && p.consecutive_failures >= c.probe_failures
                {
                    out.push(Finding {
                        key: format!("probe:{}", p.name),
                        kind: AlarmKind::ProbeFailed,
                        severity: Severity::Critical,
                        value: to_i64(p.consecutive_failures),
                        threshold: to_i64(c.probe_failures),
                        text: format!("probe {} failed: {}", p.name, p.last_error),
                    });
                }
            }
        }
        if let Some(certs) = &s.certs {
            for cert in certs {
                let severity = if cert.days_to_expiry <= c.cert_critical_days {
                    Severity::Critical
                } else if cert.days_to_expiry <= c.cert_warning_days {
                    Severity::Warning
                } else {
                    continue;
                };
                out.push(Finding {
                    key: format!("cert:{}", cert.name),
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
        if let Some(log) = &s.log {
            let hold = Duration::from_secs(c.log_alarm_seconds);
            for (kind, count, word, enabled) in [
                (AlarmKind::LogPanic, log.log_panic, "panic", c.log_panic),
                (AlarmKind::LogFatal, log.log_fatal, "fatal", c.log_fatal),
            ] {
                let mark = self.log_marks.entry(kind).or_insert((count, None));
                if count > mark.0 {
                    mark.1 = Some(now);
                }
                let recent = mark.1.is_some_and(|t| now.duration_since(t) < hold);
                let new_lines = count.saturating_sub(mark.0);
                if enabled && recent {
                    out.push(Finding {
                        key: format!("log:{word}"),
                        kind,
                        severity: Severity::Critical,
                        value: to_i64(count),
                        threshold: 1,
                        text: match &log.last_severe_line {
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
                    key: "log:silent".into(),
                    kind: AlarmKind::LogSilent,
                    severity: Severity::Warning,
                    value: to_i64(silent),
                    threshold: to_i64(c.log_silence_seconds),
                    text: format!("no mail log line read for {silent} s while Postfix runs"),
                });
            }
        }
        out
    }

    /// Hysteresis: a size alarm holds until the value is below
    /// `clear_ratio` × threshold.
    fn still_holds(&self, a: &Alarm, s: &Snapshot) -> bool {
        if a.kind != AlarmKind::QueueSize {
            return false;
        }
        match self.current_value(a, s) {
            Some(v) => (v as f64) >= (a.threshold as f64) * self.config.clear_ratio,
            None => false,
        }
    }

    fn current_value(&self, a: &Alarm, s: &Snapshot) -> Option<i64> {
        match a.kind {
            AlarmKind::QueueSize => {
                let q = s.queue.as_ref()?;
                let name = a.key.strip_prefix("queue:")?;
                if name == "total" {
                    return Some(to_i64(q.total()));
                }
                q.rows
                    .iter()
                    .find(|r| r.queue.name() == name)
                    .map(|r| to_i64(r.messages))
            }
            _ => None,
        }
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
