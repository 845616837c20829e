//! Turning classified log lines into `LogCounters`.
//!
//! # Message state machine (per queue id)
//!
//! Postfix logs one message's life over several lines from several daemons,
//! so `received`, `held`, `discarded` and `generated` need a little memory
//! per queue id (QID). Each QID has flags:
//!
//! * origin `CLIENT`: set by smtpd/qmqpd `QID: client=` and pickup
//!   `QID: uid=`. Origin `GENERATED`: set when bounce logs
//!   `... notification: NEWID` or local(8) logs `forwarded as NEWID` (the
//!   new QID is counted in `generated` once).
//! * `CONTENT`: cleanup logged `QID: message-id=`: the message data reached
//!   cleanup (not just an envelope).
//! * `HOLD_PENDING`: a hold action was logged for the message but it is not
//!   yet known that content followed. `DISCARDED`: the discard was counted.
//!
//! Counting rules:
//!
//! * received: once per CLIENT QID, when qmgr logs `(queue active)` for it
//!   or when it is committed to the hold queue (below). `receivedBytes` adds
//!   the `size=` of the first `(queue active)` line of a CLIENT QID. QIDs
//!   whose origin was never seen (log starts mid-flight, map eviction) are
//!   not counted: a deferred message retried later is not new mail.
//! * held: smtpd/cleanup `hold:`/`milter-hold:` mark `HOLD_PENDING`; it is
//!   committed (held += 1, and received += 1 for a CLIENT QID) when the QID
//!   also has `CONTENT`, whichever of the two lines comes first. smtpd logs
//!   access HOLD at RCPT time as `NOQUEUE: hold:` before the QID exists, so
//!   that is remembered per smtpd pid and moved to the QID at its
//!   `client=` line; a session that ends (`disconnect`) before that drops it.
//!   postsuper `QID: placed on hold` commits at once; `released from hold`
//!   allows a later hold to count again. A message is held once per stay in
//!   the hold queue, however many recipients triggered the action.
//! * discarded: counted at the `discard:`/`milter-discard:` line itself
//!   (Postfix 3.7 logs nothing more for the message: no `message-id=`, no
//!   qmgr line), once per QID; a `NOQUEUE: discard:` once per smtpd
//!   transaction (the mark moves to the QID at `client=`, so the next
//!   recipient's `QID: discard:` is not counted again). A discarded message
//!   never reaches qmgr, so it is never received.
//! * generated: once per NEWID of bounce notices and local(8) forwards.
//! * qmgr/postsuper `QID: removed` forgets the QID.
//!
//! Memory is bounded: QIDs live in two generations of hash maps; when the
//! young one reaches half the capacity the old one is dropped and the young
//! one becomes old. Lookups promote entries, so live messages survive while
//! forgotten ones (whose `removed` line was never seen) age out.

use super::parser::{self, Action, Event, Line, Severity, Status, StatusClass, Tag};
use crate::snapshot::{DeliveryCount, LogCounters, RejectCount};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Default bound on tracked queue ids (two generations together).
pub const DEFAULT_QID_CAPACITY: usize = 100_000;
/// Bound on smtpd sessions with a pending NOQUEUE hold/discard.
const MAX_PENDING_SESSIONS: usize = 4096;
/// Bound on distinct transport names in the delivery table; more go to
/// [`OTHER_TRANSPORT`] so forged tags cannot grow memory.
const MAX_TRANSPORTS: usize = 256;
pub const OTHER_TRANSPORT: &str = "(other)";

const ORIGIN_CLIENT: u8 = 1;
const ORIGIN_GENERATED: u8 = 1 << 1;
const CONTENT: u8 = 1 << 2;
const RECEIVED: u8 = 1 << 3;
const BYTES_COUNTED: u8 = 1 << 4;
const HOLD_PENDING: u8 = 1 << 5;
const HELD: u8 = 1 << 6;
const DISCARD_PENDING: u8 = 1 << 7;
// DISCARDED lives in the second byte.
const DISCARDED: u16 = 1 << 8;

/// A queue id stored inline (queue ids are at most 24 bytes, see
/// `parser::is_queue_id`), so tracking a message does not allocate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct QidKey([u8; 24]);

