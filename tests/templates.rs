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

fn zabbix_items(text: &str) -> Vec<ZabbixItem> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(oid) = field(line, "snmp_oid") else {
            continue;
        };
        // The entry starts at the nearest `- uuid:` above at a smaller indent
        // and ends before the next line indented like that `- `.
        let start = (0..i)
            .rev()
            .find(|&j| lines[j].trim_start().starts_with("- ") && indent(lines[j]) < indent(line))
            .expect("item entry start");
        let base = indent(lines[start]);
        let end = (i + 1..lines.len())
            .find(|&j| indent(lines[j]) <= base && !lines[j].trim().is_empty())
            .unwrap_or(lines.len());
        let block = &lines[start..end];
        // Only the item's own fields count, not those of its trigger prototypes.
        let own = |name: &str| {
            block
                .iter()
                .filter(|l| indent(l) <= base + 2)
                .find_map(|l| field(l, name))
                .unwrap_or("")
                .to_string()
        };
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
        discovery, 7,
        "discovery rules: queue, process, probe, cert, reject, delivery, source"
    );

    // Triggers and graphs reference items of this template by key.
    let keys: BTreeSet<String> = items.iter().map(|i| i.key.clone()).collect();
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
