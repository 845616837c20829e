//! The Debian package installs and works on this machine (root only):
//! build it with packaging/build-deb.sh (or take POSTFIX_AGENTX_DEB), `dpkg
//! -i`, check the user, groups and files, run the INSTALLED binary as the
//! packaged user against a private snmpd whose socket only that user's
//! group may use, walk our subtree, then `dpkg -r` (which must stop an agent
//! still running as the package's user) and `dpkg --purge`.
//!
//! systemd is not PID 1 on the test machine, so the unit is not started;
//! `systemd-analyze verify` checks the installed unit instead.

use crate::support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::agent::ROOT;
use support::snmpd::{Snmpd, SnmpdOptions};
use support::{is_root, require_program, wait_until};

const USER: &str = "postfix-agentx";
const INSTALLED_BIN: &str = "/usr/bin/postfix-agentx";

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn installed() -> bool {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "postfix-agentx"]));
    String::from_utf8_lossy(&out.stdout).contains("install ok installed")
}

/// Purges the package if a failed test left it installed.
struct PurgeOnDrop;

impl Drop for PurgeOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "postfix-agentx"])
            .output();
    }
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn build_deb() -> PathBuf {
    if let Some(deb) = std::env::var_os("POSTFIX_AGENTX_DEB") {
        return PathBuf::from(deb);
    }
    let probe = run(Command::new("cargo").args(["deb", "--version"]));
    assert!(
        probe.status.success(),
        "this test builds the .deb with cargo-deb: run `cargo install cargo-deb` \
         (or set POSTFIX_AGENTX_DEB to a built package)"
    );
    let out = run(Command::new("bash")
        .arg("packaging/build-deb.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    assert!(out.status.success(), "build-deb.sh: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout.lines().last().unwrap_or("").trim();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    assert!(
        path.is_file(),
        "build-deb.sh printed no .deb: {}",
        text(&out)
    );
    path
}

/// Processes whose executable is the installed binary (also once deleted).
fn installed_agent_pids() -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(exe) = fs::read_link(entry.path().join("exe")) {
            let exe = exe.to_string_lossy().to_string();
            if exe == INSTALLED_BIN || exe == format!("{INSTALLED_BIN} (deleted)") {
                pids.push(pid);
            }
        }
    }
    pids
}