impl QidKey {
    pub fn new(id: &[u8]) -> Option<QidKey> {
        if id.is_empty() || id.len() > 24 {
            return None;
        }
        let mut key = [0u8; 24];
        key[..id.len()].copy_from_slice(id);
        Some(QidKey(key))
    }

    pub fn as_bytes(&self) -> &[u8] {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(24);
        &self.0[..len]
    }
}

impl std::fmt::Debug for QidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Serialize for QidKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for QidKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<QidKey, D::Error> {
        let s = String::deserialize(d)?;
        QidKey::new(s.as_bytes()).ok_or_else(|| serde::de::Error::custom("invalid queue id"))
    }
}

/// Two-generation bounded map of queue id → flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QidTable {
    capacity: usize,
    young: HashMap<QidKey, u16>,
    old: HashMap<QidKey, u16>,
}

impl QidTable {
    pub fn new(capacity: usize) -> QidTable {
        QidTable {
            capacity: capacity.max(2),
            young: HashMap::new(),
            old: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flags of `key`, 0 if unknown.
    pub fn get(&self, key: &QidKey) -> u16 {
        self.young
            .get(key)
            .or_else(|| self.old.get(key))
            .copied()
            .unwrap_or(0)
    }

    /// Mutable flags of `key`, inserting it (in the young generation).
    fn entry(&mut self, key: QidKey) -> &mut u16 {
        if !self.young.contains_key(&key) {
            let flags = self.old.remove(&key).unwrap_or(0);
            if self.young.len() >= self.capacity / 2 {
                self.old = std::mem::take(&mut self.young);
            }
            self.young.insert(key, flags);
        }
        // Just inserted or present.
        self.young.entry(key).or_insert(0)
    }

    fn remove(&mut self, key: &QidKey) {
        self.young.remove(key);
        self.old.remove(key);
    }
}

/// Counts log lines into [`LogCounters`]. Serializable so a follower can
/// persist it (counters and message state) across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogAccumulator {
    pub counters: LogCounters,
    qids: QidTable,
    /// smtpd pid → HOLD_PENDING/DISCARD_PENDING logged with NOQUEUE.
    pending_sessions: HashMap<u32, u8>,
    #[serde(skip)]
    extra_names: Vec<Vec<u8>>,
}

impl Default for LogAccumulator {
    fn default() -> Self {
        LogAccumulator::new(&[])
    }
}

impl LogAccumulator {
    /// `extra_syslog_names`: syslog names besides `postfix*` to accept.
    pub fn new(extra_syslog_names: &[String]) -> LogAccumulator {
        LogAccumulator::with_capacity(extra_syslog_names, DEFAULT_QID_CAPACITY)
    }

    pub fn with_capacity(extra_syslog_names: &[String], qid_capacity: usize) -> LogAccumulator {
        LogAccumulator {
            counters: LogCounters::default(),
            qids: QidTable::new(qid_capacity),
            pending_sessions: HashMap::new(),
            extra_names: extra_syslog_names
                .iter()
                .map(|n| n.as_bytes().to_vec())
                .collect(),
        }
    }

    /// Set the extra syslog names (they are not part of the saved state).
    pub fn set_extra_syslog_names(&mut self, names: &[String]) {
        self.extra_names = names.iter().map(|n| n.as_bytes().to_vec()).collect();
    }

    pub fn counters(&self) -> &LogCounters {
        &self.counters
    }

    /// Number of queue ids currently tracked.
    pub fn tracked_queue_ids(&self) -> usize {
        self.qids.len()
    }

    /// Count one complete line (without its newline).
    pub fn ingest_line(&mut self, line: &[u8]) {
        self.counters.lines_read += 1;
        match parser::parse_line(line, &self.extra_names) {
            Line::Unparsed => self.counters.lines_unparsed += 1,
            Line::Foreign => {}
            Line::Postfix(p) => self.apply(&p.tag, p.event),
        }
    }

