//! The running agent: wires collectors, the publisher and the AgentX session.
//!
//! Collectors run on their own threads (they block on files, sockets and
//! /proc); the AgentX session runs on a small tokio runtime and only ever
//! reads the published view, so no request waits for I/O.

use crate::agentx::session::{self, MasterAddress, SessionConfig, SessionState};
use crate::config::Config;
use crate::publisher::Publisher;
use crate::refusal::{config_error, into_config_error};
use crate::snapshot::{AgentInfo, Snapshot};
use crate::snmp::MibView;
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};

mod alarms;
mod collectors;
mod drive;
mod log;

/// Set once on SIGTERM/SIGINT. Collectors check it between units of work and
/// sleep on it: a sleeping collector wakes for its next run or at once for
/// shutdown, not every few hundred milliseconds in between.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Read without a lock: scans check it between files; probes share it
    /// as their cancel flag.
    requested: Arc<AtomicBool>,
    sleepers: Arc<(Mutex<()>, Condvar)>,
}

impl Shutdown {
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// The flag itself, for code that takes a plain cancel flag.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.requested)
    }

    fn request(&self) {
        self.requested.store(true, Ordering::Relaxed);
        // Under the lock: a sleeper is either before its check of the flag
        // (and sees it) or waiting (and is woken).
        let _guard = self.lock();
        self.sleepers.1.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.sleepers
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps up to `d`, waking early on shutdown. Returns false on shutdown.
    pub fn sleep(&self, d: Duration) -> bool {
        let guard = self.lock();
        let (_guard, _) = self
            .sleepers
            .1
            .wait_timeout_while(guard, d, |()| !self.requested())
            .unwrap_or_else(PoisonError::into_inner);
        !self.requested()
    }
}

/// Puts the calling thread, and every thread it starts afterwards, in the
/// `SCHED_IDLE` scheduling class: it runs only on CPU time no other thread
/// wants, and any other thread that wakes up takes its CPU at once.
///
/// For collectors with long stretches of CPU work (a queue scan stats a
/// million files for seconds, on up to 4 threads): without it, snmpd and our
/// AgentX session waited for a core behind the scan, and the p99 of an SNMP
/// GET grew from ~0.3 ms to 4-7 ms on 2 cores (benches/queue_scan_latency.rs).
/// The cost: on a CPU kept busy by other work a scan takes longer (its time
/// budget still bounds it).
///
/// Returns false, after logging why, when the kernel refuses (e.g. a seccomp
/// filter that denies `sched_setscheduler`); the thread then keeps its
/// normal priority.
pub(crate) fn run_in_background(what: &str) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; param is a valid sched_param.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        tracing::debug!("{what}: runs at idle CPU priority (SCHED_IDLE)");
        true
    } else {
        let e = std::io::Error::last_os_error();
        tracing::warn!(
            "{what}: cannot lower its CPU priority to SCHED_IDLE ({e}); it competes with \
             snmpd for the CPU (allow sched_setscheduler in a seccomp filter)"
        );
        false
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn agent_info() -> AgentInfo {
    let now = SystemTime::now();
    AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        start_time: now,
        discontinuity_time: now,
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(config: Config, allow_root: bool) -> Result<()> {
    if is_root() && !allow_root {
        return Err(config_error(
            "refusing to run as root: the agent needs no root (see the README's security \
             section); run it as its own user, or pass --allow-root",
        ));
    }
    let root = config.oid_root().map_err(into_config_error)?;
    let master: MasterAddress = config
        .agentx
        .socket
        .parse()
        .map_err(|e: String| config_error(format!("agentx.socket: {e}")))?;
    if config.log.enabled {
        // Before any thread starts: a forged or unreadable state is refused.
        log::check_state(&config)?;
    }
    let publisher = Arc::new(Publisher::new(root.clone(), Snapshot::new(agent_info())));
    let shutdown = Shutdown::default();

    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    workers.extend(spawn_collectors(&config, &publisher, &shutdown)?);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let mut cfg = SessionConfig::new(master, root.clone());
    cfg.priority = config.agentx.priority;
    cfg.capabilities = vec![crate::mib::text::sys_or_entry(&root)];
    cfg.timeout_secs = config.agentx.timeout_seconds;
    cfg.ping_interval = Duration::from_secs(config.agentx.ping_interval_seconds);
    cfg.backoff_max = Duration::from_secs(config.agentx.reconnect_max_seconds);
    let alarms = config
        .alarms
        .enabled
        .then(|| alarms::AlarmRunner::new(&config.alarms, root.clone()));
    let result = runtime.block_on(serve(cfg, Arc::clone(&publisher), alarms, shutdown.clone()));
    shutdown.request();
    for w in workers {
        if w.join().is_err() {
            tracing::error!("a collector thread panicked during shutdown");
        }
    }
    tracing::info!("stopped");
    result
}

async fn serve(
    cfg: SessionConfig,
    publisher: Arc<Publisher>,
    mut alarms: Option<alarms::AlarmRunner>,
    shutdown: Shutdown,
) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (state_tx, mut state_rx) = watch::channel(SessionState::Connecting);
    let (notify_tx, notify_rx) = mpsc::channel(64);
    let session = tokio::spawn(session::run(
        cfg.clone(),
        publisher.view(),
        notify_rx,
        state_tx,
        stop_rx,
    ));
    let detail = cfg.master.to_string();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install SIGTERM handler")?;
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = refresh.tick() => {
                // Ages (oldest queued message) are relative to now; alarm
                // evaluation republishes the view anyway.
                match alarms.as_mut() {
                    Some(a) => a.tick(&publisher, &notify_tx),
                    None => publisher.refresh(),
                }
            }
            changed = state_rx.changed() => {
                if changed.is_err() { break; }
                let state = state_rx.borrow_and_update().clone();
                publisher.health("agentx", &detail, |h| match &state {
                    SessionState::Connected { .. } => h.success(SystemTime::now()),
                    SessionState::Disconnected { reason } => h.failure(reason.clone()),
                    SessionState::Connecting => {}
                });
            }
        }
    }
    shutdown.request();
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), session).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(anyhow::anyhow!("AgentX session task failed: {e}")),
        Err(_) => bail!("AgentX session did not stop within 5 s"),
    }
}

