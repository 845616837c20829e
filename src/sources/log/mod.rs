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
pub mod input;
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

/// Saved counters at or above this are reset on load (with a new
/// discontinuity time): no real log reaches 2^63 events, and a counter left
/// there would wrap (or, in a debug build, panic) within a few increments,
/// a jump no poller could tell from real traffic.
pub const COUNTER_CEILING: u64 = 1 << 63;

/// The largest value among all counters, table rows included.
pub fn largest_counter(counters: &crate::snapshot::LogCounters) -> u64 {
    fn walk(v: &serde_json::Value) -> u64 {
        match v {
            serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
            serde_json::Value::Array(items) => items.iter().map(walk).max().unwrap_or(0),
            serde_json::Value::Object(fields) => fields.values().map(walk).max().unwrap_or(0),
            _ => 0,
        }
    }
    walk(&counters_to_json(counters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_counter_sees_scalars_and_table_rows() {
        let mut acc = LogAccumulator::new(&[]);
        assert_eq!(largest_counter(acc.counters()), 0);
        acc.counters.delivered = u64::MAX - 1;
        assert_eq!(largest_counter(acc.counters()), u64::MAX - 1);
        // A per-transport row only.
        let mut acc = LogAccumulator::new(&[]);
        acc.counters.deliveries.insert(
            "smtp".to_string(),
            crate::snapshot::DeliveryCount {
                sent: COUNTER_CEILING + 5,
                ..Default::default()
            },
        );
        assert_eq!(largest_counter(acc.counters()), COUNTER_CEILING + 5);
    }
}
