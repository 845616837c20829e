//! The POSTFIX-MIB module text, embedded in the binary, and re-rooting it.

use crate::snmp::Oid;

/// The MIB as shipped in `mibs/POSTFIX-MIB.txt`.
pub const MIB_TEXT: &str = include_str!("../../mibs/POSTFIX-MIB.txt");

/// The provisional default root (see the MIB's DESCRIPTION).
pub const DEFAULT_ROOT: &str = "1.3.6.1.4.1.8072.9999.9999.25";

/// Where `postfixCompliance` (the MODULE-COMPLIANCE) lies below the root:
/// postfixConformance(2).postfixCompliances(1).postfixCompliance(1).
const COMPLIANCE: [u32; 3] = [2, 1, 1];

/// The row this agent adds to the master's sysORTable (RFC 3418), as
/// (sysORID, sysORDescr): the compliance statement it implements, so a
/// manager's `snmpwalk sysORTable` shows POSTFIX-MIB is served here.
pub fn sys_or_entry(root: &Oid) -> (Oid, String) {
    (
        root.child(&COMPLIANCE),
        "POSTFIX-MIB: Postfix mail server statistics (postfix-agentx)".to_string(),
    )
}

const ROOT_LINE: &str = "::= { enterprises 8072 9999 9999 25 }";
const ENTERPRISES: [u32; 6] = [1, 3, 6, 1, 4, 1];

/// The MIB text with its MODULE-IDENTITY placed at `root`.
pub fn mib_text(root: &Oid) -> Result<String, String> {
    if root.len() < 2 {
        return Err(format!("OID root {root} is too short"));
    }
    if !MIB_TEXT.contains(ROOT_LINE) {
        return Err("embedded MIB lacks its root line".to_string());
    }
    let ids = root.as_slice();
    let value = if let Some(rest) = ids.strip_prefix(&ENTERPRISES[..]) {
        if rest.is_empty() {
            return Err(format!("OID root {root} must lie below enterprises"));
        }
        format!("enterprises {}", join(rest))
    } else if ids[0] == 1 {
        format!("iso {}", join(&ids[1..]))
    } else {
        return Err(format!(
            "OID root {root} must start with 1 (iso); use a PEN under 1.3.6.1.4.1"
        ));
    };
    Ok(MIB_TEXT.replace(ROOT_LINE, &format!("::= {{ {value} }}")))
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_root_round_trips() {
        let root = Oid::parse(DEFAULT_ROOT).unwrap();
        assert_eq!(mib_text(&root).unwrap(), MIB_TEXT);
    }

    #[test]
    fn rerooted_under_a_pen() {
        let t = mib_text(&Oid::parse("1.3.6.1.4.1.99999.3").unwrap()).unwrap();
        assert!(t.contains("::= { enterprises 99999 3 }"));
        assert!(!t.contains(ROOT_LINE));
        assert!(mib_text(&Oid::parse("1.3.6.1.4.1").unwrap()).is_err());
        assert!(mib_text(&Oid::parse("2.5").unwrap()).is_err());
    }
}
