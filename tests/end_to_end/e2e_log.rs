//! End-to-end: a real Postfix writes its log, the agent follows it (through
//! `postfix logrotate`, a clean restart and a SIGKILL), and the counters read
//! back through a real snmpd match what happened and what `parse` counts.

use crate::support;

use std::time::Duration;
use support::agent::{config_for_socket, run_cli, Agent, ROOT};
use support::postfix::{Postfix, MYHOSTNAME};
use support::snmpd::Snmpd;
use support::wait_until;

const DELIVERED: &str = "1.1.1.0";
const REJECTED: &str = "1.1.4.0";
const RECEIVED: &str = "1.1.3.0";

fn counter(snmpd: &Snmpd, suffix: &str) -> Option<u64> {
    let oid = format!("{ROOT}.{suffix}");
    let out = snmpd.get(&[&oid]).ok()?;
    out.value_of(&oid)?
        .strip_prefix("Counter64: ")?
        .trim()
        .parse()
        .ok()
}

fn wait_counter(snmpd: &Snmpd, agent: &Agent, suffix: &str, want: u64) {
    let ok = wait_until(Duration::from_secs(20), || {
        counter(snmpd, suffix) == Some(want)
    });
    assert!(
        ok,
        "{suffix}: wanted {want}, got {:?}\nagent log:\n{}",
        counter(snmpd, suffix),
        agent.log()
    );
}

/// Delivered messages in an alias file delivery (mbox format).
fn mbox_messages(pf: &Postfix, name: &str) -> u64 {
    std::fs::read_to_string(pf.mail_dir.join(name))
        .map(|t| t.lines().filter(|l| l.starts_with("From ")).count() as u64)
        .unwrap_or(0)
}

fn send(pf: &Postfix, n: usize) -> (u64, u64) {
    let (mut accepted, mut rejected) = (0, 0);
    for i in 0..n {
        let t = pf.smtp_send(
            "sender@client.test.invalid",
            &[
                &format!("alice@{MYHOSTNAME}"),
                &format!("nosuchuser@{MYHOSTNAME}"),
            ],
            &format!("Subject: status=sent (delivered to mailbox) {i}\n\nbody\n"),
        );
        accepted += t.rcpt_codes.iter().filter(|&&c| c == 250).count() as u64;
        rejected += t.rcpt_codes.iter().filter(|&&c| c >= 500).count() as u64;
        assert_eq!(t.data_code, Some(250), "{t:?}");
    }
    (accepted, rejected)
}

/// `postfix-agentx parse --format json FILES...`
fn parse_counts(paths: &[std::path::PathBuf]) -> serde_json::Value {
    let mut args = vec!["parse".to_string(), "--format".into(), "json".into()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn counters_follow_a_real_postfix_through_rotation_and_restarts() {
    let snmpd = Snmpd::start().unwrap();
    let pf = Postfix::builder()
        .alias("alice", "{dir}/mail/alice")
        .main_cf("local_recipient_maps = proxy:unix:passwd.byname $alias_maps")
        .start();
    let config = config_for_socket(&snmpd.socket_path())
        + &format!(
            "[log]\npath = [\"{}\"]\nstart_at = \"beginning\"\n\
             [state]\ndirectory = \"{{dir}}/state\"\nsave_interval_seconds = 1\n\
             [postfix]\nconfig_directory = \"{}\"\nqueue_directory = \"{}\"\n\
             [process]\nenabled = false\n",
            pf.log_path.display(),
            pf.config_dir.display(),
            pf.queue_dir.display()
        );
    let mut agent = Agent::start(&config);

    // Round 1: 3 messages, each to alice (delivered) and an unknown user (rejected).
    let (accepted, rejected) = send(&pf, 3);
    assert_eq!((accepted, rejected), (3, 3));
    assert!(wait_until(Duration::from_secs(20), || mbox_messages(
        &pf, "alice"
    ) == 3));
    wait_counter(&snmpd, &agent, DELIVERED, 3);
    wait_counter(&snmpd, &agent, REJECTED, 3);
    wait_counter(&snmpd, &agent, RECEIVED, 3);

    // Postfix rotates its own maillog_file; the agent finishes the old file
    // and follows the new one.
    let out = pf.postfix_cmd(&["logrotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    send(&pf, 2);
    assert!(wait_until(Duration::from_secs(20), || mbox_messages(
        &pf, "alice"
    ) == 5));
    wait_counter(&snmpd, &agent, DELIVERED, 5);

    // A clean restart resumes from the saved state: nothing counted twice.
    agent.restart();
    send(&pf, 1);
    assert!(wait_until(Duration::from_secs(20), || mbox_messages(
        &pf, "alice"
    ) == 6));
    wait_counter(&snmpd, &agent, DELIVERED, 6);
    wait_counter(&snmpd, &agent, REJECTED, 6);

    // SIGKILL right after traffic: what was not saved is read again from the
    // saved position, so the final counts equal `parse` over all the logs.
    send(&pf, 2);
    assert!(wait_until(Duration::from_secs(20), || mbox_messages(
        &pf, "alice"
    ) == 8));
    agent.kill();
    send(&pf, 1);
    assert!(wait_until(Duration::from_secs(20), || mbox_messages(
        &pf, "alice"
    ) == 9));
    // Let qmgr log "removed" before comparing whole files.
    assert!(pf.wait_queue_empty(Duration::from_secs(20)));
    agent.restart();
    wait_counter(&snmpd, &agent, DELIVERED, 9);
    wait_counter(&snmpd, &agent, REJECTED, 9);

    // The rotated file and the current one, parsed from scratch.
    let mut logs: Vec<_> = std::fs::read_dir(pf.log_path.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    logs.sort();
    assert_eq!(
        logs.len(),
        2,
        "expected the maillog and one rotated file: {logs:?}"
    );
    let parsed = parse_counts(&logs);
    assert_eq!(parsed["delivered"], 9);
    assert_eq!(parsed["rejected"], 9);
    // Every scalar the agent serves equals parse's figure for the same lines.
    for (key, suffix) in [
        ("delivered", DELIVERED),
        ("rejected", REJECTED),
        ("received", RECEIVED),
    ] {
        let parsed_value = parsed[key].as_u64().unwrap();
        assert_eq!(counter(&snmpd, suffix), Some(parsed_value), "{key}");
    }
}
