//! One-shot counting of whole log files (the `parse` subcommand).

use super::counters::LogAccumulator;
use super::reader::LineReader;
use crate::snapshot::LogCounters;
use anyhow::Context;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Count the given files in order (`-` is stdin, `*.gz` is decompressed)
/// into one set of counters. A last line without a newline is counted too:
/// the files are complete. State carries over from one file to the next,
/// so rotated files given oldest first are counted as one log.
pub fn parse_paths(paths: &[PathBuf], syslog_names: &[String]) -> anyhow::Result<LogCounters> {
    let mut acc = LogAccumulator::new(syslog_names);
    for path in paths {
        parse_path(&mut acc, path)?;
    }
    Ok(acc.counters)
}

/// Count one file into `acc`.
pub fn parse_path(acc: &mut LogAccumulator, path: &Path) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        let stdin = std::io::stdin();
        return ingest_reader(acc, stdin.lock()).context("reading standard input");
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let result = if path.extension().is_some_and(|e| e == "gz") {
        ingest_reader(acc, flate2::read::MultiGzDecoder::new(file))
    } else {
        ingest_reader(acc, file)
    };
    result.with_context(|| format!("reading {}", path.display()))
}

/// Count every line of `source`, including a last line without newline.
pub fn ingest_reader<R: Read>(acc: &mut LogAccumulator, source: R) -> std::io::Result<()> {
    let mut reader = LineReader::new(source);
    while let Some(line) = reader.next_line()? {
        acc.ingest_line(line);
    }
    if reader.pending_bytes() > 0 {
        acc.ingest_line(reader.partial_line());
    }
    Ok(())
}
