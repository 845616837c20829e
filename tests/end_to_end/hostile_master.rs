//! A hostile AgentX master: a small fake master on a unix socket sends the
//! real binary malformed, huge and slow PDUs, and stops reading its answers.
//! After each case the agent must still run, its peak memory must stay
//! bounded, and it must answer (on the same connection, or on the next one
//! it opens after dropping a broken one). At the end the socket path is
//! pointed at a real snmpd, which must serve the agent's values again.
//!
//! The codec and session's own unit tests (src/agentx/) cover single
//! malformed fields with an in-process fake master; this file runs the whole
//! binary, so a panic, a hang or unbounded growth anywhere would show.

use crate::support;

use postfix_agentx::agentx::codec::{
    CloseReason, ErrorStatus, GetBulk, Header, Open, Payload, Pdu, Response, SearchRange,
    HEADER_LEN,
};
use postfix_agentx::snmp::{Oid, Value};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::ROOT;
use support::snmpd::Snmpd;
use support::workload::{append, tail, AgentProc, LineGenerator, RunAs};

/// How long the agent may take to answer or to come back after a drop
/// (its reconnect back-off is capped at 1 s in this test's config).
const WAIT: Duration = Duration::from_secs(10);
/// Peak resident memory the agent may gain over the whole run. Every input
/// is at most 1 MiB (the frame limit), every answer bounded.
const MAX_GROWTH_KIB: u64 = 64 * 1024;

fn oid(s: &str) -> Oid {
    Oid::parse(s).unwrap_or_else(|e| panic!("bad OID {s}: {e}"))
}

fn root() -> Oid {
    oid(ROOT)
}

/// agentVersion.0, always served.
fn version_oid() -> Oid {
    oid(&format!("{ROOT}.1.9.1.0"))
}

fn range(start: Oid, end: Option<Oid>) -> SearchRange {
    SearchRange {
        start,
        include: false,
        end: end.unwrap_or_default(),
    }
}

/// VmHWM (peak resident set) of `pid` in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM for pid {pid}:\n{status}"))
}

/// The fake master: listens on `fake.sock`; the agent is configured with
/// `master.sock`, a symlink that is later pointed at a real snmpd.
struct FakeMaster {
    listener: UnixListener,
    link: PathBuf,
    next_session: u32,
}

/// One connection from the agent, opened and registered.
struct Conn {
    stream: UnixStream,
    session_id: u32,
    next_packet: u32,
}

impl FakeMaster {
    fn new(dir: &Path) -> FakeMaster {
        let fake = dir.join("fake.sock");
        let listener = UnixListener::bind(&fake).expect("bind the fake master socket");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let link = dir.join("master.sock");
        std::os::unix::fs::symlink(&fake, &link).expect("symlink master.sock");
        FakeMaster {
            listener,
            link,
            next_session: 1,
        }
    }

    /// The next connection from the agent, Open and Register answered.
    fn accept(&mut self, why: &str) -> Conn {
        let deadline = Instant::now() + WAIT;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "{why}: the agent did not connect within {WAIT:?}"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{why}: accept: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking stream");
        let session_id = self.next_session;
        self.next_session += 1;
        let mut conn = Conn {
            stream,
            session_id,
            next_packet: 1,
        };
        let open = conn
            .read_pdu()
            .unwrap_or_else(|e| panic!("{why}: Open: {e}"));
        assert!(
            matches!(open.payload, Payload::Open(Open { .. })),
            "{open:?}"
        );
        let mut answer = ok_response(&open.header);
        answer.header.session_id = session_id;
        conn.send(&answer);
        let register = conn
            .read_pdu()
            .unwrap_or_else(|e| panic!("{why}: Register: {e}"));
        assert!(
            matches!(register.payload, Payload::Register(_)),
            "{register:?}"
        );
        conn.send(&ok_response(&register.header));
        // Then the sysORTable row (AddAgentCaps), as snmpd gets it.
        let caps = conn
            .read_pdu()
            .unwrap_or_else(|e| panic!("{why}: AddAgentCaps: {e}"));
        assert!(
            matches!(caps.payload, Payload::AddAgentCaps { .. }),
            "{caps:?}"
        );
        conn.send(&ok_response(&caps.header));
        conn
    }
}

