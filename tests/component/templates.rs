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
        let text = if file.extension().and_then(|e| e.to_str()) == Some("gz") {
            // The package, and the Cacti template XML inside it.
            let package = cacti_package();
            format!("{}{}", package.xml, package.template)
        } else {
            fs::read_to_string(&file).unwrap()
        };
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
        assert_eq!(f.len(), 5, "bad line {line:?}");
        if f[3] == "COUNTER" {
            assert!(
                f[4].ends_with("per minute") || f[4] == "% of one CPU",
                "{line:?}: a counter is drawn as a rate"
            );
        }
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

const PROMETHEUS_DIR: &str = "templates/prometheus";
const LIBRENMS: &str = "templates/librenms/postfix-agentx.yaml";

#[test]
fn prometheus_and_librenms_files_name_only_mib_objects() {
    let nodes = nodes();
    let known: BTreeSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut files = vec![repo(LIBRENMS), repo("templates/librenms/README.md")];
    for entry in fs::read_dir(repo(PROMETHEUS_DIR)).unwrap() {
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

/// One metric of snmp.yml: name, OID, type, and the labels of its rows.
#[derive(Debug)]
struct SnmpMetric {
    name: String,
    oid: String,
    kind: String,
    labels: BTreeSet<String>,
}

/// The metrics of snmp.yml (the generator's fixed layout: `  - name:` then
/// `    oid:`/`    type:`, labels as `labelname:` lines).
fn snmp_yml_metrics() -> Vec<SnmpMetric> {
    let text = fs::read_to_string(repo(&format!("{PROMETHEUS_DIR}/snmp.yml"))).unwrap();
    let mut metrics: Vec<SnmpMetric> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("  - name: ") {
            metrics.push(SnmpMetric {
                name: name.to_string(),
                oid: String::new(),
                kind: String::new(),
                labels: BTreeSet::new(),
            });
            continue;
        }
        let Some(m) = metrics.last_mut() else {
            continue;
        };
        if let Some(oid) = line.strip_prefix("    oid: ") {
            m.oid = oid.to_string();
        } else if let Some(kind) = line.strip_prefix("    type: ") {
            m.kind = kind.to_string();
        } else if let Some(label) = line
            .trim_start()
            .trim_start_matches("- ")
            .strip_prefix("labelname: ")
        {
            m.labels.insert(label.to_string());
        }
    }
    metrics
}

/// The `name(number)` pairs of an object's `SYNTAX INTEGER { ... }`.
fn enum_values(name: &str) -> BTreeSet<(String, i64)> {
    let re = regex::Regex::new(&format!(
        r"(?s)\n{name} OBJECT-TYPE\s+SYNTAX\s+INTEGER\s*\{{([^}}]*)\}}"
    ))
    .unwrap();
    let Some(c) = re.captures(MIB_TEXT) else {
        return BTreeSet::new();
    };
    let item = regex::Regex::new(r"(\w+)\((-?\d+)\)").unwrap();
    item.captures_iter(&c[1])
        .map(|i| (i[1].to_string(), i[2].parse().unwrap()))
        .collect()
}

/// The index column (column 1) of the table whose entry holds `column`.
fn index_column<'a>(column: &MibNode, nodes: &'a [MibNode]) -> &'a MibNode {
    let entry = &column.oid.as_slice()[..column.oid.len() - 1];
    nodes
        .iter()
        .find(|n| {
            n.oid.len() == entry.len() + 1
                && n.oid.as_slice().starts_with(entry)
                && n.oid.as_slice()[entry.len()] == 1
        })
        .unwrap_or_else(|| panic!("no index column for {}", column.name))
}

