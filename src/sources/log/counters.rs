//! Turning classified log lines into `LogCounters`.
//!
//! # What each counter counts
//!
//! A line counts only if its syslog name is `postfix`, starts with
//! `postfix` (multi-instance `postfix-out`) or is a configured extra name,
//! and only by the first token after `prog[pid]: ` or after the queue id.
//!
//! * delivered: `status=sent` lines of any delivery agent, except local(8)
//!   forwards (`forwarded as NEWID`) and the discard(8) transport.
//! * forwarded: local(8) `status=sent (forwarded as NEWID)` lines.
//! * received, generated, held, discarded: see the state machine below.
//! * rejected: `reject:` and `milter-reject:` lines of smtpd, postscreen and
//!   cleanup (NOQUEUE or queue id); `reject_warning:` is not counted. The
//!   reason class comes from Postfix's wording in the reply text (after the
//!   client-chosen `<address>: `); policy servers answer with the address
//!   class's wording, so only common policy texts (`Greylisted`, `Policy
//!   Rejection`) are recognised as such. 4xx/5xx from the reply code (or the
//!   enhanced status where there is no code).
//! * deferred / bounced: `status=deferred` / `status=bounced` lines.
//! * expired: qmgr `from=<...>, status=expired, returned to sender`.
//! * logWarning/Error/Fatal/Panic: `warning:`/`error:`/`fatal:`/`panic:`
//!   directly after the tag (a `QID: warning: header ...` WARN action is not).
//! * deliveries table: every `status=sent|deferred|bounced` line by service
//!   (the middle part of `postfix/SERVICE/PROGRAM`, set by master.cf
//!   `syslog_name=postfix/$service_name`, else the program), so it also holds
//!   local forwards and the discard transport; `delay=` summed in ms.
//! * smtpConnections: smtpd `connect from` only. postscreen's `CONNECT from`
//!   is not counted: clients that pass postscreen are counted by smtpd.
//! * saslAuthFailures: smtpd `warning: host[addr]: SASL X authentication
//!   failed` (also counted as a warning).
//! * tlsConnectionsIn/Out: smtpd `... TLS connection established from` and
//!   smtp/lmtp `... TLS connection established to`; Postfix logs these only
//!   with `smtpd_tls_loglevel`/`smtp_tls_loglevel` >= 1.
//!
//! Known limits: mail re-injected after a content filter (a second smtpd
//! `client=`) and `postsuper -r` requeues (a new pickup queue id) count as
//! received again; they are indistinguishable from new mail in the log.
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
//! Memory is bounded (`qid_table::QidTable`): QIDs live in two generations (of one
//! hash table); when the young one reaches half the capacity the old one is
//! dropped and the young one becomes old. Lookups promote entries, so live
//! messages survive while forgotten ones (whose `removed` line was never
//! seen) age out.

use super::message::{Action, Event, Severity, Status};
use super::prefix::{self, Line, Tag};
use super::qid_table::{QidHashBuilder, QidKey, QidTable, DEFAULT_QID_CAPACITY};
use super::reject::StatusClass;
use crate::snapshot::{DeliveryCount, LogCounters, RejectCount};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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

