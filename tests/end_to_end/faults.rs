//! Fault injection against the real programs: snmpd crashing under load,
//! the mail log disappearing or turning unreadable, the state directory
//! full or read-only, and the agent itself SIGKILLed during heavy ingest.
//! In every case the agent keeps serving, says what is wrong in its health
//! table, and ends with exactly the counters `postfix-agentx parse` gives
//! for the same lines (nothing lost, nothing counted twice).

use crate::support;

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::agent::ROOT;
use support::snmpd::{Snmpd, SnmpdOptions};
use support::wait_until;
use support::workload::{
    append, chown_nobody, health_table, parsed_counters, set_mode, tail, wait_counters_equal,
    wait_health, AgentProc, HealthRow, LineGenerator, RunAs,
};

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// A new temp dir named after `prefix` holding `maillog` with `lines` generated
/// lines; returns the dir, the log's path and the generator, to write more.
fn temp_log(prefix: &str, lines: usize) -> (tempfile::TempDir, PathBuf, LineGenerator) {
    let dir = temp_dir(prefix);
    let log = dir.path().join("maillog");
    let mut gen = LineGenerator::new();
    append(&log, &gen.take(lines));
    (dir, log, gen)
}

/// Waits up to 20 s for the served counters to equal `parse`'s over `log`.
fn wait_counters_as_parsed(snmpd: &Snmpd, log: &Path, agent_log: impl Fn() -> String) {
    wait_counters_equal(
        snmpd,
        &parsed_counters(&[log.to_path_buf()]),
        Duration::from_secs(20),
        agent_log,
    );
}

/// Waits up to 10 s for health row `source` to satisfy `pred` (`what` names it
/// in the failure message); returns the row.
fn wait_row(
    snmpd: &Snmpd,
    source: &str,
    what: &str,
    agent_log: impl Fn() -> String,
    pred: impl FnMut(&HealthRow) -> bool,
) -> HealthRow {
    wait_health(
        snmpd,
        source,
        Duration::from_secs(10),
        what,
        agent_log,
        pred,
    )
}

/// Waits up to 10 s for health row `source` to be ok (status 1); returns the row.
fn wait_health_ok(
    snmpd: &Snmpd,
    source: &str,
    what: &str,
    agent_log: impl Fn() -> String,
) -> HealthRow {
    wait_row(snmpd, source, what, agent_log, |r| r.status == 1)
}

/// Waits up to 10 s for health row `source` to be in error (status 2) with
/// `needle` in its last error; returns the row.
fn wait_health_error(
    snmpd: &Snmpd,
    source: &str,
    what: &str,
    needle: &str,
    agent_log: impl Fn() -> String,
) -> HealthRow {
    wait_row(snmpd, source, what, agent_log, |r| {
        r.status == 2 && r.last_error.contains(needle)
    })
}

/// Alarms are off: the generated log holds fatal/panic lines, and a
/// `log:fatal` alarm raised after the baseline walk would change the walk.
fn agent_config(snmpd: &Snmpd, log: &Path, state: &Path) -> String {
    format!(
        "[agentx]\nsocket = \"unix:{}\"\nreconnect_max_seconds = 1\n\
         [log]\nsource = \"file\"\npath = [\"{}\"]\nstart_at = \"beginning\"\n\
         [state]\ndirectory = \"{}\"\nsave_interval_seconds = 1\n\
         [queue]\nenabled = false\n[process]\nenabled = false\n\
         [alarms]\nenabled = false\n",
        snmpd.socket_path().display(),
        log.display(),
        state.display()
    )
}

/// (OID, value) lines of a walk.
type Walk = Vec<(String, String)>;

