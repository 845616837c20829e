//! The one driver of every periodic collector: a thread that collects,
//! publishes and sleeps until the next start (for `run`), or a single
//! collection (for `dump`). Both time the collection and record its outcome
//! in the source's health row the same way.

use super::Shutdown;
use crate::publisher::Publisher;
use crate::sources::{Collector, Outcome};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

/// Collects once and publishes the values and the health row.
pub fn collect_once(collector: &mut dyn Collector, publisher: &Publisher) {
    let source = collector.source();
    let started = Instant::now();
    let collected = collector.collect();
    let took = started.elapsed();
    publisher.update(|s| {
        let outcome = (collected.publish)(s);
        let health = s.health_mut(source, "");
        if let Some(detail) = collected.detail {
            health.detail = detail;
        }
        health.last_duration = Some(took);
        match outcome {
            Outcome::Success => health.success(SystemTime::now()),
            Outcome::Failure(why) => {
                tracing::warn!("{source}: {why}");
                health.failure(why);
            }
            Outcome::Unchanged => {}
        }
    });
}

/// Runs `collector` on a thread named `thread` until shutdown, one
/// collection per interval (start to start, so a slow collection does not
/// stretch it). `background`: the thread runs at idle CPU priority (see
/// [`super::run_in_background`]), for long CPU-bound scans.
pub fn spawn(
    thread: String,
    mut collector: Box<dyn Collector>,
    background: bool,
    publisher: &Arc<Publisher>,
    shutdown: &Shutdown,
) -> Result<JoinHandle<()>> {
    let (publisher, shutdown) = (Arc::clone(publisher), shutdown.clone());
    let context = format!("start the {thread} thread");
    std::thread::Builder::new()
        .name(thread.clone())
        .spawn(move || {
            if background {
                super::run_in_background(&thread);
            }
            loop {
                let started = Instant::now();
                collect_once(collector.as_mut(), &publisher);
                let next = collector.interval().saturating_sub(started.elapsed());
                if !shutdown.sleep(next) {
                    return;
                }
            }
        })
        .context(context)
}
