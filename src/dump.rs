//! Renders a MIB view for people (`dump --format table`) and programs (`--format json`).

use crate::mib::names::{describe, MibNode};
use crate::snmp::MibView;
use crate::snmp::{Oid, Value};
use serde_json::{json, Map};

/// The JSON key of a MIB name: without the `postfix` prefix, lower camel case
/// (`postfixLogWarning` → `logWarning`).
pub fn json_key(name: &str) -> String {
    let rest = name.strip_prefix("postfix").unwrap_or(name);
    let mut chars = rest.chars();
    match chars.next() {
        Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
        None => name.to_string(),
    }
}

fn syntax_of<'a>(nodes: &'a [MibNode], name: &str) -> Option<&'a str> {
    nodes
        .iter()
        .find(|n| n.name == name)
        .and_then(|n| n.syntax.as_deref())
}

/// A value as text; DateAndTime octets are shown as an RFC 3339 time.
pub fn value_text(value: &Value, syntax: Option<&str>) -> String {
    match value {
        Value::OctetString(b) if syntax == Some("DateAndTime") => date_and_time_text(b),
        Value::OctetString(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_string(),
            Err(_) => b.iter().map(|x| format!("{x:02x}")).collect(),
        },
        Value::Integer(v) => v.to_string(),
        Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => v.to_string(),
        Value::Counter64(v) => v.to_string(),
        other => format!("{other:?}"),
    }
}

fn date_and_time_text(b: &[u8]) -> String {
    if b.len() < 8 || b.iter().all(|&x| x == 0) {
        return String::new();
    }
    let year = u16::from_be_bytes([b[0], b[1]]);
    format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{}Z",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

fn value_json(value: &Value, syntax: Option<&str>) -> serde_json::Value {
    match value {
        Value::Integer(v) => json!(v),
        Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => json!(v),
        Value::Counter64(v) => json!(v),
        other => json!(value_text(other, syntax)),
    }
}

/// One line per object: `name.index  value`.
pub fn render_table(view: &MibView, nodes: &[MibNode]) -> String {
    let mut out = String::new();
    for (oid, value) in view.entries() {
        let (name, index) = describe(nodes, oid);
        let label = instance_label(&name, &index);
        let text = value_text(value, syntax_of(nodes, &name));
        out.push_str(&format!("{label:<44} {text}\n"));
    }
    out
}

fn instance_label(name: &str, index: &[u32]) -> String {
    format!("{name}.{}", index_text(index))
}

/// An instance index as text: a length-prefixed printable string index is
/// shown quoted (`"smtp"`), as net-snmp does; anything else as numbers.
pub fn index_text(index: &[u32]) -> String {
    if let Some((&len, rest)) = index.split_first() {
        let printable = rest
            .iter()
            .all(|&c| (0x20..0x7f).contains(&c) && c != u32::from(b'"'));
        if len as usize == rest.len() && !rest.is_empty() && printable {
            let text: String = rest.iter().filter_map(|&c| char::from_u32(c)).collect();
            return format!("\"{text}\"");
        }
    }
    index
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// A table row for JSON: its index text and its columns.
type Row = (String, Map<String, serde_json::Value>);

/// Scalars as `key: value`, table columns grouped into rows under the
/// table's key: `"queueTable": [{"index": "4", "queueMessages": 3, ...}]`.
pub fn render_json(view: &MibView, nodes: &[MibNode]) -> serde_json::Value {
    let mut top = Map::new();
    let mut tables: Vec<(String, Vec<Row>)> = Vec::new();
    for (oid, value) in view.entries() {
        let (name, index) = describe(nodes, oid);
        let v = value_json(value, syntax_of(nodes, &name));
        if index == [0] {
            top.insert(json_key(&name), v);
            continue;
        }
        // A column: its table is two arcs up (table.entry.column).
        let node_oid = Oid::new(&oid.as_slice()[..oid.len() - index.len()]);
        let table_oid = Oid::new(&node_oid.as_slice()[..node_oid.len().saturating_sub(2)]);
        let table = nodes
            .iter()
            .find(|n| n.oid == table_oid)
            .map_or_else(|| table_oid.to_string(), |n| json_key(&n.name));
        let idx = index_text(&index).trim_matches('"').to_string();
        let rows = match tables.iter_mut().position(|(t, _)| *t == table) {
            Some(p) => &mut tables[p].1,
            None => {
                tables.push((table, Vec::new()));
                &mut tables.last_mut().expect("just pushed").1
            }
        };
        let row = match rows.iter_mut().position(|(i, _)| *i == idx) {
            Some(p) => &mut rows[p].1,
            None => {
                let mut m = Map::new();
                m.insert("index".into(), json!(idx));
                rows.push((idx, m));
                &mut rows.last_mut().expect("just pushed").1
            }
        };
        row.insert(json_key(&name), v);
    }
    for (table, rows) in tables {
        top.insert(
            table,
            serde_json::Value::Array(
                rows.into_iter()
                    .map(|(_, r)| serde_json::Value::Object(r))
                    .collect(),
            ),
        );
    }
    serde_json::Value::Object(top)
}

/// A JSON object as `key value` lines, nested keys joined with dots.
pub fn render_flat(value: &serde_json::Value) -> String {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => out.push_str(&format!("{prefix:<40} {other}\n")),
        }
    }
    let mut out = String::new();
    walk("", value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_drop_the_prefix() {
        assert_eq!(json_key("postfixDelivered"), "delivered");
        assert_eq!(json_key("postfixLogWarning"), "logWarning");
        assert_eq!(json_key("postfixQueueTotal"), "queueTotal");
    }

    #[test]
    fn string_indexes_are_quoted() {
        assert_eq!(index_text(&[4, 115, 109, 116, 112]), "\"smtp\"");
        assert_eq!(index_text(&[4]), "4");
        assert_eq!(index_text(&[0]), "0");
    }

    #[test]
    fn date_and_time_is_readable() {
        assert_eq!(
            date_and_time_text(&[0x07, 0xEA, 11, 29, 13, 33, 38, 3, b'+', 0, 0]),
            "2026-11-29T13:33:38.3Z"
        );
        assert_eq!(date_and_time_text(&[0; 8]), "");
    }
}
