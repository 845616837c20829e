//! Postfix process metrics from /proc, without root.
//!
//! Every scan rediscovers the processes (pids change on `postfix reload`):
//! the master of the configured instance and its direct children, named by
//! `argv[0]` as Postfix sets it (`qmgr -l -t unix -u`, `smtpd -n smtp -t inet`).
//!
//! Which master: `postfix -c DIR start` runs `master -w` with `MAIL_CONFIG`
//! in its environment, which only root can read, so the command line does not
//! tell instances apart. `$queue_directory/pid/master.pid` names the master,
//! but is mode 0600 root. Unprivileged, we use the lock the master holds on
//! that file: `/proc/locks` (world-readable) lists the holder's pid next to the
//! file's device and inode, which `stat` gives us without reading the file.
//! Failing both, a master whose command line has `-c CONFIG_DIR` is taken,
//! else the only master running. Several masters and no way to tell them apart
//! is an error rather than a guess: instances are never mixed.
//!
//! Rows: one per daemon name, always `master`, `qmgr` and `pickup` (the
//! `expected` list), plus every other daemon seen since start.
//! - CPU centiseconds: live instances' user+system time plus the last time
//!   seen for instances that have exited; never decreases.
//! - State: `down` when the master is gone; an expected daemon missing while
//!   the master runs is `restarting` for the grace period, then `down`;
//!   other (on-demand) daemons follow the master, since having no process is
//!   their normal idle state.
//! - Restarts: a new pid for an expected (single-instance) daemon after one
//!   was seen before.
//!
//! `/proc` mounted with `hidepid` hides other users' processes; that is
//! detected and reported as an error instead of reporting Postfix as down.

use super::{Collected, Collector, Outcome};
use crate::snapshot::{ProcessRow, ProcessState, ProcessStatus, SourceHealth};
use anyhow::{bail, Context};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct ProcessScanConfig {
    /// The instance's config directory (shown in rows; matches `-c DIR`).
    pub config_directory: Option<PathBuf>,
    /// Where `pid/master.pid` is; `None`: ask postconf once in `new`.
    pub queue_directory: Option<PathBuf>,
    /// The postconf program, used only when `queue_directory` is `None`.
    pub postconf: PathBuf,
    /// How long an expected daemon may be missing before it is `down`.
    pub grace: Duration,
    /// Daemons that always run while the master runs, one instance each.
    pub expected: Vec<String>,
    /// The proc file system (tests may point elsewhere).
    pub proc_root: PathBuf,
}

impl Default for ProcessScanConfig {
    fn default() -> Self {
        ProcessScanConfig {
            config_directory: None,
            queue_directory: None,
            postconf: PathBuf::from("postconf"),
            grace: Duration::from_secs(60),
            expected: ["master", "qmgr", "pickup"].map(String::from).to_vec(),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// One process as read from /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSample {
    pub pid: i32,
    /// Daemon name: basename of `argv[0]`.
    pub name: String,
    /// Master.cf service name from `-n NAME`, if given.
    pub service: Option<String>,
    /// User+system CPU in centiseconds.
    pub cpu_centiseconds: u64,
    pub rss_bytes: u64,
    pub vsize_bytes: u64,
    pub start_time: SystemTime,
}

/// The processes of one Postfix instance at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceView {
    pub master: Option<ProcSample>,
    pub children: Vec<ProcSample>,
}

#[derive(Debug, Default)]
struct DaemonState {
    /// CPU of exited instances (their last sample).
    retired_cpu: u64,
    /// Live pids (with start time, against pid reuse) and their last CPU.
    live: HashMap<(i32, SystemTime), u64>,
    last_reported_cpu: u64,
    /// Pids of an expected daemon already seen, to count restarts.
    last_pid: Option<i32>,
    restarts: u64,
    missing_since: Option<Instant>,
    services: BTreeSet<String>,
}

pub struct ProcessScanner {
    config: ProcessScanConfig,
    queue_directory: Option<PathBuf>,
    daemons: BTreeMap<String, DaemonState>,
    last_scan: Option<(Instant, BTreeMap<String, u64>)>,
    health: SourceHealth,
    master_pid: Option<i32>,
}

impl ProcessScanner {
    pub fn new(config: ProcessScanConfig) -> Self {
        let queue_directory = config.queue_directory.clone().or_else(|| {
            match crate::sources::postconf::value(
                &config.postconf,
                config.config_directory.as_deref(),
                "queue_directory",
            ) {
                Ok(dir) => Some(PathBuf::from(dir)),
                Err(e) => {
                    tracing::warn!(
                        "no queue directory, so no master.pid to pick the master by: {e:#}"
                    );
                    None
                }
            }
        });
        let mut daemons = BTreeMap::new();
        for name in &config.expected {
            daemons.insert(name.clone(), DaemonState::default());
        }
        let detail = format!("{}", config.proc_root.display());
        ProcessScanner {
            config,
            queue_directory,
            daemons,
            last_scan: None,
            health: SourceHealth::new(detail),
            master_pid: None,
        }
    }

