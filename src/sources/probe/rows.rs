//! The probe table's bookkeeping: a row per configured probe, folded with
//! each run's outcome (counts, state, last error, latency), and the
//! `probe:NAME` certificate row of what a TLS server presented.

use super::settings::ProbeSettings;
use super::{Cancel, ProbeOutcome};
use crate::snapshot::{CertRow, ProbeRow, ProbeState, Snapshot};
use crate::sources::cert::{self, PROBE_ROW_PREFIX};
use crate::sources::{Collected, Collector, Outcome};
use std::time::{Duration, SystemTime};

/// The row of a probe that has not run yet.
pub fn initial_row(p: &ProbeSettings) -> ProbeRow {
    ProbeRow {
        name: p.name.clone(),
        kind: p.kind(),
        target: p.target.clone(),
        state: if p.enabled {
            ProbeState::Pending
        } else {
            ProbeState::Disabled
        },
        latency_ms: 0,
        banner_ms: 0,
        successes: 0,
        failures: 0,
        consecutive_failures: 0,
        last_success: None,
        last_error: String::new(),
    }
}

/// The `probes` health row's detail.
pub fn detail(probes: &[ProbeSettings]) -> String {
    let enabled = probes.iter().filter(|p| p.enabled).count();
    format!("{enabled} of {} probes enabled", probes.len())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Folds one run's outcome into the snapshot: the probe's row and, with
/// `certs`, its `probe:NAME` certificate row. Returns what the `probes`
/// health row learns: a failure names the probe; a success counts only
/// when no probe is failing.
pub fn record(
    s: &mut Snapshot,
    p: &ProbeSettings,
    outcome: &ProbeOutcome,
    certs: bool,
    now: SystemTime,
) -> Outcome {
    let Some(rows) = s.probes.as_mut() else {
        return Outcome::Unchanged;
    };
    let Some(row) = rows.iter_mut().find(|r| r.name == p.name) else {
        return Outcome::Unchanged;
    };
    row.latency_ms = ms(outcome.latency);
    row.banner_ms = outcome.banner.map_or(0, ms);
    match &outcome.result {
        Ok(()) => {
            row.state = ProbeState::Ok;
            row.successes = row.successes.saturating_add(1);
            row.consecutive_failures = 0;
            row.last_success = Some(now);
            row.last_error.clear();
        }
        Err(f) => {
            row.state = if f.timeout {
                ProbeState::Timeout
            } else {
                ProbeState::Failed
            };
            row.failures = row.failures.saturating_add(1);
            row.consecutive_failures = row.consecutive_failures.saturating_add(1);
            row.last_error = f.reason.clone();
        }
    }
    let any_failing = rows
        .iter()
        .any(|r| matches!(r.state, ProbeState::Failed | ProbeState::Timeout));
    let health = match &outcome.result {
        Err(f) => Outcome::Failure(format!("{}: {}", p.name, f.reason)),
        Ok(()) if !any_failing => Outcome::Success,
        Ok(()) => Outcome::Unchanged,
    };
    if certs {
        record_served_cert(s, p, outcome, now);
    }
    health
}

fn record_served_cert(
    s: &mut Snapshot,
    p: &ProbeSettings,
    outcome: &ProbeOutcome,
    now: SystemTime,
) {
    let name = format!("{PROBE_ROW_PREFIX}{}", p.name);
    let served = outcome
        .served_cert
        .as_deref()
        .map(|der| cert::parse_der(der).map(|info| cert::row(name.clone(), &info, now)));
    let table = s.certs.get_or_insert_with(Vec::new);
    match served {
        Some(Ok(new_row)) => upsert(table, new_row),
        Some(Err(e)) => {
            tracing::warn!(
                "probe {}: cannot read the served certificate: {e:#}",
                p.name
            );
        }
        // A run that got through without TLS: the server no longer offers
        // it, so the old row would mislead. A failed run keeps the last one.
        None if outcome.result.is_ok() => table.retain(|r| r.name != name),
        None => {}
    }
}

fn upsert(table: &mut Vec<CertRow>, row: CertRow) {
    match table.iter_mut().find(|r| r.name == row.name) {
        Some(old) => *old = row,
        None => {
            table.push(row);
            table.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }
}

/// Logs a change of state (and a still-failing probe only at debug level).
fn log_transition(p: &ProbeSettings, before: Option<ProbeState>, outcome: &ProbeOutcome) {
    match (&outcome.result, before) {
        (Ok(()), Some(ProbeState::Ok)) => {}
        (Ok(()), _) => tracing::info!("probe {}: ok ({} ms)", p.name, ms(outcome.latency)),
        (Err(f), Some(ProbeState::Failed | ProbeState::Timeout)) => {
            tracing::debug!("probe {}: still failing: {}", p.name, f.reason)
        }
        (Err(f), _) => tracing::warn!("probe {}: {}", p.name, f.reason),
    }
}

/// One probe as a [`Collector`]: a run per collection. Probes share the
/// `probes` health row; each has its own thread, so a slow round trip never
/// delays another probe and a probe never overlaps itself.
pub struct ProbeCollector {
    settings: ProbeSettings,
    /// Also keep the `probe:NAME` certificate row.
    certs: bool,
    cancel: Cancel,
}

impl ProbeCollector {
    pub fn new(settings: ProbeSettings, certs: bool, cancel: Cancel) -> ProbeCollector {
        ProbeCollector {
            settings,
            certs,
            cancel,
        }
    }
}

impl Collector for ProbeCollector {
    fn source(&self) -> &'static str {
        "probes"
    }

    fn interval(&self) -> Duration {
        self.settings.interval
    }

    fn collect(&mut self) -> Collected {
        let outcome = super::run(&self.settings, &self.cancel);
        let (p, certs) = (self.settings.clone(), self.certs);
        Collected {
            detail: None,
            publish: Box::new(move |s| {
                let before = s
                    .probes
                    .as_ref()
                    .and_then(|rows| rows.iter().find(|r| r.name == p.name))
                    .map(|r| r.state);
                log_transition(&p, before, &outcome);
                record(s, &p, &outcome, certs, SystemTime::now())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::AgentInfo;
    use crate::sources::probe::settings::{ProbeCheck, TlsMode};
    use crate::sources::probe::ProbeFailure;

    fn smtp_probe() -> ProbeSettings {
        ProbeSettings {
            name: "smtp".into(),
            enabled: true,
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            target: "127.0.0.1:25".into(),
            tls: TlsMode::May,
            tls_verify: false,
            tls_server_name: None,
            helo_name: "localhost".into(),
            check: ProbeCheck::Smtp,
        }
    }

    fn snapshot_with(p: &ProbeSettings) -> Snapshot {
        let mut s = Snapshot::new(AgentInfo {
            version: "t".into(),
            start_time: SystemTime::UNIX_EPOCH,
            discontinuity_time: SystemTime::UNIX_EPOCH,
        });
        s.probes = Some(vec![initial_row(p)]);
        s.certs = Some(Vec::new());
        s
    }

    fn outcome(result: Result<(), ProbeFailure>) -> ProbeOutcome {
        ProbeOutcome {
            result,
            latency: Duration::from_millis(12),
            banner: Some(Duration::from_millis(3)),
            served_cert: None,
        }
    }

    #[test]
    fn counters_and_states_follow_outcomes() {
        let p = smtp_probe();
        let mut s = snapshot_with(&p);
        assert_eq!(s.probes.as_ref().unwrap()[0].state, ProbeState::Pending);
        let now = SystemTime::now();
        let refused = record(
            &mut s,
            &p,
            &outcome(Err(ProbeFailure::failed("connection refused"))),
            true,
            now,
        );
        assert_eq!(refused, Outcome::Failure("smtp: connection refused".into()));
        record(
            &mut s,
            &p,
            &outcome(Err(ProbeFailure::timeout("timed out"))),
            true,
            now,
        );
        let row = &s.probes.as_ref().unwrap()[0];
        assert_eq!(row.state, ProbeState::Timeout);
        assert_eq!((row.failures, row.consecutive_failures), (2, 2));
        assert_eq!(row.last_error, "timed out");
        assert_eq!(
            record(&mut s, &p, &outcome(Ok(())), true, now),
            Outcome::Success
        );
        let row = &s.probes.as_ref().unwrap()[0];
        assert_eq!(row.state, ProbeState::Ok);
        assert_eq!(
            (row.successes, row.failures, row.consecutive_failures),
            (1, 2, 0)
        );
        assert!(row.last_error.is_empty());
        assert_eq!((row.latency_ms, row.banner_ms), (12, 3));
    }

    #[test]
    fn a_success_while_another_probe_fails_leaves_the_health_row() {
        let p = smtp_probe();
        let mut other = smtp_probe();
        other.name = "other".into();
        let mut s = snapshot_with(&p);
        if let Some(rows) = s.probes.as_mut() {
            rows.push(initial_row(&other));
        }
        let now = SystemTime::now();
        record(
            &mut s,
            &other,
            &outcome(Err(ProbeFailure::failed("down"))),
            false,
            now,
        );
        assert_eq!(
            record(&mut s, &p, &outcome(Ok(())), false, now),
            Outcome::Unchanged
        );
    }

    #[test]
    fn disabled_probes_show_as_disabled() {
        let mut p = smtp_probe();
        p.enabled = false;
        assert_eq!(initial_row(&p).state, ProbeState::Disabled);
    }
}
