//! Scans a Postfix queue once and prints the rows as JSON; used by
//! `benches/queue_scan.sh`, and handy to see what the agent would report.
//!
//! ```text
//! queue_scan --queue-dir /var/spool/postfix [--method auto|showq|directory]
//!            [--counts-only] [--threads N] [--repeat N]
//! queue_scan --generate N --queue-dir DIR     # synthetic deferred/[0-F]/ID tree
//! ```

use anyhow::{bail, Context};
use clap::Parser;
use postfix_agentx::snapshot::QueueMethod;
use postfix_agentx::snapshot::QueueMethodChoice;
use postfix_agentx::sources::queue::{QueueScanConfig, QueueScanner};
use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

#[path = "../benches/common/queue_tree.rs"]
mod queue_tree;

#[derive(Parser)]
struct Args {
    /// The Postfix queue directory (default: `postconf -h queue_directory`).
    #[arg(long)]
    queue_dir: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    method: String,
    /// Directory method: messages only, no bytes or oldest arrival.
    #[arg(long)]
    counts_only: bool,
    #[arg(long)]
    threads: Option<usize>,
    /// Scan this many times; report every duration.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Instead of scanning, create N sparse files of 300 bytes under
    /// DIR/deferred/[0-F]/ (hash_queue_depth = 1), plus the other queue dirs.
    #[arg(long)]
    generate: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.generate {
        let dir = args.queue_dir.context("--generate needs --queue-dir")?;
        return queue_tree::generate(&dir, n);
    }
    let method = match args.method.as_str() {
        "auto" => QueueMethodChoice::Auto,
        "showq" => QueueMethodChoice::Showq,
        "directory" => QueueMethodChoice::Directory,
        other => bail!("unknown method {other}"),
    };
    let mut config = QueueScanConfig {
        method,
        queue_directory: args.queue_dir,
        details: !args.counts_only,
        time_budget: Duration::from_secs(600),
        ..QueueScanConfig::default()
    };
    if let Some(t) = args.threads {
        config.threads = t;
    }
    let mut scanner = QueueScanner::new(config)?;
    for _ in 0..args.repeat {
        let started = Instant::now();
        let status = scanner.scan().map_err(anyhow::Error::new)?;
        let elapsed = started.elapsed();
        let rows: serde_json::Map<String, serde_json::Value> = status
            .rows
            .iter()
            .map(|r| {
                let oldest = r
                    .oldest_arrival
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
                (
                    r.queue.name().to_owned(),
                    serde_json::json!({"messages": r.messages, "bytes": r.bytes, "oldest": oldest}),
                )
            })
            .collect();
        let method = match status.method {
            QueueMethod::Showq => "showq",
            QueueMethod::Directory => "directory",
        };
        println!(
            "{}",
            serde_json::json!({
                "method": method,
                "seconds": elapsed.as_secs_f64(),
                "total": status.total(),
                "rows": rows,
            })
        );
    }
    Ok(())
}
