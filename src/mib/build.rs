//! Builds the MIB view from a snapshot: the only place that knows both the
//! POSTFIX-MIB's OID layout and the snapshot's fields.
//!
//! The sub-identifiers here must match `mibs/POSTFIX-MIB.txt`: the tests in
//! `tests/component/mib.rs` check every served OID against the MIB's objects and
//! their SYNTAX, and net-snmp's `snmptranslate` against the MIB.

use crate::snapshot::{
    Alarm, CertRow, HealthState, LogCounters, ProbeRow, ProcessStatus, QueueStatus, RejectReason,
    Snapshot,
};
use crate::snmp::MibView;
use crate::snmp::{Oid, Value};
use std::time::SystemTime;

/// Arcs below the module root (`postfixMIB`).
pub mod arc {
    pub const LOG: [u32; 2] = [1, 1];
    pub const QUEUE: [u32; 2] = [1, 2];
    pub const PROCESS: [u32; 2] = [1, 3];
    pub const PROBE: [u32; 2] = [1, 4];
    pub const CERT: [u32; 2] = [1, 5];
    pub const ALARM: [u32; 2] = [1, 6];
    /// `postfixNotifications`, below the root.
    pub const NOTIFICATIONS: u32 = 0;
    pub const AGENT: [u32; 2] = [1, 9];
    /// Table OIDs below their group, and `entry` = 1 below the table.
    pub const REJECT_TABLE: u32 = 30;
    pub const DELIVERY_TABLE: u32 = 31;
    pub const GROUP_TABLE: u32 = 10;
}

/// Collects (OID, value) pairs below `root`.
struct Entries {
    root: Oid,
    out: Vec<(Oid, Value)>,
}

impl Entries {
    fn scalar(&mut self, group: [u32; 2], id: u32, value: Value) {
        self.out
            .push((self.root.child(&[group[0], group[1], id, 0]), value));
    }

    /// A column of a table: `group.table.1.column.index...`.
    fn column(&mut self, group: [u32; 2], table: u32, column: u32, index: &[u32], value: Value) {
        self.out
            .push((column_oid(&self.root, group, table, column, index), value));
    }
}

/// The OID of a table cell: `root.group.table.1.column.index...`.
pub fn column_oid(root: &Oid, group: [u32; 2], table: u32, column: u32, index: &[u32]) -> Oid {
    let mut oid = root.child(&[group[0], group[1], table, 1, column]);
    oid.0.extend_from_slice(index);
    oid
}

/// A non-IMPLIED string index: its length, then one sub-identifier per byte.
pub fn string_index(s: &str) -> Vec<u32> {
    let bytes = s.as_bytes();
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.push(bytes.len() as u32);
    v.extend(bytes.iter().map(|&b| u32::from(b)));
    v
}

/// SNMPv2-TC DateAndTime in UTC (11 octets, with an explicit `+00:00`).
/// `None` is the conventional all-zero 8-octet value for "unknown/never".
pub fn date_and_time(t: Option<SystemTime>) -> Value {
    let Some(t) = t else {
        return Value::OctetString(vec![0; 8]);
    };
    let Ok(ts) = jiff::Timestamp::try_from(t) else {
        return Value::OctetString(vec![0; 8]);
    };
    let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let year = u16::try_from(dt.year()).unwrap_or(0);
    let [y_hi, y_lo] = year.to_be_bytes();
    let deci = (dt.subsec_nanosecond() / 100_000_000) as u8;
    Value::OctetString(vec![
        y_hi,
        y_lo,
        dt.month() as u8,
        dt.day() as u8,
        dt.hour() as u8,
        dt.minute() as u8,
        dt.second() as u8,
        deci,
        b'+',
        0,
        0,
    ])
}

fn gauge(v: u64) -> Value {
    Value::Gauge32(u32::try_from(v).unwrap_or(u32::MAX))
}

fn seconds_since(now: SystemTime, then: SystemTime) -> u64 {
    now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0)
}

/// Builds the whole view for `snapshot` under `root`, with ages relative to `now`.
pub fn build_view(root: &Oid, snapshot: &Snapshot, now: SystemTime) -> MibView {
    let mut e = Entries {
        root: root.clone(),
        out: Vec::with_capacity(256),
    };
    if let Some(log) = &snapshot.log {
        log_entries(&mut e, log);
    }
    if let Some(queue) = &snapshot.queue {
        queue_entries(&mut e, queue, now);
    }
    if let Some(processes) = &snapshot.processes {
        process_entries(&mut e, processes);
    }
    if let Some(probes) = &snapshot.probes {
        probe_entries(&mut e, probes);
    }
    if let Some(certs) = &snapshot.certs {
        cert_entries(&mut e, certs);
    }
    if let Some(alarms) = &snapshot.alarms {
        alarm_entries(&mut e, alarms);
    }
    agent_entries(&mut e, snapshot);
    MibView::from_entries(e.out)
}

