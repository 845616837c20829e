//! AgentX request latency through a real snmpd.
//!
//! Starts a private snmpd (see tests/support/snmpd.rs), runs the subagent
//! in-process with ~200 objects, and measures with a hand-written SNMPv2c UDP
//! client (BER encoded here, no process per request):
//!   - GET of one of our scalars (snmpd -> AgentX -> subagent) vs
//!   - GET of sysUpTime.0 (answered by snmpd itself),
//!   - a full GetBulk walk of our subtree.
//!
//! Run: `cargo bench --bench agentx_latency` (needs `apt-get install -y snmpd snmp`).
//! Env: BENCH_GETS (default 5000), BENCH_WALKS (default 30).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use anyhow::{bail, Context, Result};
use postfix_agentx::agentx::session::{self, MasterAddress, SessionConfig, SessionState};
use postfix_agentx::mib::ViewHandle;
use postfix_agentx::snmp::Oid;
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use support::snmpd::Snmpd;
use tokio::sync::{mpsc, watch};

use common::{bench_view, BASE};
const SYS_UPTIME: &str = "1.3.6.1.2.1.1.3.0";

fn oid(s: &str) -> Oid {
    Oid::parse(s).expect("valid OID")
}

// ---- minimal BER for SNMPv2c ----

fn push_len(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    push_len(&mut v, content.len());
    v.extend_from_slice(content);
    v
}

fn ber_int(i: i64) -> Vec<u8> {
    let bytes = i.to_be_bytes();
    let mut start = 0;
    // Drop redundant leading sign bytes.
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(0x02, &bytes[start..])
}

fn ber_oid(o: &Oid) -> Vec<u8> {
    let ids = o.as_slice();
    let mut c = vec![(ids[0] * 40 + ids[1]) as u8];
    for &id in &ids[2..] {
        let mut tmp = vec![(id & 0x7f) as u8];
        let mut v = id >> 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        c.extend(tmp);
    }
    tlv(0x06, &c)
}

/// GetRequest (0xa0) or GetBulkRequest (0xa5, non-repeaters 0).
fn request(pdu_tag: u8, request_id: i32, oid: &Oid, max_repetitions: i64) -> Vec<u8> {
    let varbind = tlv(0x30, &[ber_oid(oid), vec![0x05, 0x00]].concat());
    let (a, b) = if pdu_tag == 0xa5 {
        (0, max_repetitions)
    } else {
        (0, 0)
    };
    let pdu = tlv(
        pdu_tag,
        &[
            ber_int(i64::from(request_id)),
            ber_int(a),
            ber_int(b),
            tlv(0x30, &varbind),
        ]
        .concat(),
    );
    tlv(0x30, &[ber_int(1), tlv(0x04, b"public"), pdu].concat())
}

/// (tag, content, rest)
fn read_tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let mut len = 0usize;
        for b in buf.get(2..2 + n)? {
            len = len.checked_mul(256)?.checked_add(usize::from(*b))?;
        }
        (len, 2 + n)
    };
    let content = buf.get(hdr..hdr.checked_add(len)?)?;
    Some((tag, content, &buf[hdr + len..]))
}

fn parse_oid(c: &[u8]) -> Option<Oid> {
    let first = *c.first()?;
    let mut ids = vec![u32::from(first / 40), u32::from(first % 40)];
    let mut v: u32 = 0;
    for b in &c[1..] {
        v = (v << 7) | u32::from(b & 0x7f);
        if b & 0x80 == 0 {
            ids.push(v);
            v = 0;
        }
    }
    Some(Oid(ids))
}

fn parse_int(c: &[u8]) -> i64 {
    c.iter().fold(
        if c.first().is_some_and(|b| b & 0x80 != 0) {
            -1
        } else {
            0
        },
        |acc, b| (acc << 8) | i64::from(*b),
    )
}

/// Response varbinds as (oid, value tag), after checking id and error-status.
fn parse_response(buf: &[u8], want_id: i32) -> Result<Vec<(Oid, u8)>> {
    let bad = || anyhow::anyhow!("malformed SNMP response");
    let (_, msg, _) = read_tlv(buf).ok_or_else(bad)?;
    let (_, _version, rest) = read_tlv(msg).ok_or_else(bad)?;
    let (_, _community, rest) = read_tlv(rest).ok_or_else(bad)?;
    let (tag, pdu, _) = read_tlv(rest).ok_or_else(bad)?;
    if tag != 0xa2 {
        bail!("unexpected PDU tag {tag:#x}");
    }
    let (_, id, rest) = read_tlv(pdu).ok_or_else(bad)?;
    let (_, err, rest) = read_tlv(rest).ok_or_else(bad)?;
    let (_, _idx, rest) = read_tlv(rest).ok_or_else(bad)?;
    if parse_int(id) != i64::from(want_id) {
        bail!("request id mismatch");
    }
    if parse_int(err) != 0 {
        bail!("error-status {}", parse_int(err));
    }
    let (_, mut list, _) = read_tlv(rest).ok_or_else(bad)?;
    let mut out = Vec::new();
    while !list.is_empty() {
        let (_, vb, r) = read_tlv(list).ok_or_else(bad)?;
        list = r;
        let (_, name, r) = read_tlv(vb).ok_or_else(bad)?;
        let (vtag, _, _) = read_tlv(r).ok_or_else(bad)?;
        out.push((parse_oid(name).ok_or_else(bad)?, vtag));
    }
    Ok(out)
}

