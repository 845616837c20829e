//! AgentX session against a real net-snmp snmpd master (private instance per test).

mod support;

use support::snmpd::{Snmpd, SYS_UPTIME_0};

#[test]
fn snmpd_starts_answers_and_restarts_on_same_port() {
    let mut snmpd = Snmpd::start().expect("start snmpd");
    let port = snmpd.port();
    let out = snmpd.get(&[SYS_UPTIME_0]).unwrap();
    assert!(out.success(), "{out}");
    assert!(
        out.value_of(SYS_UPTIME_0).unwrap().starts_with("Timeticks"),
        "{out}"
    );
    assert!(snmpd.socket_path().exists());
    snmpd.kill();
    assert!(!snmpd.get(&[SYS_UPTIME_0]).unwrap().success());
    snmpd.start_again().unwrap();
    assert_eq!(snmpd.port(), port);
    let out = snmpd.getnext(&["1.3.6.1.2.1.1"]).unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(out.oids(), vec!["1.3.6.1.2.1.1.1.0"], "{out}");
    snmpd.stop();
}