fn start_installed_agent(config: &Path, log: &Path) -> Guard {
    let log = fs::File::create(log).unwrap();
    let child = Command::new(require_program("setpriv", "util-linux"))
        .args([
            &format!("--reuid={USER}"),
            &format!("--regid={USER}"),
            "--init-groups",
            INSTALLED_BIN,
            "run",
            "-c",
        ])
        .arg(config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Guard(child)
}

#[test]
fn deb_installs_runs_as_its_user_and_removes_cleanly() {
    assert!(
        is_root(),
        "installing a package needs root; run the tests as root, as .ci/run does"
    );
    require_program("dpkg", "dpkg");
    require_program("adduser", "adduser");
    let deb = build_deb();
    let _purge = PurgeOnDrop;

    let out = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(out.status.success(), "dpkg -i: {}", text(&out));
    assert!(installed());

    // The user, its primary group and the supplementary groups that exist here.
    let out = run(Command::new("id").args(["-nG", USER]));
    assert!(out.status.success(), "no user {USER}: {}", text(&out));
    let groups: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    for g in [USER, "adm", "postdrop", "systemd-journal"] {
        let exists = run(Command::new("getent").args(["group", g]))
            .status
            .success();
        if exists {
            assert!(
                groups.iter().any(|x| x == g),
                "{USER} not in {g}: {groups:?}"
            );
        }
    }
    let passwd =
        String::from_utf8_lossy(&run(Command::new("getent").args(["passwd", USER])).stdout)
            .to_string();
    assert!(passwd.contains(":/var/lib/postfix-agentx:"), "{passwd}");
    assert!(passwd.trim_end().ends_with("nologin"), "{passwd}");

    // Files in place; the configuration is a conffile.
    for path in [
        INSTALLED_BIN,
        "/usr/share/snmp/mibs/POSTFIX-MIB.txt",
        "/etc/postfix-agentx/postfix-agentx.toml",
        "/lib/systemd/system/postfix-agentx.service",
        "/usr/share/man/man1/postfix-agentx.1.gz",
        "/usr/share/man/man1/postfix-agentx-run.1.gz",
        "/etc/snmp/snmpd.conf.d/postfix-agentx.conf",
        "/usr/share/doc/postfix-agentx/examples/directory-queue.conf",
        "/usr/share/doc/postfix-agentx/templates/zabbix/postfix-agentx_zabbix_6.0.yaml",
        "/usr/share/doc/postfix-agentx/templates/prometheus/snmp.yml",
        "/usr/share/doc/postfix-agentx/templates/librenms/postfix-agentx.yaml",
    ] {
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    let conffiles = fs::read_to_string("/var/lib/dpkg/info/postfix-agentx.conffiles").unwrap();
    assert!(
        conffiles.contains("/etc/postfix-agentx/postfix-agentx.toml"),
        "{conffiles}"
    );
    // The installed default configuration is valid.
    let out = run(Command::new(INSTALLED_BIN).args(["check-config"]));
    assert!(out.status.success(), "{}", text(&out));
    // The installed unit verifies, man page reference included.
    let out = run(Command::new(require_program("systemd-analyze", "systemd"))
        .args(["verify", "/lib/systemd/system/postfix-agentx.service"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("postfix-agentx"),
        "{}",
        text(&out)
    );

    // A private snmpd whose socket only group postfix-agentx may use.
    let snmpd = Snmpd::start_with(SnmpdOptions {
        extra_conf: vec![format!("agentXPerms 0660 0755 root {USER}")],
        ..SnmpdOptions::default()
    })
    .unwrap();
    fs::set_permissions(snmpd.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let meta = fs::metadata(snmpd.socket_path()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let work = support::temp_dir("pfagentx-deb-");
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let state = work.path().join("state");
    fs::create_dir(&state).unwrap();
    let out = run(Command::new("chown")
        .arg(format!("{USER}:{USER}"))
        .arg(&state));
    assert!(out.status.success(), "{}", text(&out));
    let config = work.path().join("agent.toml");
    fs::write(
        &config,
        format!(
            "[agentx]\nsocket = \"unix:{}\"\nreconnect_max_seconds = 1\n\
             [state]\ndirectory = \"{}\"\n\
             [log]\nenabled = false\n[queue]\nenabled = false\n",
            snmpd.socket_path().display(),
            state.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();

    let log = work.path().join("agent.log");
    let agent = start_installed_agent(&config, &log);
    let version = format!("{ROOT}.1.9.1.0");
    let served = wait_until(Duration::from_secs(20), || {
        snmpd
            .tool_with("snmpget", &["-t", "0.5", "-r", "0"], &[&version])
            .map(|o| o.stdout.contains("STRING"))
            .unwrap_or(false)
    });
    assert!(
        served,
        "installed agent not served\nagent log:\n{}\nsnmpd log:\n{}",
        fs::read_to_string(&log).unwrap_or_default(),
        snmpd.log()
    );
    let walk = snmpd.walk(ROOT).unwrap();
    assert!(walk.success(), "{walk}");
    assert!(walk.oids().len() >= 5, "{walk}");
    // It runs as the package's user, and the process table works unprivileged.
    let status = fs::read_to_string(format!("/proc/{}/status", agent.0.id())).unwrap();
    let uid = String::from_utf8_lossy(&run(Command::new("id").args(["-u", USER])).stdout)
        .trim()
        .to_string();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid)),
        "{status}"
    );
    // The process collector publishes after its first scan.
    let names = format!("{ROOT}.1.3.10.1.2");
    let listed = wait_until(Duration::from_secs(30), || {
        snmpd
            .walk(&names)
            .map(|w| w.stdout.contains("\"master\""))
            .unwrap_or(false)
    });
    assert!(
        listed,
        "{}\nagent log:\n{}",
        snmpd
            .walk(&names)
            .map(|w| w.to_string())
            .unwrap_or_default(),
        fs::read_to_string(&log).unwrap_or_default()
    );
    drop(agent);
    assert!(
        wait_until(Duration::from_secs(5), || installed_agent_pids().is_empty()),
        "agent still running: {:?}",
        installed_agent_pids()
    );

    // dpkg -r stops an agent that still runs as the package's user (prerm).
    let _second = start_installed_agent(&config, &work.path().join("agent2.log"));
    assert!(wait_until(Duration::from_secs(5), || {
        !installed_agent_pids().is_empty()
    }));
    let out = run(Command::new("dpkg").args(["-r", "postfix-agentx"]));
    assert!(out.status.success(), "dpkg -r: {}", text(&out));
    assert!(!installed());
    assert!(
        wait_until(Duration::from_secs(5), || installed_agent_pids().is_empty()),
        "postfix-agentx processes left after dpkg -r: {:?}",
        installed_agent_pids()
    );
    assert!(!Path::new(INSTALLED_BIN).exists());
    // Removed, not purged: the user stays so a reinstall keeps the counters.
    assert!(run(Command::new("getent").args(["passwd", USER]))
        .status
        .success());

    let out = run(Command::new("dpkg").args(["--purge", "postfix-agentx"]));
    assert!(out.status.success(), "dpkg --purge: {}", text(&out));
    assert!(!run(Command::new("getent").args(["passwd", USER]))
        .status
        .success());
    assert!(!run(Command::new("getent").args(["group", USER]))
        .status
        .success());
    assert!(!Path::new("/var/lib/postfix-agentx").exists());
    assert!(!Path::new("/etc/postfix-agentx/postfix-agentx.toml").exists());
}
