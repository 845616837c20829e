//! Hostile local conditions, on the real binary run as an unprivileged user
//! (nobody; root would ignore every permission): special files at the log's
//! paths, a state directory or state file that someone else can change, an
//! unreadable state file, a config file others can write, and saved counters
//! about to wrap. Each rule is listed in docs/security.md with its test here.

use crate::support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::agent::{BIN, ROOT};
use support::snmpd::{Snmpd, SnmpdOptions};
use support::workload::{
    agent_as_nobody, append, chown_nobody, health_table, parsed_counters, served_counters,
    set_mode, tail, wait_counters_equal, wait_health, AgentProc, LineGenerator, RunAs,
};

/// EX_CONFIG, what a permanent refusal must exit with (the systemd unit's
/// RestartPreventExitStatus=78).
const EX_CONFIG: i32 = 78;

fn require_root() {
    assert!(
        support::is_root(),
        "this test runs the agent as nobody and plants files of other users: it needs root \
         (as CI has)"
    );
}

/// A private directory that nobody can enter (mode 0755).
fn open_temp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = support::temp_dir(prefix);
    set_mode(dir.path(), 0o755);
    dir
}

fn chown(path: &Path, owner: &str) {
    let out = Command::new("chown")
        .arg(owner)
        .arg(path)
        .output()
        .expect("run chown");
    assert!(out.status.success(), "chown {owner} {}", path.display());
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL");
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// `postfix-agentx run -c CONFIG` as nobody; waits up to 15 s for it to
/// exit and returns (exit code, stderr). Panics if it keeps running.
fn run_as_nobody_until_exit(config: &Path) -> (Option<i32>, String) {
    let mut child = agent_as_nobody()
        .args(["run", "-c"])
        .arg(config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start postfix-agentx as nobody");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the agent") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child
                .wait_with_output()
                .expect("collect the agent's output");
            panic!(
                "the agent kept running instead of refusing to start:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child
        .wait_with_output()
        .expect("collect the agent's output");
    (
        status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config for nobody in `dir` (root-owned, mode 0644) with its state in
/// `state`; the AgentX socket need not exist (a refusal comes first).
fn refusal_config(dir: &Path, state: &Path) -> PathBuf {
    let log = dir.join("maillog");
    fs::write(&log, "").expect("write the log");
    let config = dir.join("agent.toml");
    fs::write(
        &config,
        format!(
            "[agentx]\nsocket = \"unix:{}/no-master\"\n\
             [log]\nsource = \"file\"\npath = [\"{}\"]\n\
             [state]\ndirectory = \"{}\"\n\
             [queue]\nenabled = false\n[process]\nenabled = false\n\
             [probes]\nenabled = false\n[certs]\nenabled = false\n",
            dir.display(),
            log.display(),
            state.display()
        ),
    )
    .expect("write the config");
    set_mode(&config, 0o644);
    config
}

fn assert_refused(config: &Path, needles: &[&str], what: &str) -> String {
    let (code, stderr) = run_as_nobody_until_exit(config);
    assert_eq!(
        code,
        Some(EX_CONFIG),
        "{what}: expected exit code 78 (EX_CONFIG)\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{what}: {needle:?} missing from\n{stderr}"
        );
    }
    stderr
}

/// `postfix-agentx dump --format json -c CONFIG`, as nobody or as root.
fn dump_json(config: &Path, as_nobody: bool) -> String {
    let mut cmd = if as_nobody {
        agent_as_nobody()
    } else {
        Command::new(BIN)
    };
    let out = cmd
        .args(["dump", "--format", "json", "-c"])
        .arg(config)
        .env("NO_COLOR", "1")
        .output()
        .expect("run postfix-agentx dump");
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A state file as a forger would write it: delivered = 999999.
const FORGED_STATE: &str = r#"{"format":"postfix-agentx-state","version":1,"savedAt":0,"data":{"accumulator":{"counters":{"delivered":999999}},"discontinuityTime":0}}"#;

#[test]
fn state_directory_or_file_that_others_can_change_is_refused_with_exit_78() {
    require_root();
    let dir = open_temp_dir("pfagentx-hostile-state-");

    // 1. The issue's case: a sticky world-writable directory with a state
    // file planted by another user.
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    set_mode(&state, 0o1777);
    let planted = state.join("log-state.json");
    fs::write(&planted, FORGED_STATE).unwrap();
    chown(&planted, "daemon");
    let config = refusal_config(dir.path(), &state);
    let stderr = assert_refused(
        &config,
        &[
            &state.display().to_string(),
            "mode 1777",
            "uid 0 (root)",
            &format!("chown nobody {}", state.display()),
        ],
        "world-writable state directory",
    );
    eprintln!("1777: {stderr}");
    assert_eq!(fs::read_to_string(&planted).unwrap(), FORGED_STATE);
    // `dump` (as the agent's user, and as root) does not show the forgery
    // either: its state row says why.
    for as_nobody in [true, false] {
        let out = dump_json(&config, as_nobody);
        assert!(
            !out.contains("999999"),
            "dump shows the forged count:\n{out}"
        );
        assert!(
            out.contains("saved counters not shown") && out.contains("mode 1777"),
            "dump (as nobody: {as_nobody}) does not say why:\n{out}"
        );
    }

    // 2. A directory of ours, but the state file belongs to another user.
    chown(&state, "nobody");
    set_mode(&state, 0o755);
    assert_refused(
        &config,
        &["state file", "belongs to another user", "daemon"],
        "state file of another user",
    );

    // 3. The state file is a symlink (to a forgery elsewhere).
    fs::remove_file(&planted).unwrap();
    let elsewhere = dir.path().join("forged.json");
    fs::write(&elsewhere, FORGED_STATE).unwrap();
    chown(&elsewhere, "nobody");
    std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
    assert_refused(&config, &["symbolic link"], "symlinked state file");
    fs::remove_file(&planted).unwrap();

    // 4. The state directory is a symlink.
    let linked = dir.path().join("linked-state");
    std::os::unix::fs::symlink(&state, &linked).unwrap();
    let config = refusal_config(dir.path(), &linked);
    assert_refused(
        &config,
        &["state directory", "symbolic link"],
        "symlinked state directory",
    );

    // 5. A group-writable state directory of another unprivileged user.
    let theirs = dir.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    chown(&theirs, "daemon");
    set_mode(&theirs, 0o775);
    let config = refusal_config(dir.path(), &theirs);
    assert_refused(
        &config,
        &["state directory", "belongs to another user"],
        "state directory of another user",
    );
}

#[test]
fn unreadable_state_file_is_refused_and_never_replaced() {
    require_root();
    let dir = open_temp_dir("pfagentx-hostile-unreadable-");
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    chown_nobody(&state);
    let file = state.join("log-state.json");
    // Counters the agent cannot read: root's, mode 0600.
    fs::write(&file, FORGED_STATE).unwrap();
    set_mode(&file, 0o600);
    let before = fs::metadata(&file).unwrap();
    let config = refusal_config(dir.path(), &state);
    let stderr = assert_refused(
        &config,
        &[
            &file.display().to_string(),
            "cannot be read",
            "Permission denied",
            &format!("chown nobody {}", file.display()),
        ],
        "unreadable state file",
    );
    eprintln!("unreadable: {stderr}");
    let after = fs::metadata(&file).unwrap();
    assert_eq!(
        (after.ino(), after.mtime(), after.mtime_nsec()),
        (before.ino(), before.mtime(), before.mtime_nsec()),
        "the unreadable state file was replaced"
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), FORGED_STATE);
}

#[test]
fn config_file_that_others_can_change_is_refused_with_exit_78() {
    require_root();
    let dir = open_temp_dir("pfagentx-hostile-config-");
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    chown_nobody(&state);
    let config = refusal_config(dir.path(), &state);
    set_mode(&config, 0o664);
    assert_refused(
        &config,
        &["configuration file", "mode 0664", "chmod go-w"],
        "group-writable config",
    );
    set_mode(&config, 0o644);
    chown(&config, "daemon");
    assert_refused(
        &config,
        &["configuration file", "belongs to another user", "daemon"],
        "config of another user",
    );
    // Root's (or the agent's own) and not writable by others: accepted. The
    // agent then runs (its master is absent), so it is stopped by the helper.
    chown(&config, "root");
    let (code, stderr) = run_as_nobody_briefly(&config);
    assert_eq!(code, None, "a good config was refused:\n{stderr}");
}

/// Runs the agent as nobody for two seconds: Some(exit code) if it exited by
/// itself, None if it was still running (then it is killed).
fn run_as_nobody_briefly(config: &Path) -> (Option<i32>, String) {
    let mut child = agent_as_nobody()
        .args(["run", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start postfix-agentx as nobody");
    std::thread::sleep(Duration::from_secs(2));
    let code = match child.try_wait().expect("wait for the agent") {
        Some(status) => Some(status.code().unwrap_or(-1)),
        None => {
            let _ = child.kill();
            None
        }
    };
    let out = child
        .wait_with_output()
        .expect("collect the agent's output");
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// snmpd whose AgentX socket nobody may use.
fn snmpd_for_nobody() -> Snmpd {
    let snmpd = Snmpd::start_with(SnmpdOptions {
        extra_conf: vec!["agentXPerms 0666 0777".into()],
        ..SnmpdOptions::default()
    })
    .expect("start snmpd");
    set_mode(snmpd.dir(), 0o755);
    snmpd
}

fn follow_config(snmpd: &Snmpd, log: &Path, state: &Path) -> String {
    format!(
        "[agentx]\nsocket = \"unix:{}\"\nreconnect_max_seconds = 1\n\
         [log]\nsource = \"file\"\npath = [\"{}\"]\nstart_at = \"beginning\"\n\
         [state]\ndirectory = \"{}\"\nsave_interval_seconds = 1\n\
         [queue]\nenabled = false\n[process]\nenabled = false\n\
         [probes]\nenabled = false\n[certs]\nenabled = false\n",
        snmpd.socket_path().display(),
        log.display(),
        state.display()
    )
}

/// SIGTERM; asserts the agent exits within 5 s (a collector thread stuck in
/// a blocking open would keep it from joining).
fn stop_promptly(agent: &mut AgentProc) {
    let pid = agent.pid();
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let exited = support::wait_until(Duration::from_secs(5), || !agent.is_running());
    assert!(
        exited,
        "SIGTERM did not stop the agent within 5 s\n{}",
        tail(&agent.log(), 40)
    );
    agent.stop();
}

#[test]
fn fifo_at_the_log_path_or_a_rotated_name_never_blocks_the_collector() {
    require_root();
    let snmpd = snmpd_for_nobody();
    let dir = open_temp_dir("pfagentx-hostile-fifo-");
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    chown_nobody(&state);
    let logdir = dir.path().join("log");
    fs::create_dir(&logdir).unwrap();
    let log = logdir.join("mail.log");
    let all = dir.path().join("all-lines.log");
    let mut gen = LineGenerator::new();
    let mut write = |n: usize| {
        let text = gen.take(n);
        append(&log, &text);
        append(&all, &text);
    };
    write(300);
    let config = follow_config(&snmpd, &log, &state);
    let mut agent = AgentProc::start(dir.path(), &config, RunAs::Nobody);
    let agent_log = || fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    let want = || parsed_counters(std::slice::from_ref(&all));
    wait_counters_equal(&snmpd, &want(), Duration::from_secs(20), agent_log);
    // SIGTERM saves the state with the log's position.
    stop_promptly(&mut agent);

    // 1. Rotated while stopped, and a FIFO among the rotated names, sorted
    // before the real one: finding the saved file must not open it blocking.
    fs::rename(&log, logdir.join("mail.log.1")).unwrap();
    mkfifo(&logdir.join("mail.log.0"));
    mkfifo(&logdir.join("mail.log-0"));
    write(200);
    let mut agent = AgentProc::start(dir.path(), &config, RunAs::Nobody);
    wait_counters_equal(&snmpd, &want(), Duration::from_secs(20), agent_log);
    wait_health(
        &snmpd,
        "log",
        Duration::from_secs(10),
        "ok with FIFOs among the rotated names",
        agent_log,
        |r| r.status == 1,
    );
    // Each planted FIFO is named in a warning: someone who can write the
    // log directory put it there.
    for name in ["mail.log.0", "mail.log-0"] {
        let fifo = logdir.join(name).display().to_string();
        let warned = agent_log().lines().any(|l| {
            l.contains("WARN")
                && l.contains(&format!("ignored {fifo} as a rotated log"))
                && l.contains("a FIFO")
        });
        assert!(warned, "no warning names {fifo}:\n{}", agent_log());
    }
    stop_promptly(&mut agent);

    // 2. A FIFO at the log path itself: a health error naming it; the agent
    // keeps serving what it counted and stops on SIGTERM.
    fs::rename(&log, logdir.join("mail.log.2")).unwrap();
    mkfifo(&log);
    let mut agent = AgentProc::start(dir.path(), &config, RunAs::Nobody);
    let row = wait_health(
        &snmpd,
        "log",
        Duration::from_secs(15),
        "an error for the FIFO",
        agent_log,
        |r| r.status == 2 && r.last_error.contains("FIFO"),
    );
    assert!(
        row.last_error.contains(&log.display().to_string()),
        "{row:?}"
    );
    // Still serving everything counted, the rest of mail.log.2 included.
    wait_counters_equal(&snmpd, &want(), Duration::from_secs(20), agent_log);
    wait_health(
        &snmpd,
        "state",
        Duration::from_secs(10),
        "the state row ok",
        agent_log,
        |r| r.status == 1,
    );
    // Once the FIFO is replaced by a log again, counting resumes.
    fs::remove_file(&log).unwrap();
    write(100);
    wait_counters_equal(&snmpd, &want(), Duration::from_secs(20), agent_log);
    stop_promptly(&mut agent);
}

/// `ROOT.1.9.3.0` (postfixCounterDiscontinuityTime) as its year.
fn discontinuity_year(snmpd: &Snmpd) -> Option<u16> {
    let oid = format!("{ROOT}.1.9.3.0");
    let out = snmpd.tool_with("snmpget", &["-Ox"], &[&oid]).ok()?;
    let hex = out
        .value_of(&oid)?
        .strip_prefix("Hex-STRING: ")?
        .to_string();
    let bytes: Vec<u8> = hex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

#[test]
fn state_row_from_the_start_and_counters_near_2_64_restart_with_a_new_discontinuity() {
    let snmpd = Snmpd::start().expect("start snmpd");
    let dir = support::temp_dir("pfagentx-hostile-wrap-");
    let log = dir.path().join("maillog");
    let mut gen = LineGenerator::new();
    append(&log, &gen.take(200));
    let state = dir.path().join("state");
    // No periodic save: the state row must be there before the first one.
    let config = follow_config(&snmpd, &log, &state)
        .replace("save_interval_seconds = 1", "save_interval_seconds = 3600");
    let mut agent = AgentProc::start(dir.path(), &config, RunAs::Current);
    let agent_log = || fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    wait_counters_equal(
        &snmpd,
        &parsed_counters(std::slice::from_ref(&log)),
        Duration::from_secs(20),
        agent_log,
    );
    let table = health_table(&snmpd).unwrap_or_default();
    let row = table.get("state");
    assert!(
        row.is_some_and(|r| r.status == 1),
        "no ok state row before the first save: {table:#?}"
    );
    agent.stop();

    // Saved counters just below 2^64, from long ago.
    let file = state.join("log-state.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&file).expect("saved state")).unwrap();
    json["data"]["accumulator"]["counters"]["delivered"] = serde_json::json!(u64::MAX - 1);
    json["data"]["discontinuityTime"] = serde_json::json!(1_000);
    fs::write(&file, serde_json::to_vec(&json).unwrap()).unwrap();
    append(&log, &gen.take(200));

    let _agent = AgentProc::start(dir.path(), &config, RunAs::Current);
    let mut last = None;
    let ok = support::wait_until(Duration::from_secs(20), || {
        last = served_counters(&snmpd).and_then(|c| c.get("delivered").copied());
        last.is_some_and(|d| d > 0 && d < 1_000)
    });
    assert!(
        ok,
        "delivered should restart from zero, got {last:?}\n{}",
        tail(&agent_log(), 40)
    );
    let year = discontinuity_year(&snmpd);
    assert!(
        year.is_some_and(|y| y >= 2024),
        "the discontinuity time did not move: year {year:?}"
    );
    assert!(
        agent_log().contains("near 2^64"),
        "{}",
        tail(&agent_log(), 40)
    );
}
