//! Postfix queue depth: messages, bytes and oldest arrival per queue.
//!
//! Two ways to count, chosen by [`QueueMethodChoice`]:
//! - `directory` ([`directory`]): reads the queue directories; needs read
//!   access to them (root, `postfix` or CAP_DAC_READ_SEARCH); sees `corrupt`.
//! - `showq` ([`showq`]): asks Postfix's showq service over
//!   `public/showq`, which group `postdrop` may use; no `corrupt` row.
//!
//! `auto` uses `directory` when the queue directories are readable, else
//! `showq`, and says which in the log and in [`QueueScanner::health`].
//! [`QueueScanner::scan`] blocks; run it off the async runtime, one at a time.

pub mod directory;
pub mod showq;

use super::{Collected, Collector, Outcome};
use crate::snapshot::{
    QueueMethod, QueueMethodChoice, QueueName, QueueRow, QueueStatus, Snapshot, SourceHealth,
};
use anyhow::{anyhow, Context};
use directory::{DirQueueTotals, DirScanError, DirScanOptions};
use showq::{ShowqError, ShowqLimits};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct QueueScanConfig {
    pub method: QueueMethodChoice,
    /// `None`: ask `postconf -h queue_directory` once, in [`QueueScanner::new`].
    pub queue_directory: Option<PathBuf>,
    /// Postfix config directory passed to postconf as `-c DIR`.
    pub config_directory: Option<PathBuf>,
    /// The postconf program (looked up in PATH unless absolute).
    pub postconf: PathBuf,
    /// A scan taking longer stops and reports a partial result as an error.
    pub time_budget: Duration,
    /// Directory method: also bytes and oldest arrival (one statx per file).
    /// showq always has them.
    pub details: bool,
    /// Directory method: threads for hashed subdirectories.
    pub threads: usize,
    pub showq_limits: ShowqLimits,
}