fn log_entries(e: &mut Entries, c: &LogCounters) {
    let g = arc::LOG;
    let scalars = [
        (1, c.delivered),
        (2, c.forwarded),
        (3, c.received),
        (4, c.rejected),
        (5, c.discarded),
        (6, c.deferred),
        (7, c.bounced),
        (8, c.expired),
        (9, c.held),
        (10, c.log_fatal),
        (11, c.log_warning),
        (12, c.log_panic),
        (13, c.log_error),
        (14, c.generated),
        (15, c.received_bytes),
        (16, c.smtp_connections),
        (17, c.sasl_auth_failures),
        (18, c.tls_connections_in),
        (19, c.tls_connections_out),
    ];
    for (id, v) in scalars {
        e.scalar(g, id, Value::Counter64(v));
    }
    // Every reason class has a row, so pollers see stable rows from the start.
    for reason in RejectReason::ALL {
        let r = c.rejects.get(&reason).copied().unwrap_or_default();
        let idx = [reason as u32];
        let t = arc::REJECT_TABLE;
        e.column(g, t, 2, &idx, Value::string(reason.name()));
        e.column(g, t, 3, &idx, Value::Counter64(r.total));
        e.column(g, t, 4, &idx, Value::Counter64(r.status_4xx));
        e.column(g, t, 5, &idx, Value::Counter64(r.status_5xx));
    }
    for (service, d) in &c.deliveries {
        if service.is_empty() || service.len() > 32 {
            continue;
        }
        let idx = string_index(service);
        let t = arc::DELIVERY_TABLE;
        e.column(g, t, 2, &idx, Value::string(service));
        e.column(g, t, 3, &idx, Value::Counter64(d.sent));
        e.column(g, t, 4, &idx, Value::Counter64(d.deferred));
        e.column(g, t, 5, &idx, Value::Counter64(d.bounced));
        e.column(g, t, 6, &idx, Value::Counter64(d.delay_ms_sum));
    }
}

fn queue_entries(e: &mut Entries, q: &QueueStatus, now: SystemTime) {
    let g = arc::QUEUE;
    e.scalar(g, 1, gauge(q.total()));
    e.scalar(g, 2, date_and_time(Some(q.scan_time)));
    e.scalar(
        g,
        3,
        gauge(u64::try_from(q.scan_duration.as_millis()).unwrap_or(u64::MAX)),
    );
    e.scalar(g, 4, Value::Integer(q.method as i32));
    for row in &q.rows {
        let idx = [row.queue as u32];
        let t = arc::GROUP_TABLE;
        e.column(g, t, 2, &idx, Value::string(row.queue.name()));
        e.column(g, t, 3, &idx, gauge(row.messages));
        e.column(g, t, 4, &idx, gauge(row.bytes));
        let age = row.oldest_arrival.map_or(0, |a| seconds_since(now, a));
        e.column(g, t, 5, &idx, gauge(age));
    }
}

fn process_entries(e: &mut Entries, p: &ProcessStatus) {
    let g = arc::PROCESS;
    e.scalar(g, 1, Value::string(&p.config_directory));
    for row in &p.rows {
        if row.name.is_empty() || row.name.len() > 32 {
            continue;
        }
        let idx = string_index(&row.name);
        let t = arc::GROUP_TABLE;
        e.column(g, t, 2, &idx, Value::string(&row.name));
        e.column(g, t, 3, &idx, Value::Gauge32(row.instances));
        e.column(g, t, 4, &idx, Value::Counter64(row.cpu_centiseconds));
        e.column(g, t, 5, &idx, Value::Gauge32(row.cpu_percent));
        e.column(g, t, 6, &idx, gauge(row.rss_bytes));
        e.column(g, t, 7, &idx, gauge(row.vsize_bytes / 1024));
        e.column(g, t, 8, &idx, Value::Integer(row.state as i32));
        e.column(g, t, 9, &idx, date_and_time(row.oldest_start));
        e.column(
            g,
            t,
            10,
            &idx,
            Value::Counter32(u32::try_from(row.restarts).unwrap_or(u32::MAX)),
        );
        e.column(g, t, 11, &idx, Value::string(&row.services));
    }
}

fn probe_entries(e: &mut Entries, probes: &[ProbeRow]) {
    let (g, t) = (arc::PROBE, arc::GROUP_TABLE);
    for p in probes {
        if p.name.is_empty() || p.name.len() > 32 {
            continue;
        }
        let idx = string_index(&p.name);
        e.column(g, t, 2, &idx, Value::string(&p.name));
        e.column(g, t, 3, &idx, Value::Integer(p.kind as i32));
        e.column(g, t, 4, &idx, Value::string(truncate(&p.target, 255)));
        e.column(g, t, 5, &idx, Value::Integer(p.state as i32));
        e.column(g, t, 6, &idx, gauge(p.latency_ms));
        e.column(g, t, 7, &idx, Value::Counter64(p.successes));
        e.column(g, t, 8, &idx, Value::Counter64(p.failures));
        e.column(g, t, 9, &idx, date_and_time(p.last_success));
        e.column(g, t, 10, &idx, Value::string(truncate(&p.last_error, 255)));
        e.column(g, t, 11, &idx, gauge(p.banner_ms));
        e.column(g, t, 12, &idx, gauge(p.consecutive_failures));
    }
}

