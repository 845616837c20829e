//! SNMP GET latency through snmpd while the agent scans a 1 M-file queue.
//!
//! Starts a private snmpd (AgentX master, see tests/support/snmpd.rs) and
//! the real agent (`postfix-agentx run`, release build) with the directory
//! queue method, a 1 s scan interval and every other collector off. Its
//! `queue_directory` is a symlink that the benchmark points either at an
//! empty queue tree or at a synthetic tree of 1 M files (`$BENCH_DIR/qN`,
//! shared with benches/queue_scan.sh; created when missing, which takes a
//! few minutes). With the big tree a scan (statx per file) takes seconds,
//! so scans run back to back, 1 s apart.
//!
//! It then alternates, ROUNDS times, a scan block (1 M tree) and an idle
//! block (empty tree) of the same length, sending back-to-back pairs of
//! SNMPv2c GETs over UDP (our own small client, no process per request):
//! postfixQueueTotal.0 (the value the scanner publishes; snmpd asks us over
//! AgentX) then sysUpTime.0 (snmpd answers alone: the reference). A pair
//! counts for the scan block if a scan was running just before or just
//! after it (while it scans, the agent has extra threads: /proc/PID/stat
//! num_threads), and for the idle block only if none was. A scan block
//! lasts until it has counted GETS pairs and seen one scan's result
//! published. Alternating blocks of equal length spreads the load of other
//! jobs on the machine evenly over both phases.
//!
//! Run: `cargo bench --bench queue_scan_latency` (needs `apt-get install -y
//! snmpd snmp`). Env: BENCH_DIR (default /var/tmp/qbench), BENCH_FILES
//! (default 1000000), BENCH_GETS (pairs per scan block, default 5000),
//! BENCH_ROUNDS (default 5). `cargo test --all-targets` runs this target
//! without `--bench`; it then only says how to run it.

#[path = "common/queue_tree.rs"]
mod queue_tree;
#[path = "common/snmp_client.rs"]
mod snmp_client;
#[path = "../tests/support/mod.rs"]
mod support;

use anyhow::{bail, Context, Result};
use postfix_agentx::snmp::Oid;
use snmp_client::Client;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{Agent, ROOT};
use support::snmpd::Snmpd;

