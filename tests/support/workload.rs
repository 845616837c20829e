//! Shared pieces of the fault and load tests: realistic log lines with
//! fresh queue ids, the agent started as any user, counters read back
//! through snmpd, the health table, and `parse` over the same lines.

use super::agent::{BIN, ROOT};
use super::snmpd::Snmpd;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The log counters served as scalars under ROOT.1.1 (sub-id, `parse` JSON
/// key), plus linesRead and linesUnparsed under ROOT.1.9.
pub const COUNTERS: [(&str, &str); 21] = [
    ("1.1.1.0", "delivered"),
    ("1.1.2.0", "forwarded"),
    ("1.1.3.0", "received"),
    ("1.1.4.0", "rejected"),
    ("1.1.5.0", "discarded"),
    ("1.1.6.0", "deferred"),
    ("1.1.7.0", "bounced"),
    ("1.1.8.0", "expired"),
    ("1.1.9.0", "held"),
    ("1.1.10.0", "logFatal"),
    ("1.1.11.0", "logWarning"),
    ("1.1.12.0", "logPanic"),
    ("1.1.13.0", "logError"),
    ("1.1.14.0", "generated"),
    ("1.1.15.0", "receivedBytes"),
    ("1.1.16.0", "smtpConnections"),
    ("1.1.17.0", "saslAuthFailures"),
    ("1.1.18.0", "tlsConnectionsIn"),
    ("1.1.19.0", "tlsConnectionsOut"),
    ("1.9.4.0", "linesRead"),
    ("1.9.5.0", "linesUnparsed"),
];

/// The agent's binary run as user nobody (group nogroup, no other
/// groups) through setpriv; the caller adds the subcommand. Needs root.
pub fn agent_as_nobody() -> Command {
    let mut c = Command::new(super::require_program("setpriv", "util-linux"));
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--",
        BIN,
    ]);
    c
}

pub fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postfix-3.7-sample.log")
}

/// A fixture line cut at its queue ids, so copies are cheap to make.
enum Part {
    Text(String),
    QueueId(String),
}

/// Copies of the Postfix 3.7 sample log whose queue ids differ per copy,
/// so every copy is new mail to the parser (not the same messages again).
pub struct LineGenerator {
    lines: Vec<Vec<Part>>,
    round: u64,
    next: usize,
}

impl Default for LineGenerator {
    fn default() -> Self {
        LineGenerator::new()
    }
}

impl LineGenerator {
    pub fn new() -> LineGenerator {
        let text = fs::read_to_string(fixture_path()).expect("read the log fixture");
        let is_qid = |t: &str| {
            postfix_agentx::sources::log::queue_id::is_queue_id(t.as_bytes())
                && t.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())
        };
        let mut qids = 0;
        let lines = text
            .lines()
            .map(|line| {
                let mut parts = Vec::new();
                let mut rest = line;
                while !rest.is_empty() {
                    let word_end = rest
                        .find(|c: char| !c.is_ascii_alphanumeric())
                        .unwrap_or(rest.len());
                    let (word, after) = rest.split_at(word_end);
                    if !word.is_empty() && is_qid(word) {
                        qids += 1;
                        parts.push(Part::QueueId(word.to_string()));
                    } else {
                        let sep_end = after
                            .find(|c: char| c.is_ascii_alphanumeric())
                            .unwrap_or(after.len());
                        let literal = format!("{word}{}", &after[..sep_end]);
                        match parts.last_mut() {
                            Some(Part::Text(t)) => t.push_str(&literal),
                            _ => parts.push(Part::Text(literal)),
                        }
                        rest = &after[sep_end..];
                        continue;
                    }
                    rest = after;
                }
                parts
            })
            .collect();
        assert!(qids > 100, "the fixture has {qids} queue id occurrences");
        LineGenerator {
            lines,
            round: 0,
            next: 0,
        }
    }

    /// Appends the next line (with its newline) to `out`; cycles through the
    /// fixture with a new queue id suffix on every pass.
    pub fn push_line(&mut self, out: &mut String) {
        for part in &self.lines[self.next] {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::QueueId(q) => {
                    // Still upper-case hex, so still a queue id (at most 24 chars).
                    use std::fmt::Write as _;
                    let _ = write!(out, "{q}{:06X}", self.round);
                }
            }
        }
        out.push('\n');
        self.next += 1;
        if self.next == self.lines.len() {
            self.next = 0;
            self.round += 1;
        }
    }

    /// `n` lines as one string.
    pub fn take(&mut self, n: usize) -> String {
        let mut out = String::with_capacity(n * 160);
        for _ in 0..n {
            self.push_line(&mut out);
        }
        out
    }
}