/// One snmpbulkwalk of our subtree, or the failure text and partial lines.
fn bulkwalk(snmpd: &Snmpd) -> Result<Walk, (String, Walk)> {
    let out = snmpd
        .tool_with("snmpbulkwalk", &["-t", "1", "-r", "0"], &[ROOT])
        .expect("run snmpbulkwalk");
    let pairs: Vec<(String, String)> = out
        .lines()
        .iter()
        .filter_map(|l| l.split_once(" = "))
        .map(|(o, v)| (o.trim_start_matches('.').to_string(), v.trim().to_string()))
        .collect();
    if out.success() {
        Ok(pairs)
    } else {
        Err((format!("{}{}", out.stdout, out.stderr), pairs))
    }
}

/// Values that legitimately change between walks: the source table's last
/// success time, last error, error count and duration (the agentx row counts every
/// lost connection).
fn is_volatile(oid: &str) -> bool {
    ["5", "6", "7", "8"]
        .iter()
        .any(|c| oid.starts_with(&format!("{ROOT}.1.9.10.1.{c}.")))
}

fn same_answer(a: &[(String, String)], b: &[(String, String)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && (is_volatile(&x.0) || x.1 == y.1))
}

/// The first difference between two walks, for failure messages.
fn first_difference(got: &[(String, String)], want: &[(String, String)]) -> String {
    let i = got
        .iter()
        .zip(want)
        .position(|(x, y)| x.0 != y.0 || (!is_volatile(&x.0) && x.1 != y.1))
        .unwrap_or(got.len().min(want.len()));
    format!(
        "{} lines, expected {}; first difference at {i}: got {:?}, expected {:?}",
        got.len(),
        want.len(),
        got.get(i),
        want.get(i)
    )
}

#[derive(Default, Debug)]
struct WalkStats {
    complete: u64,
    timeouts: u64,
    /// snmpd up, our registration not yet back: nothing of ours in the answer.
    unregistered: u64,
    wrong: Vec<String>,
}

#[test]
fn snmpd_sigkilled_20_times_during_a_bulkwalk_loop() {
    let _exclusive = support::exclusive();
    let mut snmpd = Snmpd::start().unwrap();
    let (dir, log, _gen) = temp_log("pfagentx-fault-snmpd-", 500);
    let agent = AgentProc::start(
        dir.path(),
        &agent_config(&snmpd, &log, &dir.path().join("state")),
        RunAs::Current,
    );
    wait_counters_as_parsed(&snmpd, &log, || agent.log());
    // The state row appears with the first save; the walk is stable after it.
    wait_health_ok(&snmpd, "state", "saved", || agent.log());
    let baseline = bulkwalk(&snmpd).unwrap_or_else(|(e, _)| panic!("baseline walk: {e}"));
    assert!(baseline.len() > 50, "{baseline:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(WalkStats::default()));
    // The walker runs the client itself: snmpd is restarted under it.
    let walker = {
        let (stop, stats, baseline) = (stop.clone(), stats.clone(), baseline.clone());
        let address = snmpd.address();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new("snmpbulkwalk")
                    .args(["-v2c", "-c", "public", "-On", "-Oe", "-m", "", "-t", "1"])
                    .args(["-r", "0", &address, ROOT])
                    .env("MIBS", "")
                    .output()
                    .expect("run snmpbulkwalk");
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                let pairs: Vec<(String, String)> = stdout
                    .lines()
                    .filter_map(|l| l.split_once(" = "))
                    .map(|(o, v)| (o.trim_start_matches('.').to_string(), v.trim().to_string()))
                    .collect();
                // Before our registration is back, snmpbulkwalk finds nothing
                // below ROOT and prints `ROOT = No Such Object ...`: not ours.
                let below = format!("{ROOT}.");
                let ours = pairs.iter().filter(|(o, _)| o.starts_with(&below)).count();
                let Ok(mut s) = stats.lock() else { return };
                let prefix_ok =
                    pairs.len() <= baseline.len() && same_answer(&pairs, &baseline[..pairs.len()]);
                if out.status.success() && ours > 0 {
                    if same_answer(&pairs, &baseline) {
                        s.complete += 1;
                    } else {
                        s.wrong.push(format!(
                            "complete walk differs: {}",
                            first_difference(&pairs, &baseline)
                        ));
                    }
                } else if out.status.success() {
                    // "No Such Object" for our root: snmpd is up, we are not registered yet.
                    s.unregistered += 1;
                } else if stderr.contains("Timeout") && prefix_ok {
                    s.timeouts += 1;
                } else {
                    s.wrong.push(format!(
                        "failed walk that is not a clean timeout ({}): {stderr}",
                        first_difference(&pairs, &baseline)
                    ));
                }
            }
        })
    };

    let start = Instant::now();
    let mut completes_before = 0;
    for round in 0..20 {
        snmpd.kill();
        std::thread::sleep(Duration::from_millis(200));
        snmpd.start_again().unwrap();
        // Served again (registration back), then let a few walks complete.
        let served = wait_until(Duration::from_secs(10), || {
            stats.lock().unwrap().complete > completes_before
        });
        let s = stats.lock().unwrap();
        assert!(
            served && s.wrong.is_empty(),
            "round {round}: no complete walk within 10 s after the restart or a wrong answer\n\
             complete {}, timeouts {}, unregistered {}, wrong (first 3): {:#?}\nagent log:\n{}",
            s.complete,
            s.timeouts,
            s.unregistered,
            &s.wrong[..s.wrong.len().min(3)],
            tail(&agent.log(), 40)
        );
        drop(s);
        completes_before = stats.lock().unwrap().complete;
    }
    stop.store(true, Ordering::Relaxed);
    walker.join().unwrap();
    let s = stats.lock().unwrap();
    eprintln!(
        "20 snmpd SIGKILLs in {:?}: {} complete walks, {} timeouts, {} before re-registration, {} wrong",
        start.elapsed(),
        s.complete,
        s.timeouts,
        s.unregistered,
        s.wrong.len()
    );
    assert!(
        s.wrong.is_empty(),
        "wrong answers: {:#?}",
        &s.wrong[..s.wrong.len().min(5)]
    );
    assert!(s.complete >= 20, "{s:?}");
    let opened = agent.log().matches("AgentX session opened").count();
    assert!(opened >= 21, "{opened} sessions opened:\n{}", agent.log());
}