fn cert_entries(e: &mut Entries, certs: &[CertRow]) {
    let (g, t) = (arc::CERT, arc::GROUP_TABLE);
    for c in certs {
        if c.name.is_empty() || c.name.len() > 64 {
            continue;
        }
        let idx = string_index(&c.name);
        let days = i32::try_from(c.days_to_expiry).unwrap_or(if c.days_to_expiry < 0 {
            i32::MIN
        } else {
            i32::MAX
        });
        e.column(g, t, 2, &idx, Value::string(&c.name));
        e.column(g, t, 3, &idx, Value::string(truncate(&c.subject, 255)));
        e.column(g, t, 4, &idx, date_and_time(Some(c.not_after)));
        e.column(g, t, 5, &idx, Value::Integer(days));
    }
}

/// The columns of one alarm row (2..=8), shared with notifications.
pub fn alarm_columns(a: &Alarm) -> [(u32, Value); 7] {
    let clamp = |v: i64| i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX });
    [
        (2, Value::string(&a.key)),
        (3, Value::Integer(a.kind as i32)),
        (4, Value::Integer(a.severity as i32)),
        (5, date_and_time(Some(a.since))),
        (6, Value::Integer(clamp(a.value))),
        (7, Value::Integer(clamp(a.threshold))),
        (8, Value::string(truncate(&a.text, 255))),
    ]
}

fn alarm_entries(e: &mut Entries, alarms: &[Alarm]) {
    let g = arc::ALARM;
    let worst = alarms.iter().map(|a| a.severity as i32).max().unwrap_or(1);
    e.scalar(g, 1, Value::Integer(worst));
    for a in alarms {
        if a.key.is_empty() || a.key.len() > 64 {
            continue;
        }
        let idx = string_index(&a.key);
        for (column, value) in alarm_columns(a) {
            e.column(g, arc::GROUP_TABLE, column, &idx, value);
        }
    }
}

fn agent_entries(e: &mut Entries, s: &Snapshot) {
    let g = arc::AGENT;
    e.scalar(g, 1, Value::string(&s.agent.version));
    e.scalar(g, 2, date_and_time(Some(s.agent.start_time)));
    e.scalar(g, 3, date_and_time(Some(s.agent.discontinuity_time)));
    if let Some(log) = &s.log {
        e.scalar(g, 4, Value::Counter64(log.lines_read));
        e.scalar(g, 5, Value::Counter64(log.lines_unparsed));
    }
    for (name, h) in &s.health {
        if name.is_empty() || name.len() > 32 {
            continue;
        }
        let idx = string_index(name);
        let t = arc::GROUP_TABLE;
        let state = match h.state {
            HealthState::Ok => 1,
            HealthState::Error => 2,
        };
        e.column(g, t, 2, &idx, Value::string(name));
        e.column(g, t, 3, &idx, Value::Integer(state));
        e.column(g, t, 4, &idx, Value::string(&h.detail));
        e.column(g, t, 5, &idx, date_and_time(h.last_success));
        e.column(g, t, 6, &idx, Value::string(truncate(&h.last_error, 255)));
        e.column(
            g,
            t,
            7,
            &idx,
            Value::Counter32(u32::try_from(h.error_count).unwrap_or(u32::MAX)),
        );
        if let Some(took) = h.last_duration {
            let ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
            e.column(g, t, 8, &idx, Value::Gauge32(ms));
        }
    }
}

/// DisplayString is at most 255 octets; cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::AgentInfo;
    use std::time::Duration;

    #[test]
    fn date_and_time_encodes_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_959_218_300);
        // 2026-11-29T13:33:38.3Z
        assert_eq!(
            date_and_time(Some(t)),
            Value::OctetString(vec![0x07, 0xEA, 11, 29, 13, 33, 38, 3, b'+', 0, 0])
        );
        assert_eq!(date_and_time(None), Value::OctetString(vec![0; 8]));
    }

    #[test]
    fn absent_collectors_leave_no_objects() {
        let root = Oid::parse("1.3.6.1.4.1.8072.9999.9999.25").unwrap();
        let snap = Snapshot::new(AgentInfo {
            version: "1".into(),
            start_time: SystemTime::UNIX_EPOCH,
            discontinuity_time: SystemTime::UNIX_EPOCH,
        });
        let view = build_view(&root, &snap, SystemTime::UNIX_EPOCH);
        assert!(!view.has_subtree(&root.child(&arc::LOG)));
        assert!(view.has_subtree(&root.child(&arc::AGENT)));
        assert_eq!(view.len(), 3);
    }

    #[test]
    fn string_index_is_length_prefixed() {
        assert_eq!(string_index("smtp"), vec![4, 115, 109, 116, 112]);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
