//! Steady state: the agent's log work is proportional to the new lines only,
//! whatever the size of the log. Checked with the kernel's own accounting
//! (`rchar` in /proc/PID/io: the bytes the process passed to read(2) and
//! pread(2), socket and inotify reads included), not with timings:
//!
//! - starting at the end of a 64 MB log reads none of it;
//! - an idle log is not read at all (its first line, which tells a
//!   copytruncate rotation, is read again only after the file changed);
//! - appending N bytes costs N bytes of reads, and the counters served
//!   through snmpd equal `parse` over the appended lines;
//! - a restart resumes at the saved offset without rereading the log.
//!
//! The seed template greps the whole log at every poll: 64 MB per poll here.
//! CPU time per 1 000 appended lines is printed, not asserted (benchmarks
//! measure speed: `benches/steady_state.sh`).

use crate::support;

use std::fs;
use std::path::Path;
use std::time::Duration;
use support::agent::ROOT;
use support::snmpd::Snmpd;
use support::workload::{
    append, cpu_ticks, parsed_counters, ticks_per_second, wait_counters_equal, AgentProc,
    LineGenerator, RunAs,
};

/// Size of the log that exists before the agent starts.
const OLD_LOG_BYTES: usize = 64 << 20;
/// What the agent may read besides the log lines in one measured step: its
/// first-line rereads, inotify events, AgentX traffic (snmpget requests
/// while the test waits for the counters) and the saved state at start.
/// Reading the old log once would be 256 times this.
const SLACK_BYTES: u64 = 256 << 10;
/// What the agent may read in the idle window: an AgentX Ping's response
/// (a Ping every 15 s by default). Rereading the log's first line at each
/// poll (two a second) would be about 10 KiB.
const IDLE_SLACK_BYTES: u64 = 2 << 10;

/// `rchar` of `pid`: bytes read through read(2)-like calls since it started.
fn read_bytes(pid: i32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/io: {e}"));
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rchar in /proc/{pid}/io:\n{io}"))
}

/// Writes the Postfix sample log again and again until `path` holds at least `bytes`.
fn write_old_log(path: &Path, bytes: usize) {
    let sample = fs::read(support::workload::fixture_path()).expect("read the log fixture");
    let mut text = Vec::with_capacity(bytes + sample.len());
    while text.len() < bytes {
        text.extend_from_slice(&sample);
    }
    fs::write(path, text).expect("write the old log");
}

/// Starts the agent and waits until it is registered with snmpd.
fn start_agent(dir: &Path, config: &str, snmpd: &Snmpd) -> AgentProc {
    let agent = AgentProc::start(dir, config, RunAs::Current);
    let version = format!("{ROOT}.1.9.1.0");
    let served = snmpd.wait_for_value(&version, Duration::from_secs(15));
    assert!(
        served.as_ref().is_ok_and(|o| o.stdout.contains("STRING")),
        "the agent did not register: {served:?}\n{}",
        agent.log()
    );
    agent
}

#[test]
fn log_reads_are_proportional_to_new_lines_only() {
    let _exclusive = support::exclusive();
    let snmpd = Snmpd::start().unwrap();
    let dir = support::temp_dir("pfagentx-steady-");
    let log = dir.path().join("maillog");
    write_old_log(&log, OLD_LOG_BYTES);
    let old_size = fs::metadata(&log).unwrap().len();
    // Only the log source: the queue, process, probe and certificate
    // collectors read files of their own.
    let config = format!(
        "[agentx]\nsocket = \"unix:{}\"\nreconnect_max_seconds = 1\n\
         [log]\nsource = \"file\"\npath = [\"{}\"]\nstart_at = \"end\"\n\
         [state]\ndirectory = \"{}\"\nsave_interval_seconds = 1\n\
         [queue]\nenabled = false\n[process]\nenabled = false\n\
         [probes]\nenabled = false\n[certs]\nenabled = false\n",
        snmpd.socket_path().display(),
        log.display(),
        dir.path().join("state").display()
    );
    let mut agent = start_agent(dir.path(), &config, &snmpd);
    let pid = agent.pid();

    // Starting at the end: the old log is not read.
    let at_start = read_bytes(pid);
    println!("read at start: {at_start} bytes (the log holds {old_size})");
    assert!(
        at_start < SLACK_BYTES * 4,
        "the agent read {at_start} bytes while starting at the end of a {old_size}-byte log\n{}",
        agent.log()
    );

    // Idle: five seconds of polls, no new line.
    let before_idle = read_bytes(pid);
    std::thread::sleep(Duration::from_secs(5));
    let idle = read_bytes(pid) - before_idle;
    println!("read in 5 s idle: {idle} bytes");
    assert!(
        idle < IDLE_SLACK_BYTES,
        "the agent read {idle} bytes in 5 s while the {old_size}-byte log did not change"
    );

    // An append of N bytes costs N bytes of reads (plus the slack).
    let mut lines = LineGenerator::new();
    let new_part = dir.path().join("appended-1");
    let text = lines.take(20_000);
    fs::write(&new_part, &text).unwrap();
    let (reads_before, cpu_before) = (read_bytes(pid), cpu_ticks(pid).expect("agent CPU"));
    append(&log, &text);
    let want = parsed_counters(std::slice::from_ref(&new_part));
    assert_eq!(want["linesRead"], 20_000);
    wait_counters_equal(&snmpd, &want, Duration::from_secs(30), || agent.log());
    let appended = text.len() as u64;
    let read = read_bytes(pid) - reads_before;
    let ticks = cpu_ticks(pid).expect("agent CPU") - cpu_before;
    println!(
        "appended {appended} bytes (20 000 lines): read {read} bytes, CPU {} ms per 1 000 lines \
         (including the snmpget polls)",
        ticks * 1000 / ticks_per_second() / 20
    );
    assert!(
        read >= appended && read < appended + SLACK_BYTES,
        "appending {appended} bytes to a {old_size}-byte log made the agent read {read} bytes"
    );

    // A restart resumes at the saved offset: nothing is read twice, the old
    // log is not read, and the counters carry on.
    agent.stop();
    let mut agent = start_agent(dir.path(), &config, &snmpd);
    let pid = agent.pid();
    let more = lines.take(5_000);
    let more_part = dir.path().join("appended-2");
    fs::write(&more_part, &more).unwrap();
    append(&log, &more);
    let want = parsed_counters(&[new_part, more_part]);
    wait_counters_equal(&snmpd, &want, Duration::from_secs(30), || agent.log());
    let after_restart = read_bytes(pid);
    println!(
        "after the restart: read {after_restart} bytes for {} appended bytes",
        more.len()
    );
    assert!(
        after_restart < more.len() as u64 + SLACK_BYTES * 4,
        "after a restart the agent read {after_restart} bytes for {} new bytes of a {}-byte log\n{}",
        more.len(),
        fs::metadata(&log).unwrap().len(),
        agent.log()
    );
    agent.stop();
}
