//! The NMS templates match the MIB: every OID and object name they use
//! exists, table columns are used as columns and scalars as scalars, and
//! counters are turned into rates (Zabbix CHANGE_PER_SECOND, Cacti COUNTER)
//! while gauges are not.

use postfix_agentx::mib::names::{mib_nodes, MibNode};
use postfix_agentx::mib::text::{DEFAULT_ROOT, MIB_TEXT};
use postfix_agentx::snmp::Oid;
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

const ZABBIX: &str = "templates/zabbix/postfix-agentx_zabbix_6.0.yaml";
const CACTI_DIR: &str = "templates/cacti";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn nodes() -> Vec<MibNode> {
    mib_nodes(MIB_TEXT, &Oid::parse(DEFAULT_ROOT).unwrap())
}

fn by_oid(nodes: &[MibNode]) -> HashMap<String, &MibNode> {
    nodes.iter().map(|n| (n.oid.to_string(), n)).collect()
}

fn is_counter(syntax: &str) -> bool {
    matches!(syntax, "Counter64" | "Counter32")
}

fn is_gauge_like(syntax: &str) -> bool {
    matches!(syntax, "Gauge32" | "Integer32" | "INTEGER")
}

/// True if `node` is a column: its parent is a table entry (…Entry).
fn is_column(node: &MibNode, nodes: &[MibNode]) -> bool {
    let parent = &node.oid.as_slice()[..node.oid.len() - 1];
    nodes
        .iter()
        .any(|n| n.oid.as_slice() == parent && n.name.ends_with("Entry"))
}

/// Every `postfixXxx` word in `text`.
fn object_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bpostfix[A-Z][A-Za-z0-9]*\b").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn every_object_name_in_the_templates_exists_in_the_mib() {
    let nodes = nodes();
    let known: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut files = vec![repo(ZABBIX)];
    for entry in fs::read_dir(repo(CACTI_DIR)).unwrap() {
        files.push(entry.unwrap().path());
    }
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for name in object_names(&text) {
            assert!(
                known.contains(name.as_str()),
                "{} names `{name}`, which POSTFIX-MIB does not define",
                file.display()
            );
        }
    }
}

/// One Zabbix item or item prototype: the YAML block of a list entry that
/// has a `snmp_oid:`.
#[derive(Debug)]
struct ZabbixItem {
    key: String,
    snmp_oid: String,
    description: String,
    per_second: bool,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let rest = line.trim_start().trim_start_matches("- ");
    let value = rest.strip_prefix(name)?.strip_prefix(':')?.trim();
    Some(value.trim_matches('\'').trim_matches('"'))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The YAML list entry that holds `lines[i]`: it starts at the nearest
/// `- ` line above at a smaller indent and ends before the next line
/// indented like that `- `.
fn entry(lines: &[&str], i: usize) -> std::ops::Range<usize> {
    let start = (0..=i)
        .rev()
        .find(|&j| lines[j].trim_start().starts_with("- ") && indent(lines[j]) < indent(lines[i]))
        .expect("entry start");
    let base = indent(lines[start]);
    let end = (i + 1..lines.len())
        .find(|&j| indent(lines[j]) <= base && !lines[j].trim().is_empty())
        .unwrap_or(lines.len());
    start..end
}

/// A field of the entry `block` itself, not of the entries nested in it.
fn own_field(block: &[&str], name: &str) -> String {
    let base = indent(block[0]);
    block
        .iter()
        .filter(|l| indent(l) <= base + 2)
        .find_map(|l| field(l, name))
        .unwrap_or("")
        .to_string()
}

fn zabbix_items(text: &str) -> Vec<ZabbixItem> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(oid) = field(line, "snmp_oid") else {
            continue;
        };
        let block = &lines[entry(&lines, i)];
        // Only the item's own fields count, not those of its trigger prototypes.
        let own = |name: &str| own_field(block, name);
        items.push(ZabbixItem {
            key: own("key"),
            snmp_oid: oid.to_string(),
            description: own("description"),
            per_second: block.iter().any(|l| l.contains("type: CHANGE_PER_SECOND")),
        });
    }
    items
}