    pub fn health(&self) -> &SourceHealth {
        &self.health
    }

    /// Reads /proc and updates all rows. `now` drives the grace period and
    /// CPU percentages.
    pub fn scan(&mut self, now: Instant) -> anyhow::Result<ProcessStatus> {
        let result = self.read_instance();
        match result {
            Ok((view, detail)) => {
                self.health.detail = detail;
                let status = self.update(&view, now, SystemTime::now());
                self.health.success(status.scan_time);
                Ok(status)
            }
            Err(e) => {
                self.health.failure(format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// Folds one view of the instance into the rows. Used by `scan`, and
    /// directly by tests with made-up process lists.
    pub fn update(&mut self, view: &InstanceView, now: Instant, wall: SystemTime) -> ProcessStatus {
        let mut by_name: BTreeMap<String, Vec<&ProcSample>> = BTreeMap::new();
        if let Some(master) = &view.master {
            by_name.entry("master".to_owned()).or_default().push(master);
            for child in &view.children {
                by_name.entry(child.name.clone()).or_default().push(child);
            }
        }
        for name in by_name.keys() {
            self.daemons.entry(name.clone()).or_default();
        }
        let master_running = view.master.is_some();
        self.master_pid = view.master.as_ref().map(|m| m.pid);
        let elapsed = self
            .last_scan
            .as_ref()
            .map(|(t, _)| now.saturating_duration_since(*t));
        let mut cpu_now = BTreeMap::new();
        let mut rows = Vec::with_capacity(self.daemons.len());
        for (name, state) in &mut self.daemons {
            let procs = by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let expected = self.config.expected.iter().any(|e| e == name);

            // CPU: move exited instances' last CPU into the retired sum.
            let current: HashMap<(i32, SystemTime), u64> = procs
                .iter()
                .map(|p| ((p.pid, p.start_time), p.cpu_centiseconds))
                .collect();
            for (key, cpu) in &state.live {
                if !current.contains_key(key) {
                    state.retired_cpu += cpu;
                }
            }
            // A live process's CPU never shrinks; guard against odd reads anyway.
            let mut live = HashMap::with_capacity(current.len());
            for (key, cpu) in current {
                let previous = state.live.get(&key).copied().unwrap_or(0);
                live.insert(key, cpu.max(previous));
            }
            state.live = live;
            let cpu =
                (state.retired_cpu + state.live.values().sum::<u64>()).max(state.last_reported_cpu);
            state.last_reported_cpu = cpu;
            cpu_now.insert(name.clone(), cpu);
            let cpu_percent = match (elapsed, self.last_scan.as_ref()) {
                (Some(dt), Some((_, prev))) if !dt.is_zero() => {
                    let before = prev.get(name).copied().unwrap_or(cpu);
                    let delta_cs = cpu.saturating_sub(before) as f64;
                    // centiseconds per second == percent of one core.
                    (delta_cs / dt.as_secs_f64()).round() as u32
                }
                _ => 0,
            };

            // Restarts: a new pid for a single-instance daemon.
            if expected && procs.len() == 1 {
                let pid = procs[0].pid;
                if state.last_pid.is_some_and(|old| old != pid) {
                    state.restarts += 1;
                }
                state.last_pid = Some(pid);
            }

            let state_now = if !master_running {
                state.missing_since = None;
                ProcessState::Down
            } else if expected && procs.is_empty() {
                let since = *state.missing_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.config.grace {
                    ProcessState::Down
                } else {
                    ProcessState::Restarting
                }
            } else {
                state.missing_since = None;
                ProcessState::Running
            };

            for p in procs {
                state
                    .services
                    .insert(p.service.clone().unwrap_or_else(|| p.name.clone()));
            }
            rows.push(ProcessRow {
                name: name.clone(),
                services: state.services.iter().cloned().collect::<Vec<_>>().join(","),
                instances: u32::try_from(procs.len()).unwrap_or(u32::MAX),
                cpu_centiseconds: cpu,
                cpu_percent,
                rss_bytes: procs.iter().map(|p| p.rss_bytes).sum(),
                vsize_bytes: procs.iter().map(|p| p.vsize_bytes).sum(),
                state: state_now,
                oldest_start: procs.iter().map(|p| p.start_time).min(),
                restarts: state.restarts,
            });
        }
        self.last_scan = Some((now, cpu_now));
        ProcessStatus {
            config_directory: self
                .config
                .config_directory
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            rows,
            scan_time: wall,
        }
    }

    /// Finds the instance's master and children in /proc.
    fn read_instance(&self) -> anyhow::Result<(InstanceView, String)> {
        let proc_root = &self.config.proc_root;
        let hidepid = std::fs::read_to_string(proc_root.join("self/mountinfo"))
            .ok()
            .and_then(|text| hidepid_option(&text, &proc_root.to_string_lossy()));
        let ticks = procfs::ticks_per_second().max(1);
        let page = procfs::page_size();
        let boot = procfs::boot_time_secs().context("reading the boot time from /proc/stat")?;
        let mut all = Vec::new();
        let iter = procfs::process::all_processes_with_root(proc_root)
            .with_context(|| format!("listing processes in {}", proc_root.display()))?;
        for process in iter {
            // A process exiting mid-read is normal.
            let Ok(process) = process else { continue };
            let Ok(stat) = process.stat() else { continue };
            let uid = process.uid().unwrap_or(u32::MAX);
            let cmdline = process.cmdline().unwrap_or_default();
            all.push(RawProcess {
                pid: stat.pid,
                ppid: stat.ppid,
                uid,
                comm: stat.comm.clone(),
                cmdline,
                sample: ProcSample {
                    pid: stat.pid,
                    // Filled in once we know whether this is a Postfix daemon.
                    name: String::new(),
                    service: None,
                    cpu_centiseconds: (stat.utime + stat.stime).saturating_mul(100) / ticks,
                    rss_bytes: stat.rss.saturating_mul(page),
                    vsize_bytes: stat.vsize,
                    start_time: SystemTime::UNIX_EPOCH
                        + Duration::from_secs(boot)
                        + Duration::from_millis(stat.starttime.saturating_mul(1000) / ticks),
                },
            });
        }
        let pid_file_master = self.pid_file_master();
        let master = choose_master(
            &all,
            pid_file_master,
            self.config.config_directory.as_deref(),
        );
        let master = match master {
            Ok(m) => m,
            Err(e) => {
                if let Some(h) = &hidepid {
                    bail!("{e:#}; /proc is mounted with {h}, which hides other users' processes: run as root or in the group given by the gid= mount option");
                }
                return Err(e);
            }
        };
        let mut detail = format!("{} ", proc_root.display());
        let view = match master {
            None => {
                if let Some(h) = &hidepid {
                    if is_not_root() && !can_see_pid1(proc_root) {
                        bail!("no Postfix master visible: /proc is mounted with {h}, which hides other users' processes; run as root or in the group given by the gid= mount option");
                    }
                }
                detail.push_str("(no master running)");
                InstanceView::default()
            }
            Some(master) => {
                detail.push_str(&format!("master pid {}", master.pid));
                let children = all
                    .iter()
                    .filter(|p| p.ppid == master.pid)
                    .filter_map(|p| {
                        let (name, service) = daemon_name(&p.cmdline)?;
                        // Forked by the master but not yet exec'd into a daemon.
                        if name == "master" {
                            return None;
                        }
                        let mut s = p.sample.clone();
                        s.name = name;
                        s.service = service;
                        Some(s)
                    })
                    .collect();
                let mut m = master.sample.clone();
                m.name = "master".to_owned();
                InstanceView {
                    master: Some(m),
                    children,
                }
            }
        };
        if let Some(dir) = &self.config.config_directory {
            detail.push_str(&format!(", config {}", dir.display()));
        }
        if let Some(h) = hidepid {
            detail.push_str(&format!(", /proc mounted with {h}"));
        }
        Ok((view, detail))
    }

    /// The master's pid from its pid file, or from the lock it holds on it.
    ///
    /// `Ok(None)`: the instance's master does not run (no pid file, or one
    /// that nobody holds a lock on: left behind by a crash). `Err(())`: we
    /// cannot tell from the pid file.
    fn pid_file_master(&self) -> Result<Option<i32>, ()> {
        let path = self
            .queue_directory
            .as_ref()
            .ok_or(())?
            .join("pid/master.pid");
        if let Ok((file, _)) = crate::file_trust::open_regular(&path, false) {
            use std::io::Read;
            // A pid file is one short line; a FIFO in its place is skipped
            // by open_regular instead of blocking.
            let mut text = String::new();
            if file.take(64).read_to_string(&mut text).is_ok() {
                return Ok(text.trim().parse().ok());
            }
        }
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(_) => return Err(()),
        };
        let locks = std::fs::read_to_string(self.config.proc_root.join("locks")).map_err(|_| ())?;
        Ok(lock_holder(&locks, meta.dev(), meta.ino()))
    }
}

struct RawProcess {
    pid: i32,
    ppid: i32,
    uid: u32,
    comm: String,
    cmdline: Vec<String>,
    sample: ProcSample,
}

fn is_master(p: &RawProcess) -> bool {
    p.comm == "master"
        && p.uid == 0
        && p.cmdline
            .first()
            .is_some_and(|a| a == "master" || a.ends_with("/master"))
}

/// The instance's master, or `None` if it does not run.
fn choose_master<'a>(
    all: &'a [RawProcess],
    pid_file: Result<Option<i32>, ()>,
    config_directory: Option<&Path>,
) -> anyhow::Result<Option<&'a RawProcess>> {
    let masters: Vec<&RawProcess> = all.iter().filter(|p| is_master(p)).collect();
    if let Ok(pid) = pid_file {
        // A stale pid (master gone, pid reused) matches no master.
        return Ok(pid.and_then(|pid| masters.into_iter().find(|m| m.pid == pid)));
    }
    if let Some(dir) = config_directory {
        let dir = dir.to_string_lossy();
        let with_c: Vec<_> = masters
            .iter()
            .filter(|m| {
                m.cmdline.windows(2).any(|w| {
                    w[0] == "-c" && w[1].trim_end_matches('/') == dir.trim_end_matches('/')
                })
            })
            .collect();
        if let [only] = with_c.as_slice() {
            return Ok(Some(only));
        }
    }
    match masters.as_slice() {
        [] => Ok(None),
        [only] => Ok(Some(only)),
        several => bail!(
            "{} Postfix masters run (pids {}) and none is known to belong to config directory {}: set queue_directory so that its pid/master.pid can be read",
            several.len(),
            several.iter().map(|m| m.pid.to_string()).collect::<Vec<_>>().join(", "),
            config_directory.map_or("(default)".into(), |d| d.display().to_string())
        ),
    }
}

/// Daemon name (basename of argv[0]) and `-n` service name.
fn daemon_name(cmdline: &[String]) -> Option<(String, Option<String>)> {
    let argv0 = cmdline.first()?;
    let name = argv0.rsplit('/').next().unwrap_or(argv0).trim();
    if name.is_empty() {
        return None;
    }
    let service = cmdline
        .windows(2)
        .find(|w| w[0] == "-n")
        .map(|w| w[1].clone());
    Some((name.to_owned(), service))
}

/// The pid holding a lock on the file with this device and inode, from
/// `/proc/locks` lines like `4: FLOCK  ADVISORY  WRITE 1553 fe:00:10011125 0 EOF`.
pub fn lock_holder(locks: &str, dev: u64, ino: u64) -> Option<i32> {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Waiters are shown as `N: -> FLOCK ...`; they do not hold the lock.
        if fields.get(1) == Some(&"->") || fields.len() < 6 {
            return None;
        }
        let mut id = fields[5].split(':');
        let maj = u32::from_str_radix(id.next()?, 16).ok()?;
        let min = u32::from_str_radix(id.next()?, 16).ok()?;
        let inode: u64 = id.next()?.parse().ok()?;
        let pid: i32 = fields[4].parse().ok()?;
        (maj == major && min == minor && inode == ino && pid > 0).then_some(pid)
    })
}

