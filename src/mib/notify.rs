//! Alarm events as SNMP notifications: the varbinds of an AgentX Notify.
//!
//! `snmpTrapOID.0` comes first, then the alarm's row and the object the
//! alarm is about; snmpd adds `sysUpTime.0`. No Counter64 values, so SNMPv1
//! trap sinks can carry every notification.

use super::build::{alarm_columns, arc, column_oid, string_index};
use crate::snapshot::{AlarmEvent, AlarmKind};
use crate::snapshot::{ProcessState, QueueName, Snapshot};
use crate::snmp::{Oid, Value, VarBind};

/// SNMPv2-MIB::snmpTrapOID.0
pub const SNMP_TRAP_OID_0: [u32; 11] = [1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];

/// The notification OID of an event: raise = 2k-1, clear = 2k for kind k.
pub fn notification_oid(root: &Oid, event: &AlarmEvent) -> Oid {
    let (kind, clear) = match event {
        AlarmEvent::Raised(a) => (a.kind as u32, 0),
        AlarmEvent::Cleared(a) => (a.kind as u32, 1),
    };
    root.child(&[arc::NOTIFICATIONS, 2 * kind - 1 + clear])
}

pub fn varbinds(root: &Oid, event: &AlarmEvent, snapshot: &Snapshot) -> Vec<VarBind> {
    let alarm = match event {
        AlarmEvent::Raised(a) | AlarmEvent::Cleared(a) => a,
    };
    let mut out = vec![VarBind {
        name: Oid::new(SNMP_TRAP_OID_0),
        value: Value::ObjectIdentifier(notification_oid(root, event)),
    }];
    let idx = string_index(&alarm.key);
    for (column, value) in alarm_columns(alarm) {
        // postfixAlarmName, Severity, Value, Threshold, Text (as in the MIB's OBJECTS).
        if matches!(column, 2 | 4 | 6 | 7 | 8) {
            out.push(VarBind {
                name: column_oid(root, arc::ALARM, arc::GROUP_TABLE, column, &idx),
                value,
            });
        }
    }
    let subject = alarm.key.split_once(':').map_or("", |(_, s)| s);
    let t = arc::GROUP_TABLE;
    let mut extra = |group: [u32; 2], column: u32, index: &[u32], value: Value| {
        out.push(VarBind {
            name: column_oid(root, group, t, column, index),
            value,
        });
    };
    let gauge = |v: i64| Value::Gauge32(u32::try_from(v.max(0)).unwrap_or(u32::MAX));
    match alarm.kind {
        AlarmKind::QueueSize | AlarmKind::QueueAge => {
            if let Some(q) = QueueName::from_name(subject) {
                let i = [q as u32];
                extra(arc::QUEUE, 2, &i, Value::string(q.name()));
                let column = if alarm.kind == AlarmKind::QueueSize {
                    3
                } else {
                    5
                };
                extra(arc::QUEUE, column, &i, gauge(alarm.value));
            }
        }
        AlarmKind::ProcessDown => {
            let i = string_index(subject);
            let state = snapshot
                .processes
                .as_ref()
                .and_then(|p| p.rows.iter().find(|r| r.name == subject))
                .map_or(ProcessState::Down, |r| r.state);
            extra(arc::PROCESS, 2, &i, Value::string(subject));
            extra(arc::PROCESS, 8, &i, Value::Integer(state as i32));
        }
        AlarmKind::ProbeFailed => {
            let i = string_index(subject);
            let error = snapshot
                .probes
                .as_ref()
                .and_then(|p| p.iter().find(|r| r.name == subject))
                .map(|r| r.last_error.clone())
                .unwrap_or_default();
            extra(arc::PROBE, 2, &i, Value::string(subject));
            extra(
                arc::PROBE,
                10,
                &i,
                Value::string(super::build::truncate(&error, 255)),
            );
        }
        AlarmKind::CertExpiry => {
            let i = string_index(subject);
            let days = i32::try_from(alarm.value).unwrap_or(i32::MIN);
            extra(arc::CERT, 2, &i, Value::string(subject));
            extra(arc::CERT, 5, &i, Value::Integer(days));
        }
        AlarmKind::LogPanic | AlarmKind::LogFatal | AlarmKind::LogSilent => {}
    }
    out
}