fn ok_response(h: &Header) -> Pdu {
    Pdu::response_to(
        h,
        Response {
            sys_uptime: 0,
            error: ErrorStatus::NoError,
            index: 0,
            varbinds: Vec::new(),
        },
    )
}

impl Conn {
    fn send_bytes(&mut self, bytes: &[u8]) {
        // The agent may have dropped us already: a failed write shows later.
        let _ = self.stream.write_all(bytes);
    }

    fn send(&mut self, pdu: &Pdu) {
        let bytes = pdu.encode().expect("encode a PDU");
        self.send_bytes(&bytes);
    }

    /// A request PDU of this session with a fresh packet id.
    fn request(&mut self, payload: Payload) -> Pdu {
        let id = self.next_packet;
        self.next_packet += 1;
        Pdu::new(payload, self.session_id, id, id)
    }

    /// The next whole PDU, or why there is none (EOF, timeout, garbage).
    fn read_pdu(&mut self) -> Result<Pdu, String> {
        self.stream
            .set_read_timeout(Some(WAIT))
            .map_err(|e| e.to_string())?;
        let mut head = [0u8; HEADER_LEN];
        self.stream
            .read_exact(&mut head)
            .map_err(|e| format!("reading a header: {e}"))?;
        let header = Header::decode(&head).map_err(|e| e.to_string())?;
        // Our own bound, so a broken agent cannot make the test allocate GBs.
        if header.payload_length > 16 << 20 {
            return Err(format!("payload of {} bytes", header.payload_length));
        }
        let mut frame = head.to_vec();
        frame.resize(HEADER_LEN + header.payload_length as usize, 0);
        self.stream
            .read_exact(&mut frame[HEADER_LEN..])
            .map_err(|e| format!("reading a payload: {e}"))?;
        Pdu::decode(&frame).map_err(|e| e.to_string())
    }

    /// The Response to `packet_id` (the agent's own Pings are answered).
    fn response(&mut self, packet_id: u32) -> Result<Response, String> {
        loop {
            let pdu = self.read_pdu()?;
            match pdu.payload {
                Payload::Response(r) if pdu.header.packet_id == packet_id => return Ok(r),
                Payload::Ping => self.send(&ok_response(&pdu.header)),
                other => return Err(format!("unexpected {other:?}")),
            }
        }
    }

    /// Sends `payload` as a request and returns the answer.
    fn ask(&mut self, payload: Payload) -> Result<Response, String> {
        let pdu = self.request(payload);
        self.send(&pdu);
        self.response(pdu.header.packet_id)
    }

    /// True once the agent has closed the connection (EOF or reset) within
    /// WAIT; PDUs it sends first (a Close) are skipped.
    fn closed_by_agent(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// The agent serves agentVersion.0 on this connection.
    fn serves(&mut self) -> Result<(), String> {
        let r = self.ask(Payload::Get(vec![range(version_oid(), None)]))?;
        match r.varbinds.first().map(|v| &v.value) {
            Some(Value::OctetString(_)) if r.error == ErrorStatus::NoError => Ok(()),
            _ => Err(format!("unexpected answer {r:?}")),
        }
    }
}

/// The checks after every case: the process runs, its peak memory is
/// bounded, and it serves on `conn` or, if it dropped it, on a new one.
struct Checks<'a> {
    agent: &'a mut AgentProc,
    baseline_kib: u64,
}

impl Checks<'_> {
    fn after(&mut self, case: &str, master: &mut FakeMaster, conn: Conn, dropped: bool) -> Conn {
        let mut conn = conn;
        if dropped {
            assert!(
                conn.closed_by_agent(),
                "{case}: the agent kept the connection\n{}",
                tail(&self.agent.log(), 30)
            );
            conn = master.accept(case);
        }
        if let Err(e) = conn.serves() {
            panic!(
                "{case}: no answer on the connection ({e})\n{}",
                tail(&self.agent.log(), 30)
            );
        }
        assert!(
            self.agent.is_running(),
            "{case}: the agent exited\n{}",
            tail(&self.agent.log(), 30)
        );
        let peak = peak_rss_kib(self.agent.pid());
        assert!(
            peak < self.baseline_kib + MAX_GROWTH_KIB,
            "{case}: peak RSS {peak} KiB, from {} KiB at start",
            self.baseline_kib
        );
        eprintln!("{case}: ok (peak RSS {peak} KiB)");
        conn
    }
}

