//! Object names from the MIB text, for `dump` and for checking the layout.
//!
//! A small reader of the MIB's own text: it resolves every `NAME ... ::= {
//! PARENT N }` assignment below the module root, which is all POSTFIX-MIB
//! uses. The MIB stays the single source of the names.

use crate::snmp::Oid;
use std::collections::HashMap;

/// One named node of the MIB and its OID under a given root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MibNode {
    pub name: String,
    pub oid: Oid,
    /// The SYNTAX of an OBJECT-TYPE (first word, e.g. `Counter64`), if any.
    pub syntax: Option<String>,
}

/// All named nodes of `text` with `postfixMIB` placed at `root`, sorted by OID.
pub fn mib_nodes(text: &str, root: &Oid) -> Vec<MibNode> {
    let tokens = tokenize(text);
    let mut parents: HashMap<String, (String, u32)> = HashMap::new();
    let mut syntax: HashMap<String, String> = HashMap::new();
    let mut i = 0;
    while i < tokens.len() {
        // An assignment `NAME <macro...> ::= { PARENT N }` (N may be a list
        // only for the module root, which we place at `root` ourselves).
        if tokens[i] == "::=" && tokens.get(i + 1).map(String::as_str) == Some("{") {
            let close = (i + 2..tokens.len()).find(|&j| tokens[j] == "}");
            let start = statement_start(&tokens, i);
            if let (Some(close), Some(start)) = (close, start) {
                let name = tokens[start].clone();
                let body = &tokens[i + 2..close];
                if body.len() == 2 {
                    if let Ok(n) = body[1].parse::<u32>() {
                        parents.insert(name.clone(), (body[0].clone(), n));
                    }
                }
                if let Some(k) = (start..i).find(|&k| tokens[k] == "SYNTAX") {
                    if let Some(s) = tokens.get(k + 1) {
                        syntax.insert(name, s.clone());
                    }
                }
                i = close;
            }
        }
        i += 1;
    }
    let mut nodes = Vec::new();
    for name in parents.keys() {
        if let Some(oid) = resolve(name, &parents, root, 0) {
            nodes.push(MibNode {
                name: name.clone(),
                oid,
                syntax: syntax.get(name).cloned(),
            });
        }
    }
    nodes.sort_by(|a, b| a.oid.cmp(&b.oid));
    nodes
}

fn resolve(
    name: &str,
    parents: &HashMap<String, (String, u32)>,
    root: &Oid,
    depth: usize,
) -> Option<Oid> {
    if name == "postfixMIB" {
        return Some(root.clone());
    }
    if depth > 32 {
        return None;
    }
    let (parent, n) = parents.get(name)?;
    let base = resolve(parent, parents, root, depth + 1)?;
    Some(base.child(&[*n]))
}

/// The name token of the statement whose `::=` is at `assign`: the token
/// before the macro keyword (OBJECT-TYPE, OBJECT IDENTIFIER, ...).
fn statement_start(tokens: &[String], assign: usize) -> Option<usize> {
    const MACROS: [&str; 6] = [
        "OBJECT-TYPE",
        "MODULE-IDENTITY",
        "OBJECT-GROUP",
        "MODULE-COMPLIANCE",
        "NOTIFICATION-TYPE",
        "NOTIFICATION-GROUP",
    ];
    let mut k = assign;
    while k > 0 {
        k -= 1;
        let t = tokens[k].as_str();
        if MACROS.contains(&t) {
            return k.checked_sub(1);
        }
        if t == "IDENTIFIER" && k >= 2 && tokens[k - 1] == "OBJECT" {
            return Some(k - 2);
        }
    }
    None
}

/// Splits MIB text into tokens, dropping comments and quoted strings.
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for raw_line in strip_strings(text).lines() {
        let line = match raw_line.find("--") {
            Some(p) => &raw_line[..p],
            None => raw_line,
        };
        let spaced = line
            .replace('{', " { ")
            .replace('}', " } ")
            .replace(',', " , ")
            .replace('(', " ( ")
            .replace(')', " ) ");
        tokens.extend(spaced.split_whitespace().map(str::to_string));
    }
    tokens
}

fn strip_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    for c in text.chars() {
        if c == '"' {
            in_string = !in_string;
            out.push(' ');
        } else if in_string {
            out.push(if c == '\n' { '\n' } else { ' ' });
        } else {
            out.push(c);
        }
    }
    out
}

/// The longest node name that is a prefix of `oid`, with the rest as the
/// instance suffix: `postfixDelivered.0`, `postfixQueueMessages.4`.
pub fn describe(nodes: &[MibNode], oid: &Oid) -> (String, Vec<u32>) {
    let best = nodes
        .iter()
        .filter(|n| oid.starts_with(&n.oid))
        .max_by_key(|n| n.oid.len());
    match best {
        Some(n) => (n.name.clone(), oid.as_slice()[n.oid.len()..].to_vec()),
        None => (oid.to_string(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mib::text::{DEFAULT_ROOT, MIB_TEXT};

    #[test]
    fn resolves_scalars_tables_and_columns() {
        let root = Oid::parse(DEFAULT_ROOT).unwrap();
        let nodes = mib_nodes(MIB_TEXT, &root);
        let find = |n: &str| nodes.iter().find(|x| x.name == n).unwrap();
        assert_eq!(find("postfixDelivered").oid, root.child(&[1, 1, 1]));
        assert_eq!(
            find("postfixDelivered").syntax.as_deref(),
            Some("Counter64")
        );
        assert_eq!(
            find("postfixQueueMessages").oid,
            root.child(&[1, 2, 10, 1, 3])
        );
        assert_eq!(find("postfixAgentVersion").oid, root.child(&[1, 9, 1]));
        let (name, idx) = describe(&nodes, &root.child(&[1, 2, 10, 1, 3, 4]));
        assert_eq!((name.as_str(), idx), ("postfixQueueMessages", vec![4]));
    }
}