#[test]
fn zabbix_items_match_the_mib_and_rate_only_counters() {
    let text = fs::read_to_string(repo(ZABBIX)).unwrap();
    assert!(text.starts_with("zabbix_export:\n  version: '6.0'\n"));
    let nodes = nodes();
    let oids = by_oid(&nodes);
    let items = zabbix_items(&text);
    assert!(items.len() >= 40, "found only {} SNMP items", items.len());
    let mut discovery = 0;
    for item in &items {
        if let Some(inner) = item
            .snmp_oid
            .strip_prefix("discovery[")
            .and_then(|s| s.strip_suffix(']'))
        {
            // discovery[{#MACRO},OID,...]: every OID is a table column.
            discovery += 1;
            let parts: Vec<&str> = inner.split(',').collect();
            assert!(parts.len() % 2 == 0, "{item:?}");
            for pair in parts.chunks(2) {
                let node = oids
                    .get(pair[1])
                    .unwrap_or_else(|| panic!("{item:?}: {} is not in the MIB", pair[1]));
                assert!(is_column(node, &nodes), "{item:?}: not a column");
            }
            continue;
        }
        let (base, column) = match item.snmp_oid.strip_suffix(".{#SNMPINDEX}") {
            Some(base) => (base, true),
            None => (
                item.snmp_oid
                    .strip_suffix(".0")
                    .unwrap_or_else(|| panic!("{item:?}: scalar OID without .0")),
                false,
            ),
        };
        let node = oids
            .get(base)
            .unwrap_or_else(|| panic!("{item:?}: {base} is not in the MIB"));
        assert_eq!(is_column(node, &nodes), column, "{item:?} vs {node:?}");
        // The description names the object the OID points at.
        assert!(
            item.description.starts_with(&node.name),
            "{item:?} polls {} but describes another object",
            node.name
        );
        let syntax = node.syntax.as_deref().unwrap_or("");
        if is_counter(syntax) {
            assert!(
                item.per_second,
                "{item:?}: {syntax} without CHANGE_PER_SECOND"
            );
        } else {
            assert!(!item.per_second, "{item:?}: {syntax} is not a counter");
        }
    }
    assert_eq!(
        discovery, 8,
        "discovery rules: queue, process, probe, cert, reject, delivery, source, alarm"
    );

    // Triggers and graphs reference items of this template by key: the SNMP
    // items above and the SNMP trap items.
    let mut keys: BTreeSet<String> = items.iter().map(|i| i.key.clone()).collect();
    keys.extend(zabbix_trap_items(&text).into_iter().map(|(key, _)| key));
    let template = "/Postfix by SNMP postfix-agentx/";
    let mut referenced = 0;
    for part in text.split(template).skip(1) {
        let key: String = part.split([',', ')']).next().unwrap().to_string();
        assert!(keys.contains(&key), "trigger references unknown item {key}");
        referenced += 1;
    }
    assert!(referenced >= 8, "{referenced} trigger item references");
    for line in text.lines() {
        if let Some(key) = field(line, "key") {
            assert!(
                keys.contains(key),
                "graph or item references unknown key {key}"
            );
        }
    }
}

#[test]
fn zabbix_triggers_cover_the_documented_conditions() {
    let text = fs::read_to_string(repo(ZABBIX)).unwrap();
    for needle in [
        "{$POSTFIX.QUEUE.MAX:\"deferred\"}",
        "{$POSTFIX.QUEUE.MAX:\"hold\"}",
        "postfix.process.status[{#SNMPINDEX}])=3",
        "{$POSTFIX.PROCESS.ALERT:\"master\"}",
        "{$POSTFIX.PROCESS.ALERT:\"qmgr\"}",
        "{$POSTFIX.PROCESS.ALERT:\"pickup\"}",
        "postfix.probe.status[{#SNMPINDEX}])=2",
        "{$POSTFIX.CERT.DAYS.WARN}",
        "{$POSTFIX.CERT.DAYS.HIGH}",
        "postfix.log.fatal,",
        "postfix.log.panic,",
        "postfix.status)=3",
        "postfix.status)=2",
    ] {
        assert!(text.contains(needle), "no trigger uses {needle}");
    }
    let macro_value = |m: &str| {
        let lines: Vec<&str> = text.lines().collect();
        let i = lines
            .iter()
            .position(|l| field(l, "macro") == Some(m))
            .unwrap_or_else(|| panic!("macro {m} missing"));
        field(lines[i + 1], "value").unwrap().to_string()
    };
    assert_eq!(macro_value("{$POSTFIX.QUEUE.MAX:\"deferred\"}"), "500");
    assert_eq!(macro_value("{$POSTFIX.QUEUE.MAX:\"hold\"}"), "0");
    assert_eq!(macro_value("{$POSTFIX.CERT.DAYS.WARN}"), "21");
    assert_eq!(macro_value("{$POSTFIX.CERT.DAYS.HIGH}"), "7");
    // Production default; tests/release/zabbix.sh sets 10s on its host.
    assert_eq!(macro_value("{$POSTFIX.ALARM.INTERVAL}"), "1m");
}

