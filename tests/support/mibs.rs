//! The IETF base MIBs (SNMPv2-SMI, -TC, -CONF, -MIB) that Debian does not ship.
//!
//! They come from the npm package `net-snmp` (`npm pack net-snmp`), fetched
//! once per machine into the temp dir and never committed. Set
//! `POSTFIX_AGENTX_BASE_MIBS` to a directory holding them to skip npm.

use super::require_program;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const MODULES: [&str; 4] = ["SNMPv2-SMI", "SNMPv2-TC", "SNMPv2-CONF", "SNMPv2-MIB"];

/// A directory with the base MIBs as `MODULE.txt`, usable as smilint's
/// SMIPATH and net-snmp's `-M`.
pub fn base_mib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(fetch).clone()
}

fn complete(dir: &Path) -> bool {
    MODULES
        .iter()
        .all(|m| dir.join(format!("{m}.txt")).is_file())
}

fn fetch() -> PathBuf {
    if let Some(dir) = std::env::var_os("POSTFIX_AGENTX_BASE_MIBS") {
        let dir = PathBuf::from(dir);
        assert!(
            complete(&dir),
            "POSTFIX_AGENTX_BASE_MIBS={} lacks {MODULES:?} as .txt files",
            dir.display()
        );
        return dir;
    }
    let cache = std::env::temp_dir().join("postfix-agentx-base-mibs");
    if complete(&cache) {
        return cache;
    }
    require_program("npm", "npm");
    let work = super::temp_dir("pfagentx-npm-");
    let out = Command::new("npm")
        .args(["pack", "net-snmp", "--silent", "--pack-destination"])
        .arg(work.path())
        .current_dir(work.path())
        .output()
        .expect("run npm pack");
    assert!(
        out.status.success(),
        "`npm pack net-snmp` failed (the IETF base MIBs come from it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tgz = std::fs::read_dir(work.path())
        .expect("read npm dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .expect("npm pack wrote a .tgz");
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(work.path())
        .status()
        .expect("run tar");
    assert!(status.success(), "tar failed on {}", tgz.display());
    // Fill a private directory, then rename it into place: parallel test
    // processes never see a half-filled cache.
    let staging = tempfile::Builder::new()
        .prefix("pfagentx-mibs-")
        .tempdir_in(std::env::temp_dir())
        .expect("staging dir")
        .keep();
    for m in MODULES {
        let src = work.path().join(format!("package/lib/mibs/{m}.mib"));
        std::fs::copy(&src, staging.join(format!("{m}.txt")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    if std::fs::rename(&staging, &cache).is_err() {
        // Another process won the race; use its copy.
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(
        complete(&cache),
        "base MIB cache {} incomplete",
        cache.display()
    );
    cache
}

/// Runs a net-snmp client tool against `address` with POSTFIX-MIB loaded
/// (names, enums and DateAndTime rendered by net-snmp itself).
pub fn tool_with_mib(program: &str, address: &str, args: &[&str]) -> std::process::Output {
    require_program(program, "snmp");
    let dirs = format!(
        "{}:{}/mibs",
        base_mib_dir().display(),
        env!("CARGO_MANIFEST_DIR")
    );
    Command::new(program)
        .args([
            "-v2c",
            "-c",
            "public",
            "-t",
            "3",
            "-r",
            "1",
            "-M",
            &dirs,
            "-m",
            "POSTFIX-MIB",
        ])
        .arg(address)
        .args(args)
        .env("MIBS", "")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Rows of `snmptable -Cf |` keyed by their first column, cells unquoted,
/// units left out (`-OU`).
pub type Rows = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// Reads POSTFIX-MIB table `name` (e.g. `postfixQueueTable`) with the real snmptable.
pub fn snmptable_rows(address: &str, name: &str) -> Rows {
    let out = tool_with_mib(
        "snmptable",
        address,
        &["-Cf", "|", "-OU", &format!("POSTFIX-MIB::{name}")],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().filter(|l| l.contains('|'));
    let Some(header) = lines.next() else {
        return Rows::new();
    };
    let cols: Vec<&str> = header.split('|').collect();
    lines
        .map(|l| {
            let cells: Vec<String> = l
                .split('|')
                .map(|c| c.trim().trim_matches('"').to_string())
                .collect();
            let row = cols
                .iter()
                .map(|c| c.to_string())
                .zip(cells.iter().cloned())
                .collect();
            (cells.first().cloned().unwrap_or_default(), row)
        })
        .collect()
}
