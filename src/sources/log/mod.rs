//! The Postfix mail log.
//!
//! The line grammar, its imports running one way (`prefix` → `message` →
//! `reject` → `tokens`): `prefix` reads a line's syslog prefix (timestamp,
//! host, `name[pid]:` tag) zero-copy and tells Postfix's lines from other
//! programs'; `message` classifies the text after it into an event, with
//! `queue_id` telling queue ids from other tokens and `reject` classing
//! rejections; `tokens` holds the byte-token helpers they share. `head`
//! (bit masks over a line's head) and `bytes` (wide byte searches) are
//! their speed-ups. `counters` turns lines into
//! [`LogCounters`](crate::snapshot::LogCounters) with a bounded per-message
//! state (`qid_table`), `reader` splits any byte stream into lines, and
//! `count_files` counts whole files (the `parse` command). `follow` tails
//! log files across rotations, `journal` reads the systemd journal, and
//! `state` saves counters and positions atomically.

pub(crate) mod bytes;
pub(crate) mod count_files;
pub mod counters;
pub mod follow;
pub(crate) mod head;
pub(crate) mod input;
pub mod journal;
pub mod message;
pub mod prefix;
pub(crate) mod qid_table;
pub mod queue_id;
pub mod reader;
pub mod reject;
pub(crate) mod state;
pub(crate) mod switch;
pub(crate) mod tokens;

pub use count_files::parse_paths;
pub use counters::LogAccumulator;
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