/// A fatal/panic line for an alarm text: lossy UTF-8, at most 255 bytes.
fn severe_line_text(line: &[u8]) -> String {
    let cut = &line[..line.len().min(255)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    while text.len() > 255 {
        text.pop();
    }
    text
}

/// Counts log lines into [`LogCounters`]. Serializable so a follower can
/// persist it (counters and message state) across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogAccumulator {
    pub counters: LogCounters,
    qids: QidTable,
    /// smtpd pid → HOLD_PENDING/DISCARD_PENDING logged with NOQUEUE.
    pending_sessions: HashMap<u32, u8, QidHashBuilder>,
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
            pending_sessions: HashMap::default(),
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
        match prefix::parse_line(line, &self.extra_names) {
            Line::Unparsed => self.counters.lines_unparsed += 1,
            Line::Foreign => {}
            Line::Postfix(p) => {
                match p.event {
                    Event::Severity {
                        severity: Severity::Fatal,
                        ..
                    } => self.counters.last_fatal_line = Some(severe_line_text(line)),
                    Event::Severity {
                        severity: Severity::Panic,
                        ..
                    } => self.counters.last_panic_line = Some(severe_line_text(line)),
                    _ => {}
                }
                self.apply(&p.tag, p.event)
            }
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
                self.end_session(tag);
            }
            Event::SmtpdDisconnect => {
                self.end_session(tag);
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
                let pending = if tag.program == b"smtpd" {
                    self.end_session(tag)
                } else {
                    0
                };
                let flags = self.qids.entry_new(key);
                *flags |= u16::from(ORIGIN_CLIENT | (pending & HOLD_PENDING));
                if pending & DISCARD_PENDING != 0 {
                    *flags |= DISCARDED;
                }
                settle(flags, &mut self.counters);
            }
            Action::MessageId => {
                let Some(key) = key else { return };
                let flags = self.qids.entry(key);
                *flags |= u16::from(CONTENT);
                settle(flags, &mut self.counters);
            }
            Action::Hold => match key {
                Some(key) => {
                    let flags = self.qids.entry(key);
                    *flags |= u16::from(HOLD_PENDING);
                    settle(flags, &mut self.counters);
                }
                None => {
                    // smtpd NOQUEUE: wait for this session's client= line.
                    if let Some(pid) = tag.pid().filter(|_| tag.program == b"smtpd") {
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
                    match tag.pid().filter(|_| tag.program == b"smtpd") {
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

    /// Forget (and return) what an smtpd session had pending. Pending
    /// NOQUEUE holds and discards are rare: most lines find the map empty
    /// and skip parsing the pid and hashing.
    #[inline]
    fn end_session(&mut self, tag: &Tag<'_>) -> u8 {
        if self.pending_sessions.is_empty() {
            return 0;
        }
        tag.pid()
            .and_then(|pid| self.pending_sessions.remove(&pid))
            .unwrap_or(0)
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
}

/// Commit a pending hold once the message has content.
fn settle(flags: &mut u16, counters: &mut LogCounters) {
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
            counters.held += 1;
            if *flags & u16::from(ORIGIN_CLIENT | RECEIVED) == u16::from(ORIGIN_CLIENT) {
                *flags |= u16::from(RECEIVED);
                counters.received += 1;
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
    // A server has a handful of transports: comparing the bytes of the
    // first rows costs less than UTF-8 checking the name and a tree search.
    if let Some(row) = counters
        .deliveries
        .iter_mut()
        .take(16)
        .find_map(|(name, row)| (name.as_bytes() == service).then_some(row))
    {
        update(row);
        return;
    }
    let name = std::str::from_utf8(service).unwrap_or(OTHER_TRANSPORT);
    if let Some(row) = counters.deliveries.get_mut(name) {
        update(row);
        return;
    }
    let name = if counters.deliveries.len() >= MAX_TRANSPORTS {
        OTHER_TRANSPORT
    } else {
        name
    };
    update(counters.deliveries.entry(name.to_owned()).or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::RejectReason;

    fn count_with(names: &[String], text: &str) -> LogCounters {
        let mut acc = LogAccumulator::new(names);
        for line in text.lines() {
            acc.ingest_line(line.trim_start().as_bytes());
        }
        acc.counters
    }

    fn count(text: &str) -> LogCounters {
        count_with(&[], text)
    }

    /// One message from an SMTP client through to a delivery.
    const SMTP_MESSAGE: &str = "\
        Nov 29 13:13:38 mx postfix/smtpd[100]: connect from client.example[192.0.2.1]
        Nov 29 13:13:38 mx postfix/smtpd[100]: 4F3A21C0D2: client=client.example[192.0.2.1]
        Nov 29 13:13:38 mx postfix/cleanup[101]: 4F3A21C0D2: message-id=<m1@example.com>
        Nov 29 13:13:38 mx postfix/smtpd[100]: disconnect from client.example[192.0.2.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5
        Nov 29 13:13:38 mx postfix/qmgr[102]: 4F3A21C0D2: from=<a@example.com>, size=1234, nrcpt=2 (queue active)
        Nov 29 13:13:39 mx postfix/local[103]: 4F3A21C0D2: to=<u@mx.example>, relay=local, delay=0.52, delays=0.1/0.01/0/0.41, dsn=2.0.0, status=sent (delivered to mailbox)
        Nov 29 13:13:39 mx postfix/smtp[104]: 4F3A21C0D2: to=<r@remote.example>, relay=mx.remote.example[198.51.100.7]:25, delay=1.5, delays=0.1/0/0.4/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 1234)
        Nov 29 13:13:39 mx postfix/qmgr[102]: 4F3A21C0D2: removed";

    #[test]
    fn smtp_message_is_received_once_and_delivered_per_recipient() {
        let c = count(SMTP_MESSAGE);
        assert_eq!(c.received, 1);
        assert_eq!(c.received_bytes, 1234);
        assert_eq!(c.delivered, 2);
        assert_eq!(c.smtp_connections, 1);
        assert_eq!(c.lines_read, 8);
        assert_eq!(c.lines_unparsed, 0);
        assert_eq!(c.deliveries["local"].sent, 1);
        assert_eq!(c.deliveries["local"].delay_ms_sum, 520);
        assert_eq!(c.deliveries["smtp"].delay_ms_sum, 1500);
    }

    #[test]
    fn deferred_retry_is_not_received_again() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/pickup[9]: 4F3A21C0D3: uid=1000 from=<me@example.com>
             Nov 29 13:13:38 mx postfix/cleanup[10]: 4F3A21C0D3: message-id=<x@y>
             Nov 29 13:13:38 mx postfix/qmgr[11]: 4F3A21C0D3: from=<me@example.com>, size=500, nrcpt=1 (queue active)
             Nov 29 13:13:40 mx postfix/smtp[12]: 4F3A21C0D3: to=<r@remote.example>, relay=none, delay=2, delays=0/0/2/0, dsn=4.4.1, status=deferred (connect to remote.example[198.51.100.1]:25: Connection refused)
             Nov 29 14:13:38 mx postfix/qmgr[11]: 4F3A21C0D3: from=<me@example.com>, size=500, nrcpt=1 (queue active)
             Nov 29 14:13:40 mx postfix/smtp[12]: 4F3A21C0D3: to=<r@remote.example>, relay=none, delay=3602, delays=3600/0/2/0, dsn=4.4.1, status=deferred (connect to remote.example[198.51.100.1]:25: Connection refused)
             Nov 29 15:13:38 mx postfix/qmgr[11]: 4F3A21C0D3: from=<me@example.com>, size=500, nrcpt=1 (queue active)
             Nov 29 15:13:40 mx postfix/smtp[12]: 4F3A21C0D3: to=<r@remote.example>, relay=mx[198.51.100.1]:25, delay=7202, delays=7200/0/1/1, dsn=5.1.1, status=bounced (host mx[198.51.100.1] said: 550 5.1.1 no such user (in reply to RCPT TO command))
             Nov 29 15:13:40 mx postfix/bounce[13]: 4F3A21C0D3: sender non-delivery notification: 5A1B2C3D4E
             Nov 29 15:13:40 mx postfix/cleanup[10]: 5A1B2C3D4E: message-id=<notice@mx>
             Nov 29 15:13:40 mx postfix/qmgr[11]: 5A1B2C3D4E: from=<>, size=2000, nrcpt=1 (queue active)
             Nov 29 15:13:40 mx postfix/qmgr[11]: 4F3A21C0D3: removed",
        );
        assert_eq!(c.received, 1);
        assert_eq!(c.received_bytes, 500);
        assert_eq!(c.deferred, 2);
        assert_eq!(c.bounced, 1);
        // The bounce notice is generated, not received.
        assert_eq!(c.generated, 1);
        assert_eq!(c.deliveries["smtp"].deferred, 2);
        assert_eq!(c.deliveries["smtp"].bounced, 1);
        assert_eq!(
            c.deliveries["smtp"].delay_ms_sum,
            2000 + 3_602_000 + 7_202_000
        );
    }

    #[test]
    fn local_forward_is_forwarded_and_generated_not_delivered() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/local[5]: 4F3A21C0D2: to=<ext@remote.example>, orig_to=<alias@mx>, relay=local, delay=0.03, delays=0/0/0/0.03, dsn=2.0.0, status=sent (forwarded as 6B7C8D9E0F)
             Nov 29 13:13:38 mx postfix/local[5]: 4F3A21C0D2: to=<ext2@remote.example>, orig_to=<alias@mx>, relay=local, delay=0.03, delays=0/0/0/0.03, dsn=2.0.0, status=sent (forwarded as 6B7C8D9E0F)
             Nov 29 13:13:38 mx postfix/qmgr[6]: 6B7C8D9E0F: from=<a@example.com>, size=900, nrcpt=2 (queue active)",
        );
        assert_eq!(c.forwarded, 2);
        assert_eq!(c.delivered, 0);
        // One new message for both recipients.
        assert_eq!(c.generated, 1);
        assert_eq!(c.received, 0);
        assert_eq!(c.received_bytes, 0);
    }

    #[test]
    fn discard_transport_is_not_delivered() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/discard[5]: 4F3A21C0D2: to=<x@disc.example>, relay=none, delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (disc.example)",
        );
        assert_eq!(c.delivered, 0);
        assert_eq!(c.deliveries["discard"].sent, 1);
    }

    #[test]
    fn reject_warning_is_not_a_rejection_and_reasons_are_classified() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/smtpd[1]: NOQUEUE: reject_warning: RCPT from c[192.0.2.1]: 554 5.7.1 <rw@mx>: Recipient address rejected: Access denied; from=<s@example.com> to=<rw@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from c[192.0.2.1]: 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; from=<s@example.com> to=<u@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from c[192.0.2.1]:4711: 450 4.7.1 <u@mx>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/; from=<s@example.com> to=<u@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from c[192.0.2.1]: 450 4.7.1 <c>: Helo command rejected: Host not found; from=<s@example.com> to=<u@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtpd[1]: NOQUEUE: reject: CONNECT from c[192.0.2.1]: 554 5.7.1 <c[192.0.2.1]>: Client host rejected: Access denied; proto=SMTP
             Nov 29 13:13:38 mx postfix/smtpd[1]: 4F3A21C0D2: reject: RCPT from c[192.0.2.1]: 550 5.1.1 <nobody@mx>: Recipient address rejected: User unknown in virtual mailbox table; from=<s@example.com> to=<nobody@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtpd[1]: 4F3A21C0D2: milter-reject: END-OF-MESSAGE from c[192.0.2.1]: 5.7.1 Spam message rejected; from=<s@example.com> to=<u@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/postscreen[2]: NOQUEUE: reject: RCPT from [192.0.2.9]:52311: 550 5.7.1 Service unavailable; client [192.0.2.9] blocked using zen.spamhaus.org; from=<s@example.com>, to=<u@mx>, proto=ESMTP, helo=<c>
             Nov 29 13:13:38 mx postfix/cleanup[3]: 4F3A21C0D4: reject: header Subject: buy now from c[192.0.2.1]; from=<s@example.com> to=<u@mx> proto=ESMTP helo=<c>: 5.7.1 spam
             Nov 29 13:13:38 mx postfix/cleanup[3]: 4F3A21C0D5: milter-reject: END-OF-MESSAGE from c[192.0.2.1]: 4.7.1 Try again later; from=<s@example.com> to=<u@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from c[192.0.2.1]: 554 5.7.1 <\"Relay access denied\"@x.example>: Recipient address rejected: Access denied; from=<s@example.com> to=<\"Relay access denied\"@x.example> proto=ESMTP helo=<c>",
        );
        assert_eq!(c.rejected, 10);
        let r = |reason| c.rejects.get(&reason).copied().unwrap_or_default();
        assert_eq!(r(RejectReason::Rbl).total, 1);
        assert_eq!(r(RejectReason::PolicyService).status_4xx, 1);
        assert_eq!(r(RejectReason::HeloCheck).status_4xx, 1);
        assert_eq!(r(RejectReason::ClientCheck).status_5xx, 1);
        assert_eq!(r(RejectReason::UnknownUser).status_5xx, 1);
        assert_eq!(r(RejectReason::Milter).total, 2);
        assert_eq!(r(RejectReason::Milter).status_4xx, 1);
        assert_eq!(r(RejectReason::Postscreen).status_5xx, 1);
        assert_eq!(r(RejectReason::HeaderBodyCheck).status_5xx, 1);
        // The client-chosen address does not make it a relay denial.
        assert_eq!(r(RejectReason::RelayDenied).total, 0);
        assert_eq!(r(RejectReason::Other).total, 1);
    }

    #[test]
    fn sender_controlled_text_moves_no_counter() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/cleanup[3]: 4F3A21C0D2: warning: header Subject: status=sent (delivered to mailbox) reject: hold: discard: fatal: panic: error: from c[192.0.2.1]; from=<s@example.com> to=<u@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtp[4]: 4F3A21C0D2: to=<\"x, status=bounced (y)\"@remote.example>, relay=r[198.51.100.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok)
             Nov 29 13:13:38 mx postfix/smtp[4]: 4F3A21C0D2: to=<\"status=sent\"@remote.example>, relay=r[198.51.100.1]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (host r said: 550 status=sent (forwarded as 1234567ABC))
             Nov 29 13:13:38 mx postfix/qmgr[5]: 4F3A21C0D6: from=<\"x>, size=999999, nrcpt=1 (queue active)\"@example.com>, size=10, nrcpt=1 (queue active)
             Nov 29 13:13:38 mx postfix/qmgr[5]: 4F3A21C0D7: from=<\"x, size=5, nrcpt=1 (queue active)\"@example.com>, status=expired, returned to sender",
        );
        // The WARN action is neither a daemon warning nor anything else.
        assert_eq!(c.log_warning, 0);
        assert_eq!(c.log_fatal, 0);
        assert_eq!(c.rejected, 0);
        assert_eq!(c.held, 0);
        assert_eq!(c.discarded, 0);
        assert_eq!(c.delivered, 1);
        assert_eq!(c.bounced, 1);
        assert_eq!(c.forwarded, 0);
        assert_eq!(c.expired, 1);
    }

    #[test]
    fn quoted_sender_cannot_fake_the_size() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/smtpd[1]: 4F3A21C0D6: client=c[192.0.2.1]
             Nov 29 13:13:38 mx postfix/qmgr[5]: 4F3A21C0D6: from=<\"x>, size=999999, nrcpt=1 (queue active)\"@example.com>, size=10, nrcpt=1 (queue active)",
        );
        assert_eq!(c.received, 1);
        assert_eq!(c.received_bytes, 10);
    }

    #[test]
    fn other_programs_are_ignored_not_unparsed() {
        let c = count(
            "Nov 29 13:13:38 mx dovecot: imap-login: Login: user=<u>, method=PLAIN, rip=192.0.2.1
             Nov 29 13:13:38 mx sshd[77]: error: kex_exchange_identification: Connection closed by remote host
             Nov 29 13:13:38 mx dovecot[88]: lmtp(u): warning: status=sent reject: fatal: panic:
             Nov 29 13:13:38 mx postfix-policyd-spf-python[9]: warning: whatever
             this is not a syslog line",
        );
        assert_eq!(c.lines_read, 5);
        assert_eq!(c.lines_unparsed, 1);
        assert_eq!(c.log_error + c.log_warning + c.log_fatal + c.log_panic, 1);
    }

    #[test]
    fn severities_directly_after_the_tag() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/smtpd[1]: warning: TLS library problem: error:0A000126:SSL routines::unexpected eof while reading:../ssl/record/rec_layer_s3.c:308:
             Nov 29 13:13:38 mx postfix/master[2]: warning: process /usr/lib/postfix/sbin/smtpd pid 1 exit status 1
             Nov 29 13:13:38 mx postfix/smtpd[3]: fatal: open /etc/postfix/main.cf: Permission denied
             Nov 29 13:13:38 mx postfix/qmgr[4]: panic: myfree: corrupt or unallocated memory block
             Nov 29 13:13:38 mx postfix/sendmail[5]: error: unsupported option
             Nov 29 13:13:38 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=bob
             Nov 29 13:13:38 mx postfix/submission/smtpd[1]: warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: authentication failure",
        );
        // The OpenSSL `error:` inside a warning is a warning.
        assert_eq!(c.log_warning, 4);
        assert_eq!(c.log_error, 1);
        assert_eq!(c.log_fatal, 1);
        assert_eq!(c.log_panic, 1);
        assert_eq!(c.sasl_auth_failures, 2);
    }

    #[test]
    fn tls_and_connections() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/smtpd[1]: connect from c[192.0.2.1]
             Nov 29 13:13:38 mx postfix/smtpd[1]: Anonymous TLS connection established from c[192.0.2.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
             Nov 29 13:13:38 mx postfix/submission/smtpd[2]: connect from c[192.0.2.1]
             Nov 29 13:13:38 mx postfix/submission/smtpd[2]: Trusted TLS connection established from c[192.0.2.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
             Nov 29 13:13:38 mx postfix/smtp[3]: Verified TLS connection established to mx.example[198.51.100.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
             Nov 29 13:13:38 mx postfix/lmtp[4]: Untrusted TLS connection established to lmtp.example[198.51.100.2]:24: TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)
             Nov 29 13:13:38 mx postfix/postscreen[5]: CONNECT from [192.0.2.1]:4711 to [198.51.100.9]:25
             Nov 29 13:13:38 mx postfix/smtpd[1]: disconnect from c[192.0.2.1] ehlo=2 starttls=1 quit=1 commands=4",
        );
        assert_eq!(c.smtp_connections, 2);
        assert_eq!(c.tls_connections_in, 2);
        assert_eq!(c.tls_connections_out, 2);
    }

    #[test]
    fn held_message_is_received_once() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/smtpd[1]: connect from c[192.0.2.1]
             Nov 29 13:13:38 mx postfix/smtpd[1]: NOQUEUE: hold: RCPT from c[192.0.2.1]: <h@mx>: Recipient address triggers HOLD action; from=<s@example.com> to=<h@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtpd[1]: 4F3A21C0D2: client=c[192.0.2.1]
             Nov 29 13:13:38 mx postfix/smtpd[1]: 4F3A21C0D2: hold: RCPT from c[192.0.2.1]: <h2@mx>: Recipient address triggers HOLD action; from=<s@example.com> to=<h2@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/cleanup[2]: 4F3A21C0D2: message-id=<m@x>
             Nov 29 13:13:38 mx postfix/smtpd[1]: disconnect from c[192.0.2.1]
             Nov 29 13:20:00 mx postfix/postsuper[3]: 4F3A21C0D2: released from hold
             Nov 29 13:20:00 mx postfix/postsuper[3]: Released from hold: 1 message
             Nov 29 13:20:01 mx postfix/qmgr[4]: 4F3A21C0D2: from=<s@example.com>, size=700, nrcpt=2 (queue active)",
        );
        assert_eq!(c.held, 1);
        assert_eq!(c.received, 1);
        // Bytes only become known when qmgr sees the released message.
        assert_eq!(c.received_bytes, 700);
    }

    #[test]
    fn hold_without_data_is_not_held() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/smtpd[1]: connect from c[192.0.2.1]
             Nov 29 13:13:38 mx postfix/smtpd[1]: NOQUEUE: hold: RCPT from c[192.0.2.1]: <h@mx>: Recipient address triggers HOLD action; from=<s@example.com> to=<h@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtpd[1]: 4F3A21C0D2: client=c[192.0.2.1]
             Nov 29 13:13:38 mx postfix/smtpd[1]: lost connection after RCPT from c[192.0.2.1]
             Nov 29 13:13:38 mx postfix/smtpd[1]: disconnect from c[192.0.2.1] ehlo=1 mail=1 rcpt=1 commands=3",
        );
        assert_eq!(c.held, 0);
        assert_eq!(c.received, 0);
    }

    #[test]
    fn header_hold_and_postsuper_hold() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/pickup[1]: 4F3A21C0D2: uid=0 from=<root>
             Nov 29 13:13:38 mx postfix/cleanup[2]: 4F3A21C0D2: hold: header Subject: x from local; from=<root> to=<u@mx>: held
             Nov 29 13:13:38 mx postfix/cleanup[2]: 4F3A21C0D2: message-id=<m@x>
             Nov 29 13:13:38 mx postfix/postsuper[3]: 4F3A21C0D3: placed on hold
             Nov 29 13:13:38 mx postfix/postsuper[3]: 4F3A21C0D4: placed on hold
             Nov 29 13:13:38 mx postfix/postsuper[3]: Placed on hold: 2 messages",
        );
        assert_eq!(c.held, 3);
        // Only the pickup message is known to come from a client.
        assert_eq!(c.received, 1);
    }

    #[test]
    fn noqueue_and_header_discard_once_per_message() {
        let c = count(
            "Nov 29 13:13:38 mx postfix/smtpd[1]: connect from c[192.0.2.1]
             Nov 29 13:13:38 mx postfix/smtpd[1]: NOQUEUE: discard: RCPT from c[192.0.2.1]: <d@mx>: Recipient address triggers DISCARD action; from=<s@example.com> to=<d@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtpd[1]: 4F3A21C0D2: client=c[192.0.2.1]
             Nov 29 13:13:38 mx postfix/smtpd[1]: 4F3A21C0D2: discard: RCPT from c[192.0.2.1]: <d2@mx>: Recipient address triggers DISCARD action; from=<s@example.com> to=<d2@mx> proto=ESMTP helo=<c>
             Nov 29 13:13:38 mx postfix/smtpd[1]: disconnect from c[192.0.2.1]
             Nov 29 13:13:39 mx postfix/smtpd[1]: connect from c[192.0.2.1]
             Nov 29 13:13:39 mx postfix/smtpd[1]: 4F3A21C0D3: client=c[192.0.2.1]
             Nov 29 13:13:39 mx postfix/cleanup[2]: 4F3A21C0D3: discard: header Subject: x from c[192.0.2.1]; from=<s@example.com> to=<u@mx> proto=ESMTP helo=<c>: bye
             Nov 29 13:13:39 mx postfix/cleanup[2]: 4F3A21C0D4: milter-discard: END-OF-MESSAGE from c[192.0.2.1]: milter triggers DISCARD action; from=<s@example.com> to=<u@mx> proto=ESMTP helo=<c>",
        );
        assert_eq!(c.discarded, 3);
        assert_eq!(c.received, 0);
    }

    #[test]
    fn rfc3339_timestamps_long_queue_ids_and_instance_names() {
        let extra = vec!["mailout".to_string()];
        let c = count_with(
            &extra,
            "2026-11-29T13:13:38.123456+00:00 mx postfix-out/smtpd[1]: 4Mn3Yq0Xb3z9tQ1: client=c[192.0.2.1]
             2026-11-29T13:13:38.123456+00:00 mx postfix-out/cleanup[2]: 4Mn3Yq0Xb3z9tQ1: message-id=<m@x>
             2026-11-29T13:13:38Z mx postfix-out/qmgr[3]: 4Mn3Yq0Xb3z9tQ1: from=<s@example.com>, size=42, nrcpt=1 (queue active)
             2026-11-29T13:13:39.5+01:00 mx mailout/relay/smtp[4]: 4Mn3Yq0Xb3z9tQ1: to=<r@remote.example>, relay=r[198.51.100.1]:25, delay=0.25, delays=0/0/0/0.25, dsn=2.0.0, status=sent (250 ok)
             Nov  9 03:03:03 mx postfix/submission/smtpd[5]: connect from c[192.0.2.1]
             Nov  9 03:03:03.123456 mx postfix/smtpd[6]: connect from c[192.0.2.1]",
        );
        assert_eq!(c.received, 1);
        assert_eq!(c.received_bytes, 42);
        assert_eq!(c.delivered, 1);
        assert_eq!(c.deliveries["relay"].sent, 1);
        assert_eq!(c.deliveries["relay"].delay_ms_sum, 250);
        assert_eq!(c.smtp_connections, 2);
        assert_eq!(c.lines_unparsed, 0);
        // Without the extra name, mailout/ is another program.
        let c = count("Nov  9 03:03:03 mx mailout/smtp[4]: 4F3A21C0D2: to=<r@x>, relay=r, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (ok)");
        assert_eq!(c.delivered, 0);
    }

    #[test]
    fn garbage_never_panics() {
        let mut acc = LogAccumulator::new(&[]);
        let lines: Vec<Vec<u8>> = vec![
            b"Nov 29 13:13:38 mx postfix/smtpd[1]: \xff\xfe\x00 connect from \x00".to_vec(),
            b"Nov 29 13:13:38 mx postfix/qmgr[1]: 4F3A21C0D2: from=<\xff".to_vec(),
            b"Nov 29 13:13:38 mx postfix/local[1]: 4F3A21C0D2: to=<\"unterminated".to_vec(),
            b"Nov 29 13:13:38 mx postfix/smtpd[99999999999999]: warning: x".to_vec(),
            b"Nov 29 13:13:38 mx postfix/smtpd[1]:".to_vec(),
            b"Nov 29 13:13:38 mx".to_vec(),
            b"\x00\x00\x00".to_vec(),
            Vec::new(),
            b"Nov 29 13:13:38 mx postfix/local[1]: 4F3A21C0D2: to=<a@b>, relay=local, delay=99999999999999999999.9999, delays=0, dsn=2.0.0, status=sent (x)".to_vec(),
            b"2026-11-29T13:13:38 mx postfix/\xc3[1]: 4F3A21C0D2: to=<a@b>, relay=local, delay=1, dsn=2.0.0, status=sent (x)".to_vec(),
        ];
        for line in &lines {
            acc.ingest_line(line);
        }
        assert_eq!(acc.counters.lines_read, lines.len() as u64);
        assert_eq!(acc.counters.lines_unparsed, 3);
        assert_eq!(acc.counters.log_warning, 1);
    }

    #[test]
    fn qid_memory_is_bounded() {
        let mut acc = LogAccumulator::with_capacity(&[], 1000);
        for i in 0..100_000u32 {
            let line = format!(
                "Nov 29 13:13:38 mx postfix/smtpd[1]: {:010X}: client=c[192.0.2.1]",
                i + 0x100000
            );
            acc.ingest_line(line.as_bytes());
            assert!(acc.tracked_queue_ids() <= 1000);
        }
        // Recent messages are still known.
        acc.ingest_line(b"Nov 29 13:13:38 mx postfix/qmgr[2]: 000011869F: from=<a@b>, size=1, nrcpt=1 (queue active)");
        assert_eq!(acc.counters.received, 1);
    }

    #[test]
    fn state_survives_serialization() {
        let mut acc = LogAccumulator::new(&[]);
        acc.ingest_line(b"Nov 29 13:13:38 mx postfix/smtpd[1]: 4F3A21C0D2: client=c[192.0.2.1]");
        let json = serde_json::to_string(&acc).unwrap();
        let mut restored: LogAccumulator = serde_json::from_str(&json).unwrap();
        restored.ingest_line(b"Nov 29 13:13:38 mx postfix/qmgr[2]: 4F3A21C0D2: from=<a@b>, size=10, nrcpt=1 (queue active)");
        assert_eq!(restored.counters.received, 1);
        assert_eq!(restored.counters.lines_read, 2);
    }

    /// Accumulators (each with its own hash seed) fed the same lines count
    /// the same, also when ids age out of small tables all the time.
    #[test]
    fn counts_do_not_depend_on_hash_order() {
        for period in [5u32, 9, 13, 21, 34] {
            let mut text = String::new();
            for i in 0..400u32 {
                let id = format!("{:010X}", 0x10_0000 + i % period);
                text.push_str(&format!(
                    "Nov 29 13:13:38 mx postfix/smtpd[1]: {id}: client=c[192.0.2.1]\n"
                ));
                // Earlier messages come back: their state may have aged out.
                let back = format!("{:010X}", 0x10_0000 + (i * 7 + 3) % period);
                text.push_str(&format!(
                    "Nov 29 13:13:38 mx postfix/qmgr[3]: {back}: from=<a@b>, size=5, nrcpt=1 (queue active)\n"
                ));
            }
            for capacity in [8, 12, 16, 24, 40] {
                let runs: Vec<LogCounters> = (0..3)
                    .map(|_| {
                        let mut acc = LogAccumulator::with_capacity(&[], capacity);
                        for line in text.lines() {
                            acc.ingest_line(line.as_bytes());
                        }
                        acc.counters
                    })
                    .collect();
                assert!(
                    runs.windows(2).all(|w| w[0] == w[1]),
                    "period {period} capacity {capacity}: {:?}",
                    runs.iter().map(|c| c.received).collect::<Vec<_>>()
                );
            }
        }
    }
}
