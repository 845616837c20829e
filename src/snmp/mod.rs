//! SNMP data types shared by the MIB view and the AgentX session.
//!
//! These are protocol-level values only: nothing here knows about Postfix.

mod view;

pub use view::{MibView, ViewHandle};

use std::cmp::Ordering;
use std::fmt;

/// An OBJECT IDENTIFIER as a list of sub-identifiers.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Oid(pub Vec<u32>);

impl Oid {
    pub fn new(ids: impl Into<Vec<u32>>) -> Self {
        Oid(ids.into())
    }

    pub fn as_slice(&self) -> &[u32] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True if `self` equals `prefix` or lies below it.
    pub fn starts_with(&self, prefix: &Oid) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// A new OID with `suffix` appended.
    pub fn child(&self, suffix: &[u32]) -> Oid {
        let mut v = Vec::with_capacity(self.0.len() + suffix.len());
        v.extend_from_slice(&self.0);
        v.extend_from_slice(suffix);
        Oid(v)
    }

    /// Parses dotted notation (`1.3.6.1`, a leading dot is allowed).
    pub fn parse(text: &str) -> Result<Oid, String> {
        let t = text.trim().trim_start_matches('.');
        if t.is_empty() {
            return Err(format!("empty OID {text:?}"));
        }
        let mut ids = Vec::new();
        for part in t.split('.') {
            let id = part
                .parse::<u32>()
                .map_err(|_| format!("invalid sub-identifier {part:?} in OID {text:?}"))?;
            ids.push(id);
        }
        if ids.len() > 128 {
            return Err(format!("OID {text:?} has more than 128 sub-identifiers"));
        }
        Ok(Oid(ids))
    }
}

impl PartialOrd for Oid {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Lexicographic order of sub-identifiers, the order SNMP walks in.
impl Ord for Oid {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

/// A value as carried in an SNMP varbind (RFC 2741 section 5.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Integer(i32),
    OctetString(Vec<u8>),
    Null,
    ObjectIdentifier(Oid),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Opaque(Vec<u8>),
    Counter64(u64),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

impl Value {
    /// Convenience for DisplayString values.
    pub fn string(s: impl AsRef<str>) -> Value {
        Value::OctetString(s.as_ref().as_bytes().to_vec())
    }
}

/// A varbind: a name and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VarBind {
    pub name: Oid,
    pub value: Value,
}