#[test]
fn snmp_exporter_module_covers_the_mib_with_the_right_types() {
    let text = fs::read_to_string(repo(&format!("{PROMETHEUS_DIR}/snmp.yml"))).unwrap();
    assert!(
        text.starts_with("# WARNING: This file was auto-generated using snmp_exporter generator"),
        "snmp.yml is the generator's output (tests/release/prometheus.sh regenerates and compares it)"
    );
    assert!(text.contains("\npostfix_agentx:\n  walk:\n  - 1.3.6.1.4.1.8072.9999.9999.25.1\n"));
    let nodes = nodes();
    let by_name: HashMap<&str, &MibNode> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let metrics = snmp_yml_metrics();
    let mut seen = BTreeSet::new();
    for m in &metrics {
        let node = by_name
            .get(m.name.as_str())
            .unwrap_or_else(|| panic!("{m:?}: not a POSTFIX-MIB object"));
        assert_eq!(m.oid, node.oid.to_string(), "{m:?}");
        let syntax = node.syntax.as_deref().unwrap_or("");
        let want: &[&str] = match syntax {
            "Counter64" | "Counter32" => &["counter"],
            "Gauge32" | "Integer32" => &["gauge"],
            "INTEGER" => &["gauge", "EnumAsInfo"],
            "DisplayString" => &["DisplayString"],
            "DateAndTime" => &["DateAndTime"],
            other => panic!("{m:?}: unexpected syntax {other}"),
        };
        assert!(want.contains(&m.kind.as_str()), "{m:?} is {syntax}");
        // Table rows carry their name: a string index as is, the queue and
        // reject reason numbers looked up as their names.
        if is_column(node, &nodes) {
            let index = index_column(node, &nodes);
            let expected = match index.name.as_str() {
                "postfixQueueIndex" => "postfixQueueName",
                "postfixRejectReason" => "postfixRejectReasonName",
                other => other,
            };
            assert!(m.labels.contains(expected), "{m:?}: no {expected} label");
        } else {
            assert!(m.labels.is_empty(), "{m:?}: a scalar with labels");
        }
        seen.insert(m.name.as_str());
    }
    // Every readable object under postfixObjects is a metric, except the
    // name columns that repeat the row's label.
    let objects = Oid::parse(&format!("{DEFAULT_ROOT}.1")).unwrap();
    for n in &nodes {
        let readable = n.oid.as_slice().starts_with(objects.as_slice())
            && n.syntax
                .as_deref()
                .is_some_and(|s| s != "SEQUENCE" && !s.starts_with("Postfix"))
            && !n.name.ends_with("Entry")
            && !n.name.ends_with("Table");
        if !readable || (is_column(n, &nodes) && index_column(n, &nodes).name == n.name) {
            continue;
        }
        let repeats_label = is_column(n, &nodes)
            && (n.name.ends_with("Name") && n.oid.as_slice().last() == Some(&2));
        assert_eq!(
            seen.contains(n.name.as_str()),
            !repeats_label,
            "{} ({}) in snmp.yml",
            n.name,
            n.oid
        );
    }
}

/// The `postfixXxx` metric names a PromQL expression uses.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    let re =
        regex::Regex::new(r"\b(postfix[A-Z]\w*|snmp_\w+|up)\b\s*(\{|\[|\)|$|\s|/|>|<|=|\*|\+|-)")
            .unwrap();
    let labels = regex::Regex::new(r"\{[^}]*\}").unwrap();
    // Label matchers name labels, not metrics.
    let stripped = labels.replace_all(expr, "{}");
    re.captures_iter(&stripped)
        .map(|c| c[1].to_string())
        .collect()
}

