//! The process collector thread: one /proc scan per interval.

use super::Shutdown;
use crate::config::Config;
use crate::publisher::Publisher;
use crate::sources::process::{ProcessScanConfig, ProcessScanner};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SOURCE: &str = "process";

fn scanner(config: &Config) -> ProcessScanner {
    ProcessScanner::new(ProcessScanConfig {
        config_directory: Some(config.postfix.config_directory.clone()),
        queue_directory: config.postfix.queue_directory.clone(),
        grace: Duration::from_secs(config.process.grace_period_seconds),
        ..ProcessScanConfig::default()
    })
}

fn scan_once(scanner: &mut ProcessScanner, publisher: &Publisher) {
    let result = scanner.scan(Instant::now());
    let health = scanner.health().clone();
    publisher.update(|s| {
        match result {
            Ok(status) => s.processes = Some(status),
            // Without a reading, old rows would claim processes that may be gone.
            Err(_) => s.processes = None,
        }
        s.health.insert(SOURCE.to_string(), health);
    });
}

pub fn run(config: Config, publisher: Arc<Publisher>, shutdown: Shutdown) {
    let interval = Duration::from_secs(config.process.interval_seconds);
    let mut scanner = scanner(&config);
    loop {
        scan_once(&mut scanner, &publisher);
        if !shutdown.sleep(interval) {
            return;
        }
    }
}

/// One scan for `dump` (CPU percentages need two scans and read 0 here).
pub fn collect_once(config: &Config, publisher: &Publisher) {
    scan_once(&mut scanner(config), publisher);
}