/// The `hidepid=` option of the proc mount at `mount_point`, if it hides anything.
pub fn hidepid_option(mountinfo: &str, mount_point: &str) -> Option<String> {
    let mount_point = match mount_point.trim_end_matches('/') {
        "" => "/",
        m => m,
    };
    for line in mountinfo.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if left.split_whitespace().nth(4) != Some(mount_point) {
            continue;
        }
        let mut r = right.split_whitespace();
        if r.next() != Some("proc") {
            continue;
        }
        let super_opts = r.nth(1).unwrap_or("");
        for opt in super_opts.split(',') {
            if let Some(v) = opt.strip_prefix("hidepid=") {
                if v != "0" && v != "off" {
                    return Some(format!("hidepid={v}"));
                }
            }
        }
    }
    None
}

fn is_not_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() != 0 }
}

fn can_see_pid1(proc_root: &Path) -> bool {
    std::fs::metadata(proc_root.join("1/stat")).is_ok()
}

/// The process table as a [`Collector`]: one /proc scan per collection.
pub struct ProcessCollector {
    scanner: ProcessScanner,
    interval: Duration,
}

impl ProcessCollector {
    pub fn new(config: ProcessScanConfig, interval: Duration) -> ProcessCollector {
        ProcessCollector {
            scanner: ProcessScanner::new(config),
            interval,
        }
    }
}

