//! Security properties checked on the running binary and on the source:
//! the agent listens on no socket (TCP, UDP or unix) and starts no shell.
//! (Refusing to run as root is tested in tests/end_to_end/e2e_agent.rs.)

use crate::support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;
use support::agent::ROOT;
use support::snmpd::Snmpd;
use support::workload::{append, AgentProc, LineGenerator, RunAs};

/// Inodes of the sockets open in process `pid`.
fn socket_inodes(pid: i32) -> BTreeSet<u64> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the agent's fd directory")
        .filter_map(Result::ok)
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// (inode, state hex) of every socket in /proc/PID/net/{tcp,tcp6,udp,udp6}.
fn inet_sockets(pid: i32, table: &str) -> Vec<(u64, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(9)?.parse().ok()?, f.get(3)?.to_string()))
        })
        .collect()
}

/// (inode, flags) of every unix socket; flag 0x10000 is __SO_ACCEPTCON (listening).
fn unix_sockets(pid: i32) -> Vec<(u64, u32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/net/unix")).expect("read net/unix");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.get(6)?.parse().ok()?,
                u32::from_str_radix(f.get(3)?, 16).ok()?,
            ))
        })
        .collect()
}

#[test]
fn the_running_agent_listens_on_no_socket() {
    let snmpd = Snmpd::start().unwrap();
    let dir = support::temp_dir("pfagentx-security-");
    let log = dir.path().join("maillog");
    append(&log, &LineGenerator::new().take(100));
    // Every collector that can run without a Postfix instance.
    let config = format!(
        "[agentx]\nsocket = \"unix:{}\"\n\
         [log]\nsource = \"file\"\npath = [\"{}\"]\nstart_at = \"beginning\"\n\
         [state]\ndirectory = \"{}\"\n[queue]\nenabled = false\n",
        snmpd.socket_path().display(),
        log.display(),
        dir.path().join("state").display()
    );
    let agent = AgentProc::start(dir.path(), &config, RunAs::Current);
    let version = format!("{ROOT}.1.9.1.0");
    let out = snmpd
        .wait_for_value(&version, Duration::from_secs(15))
        .unwrap();
    assert!(out.stdout.contains("STRING"), "{out}\n{}", agent.log());

    let pid = agent.pid();
    let ours = socket_inodes(pid);
    assert!(!ours.is_empty(), "the AgentX connection should be a socket");
    for table in ["tcp", "tcp6"] {
        for (inode, state) in inet_sockets(pid, table) {
            // 0A is TCP_LISTEN; the agent should have no TCP socket at all.
            assert!(
                !ours.contains(&inode),
                "agent owns a {table} socket (inode {inode}, state {state})"
            );
        }
    }
    for table in ["udp", "udp6"] {
        for (inode, _) in inet_sockets(pid, table) {
            assert!(!ours.contains(&inode), "agent owns a bound {table} socket");
        }
    }
    let mut connected = 0;
    for (inode, flags) in unix_sockets(pid) {
        if ours.contains(&inode) {
            assert_eq!(
                flags & 0x10000,
                0,
                "agent listens on unix socket inode {inode}"
            );
            connected += 1;
        }
    }
    assert!(
        connected >= 1,
        "no unix socket to snmpd found among {ours:?}"
    );
}

/// Every `Command::new` outside tests, with what it runs. A shell would be
/// `sh`/`bash` or a `-c` script; programs are run directly with argument
/// vectors, so no log or config text is ever interpreted by a shell.
#[test]
fn no_shell_is_ever_started() {
    let mut found = Vec::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            // Unit tests live after `#[cfg(test)]` at the end of a file.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                if line.contains("Command::new(") {
                    found.push((path.clone(), n + 1, line.trim().to_string()));
                }
                for shell in ["\"sh\"", "\"bash\"", "\"/bin/sh\"", "\"/bin/bash\""] {
                    assert!(
                        !line.contains(shell),
                        "{}:{}: mentions a shell: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
    }
    // The only subprocesses: postconf (Postfix settings) and journalctl.
    for (path, line, text) in &found {
        assert!(
            text.contains("Command::new(postconf)")
                || text.contains("Command::new(&self.config.journalctl)"),
            "{}:{line}: unexpected subprocess: {text}",
            path.display()
        );
    }
    assert!(
        found.len() >= 2,
        "expected the postconf and journalctl call sites: {found:?}"
    );
}
