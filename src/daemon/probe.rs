//! Probe threads (one per probe, so a slow round trip never delays another
//! probe and a probe never overlaps itself) and the certificate watch thread.

use super::Shutdown;
use crate::config::{Config, ProbeConfig};
use crate::publisher::Publisher;
use crate::snapshot::{CertRow, ProbeRow, ProbeState, Snapshot};
use crate::sources::cert;
use crate::sources::probe::{self, Cancel, ProbeOutcome};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

const PROBES: &str = "probes";
const CERTS: &str = "certs";
/// Certificate rows of probes are named `probe:NAME`.
const PROBE_CERT_PREFIX: &str = "probe:";

fn initial_row(p: &ProbeConfig) -> ProbeRow {
    ProbeRow {
        name: p.name.clone(),
        kind: p.kind,
        target: p.target(),
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

/// Publishes the empty tables and health rows of what is enabled.
fn publish_initial(config: &Config, publisher: &Publisher) {
    let probes = config.effective_probes();
    publisher.update(|s| {
        if config.probes.enabled {
            s.probes = Some(probes.iter().map(initial_row).collect());
            let enabled = probes.iter().filter(|p| p.enabled).count();
            s.health_mut(
                PROBES,
                &format!("{enabled} of {} probes enabled", probes.len()),
            );
        }
        if config.certs.enabled {
            s.certs = Some(Vec::new());
            s.health_mut(CERTS, &cert_detail(config));
        }
    });
}

fn cert_detail(config: &Config) -> String {
    let mut parts = Vec::new();
    if config.certs.from_postfix {
        parts.push("postconf".to_string());
    }
    if !config.certs.files.is_empty() {
        parts.push(format!("{} configured files", config.certs.files.len()));
    }
    if config.probes.enabled {
        parts.push("TLS probes".to_string());
    }
    parts.join(", ")
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Folds one run's outcome into the snapshot: the probe's row, its
/// `probe:NAME` certificate row, and the `probes` health row.
fn record(s: &mut Snapshot, p: &ProbeConfig, outcome: &ProbeOutcome, certs: bool, now: SystemTime) {
    let Some(rows) = s.probes.as_mut() else {
        return;
    };
    let Some(row) = rows.iter_mut().find(|r| r.name == p.name) else {
        return;
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
    let health = s.health_mut(PROBES, "");
    match &outcome.result {
        Err(f) => health.failure(format!("{}: {}", p.name, f.reason)),
        Ok(()) if !any_failing => health.success(now),
        Ok(()) => {}
    }
    if !certs {
        return;
    }
    let name = format!("{PROBE_CERT_PREFIX}{}", p.name);
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

fn log_transition(p: &ProbeConfig, before: Option<ProbeState>, outcome: &ProbeOutcome) {
    match (&outcome.result, before) {
        (Ok(()), Some(ProbeState::Ok)) => {}
        (Ok(()), _) => tracing::info!("probe {}: ok ({} ms)", p.name, ms(outcome.latency)),
        (Err(f), Some(ProbeState::Failed | ProbeState::Timeout)) => {
            tracing::debug!("probe {}: still failing: {}", p.name, f.reason)
        }
        (Err(f), _) => tracing::warn!("probe {}: {}", p.name, f.reason),
    }
}

fn run_and_record(p: &ProbeConfig, certs: bool, publisher: &Publisher, cancel: &Cancel) {
    let outcome = probe::run(p, cancel);
    publisher.update(|s| {
        let before = s
            .probes
            .as_ref()
            .and_then(|rows| rows.iter().find(|r| r.name == p.name))
            .map(|r| r.state);
        log_transition(p, before, &outcome);
        record(s, p, &outcome, certs, SystemTime::now());
    });
}

fn probe_loop(p: ProbeConfig, certs: bool, publisher: Arc<Publisher>, shutdown: Shutdown) {
    let cancel: Cancel = shutdown.flag();
    loop {
        let started = Instant::now();
        run_and_record(&p, certs, &publisher, &cancel);
        // Start to start, so a slow run does not stretch the interval.
        if !shutdown.sleep(p.interval().saturating_sub(started.elapsed())) {
            return;
        }
    }
}

/// The files to watch: configured ones, then Postfix's.
fn cert_files(config: &Config) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = config.certs.files.clone();
    let mut errors = Vec::new();
    if config.certs.from_postfix {
        match cert::postfix_cert_files(Path::new("postconf"), &config.postfix.config_directory) {
            Ok(found) => {
                for f in found {
                    if !files.contains(&f) {
                        files.push(f);
                    }
                }
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (files, errors)
}

fn scan_certs(config: &Config, publisher: &Publisher) {
    let (files, mut errors) = cert_files(config);
    let (rows, scan_errors) = cert::scan(&files, SystemTime::now());
    errors.extend(scan_errors);
    for e in &errors {
        tracing::warn!("certificates: {e}");
    }
    publisher.update(|s| {
        let table = s.certs.get_or_insert_with(Vec::new);
        // Probe rows belong to the probe threads.
        table.retain(|r| r.name.starts_with(PROBE_CERT_PREFIX));
        table.extend(rows);
        table.sort_by(|a, b| a.name.cmp(&b.name));
        let h = s.health_mut(CERTS, "");
        if errors.is_empty() {
            h.success(SystemTime::now());
        } else {
            h.failure(errors.join("; "));
        }
    });
}

fn cert_loop(config: Config, publisher: Arc<Publisher>, shutdown: Shutdown) {
    let interval = Duration::from_secs(config.certs.interval_seconds);
    loop {
        scan_certs(&config, &publisher);
        if !shutdown.sleep(interval) {
            return;
        }
    }
}

/// Starts one thread per enabled probe and the certificate thread.
pub fn spawn(
    config: &Config,
    publisher: &Arc<Publisher>,
    shutdown: &Shutdown,
) -> Result<Vec<JoinHandle<()>>> {
    publish_initial(config, publisher);
    let mut threads = Vec::new();
    if config.probes.enabled {
        for p in config.effective_probes().into_iter().filter(|p| p.enabled) {
            let (pb, s) = (Arc::clone(publisher), shutdown.clone());
            let certs = config.certs.enabled;
            let name = p.name.clone();
            let handle = std::thread::Builder::new()
                .name(format!("probe-{name}"))
                .spawn(move || probe_loop(p, certs, pb, s))
                .with_context(|| format!("start the thread of probe {name}"))?;
            threads.push(handle);
        }
    }
    if config.certs.enabled {
        let (c, pb, s) = (config.clone(), Arc::clone(publisher), shutdown.clone());
        threads.push(
            std::thread::Builder::new()
                .name("collector-certs".to_string())
                .spawn(move || cert_loop(c, pb, s))
                .context("start the certificate thread")?,
        );
    }
    Ok(threads)
}

/// For `dump`: every enabled probe once (in parallel) and one certificate scan.
pub fn collect_once(config: &Config, publisher: &Publisher) {
    publish_initial(config, publisher);
    let cancel = Cancel::default();
    if config.probes.enabled {
        let probes = config.effective_probes();
        std::thread::scope(|scope| {
            for p in probes.iter().filter(|p| p.enabled) {
                let cancel = &cancel;
                scope.spawn(move || run_and_record(p, config.certs.enabled, publisher, cancel));
            }
        });
    }
    if config.certs.enabled {
        scan_certs(config, publisher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::AgentInfo;
    use crate::sources::probe::ProbeFailure;

    fn snapshot_with(p: &ProbeConfig) -> Snapshot {
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
        let p = ProbeConfig::default_smtp();
        let mut s = snapshot_with(&p);
        assert_eq!(s.probes.as_ref().unwrap()[0].state, ProbeState::Pending);
        let now = SystemTime::now();
        record(
            &mut s,
            &p,
            &outcome(Err(ProbeFailure::failed("connection refused"))),
            true,
            now,
        );
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
        assert_eq!(s.health[PROBES].error_count, 2);
        record(&mut s, &p, &outcome(Ok(())), true, now);
        let row = &s.probes.as_ref().unwrap()[0];
        assert_eq!(row.state, ProbeState::Ok);
        assert_eq!(
            (row.successes, row.failures, row.consecutive_failures),
            (1, 2, 0)
        );
        assert!(row.last_error.is_empty());
        assert_eq!((row.latency_ms, row.banner_ms), (12, 3));
        assert_eq!(s.health[PROBES].state, crate::snapshot::HealthState::Ok);
    }

    #[test]
    fn switched_off_sources_have_no_table() {
        let root = crate::snmp::Oid::parse("1.3.6.1.4.1.8072.9999.9999.25").unwrap();
        let publisher = Publisher::new(root, snapshot_with(&ProbeConfig::default_smtp()));
        publisher.update(|s| {
            s.probes = None;
            s.certs = None;
        });
        let mut config = Config::default();
        config.probes.enabled = false;
        config.certs.enabled = false;
        collect_once(&config, &publisher);
        let s = publisher.snapshot();
        assert!(s.probes.is_none() && s.certs.is_none());
        assert!(!s.health.contains_key(PROBES) && !s.health.contains_key(CERTS));

        config.certs.enabled = true;
        config.certs.from_postfix = false;
        publish_initial(&config, &publisher);
        assert_eq!(publisher.snapshot().certs, Some(Vec::new()));
    }

    #[test]
    fn disabled_probes_show_as_disabled() {
        let mut p = ProbeConfig::default_smtp();
        p.enabled = false;
        assert_eq!(initial_row(&p).state, ProbeState::Disabled);
    }
}
