//! A private `snmptrapd` that writes one line per received notification.

use super::{free_udp_port, require_program, wait_until};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One received notification: its snmpTrapOID and all varbinds as text.
#[derive(Debug, Clone)]
pub struct Trap {
    pub trap_oid: String,
    /// (OID without leading dot, value text as snmptrapd prints it)
    pub varbinds: Vec<(String, String)>,
}

impl Trap {
    /// The value of the first varbind whose OID starts with `prefix`.
    pub fn value(&self, prefix: &str) -> Option<&str> {
        self.varbinds
            .iter()
            .find(|(o, _)| o.starts_with(prefix))
            .map(|(_, v)| v.as_str())
    }
}

pub struct TrapReceiver {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl TrapReceiver {
    pub fn start() -> TrapReceiver {
        let program = require_program("snmptrapd", "snmptrapd");
        let dir = super::temp_dir("pfagentx-traps-");
        std::fs::write(
            dir.path().join("snmptrapd.conf"),
            "disableAuthorization yes\n",
        )
        .expect("write snmptrapd.conf");
        let port = free_udp_port();
        let child = Command::new(program)
            .args(["-f", "-C", "-On", "-m", "", "-M", ""])
            .arg("-c")
            .arg(dir.path().join("snmptrapd.conf"))
            .arg("-Lf")
            .arg(dir.path().join("traps.log"))
            // One line per notification, varbinds separated by tabs.
            .args(["-F", "TRAP %v\\n"])
            .arg(format!("udp:127.0.0.1:{port}"))
            .env("MIBS", "")
            .env("SNMP_PERSISTENT_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start snmptrapd");
        let log = dir.path().join("traps.log");
        let up = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("NET-SNMP version"))
        });
        assert!(up, "snmptrapd did not start on udp:127.0.0.1:{port}");
        TrapReceiver { child, port, dir }
    }

    /// Every notification received so far.
    pub fn traps(&self) -> Vec<Trap> {
        let text = std::fs::read_to_string(self.dir.path().join("traps.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.strip_prefix("TRAP "))
            .map(|l| {
                let varbinds: Vec<(String, String)> = l
                    .split('\t')
                    .filter_map(|vb| vb.split_once(" = "))
                    .map(|(o, v)| {
                        (
                            o.trim().trim_start_matches('.').to_string(),
                            v.trim().to_string(),
                        )
                    })
                    .collect();
                let trap_oid = varbinds
                    .iter()
                    .find(|(o, _)| o == "1.3.6.1.6.3.1.1.4.1.0")
                    .map(|(_, v)| {
                        v.trim_start_matches("OID: ")
                            .trim_start_matches('.')
                            .to_string()
                    })
                    .unwrap_or_default();
                Trap { trap_oid, varbinds }
            })
            .collect()
    }

    /// Notifications whose snmpTrapOID is `oid`.
    pub fn with_oid(&self, oid: &str) -> Vec<Trap> {
        self.traps()
            .into_iter()
            .filter(|t| t.trap_oid == oid)
            .collect()
    }
}

impl Drop for TrapReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
