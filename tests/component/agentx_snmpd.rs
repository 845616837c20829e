//! AgentX session against a real net-snmp snmpd master (private instance per test).
//!
//! The subagent runs in-process (`agentx::session::run` on its own tokio
//! thread) and is queried with the real net-snmp client tools.

use crate::support;

use postfix_agentx::agentx::session::{self, MasterAddress, SessionConfig, SessionState};
use postfix_agentx::snmp::{MibView, ViewHandle};
use postfix_agentx::snmp::{Oid, Value, VarBind};
use std::path::Path;
use std::time::{Duration, Instant};
use support::snmpd::{Snmpd, SnmpdOptions, SYS_UPTIME_0};
use tokio::sync::{mpsc, watch};

const BASE: &str = "1.3.6.1.4.1.8072.9999.9999.25";

fn oid(s: &str) -> Oid {
    Oid::parse(s).unwrap()
}

fn o(suffix: &str) -> String {
    format!("{BASE}.{suffix}")
}

/// Scalars of each interesting type plus a 3-row table.
fn test_view() -> MibView {
    let mut e = vec![
        (oid(&o("1.0")), Value::Counter64(u64::MAX - 5)),
        (oid(&o("2.0")), Value::Gauge32(42)),
        (
            oid(&o("3.0")),
            Value::OctetString(vec![0x00, 0xff, 0x10, 0x80]),
        ),
        (oid(&o("4.0")), Value::Integer(-7)),
        (oid(&o("6.0")), Value::string("hello")),
    ];
    for row in 1..=3u32 {
        e.push((oid(&o(&format!("5.1.1.{row}"))), Value::Integer(row as i32)));
        e.push((
            oid(&o(&format!("5.1.2.{row}"))),
            Value::string(format!("row{row}")),
        ));
        e.push((
            oid(&o(&format!("5.1.3.{row}"))),
            Value::Counter32(row * 100),
        ));
    }
    MibView::from_entries(e)
}

/// The subagent running on its own thread; shut down and joined on drop.
struct Agent {
    shutdown: watch::Sender<bool>,
    state: watch::Receiver<SessionState>,
    notify: mpsc::Sender<Vec<VarBind>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Agent {
    fn start(socket: &Path, view: ViewHandle) -> Agent {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "postfix_agentx=info".into()),
            )
            .try_init();
        let mut cfg = SessionConfig::new(MasterAddress::Unix(socket.to_path_buf()), oid(BASE));
        cfg.backoff_initial = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_secs(1);
        cfg.ping_interval = Duration::from_secs(2);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (state_tx, state) = watch::channel(SessionState::Connecting);
        let (notify, notify_rx) = mpsc::channel(8);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(session::run(cfg, view, notify_rx, state_tx, shutdown_rx))
        });
        Agent {
            shutdown,
            state,
            notify,
            thread: Some(thread),
        }
    }

    fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(*self.state.borrow(), SessionState::Connected { .. }) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Requests shutdown and returns how long `run` took to return.
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        let _ = self.shutdown.send(true);
        if let Some(h) = self.thread.take() {
            h.join()
                .expect("agent thread panicked")
                .expect("run failed");
        }
        t.elapsed()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

fn started() -> (Snmpd, Agent) {
    let snmpd = Snmpd::start().expect("start snmpd");
    let agent = Agent::start(&snmpd.socket_path(), ViewHandle::new(test_view()));
    assert!(
        agent.wait_connected(Duration::from_secs(10)),
        "agent did not register; snmpd log:\n{}",
        snmpd.log()
    );
    (snmpd, agent)
}

#[test]
fn snmpd_harness_starts_answers_and_restarts_on_same_port() {
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
    let out = snmpd
        .tool_with("snmpget", &["-t", "0.3", "-r", "0"], &[SYS_UPTIME_0])
        .unwrap();
    assert!(!out.success(), "{out}");
    snmpd.start_again().unwrap();
    assert_eq!(snmpd.port(), port);
    let out = snmpd.getnext(&["1.3.6.1.2.1.1"]).unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(out.oids(), vec!["1.3.6.1.2.1.1.1.0"], "{out}");
    snmpd.stop();
}