struct Client {
    sock: UdpSocket,
    next_id: i32,
    buf: Vec<u8>,
}

impl Client {
    fn new(port: u16) -> Result<Client> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.connect(("127.0.0.1", port))?;
        sock.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(Client {
            sock,
            next_id: 1,
            buf: vec![0; 65_536],
        })
    }

    fn call(&mut self, tag: u8, oid: &Oid, max_rep: i64) -> Result<Vec<(Oid, u8)>> {
        let id = self.next_id;
        self.next_id += 1;
        self.sock.send(&request(tag, id, oid, max_rep))?;
        let n = self.sock.recv(&mut self.buf).context("no SNMP response")?;
        parse_response(&self.buf[..n], id)
    }

    fn get(&mut self, oid: &Oid) -> Result<()> {
        let vbs = self.call(0xa0, oid, 0)?;
        match vbs.first() {
            Some((o, tag)) if o == oid && *tag < 0x80 => Ok(()),
            other => bail!("GET {oid}: unexpected {other:?}"),
        }
    }

    /// Walks `base` with GetBulk; returns the number of objects.
    fn bulkwalk(&mut self, base: &Oid, max_rep: i64) -> Result<usize> {
        let mut count = 0;
        let mut cursor = base.clone();
        loop {
            let vbs = self.call(0xa5, &cursor, max_rep)?;
            if vbs.is_empty() {
                bail!("empty GetBulk response");
            }
            for (o, tag) in vbs {
                if !o.starts_with(base) || tag >= 0x80 {
                    return Ok(count);
                }
                count += 1;
                cursor = o;
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let gets = env_usize("BENCH_GETS", 5000);
    let walks = env_usize("BENCH_WALKS", 30);
    let snmpd = Snmpd::start()?;

    let view = bench_view();
    let objects = view.len();
    let mut cfg = SessionConfig::new(MasterAddress::Unix(snmpd.socket_path()), oid(BASE));
    cfg.backoff_initial = Duration::from_millis(50);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (state_tx, state) = watch::channel(SessionState::Connecting);
    let (_notify, notify_rx) = mpsc::channel(1);
    let handle = ViewHandle::new(view);
    let agent = std::thread::spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(session::run(cfg, handle, notify_rx, state_tx, shutdown_rx))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(*state.borrow(), SessionState::Connected { .. }) {
        if Instant::now() > deadline {
            bail!("subagent did not register; snmpd log:\n{}", snmpd.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut client = Client::new(snmpd.port())?;
    let ours = oid(&format!("{BASE}.2.0"));
    let uptime = oid(SYS_UPTIME);
    for _ in 0..200 {
        client.get(&ours)?;
        client.get(&uptime)?;
    }
    // Interleaved so both see the same machine conditions.
    let mut t_ours = Vec::with_capacity(gets);
    let mut t_snmpd = Vec::with_capacity(gets);
    for _ in 0..gets {
        let t = Instant::now();
        client.get(&ours)?;
        t_ours.push(t.elapsed());
        let t = Instant::now();
        client.get(&uptime)?;
        t_snmpd.push(t.elapsed());
    }
    t_ours.sort();
    t_snmpd.sort();

    let mut walk_rows = Vec::new();
    for max_rep in [10i64, 50] {
        let mut times = Vec::with_capacity(walks);
        for _ in 0..walks {
            let t = Instant::now();
            let n = client.bulkwalk(&oid(BASE), max_rep)?;
            times.push(t.elapsed());
            if n != objects {
                bail!("bulkwalk returned {n} objects, expected {objects}");
            }
        }
        times.sort();
        walk_rows.push((max_rep, times));
    }

    println!();
    println!("AgentX request latency ({gets} GETs each, interleaved; {objects} objects in view)");
    println!();
    println!("| request                                   | p50 µs | p99 µs | mean µs |");
    println!("|-------------------------------------------|-------:|-------:|--------:|");
    for (name, v) in [
        ("GET our scalar (snmpd + AgentX subagent)", &t_ours),
        ("GET sysUpTime.0 (snmpd itself)", &t_snmpd),
    ] {
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        println!(
            "| {name:<41} | {:>6} | {:>6} | {:>7} |",
            us(percentile(v, 0.5)),
            us(percentile(v, 0.99)),
            us(mean)
        );
    }
    println!();
    println!(
        "| GetBulk walk of our subtree ({objects} objects, {walks} runs) | median ms | max ms |"
    );
    println!("|----------------------------------------------------|----------:|-------:|");
    for (max_rep, times) in &walk_rows {
        println!(
            "| max-repetitions {max_rep:<34} | {:>9.2} | {:>6.2} |",
            percentile(times, 0.5).as_secs_f64() * 1e3,
            times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }
    println!();

    let _ = shutdown.send(true);
    match agent.join() {
        Ok(r) => r?,
        Err(_) => bail!("agent thread panicked"),
    }
    Ok(())
}