impl Collector for ProcessCollector {
    fn source(&self) -> &'static str {
        "process"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Collected {
        let result = self.scanner.scan(Instant::now());
        Collected {
            detail: Some(self.scanner.health().detail.clone()),
            publish: Box::new(move |s| match result {
                Ok(status) => {
                    s.processes = Some(status);
                    Outcome::Success
                }
                // Without a reading, old rows would claim processes that may be gone.
                Err(e) => {
                    s.processes = None;
                    Outcome::Failure(format!("{e:#}"))
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pid: i32, name: &str, cpu: u64) -> ProcSample {
        ProcSample {
            pid,
            name: name.to_owned(),
            service: None,
            cpu_centiseconds: cpu,
            rss_bytes: 1000,
            vsize_bytes: 5000,
            start_time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + pid as u64),
        }
    }

    fn view(children: Vec<ProcSample>) -> InstanceView {
        InstanceView {
            master: Some(sample(1, "master", 10)),
            children,
        }
    }

    fn scanner(grace: Duration) -> ProcessScanner {
        ProcessScanner::new(ProcessScanConfig {
            queue_directory: Some(PathBuf::from("/nonexistent")),
            grace,
            ..ProcessScanConfig::default()
        })
    }

    fn row<'a>(s: &'a ProcessStatus, name: &str) -> &'a ProcessRow {
        s.rows.iter().find(|r| r.name == name).unwrap()
    }

    #[test]
    fn expected_rows_exist_even_when_everything_is_down() {
        let mut sc = scanner(Duration::from_secs(60));
        let s = sc.update(&InstanceView::default(), Instant::now(), SystemTime::now());
        let names: Vec<_> = s.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["master", "pickup", "qmgr"]);
        assert!(s.rows.iter().all(|r| r.state == ProcessState::Down));
        assert!(s.rows.iter().all(|r| r.instances == 0));
    }

