//! Release tier: what a user gets on a real, booted system. Slow (minutes),
//! so these tests are `#[ignore]`d in a plain `cargo test`; the README's test
//! command (scripts/test.sh) runs them with `--ignored`, and so does CI.
//!
//! The work is in shell scripts under tests/release/, because what they run
//! are a user's shell commands: docs/deployment.md's blocks, word for word,
//! inside a Debian 12 container booted with systemd as PID 1
//! (first_install.sh); a Zabbix server with the template and the trap path
//! of docs/templates.md, started by hand on this host (zabbix.sh).

mod support;

use std::process::Command;

/// Runs tests/release/SCRIPT and fails with its output unless it passes.
fn run_release_script(script: &str) {
    assert!(
        support::is_root(),
        "the release tier installs packages and boots a container with systemd-nspawn: \
         it needs root (run scripts/test.sh as root, or \
         `sudo cargo test --test release -- --ignored`)"
    );
    let path = format!("{}/tests/release/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash {path}: {e}"));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{log}",
        out.status
    );
    assert!(
        log.contains("=== PASS"),
        "{script} exited 0 without its PASS line:\n{log}"
    );
}

/// docs/deployment.md on a fresh, booted Debian 12: package install before
/// Postfix, the docs' checks, counts across restarts, a reboot and the
/// journal→mail.log switch, SNMPv3, the directory-queue drop-in, a refused
/// configuration (exit 78, no restart loop), one alarm for a stopped
/// Postfix, remove/purge, and the by-hand install.
#[test]
#[ignore = "release tier (minutes, root, systemd-nspawn): scripts/test.sh runs it"]
fn first_install_on_booted_debian_follows_the_docs() {
    run_release_script("first_install.sh");
}

/// templates/prometheus/ with Debian 12's prometheus-snmp-exporter and
/// prometheus, started by hand on loopback ports: snmp.yml is the
/// generator's output, the exporter's samples equal snmpwalk's values with
/// row labels, promtool checks and unit-tests the rules, a Prometheus server
/// raises the alerts on the agent's live data and answers every dashboard
/// expression. About 30 s once the packages are installed.
#[test]
#[ignore = "release tier (root, installs prometheus-snmp-exporter and prometheus): scripts/test.sh runs it"]
fn prometheus_templates_with_snmp_exporter_and_prometheus() {
    run_release_script("prometheus.sh");
}

/// docs/templates.md's Zabbix section on a real Zabbix 6.0 server started
/// by hand (Debian 12's packages, a private database): the template
/// imported with Zabbix's API, a host polling a private snmpd + the agent,
/// polled values equal to snmpget's, and a log:fatal alarm of the agent
/// shown as a problem from polling (postfixStatus) and from its trap
/// (snmptrapd with templates/zabbix/zabbix_traphandle.sh, Zabbix's SNMP
/// trapper), both resolved when the alarm clears.
#[test]
#[ignore = "release tier (minutes, root, installs Zabbix and MariaDB): scripts/test.sh runs it"]
fn zabbix_server_polls_the_template_and_receives_the_alarm_traps() {
    run_release_script("zabbix.sh");
}

/// docs/templates.md's Cacti section on Debian 12's Cacti 1.2: the package
/// imported with import_package.php, a device with the device template
/// polled by Cacti's poller against a private snmpd and the agent; the RRD
/// files hold what the agent serves, counters as rates.
#[test]
#[ignore = "release tier (minutes, root, installs Cacti and MariaDB): scripts/test.sh runs it"]
fn cacti_package_imports_and_polls_the_agent() {
    run_release_script("cacti.sh");
}