/// What the health row of the log says, for failure messages.
fn log_row(snmpd: &Snmpd) -> String {
    format!(
        "{:?}",
        health_table(snmpd).and_then(|t| t.get("log").cloned())
    )
}

#[test]
fn log_deleted_truncated_replaced_by_a_directory_and_unreadable() {
    assert!(
        support::is_root(),
        "this test runs the agent as nobody and needs root (as CI does)"
    );
    // nobody must reach snmpd's AgentX socket.
    let snmpd = Snmpd::start_with(SnmpdOptions {
        extra_conf: vec!["agentXPerms 0666 0777".into()],
        ..SnmpdOptions::default()
    })
    .unwrap();
    set_mode(snmpd.dir(), 0o755);
    let dir = temp_dir("pfagentx-fault-log-");
    set_mode(dir.path(), 0o755);
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    chown_nobody(&state);
    let logdir = dir.path().join("log");
    fs::create_dir(&logdir).unwrap();
    let log = logdir.join("maillog");
    // Everything ever written to the log, in order: what parse must agree with.
    let all = dir.path().join("all-lines.log");
    let mut gen = LineGenerator::new();
    let mut write = |n: usize| {
        let text = gen.take(n);
        append(&log, &text);
        append(&all, &text);
    };
    write(400);
    let agent = AgentProc::start(
        dir.path(),
        &agent_config(&snmpd, &log, &state),
        RunAs::Nobody,
    );
    let agent_log = || agent.log();
    let check = |what: &str| {
        wait_counters_as_parsed(&snmpd, &all, agent_log);
        wait_health_ok(&snmpd, "log", what, agent_log);
    };
    check("ok at start");

    // 1. Deleted: the agent waits for it and says so; a new file is read whole.
    fs::remove_file(&log).unwrap();
    let row = wait_health_error(&snmpd, "log", "the deleted log", "waiting", agent_log);
    eprintln!("deleted: {row:?}");
    write(300);
    check("ok after the log came back");

    // 2. Truncated (copytruncate): once noticed, the new lines are read from 0.
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    assert!(
        agent.wait_for_log_text("was truncated", Duration::from_secs(10)),
        "truncation not noticed:\n{}",
        tail(&agent.log(), 30)
    );
    write(250);
    check("ok after the truncation");

    // 3. Replaced by a directory.
    fs::remove_file(&log).unwrap();
    fs::create_dir(&log).unwrap();
    let row = wait_health_error(&snmpd, "log", "the directory", "directory", agent_log);
    eprintln!("directory: {row:?}");
    fs::remove_dir(&log).unwrap();
    write(200);
    check("ok after the directory went away");

    // 4. Unreadable: rotated to a new file the agent's user cannot read.
    write(100);
    let rotated = logdir.join("maillog.1");
    fs::rename(&log, &rotated).unwrap();
    // Created unreadable, not made so afterwards: the agent may open a new
    // file as soon as it appears (it did, now and then, before the chmod).
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&log)
        .unwrap();
    write(150);
    let row = wait_row(&snmpd, "log", "permission denied", agent_log, |r| {
        r.status == 2 && r.last_error.to_lowercase().contains("permission denied")
    });
    eprintln!("unreadable: {row:?}");
    // Still serving while the log is unreadable: the rotated file was finished.
    assert!(
        support::workload::served_counters(&snmpd).is_some(),
        "{}",
        log_row(&snmpd)
    );
    set_mode(&log, 0o644);
    check("ok once readable again");
    let row = health_table(&snmpd).unwrap()["log"].clone();
    assert!(row.error_count >= 4, "{row:?}");
}