#[test]
fn prometheus_rules_and_dashboard_use_metrics_of_the_module() {
    let metrics = snmp_yml_metrics();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut labels: BTreeSet<String> = ["instance", "job"].iter().map(|s| s.to_string()).collect();
    for m in &metrics {
        if m.kind == "EnumAsInfo" {
            names.insert(format!("{}_info", m.name));
        } else {
            names.insert(m.name.clone());
        }
        labels.extend(m.labels.iter().cloned());
    }
    // Metrics the exporter and Prometheus add to every scrape.
    names.extend(["up".to_string(), "snmp_scrape_pdus_returned".to_string()]);
    let counters: BTreeSet<&str> = metrics
        .iter()
        .filter(|m| m.kind == "counter")
        .map(|m| m.name.as_str())
        .collect();
    let label_re = regex::Regex::new(r"\b(\w+)\s*(=~|!=|!~|=)\s*").unwrap();
    let check = |what: &str, expr: &str| {
        let used = promql_metrics(expr);
        assert!(!used.is_empty(), "{what}: no metric in {expr}");
        for name in &used {
            assert!(
                names.contains(name),
                "{what}: {expr} uses unknown metric {name}"
            );
            // Counters only through rate()/increase()/delta-like functions.
            if counters.contains(name.as_str()) {
                let re = regex::Regex::new(&format!(r"(rate|increase)\({name}\b")).unwrap();
                assert!(
                    re.is_match(expr),
                    "{what}: counter {name} without rate/increase in {expr}"
                );
            }
        }
        for block in regex::Regex::new(r"\{([^}]*)\}")
            .unwrap()
            .captures_iter(expr)
        {
            for c in label_re.captures_iter(&block[1]) {
                assert!(
                    labels.contains(&c[1]),
                    "{what}: {expr} uses unknown label {}",
                    &c[1]
                );
            }
        }
    };

    let rules =
        fs::read_to_string(repo(&format!("{PROMETHEUS_DIR}/postfix-agentx.rules.yml"))).unwrap();
    let mut alerts = BTreeSet::new();
    let label_ref = regex::Regex::new(r"\$labels\.(\w+)").unwrap();
    for line in rules.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("- alert: ") {
            alerts.insert(a.to_string());
        } else if let Some(expr) = t.strip_prefix("expr: ") {
            check("rules", expr);
        } else if t.contains("$labels.") {
            for c in label_ref.captures_iter(t) {
                assert!(
                    labels.contains(&c[1]),
                    "rules: annotation uses unknown label {}",
                    &c[1]
                );
            }
        }
    }
    for a in [
        "PostfixDeferredQueueLarge",
        "PostfixQueueGrowing",
        "PostfixDaemonDown",
        "PostfixProbeFailing",
        "PostfixCertificateExpiresSoon",
        "PostfixLogPanic",
        "PostfixLogFatal",
        "PostfixAgentSourceFailing",
        "PostfixAgentDown",
    ] {
        assert!(alerts.contains(a), "no alert {a}");
    }
    // Every alert has a unit test.
    let tests = fs::read_to_string(repo(&format!("{PROMETHEUS_DIR}/rules_test.yml"))).unwrap();
    for a in &alerts {
        assert!(
            tests.contains(&format!("alertname: {a}\n")),
            "rules_test.yml does not test {a}"
        );
    }

    let dash: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(repo(&format!("{PROMETHEUS_DIR}/grafana-dashboard.json"))).unwrap(),
    )
    .expect("grafana-dashboard.json is JSON");
    assert_eq!(dash["uid"], "postfix-agentx");
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 30);
    let mut exprs = 0;
    let mut ids = BTreeSet::new();
    let legend_label = regex::Regex::new(r"\{\{(\w+)\}\}").unwrap();
    for panel in dash["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate panel id"
        );
        let grid = &panel["gridPos"];
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "{panel}"
        );
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            check(panel["title"].as_str().unwrap(), expr);
            assert_eq!(target["datasource"]["uid"], "${datasource}");
            let legend = target["legendFormat"].as_str().unwrap_or("");
            for c in legend_label.captures_iter(legend) {
                assert!(labels.contains(&c[1]), "legend {legend} uses unknown label");
            }
            exprs += 1;
        }
    }
    assert!(exprs >= 25, "{exprs} dashboard expressions");
    let var = dash["templating"]["list"][1]["query"]["query"]
        .as_str()
        .unwrap();
    let metric = var
        .strip_prefix("label_values(")
        .and_then(|v| v.strip_suffix(", instance)"))
        .unwrap_or_else(|| panic!("instance variable {var}"));
    assert!(names.contains(metric), "instance variable uses {metric}");
}

/// One `-` entry of a sensor class in the LibreNMS YAML: its `key: value`
/// fields and the values of its `states`.
#[derive(Debug, Default)]
struct LibreSensor {
    class: String,
    fields: HashMap<String, String>,
    states: Vec<(String, i64, i64)>,
}