#[test]
fn get_scalars_and_exceptions() {
    let (snmpd, _agent) = started();
    let out = snmpd
        .get(&[&o("1.0"), &o("2.0"), &o("3.0"), &o("4.0"), &o("6.0")])
        .unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(
        out.value_of(&o("1.0")).unwrap(),
        format!("Counter64: {}", u64::MAX - 5)
    );
    assert_eq!(out.value_of(&o("2.0")).unwrap(), "Gauge32: 42");
    assert_eq!(out.value_of(&o("3.0")).unwrap(), "Hex-STRING: 00 FF 10 80");
    assert_eq!(out.value_of(&o("4.0")).unwrap(), "INTEGER: -7");
    assert_eq!(out.value_of(&o("6.0")).unwrap(), "STRING: \"hello\"");

    let out = snmpd
        .get(&[&o("2.1"), &o("5.1.2.9"), &o("9.0"), &o("5.7.1")])
        .unwrap();
    assert!(out.success(), "{out}");
    let nsi = "No Such Instance currently exists at this OID";
    let nso = "No Such Object available on this agent at this OID";
    assert_eq!(out.value_of(&o("2.1")).unwrap(), nsi, "{out}");
    assert_eq!(out.value_of(&o("5.1.2.9")).unwrap(), nsi, "{out}");
    assert_eq!(out.value_of(&o("9.0")).unwrap(), nso, "{out}");
    assert_eq!(out.value_of(&o("5.7.1")).unwrap(), nso, "{out}");
    // Outside our registration: snmpd answers itself.
    let outside = "1.3.6.1.4.1.8072.9999.9999.26.1.0";
    let out = snmpd.get(&[outside]).unwrap();
    assert_eq!(out.value_of(outside).unwrap(), nso, "{out}");
}

#[test]
fn getnext_before_inside_and_after_the_subtree() {
    let (snmpd, _agent) = started();
    let cases = [
        ("1.3.6.1.4.1.8072.9999.9999.24", o("1.0")),
        (BASE, o("1.0")),
        (&o("1.0") as &str, o("2.0")),
        (&o("4.0") as &str, o("5.1.1.1")),
        (&o("5.1.1.3") as &str, o("5.1.2.1")),
        (&o("5.1.3.2.7") as &str, o("5.1.3.3")),
    ];
    for (start, want) in cases {
        let out = snmpd.getnext(&[start]).unwrap();
        assert!(out.success(), "{out}");
        assert_eq!(out.oids(), vec![want.clone()], "getnext {start}: {out}");
    }
    // After our last object the walk leaves our subtree into snmpd's own objects.
    let out = snmpd.getnext(&[&o("6.0")]).unwrap();
    assert!(out.success(), "{out}");
    let next = oid(&out.oids()[0]);
    assert!(
        next > oid(&o("6.0")) && !next.starts_with(&oid(BASE)),
        "{out}"
    );
}

#[test]
fn walk_and_bulkwalk_return_the_subtree_in_order() {
    let (snmpd, _agent) = started();
    let want: Vec<String> = test_view()
        .entries()
        .iter()
        .map(|(o, _)| o.to_string())
        .collect();
    let walk = snmpd.walk(BASE).unwrap();
    assert!(walk.success(), "{walk}");
    assert_eq!(walk.oids(), want, "{walk}");
    let bulk = snmpd.bulkwalk(BASE).unwrap();
    assert!(bulk.success(), "{bulk}");
    assert_eq!(bulk.oids(), want, "{bulk}");
    assert_eq!(walk.stdout, bulk.stdout);
    assert_eq!(
        walk.value_of(&o("5.1.2.2")).unwrap(),
        "STRING: \"row2\"",
        "{walk}"
    );
    // snmpbulkget with non-repeaters and repetitions through snmpd.
    let out = snmpd.bulkget(1, 3, &[&o("1.0"), &o("5.1.1")]).unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(
        out.oids(),
        vec![o("2.0"), o("5.1.1.1"), o("5.1.1.2"), o("5.1.1.3")],
        "{out}"
    );
}

#[test]
fn walk_of_everything_passes_through_our_subtree_in_order() {
    let (snmpd, _agent) = started();
    let out = snmpd.tool("snmpbulkwalk", &["-Cr50", ".1"]).unwrap();
    assert!(out.success(), "{out}");
    assert!(!out.stderr.contains("not increasing"), "{out}");
    // The last line repeats the last OID with "No more variables left".
    let oids: Vec<Oid> = out
        .lines()
        .iter()
        .filter(|l| !l.contains("No more variables left"))
        .filter_map(|l| l.split_once(" = "))
        .map(|(o, _)| oid(o))
        .collect();
    if let Some(w) = oids.windows(2).find(|w| w[0] >= w[1]) {
        panic!("walk not strictly increasing at {} -> {}", w[0], w[1]);
    }
    let ours = oids.iter().filter(|o| o.starts_with(&oid(BASE))).count();
    assert_eq!(ours, test_view().len(), "{out}");
    // The plain GetNext walk as well (slower: one request per object).
    let out = snmpd.walk(".1").unwrap();
    assert!(out.success(), "{out}");
    assert!(!out.stderr.contains("not increasing"), "{out}");
    let ours = out.oids().iter().filter(|o| o.starts_with(BASE)).count();
    assert_eq!(ours, test_view().len());
}