/// A tmpfs mounted for the test; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    fn remount(&self, opt: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.0)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount {opt}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Fills the file system holding `path` with one file; returns the file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    let _ = f.sync_all();
    filler
}

#[test]
fn state_directory_full_then_read_only() {
    assert!(
        support::is_root(),
        "this test mounts a tmpfs and needs root (as CI does)"
    );
    let snmpd = Snmpd::start().unwrap();
    let (dir, log, mut gen) = temp_log("pfagentx-fault-state-", 300);
    let state = dir.path().join("state");
    let tmpfs = Tmpfs::mount(&state, "64k");
    let mut agent = AgentProc::start(
        dir.path(),
        &agent_config(&snmpd, &log, &state),
        RunAs::Current,
    );
    let agent_log = || fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    wait_counters_as_parsed(&snmpd, &log, agent_log);
    wait_health_ok(&snmpd, "state", "ok", agent_log);

    // Full: saving fails, counting and serving go on.
    let filler = fill(&state);
    append(&log, &gen.take(200));
    let row = wait_health_error(&snmpd, "state", "a full disk", "No space left", agent_log);
    eprintln!("full: {row:?}");
    assert!(
        agent_log().contains("cannot save the state"),
        "{}",
        agent_log()
    );
    wait_counters_as_parsed(&snmpd, &log, agent_log);
    // Space again: the next save works without waiting for new log lines.
    fs::remove_file(&filler).unwrap();
    wait_health_ok(&snmpd, "state", "ok after freeing space", agent_log);

    // Read-only.
    tmpfs.remount("ro");
    append(&log, &gen.take(200));
    let row = wait_health_error(
        &snmpd,
        "state",
        "a read-only file system",
        "Read-only",
        agent_log,
    );
    eprintln!("read-only: {row:?}");
    tmpfs.remount("rw");
    wait_health_ok(&snmpd, "state", "ok after rw", agent_log);

    // A crash now loses nothing: the restart resumes from the last save.
    append(&log, &gen.take(100));
    agent.restart_after_kill();
    wait_counters_as_parsed(&snmpd, &log, agent_log);
    assert!(
        agent_log().contains("resuming counters and log positions"),
        "{}",
        tail(&agent_log(), 30)
    );
}