fn librenms_sensors(text: &str) -> Vec<LibreSensor> {
    let mut sensors: Vec<LibreSensor> = Vec::new();
    let mut class = String::new();
    let state = regex::Regex::new(r"\{ descr: (\w+), value: (-?\d+), generic: (\d) \}").unwrap();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let depth = indent(line);
        let t = line.trim();
        if depth == 8 && t.ends_with(':') {
            class = t.trim_end_matches(':').to_string();
        } else if depth == 16 && t == "-" {
            sensors.push(LibreSensor {
                class: class.clone(),
                ..Default::default()
            });
        } else if let Some(c) = state.captures(t) {
            let s = sensors.last_mut().unwrap();
            s.states.push((
                c[1].to_string(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
            ));
        } else if depth == 20 {
            if let Some((k, v)) = t.split_once(": ") {
                let v = v.trim_matches('\'').to_string();
                sensors.last_mut().unwrap().fields.insert(k.to_string(), v);
            }
        }
    }
    sensors
}

#[test]
fn librenms_sensors_match_the_mib() {
    let text = fs::read_to_string(repo(LIBRENMS)).unwrap();
    assert!(text.contains("\nmib: POSTFIX-MIB\nmodules:\n    sensors:\n"));
    let nodes = nodes();
    let by_name: HashMap<&str, &MibNode> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let object = |field: &str| -> &MibNode {
        let name = field
            .strip_prefix("POSTFIX-MIB::")
            .unwrap_or_else(|| panic!("{field}: not POSTFIX-MIB::name"));
        by_name
            .get(name)
            .unwrap_or_else(|| panic!("{field}: not in POSTFIX-MIB"))
    };
    let sensors = librenms_sensors(&text);
    assert!(sensors.len() >= 12, "{} sensors", sensors.len());
    let mut indexes = BTreeSet::new();
    let descr_ref = regex::Regex::new(r"\{\{ (POSTFIX-MIB::\w+) \}\}").unwrap();
    for s in &sensors {
        assert!(
            ["count", "delay", "percent", "state"].contains(&s.class.as_str()),
            "{s:?}: sensor class"
        );
        let walked = object(&s.fields["oid"]);
        let value = object(s.fields.get("value").unwrap_or(&s.fields["oid"]));
        let syntax = value.syntax.as_deref().unwrap_or("");
        assert!(is_gauge_like(syntax), "{s:?}: {syntax} is not a gauge");
        let num_oid = &s.fields["num_oid"];
        if is_column(value, &nodes) {
            // `oid` walks the value's table.
            assert!(walked.name.ends_with("Table"), "{s:?}");
            assert!(
                value.oid.as_slice().starts_with(walked.oid.as_slice()),
                "{s:?}"
            );
            let index = index_column(value, &nodes);
            let placeholder = if index.syntax.as_deref() == Some("DisplayString") {
                "{{ $index_string }}"
            } else {
                "{{ $index }}"
            };
            assert_eq!(num_oid, &format!(".{}.{placeholder}", value.oid), "{s:?}");
        } else {
            assert_eq!(walked.name, value.name, "{s:?}");
            assert_eq!(
                num_oid,
                &format!(".{}.{{{{ $index }}}}", value.oid),
                "{s:?}"
            );
        }
        // LibreNMS's sensor index: unique per class, named after the object.
        let index = &s.fields["index"];
        assert_eq!(index, &format!("{}.{{{{ $index }}}}", value.name), "{s:?}");
        assert!(indexes.insert((s.class.clone(), index.clone())), "{s:?}");
        // Descriptions name columns of the same table.
        for c in descr_ref.captures_iter(&s.fields["descr"]) {
            let col = object(&c[1]);
            assert!(
                col.oid.as_slice().starts_with(walked.oid.as_slice()),
                "{s:?}: {}",
                col.name
            );
        }
        if s.class == "state" {
            assert_eq!(s.fields["state_name"], value.name, "{s:?}");
            let mib: BTreeSet<(String, i64)> = enum_values(&value.name);
            let ours: BTreeSet<(String, i64)> =
                s.states.iter().map(|(d, v, _)| (d.clone(), *v)).collect();
            assert_eq!(ours, mib, "{s:?}: states differ from the MIB's");
            // generic: 0 ok, 1 warning, 2 critical, 3 unknown; the first
            // (ok/running) state is the good one.
            assert_eq!(s.states[0].2, 0, "{s:?}");
        } else {
            assert!(s.states.is_empty(), "{s:?}");
        }
    }
}