    fn apply(&mut self, tag: &Tag<'_>, event: Event<'_>) {
        let c = &mut self.counters;
        match event {
            Event::Severity {
                severity,
                sasl_failure,
            } => {
                match severity {
                    Severity::Warning => c.log_warning += 1,
                    Severity::Error => c.log_error += 1,
                    Severity::Fatal => c.log_fatal += 1,
                    Severity::Panic => c.log_panic += 1,
                }
                if sasl_failure {
                    c.sasl_auth_failures += 1;
                }
            }
            Event::SmtpdConnect => {
                c.smtp_connections += 1;
                if let Some(pid) = tag.pid {
                    self.pending_sessions.remove(&pid);
                }
            }
            Event::SmtpdDisconnect => {
                if let Some(pid) = tag.pid {
                    self.pending_sessions.remove(&pid);
                }
            }
            Event::TlsIn => c.tls_connections_in += 1,
            Event::TlsOut => c.tls_connections_out += 1,
            Event::Message { qid, action } => self.apply_message(tag, qid, action),
            Event::Other => {}
        }
    }

    fn apply_message(&mut self, tag: &Tag<'_>, qid: Option<&[u8]>, action: Action<'_>) {
        let key = qid.and_then(QidKey::new);
        match action {
            Action::Client | Action::Pickup => {
                let Some(key) = key else { return };
                let mut pending = 0u8;
                if tag.program == b"smtpd" {
                    if let Some(pid) = tag.pid {
                        pending = self.pending_sessions.remove(&pid).unwrap_or(0);
                    }
                }
                let flags = self.qids.entry(key);
                *flags |= u16::from(ORIGIN_CLIENT | (pending & HOLD_PENDING));
                if pending & DISCARD_PENDING != 0 {
                    *flags |= DISCARDED;
                }
                self.settle(key);
            }
            Action::MessageId => {
                let Some(key) = key else { return };
                *self.qids.entry(key) |= u16::from(CONTENT);
                self.settle(key);
            }
            Action::Hold => match key {
                Some(key) => {
                    *self.qids.entry(key) |= u16::from(HOLD_PENDING);
                    self.settle(key);
                }
                None => {
                    // smtpd NOQUEUE: wait for this session's client= line.
                    if let Some(pid) = tag.pid.filter(|_| tag.program == b"smtpd") {
                        self.pend_session(pid, HOLD_PENDING);
                    }
                }
            },
            Action::Discard => match key {
                Some(key) => {
                    let flags = self.qids.entry(key);
                    if *flags & DISCARDED == 0 {
                        *flags |= DISCARDED;
                        self.counters.discarded += 1;
                    }
                }
                None => {
                    // Neither smtpd nor cleanup logs anything for the
                    // message after a discard, so count it now, once per
                    // SMTP transaction (the QID inherits the mark).
                    match tag.pid.filter(|_| tag.program == b"smtpd") {
                        Some(pid) => {
                            let already = self
                                .pending_sessions
                                .get(&pid)
                                .is_some_and(|p| p & DISCARD_PENDING != 0);
                            if !already {
                                self.pend_session(pid, DISCARD_PENDING);
                                self.counters.discarded += 1;
                            }
                        }
                        None => self.counters.discarded += 1,
                    }
                }
            },
            Action::PlacedOnHold => {
                let Some(key) = key else { return };
                let flags = self.qids.entry(key);
                if *flags & u16::from(HELD) == 0 {
                    *flags |= u16::from(HELD);
                    *flags &= !u16::from(HOLD_PENDING);
                    let count_received =
                        *flags & u16::from(ORIGIN_CLIENT | RECEIVED) == u16::from(ORIGIN_CLIENT);
                    if count_received {
                        *flags |= u16::from(RECEIVED);
                    }
                    self.counters.held += 1;
                    if count_received {
                        self.counters.received += 1;
                    }
                }
            }
            Action::ReleasedFromHold => {
                let Some(key) = key else { return };
                *self.qids.entry(key) &= !u16::from(HELD | HOLD_PENDING);
            }
            Action::QueueActive { size } => {
                let Some(key) = key else { return };
                let flags = self.qids.entry(key);
                if *flags & u16::from(ORIGIN_CLIENT) != 0 {
                    if *flags & u16::from(RECEIVED) == 0 {
                        *flags |= u16::from(RECEIVED);
                        self.counters.received += 1;
                    }
                    if *flags & u16::from(BYTES_COUNTED) == 0 {
                        *flags |= u16::from(BYTES_COUNTED);
                        self.counters.received_bytes =
                            self.counters.received_bytes.saturating_add(size);
                    }
                }
            }
            Action::Expired => self.counters.expired += 1,
            Action::Removed => {
                if let Some(key) = key {
                    self.qids.remove(&key);
                }
            }
            Action::Notification { new_qid } => self.count_generated(new_qid),
            Action::Delivery {
                status,
                delay_ms,
                forwarded_as,
            } => {
                let c = &mut self.counters;
                match status {
                    Status::Sent => {
                        if let Some(new_qid) = forwarded_as {
                            c.forwarded += 1;
                            self.count_generated(new_qid);
                        } else if tag.program != b"discard" {
                            c.delivered += 1;
                        }
                    }
                    Status::Deferred => c.deferred += 1,
                    Status::Bounced => c.bounced += 1,
                }
                update_delivery_row(&mut self.counters, tag.service, |row| {
                    match status {
                        Status::Sent => row.sent += 1,
                        Status::Deferred => row.deferred += 1,
                        Status::Bounced => row.bounced += 1,
                    }
                    row.delay_ms_sum = row.delay_ms_sum.saturating_add(delay_ms);
                });
            }
            Action::Reject { reason, class } => {
                let c = &mut self.counters;
                c.rejected += 1;
                let row: &mut RejectCount = c.rejects.entry(reason).or_default();
                row.total += 1;
                match class {
                    StatusClass::Temporary => row.status_4xx += 1,
                    StatusClass::Permanent => row.status_5xx += 1,
                    StatusClass::Unknown => {}
                }
            }
            Action::Other => {}
        }
    }