/// Starts one thread per enabled collector.
fn spawn_collectors(
    config: &Config,
    publisher: &Arc<Publisher>,
    shutdown: &Shutdown,
) -> Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    if config.log.enabled {
        let (c, p, s) = (config.clone(), Arc::clone(publisher), shutdown.clone());
        threads.push(spawn_named("log", move || log::run(c, p, s))?);
    }
    threads.extend(collectors::spawn(config, publisher, shutdown)?);
    Ok(threads)
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("collector-{name}"))
        .spawn(f)
        .with_context(|| format!("start the {name} collector thread"))
}

/// Collects every source once (for `dump`) and returns the view the agent would serve.
pub fn collect_once(config: &Config) -> Result<MibView> {
    let root = config.oid_root()?;
    let publisher = Publisher::new(root, Snapshot::new(agent_info()));
    if config.log.enabled {
        log::collect_once(config, &publisher);
    }
    collectors::collect_once(config, &publisher);
    Ok(publisher.view().load().as_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> libc::c_int {
        // SAFETY: pid 0 is the calling thread.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn shutdown_wakes_a_sleeping_collector_at_once() {
        let shutdown = Shutdown::default();
        let start = std::time::Instant::now();
        assert!(shutdown.sleep(Duration::from_millis(50)), "no shutdown yet");
        assert!(start.elapsed() >= Duration::from_millis(50));
        let sleeper = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                (shutdown.sleep(Duration::from_secs(60)), start.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        shutdown.request();
        let (slept_through, took) = sleeper.join().unwrap();
        assert!(!slept_through);
        assert!(took < Duration::from_secs(10), "woke after {took:?}");
        // Once requested, sleeping returns at once.
        assert!(!shutdown.sleep(Duration::from_secs(60)));
    }

    #[test]
    fn background_threads_and_their_children_run_at_idle_priority() {
        let (mine, child) = std::thread::spawn(|| {
            assert!(run_in_background("test"));
            // Threads started afterwards (the scan's workers) inherit it.
            let child = std::thread::spawn(policy).join().unwrap();
            (policy(), child)
        })
        .join()
        .unwrap();
        assert_eq!(mine, libc::SCHED_IDLE);
        assert_eq!(child, libc::SCHED_IDLE);
        // Only that thread: this one (and the AgentX session) keeps its class.
        assert_eq!(policy(), libc::SCHED_OTHER);
    }
}
