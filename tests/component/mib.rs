//! POSTFIX-MIB checks with the real tools: smilint, snmptranslate, and the
//! agent's own OID layout against the MIB text.

use crate::support;

use postfix_agentx::mib::build_view;
use postfix_agentx::mib::names::mib_nodes;
use postfix_agentx::mib::text::{DEFAULT_ROOT, MIB_TEXT};
use postfix_agentx::snapshot::*;
use postfix_agentx::snmp::{Oid, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};
use support::mibs::base_mib_dir;
use support::require_program;

fn smilint(file: &Path) -> String {
    require_program("smilint", "smitools");
    let out = Command::new("smilint")
        .args(["-s", "-l", "6"])
        .arg(file)
        .env("SMIPATH", base_mib_dir())
        .output()
        .expect("run smilint");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// smilint's `-s` shows `[level]`; levels 0-3 are errors, 4-6 warnings.
fn errors(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|l| {
            l.split_once(": [")
                .and_then(|(_, rest)| rest.chars().next())
                .is_some_and(|c| matches!(c, '0'..='3'))
        })
        .collect()
}

#[test]
fn smilint_level_6_reports_no_errors() {
    let report = smilint(Path::new("mibs/POSTFIX-MIB.txt"));
    assert!(errors(&report).is_empty(), "smilint errors:\n{report}");
    // It really checked our module: the known harmless warning is there.
    assert!(
        report.contains("POSTFIX-MIB.txt"),
        "smilint said nothing about our file:\n{report}"
    );
}

