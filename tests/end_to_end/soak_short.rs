//! Load and soak: 8 parallel snmpbulkwalk loops while the log grows at
//! 10 000 lines/s with a rename+create rotation at a fixed interval. Zero
//! failed walks, every walk in strictly increasing OID order, and at the
//! end the served counters equal `postfix-agentx parse` over the rotated
//! files and the current one, in order. Prints RSS at start and end and
//! CPU time per 1 000 lines.
//!
//! CI runs 45 s with a rotation every 20 s (2 rotations). For the long run:
//! `POSTFIX_AGENTX_SOAK_SECONDS=600 POSTFIX_AGENTX_SOAK_ROTATE_SECONDS=60
//!  cargo test --release --test end_to_end soak_short -- --nocapture` (scripts/soak.sh).

use crate::support;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::agent::ROOT;
use support::snmpd::Snmpd;
use support::workload::{
    append, cpu_ticks, parsed_counters, rss_kib, tail, ticks_per_second, wait_counters_equal,
    AgentProc, LineGenerator, RunAs,
};

const LINES_PER_SECOND: u64 = 10_000;
const WALKERS: usize = 8;

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Strictly increasing numeric OIDs.
fn increasing(oids: &[Vec<u32>]) -> bool {
    oids.windows(2).all(|w| w[0] < w[1])
}

#[test]
fn soak_walks_and_rotation_under_10k_lines_per_second() {
    let _exclusive = support::exclusive();
    let duration = Duration::from_secs(env_secs("POSTFIX_AGENTX_SOAK_SECONDS", 45));
    let rotate_every = Duration::from_secs(env_secs("POSTFIX_AGENTX_SOAK_ROTATE_SECONDS", 20));

    let mut snmpd = Snmpd::start().unwrap();
    let dir = support::temp_dir("pfagentx-soak-");
    let log = dir.path().join("maillog");
    fs::write(&log, "").unwrap();
    let config = format!(
        "[agentx]\nsocket = \"unix:{}\"\nreconnect_max_seconds = 1\n\
         [log]\nsource = \"file\"\npath = [\"{}\"]\nstart_at = \"beginning\"\n\
         [state]\ndirectory = \"{}\"\n\
         [queue]\nenabled = false\n[process]\nenabled = false\n",
        snmpd.socket_path().display(),
        log.display(),
        dir.path().join("state").display()
    );
    let agent = AgentProc::start(dir.path(), &config, RunAs::Current);
    let pid = agent.pid();
    // Registered before the load starts.
    let version = format!("{ROOT}.1.9.1.0");
    let served = snmpd
        .wait_for_value(&version, Duration::from_secs(15))
        .unwrap();
    assert!(
        served.stdout.contains("STRING"),
        "{served}\n{}",
        agent.log()
    );
    let rss_start = rss_kib(pid).expect("agent RSS");
    let cpu_start = cpu_ticks(pid).expect("agent CPU");

    let stop = Arc::new(AtomicBool::new(false));
    let walks = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let walkers: Vec<_> = (0..WALKERS)
        .map(|_| {
            let (stop, walks, failures) = (stop.clone(), walks.clone(), failures.clone());
            let address = snmpd.address();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = Command::new("snmpbulkwalk")
                        .args(["-v2c", "-c", "public", "-On", "-Oe", "-m", ""])
                        .args(["-t", "5", "-r", "1", &address, ROOT])
                        .env("MIBS", "")
                        .output()
                        .expect("run snmpbulkwalk");
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    let oids: Vec<Vec<u32>> = stdout
                        .lines()
                        .filter_map(|l| l.split_once(" = "))
                        .map(|(o, _)| {
                            o.trim_start_matches('.')
                                .split('.')
                                .filter_map(|x| x.parse().ok())
                                .collect()
                        })
                        .collect();
                    let ok = out.status.success() && oids.len() > 50 && increasing(&oids);
                    walks.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        if let Ok(mut f) = failures.lock() {
                            f.push(format!(
                                "{} OIDs, exit {:?}: {}",
                                oids.len(),
                                out.status.code(),
                                String::from_utf8_lossy(&out.stderr)
                            ));
                        }
                    }
                }
            })
        })
        .collect();

    // The writer: 1/10 s of lines every 100 ms, rotation by rename + create.
    let start = Instant::now();
    let mut gen = LineGenerator::new();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut written = 0u64;
    let mut next_rotation = start + rotate_every;
    let mut tick = start;
    while start.elapsed() < duration {
        append(&log, &gen.take((LINES_PER_SECOND / 10) as usize));
        written += LINES_PER_SECOND / 10;
        if Instant::now() >= next_rotation {
            let rotated = dir.path().join(format!("maillog.{}", files.len() + 1));
            fs::rename(&log, &rotated).unwrap();
            fs::write(&log, "").unwrap();
            files.push(rotated);
            next_rotation += rotate_every;
        }
        tick += Duration::from_millis(100);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let write_time = start.elapsed();
    files.push(log.clone());

    // Counting catches up, then the walkers stop.
    let first_failures: Vec<String> = failures.lock().unwrap().iter().take(3).cloned().collect();
    assert!(
        snmpd.is_running(),
        "snmpd died during the soak; {} walks so far, first failures: {first_failures:#?}\n\
         snmpd log:\n{}\nagent log:\n{}",
        walks.load(Ordering::Relaxed),
        tail(&snmpd.log(), 30),
        tail(&agent.log(), 30)
    );
    let want = parsed_counters(&files);
    assert_eq!(want["linesRead"], written);
    wait_counters_equal(&snmpd, &want, Duration::from_secs(60), || agent.log());
    stop.store(true, Ordering::Relaxed);
    for w in walkers {
        w.join().unwrap();
    }
    let cpu_end = cpu_ticks(pid).expect("agent CPU");
    let rss_end = rss_kib(pid).expect("agent RSS");
    let cpu_ms = (cpu_end - cpu_start) * 1000 / ticks_per_second();
    let failures = failures.lock().unwrap();
    let walks = walks.load(Ordering::Relaxed);
    eprintln!(
        "soak: {written} lines in {write_time:.1?} ({} rotations), {walks} walks by {WALKERS} \
         walkers, {} failed; RSS {rss_start} KiB -> {rss_end} KiB; CPU {cpu_ms} ms = {:.2} ms per \
         1000 lines (walk answers included)",
        files.len() - 1,
        failures.len(),
        cpu_ms as f64 * 1000.0 / written as f64
    );
    assert!(
        failures.is_empty(),
        "failed walks: {:#?}\nagent log:\n{}",
        &failures[..failures.len().min(5)],
        tail(&agent.log(), 30)
    );
    assert!(files.len() > 2, "expected at least 2 rotations: {files:?}");
    assert!(walks >= WALKERS as u64, "only {walks} walks");
    // Memory stays bounded: the queue-id table has a fixed capacity.
    assert!(
        rss_end < rss_start + 256 * 1024,
        "RSS grew from {rss_start} to {rss_end} KiB"
    );
}