const CACTI_PACKAGE: &str = "templates/cacti/postfix-agentx_cacti-package.xml.gz";

/// The Cacti package: its XML, its files (name -> decoded data) and the
/// Cacti template XML among them.
struct CactiPackage {
    xml: String,
    files: HashMap<String, Vec<u8>>,
    template: String,
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn cacti_package() -> CactiPackage {
    use std::io::Read;
    let mut xml = String::new();
    flate2::read::GzDecoder::new(fs::File::open(repo(CACTI_PACKAGE)).unwrap())
        .read_to_string(&mut xml)
        .unwrap();
    let file_re = regex::Regex::new(
        r"(?s)<file>\s*<name>([^<]*)</name>.*?<data>([^<]*)</data>\s*<filesignature>([^<]+)</filesignature>",
    )
    .unwrap();
    let mut files = HashMap::new();
    for c in file_re.captures_iter(&xml) {
        files.insert(c[1].to_string(), base64_decode(&c[2]));
    }
    let template = String::from_utf8(
        files
            .get("postfix-agentx.xml")
            .expect("the package holds postfix-agentx.xml")
            .clone(),
    )
    .unwrap();
    CactiPackage {
        xml,
        files,
        template,
    }
}

/// `<hash_TTVVVVHASH>...</hash_TTVVVVHASH>` blocks of Cacti type TT.
fn cacti_objects(template: &str, kind: &str) -> Vec<String> {
    let re = regex::Regex::new(&format!(r"<hash_{kind}\d{{4}}([0-9a-f]{{32}})>")).unwrap();
    re.captures_iter(template)
        .map(|c| {
            let open = c.get(0).unwrap();
            let close = format!("</{}", &open.as_str()[1..]);
            let end = template[open.end()..].find(&close).unwrap() + open.end();
            template[open.end()..end].to_string()
        })
        .collect()
}

#[test]
fn cacti_package_is_signed_and_carries_the_data_queries() {
    let package = cacti_package();
    assert!(package.xml.starts_with("<xml>\n   <info>\n"));
    for tag in ["publickey", "signature"] {
        let value = xml_values(&package.xml, tag);
        assert_eq!(value.len(), 1, "one <{tag}>");
        assert!(value[0].len() > 100, "<{tag}> is empty");
    }
    assert_eq!(
        xml_values(&package.xml, "name")[0],
        "Postfix (postfix-agentx)"
    );
    // Every data query file, byte for byte as in templates/cacti/.
    let mut queries = 0;
    for entry in fs::read_dir(repo(CACTI_DIR)).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if !(file.starts_with("postfix_") && file.ends_with(".xml")) {
            continue;
        }
        queries += 1;
        let packed = package
            .files
            .get(&format!("resource/snmp_queries/{file}"))
            .unwrap_or_else(|| panic!("{file} is not in the package: run build-package.php"));
        assert!(
            packed == &fs::read(&path).unwrap(),
            "the package's {file} differs from templates/cacti/{file}: run build-package.php"
        );
        assert!(
            package
                .template
                .contains(&format!("&lt;path_cacti&gt;/resource/snmp_queries/{file}")),
            "no data query reads {file}"
        );
    }
    assert_eq!(queries, 6);
    assert_eq!(
        package.files.len(),
        queries + 1,
        "{:?}",
        package.files.keys()
    );

