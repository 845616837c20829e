//! What our own handling of one AgentX request costs, without snmpd or a
//! socket: decode the master's GetNext frame, look the answer up in a
//! 200-object view, build and encode the Response — the work the session
//! does per request. `agentx_latency` measures the whole path through snmpd.
//!
//! Run: `cargo bench --bench agentx_handling` (prints p50/p99/mean in ns).

use postfix_agentx::agentx::codec::{ErrorStatus, Payload, Pdu, Response, SearchRange};
use postfix_agentx::agentx::session::get_next;
use postfix_agentx::snmp::Oid;
use postfix_agentx::snmp::ViewHandle;
use std::hint::black_box;
use std::time::Instant;

mod common;
use common::{bench_view as view, oid, BASE};

fn main() {
    // `cargo test --all-targets` runs benches once without `--bench`: stay quick then.
    let iterations: usize = if std::env::args().any(|a| a == "--bench") {
        200_000
    } else {
        1_000
    };
    let handle = ViewHandle::new(view());
    let subtree = oid(BASE);
    // Requests as snmpd sends them during a walk: one GetNext per object.
    let frames: Vec<Vec<u8>> = handle
        .load()
        .entries()
        .iter()
        .enumerate()
        .filter_map(|(i, (o, _))| {
            Pdu::new(
                Payload::GetNext(vec![SearchRange {
                    start: o.clone(),
                    include: false,
                    end: Oid::default(),
                }]),
                7,
                1,
                i as u32,
            )
            .encode()
            .ok()
        })
        .collect();
    let mut samples = Vec::with_capacity(iterations);
    let mut bytes = 0usize;
    for i in 0..iterations {
        let frame = &frames[i % frames.len()];
        let t = Instant::now();
        let Ok(pdu) = Pdu::decode(black_box(frame)) else {
            eprintln!("request did not decode");
            std::process::exit(1);
        };
        let view = handle.load();
        let varbinds = match &pdu.payload {
            Payload::GetNext(ranges) => ranges
                .iter()
                .map(|r| get_next(&view, &subtree, r))
                .collect(),
            _ => Vec::new(),
        };
        let response = Pdu::response_to(
            &pdu.header,
            Response {
                sys_uptime: 0,
                error: ErrorStatus::NoError,
                index: 0,
                varbinds,
            },
        );
        let encoded = response.encode().map(|b| b.len()).unwrap_or(0);
        samples.push(t.elapsed().as_nanos() as u64);
        bytes += black_box(encoded);
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    let mean = samples.iter().sum::<u64>() / samples.len() as u64;
    println!(
        "our handling of one GetNext (decode, view lookup, response encode), {iterations} requests over a 200-object view:"
    );
    println!(
        "  p50 {} ns   p99 {} ns   mean {} ns   ({bytes} response bytes)",
        pct(0.5),
        pct(0.99),
        mean
    );
}