/// Appends `text` to `path` (creating it).
pub fn append(path: &Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("append log lines");
}

/// How to start the agent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// As the test's user (with --allow-root when that is root).
    Current,
    /// As nobody:nogroup via setpriv, so file permissions apply (root ignores them).
    Nobody,
}

/// A postfix-agentx process with a config file in `dir`; killed on drop.
pub struct AgentProc {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    run_as: RunAs,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl AgentProc {
    /// Writes `config` to `dir/agent.toml` and starts the agent.
    pub fn start(dir: &Path, config: &str, run_as: RunAs) -> AgentProc {
        AgentProc::start_full(dir, config, run_as, &[])
    }

    /// As the current user, with extra environment variables.
    pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, String)]) -> AgentProc {
        AgentProc::start_full(dir, config, RunAs::Current, env)
    }

    fn start_full(dir: &Path, config: &str, run_as: RunAs, env: &[(&str, String)]) -> AgentProc {
        let config_path = dir.join("agent.toml");
        fs::write(&config_path, config).expect("write agent config");
        if run_as == RunAs::Nobody {
            // nobody must be able to read its config.
            set_mode(&config_path, 0o644);
        }
        let mut a = AgentProc {
            dir: dir.to_path_buf(),
            config_path,
            run_as,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            child: None,
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("agent log");
        let log2 = log.try_clone().expect("clone log");
        let mut cmd = match self.run_as {
            RunAs::Current => {
                let mut c = Command::new(BIN);
                c.arg("run").arg("-c").arg(&self.config_path);
                if super::is_root() {
                    c.arg("--allow-root");
                }
                c
            }
            RunAs::Nobody => {
                assert!(super::is_root(), "running the agent as nobody needs root");
                let mut c = agent_as_nobody();
                c.args(["run", "-c"]).arg(&self.config_path);
                c
            }
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = cmd
            .env("POSTFIX_AGENTX_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("start postfix-agentx");
        self.child = Some(child);
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the agent's log contains `needle`.
    pub fn wait_for_log_text(&self, needle: &str, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.log().contains(needle))
    }

    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("agent is running");
        i32::try_from(child.id()).expect("pid fits i32")
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no state saved on the way out.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let ok = super::wait_until(Duration::from_secs(10), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
            if !ok {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    pub fn restart_after_kill(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// chown to nobody:nogroup.
pub fn chown_nobody(path: &Path) {
    let out = Command::new("chown")
        .arg("nobody:nogroup")
        .arg(path)
        .output()
        .expect("run chown");
    assert!(out.status.success(), "chown nobody {}", path.display());
}

/// The log counters through snmpd, keyed like `parse`'s JSON; None when a
/// value is missing (agent not registered, request failed).
pub fn served_counters(snmpd: &Snmpd) -> Option<BTreeMap<String, u64>> {
    let oids: Vec<String> = COUNTERS
        .iter()
        .map(|(s, _)| format!("{ROOT}.{s}"))
        .collect();
    let refs: Vec<&str> = oids.iter().map(String::as_str).collect();
    let out = snmpd
        .tool_with("snmpget", &["-t", "1", "-r", "0"], &refs)
        .ok()?;
    let mut m = BTreeMap::new();
    for ((_, key), oid) in COUNTERS.iter().zip(&oids) {
        let v = out.value_of(oid)?;
        let n = v.strip_prefix("Counter64: ")?.trim().parse().ok()?;
        m.insert(key.to_string(), n);
    }
    Some(m)
}

/// `postfix-agentx parse --format json` over `paths`, as the same keys.
pub fn parsed_counters(paths: &[PathBuf]) -> BTreeMap<String, u64> {
    let mut cmd = Command::new(BIN);
    cmd.args(["parse", "--format", "json"]).args(paths);
    let out = cmd.output().expect("run postfix-agentx parse");
    assert!(
        out.status.success(),
        "parse failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("parse JSON");
    COUNTERS
        .iter()
        .map(|(_, key)| {
            let v = json[key]
                .as_u64()
                .unwrap_or_else(|| panic!("parse output lacks {key}: {json}"));
            (key.to_string(), v)
        })
        .collect()
}

/// One row of postfixSourceTable.
#[derive(Debug, Clone, Default)]
pub struct HealthRow {
    /// 1 ok, 2 error.
    pub status: i64,
    pub detail: String,
    pub last_error: String,
    pub error_count: u64,
}

/// The health rows by source name, read with snmpwalk (None if the walk
/// failed or returned nothing of ours).
pub fn health_table(snmpd: &Snmpd) -> Option<BTreeMap<String, HealthRow>> {
    let table = format!("{ROOT}.1.9.10.1");
    let out = snmpd
        .tool_with("snmpwalk", &["-t", "1", "-r", "0", "-Oa"], &[&table])
        .ok()?;
    if !out.success() {
        return None;
    }
    let mut rows: BTreeMap<String, HealthRow> = BTreeMap::new();
    for line in out.lines() {
        let Some((oid, value)) = line.split_once(" = ") else {
            continue;
        };
        let Some(rest) = oid
            .trim_start_matches('.')
            .strip_prefix(&format!("{table}."))
        else {
            continue;
        };
        let mut parts = rest.split('.');
        let column: u32 = parts.next()?.parse().ok()?;
        let _len = parts.next()?;
        let name: String = parts
            .map(|p| p.parse::<u8>().map(char::from))
            .collect::<Result<_, _>>()
            .ok()?;
        let row = rows.entry(name).or_default();
        let text = || {
            value
                .strip_prefix("STRING: ")
                .unwrap_or(value)
                .trim_matches('"')
                .to_string()
        };
        match column {
            3 => row.status = value.strip_prefix("INTEGER: ")?.trim().parse().ok()?,
            4 => row.detail = text(),
            6 => row.last_error = text(),
            7 => row.error_count = value.strip_prefix("Counter32: ")?.trim().parse().ok()?,
            _ => {}
        }
    }
    (!rows.is_empty()).then_some(rows)
}

/// Polls until the served counters equal `want`; panics with both and the
/// agent log otherwise.
pub fn wait_counters_equal(
    snmpd: &Snmpd,
    want: &BTreeMap<String, u64>,
    timeout: Duration,
    agent_log: impl Fn() -> String,
) {
    let mut last = None;
    let ok = super::wait_until(timeout, || {
        last = served_counters(snmpd);
        last.as_ref() == Some(want)
    });
    assert!(
        ok,
        "served counters never equalled parse's\nparse: {want:?}\nserved: {last:?}\nagent log (tail):\n{}",
        tail(&agent_log(), 60)
    );
}

/// Polls until health row `source` satisfies `pred`; panics with the table.
pub fn wait_health(
    snmpd: &Snmpd,
    source: &str,
    timeout: Duration,
    what: &str,
    agent_log: impl Fn() -> String,
    mut pred: impl FnMut(&HealthRow) -> bool,
) -> HealthRow {
    let mut last = None;
    let ok = super::wait_until(timeout, || {
        last = health_table(snmpd);
        last.as_ref()
            .and_then(|t| t.get(source))
            .is_some_and(&mut pred)
    });
    assert!(
        ok,
        "health row {source:?} never showed {what}\ntable: {last:#?}\nagent log (tail):\n{}",
        tail(&agent_log(), 60)
    );
    last.and_then(|t| t.get(source).cloned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// utime + stime of `pid` in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (sysconf(_SC_CLK_TCK)).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).unwrap_or(100)
}
