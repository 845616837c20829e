//! Which periodic collectors the configuration asks for, with their
//! settings, and the tables they start with. The log is not here: it is
//! followed, not polled (see `log`).

use super::drive;
use super::Shutdown;
use crate::config::Config;
use crate::publisher::Publisher;
use crate::sources::cert::CertCollector;
use crate::sources::probe::rows::{self, ProbeCollector};
use crate::sources::probe::Cancel;
use crate::sources::process::{ProcessCollector, ProcessScanConfig};
use crate::sources::queue::{QueueCollector, QueueScanConfig};
use crate::sources::Collector;
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A collector and how to run it.
struct Planned {
    /// Thread name.
    thread: String,
    collector: Box<dyn Collector>,
    /// Long CPU-bound scans run at idle priority.
    background: bool,
}

pub fn queue_scan_config(config: &Config) -> QueueScanConfig {
    QueueScanConfig {
        method: config.queue.method,
        queue_directory: config.postfix.queue_directory.clone(),
        config_directory: Some(config.postfix.config_directory.clone()),
        time_budget: Duration::from_secs(config.queue.time_budget_seconds),
        ..QueueScanConfig::default()
    }
}

fn plan(config: &Config, cancel: &Cancel) -> Vec<Planned> {
    let mut planned = Vec::new();
    if config.queue.enabled {
        planned.push(Planned {
            thread: "collector-queue".into(),
            collector: Box::new(QueueCollector::new(
                queue_scan_config(config),
                Duration::from_secs(config.queue.interval_seconds),
            )),
            // A scan stats every queue file: it must never delay a request.
            background: true,
        });
    }
    if config.process.enabled {
        let scan = ProcessScanConfig {
            config_directory: Some(config.postfix.config_directory.clone()),
            queue_directory: config.postfix.queue_directory.clone(),
            grace: Duration::from_secs(config.process.grace_period_seconds),
            ..ProcessScanConfig::default()
        };
        planned.push(Planned {
            thread: "collector-process".into(),
            collector: Box::new(ProcessCollector::new(
                scan,
                Duration::from_secs(config.process.interval_seconds),
            )),
            background: false,
        });
    }
    if config.probes.enabled {
        // One thread per probe: a slow round trip never delays another.
        for p in config.probes().into_iter().filter(|p| p.enabled) {
            planned.push(Planned {
                thread: format!("probe-{}", p.name),
                collector: Box::new(ProbeCollector::new(p, config.certs.enabled, cancel.clone())),
                background: false,
            });
        }
    }
    if config.certs.enabled {
        let from_postfix = config.certs.from_postfix.then(|| {
            (
                PathBuf::from("postconf"),
                config.postfix.config_directory.clone(),
            )
        });
        planned.push(Planned {
            thread: "collector-certs".into(),
            collector: Box::new(CertCollector::new(
                config.certs.files.clone(),
                from_postfix,
                Duration::from_secs(config.certs.interval_seconds),
            )),
            background: false,
        });
    }
    planned
}

/// Publishes the empty tables and health rows of what is enabled, so a
/// walk shows them (with probes `pending`) before the first collection.
fn publish_initial(config: &Config, publisher: &Publisher) {
    let probes = config.probes();
    publisher.update(|s| {
        if config.probes.enabled {
            s.probes = Some(probes.iter().map(rows::initial_row).collect());
            s.health_mut("probes", &rows::detail(&probes));
        }
        if config.certs.enabled {
            s.certs = Some(Vec::new());
            s.health_mut("certs", &cert_detail(config));
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

/// Starts a thread per periodic collector.
pub fn spawn(
    config: &Config,
    publisher: &Arc<Publisher>,
    shutdown: &Shutdown,
) -> Result<Vec<JoinHandle<()>>> {
    publish_initial(config, publisher);
    plan(config, &shutdown.flag())
        .into_iter()
        .map(|p| drive::spawn(p.thread, p.collector, p.background, publisher, shutdown))
        .collect()
}

/// For `dump`: every collector once, in parallel (probes take seconds).
/// CPU percentages need two scans and read 0 here.
pub fn collect_once(config: &Config, publisher: &Publisher) {
    publish_initial(config, publisher);
    let cancel = Cancel::default();
    std::thread::scope(|scope| {
        for mut p in plan(config, &cancel) {
            scope.spawn(move || drive::collect_once(p.collector.as_mut(), publisher));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{AgentInfo, Snapshot};
    use std::time::SystemTime;

    #[test]
    fn switched_off_sources_have_no_table() {
        let root = crate::snmp::Oid::parse("1.3.6.1.4.1.8072.9999.9999.25").unwrap();
        let publisher = Publisher::new(
            root,
            Snapshot::new(AgentInfo {
                version: "t".into(),
                start_time: SystemTime::UNIX_EPOCH,
                discontinuity_time: SystemTime::UNIX_EPOCH,
            }),
        );
        let mut config = Config::default();
        config.queue.enabled = false;
        config.process.enabled = false;
        config.probes.enabled = false;
        config.certs.enabled = false;
        collect_once(&config, &publisher);
        let s = publisher.snapshot();
        assert!(s.probes.is_none() && s.certs.is_none());
        assert!(!s.health.contains_key("probes") && !s.health.contains_key("certs"));

        config.certs.enabled = true;
        config.certs.from_postfix = false;
        collect_once(&config, &publisher);
        let s = publisher.snapshot();
        assert_eq!(s.certs, Some(Vec::new()));
        assert!(
            s.health["certs"].last_duration.is_some(),
            "the driver times it"
        );
    }
}
