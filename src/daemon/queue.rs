//! The queue collector thread: one scan per interval, never two at once,
//! never on the request path (it runs at idle CPU priority, see
//! [`super::run_in_background`]).

use super::Shutdown;
use crate::config::Config;
use crate::publisher::Publisher;
use crate::sources::queue::{QueueScanConfig, QueueScanError, QueueScanner};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const SOURCE: &str = "queue";

pub fn scan_config(config: &Config) -> QueueScanConfig {
    QueueScanConfig {
        method: config.queue.method,
        queue_directory: config.postfix.queue_directory.clone(),
        config_directory: Some(config.postfix.config_directory.clone()),
        time_budget: Duration::from_secs(config.queue.time_budget_seconds),
        ..QueueScanConfig::default()
    }
}

/// Scans until shutdown. A scanner that cannot be set up (postconf missing,
/// queue directory unknown) is retried every interval, with the reason in
/// the health table.
pub fn run(config: Config, publisher: Arc<Publisher>, shutdown: Shutdown) {
    // Scans (and their worker threads) yield the CPU to snmpd and the AgentX
    // session: a scan must never delay a request.
    super::run_in_background("queue collector");
    let interval = Duration::from_secs(config.queue.interval_seconds);
    let mut scanner: Option<QueueScanner> = None;
    loop {
        if scanner.is_none() {
            match QueueScanner::new(scan_config(&config)) {
                Ok(s) => {
                    let detail = s.health().detail.clone();
                    publisher.health(SOURCE, &detail, |_| {});
                    scanner = Some(s);
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    tracing::warn!("queue collector cannot start: {msg}");
                    publisher.health(SOURCE, "not set up", |h| h.failure(msg));
                }
            }
        }
        if let Some(s) = scanner.as_mut() {
            scan_once(s, &publisher);
        }
        if !shutdown.sleep(interval) {
            return;
        }
    }
}

fn scan_once(scanner: &mut QueueScanner, publisher: &Publisher) {
    let detail = scanner.health().detail.clone();
    match scanner.scan() {
        Ok(status) => publisher.update(|s| {
            s.queue = Some(status);
            s.health_mut(SOURCE, &detail).success(SystemTime::now());
        }),
        Err(QueueScanError::Partial { status, reason }) => {
            tracing::warn!("queue scan incomplete: {reason}");
            publisher.update(|s| {
                // A partial count is still the best figure we have.
                s.queue = Some(*status);
                s.health_mut(SOURCE, &detail)
                    .failure(format!("partial scan: {reason}"));
            });
        }
        Err(QueueScanError::Failed(e)) => {
            let msg = format!("{e:#}");
            tracing::warn!("queue scan failed: {msg}");
            // Stale rows would lie about the queue: drop them until a scan works.
            publisher.update(|s| {
                s.queue = None;
                s.health_mut(SOURCE, &detail).failure(msg);
            });
        }
    }
}

/// One scan for `dump`; failures end up in the health table.
pub fn collect_once(config: &Config, publisher: &Publisher) {
    match QueueScanner::new(scan_config(config)) {
        Ok(mut s) => scan_once(&mut s, publisher),
        Err(e) => publisher.health(SOURCE, "not set up", |h| h.failure(format!("{e:#}"))),
    }
}
