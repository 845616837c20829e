//! The shipped deployment files work as documented: the systemd unit passes
//! `systemd-analyze verify`, and the snmpd snippet, loaded into a real
//! snmpd, lets the agent (as an unprivileged user in the snippet's group)
//! register, shows our subtree through the view to v2c and to the SNMPv3
//! authPriv user, and keeps users outside the group off the AgentX socket.

use crate::support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::agent::{BIN, ROOT};
use support::snmpd::{find_program, free_udp_port, INSTALL_HINT};
use support::{is_root, require_program, wait_until};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn packaging(file: &str) -> PathBuf {
    Path::new(MANIFEST).join("packaging").join(file)
}

fn systemd_analyze() -> PathBuf {
    require_program("systemd-analyze", "systemd")
}

/// `systemd-analyze verify` on a copy of the unit whose ExecStart names the
/// freshly built binary (verify insists that the program exists), with man
/// page lookups off (the page is installed only by the package).
fn verify_unit(dropins: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let unit = fs::read_to_string(packaging("postfix-agentx.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/postfix-agentx "),
        "{unit}"
    );
    let unit = unit.replace(
        "ExecStart=/usr/bin/postfix-agentx",
        &format!("ExecStart={BIN}"),
    );
    let path = dir.path().join("postfix-agentx.service");
    fs::write(&path, unit).unwrap();
    if !dropins.is_empty() {
        let d = dir.path().join("postfix-agentx.service.d");
        fs::create_dir(&d).unwrap();
        for name in dropins {
            fs::copy(packaging(name), d.join(name)).unwrap();
        }
    }
    Command::new(systemd_analyze())
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap()
}