    fn pend_session(&mut self, pid: u32, bit: u8) {
        if self.pending_sessions.len() >= MAX_PENDING_SESSIONS {
            self.pending_sessions.clear();
        }
        *self.pending_sessions.entry(pid).or_insert(0) |= bit;
    }

    fn count_generated(&mut self, new_qid: &[u8]) {
        let Some(key) = QidKey::new(new_qid) else {
            return;
        };
        let flags = self.qids.entry(key);
        if *flags & u16::from(ORIGIN_GENERATED) == 0 {
            *flags |= u16::from(ORIGIN_GENERATED);
            self.counters.generated += 1;
        }
    }

    /// Commit pending hold/discard actions once the message has content.
    fn settle(&mut self, key: QidKey) {
        let flags = self.qids.entry(key);
        if *flags & u16::from(CONTENT) == 0 {
            return;
        }
        if *flags & DISCARDED != 0 {
            // A discarded message never reaches the hold queue.
            *flags &= !u16::from(HOLD_PENDING);
            return;
        }
        if *flags & u16::from(HOLD_PENDING) != 0 {
            *flags &= !u16::from(HOLD_PENDING);
            if *flags & u16::from(HELD) == 0 {
                *flags |= u16::from(HELD);
                self.counters.held += 1;
                if *flags & u16::from(ORIGIN_CLIENT | RECEIVED) == u16::from(ORIGIN_CLIENT) {
                    *flags |= u16::from(RECEIVED);
                    self.counters.received += 1;
                }
            }
        }
    }
}

/// Apply `update` to the delivery row of `service` (no allocation unless
/// the row is new).
fn update_delivery_row(
    counters: &mut LogCounters,
    service: &[u8],
    update: impl FnOnce(&mut DeliveryCount),
) {
    let name = std::str::from_utf8(service).unwrap_or(OTHER_TRANSPORT);
    let name = if counters.deliveries.contains_key(name) {
        name
    } else if counters.deliveries.len() >= MAX_TRANSPORTS {
        OTHER_TRANSPORT
    } else {
        name
    };
    if let Some(row) = counters.deliveries.get_mut(name) {
        update(row);
    } else {
        let mut row = DeliveryCount::default();
        update(&mut row);
        counters.deliveries.insert(name.to_owned(), row);
    }
}