#[test]
fn set_is_refused_with_not_writable_and_session_survives() {
    let (snmpd, _agent) = started();
    let out = snmpd.set(&o("2.0"), "u", "5").unwrap();
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("notWritable"), "{out}");
    let out = snmpd.set(&o("6.0"), "s", "x").unwrap();
    assert!(out.stderr.contains("notWritable"), "{out}");
    let out = snmpd.get(&[&o("2.0")]).unwrap();
    assert_eq!(out.value_of(&o("2.0")).unwrap(), "Gauge32: 42", "{out}");
}

#[test]
fn view_updates_are_served_without_reconnect() {
    let snmpd = Snmpd::start().expect("start snmpd");
    let view = ViewHandle::new(test_view());
    let agent = Agent::start(&snmpd.socket_path(), view.clone());
    assert!(agent.wait_connected(Duration::from_secs(10)));
    view.store(MibView::from_entries(vec![(
        oid(&o("2.0")),
        Value::Gauge32(43),
    )]));
    let out = snmpd.get(&[&o("2.0"), &o("1.0")]).unwrap();
    assert_eq!(out.value_of(&o("2.0")).unwrap(), "Gauge32: 43", "{out}");
    assert!(
        out.value_of(&o("1.0")).unwrap().starts_with("No Such"),
        "{out}"
    );
}

#[test]
fn agent_started_before_snmpd_connects_when_it_comes_up() {
    let mut snmpd = Snmpd::prepare(SnmpdOptions::default()).unwrap();
    let mut agent = Agent::start(&snmpd.socket_path(), ViewHandle::new(test_view()));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!matches!(
        *agent.state.borrow(),
        SessionState::Connected { .. }
    ));
    snmpd.start_again().unwrap();
    let out = snmpd
        .wait_for_value(&o("2.0"), Duration::from_secs(5))
        .unwrap();
    assert_eq!(out.value_of(&o("2.0")).unwrap(), "Gauge32: 42", "{out}");
    assert!(agent.stop() < Duration::from_secs(1));
}

#[test]
fn snmpd_killed_and_restarted_five_times() {
    let (mut snmpd, mut agent) = started();
    for round in 0..5 {
        // SIGKILL: no Close PDU, stale socket file stays.
        snmpd.kill();
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        snmpd.start_again().unwrap();
        let out = snmpd
            .wait_for_value(&o("2.0"), Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            out.value_of(&o("2.0")).as_deref(),
            Some("Gauge32: 42"),
            "round {round}: {out}\nsnmpd log:\n{}",
            snmpd.log()
        );
        assert!(t.elapsed() < Duration::from_secs(6), "round {round}");
    }
    // A graceful restart (SIGTERM) too.
    snmpd.restart().unwrap();
    let out = snmpd
        .wait_for_value(&o("2.0"), Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        out.value_of(&o("2.0")).as_deref(),
        Some("Gauge32: 42"),
        "{out}"
    );
    let took = agent.stop();
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
}

#[test]
fn notify_reaches_snmpd_trap_sink() {
    // snmpd forwards Notify PDUs from subagents as SNMPv2 traps to its sinks.
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let snmpd = Snmpd::start_with(SnmpdOptions {
        extra_conf: vec![format!("trap2sink 127.0.0.1:{sink_port} public")],
        ..SnmpdOptions::default()
    })
    .expect("start snmpd");
    let agent = Agent::start(&snmpd.socket_path(), ViewHandle::new(test_view()));
    assert!(agent.wait_connected(Duration::from_secs(10)));
    let marker = b"notify-marker-4711";
    let vbs = vec![
        VarBind {
            name: oid("1.3.6.1.6.3.1.1.4.1.0"),
            value: Value::ObjectIdentifier(oid(&o("0.1"))),
        },
        VarBind {
            name: oid(&o("6.0")),
            value: Value::OctetString(marker.to_vec()),
        },
    ];
    agent.notify.blocking_send(vbs).unwrap();
    // snmpd may also send its own coldStart trap; look for ours.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65536];
    loop {
        assert!(
            Instant::now() < deadline,
            "no trap with our varbinds arrived"
        );
        let Ok(n) = sink.recv(&mut buf) else { continue };
        let trap = &buf[..n];
        if trap.windows(marker.len()).any(|w| w == marker) {
            // BER of the trap OID value ...8072.9999.9999.25.0.1 is in there too.
            let tail = [0xce, 0x0f, 0xce, 0x0f, 0x19, 0x00, 0x01];
            assert!(trap.windows(tail.len()).any(|w| w == tail), "{trap:02x?}");
            break;
        }
    }
}
