//! The Postfix mail log.
//!
//! `parser` classifies one line (zero-copy), with `queue_id` telling queue
//! ids from other tokens and `reject` classing rejections; `counters` turns lines into
//! [`LogCounters`](crate::snapshot::LogCounters) with a bounded per-message
//! state (`qid_table`), `reader` splits any byte stream into lines, and `parse` counts
//! whole files. `follow` tails log files across rotations, `journal` reads
//! the systemd journal, and `state` saves counters and positions atomically.

pub mod bytes;
pub mod counters;
pub mod follow;
pub mod head;
pub mod journal;
pub mod parse;
pub mod parser;
pub mod qid_table;
pub mod queue_id;
pub mod reader;
pub mod reject;
pub mod state;
pub mod switch;

pub use counters::LogAccumulator;
pub use parse::parse_paths;
pub use reader::LineReader;

/// The counters as JSON, with the MIB's camelCase names.
pub fn counters_to_json(counters: &crate::snapshot::LogCounters) -> serde_json::Value {
    serde_json::to_value(counters).unwrap_or(serde_json::Value::Null)
}
