//! The shape every periodic source has: collect once, then publish what it
//! got and how it went. The daemon's one driver (`daemon::drive`) runs each
//! collector on its thread for `run` and once for `dump`, times every
//! collection and records success, failure and duration in the source's
//! health row the same way for all of them (as node_exporter does with
//! `collector_success` and `collector_duration_seconds`).
//!
//! The log source is not one: it streams (it waits for new lines, it is not
//! polled), and keeps its health row itself.

use crate::snapshot::Snapshot;
use std::time::Duration;

/// A source that is collected again and again.
pub trait Collector: Send {
    /// Its row in the health table (`queue`, `process`, `certs`, `probes`).
    fn source(&self) -> &'static str;
    /// Time from the start of one collection to the start of the next.
    fn interval(&self) -> Duration;
    /// Collects once; blocks (files, sockets, /proc, network).
    fn collect(&mut self) -> Collected;
}

/// What one collection got.
pub struct Collected {
    /// What the source reads and how, for the health row (`showq
    /// /var/spool/postfix/public/showq`); `None` keeps the row's detail.
    pub detail: Option<String>,
    /// Puts the values into the snapshot (or, after a failure, takes away
    /// what would now mislead) and says how the collection went. It may
    /// look at the snapshot: a probe's outcome depends on the other probes.
    pub publish: Box<dyn FnOnce(&mut Snapshot) -> Outcome + Send>,
}

/// How a collection went, for the health row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Failed, or only partly done; the text says what went wrong.
    Failure(String),
    /// Nothing to say: the row keeps its state (a probe that works while
    /// another still fails).
    Unchanged,
}

impl Collected {
    /// A collection that got nothing and changes no value.
    pub fn failed(detail: Option<String>, why: String) -> Collected {
        Collected {
            detail,
            publish: Box::new(move |_| Outcome::Failure(why)),
        }
    }
}