    // The device template links the 6 data queries and the 3 scalar graphs.
    let hosts = cacti_objects(&package.template, "02");
    assert_eq!(hosts.len(), 1);
    assert_eq!(xml_values(&hosts[0], "name"), ["Postfix (postfix-agentx)"]);
    let links = |tag: &str| xml_values(&hosts[0], tag)[0].split('|').count();
    assert_eq!(links("data_queries"), 6);
    assert_eq!(links("graph_templates"), 3);
    assert_eq!(cacti_objects(&package.template, "04").len(), 6);
}

#[test]
fn cacti_package_data_sources_match_the_mib_and_count_as_rates() {
    let package = cacti_package();
    let nodes = nodes();
    let oids = by_oid(&nodes);
    const GET_SNMP: &str = "hash_0301033eb92bb845b9660a7445cf9740726522";
    const GET_SNMP_INDEXED: &str = "hash_030103bf566c869ac6443b0c75d1c32b5a350e";
    // Table fields: data source name -> MIB object (data_source_types.tsv).
    let fields: HashMap<String, String> =
        fs::read_to_string(repo(&format!("{CACTI_DIR}/data_source_types.tsv")))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[1].chars().take(19).collect(), f[2].to_string())
            })
            .collect();
    let scalars_text = fs::read_to_string(repo(&format!("{CACTI_DIR}/scalars.tsv"))).unwrap();
    let scalars: Vec<Vec<&str>> = scalars_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    for s in &scalars {
        assert_eq!(s.len(), 7, "{s:?}");
        let node = oids
            .get(s[4].trim_start_matches('.').trim_end_matches(".0"))
            .unwrap_or_else(|| panic!("{s:?}: OID not in the MIB"));
        assert!(s[4].ends_with(".0") && !is_column(node, &nodes), "{s:?}");
        assert_eq!(node.name, s[3], "{s:?}");
    }
    for headline in [
        "postfixDelivered",
        "postfixReceived",
        "postfixRejected",
        "postfixDeferred",
        "postfixBounced",
        "postfixHeld",
        "postfixExpired",
        "postfixQueueTotal",
    ] {
        assert!(scalars.iter().any(|s| s[3] == headline), "{headline}");
    }

    let (mut scalar, mut indexed) = (0, 0);
    for dt in cacti_objects(&package.template, "01") {
        let name = &xml_values(&dt, "name")[0];
        let input = &xml_values(&dt, "data_input_id")[0];
        let ds_names = xml_values(&dt, "data_source_name");
        assert_eq!(ds_names.len(), 1, "{name}: one data source");
        let ds_type = &xml_values(&dt, "data_source_type_id")[0];
        let values = xml_values(&dt, "value");
        let polled: Vec<&String> = values.iter().filter(|v| v.starts_with(".1.")).collect();
        let object = if input == GET_SNMP {
            scalar += 1;
            assert_eq!(polled.len(), 1, "{name}: one OID");
            let base = polled[0].trim_start_matches('.');
            let base = base
                .strip_suffix(".0")
                .unwrap_or_else(|| panic!("{name}: scalar OID without .0"));
            let node = oids
                .get(base)
                .unwrap_or_else(|| panic!("{name}: {} is not in the MIB", polled[0]));
            assert!(!is_column(node, &nodes), "{name}: polls a column");
            assert!(name.ends_with(&format!(" - {}", node.name)), "{name}");
            node
        } else {
            assert_eq!(input, GET_SNMP_INDEXED, "{name}: data input method");
            indexed += 1;
            assert!(polled.is_empty(), "{name}: the data query gives the OID");
            let object = fields
                .get(&ds_names[0])
                .unwrap_or_else(|| panic!("{name}: {} is no query field", ds_names[0]));
            nodes.iter().find(|n| &n.name == object).unwrap()
        };
        let syntax = object.syntax.as_deref().unwrap_or("");
        if is_counter(syntax) {
            assert_eq!(
                ds_type, "2",
                "{name}: {syntax} must be a COUNTER data source"
            );
        } else {
            assert!(is_gauge_like(syntax), "{name}: {syntax}");
            assert_eq!(ds_type, "1", "{name}: {syntax} must be a GAUGE data source");
        }
    }
    assert_eq!(scalar, scalars.len());
    assert_eq!(indexed, fields.len());
}