/// The SNMP trap items: (key, the item's YAML lines).
fn zabbix_trap_items(text: &str) -> Vec<(String, Vec<String>)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if field(line, "type") != Some("SNMP_TRAP") {
            continue;
        }
        let block = &lines[entry(&lines, i)];
        out.push((
            own_field(block, "key"),
            block.iter().map(|l| l.to_string()).collect(),
        ));
    }
    out
}

/// A Zabbix quoted string parameter, unquoted: `\"` is `"`, `\\` is `\`.
fn unquote(s: &str) -> String {
    s.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// The text Zabbix matches snmptrap["regex"] items against for one
/// notification, as templates/zabbix/zabbix_traphandle.sh writes it (after
/// the `ZBXTRAP` line, which Zabbix drops) with snmptrapd's `outputOption n`.
fn traphandle_text(notification: &str, key: &str, severity: u8) -> String {
    let root = DEFAULT_ROOT;
    let idx = alarm_index(key);
    format!(
        "localhost\nUDP: [127.0.0.1]:41070->[127.0.0.1]:162\n\
         .1.3.6.1.2.1.1.3.0 0:0:00:21.01\n\
         .1.3.6.1.6.3.1.1.4.1.0 .{notification}\n\
         .{root}.1.6.10.1.2.{idx} \"{key}\"\n\
         .{root}.1.6.10.1.4.{idx} {severity}\n\
         .{root}.1.6.10.1.6.{idx} 1\n\
         .{root}.1.6.10.1.7.{idx} 3\n\
         .{root}.1.6.10.1.8.{idx} \"Dec  6 03:33:42 mx postfix/smtpd[4242]: fatal: 1 in 3\"\n"
    )
}

/// The same notification in the layout of Zabbix's zabbix_trap_receiver.pl
/// (PDU INFO, then `  OID  type=N  value=TYPE: VALUE` per varbind).
fn perl_receiver_text(notification: &str, key: &str, severity: u8) -> String {
    let root = DEFAULT_ROOT;
    let idx = alarm_index(key);
    let vb =
        |oid: String, ty: u8, value: String| format!("  {oid:<30} type={ty:<2} value={value}\n");
    [
        "PDU INFO:\n  receivedfrom                   UDP: [127.0.0.1]:41070->[127.0.0.1]:162\n\
         VARBINDS:\n"
            .to_string(),
        vb(
            ".1.3.6.1.2.1.1.3.0".into(),
            67,
            "Timeticks: (2101) 0:00:21.01".into(),
        ),
        vb(
            ".1.3.6.1.6.3.1.1.4.1.0".into(),
            6,
            format!("OID: .{notification}"),
        ),
        vb(
            format!(".{root}.1.6.10.1.2.{idx}"),
            4,
            format!("STRING: \"{key}\""),
        ),
        vb(
            format!(".{root}.1.6.10.1.4.{idx}"),
            2,
            format!("INTEGER: {severity}"),
        ),
        vb(format!(".{root}.1.6.10.1.6.{idx}"), 2, "INTEGER: 1".into()),
        vb(
            format!(".{root}.1.6.10.1.8.{idx}"),
            4,
            "STRING: \"queue 2 of 3\"".into(),
        ),
    ]
    .concat()
}

/// The OID index of a postfixAlarmTable row: the key's length, then its octets.
fn alarm_index(key: &str) -> String {
    std::iter::once(key.len().to_string())
        .chain(key.bytes().map(|b| b.to_string()))
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn zabbix_alarm_traps_match_the_mib_notifications() {
    let text = fs::read_to_string(repo(ZABBIX)).unwrap();
    let nodes = nodes();
    let notifications: Vec<&MibNode> = nodes
        .iter()
        .filter(|n| n.oid.to_string().starts_with(&format!("{DEFAULT_ROOT}.0.")))
        .collect();
    assert_eq!(notifications.len(), 16, "{notifications:?}");
    let raised = |n: &MibNode| n.name.ends_with("Alarm");
    assert!(notifications
        .iter()
        .all(|n| n.name.ends_with("Alarm") || n.name.ends_with("Clear")));

    let traps = zabbix_trap_items(&text);
    assert_eq!(traps.len(), 1, "one SNMP trap item");
    let (key, block) = &traps[0];
    let item_re = key
        .strip_prefix("snmptrap[\"")
        .and_then(|k| k.strip_suffix("\"]"))
        .unwrap_or_else(|| panic!("{key} is not snmptrap[\"regex\"]"));
    let item_re = regex::Regex::new(item_re).unwrap();
    assert!(block.iter().any(|l| field(l, "value_type") == Some("LOG")));

    // The triggers on the trap item: expression, recovery, severity, tag.
    let lines: Vec<&str> = block.iter().map(String::as_str).collect();
    let find_re = regex::Regex::new(
        r#"find\(/Postfix by SNMP postfix-agentx/(snmptrap\[".*?"\]),,"regexp","((?:[^"\\]|\\.)*)"\)=1"#,
    )
    .unwrap();
    let regsub_re = regex::Regex::new(r#"\.regsub\("((?:[^"\\]|\\.)*)", \\1\)"#).unwrap();
    let patterns = |expr: &str| -> Vec<regex::Regex> {
        let found: Vec<regex::Regex> = find_re
            .captures_iter(expr)
            .map(|c| {
                assert_eq!(&c[1], key, "trigger on another item: {expr}");
                regex::Regex::new(&unquote(&c[2])).unwrap()
            })
            .collect();
        assert!(!found.is_empty(), "no find(...,\"regexp\",...) in {expr}");
        found
    };
    let mut triggers = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if field(line, "expression").is_none() {
            continue;
        }
        let trigger = &lines[entry(&lines, i)];
        let tag = trigger
            .iter()
            .position(|l| field(l, "tag") == Some("alarm"))
            .map(|j| field(trigger[j + 1], "value").unwrap().to_string())
            .expect("trigger tag alarm");
        let regsub = regsub_re
            .captures(&tag)
            .unwrap_or_else(|| panic!("tag value {tag}"));
        assert!(own_field(trigger, "event_name").contains(&regsub[0]));
        assert_eq!(own_field(trigger, "correlation_mode"), "TAG_VALUE");
        assert_eq!(own_field(trigger, "correlation_tag"), "alarm");
        assert_eq!(own_field(trigger, "type"), "MULTIPLE");
        assert_eq!(own_field(trigger, "recovery_mode"), "RECOVERY_EXPRESSION");
        triggers.push((
            own_field(trigger, "priority"),
            patterns(&own_field(trigger, "expression")),
            patterns(&own_field(trigger, "recovery_expression")),
            regex::Regex::new(&unquote(&regsub[1])).unwrap(),
        ));
    }
    let priorities: Vec<&str> = triggers.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(priorities, ["HIGH", "WARNING"]);

    for n in &notifications {
        for key in ["log:fatal", "cert:/etc/postfix/smtpd-cert.pem"] {
            for severity in [2u8, 3] {
                for trap in [
                    traphandle_text(&n.oid.to_string(), key, severity),
                    perl_receiver_text(&n.oid.to_string(), key, severity),
                ] {
                    assert!(item_re.is_match(&trap), "{} not received:\n{trap}", n.name);
                    for (priority, problem, recovery, tag) in &triggers {
                        let wanted = raised(n) && (severity == 3) == (priority == "HIGH");
                        assert_eq!(
                            problem.iter().all(|p| p.is_match(&trap)),
                            wanted,
                            "{priority} trigger, {} severity {severity}:\n{trap}",
                            n.name
                        );
                        assert_eq!(
                            recovery.iter().all(|p| p.is_match(&trap)),
                            !raised(n),
                            "{priority} recovery, {}:\n{trap}",
                            n.name
                        );
                        let got = tag.captures(&trap).map(|c| c[1].to_string());
                        assert_eq!(got.as_deref(), Some(key), "tag of {}:\n{trap}", n.name);
                    }
                }
            }
        }
    }
    // Other notifications (snmpd's coldStart) are not the item's.
    let cold_start = "localhost\nUDP: [127.0.0.1]:41070->[127.0.0.1]:162\n\
                      .1.3.6.1.2.1.1.3.0 0:0:00:00.07\n\
                      .1.3.6.1.6.3.1.1.4.1.0 .1.3.6.1.6.3.1.1.5.1\n\
                      .1.3.6.1.6.3.1.1.4.3.0 .1.3.6.1.4.1.8072.3.2.10\n";
    assert!(!item_re.is_match(cold_start));
}

/// `<tag>value</tag>` contents of every `tag` element.
fn xml_values(text: &str, tag: &str) -> Vec<String> {
    let re = regex::Regex::new(&format!(r"<{tag}>([^<]*)</{tag}>")).unwrap();
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

#[test]
fn cacti_data_queries_match_the_mib_and_data_source_types() {
    let nodes = nodes();
    let oids = by_oid(&nodes);
    let types_text =
        fs::read_to_string(repo(&format!("{CACTI_DIR}/data_source_types.tsv"))).unwrap();
    let mut types: HashMap<(String, String), (String, String)> = HashMap::new();
    for line in types_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "bad line {line:?}");
        types.insert(
            (f[0].to_string(), f[1].to_string()),
            (f[2].to_string(), f[3].to_string()),
        );
    }
    let field_re = regex::Regex::new(
        r"(?s)<!-- (postfix\w+) -->\s*<(\w+)>.*?<direction>(\w+)</direction>\s*<oid>([^<]+)</oid>\s*</(\w+)>",
    )
    .unwrap();
    let mut queries = 0;
    let mut outputs = 0;
    for entry in fs::read_dir(repo(CACTI_DIR)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        queries += 1;
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = fs::read_to_string(&path).unwrap();
        let index = xml_values(&text, "oid_index");
        assert_eq!(index.len(), 1, "{file}");
        let node = oids
            .get(index[0].trim_start_matches('.'))
            .unwrap_or_else(|| panic!("{file}: oid_index {} not in the MIB", index[0]));
        assert!(is_column(node, &nodes), "{file}: oid_index is not a column");
        // Each field: `<!-- postfixName -->` comment, then <fieldId>..<oid>..</fieldId>.
        let mut fields = 0;
        for c in field_re.captures_iter(&text) {
            fields += 1;
            let (name, id, direction, oid) = (&c[1], &c[2], &c[3], &c[4]);
            assert_eq!(id, &c[5], "{file}: malformed field {id}");
            let node = oids
                .get(oid.trim_start_matches('.'))
                .unwrap_or_else(|| panic!("{file}: {id}: {oid} not in the MIB"));
            assert_eq!(
                node.name, name,
                "{file}: {id} polls {} but says {name}",
                node.name
            );
            assert!(is_column(node, &nodes), "{file}: {id} is not a column");
            if direction == "output" {
                outputs += 1;
                let (mib_name, ds) = types
                    .get(&(file.clone(), id.to_string()))
                    .unwrap_or_else(|| panic!("{file}: output {id} has no data source type"));
                assert_eq!(mib_name, name, "{file}: {id}");
                let syntax = node.syntax.as_deref().unwrap_or("");
                match ds.as_str() {
                    "COUNTER" => assert!(is_counter(syntax), "{file}: {id} is {syntax}"),
                    "GAUGE" => assert!(is_gauge_like(syntax), "{file}: {id} is {syntax}"),
                    other => panic!("{file}: {id}: unknown DS type {other}"),
                }
            }
        }
        let declared = text.matches("<direction>").count();
        assert_eq!(
            fields + 1,
            declared,
            "{file}: a field lacks its object comment"
        );
    }
    assert_eq!(queries, 6, "queue, process, reject, delivery, probe, cert");
    assert_eq!(outputs, types.len(), "data_source_types.tsv has stale rows");
}