fn assert_clean(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings: treat any output as failure.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{stderr}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn systemd_unit_verifies() {
    assert_clean(&verify_unit(&[]));
    assert_clean(&verify_unit(&["directory-queue.conf"]));
}

#[test]
fn systemd_unit_keeps_its_security_settings() {
    let unit = fs::read_to_string(packaging("postfix-agentx.service")).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "User=postfix-agentx",
        "Group=postfix-agentx",
        "RestartPreventExitStatus=78",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=postfix-agentx",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
    ] {
        assert!(lines.contains(&want), "unit lacks `{want}`");
    }
    // The process table reads other users' /proc entries.
    assert!(!lines.iter().any(|l| l.starts_with("ProtectProc=")));
    assert!(!lines.iter().any(|l| l.starts_with("ProcSubset=")));
    // And `systemd-analyze security` rates it well (lower is better).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postfix-agentx.service");
    fs::write(&path, unit.replace("/usr/bin/postfix-agentx", BIN)).unwrap();
    let out = Command::new(systemd_analyze())
        .args(["security", "--offline=yes", "--threshold=25"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exposure above 2.5: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const V3_USER: &str = "postfixmon";
const V3_AUTH: &str = "auth-pass-phrase";
const V3_PRIV: &str = "priv-pass-phrase";

/// snmpd with Debian's default access rules plus the shipped snippet,
/// adapted to a private socket path and a group that exists here.
struct SnippetSnmpd {
    dir: tempfile::TempDir,
    port: u16,
    _child: Guard,
}

impl SnippetSnmpd {
    fn start(group: &str) -> SnippetSnmpd {
        find_program("snmpd").unwrap();
        find_program("snmpwalk").unwrap();
        let dir = support::temp_dir("pfagentx-snippet-");
        // The agent runs unprivileged and must reach the socket below.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let persist = dir.path().join("persist");
        fs::create_dir(&persist).unwrap();
        let snippet = fs::read_to_string(packaging("snmpd.conf.d/postfix-agentx.conf")).unwrap();
        let sock = dir.path().join("agentx/master");
        assert!(snippet.contains("agentXSocket unix:/run/agentx/master\n"));
        assert!(snippet.contains(" postfix-agentx\n"));
        let snippet = snippet
            .replace(
                "unix:/run/agentx/master",
                &format!("unix:{}", sock.display()),
            )
            .replace(" postfix-agentx\n", &format!(" {group}\n"));
        // Debian's stock access rules (/etc/snmp/snmpd.conf), minus its
        // agentaddress: the port is given on the command line.
        let conf = format!(
            "view systemonly included .1.3.6.1.2.1.1\n\
             view systemonly included .1.3.6.1.2.1.25.1\n\
             rocommunity public 127.0.0.1 -V systemonly\n\
             {snippet}"
        );
        fs::write(dir.path().join("snmpd.conf"), conf).unwrap();
        let mut last_log = String::new();
        let mut dir = dir;
        for _ in 0..5 {
            // The v3 user, as the snippet says: createUser in the persistent
            // file (snmpd replaces it with a usmUser line once it has run).
            fs::write(
                persist.join("snmpd.conf"),
                format!("createUser {V3_USER} SHA \"{V3_AUTH}\" AES \"{V3_PRIV}\"\n"),
            )
            .unwrap();
            let port = free_udp_port().unwrap();
            let log = fs::File::create(dir.path().join("snmpd.log")).unwrap();
            let child = Command::new(find_program("snmpd").unwrap())
                // No -C/-c: snmpd reads SNMPCONFPATH/snmpd.conf and the
                // persistent snmpd.conf (with createUser), as installed.
                .args(["-f", "-Lo", "-I", "-smux"])
                .arg(format!("udp:127.0.0.1:{port}"))
                // Debian's default path ends with the persistent directory.
                .env(
                    "SNMPCONFPATH",
                    format!("{}:{}", dir.path().display(), persist.display()),
                )
                .env("SNMP_PERSISTENT_DIR", &persist)
                .env("MIBS", "")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start snmpd ({INSTALL_HINT}): {e}"));
            let s = SnippetSnmpd {
                dir,
                port,
                _child: Guard(child),
            };
            let up = wait_until(Duration::from_secs(10), || {
                s.v2c("snmpget", "1.3.6.1.2.1.1.3.0").status.success() && sock.exists()
            });
            if up {
                return s;
            }
            last_log = s.log();
            dir = s.dir;
        }
        panic!("snmpd with the snippet did not start; log:\n{last_log}");
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("agentx/master")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("snmpd.log")).unwrap_or_default()
    }

    fn address(&self) -> String {
        format!("udp:127.0.0.1:{}", self.port)
    }

    fn v2c(&self, tool: &str, oid: &str) -> Output {
        Command::new(tool)
            .args([
                "-v2c", "-c", "public", "-On", "-m", "", "-t", "1", "-r", "1",
            ])
            .arg(self.address())
            .arg(oid)
            .env("MIBS", "")
            .output()
            .unwrap()
    }

    fn v3(&self, auth: &str, oid: &str) -> Output {
        Command::new("snmpwalk")
            .args([
                "-v3", "-u", V3_USER, "-l", "authPriv", "-a", "SHA", "-A", auth,
            ])
            .args([
                "-x", "AES", "-X", V3_PRIV, "-On", "-m", "", "-t", "1", "-r", "0",
            ])
            .arg(self.address())
            .arg(oid)
            .env("MIBS", "")
            .env("SNMP_PERSISTENT_DIR", self.dir.path().join("client"))
            .output()
            .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the built agent as `user:group` (no other groups), optionally with
/// the socket's directory mounted read-only as under ProtectSystem=strict.
fn start_agent_as(
    user: &str,
    group: &str,
    socket: &Path,
    read_only: Option<&Path>,
) -> (Guard, tempfile::TempDir) {
    let work = support::temp_dir("pfagentx-asuser-");
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let config = work.path().join("agent.toml");
    fs::write(
        &config,
        format!(
            "[agentx]\nsocket = \"unix:{}\"\nreconnect_max_seconds = 1\n\
             [state]\ndirectory = \"{}/state\"\n\
             [log]\nenabled = false\n[queue]\nenabled = false\n[process]\nenabled = false\n",
            socket.display(),
            work.path().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let log = fs::File::create(work.path().join("agent.log")).unwrap();
    let setpriv = require_program("setpriv", "util-linux");
    let mut cmd = match read_only {
        Some(dir) => {
            let mut c = Command::new(require_program("unshare", "util-linux"));
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(
                    "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\" \"$1\" \
                     && shift && exec \"$@\"",
                )
                .arg("sh")
                .arg(dir)
                .arg(setpriv);
            c
        }
        None => Command::new(setpriv),
    };
    cmd.arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .arg("--clear-groups")
        .arg(BIN)
        .arg("run")
        .arg("-c")
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    (Guard(cmd.spawn().unwrap()), work)
}

fn agent_log(work: &tempfile::TempDir) -> String {
    fs::read_to_string(work.path().join("agent.log")).unwrap_or_default()
}

#[test]
fn snmpd_snippet_view_group_socket_and_v3_user() {
    assert!(
        is_root(),
        "this test switches users (setpriv) and needs root, as .ci/run runs it"
    );
    let snmpd = SnippetSnmpd::start("nogroup");
    let sock = snmpd.socket();
    // agentXPerms: socket 0660 in the snippet's group; directory created 0755.
    let meta = fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let dir_mode = fs::metadata(sock.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o755);

    // A user outside the group is refused by the socket's permissions.
    let (_outsider, outsider_work) = start_agent_as("daemon", "daemon", &sock, None);
    assert!(
        wait_until(Duration::from_secs(10), || agent_log(&outsider_work)
            .contains("Permission denied")),
        "agent outside the group: {}",
        agent_log(&outsider_work)
    );

    // In the group, with the socket's directory read-only (ProtectSystem=strict).
    let (_agent, work) = start_agent_as("nobody", "nogroup", &sock, Some(snmpd.dir.path()));
    let version = format!("{ROOT}.1.9.1.0");
    let served = wait_until(Duration::from_secs(15), || {
        String::from_utf8_lossy(&snmpd.v2c("snmpget", &version).stdout).contains("STRING")
    });
    assert!(
        served,
        "agent not served\nagent log:\n{}\nsnmpd log:\n{}",
        agent_log(&work),
        snmpd.log()
    );

    // v2c public through Debian's "systemonly" view plus the snippet's line.
    let walk = snmpd.v2c("snmpwalk", ROOT);
    let walked = String::from_utf8_lossy(&walk.stdout).to_string();
    assert!(
        walked
            .lines()
            .filter(|l| l.starts_with(&format!(".{ROOT}.")))
            .count()
            >= 5,
        "{}",
        text(&walk)
    );
    // The view still restricts: the interfaces group stays hidden.
    let hidden = snmpd.v2c("snmpwalk", "1.3.6.1.2.1.2");
    assert!(
        !String::from_utf8_lossy(&hidden.stdout).contains(".1.3.6.1.2.1.2."),
        "{}",
        text(&hidden)
    );

    // The SNMPv3 authPriv user reads our subtree...
    let v3 = snmpd.v3(V3_AUTH, ROOT);
    assert!(v3.status.success(), "{}", text(&v3));
    let v3_text = String::from_utf8_lossy(&v3.stdout).to_string();
    assert!(
        v3_text.contains(&format!(".{version} = STRING")),
        "{}",
        text(&v3)
    );
    // ...and nothing outside its view...
    let v3_if = snmpd.v3(V3_AUTH, "1.3.6.1.2.1.2");
    assert!(
        !String::from_utf8_lossy(&v3_if.stdout).contains(".1.3.6.1.2.1.2."),
        "{}",
        text(&v3_if)
    );
    // ...and a wrong passphrase reads nothing.
    let bad = snmpd.v3("wrong-pass-phrase", ROOT);
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(!String::from_utf8_lossy(&bad.stdout).contains(ROOT));
}

#[test]
fn man_pages_are_generated_for_every_subcommand_and_the_generator_is_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for page in ["", "-run", "-check-config", "-dump", "-parse", "-mib"] {
        let path = dir.path().join(format!("postfix-agentx{page}.1"));
        let roff = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(roff.contains(".TH postfix-agentx"), "{roff}");
    }
    let run = fs::read_to_string(dir.path().join("postfix-agentx-run.1")).unwrap();
    assert!(run.contains("allow\\-root"), "{run}");
    // `man` without --out-dir prints the main page.
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(".ie"));
    // Hidden from --help.
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("man ")),
        "{help}"
    );
}

/// The RPM (docs/rpm.md): built with packaging/build-rpm.sh, read back with
/// `rpm`, installed into a private root (no scriptlets: there is no RHEL
/// here), and its scriptlets checked as the /bin/sh scripts RPM runs.
/// What it does not prove, and docs/rpm.md says: an install on RHEL.
#[test]
fn rpm_package_holds_the_files_requires_and_scriptlets_of_docs_rpm_md() {
    let rpm = require_program("rpm", "rpm");
    let shellcheck = require_program("shellcheck", "shellcheck");
    let probe = Command::new("cargo")
        .args(["generate-rpm", "--version"])
        .output()
        .expect("run cargo");
    assert!(
        probe.status.success(),
        "this test builds the RPM with cargo-generate-rpm: run \
         `cargo install cargo-generate-rpm --locked`"
    );
    let out = Command::new("bash")
        .arg("packaging/build-rpm.sh")
        .current_dir(MANIFEST)
        .output()
        .expect("run build-rpm.sh");
    assert!(out.status.success(), "build-rpm.sh: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let file = Path::new(MANIFEST).join(stdout.lines().last().unwrap_or("").trim());
    assert!(
        file.is_file(),
        "build-rpm.sh printed no .rpm: {}",
        text(&out)
    );

    let query = |args: &[&str]| -> String {
        let out = Command::new(&rpm)
            .args(["-qp"])
            .args(args)
            .arg(&file)
            .output()
            .expect("run rpm");
        assert!(out.status.success(), "rpm -qp {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let name = query(&["--qf", "%{NAME} %{ARCH}"]);
    assert_eq!(name, "postfix-agentx x86_64");

    // Files, with the modes the docs promise.
    let files = query(&["--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]"]);
    for (mode, path) in [
        ("-rwxr-xr-x", "/usr/bin/postfix-agentx"),
        ("-rw-r--r--", "/etc/postfix-agentx/postfix-agentx.toml"),
        (
            "-rw-r--r--",
            "/usr/lib/systemd/system/postfix-agentx.service",
        ),
        ("-rw-r--r--", "/usr/share/snmp/mibs/POSTFIX-MIB.txt"),
        (
            "-rw-r--r--",
            "/usr/share/doc/postfix-agentx/examples/snmpd.conf.d/postfix-agentx.conf",
        ),
        ("-rw-r--r--", "/usr/share/man/man1/postfix-agentx.1.gz"),
        ("-rw-r--r--", "/usr/share/man/man1/postfix-agentx-run.1.gz"),
    ] {
        assert!(
            files.lines().any(|l| l == format!("{mode} {path}")),
            "{path} ({mode}) not in the RPM:\n{files}"
        );
    }
    // The config is %config(noreplace): an upgrade keeps the admin's edits.
    assert_eq!(
        query(&["--configfiles"]).trim(),
        "/etc/postfix-agentx/postfix-agentx.toml"
    );
    let requires = query(&["--requires"]);
    assert!(
        requires.lines().any(|l| l.starts_with("net-snmp")),
        "{requires}"
    );

    // Scriptlets: what RPM runs with /bin/sh passes shellcheck as sh.
    let scripts = query(&["--qf", "%{POSTIN}\n@@@\n%{PREUN}"]);
    let (postin, preun) = scripts.split_once("\n@@@\n").expect("two scriptlets");
    for (what, body) in [("post-install", postin), ("pre-uninstall", preun)] {
        assert!(body.contains("postfix-agentx"), "{what}: {body}");
        let mut child = Command::new(&shellcheck)
            .args(["-s", "sh", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run shellcheck");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), body.as_bytes())
            .expect("feed shellcheck");
        let out = child.wait_with_output().expect("shellcheck");
        assert!(out.status.success(), "{what} scriptlet: {}", text(&out));
    }
    assert!(
        postin.contains("useradd --system") && postin.contains("usermod -a -G"),
        "{postin}"
    );

    // Installed into a private root (its own rpm database), the files land
    // where the docs say and the binary runs.
    let root = tempfile::tempdir().expect("temp root");
    let install = Command::new(&rpm)
        .arg("--root")
        .arg(root.path())
        .args(["-i", "--nodeps", "--noscripts", "--nosignature"])
        .arg(&file)
        .output()
        .expect("run rpm -i");
    assert!(install.status.success(), "rpm -i: {}", text(&install));
    let bin = root.path().join("usr/bin/postfix-agentx");
    let version = Command::new(&bin)
        .arg("--version")
        .output()
        .expect("run the installed binary");
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("postfix-agentx "),
        "{}",
        text(&version)
    );
    let verify = Command::new(&rpm)
        .arg("--root")
        .arg(root.path())
        .args(["-V", "--nodeps", "postfix-agentx"])
        .output()
        .expect("run rpm -V");
    assert!(verify.status.success(), "rpm -V: {}", text(&verify));
}

/// Every shell script in the repository (demo, tests, benchmarks,
/// packaging, the Debian maintainer scripts as the /bin/sh scripts dpkg
/// runs) passes shellcheck: a quoting slip in a maintainer script breaks a
/// user's install, one in a test script hides a failure.
#[test]
fn every_shell_script_passes_shellcheck() {
    let shellcheck = require_program("shellcheck", "shellcheck");
    let listed = Command::new("git")
        .args(["ls-files", "*.sh", ".ci/run"])
        .current_dir(MANIFEST)
        .output()
        .expect("run git ls-files");
    assert!(listed.status.success(), "git ls-files: {}", text(&listed));
    let scripts: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(scripts.len() > 10, "{scripts:?}");
    let out = Command::new(&shellcheck)
        .arg("-x")
        .args(&scripts)
        .current_dir(MANIFEST)
        .output()
        .expect("run shellcheck");
    assert!(out.status.success(), "shellcheck -x: {}", text(&out));
    let out = Command::new(&shellcheck)
        .args(["-s", "sh"])
        .args(["packaging/debian/postinst", "packaging/debian/postrm"])
        .arg("packaging/debian/prerm")
        .current_dir(MANIFEST)
        .output()
        .expect("run shellcheck");
    assert!(out.status.success(), "shellcheck -s sh: {}", text(&out));
}
