//! What the AgentX benchmarks share: the 200-object view they serve.

use postfix_agentx::snmp::MibView;
use postfix_agentx::snmp::{Oid, Value};

/// The subtree both benchmarks register or look up.
pub const BASE: &str = "1.3.6.1.4.1.8072.9999.9999.25";

pub fn oid(s: &str) -> Oid {
    Oid::parse(s).unwrap_or_default()
}

/// 5 scalars + a 3-column, 65-row table = 200 objects.
pub fn bench_view() -> MibView {
    let mut e = vec![
        (
            oid(&format!("{BASE}.1.0")),
            Value::Counter64(123_456_789_012),
        ),
        (oid(&format!("{BASE}.2.0")), Value::Gauge32(42)),
        (
            oid(&format!("{BASE}.3.0")),
            Value::OctetString(vec![0, 1, 2, 255]),
        ),
        (oid(&format!("{BASE}.4.0")), Value::Integer(-7)),
        (oid(&format!("{BASE}.6.0")), Value::string("postfix")),
    ];
    for row in 1..=65u32 {
        e.push((
            oid(&format!("{BASE}.5.1.1.{row}")),
            Value::Integer(row as i32),
        ));
        e.push((
            oid(&format!("{BASE}.5.1.2.{row}")),
            Value::string(format!("queue-{row}")),
        ));
        e.push((
            oid(&format!("{BASE}.5.1.3.{row}")),
            Value::Counter64(u64::from(row) << 33),
        ));
    }
    MibView::from_entries(e)
}