fn snmptranslate(mib_dir: &Path, args: &[&str]) -> String {
    require_program("snmptranslate", "snmp");
    let dirs = format!("{}:{}", base_mib_dir().display(), mib_dir.display());
    let out = Command::new("snmptranslate")
        .args(["-M", &dirs, "-m", "POSTFIX-MIB"])
        .args(args)
        .output()
        .expect("run snmptranslate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "snmptranslate {args:?} failed: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

#[test]
fn net_snmp_loads_the_mib_and_agrees_on_every_oid() {
    let tree = snmptranslate(Path::new("mibs"), &["-Tp"]);
    assert!(tree.contains("postfixDelivered"), "{tree}");
    assert!(!tree.contains("Cannot find module"), "{tree}");
    let root = Oid::parse(DEFAULT_ROOT).unwrap();
    let nodes = mib_nodes(MIB_TEXT, &root);
    assert!(nodes.len() > 100, "only {} nodes parsed", nodes.len());
    let names: Vec<String> = nodes
        .iter()
        .map(|n| format!("POSTFIX-MIB::{}", n.name))
        .collect();
    let mut args = vec!["-On"];
    args.extend(names.iter().map(String::as_str));
    let out = snmptranslate(Path::new("mibs"), &args);
    let oids: Vec<&str> = out.lines().filter(|l| l.starts_with('.')).collect();
    assert_eq!(oids.len(), nodes.len(), "{out}");
    for (node, got) in nodes.iter().zip(oids) {
        assert_eq!(got, format!(".{}", node.oid), "{}", node.name);
    }
}

#[test]
fn rerooted_mib_lints_and_moves_every_object() {
    let bin = env!("CARGO_BIN_EXE_postfix-agentx");
    let out = Command::new(bin)
        .args(["mib", "--root", "1.3.6.1.4.1.99999.7"])
        .output()
        .expect("run postfix-agentx mib");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("POSTFIX-MIB.txt");
    std::fs::write(&file, &out.stdout).unwrap();
    let report = smilint(&file);
    assert!(errors(&report).is_empty(), "{report}");
    let got = snmptranslate(dir.path(), &["-On", "POSTFIX-MIB::postfixDelivered"]);
    assert_eq!(got.trim(), ".1.3.6.1.4.1.99999.7.1.1.1");
}

/// A snapshot with every part and table filled, as all collectors would.
fn full_snapshot() -> Snapshot {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut s = Snapshot::new(AgentInfo {
        version: "test".into(),
        start_time: t,
        discontinuity_time: t,
    });
    let mut log = LogCounters::default();
    log.deliveries
        .insert("smtp".into(), DeliveryCount::default());
    s.log = Some(log);
    s.queue = Some(QueueStatus {
        method: QueueMethod::Showq,
        rows: vec![QueueRow {
            queue: QueueName::Deferred,
            messages: 1,
            bytes: 10,
            oldest_arrival: Some(t),
        }],
        scan_time: t,
        scan_duration: Duration::from_millis(3),
    });
    s.processes = Some(ProcessStatus {
        config_directory: "/etc/postfix".into(),
        rows: vec![ProcessRow {
            name: "qmgr".into(),
            services: "qmgr".into(),
            instances: 1,
            cpu_centiseconds: 1,
            cpu_percent: 0,
            rss_bytes: 1,
            vsize_bytes: 1,
            state: ProcessState::Running,
            oldest_start: Some(t),
            restarts: 0,
        }],
        scan_time: t,
    });
    s.probes = Some(vec![ProbeRow {
        name: "smtp".into(),
        kind: ProbeKind::Smtp,
        target: "127.0.0.1:25".into(),
        state: ProbeState::Ok,
        latency_ms: 3,
        banner_ms: 1,
        successes: 1,
        failures: 0,
        consecutive_failures: 0,
        last_success: Some(t),
        last_error: String::new(),
    }]);
    s.certs = Some(vec![CertRow {
        name: "/etc/ssl/certs/ssl-cert-snakeoil.pem".into(),
        subject: "CN=mx".into(),
        not_after: t,
        days_to_expiry: -3,
    }]);
    s.alarms = Some(vec![postfix_agentx::snapshot::Alarm {
        key: "queue:deferred".into(),
        kind: postfix_agentx::snapshot::AlarmKind::QueueSize,
        severity: postfix_agentx::snapshot::Severity::Warning,
        since: t,
        value: 600,
        threshold: 500,
        text: "deferred queue holds 600 messages".into(),
    }]);
    let mut queue = SourceHealth::new("showq");
    queue.last_duration = Some(Duration::from_millis(12));
    s.health = BTreeMap::from([
        ("log".to_string(), SourceHealth::new("/var/log/mail.log")),
        ("queue".to_string(), queue),
    ]);
    s
}

fn syntax_matches(syntax: &str, value: &Value) -> bool {
    match value {
        Value::Counter64(_) => syntax == "Counter64",
        Value::Counter32(_) => syntax == "Counter32",
        Value::Gauge32(_) => syntax == "Gauge32",
        Value::Integer(_) => syntax == "INTEGER" || syntax == "Integer32",
        Value::OctetString(_) => syntax == "DisplayString" || syntax == "DateAndTime",
        _ => false,
    }
}

#[test]
fn every_served_oid_is_a_mib_object_of_the_right_type() {
    let root = Oid::parse(DEFAULT_ROOT).unwrap();
    let nodes = mib_nodes(MIB_TEXT, &root);
    let view = build_view(&root, &full_snapshot(), SystemTime::now());
    let mut served = std::collections::BTreeSet::new();
    for (oid, value) in view.entries() {
        let node = nodes
            .iter()
            .filter(|n| oid.starts_with(&n.oid) && n.syntax.is_some())
            .max_by_key(|n| n.oid.len())
            .unwrap_or_else(|| panic!("{oid} is no MIB object"));
        let syntax = node.syntax.as_deref().unwrap();
        assert!(
            syntax_matches(syntax, value),
            "{} is {syntax} in the MIB but served as {value:?}",
            node.name
        );
        served.insert(node.name.clone());
    }
    // Every readable object is served when its collector runs.
    for n in &nodes {
        let readable = n
            .syntax
            .as_deref()
            .is_some_and(|s| !s.starts_with("SEQUENCE") && !s.starts_with("Postfix"));
        let index = n.name.ends_with("Index")
            || n.name.ends_with("Key")
            || n.name.ends_with("Reason")
            || n.name.ends_with("Service")
            || n.name.ends_with("Daemon");
        if readable && !index {
            assert!(
                served.contains(&n.name),
                "{} is in the MIB but never served",
                n.name
            );
        }
    }
}

#[test]
fn notifications_carry_mib_objects_under_their_mib_names() {
    use postfix_agentx::mib::notify::{notification_oid, varbinds};
    use postfix_agentx::snapshot::{Alarm, AlarmEvent, AlarmKind, Severity};
    let root = Oid::parse(DEFAULT_ROOT).unwrap();
    let nodes = mib_nodes(MIB_TEXT, &root);
    let snap = full_snapshot();
    for kind in AlarmKind::ALL {
        let subject = match kind {
            AlarmKind::QueueSize | AlarmKind::QueueAge => "deferred",
            AlarmKind::ProcessDown => "qmgr",
            AlarmKind::ProbeFailed => "smtp",
            AlarmKind::CertExpiry => "/etc/ssl/certs/ssl-cert-snakeoil.pem",
            _ => "x",
        };
        let alarm = Alarm {
            key: format!("k:{subject}"),
            kind,
            severity: Severity::Critical,
            since: SystemTime::UNIX_EPOCH,
            value: 1,
            threshold: 1,
            text: "t".into(),
        };
        let name = format!("{kind:?}");
        for (event, suffix) in [
            (AlarmEvent::Raised(alarm.clone()), "Alarm"),
            (AlarmEvent::Cleared(alarm.clone()), "Clear"),
        ] {
            let oid = notification_oid(&root, &event);
            let node = nodes
                .iter()
                .find(|n| n.oid == oid)
                .unwrap_or_else(|| panic!("{oid} not in MIB"));
            assert_eq!(node.name, format!("postfix{name}{suffix}"));
            let vbs = varbinds(&root, &event, &snap);
            assert_eq!(vbs[0].name.to_string(), "1.3.6.1.6.3.1.1.4.1.0");
            for vb in &vbs[1..] {
                assert!(
                    !matches!(vb.value, Value::Counter64(_)),
                    "Counter64 in a notification"
                );
                assert!(
                    nodes
                        .iter()
                        .any(|n| vb.name.starts_with(&n.oid) && n.syntax.is_some()),
                    "{} is no MIB object",
                    vb.name
                );
            }
        }
    }
}

/// Every Counter, Gauge and Integer32 quantity says its unit (UNITS), so an
/// NMS can label a graph "recipients/s" instead of a bare number. The two
/// alarm columns are in the unit of their alarm's kind (their DESCRIPTION
/// lists them) and have none.
#[test]
fn every_counter_and_gauge_has_units() {
    let no_single_unit = ["postfixAlarmValue", "postfixAlarmThreshold"];
    let mut checked = 0;
    let mut missing = Vec::new();
    for block in MIB_TEXT.split("\n\n") {
        let Some((name, rest)) = block.trim_start().split_once(" OBJECT-TYPE") else {
            continue;
        };
        let syntax = rest
            .split_once("SYNTAX")
            .and_then(|(_, s)| s.split_whitespace().next())
            .unwrap_or("");
        if !["Counter64", "Counter32", "Gauge32", "Integer32"].contains(&syntax) {
            continue;
        }
        checked += 1;
        if !rest.contains("\n    UNITS ") && !no_single_unit.contains(&name) {
            missing.push(format!("{name} ({syntax})"));
        }
    }
    assert!(checked > 40, "found only {checked} quantities in the MIB");
    assert!(missing.is_empty(), "without UNITS: {missing:?}");
}
