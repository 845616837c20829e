//! Evaluates alarms once a second on the session's runtime (the evaluation
//! is pure computation on a snapshot copy) and queues notifications.

use crate::alarms::AlarmEngine;
use crate::config::AlarmConfig;
use crate::mib::notify;
use crate::publisher::Publisher;
use crate::snapshot::{AlarmEvent, Severity};
use crate::snmp::{Oid, VarBind};
use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Allows at most `per_minute` events in any 60 s window.
struct RateLimiter {
    per_minute: usize,
    sent: VecDeque<Instant>,
}

impl RateLimiter {
    fn allow(&mut self, now: Instant) -> bool {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.per_minute {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

pub struct AlarmRunner {
    engine: AlarmEngine,
    root: Oid,
    notifications: bool,
    limiter: RateLimiter,
    suppressed: u64,
}

impl AlarmRunner {
    pub fn new(config: &AlarmConfig, root: Oid) -> AlarmRunner {
        AlarmRunner {
            notifications: config.notifications,
            limiter: RateLimiter {
                per_minute: config.notifications_per_minute as usize,
                sent: VecDeque::new(),
            },
            engine: AlarmEngine::new(config.clone(), Instant::now()),
            root,
            suppressed: 0,
        }
    }

    /// Judges the current snapshot, publishes the alarm table, and queues a
    /// notification per event (within the rate limit).
    pub fn tick(&mut self, publisher: &Publisher, notify_tx: &mpsc::Sender<Vec<VarBind>>) {
        let snapshot = publisher.snapshot();
        let now = Instant::now();
        let events = self.engine.evaluate(&snapshot, now, SystemTime::now());
        let active = self.engine.active();
        publisher.update(|s| s.alarms = Some(active));
        for event in events {
            match &event {
                AlarmEvent::Raised(a) => match a.severity {
                    Severity::Critical => {
                        tracing::error!(alarm = %a.key, "alarm raised: {}", a.text)
                    }
                    Severity::Warning => tracing::warn!(alarm = %a.key, "alarm raised: {}", a.text),
                },
                AlarmEvent::Cleared(a) => {
                    tracing::info!(alarm = %a.key, "alarm cleared: {}", a.text)
                }
            }
            if !self.notifications {
                continue;
            }
            if !self.limiter.allow(now) {
                self.suppressed += 1;
                tracing::warn!(
                    suppressed = self.suppressed,
                    "notification rate limit reached; not sending this one (the alarm table still shows it)"
                );
                continue;
            }
            let varbinds = notify::varbinds(&self.root, &event, &snapshot);
            if notify_tx.try_send(varbinds).is_err() {
                tracing::warn!("notification queue full; dropping a notification");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_n_per_minute() {
        let mut r = RateLimiter {
            per_minute: 2,
            sent: VecDeque::new(),
        };
        let t = Instant::now();
        assert!(r.allow(t));
        assert!(r.allow(t));
        assert!(!r.allow(t + Duration::from_secs(59)));
        assert!(r.allow(t + Duration::from_secs(60)));
    }
}