impl Default for QueueScanConfig {
    fn default() -> Self {
        QueueScanConfig {
            method: QueueMethodChoice::Auto,
            queue_directory: None,
            config_directory: None,
            postconf: PathBuf::from("postconf"),
            time_budget: Duration::from_secs(20),
            details: true,
            threads: std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(1),
            showq_limits: ShowqLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueScanError {
    /// The scan stopped early (time budget); `status` has what was counted.
    #[error("partial queue scan: {reason}")]
    Partial {
        status: Box<QueueStatus>,
        reason: String,
    },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

pub struct QueueScanner {
    config: QueueScanConfig,
    queue_directory: PathBuf,
    method: QueueMethod,
    health: SourceHealth,
}

impl QueueScanner {
    /// Resolves the queue directory and, for `auto`, the method.
    pub fn new(config: QueueScanConfig) -> anyhow::Result<QueueScanner> {
        let queue_directory = match &config.queue_directory {
            Some(dir) => dir.clone(),
            None => PathBuf::from(
                super::postconf::value(
                    &config.postconf,
                    config.config_directory.as_deref(),
                    "queue_directory",
                )
                .context("finding the queue directory (set queue_directory in the config)")?,
            ),
        };
        let (method, why) = match config.method {
            QueueMethodChoice::Directory => (QueueMethod::Directory, "configured".to_owned()),
            QueueMethodChoice::Showq => (QueueMethod::Showq, "configured".to_owned()),
            QueueMethodChoice::Auto => match directories_readable(&queue_directory) {
                Ok(()) => (
                    QueueMethod::Directory,
                    "auto: queue directories are readable".to_owned(),
                ),
                Err(e) => (
                    QueueMethod::Showq,
                    format!("auto: queue directories not readable ({e})"),
                ),
            },
        };
        let detail = match method {
            QueueMethod::Directory => format!("directory {} ({why})", queue_directory.display()),
            QueueMethod::Showq => format!(
                "showq {} ({why})",
                queue_directory.join("public/showq").display()
            ),
        };
        tracing::info!(queue_directory = %queue_directory.display(), "queue scan method: {detail}");
        Ok(QueueScanner {
            config,
            queue_directory,
            method,
            health: SourceHealth::new(detail),
        })
    }

    pub fn method(&self) -> QueueMethod {
        self.method
    }

    pub fn queue_directory(&self) -> &Path {
        &self.queue_directory
    }

    /// Health of this source, updated by every [`scan`](Self::scan).
    pub fn health(&self) -> &SourceHealth {
        &self.health
    }

    /// Counts all queues once. Blocks for at most about the time budget.
    pub fn scan(&mut self) -> Result<QueueStatus, QueueScanError> {
        let scan_time = SystemTime::now();
        let started = Instant::now();
        let deadline = started + self.config.time_budget;
        let result = match self.method {
            QueueMethod::Directory => self.scan_directory(scan_time, started, deadline),
            QueueMethod::Showq => self.scan_showq(scan_time, started, deadline),
        };
        match &result {
            Ok(status) => {
                self.health.success(SystemTime::now());
                tracing::debug!(
                    total = status.total(),
                    duration_ms = status.scan_duration.as_millis() as u64,
                    "queue scan done"
                );
            }
            Err(e) => {
                // The caller decides how loudly to report it.
                let text = format!("{e:#}");
                tracing::debug!("queue scan failed: {text}");
                self.health.failure(text);
            }
        }
        result
    }

    fn scan_directory(
        &self,
        scan_time: SystemTime,
        started: Instant,
        deadline: Instant,
    ) -> Result<QueueStatus, QueueScanError> {
        let options = DirScanOptions {
            details: self.config.details,
            deadline,
            threads: self.config.threads,
        };
        let mut rows = Vec::with_capacity(QueueName::ALL.len());
        let mut ignored = 0u64;
        let mut timeout: Option<&'static str> = None;
        for queue in QueueName::ALL {
            let totals = if timeout.is_some() {
                DirQueueTotals::default()
            } else {
                match directory::scan_queue(&self.queue_directory, queue, &options) {
                    Ok(t) => t,
                    Err(DirScanError::Timeout { queue, partial }) => {
                        timeout = Some(queue);
                        partial
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("counting queue {}", queue.name()))
                            .into())
                    }
                }
            };
            ignored += totals.ignored;
            rows.push(QueueRow {
                queue,
                messages: totals.messages,
                bytes: totals.bytes,
                oldest_arrival: totals.oldest_system_time(),
            });
        }
        if ignored > 0 {
            tracing::debug!(
                ignored,
                "queue directories hold entries that are not messages"
            );
        }
        let status = QueueStatus {
            method: QueueMethod::Directory,
            rows,
            scan_time,
            scan_duration: started.elapsed(),
        };
        match timeout {
            Some(queue) => Err(QueueScanError::Partial {
                status: Box::new(status),
                reason: format!(
                    "time budget of {:?} exceeded while counting queue {queue}",
                    self.config.time_budget
                ),
            }),
            None => Ok(status),
        }
    }

    fn scan_showq(
        &self,
        scan_time: SystemTime,
        started: Instant,
        deadline: Instant,
    ) -> Result<QueueStatus, QueueScanError> {
        let mut acc = ShowqAccumulator::default();
        let result = showq::query_showq(
            &self.queue_directory,
            deadline,
            self.config.time_budget,
            self.config.showq_limits,
            |m| acc.add(&m),
        );
        let status = QueueStatus {
            method: QueueMethod::Showq,
            rows: acc.rows(),
            scan_time,
            scan_duration: started.elapsed(),
        };
        match result {
            Ok(_) => Ok(status),
            Err(ShowqError::Timeout(budget)) => Err(QueueScanError::Partial {
                status: Box::new(status),
                reason: format!("showq did not finish within the time budget of {budget:?}"),
            }),
            Err(e) => Err(anyhow::Error::new(e).into()),
        }
    }
}

/// Folds showq messages into rows for the five queues showq lists.
#[derive(Debug, Default)]
pub struct ShowqAccumulator {
    totals: [(u64, u64, Option<i64>); 5],
}

const SHOWQ_QUEUES: [QueueName; 5] = [
    QueueName::Maildrop,
    QueueName::Incoming,
    QueueName::Active,
    QueueName::Deferred,
    QueueName::Hold,
];

impl ShowqAccumulator {
    pub fn add(&mut self, m: &showq::ShowqMessage) {
        let Some(i) = SHOWQ_QUEUES.iter().position(|q| *q == m.queue) else {
            return;
        };
        let t = &mut self.totals[i];
        t.0 += 1;
        t.1 += m.size;
        t.2 = Some(t.2.map_or(m.arrival_time, |old| old.min(m.arrival_time)));
    }

    pub fn rows(&self) -> Vec<QueueRow> {
        SHOWQ_QUEUES
            .iter()
            .zip(self.totals.iter())
            .map(|(queue, (messages, bytes, oldest))| QueueRow {
                queue: *queue,
                messages: *messages,
                bytes: *bytes,
                oldest_arrival: oldest.and_then(|s| {
                    u64::try_from(s)
                        .ok()
                        .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
                }),
            })
            .collect()
    }
}

/// Whether we may list the queue directories (what the directory method needs).
fn directories_readable(queue_directory: &Path) -> anyhow::Result<()> {
    for queue in QueueName::ALL {
        let path = queue_directory.join(queue.name());
        match std::fs::read_dir(&path) {
            Ok(_) => {}
            // Counted as empty by the directory method.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!("{}: {e}", path.display())),
        }
    }
    Ok(())
}

/// The queue as a [`Collector`]: sets the scanner up (retried at every
/// collection until it works: postconf missing, queue directory unknown),
/// then scans.
pub struct QueueCollector {
    config: QueueScanConfig,
    interval: Duration,
    scanner: Option<QueueScanner>,
}

impl QueueCollector {
    pub fn new(config: QueueScanConfig, interval: Duration) -> QueueCollector {
        QueueCollector {
            config,
            interval,
            scanner: None,
        }
    }
}

impl Collector for QueueCollector {
    fn source(&self) -> &'static str {
        "queue"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Collected {
        let scanner = match &mut self.scanner {
            Some(s) => s,
            None => match QueueScanner::new(self.config.clone()) {
                Ok(s) => self.scanner.insert(s),
                Err(e) => {
                    return Collected::failed(Some("not set up".into()), format!("{e:#}"));
                }
            },
        };
        let result = scanner.scan();
        let detail = Some(scanner.health().detail.clone());
        let publish: Box<dyn FnOnce(&mut Snapshot) -> Outcome + Send> = match result {
            Ok(status) => Box::new(move |s| {
                s.queue = Some(status);
                Outcome::Success
            }),
            // A partial count is still the best figure we have.
            Err(QueueScanError::Partial { status, reason }) => Box::new(move |s| {
                s.queue = Some(*status);
                Outcome::Failure(format!("partial scan: {reason}"))
            }),
            // Stale rows would lie about the queue: none until a scan works.
            Err(QueueScanError::Failed(e)) => {
                let why = format!("{e:#}");
                Box::new(move |s| {
                    s.queue = None;
                    Outcome::Failure(why)
                })
            }
        };
        Collected { detail, publish }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulator_sums_and_finds_oldest() {
        let mut acc = ShowqAccumulator::default();
        for (queue, time, size) in [
            (QueueName::Deferred, 300, 10),
            (QueueName::Deferred, 100, 20),
            (QueueName::Hold, 200, 5),
        ] {
            acc.add(&showq::ShowqMessage {
                queue,
                queue_id: "X".into(),
                arrival_time: time,
                size,
                recipients: 1,
            });
        }
        let rows = acc.rows();
        assert_eq!(rows.len(), 5);
        let deferred = rows
            .iter()
            .find(|r| r.queue == QueueName::Deferred)
            .unwrap();
        assert_eq!(deferred.messages, 2);
        assert_eq!(deferred.bytes, 30);
        assert_eq!(
            deferred.oldest_arrival,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100))
        );
        let active = rows.iter().find(|r| r.queue == QueueName::Active).unwrap();
        assert_eq!((active.messages, active.oldest_arrival), (0, None));
    }

    #[test]
    fn directory_method_on_a_fake_tree() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("deferred/A")).unwrap();
        std::fs::write(tmp.path().join("deferred/A/ABC"), b"123").unwrap();
        std::fs::create_dir_all(tmp.path().join("corrupt")).unwrap();
        std::fs::write(tmp.path().join("corrupt/DEF"), b"1").unwrap();
        let mut scanner = QueueScanner::new(QueueScanConfig {
            queue_directory: Some(tmp.path().to_owned()),
            ..QueueScanConfig::default()
        })
        .unwrap();
        assert_eq!(scanner.method(), QueueMethod::Directory);
        let status = scanner.scan().unwrap();
        assert_eq!(status.rows.len(), 6);
        assert_eq!(status.total(), 1);
        let corrupt = status
            .rows
            .iter()
            .find(|r| r.queue == QueueName::Corrupt)
            .unwrap();
        assert_eq!(corrupt.messages, 1);
        assert!(scanner.health().detail.starts_with("directory "));
        assert!(scanner.health().last_success.is_some());
    }

    #[test]
    fn exceeded_time_budget_is_a_partial_result_and_a_health_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("active")).unwrap();
        for i in 0..3000 {
            std::fs::write(tmp.path().join(format!("active/A{i:05}")), b"x").unwrap();
        }
        let mut scanner = QueueScanner::new(QueueScanConfig {
            queue_directory: Some(tmp.path().to_owned()),
            method: QueueMethodChoice::Directory,
            time_budget: Duration::ZERO,
            ..QueueScanConfig::default()
        })
        .unwrap();
        match scanner.scan() {
            Err(QueueScanError::Partial { status, reason }) => {
                assert!(status.total() < 3000, "{status:?}");
                assert!(reason.contains("time budget"), "{reason}");
            }
            other => panic!("expected a partial result, got {other:?}"),
        }
        assert_eq!(scanner.health().state, crate::snapshot::HealthState::Error);
        assert!(scanner.health().last_error.contains("time budget"));
    }

    #[test]
    fn showq_without_socket_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut scanner = QueueScanner::new(QueueScanConfig {
            queue_directory: Some(tmp.path().to_owned()),
            method: QueueMethodChoice::Showq,
            ..QueueScanConfig::default()
        })
        .unwrap();
        let err = scanner.scan().unwrap_err();
        assert!(format!("{err:#}").contains("public/showq"), "{err:#}");
        assert_eq!(scanner.health().error_count, 1);
    }
}