    #[test]
    fn missing_daemon_is_restarting_then_down_after_grace() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut sc = scanner(Duration::from_secs(60));
        let full = view(vec![sample(2, "qmgr", 1), sample(3, "pickup", 1)]);
        let s = sc.update(&full, t0, wall);
        assert_eq!(row(&s, "pickup").state, ProcessState::Running);
        let without_pickup = view(vec![sample(2, "qmgr", 1)]);
        let s = sc.update(&without_pickup, t0 + Duration::from_secs(10), wall);
        assert_eq!(row(&s, "pickup").state, ProcessState::Restarting);
        assert_eq!(row(&s, "qmgr").state, ProcessState::Running);
        let s = sc.update(&without_pickup, t0 + Duration::from_secs(69), wall);
        assert_eq!(row(&s, "pickup").state, ProcessState::Restarting);
        let s = sc.update(&without_pickup, t0 + Duration::from_secs(70), wall);
        assert_eq!(row(&s, "pickup").state, ProcessState::Down);
        // Back: running again, and it counts as a restart (new pid).
        let back = view(vec![sample(2, "qmgr", 1), sample(30, "pickup", 0)]);
        let s = sc.update(&back, t0 + Duration::from_secs(80), wall);
        assert_eq!(row(&s, "pickup").state, ProcessState::Running);
        assert_eq!(row(&s, "pickup").restarts, 1);
        // A new absence starts a new grace period.
        let s = sc.update(&without_pickup, t0 + Duration::from_secs(90), wall);
        assert_eq!(row(&s, "pickup").state, ProcessState::Restarting);
        // Master gone: everything is down at once.
        let s = sc.update(&InstanceView::default(), t0 + Duration::from_secs(91), wall);
        assert!(
            s.rows.iter().all(|r| r.state == ProcessState::Down),
            "{s:?}"
        );
    }

    #[test]
    fn restarts_count_new_pids_of_single_instance_daemons_only() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut sc = scanner(Duration::from_secs(60));
        let mut restarts = Vec::new();
        for (i, (qmgr_pid, smtpd_pids)) in [
            (2, vec![10]),
            (2, vec![11, 12]),
            (5, vec![13]),
            (5, vec![]),
            (6, vec![14]),
        ]
        .into_iter()
        .enumerate()
        {
            let mut children = vec![sample(qmgr_pid, "qmgr", 1), sample(3, "pickup", 1)];
            children.extend(smtpd_pids.into_iter().map(|p| sample(p, "smtpd", 1)));
            let s = sc.update(&view(children), t0 + Duration::from_secs(i as u64), wall);
            restarts.push((row(&s, "qmgr").restarts, row(&s, "smtpd").restarts));
            assert_eq!(row(&s, "smtpd").state, ProcessState::Running);
        }
        assert_eq!(restarts, [(0, 0), (0, 0), (1, 0), (1, 0), (2, 0)]);
    }

    #[test]
    fn cpu_never_decreases_when_instances_exit() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut sc = scanner(Duration::from_secs(60));
        let steps: Vec<Vec<ProcSample>> = vec![
            vec![sample(10, "smtpd", 100), sample(11, "smtpd", 50)],
            vec![sample(10, "smtpd", 120)], // 11 exited with 50
            vec![sample(12, "smtpd", 5)],   // 10 exited with 120
            vec![],                         // 12 exited with 5
            vec![sample(13, "smtpd", 1)],
        ];
        let mut seen = Vec::new();
        for (i, children) in steps.into_iter().enumerate() {
            let s = sc.update(&view(children), t0 + Duration::from_secs(i as u64), wall);
            seen.push(row(&s, "smtpd").cpu_centiseconds);
        }
        assert_eq!(seen, [150, 170, 175, 175, 176]);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn reused_pid_is_a_new_process() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut sc = scanner(Duration::from_secs(60));
        let s = sc.update(&view(vec![sample(10, "smtpd", 100)]), t0, wall);
        assert_eq!(row(&s, "smtpd").cpu_centiseconds, 100);
        let mut reused = sample(10, "smtpd", 3);
        reused.start_time += Duration::from_secs(500);
        let s = sc.update(&view(vec![reused]), t0 + Duration::from_secs(1), wall);
        assert_eq!(row(&s, "smtpd").cpu_centiseconds, 103);
    }

    #[test]
    fn cpu_percent_over_the_scan_interval() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut sc = scanner(Duration::from_secs(60));
        let s = sc.update(&view(vec![sample(2, "qmgr", 100)]), t0, wall);
        assert_eq!(row(&s, "qmgr").cpu_percent, 0);
        // 50 centiseconds in 2 seconds = 25 % of one core.
        let s = sc.update(
            &view(vec![sample(2, "qmgr", 150)]),
            t0 + Duration::from_secs(2),
            wall,
        );
        assert_eq!(row(&s, "qmgr").cpu_percent, 25);
    }

    #[test]
    fn rows_sum_memory_and_collect_services() {
        let mut sc = scanner(Duration::from_secs(60));
        let mut a = sample(10, "smtpd", 1);
        a.service = Some("smtp".into());
        let mut b = sample(11, "smtpd", 1);
        b.service = Some("submission".into());
        let c = sample(12, "smtpd", 1);
        let s = sc.update(&view(vec![a, b, c]), Instant::now(), SystemTime::now());
        let r = row(&s, "smtpd");
        assert_eq!(r.instances, 3);
        assert_eq!(r.rss_bytes, 3000);
        assert_eq!(r.vsize_bytes, 15000);
        assert_eq!(r.services, "smtp,smtpd,submission");
        assert_eq!(
            r.oldest_start,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_010))
        );
    }

    #[test]
    fn daemon_names_from_argv() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            daemon_name(&argv("smtpd -n smtp -t inet -u -o stress= -s 2")),
            Some(("smtpd".into(), Some("smtp".into())))
        );
        assert_eq!(
            daemon_name(&argv("pickup -l -t unix -u -c")),
            Some(("pickup".into(), None))
        );
        assert_eq!(
            daemon_name(&argv("/usr/lib/postfix/sbin/master -w")),
            Some(("master".into(), None))
        );
        assert_eq!(daemon_name(&[]), None);
        assert_eq!(daemon_name(&argv("smtpd -n")), Some(("smtpd".into(), None)));
    }

    fn raw(pid: i32, uid: u32, comm: &str, cmdline: &str) -> RawProcess {
        RawProcess {
            pid,
            ppid: 1,
            uid,
            comm: comm.into(),
            cmdline: cmdline.split(' ').map(String::from).collect(),
            sample: sample(pid, comm, 0),
        }
    }

    #[test]
    fn master_selection_never_mixes_instances() {
        let all = vec![
            raw(100, 0, "master", "/usr/lib/postfix/sbin/master -w"),
            raw(
                200,
                0,
                "master",
                "/usr/lib/postfix/sbin/master -c /etc/postfix-b",
            ),
            raw(300, 1000, "master", "/home/u/master"), // not root: not Postfix's
            raw(400, 0, "master", "/usr/bin/python3 master"),
        ];
        let pick = |pid_file, dir: Option<&str>| {
            choose_master(&all, pid_file, dir.map(Path::new)).map(|m| m.map(|m| m.pid))
        };
        assert_eq!(pick(Ok(Some(100)), None).unwrap(), Some(100));
        assert_eq!(
            pick(Ok(Some(200)), Some("/etc/postfix")).unwrap(),
            Some(200)
        );
        // Stale pid file: that instance's master is not running.
        assert_eq!(pick(Ok(Some(999)), None).unwrap(), None);
        // No pid file: not running, even though other masters run.
        assert_eq!(pick(Ok(None), None).unwrap(), None);
        // Pid file unusable: command line, else the only master.
        assert_eq!(pick(Err(()), Some("/etc/postfix-b/")).unwrap(), Some(200));
        let err = pick(Err(()), Some("/etc/postfix")).unwrap_err();
        assert!(format!("{err}").contains("2 Postfix masters"), "{err}");
        let one = &all[..1];
        assert_eq!(
            choose_master(one, Err(()), None).unwrap().map(|m| m.pid),
            Some(100)
        );
        assert!(choose_master(&all[2..], Err(()), None).unwrap().is_none());
    }

    #[test]
    fn lock_holder_from_proc_locks() {
        let locks = "1: FLOCK  ADVISORY  WRITE 1595 fe:00:10012061 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 77 fe:00:10011125 0 EOF\n\
                     3: POSIX  ADVISORY  WRITE -1 fe:00:10011125 0 EOF\n\
                     4: FLOCK  ADVISORY  WRITE 1553 fe:00:10011125 0 EOF\n\
                     garbage line\n";
        let dev = libc::makedev(0xfe, 0);
        assert_eq!(lock_holder(locks, dev, 10011125), Some(1553));
        assert_eq!(lock_holder(locks, dev, 42), None);
        assert_eq!(lock_holder(locks, libc::makedev(8, 1), 10011125), None);
        assert_eq!(lock_holder("", dev, 1), None);
    }

    #[test]
    fn hidepid_detection() {
        let plain = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        assert_eq!(hidepid_option(plain, "/proc"), None);
        let hidden = "22 27 0:21 / /proc rw,nosuid shared:12 - proc proc rw,hidepid=2,gid=4\n";
        assert_eq!(hidepid_option(hidden, "/proc"), Some("hidepid=2".into()));
        let named = "22 27 0:21 / /proc rw - proc proc rw,hidepid=invisible\n";
        assert_eq!(
            hidepid_option(named, "/proc"),
            Some("hidepid=invisible".into())
        );
        let zero = "22 27 0:21 / /proc rw - proc proc rw,hidepid=0\n";
        assert_eq!(hidepid_option(zero, "/proc"), None);
        let elsewhere = "30 27 0:21 / /mnt/proc rw - proc proc rw,hidepid=2\n";
        assert_eq!(hidepid_option(elsewhere, "/proc"), None);
        assert_eq!(
            hidepid_option(elsewhere, "/mnt/proc/"),
            Some("hidepid=2".into())
        );
    }

    #[test]
    fn scanning_this_machine_works_without_postfix() {
        // Whatever runs here, a scan must succeed and keep the expected rows.
        let mut sc = scanner(Duration::from_secs(60));
        let s = sc.scan(Instant::now()).unwrap();
        assert!(s.rows.len() >= 3);
        assert!(sc.health().last_success.is_some());
    }
}
