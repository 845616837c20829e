//! Benchmark helper for the log parser (see benches/parse_throughput.sh).
//!
//! `parse_bench generate OUT MIN_BYTES [FIXTURE]` writes a mail log of at
//! least MIN_BYTES by repeating the real Postfix 3.7 sample log with fresh
//! queue ids (every message of every repetition is a different message, so
//! the queue-id map works as on a real server) and advancing timestamps,
//! alternating RFC 3164 and RFC 3339 timestamps per repetition.
//!
//! `parse_bench parse FILE...` counts the files with the library's
//! `parse_paths` and prints lines/s measured inside the process.

use anyhow::{bail, Context};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

enum Piece {
    Text(Vec<u8>),
    /// Index of a distinct queue id of the sample.
    Qid(usize),
}

/// Each sample line without its timestamp, split at queue ids.
fn template(sample: &[u8]) -> (Vec<Vec<Piece>>, usize) {
    let mut ids: Vec<Vec<u8>> = Vec::new();
    let mut lines = Vec::new();
    for line in sample.split(|&b| b == b'\n').filter(|l| l.len() > 16) {
        let rest = &line[15..];
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            let start = i;
            while i < rest.len() && rest[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let word = &rest[start..i];
            let is_qid = (10..=12).contains(&word.len())
                && word
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
                && word.iter().any(|b| b.is_ascii_digit())
                && word.iter().any(|b| b.is_ascii_uppercase());
            if is_qid {
                let idx = match ids.iter().position(|id| id.as_slice() == word) {
                    Some(idx) => idx,
                    None => {
                        ids.push(word.to_vec());
                        ids.len() - 1
                    }
                };
                pieces.push(Piece::Text(std::mem::take(&mut text)));
                pieces.push(Piece::Qid(idx));
            } else {
                text.extend_from_slice(word);
            }
            if i < rest.len() {
                text.push(rest[i]);
                i += 1;
            }
        }
        pieces.push(Piece::Text(text));
        lines.push(pieces);
    }
    (lines, ids.len())
}

fn generate(out: &Path, min_bytes: u64, fixture: &Path) -> anyhow::Result<()> {
    let sample =
        std::fs::read(fixture).with_context(|| format!("reading {}", fixture.display()))?;
    let (lines, id_count) = template(&sample);
    if lines.is_empty() {
        bail!("{} has no lines", fixture.display());
    }
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut written = 0u64;
    let mut rep = 0u64;
    let mut line_count = 0u64;
    while written < min_bytes {
        // One repetition per 10 seconds of log time.
        let t = rep * 10;
        let (day, secs) = (t / 86_400 % 28 + 1, t % 86_400);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let month = (t / 86_400 / 28 % 12) as usize;
        let stamp = if rep % 2 == 0 {
            format!("{} {day:2} {h:02}:{m:02}:{s:02}", months[month])
        } else {
            format!(
                "2026-{:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}+00:00",
                month + 1,
                rep % 1_000_000
            )
        };
        // Fresh ids: 11 hex digits, distinct across repetitions.
        let base = 0x100_0000_0000u64 + rep * id_count as u64;
        for pieces in &lines {
            w.write_all(stamp.as_bytes())?;
            written += stamp.len() as u64;
            for piece in pieces {
                match piece {
                    Piece::Text(t) => {
                        w.write_all(t)?;
                        written += t.len() as u64;
                    }
                    Piece::Qid(i) => {
                        write!(w, "{:011X}", base + *i as u64)?;
                        written += 11;
                    }
                }
            }
            w.write_all(b"\n")?;
            written += 1;
            line_count += 1;
        }
        rep += 1;
    }
    w.flush()?;
    println!(
        "wrote {} ({written} bytes, {line_count} lines, {rep} repetitions)",
        out.display()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("generate") if args.len() >= 3 => {
            let fixture = args.get(3).map(PathBuf::from).unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postfix-3.7-sample.log")
            });
            let min_bytes: u64 = args[2].parse().context("MIN_BYTES")?;
            generate(Path::new(&args[1]), min_bytes, &fixture)
        }
        Some("parse") if args.len() >= 2 => {
            let paths: Vec<PathBuf> = args[1..].iter().map(PathBuf::from).collect();
            let start = Instant::now();
            let c = postfix_agentx::sources::log::parse_paths(&paths, &[])?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{} lines in {secs:.3} s: {:.2} M lines/s; delivered={} received={} rejected={} unparsed={}",
                c.lines_read,
                c.lines_read as f64 / secs / 1e6,
                c.delivered,
                c.received,
                c.rejected,
                c.lines_unparsed
            );
            Ok(())
        }
        _ => bail!("usage: parse_bench generate OUT MIN_BYTES [FIXTURE] | parse FILE..."),
    }
}
