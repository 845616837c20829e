//! Synthetic Postfix-shaped queue trees for the queue benchmarks
//! (`examples/queue_scan.rs --generate`, `benches/queue_scan.sh` and
//! `benches/queue_scan_latency.rs` share them, under `$BENCH_DIR/qN`).
#![allow(dead_code)] // each user needs only part of it

use anyhow::{bail, Context};
use std::path::Path;

/// Creates `n` sparse 300-byte files under `dir/deferred/[0-F]/`
/// (`hash_queue_depth = 1`), plus the other, empty, queue directories.
/// Names are Postfix-like short queue IDs: 10 upper-case hex digits, hashed
/// by the first.
pub fn generate(dir: &Path, n: u64) -> anyhow::Result<()> {
    for q in [
        "maildrop", "incoming", "active", "deferred", "hold", "corrupt",
    ] {
        let path = dir.join(q);
        std::fs::create_dir_all(&path).with_context(|| path.display().to_string())?;
    }
    for h in 0..16u64 {
        let path = dir.join(format!("deferred/{h:X}"));
        std::fs::create_dir_all(&path).with_context(|| path.display().to_string())?;
    }
    for i in 0..n {
        let id = format!("{:X}{i:09X}", i % 16);
        let path = dir.join(format!("deferred/{}/{id}", &id[..1]));
        let f = std::fs::File::create(&path).with_context(|| path.display().to_string())?;
        // Sparse: a size to sum without using disk blocks.
        f.set_len(300)
            .with_context(|| format!("{}: set_len", path.display()))?;
    }
    Ok(())
}

/// Counts the regular files under `dir/deferred/*/`; fails unless there
/// are exactly `n` (a tree left half-made by an interrupted run).
pub fn check(dir: &Path, n: u64) -> anyhow::Result<()> {
    let mut found = 0u64;
    let deferred = dir.join("deferred");
    for sub in std::fs::read_dir(&deferred).with_context(|| deferred.display().to_string())? {
        let sub = sub?.path();
        if sub.is_dir() {
            for f in std::fs::read_dir(&sub).with_context(|| sub.display().to_string())? {
                if f?.file_type()?.is_file() {
                    found += 1;
                }
            }
        }
    }
    if found != n {
        bail!(
            "{} holds {found} files, not {n}: remove it and run again to recreate it",
            dir.display()
        );
    }
    Ok(())
}
