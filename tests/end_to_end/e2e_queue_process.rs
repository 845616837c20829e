//! End-to-end: queue and process tables of a real Postfix, read back through
//! a real snmpd with `snmptable`, compared with `postqueue -j`.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::agent::{config_for_socket, Agent};
use support::free_tcp_port;
use support::postfix::Postfix;
use support::snmpd::Snmpd;
use support::wait_until;

fn table(snmpd: &Snmpd, name: &str) -> support::mibs::Rows {
    support::mibs::snmptable_rows(&snmpd.address(), name)
}

fn queue_counts(pf: &Postfix) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for msg in pf.queue_json() {
        *m.entry(msg["queue_name"].as_str().unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    m
}

#[test]
fn queue_and_process_tables_through_snmpd() {
    let snmpd = Snmpd::start().unwrap();
    let closed_port = free_tcp_port();
    let pf = Postfix::builder()
        .main_cf(&format!(
            "transport_maps = inline:{{ {{closed.invalid=smtp:[127.0.0.1]:{closed_port}}} }}"
        ))
        .start();
    let config = config_for_socket(&snmpd.socket_path())
        + &format!(
            "[log]\nenabled = false\n\
             [postfix]\nconfig_directory = \"{}\"\nqueue_directory = \"{}\"\n\
             [queue]\ninterval_seconds = 1\n\
             [process]\ninterval_seconds = 1\ngrace_period_seconds = 3\n",
            pf.config_dir.display(),
            pf.queue_dir.display()
        );
    let agent = Agent::start(&config);

    // Two messages to a closed port (deferred), then one put on hold.
    for i in 0..3 {
        let t = pf.smtp_send(
            "a@test.invalid",
            &["x@closed.invalid"],
            &format!("Subject: {i}\n\nb\n"),
        );
        assert_eq!(t.data_code, Some(250), "{t:?}");
    }
    assert!(wait_until(Duration::from_secs(30), || queue_counts(&pf)
        .get("deferred")
        == Some(&3)));
    let qid = pf.queue_json()[0]["queue_id"].as_str().unwrap().to_string();
    pf.command("postsuper", &["-h", &qid]);
    let expected = queue_counts(&pf);
    assert_eq!(expected.get("hold"), Some(&1), "{expected:?}");

    let matches = || {
        let rows = table(&snmpd, "postfixQueueTable");
        ["deferred", "hold", "active", "incoming", "maildrop"]
            .iter()
            .all(|q| {
                let want = expected.get(*q).copied().unwrap_or(0).to_string();
                rows.get(*q).and_then(|r| r.get("postfixQueueMessages")) == Some(&want)
            })
    };
    assert!(
        wait_until(Duration::from_secs(10), matches),
        "queue table {:?} != postqueue -j {expected:?}\n{}",
        table(&snmpd, "postfixQueueTable"),
        agent.log()
    );
    let rows = table(&snmpd, "postfixQueueTable");
    let deferred = &rows["deferred"];
    assert!(
        deferred["postfixQueueBytes"].parse::<u64>().unwrap() > 0,
        "{deferred:?}"
    );
    // Directory counting (we run as root here) also sees the corrupt queue.
    assert_eq!(
        rows.get("corrupt")
            .map(|r| r["postfixQueueMessages"].as_str()),
        Some("0")
    );

    // Processes: master, qmgr and pickup run, with memory and CPU read.
    let running = |name: &str| {
        table(&snmpd, "postfixProcessTable")
            .get(name)
            .is_some_and(|r| r.get("postfixProcessStatus").map(String::as_str) == Some("running"))
    };
    assert!(wait_until(Duration::from_secs(10), || running("master")
        && running("qmgr")
        && running("pickup")));
    let procs = table(&snmpd, "postfixProcessTable");
    for d in ["master", "qmgr", "pickup"] {
        assert!(
            procs[d]["postfixProcessMemory"].parse::<u64>().unwrap() > 0,
            "{procs:?}"
        );
        assert_eq!(procs[d]["postfixProcessInstances"], "1", "{procs:?}");
    }
    assert!(
        procs.contains_key("smtpd"),
        "smtpd served our SMTP sessions: {procs:?}"
    );

    // pickup killed: restarting (not down) until master restarts it.
    let pickup_pid = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.starts_with("pickup\0") && {
                    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                    String::from_utf8_lossy(&env).contains(&pf.config_dir.display().to_string())
                }
            })
        })
        .expect("pickup process of our instance");
    // SAFETY: killing a process of our own test instance.
    unsafe {
        libc::kill(pickup_pid, libc::SIGKILL);
    }
    let state = |name: &str| {
        table(&snmpd, "postfixProcessTable")
            .get(name)
            .and_then(|r| r.get("postfixProcessStatus").cloned())
    };
    assert!(
        wait_until(Duration::from_secs(5), || state("pickup").as_deref()
            == Some("restarting")),
        "{:?}",
        table(&snmpd, "postfixProcessTable")
    );
    // master restarts pickup at its next wakeup; a reload makes it immediate.
    pf.postfix_cmd(&["reload"]);
    assert!(wait_until(Duration::from_secs(20), || state("pickup")
        .as_deref()
        == Some("running")));
    let row = table(&snmpd, "postfixProcessTable")["pickup"].clone();
    let restarts: u64 = row["postfixProcessRestarts"].parse().unwrap_or(0);
    assert!(restarts >= 1, "{row:?}");

    // Postfix stopped: master down.
    pf.stop();
    assert!(
        wait_until(Duration::from_secs(10), || state("master").as_deref()
            == Some("down")),
        "{:?}",
        table(&snmpd, "postfixProcessTable")
    );
}