const SYS_UPTIME: &str = "1.3.6.1.2.1.1.3.0";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fields of /proc/PID/stat after the command name: (num_threads, utime +
/// stime in clock ticks).
fn proc_stat(pid: i32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (did the agent exit?)"))?;
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/PID/stat")?;
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    // Field 3 (state) is f[0]: utime = field 14, stime = 15, num_threads = 20.
    if f.len() < 18 {
        bail!("short /proc/PID/stat");
    }
    Ok((f[17], f[11] + f[12]))
}

/// Points `link` at `target` atomically (a new symlink renamed over it).
fn repoint(link: &Path, target: &Path) -> Result<()> {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)?;
    Ok(())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[derive(Default)]
struct Phase {
    ours: Vec<Duration>,
    snmpd: Vec<Duration>,
    /// Pairs not counted: sent while the agent was not in the phase's state.
    discarded: u64,
    wall: Duration,
    /// Agent CPU time (user + system) during the phase's blocks, in ticks.
    agent_ticks: u64,
}

struct Stats {
    n: usize,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

fn stats(v: &mut [Duration]) -> Stats {
    v.sort();
    let pick = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
    Stats {
        n: v.len(),
        p50: pick(0.50),
        p90: pick(0.90),
        p99: pick(0.99),
        max: v[v.len() - 1],
        mean: v.iter().sum::<Duration>() / v.len() as u32,
    }
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

struct Bench {
    client: Client,
    pid: i32,
    idle_threads: u64,
    files: u64,
    ours: Oid,
    uptime: Oid,
}

impl Bench {
    fn scanning(&self) -> Result<bool> {
        Ok(proc_stat(self.pid)?.0 > self.idle_threads)
    }

    /// Polls postfixQueueTotal.0 until it equals `want`.
    fn wait_total(&mut self, want: u64, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        loop {
            let got = self.client.get(&self.ours)?;
            if got == Some(want) {
                return Ok(());
            }
            if Instant::now() > end {
                bail!("postfixQueueTotal.0 is {got:?}, not {want}, after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until no scan has run for 0.5 s.
    fn wait_scan_end(&self, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_millis(500) {
            if self.scanning()? {
                quiet_since = Instant::now();
            }
            if Instant::now() > end {
                bail!("a queue scan still runs after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Sends GET pairs until at least `pairs` of them were counted for the
    /// phase and `min_time` has passed; returns how long that took. A scan
    /// block also goes on until it has seen the scan's result
    /// (postfixQueueTotal.0 = the tree's size) published, so it covers at
    /// least one whole scan, publication included.
    fn block(
        &mut self,
        phase: &mut Phase,
        want_scan: bool,
        pairs: usize,
        min_time: Duration,
    ) -> Result<Duration> {
        let started = Instant::now();
        let ticks = proc_stat(self.pid)?.1;
        let mut kept = 0;
        let mut published = !want_scan;
        while kept < pairs || started.elapsed() < min_time || !published {
            if started.elapsed() > min_time + Duration::from_secs(600) {
                bail!("only {kept} of {pairs} pairs in 600 s (scanning wanted: {want_scan})");
            }
            let before = self.scanning()?;
            let t0 = Instant::now();
            let total = self.client.get(&self.ours)?;
            let t1 = Instant::now();
            self.client.get(&self.uptime)?;
            let t2 = Instant::now();
            let after = self.scanning()?;
            published |= total == Some(self.files);
            // A scan block counts a pair if a scan ran at either end of it
            // (so pairs around a scan's start and its publication count); an
            // idle block only if none ran at either end.
            if (before || after) == want_scan {
                phase.ours.push(t1 - t0);
                phase.snmpd.push(t2 - t1);
                kept += 1;
            } else {
                phase.discarded += 1;
            }
        }
        let took = started.elapsed();
        phase.wall += took;
        phase.agent_ticks += proc_stat(self.pid)?.1 - ticks;
        Ok(took)
    }
}

/// (number, median seconds, min, max) of the agent's completed scans that
/// counted `total` messages, from its debug log.
fn scans_in_log(log: &str, total: u64) -> (usize, f64, f64, f64) {
    let want = format!("total={total} ");
    let mut ms: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("queue scan done") && l.contains(&want))
        .filter_map(|l| l.split("duration_ms=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect();
    if ms.is_empty() {
        return (0, 0.0, 0.0, 0.0);
    }
    ms.sort_by(f64::total_cmp);
    (
        ms.len(),
        ms[ms.len() / 2] / 1e3,
        ms[0] / 1e3,
        ms[ms.len() - 1] / 1e3,
    )
}

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("queue_scan_latency: run it with `cargo bench --bench queue_scan_latency`");
        return Ok(());
    }
    let files = env_u64("BENCH_FILES", 1_000_000);
    let pairs = env_u64("BENCH_GETS", 5000) as usize;
    let rounds = env_u64("BENCH_ROUNDS", 5);
    let bench_dir =
        PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp/qbench".to_owned()));
    let tree = bench_dir.join(format!("q{files}"));
    if !tree.join("deferred").is_dir() {
        eprintln!(
            "creating {} with {files} files (a few minutes; kept for the next run)",
            tree.display()
        );
        queue_tree::generate(&tree, files)?;
    }
    queue_tree::check(&tree, files)?;

    let work = tempfile::Builder::new()
        .prefix("pfagentx-qlat-")
        .tempdir()
        .context("temp dir")?;
    let empty = work.path().join("empty");
    queue_tree::generate(&empty, 0)?;
    let link = work.path().join("queue");
    repoint(&link, &empty)?;

    let snmpd = Snmpd::start()?;
    let agent = Agent::start(&format!(
        "[agentx]\n\
         socket = \"unix:{sock}\"\n\
         reconnect_max_seconds = 1\n\
         [log]\nenabled = false\n\
         [process]\nenabled = false\n\
         [probes]\nenabled = false\n\
         [certs]\nenabled = false\n\
         [postfix]\nqueue_directory = \"{link}\"\n\
         [queue]\n\
         method = \"directory\"\n\
         interval_seconds = 1\n\
         time_budget_seconds = 300\n",
        sock = snmpd.socket_path().display(),
        link = link.display(),
    ));
    let pid = agent.pid().context("agent pid")?;
    let mut bench = Bench {
        client: Client::new(snmpd.port())?,
        pid,
        idle_threads: 0,
        files,
        ours: Oid::parse(&format!("{ROOT}.1.2.1.0")).map_err(anyhow::Error::msg)?,
        uptime: Oid::parse(SYS_UPTIME).map_err(anyhow::Error::msg)?,
    };
    // Registered and one (empty) scan published.
    let up = Instant::now();
    while bench.client.get(&bench.ours).ok().flatten() != Some(0) {
        if up.elapsed() > Duration::from_secs(15) {
            bail!(
                "the agent did not serve postfixQueueTotal.0\nagent log:\n{}\nsnmpd log:\n{}",
                agent.log(),
                snmpd.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The agent's thread count between scans: the fewest seen over 2 s
    // (the empty tree's scans start short-lived threads every second).
    let mut idle_threads = u64::MAX;
    for _ in 0..40 {
        idle_threads = idle_threads.min(proc_stat(pid)?.0);
        std::thread::sleep(Duration::from_millis(50));
    }
    bench.idle_threads = idle_threads;

    let (ncpu, kernel) = (
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default(),
    );
    let load_start = loadavg();
    println!();
    println!(
        "cpus {ncpu}, kernel {}, load average at start {load_start}",
        kernel.trim()
    );
    println!(
        "tree {} ({files} files); {rounds} rounds: a scan block (>= {pairs} GET pairs, >= 1 whole scan), then an idle block as long",
        tree.display()
    );

    for _ in 0..200 {
        bench.client.get(&bench.ours)?;
        bench.client.get(&bench.uptime)?;
    }
    let mut idle = Phase::default();
    let mut scan = Phase::default();
    for round in 1..=rounds {
        repoint(&link, &tree)?;
        let took = bench.block(&mut scan, true, pairs, Duration::ZERO)?;
        repoint(&link, &empty)?;
        // The 1 M scan in progress ends, then an empty scan publishes 0.
        bench.wait_scan_end(Duration::from_secs(300))?;
        bench.wait_total(0, Duration::from_secs(300))?;
        // As long as the scan block: both see the same share of whatever
        // else the machine is doing.
        bench.block(&mut idle, false, 0, took)?;
        eprintln!("round {round}/{rounds} done, load average {}", loadavg());
    }
    // Let the last scan finish, so the log shows how long scans took.
    repoint(&link, &empty)?;
    bench.wait_scan_end(Duration::from_secs(300))?;
    let load_end = loadavg();
    let log = agent.log();
    let (n_scans, median_s, min_s, max_s) = scans_in_log(&log, files);

    let ticks = clock_ticks();
    println!("load average at end {load_end}");
    println!(
        "{n_scans} scans of the {files}-file tree completed, {median_s:.1} s median ({min_s:.1} to {max_s:.1} s)"
    );
    for (name, p) in [("idle", &idle), ("scan", &scan)] {
        println!(
            "{name}: {:.1} s of blocks, agent CPU {:.2} s ({:.0} % of one core), {} pairs discarded",
            p.wall.as_secs_f64(),
            p.agent_ticks as f64 / ticks,
            100.0 * p.agent_ticks as f64 / ticks / p.wall.as_secs_f64(),
            p.discarded
        );
    }
    println!();
    println!("| GET | queue scan | n | p50 µs | p90 µs | p99 µs | max µs | mean µs |");
    println!("|---|---|--:|--:|--:|--:|--:|--:|");
    let mut p99 = Vec::new();
    for (name, i, s) in [
        (
            "postfixQueueTotal.0 (snmpd + AgentX + agent)",
            &mut idle.ours,
            &mut scan.ours,
        ),
        (
            "sysUpTime.0 (snmpd alone)",
            &mut idle.snmpd,
            &mut scan.snmpd,
        ),
    ] {
        let (a, b) = (stats(i), stats(s));
        for (phase, st) in [("none", &a), ("running", &b)] {
            println!(
                "| {name} | {phase} | {} | {} | {} | {} | {} | {} |",
                st.n,
                us(st.p50),
                us(st.p90),
                us(st.p99),
                us(st.max),
                us(st.mean)
            );
        }
        p99.push((name, a.p99, b.p99));
    }
    println!();
    for (name, a, b) in p99 {
        let change = (b.as_secs_f64() / a.as_secs_f64() - 1.0) * 100.0;
        println!(
            "{name}: p99 {} µs -> {} µs during scans ({change:+.0} %): {}",
            us(a),
            us(b),
            if change <= 10.0 {
                "within 10 %"
            } else {
                "NOT within 10 %"
            }
        );
    }
    drop(agent);
    drop(snmpd);
    Ok(())
}