#[test]
fn agent_sigkilled_during_heavy_ingest_loses_and_doubles_nothing() {
    let _exclusive = support::exclusive();
    let snmpd = Snmpd::start().unwrap();
    let dir = temp_dir("pfagentx-fault-ingest-");
    let log = dir.path().join("maillog");
    fs::write(&log, "").unwrap();
    let mut agent = AgentProc::start(
        dir.path(),
        &agent_config(&snmpd, &log, &dir.path().join("state")),
        RunAs::Current,
    );
    const TOTAL: usize = 100_000;
    // Pre-generate so the writer goes as fast as the disk allows.
    let mut gen = LineGenerator::new();
    let chunks: Vec<String> = (0..TOTAL / 1000).map(|_| gen.take(1000)).collect();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for chunk in chunks {
                append(&log, &chunk);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // Three crashes while the writer runs (about 5 s of writing in total),
    // each after a save (every second), so restarts resume mid-file.
    let mut kills = 0;
    for delay in [1300u64, 1400, 1500] {
        std::thread::sleep(Duration::from_millis(delay));
        agent.restart_after_kill();
        kills += 1;
    }
    writer.join().unwrap();
    // One more right after the writer finished, with lines still unread.
    agent.restart_after_kill();
    kills += 1;
    let lines = fs::read_to_string(&log).unwrap().lines().count();
    assert_eq!(lines, TOTAL);
    let want = parsed_counters(std::slice::from_ref(&log));
    assert_eq!(want["linesRead"], TOTAL as u64);
    wait_counters_equal(&snmpd, &want, Duration::from_secs(40), || agent.log());
    // The kills hit a running ingest with saved state to resume from.
    let resumed = agent
        .log()
        .matches("resuming counters and log positions")
        .count();
    assert!(
        resumed >= 2,
        "resumed {resumed} times:\n{}",
        tail(&agent.log(), 40)
    );
    eprintln!("{kills} SIGKILLs during {TOTAL} lines: counters equal parse: {want:?}");
}

#[test]
fn clock_jump_backwards_changes_no_count() {
    let Some(lib) = faketime_library() else {
        panic!(
            "this test needs libfaketime: run `apt-get install -y faketime` \
             (or `bash .ci/run`, which installs every test dependency)"
        );
    };
    let snmpd = Snmpd::start().unwrap();
    let (dir, log, mut gen) = temp_log("pfagentx-fault-clock-", 300);
    let offset_file = dir.path().join("faketime");
    fs::write(&offset_file, "+0\n").unwrap();
    let config = agent_config(&snmpd, &log, &dir.path().join("state"));
    let agent = AgentProc::start_with_env(
        dir.path(),
        &config,
        &[
            ("LD_PRELOAD", lib.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", offset_file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".into()),
            // Only the wall clock jumps, as with a bad NTP step or `date -s`.
            ("DONT_FAKE_MONOTONIC", "1".into()),
        ],
    );
    wait_counters_as_parsed(&snmpd, &log, || agent.log());
    // Jump the agent's wall clock back by a day, then count more lines.
    fs::write(&offset_file, "-1d\n").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    append(&log, &gen.take(300));
    wait_counters_as_parsed(&snmpd, &log, || agent.log());
    let state = wait_health_ok(&snmpd, "state", "saves after the jump", || agent.log());
    eprintln!("after the jump: {state:?}");
    // The jump took effect: the agent's own log lines are dated yesterday.
    let yesterday = Command::new("date")
        .args(["-u", "-d", "yesterday", "+%Y-%m-%dT"])
        .output()
        .expect("run date");
    let yesterday = String::from_utf8_lossy(&yesterday.stdout)
        .trim()
        .to_string();
    assert!(
        agent.log().lines().any(|l| l.starts_with(&yesterday)),
        "no log line dated {yesterday}: libfaketime had no effect\n{}",
        tail(&agent.log(), 20)
    );
    assert_eq!(
        parsed_counters(std::slice::from_ref(&log))["linesRead"],
        600
    );
}

fn faketime_library() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}
