//! AgentX request latency through a real snmpd.
//!
//! Starts a private snmpd (see tests/support/snmpd.rs), runs the subagent
//! in-process with ~200 objects, and measures with a hand-written SNMPv2c UDP
//! client (BER encoded here, no process per request):
//!   - GET of one of our scalars (snmpd -> AgentX -> subagent) vs
//!   - GET of sysUpTime.0 (answered by snmpd itself),
//!   - a full GetBulk walk of our subtree.
//!
//! Run: `cargo bench --bench agentx_latency` (needs `apt-get install -y snmpd snmp`).
//! Env: BENCH_GETS (default 5000), BENCH_WALKS (default 30).

mod common;
#[path = "common/snmp_client.rs"]
mod snmp_client;
#[path = "../tests/support/mod.rs"]
mod support;

use anyhow::{bail, Result};
use postfix_agentx::agentx::session::{self, MasterAddress, SessionConfig, SessionState};
use postfix_agentx::snmp::Oid;
use postfix_agentx::snmp::ViewHandle;
use snmp_client::Client;
use std::time::{Duration, Instant};
use support::snmpd::Snmpd;
use tokio::sync::{mpsc, watch};

use common::{bench_view, BASE};
const SYS_UPTIME: &str = "1.3.6.1.2.1.1.3.0";

fn oid(s: &str) -> Oid {
    Oid::parse(s).expect("valid OID")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let gets = env_usize("BENCH_GETS", 5000);
    let walks = env_usize("BENCH_WALKS", 30);
    let snmpd = Snmpd::start()?;

    let view = bench_view();
    let objects = view.len();
    let mut cfg = SessionConfig::new(MasterAddress::Unix(snmpd.socket_path()), oid(BASE));
    cfg.backoff_initial = Duration::from_millis(50);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (state_tx, state) = watch::channel(SessionState::Connecting);
    let (_notify, notify_rx) = mpsc::channel(1);
    let handle = ViewHandle::new(view);
    let agent = std::thread::spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(session::run(cfg, handle, notify_rx, state_tx, shutdown_rx))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(*state.borrow(), SessionState::Connected { .. }) {
        if Instant::now() > deadline {
            bail!("subagent did not register; snmpd log:\n{}", snmpd.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut client = Client::new(snmpd.port())?;
    let ours = oid(&format!("{BASE}.2.0"));
    let uptime = oid(SYS_UPTIME);
    for _ in 0..200 {
        client.get(&ours)?;
        client.get(&uptime)?;
    }
    // Interleaved so both see the same machine conditions.
    let mut t_ours = Vec::with_capacity(gets);
    let mut t_snmpd = Vec::with_capacity(gets);
    for _ in 0..gets {
        let t = Instant::now();
        client.get(&ours)?;
        t_ours.push(t.elapsed());
        let t = Instant::now();
        client.get(&uptime)?;
        t_snmpd.push(t.elapsed());
    }
    t_ours.sort();
    t_snmpd.sort();

    let mut walk_rows = Vec::new();
    for max_rep in [10i64, 50] {
        let mut times = Vec::with_capacity(walks);
        for _ in 0..walks {
            let t = Instant::now();
            let n = client.bulkwalk(&oid(BASE), max_rep)?;
            times.push(t.elapsed());
            if n != objects {
                bail!("bulkwalk returned {n} objects, expected {objects}");
            }
        }
        times.sort();
        walk_rows.push((max_rep, times));
    }

    println!();
    println!("AgentX request latency ({gets} GETs each, interleaved; {objects} objects in view)");
    println!();
    println!("| request                                   | p50 µs | p99 µs | mean µs |");
    println!("|-------------------------------------------|-------:|-------:|--------:|");
    for (name, v) in [
        ("GET our scalar (snmpd + AgentX subagent)", &t_ours),
        ("GET sysUpTime.0 (snmpd itself)", &t_snmpd),
    ] {
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        println!(
            "| {name:<41} | {:>6} | {:>6} | {:>7} |",
            us(percentile(v, 0.5)),
            us(percentile(v, 0.99)),
            us(mean)
        );
    }
    println!();
    println!(
        "| GetBulk walk of our subtree ({objects} objects, {walks} runs) | median ms | max ms |"
    );
    println!("|----------------------------------------------------|----------:|-------:|");
    for (max_rep, times) in &walk_rows {
        println!(
            "| max-repetitions {max_rep:<34} | {:>9.2} | {:>6.2} |",
            percentile(times, 0.5).as_secs_f64() * 1e3,
            times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }
    println!();

    let _ = shutdown.send(true);
    match agent.join() {
        Ok(r) => r?,
        Err(_) => bail!("agent thread panicked"),
    }
    Ok(())
}
