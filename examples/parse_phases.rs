//! Where the parse time goes: splits an in-memory log into lines, then
//! times (1) line splitting alone, (2) splitting + `prefix::parse_line`,
//! (3) splitting + `LogAccumulator::ingest_line` (parse and count), each
//! the best of RUNS passes, in ns per line. No I/O is timed.
//!
//! `parse_phases FILE [RUNS]`

use anyhow::Context;
use postfix_agentx::sources::log::prefix::{parse_line, Line};
use postfix_agentx::sources::log::LogAccumulator;
use std::hint::black_box;
use std::time::Instant;

fn best<F: FnMut() -> u64>(runs: usize, mut pass: F) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut result = 0;
    for _ in 0..runs {
        let start = Instant::now();
        result = pass();
        best = best.min(start.elapsed().as_secs_f64());
    }
    (best, result)
}

fn lines_of(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', data).map(move |end| {
        let line = &data[start..end];
        start = end + 1;
        line
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().context("usage: parse_phases FILE [RUNS]")?;
    let runs: usize = args.get(1).map_or(Ok(5), |r| r.parse()).context("RUNS")?;
    // `parse_phases FILE 1 PHASE` runs one phase only (for callgrind).
    let only = args.get(2).map(String::as_str);
    let runs_of = |phase: &str| match only {
        Some(p) if p != phase => 0,
        _ => runs,
    };
    let data = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let lines = memchr::memchr_iter(b'\n', &data).count() as f64;
    let (split, _) = best(runs_of("split"), || {
        let mut n = 0u64;
        for line in lines_of(&data) {
            n += black_box(line).len() as u64;
        }
        n
    });
    let (parse, _) = best(runs_of("parse"), || {
        let mut n = 0u64;
        for line in lines_of(&data) {
            if let Line::Postfix(_) = black_box(parse_line(line, &[])) {
                n += 1;
            }
        }
        n
    });
    let (ingest, _) = best(runs_of("count"), || {
        let mut acc = LogAccumulator::new(&[]);
        for line in lines_of(&data) {
            acc.ingest_line(line);
        }
        acc.counters.delivered
    });
    let ns = |s: f64| s * 1e9 / lines;
    println!(
        "{lines} lines: split {:.1} ns/line, +parse {:.1}, +count {:.1} ({:.2} M lines/s)",
        ns(split),
        ns(parse),
        ns(ingest),
        lines / ingest / 1e6
    );
    Ok(())
}