fn config(dir: &Path, socket: &Path, log: &Path) -> String {
    format!(
        "[agentx]\nsocket = \"unix:{}\"\nreconnect_max_seconds = 1\ntimeout_seconds = 1\n\
         ping_interval_seconds = 60\n\
         [log]\nsource = \"file\"\npath = [\"{}\"]\nstart_at = \"beginning\"\n\
         [state]\ndirectory = \"{}/state\"\n\
         [queue]\nenabled = false\n[process]\nenabled = false\n\
         [probes]\nenabled = false\n[certs]\nenabled = false\n[alarms]\nenabled = false\n",
        socket.display(),
        log.display(),
        dir.display()
    )
}

#[test]
fn hostile_master_leaves_the_agent_up_bounded_and_serving_snmpd_again() {
    let _exclusive = support::exclusive();
    let dir = support::temp_dir("pfagentx-hostile-master-");
    let log = dir.path().join("maillog");
    append(&log, &LineGenerator::new().take(500));
    let mut master = FakeMaster::new(dir.path());
    let mut agent = AgentProc::start(
        dir.path(),
        &config(dir.path(), &master.link, &log),
        RunAs::Current,
    );
    let mut conn = master.accept("first connection");
    conn.serves().expect("served at first");
    let baseline_kib = peak_rss_kib(agent.pid());
    let mut checks = Checks {
        agent: &mut agent,
        baseline_kib,
    };

    // A header with version 2: parseError, framing kept.
    let mut pdu = conn.request(Payload::Get(vec![range(version_oid(), None)]));
    let mut bytes = pdu.encode().unwrap();
    bytes[0] = 2;
    conn.send_bytes(&bytes);
    let r = conn.response(pdu.header.packet_id).expect("bad version");
    assert_eq!(r.error, ErrorStatus::ParseError);
    conn = checks.after("bad version", &mut master, conn, false);

    // Lengths that lie: an OID claiming 200 sub-ids in a short payload, and
    // a payload length that is not a multiple of 4.
    pdu = conn.request(Payload::Get(vec![range(version_oid(), None)]));
    bytes = pdu.encode().unwrap();
    bytes[HEADER_LEN] = 200;
    conn.send_bytes(&bytes);
    let r = conn.response(pdu.header.packet_id).expect("bad OID length");
    assert_eq!(r.error, ErrorStatus::ParseError);
    pdu = conn.request(Payload::Ping);
    bytes = pdu.encode().unwrap();
    bytes[16..20].copy_from_slice(&3u32.to_be_bytes());
    bytes.extend_from_slice(&[0xff; 3]);
    conn.send_bytes(&bytes);
    let r = conn.response(pdu.header.packet_id).expect("odd length");
    assert_eq!(r.error, ErrorStatus::ParseError);
    conn = checks.after("bad lengths", &mut master, conn, false);

    // A payload length of 0xFFFFFFF0: nothing is allocated, the connection
    // (whose framing is lost) is dropped.
    pdu = conn.request(Payload::Ping);
    bytes = pdu.encode().unwrap();
    bytes[16..20].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    conn.send_bytes(&bytes);
    conn = checks.after("payload length 0xFFFFFFF0", &mut master, conn, true);

    // GetBulk with max-repetitions 65535 over 1000 ranges: a capped answer.
    let r = conn
        .ask(Payload::GetBulk(GetBulk {
            non_repeaters: 0,
            max_repetitions: 65535,
            ranges: vec![range(root(), None); 1000],
        }))
        .expect("GetBulk 65535 x 1000");
    assert_eq!(r.error, ErrorStatus::NoError);
    assert!(
        !r.varbinds.is_empty() && r.varbinds.len() <= 2048,
        "{} varbinds",
        r.varbinds.len()
    );
    conn = checks.after("GetBulk 65535 x 1000", &mut master, conn, false);

    // 30 000 GetNext ranges in one PDU (just under the 1 MiB frame limit).
    let r = conn
        .ask(Payload::GetNext(vec![range(root(), None); 30_000]))
        .expect("30 000 GetNext ranges");
    assert_eq!(r.error, ErrorStatus::NoError);
    assert_eq!(r.varbinds.len(), 30_000);
    conn = checks.after("30 000 GetNext ranges", &mut master, conn, false);

    // A range whose end is before its start: nothing is in it.
    let start = oid(&format!("{ROOT}.1.9"));
    let end = oid(&format!("{ROOT}.1.1"));
    let r = conn
        .ask(Payload::GetNext(vec![range(
            start.clone(),
            Some(end.clone()),
        )]))
        .expect("end before start");
    assert_eq!(r.varbinds[0].value, Value::EndOfMibView, "{r:?}");
    let r = conn
        .ask(Payload::GetBulk(GetBulk {
            non_repeaters: 0,
            max_repetitions: 50,
            ranges: vec![range(start, Some(end))],
        }))
        .expect("GetBulk end before start");
    assert!(
        r.varbinds.iter().all(|v| v.value == Value::EndOfMibView),
        "{r:?}"
    );
    conn = checks.after("end before start", &mut master, conn, false);

    // A context we do not serve.
    pdu = conn.request(Payload::Get(vec![range(version_oid(), None)]));
    pdu.context = Some(b"not-ours".to_vec());
    conn.send(&pdu);
    let r = conn
        .response(pdu.header.packet_id)
        .expect("unknown context");
    assert_eq!(r.error, ErrorStatus::UnsupportedContext);
    conn = checks.after("unknown context", &mut master, conn, false);

    // An unknown PDU type.
    pdu = conn.request(Payload::Ping);
    bytes = pdu.encode().unwrap();
    bytes[1] = 99;
    conn.send_bytes(&bytes);
    let r = conn.response(pdu.header.packet_id).expect("unknown type");
    assert_eq!(r.error, ErrorStatus::ParseError);
    conn = checks.after("unknown PDU type", &mut master, conn, false);

    // Close, then garbage on the same connection.
    pdu = conn.request(Payload::Close(CloseReason::Shutdown));
    bytes = pdu.encode().unwrap();
    bytes.extend_from_slice(&[0x5a; 4096]);
    conn.send_bytes(&bytes);
    conn = checks.after("Close then garbage", &mut master, conn, true);

    // One byte every 250 ms (a Ping, 20 bytes: 5 s): answered once whole.
    pdu = conn.request(Payload::Ping);
    for b in pdu.encode().unwrap() {
        conn.send_bytes(&[b]);
        std::thread::sleep(Duration::from_millis(250));
    }
    let r = conn.response(pdu.header.packet_id).expect("trickled Ping");
    assert_eq!(r.error, ErrorStatus::NoError);
    conn = checks.after("one byte every 250 ms", &mut master, conn, false);

    // A master that sends requests and never reads the answers: the agent's
    // writes stall; within its AgentX timeout (1 s here) it must drop the
    // connection, say so, and reconnect.
    let mut writer = conn.stream.try_clone().expect("clone the stream");
    writer
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("write timeout");
    let session_id = conn.session_id;
    let flood = std::thread::spawn(move || {
        for id in 1_000u32.. {
            let bulk = Pdu::new(
                Payload::GetBulk(GetBulk {
                    non_repeaters: 0,
                    max_repetitions: 200,
                    ranges: vec![range(root(), None)],
                }),
                session_id,
                id,
                id,
            );
            if writer.write_all(&bulk.encode().unwrap()).is_err() {
                return;
            }
        }
    });
    // Nothing is read from `conn` until the agent has given up on it.
    let mut next = master.accept("a master that stops reading");
    assert!(
        checks.agent.wait_for_log_text("not reading", WAIT),
        "no log line about the master not reading\n{}",
        tail(&checks.agent.log(), 30)
    );
    drop(conn);
    flood.join().expect("flood thread");
    next = checks.after("a master that stops reading", &mut master, next, false);

    // A real snmpd at the same path: served again.
    let snmpd = Snmpd::start().expect("start snmpd");
    fs::remove_file(&master.link).unwrap();
    std::os::unix::fs::symlink(snmpd.socket_path(), &master.link).unwrap();
    drop(next);
    let version = format!("{ROOT}.1.9.1.0");
    let out = snmpd.wait_for_value(&version, Duration::from_secs(20));
    assert!(
        out.as_ref().is_ok_and(|o| o.stdout.contains("STRING")),
        "snmpd does not serve the agent after the hostile master: {out:?}\n{}",
        tail(&checks.agent.log(), 30)
    );
    assert!(checks.agent.is_running());
}
