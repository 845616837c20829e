//! A private net-snmp `snmpd` master agent for integration tests.
//!
//! Each [`Snmpd`] runs in its own temp dir with its own config, persistent
//! dir, AgentX unix socket and a free UDP port on 127.0.0.1, so tests can run
//! in parallel. The process is killed when the value is dropped, even when the
//! test panics.
//!
//! ```ignore
//! let snmpd = Snmpd::start()?;                // fails with an install hint if snmpd is missing
//! let sock = snmpd.socket_path();             // hand this to the subagent
//! let out = snmpd.get(&["1.3.6.1.2.1.1.3.0"])?; // runs snmpget -v2c -c public -On -Oe ...
//! assert!(out.success());
//! snmpd.restart()?;                           // same socket path and port
//! ```
//!
//! The client tools run with `-v2c -c public -On -Oe -t TIMEOUT -r RETRIES`, so
//! output lines look like `.1.3.6.1.2.1.1.3.0 = Timeticks: (123) 0:00:01.23`.
//! MIB loading is disabled (`-m ""`): use numeric OIDs.
//! Communities: `public` (read-only) and `private` (read-write, used by `set`).

#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The apt hint printed when a net-snmp program is missing.
pub const INSTALL_HINT: &str = "apt-get install -y snmpd snmp";

/// sysUpTime.0, served by snmpd itself; used to probe readiness.
pub const SYS_UPTIME_0: &str = "1.3.6.1.2.1.1.3.0";

/// The output of one client tool run.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// The command line, for failure messages.
    pub command: String,
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// Non-empty stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The OIDs (without leading dot) of `OID = VALUE` lines, in output order.
    pub fn oids(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.split_once(" = "))
            .map(|(o, _)| o.trim().trim_start_matches('.').to_string())
            .collect()
    }

    /// The value text after ` = ` for `oid` (with or without leading dot).
    pub fn value_of(&self, oid: &str) -> Option<String> {
        let want = oid.trim_start_matches('.');
        self.lines().iter().find_map(|l| {
            let (o, v) = l.split_once(" = ")?;
            (o.trim().trim_start_matches('.') == want).then(|| v.trim().to_string())
        })
    }
}

impl std::fmt::Display for ToolOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Options for [`Snmpd::start_with`].
#[derive(Debug, Clone)]
pub struct SnmpdOptions {
    /// Extra lines appended to snmpd.conf.
    pub extra_conf: Vec<String>,
    /// Client timeout in seconds (`-t`).
    pub client_timeout_secs: f64,
    /// Client retries (`-r`).
    pub client_retries: u32,
    /// How long `start` waits for snmpd to answer.
    pub ready_timeout: Duration,
}

impl Default for SnmpdOptions {
    fn default() -> Self {
        SnmpdOptions {
            extra_conf: Vec::new(),
            client_timeout_secs: 3.0,
            client_retries: 1,
            ready_timeout: Duration::from_secs(10),
        }
    }
}

/// A running private snmpd (AgentX master). Killed on drop.
pub struct Snmpd {
    dir: tempfile::TempDir,
    port: u16,
    opts: SnmpdOptions,
    child: Option<Child>,
    /// How many times snmpd was started; each start logs to its own file.
    starts: u32,
}

/// Fails with the install hint when `program` is not on PATH (or in /usr/sbin).
pub fn find_program(program: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("`{program}` not found; install it with: {INSTALL_HINT}"))
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> Result<u16> {
    let s = UdpSocket::bind("127.0.0.1:0").context("binding a probe UDP socket")?;
    Ok(s.local_addr()?.port())
}

impl Snmpd {
    /// Starts snmpd with default options and waits until it answers SNMP.
    pub fn start() -> Result<Snmpd> {
        Snmpd::start_with(SnmpdOptions::default())
    }

    pub fn start_with(opts: SnmpdOptions) -> Result<Snmpd> {
        find_program("snmpd")?;
        find_program("snmpget")?;
        // A free port can be taken by a parallel test between probe and bind:
        // retry with a new port when snmpd fails to come up.
        let mut last_err = None;
        for _ in 0..5 {
            let mut snmpd = Snmpd {
                port: free_udp_port()?,
                dir: tempfile::Builder::new()
                    .prefix("snmpd-test-")
                    .tempdir()
                    .context("creating snmpd temp dir")?,
                opts: opts.clone(),
                child: None,
                starts: 0,
            };
            fs::create_dir_all(snmpd.dir.path().join("persist"))?;
            match snmpd.spawn_and_wait() {
                Ok(()) => return Ok(snmpd),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("snmpd did not start")))
    }

    /// Sets up dir, config paths and a free port WITHOUT starting snmpd, for
    /// tests that start a subagent first; start it later with [`Snmpd::start_again`].
    pub fn prepare(opts: SnmpdOptions) -> Result<Snmpd> {
        find_program("snmpd")?;
        find_program("snmpget")?;
        let snmpd = Snmpd {
            port: free_udp_port()?,
            dir: tempfile::Builder::new()
                .prefix("snmpd-test-")
                .tempdir()
                .context("creating snmpd temp dir")?,
            opts,
            child: None,
            starts: 0,
        };
        fs::create_dir_all(snmpd.dir.path().join("persist"))?;
        Ok(snmpd)
    }

    /// Polls `snmpget oid` until the value is a real value (not an error or a
    /// noSuchObject/noSuchInstance exception) or `timeout` passes; returns the
    /// last output either way, so callers can assert and print it.
    pub fn wait_for_value(&self, oid: &str, timeout: Duration) -> Result<ToolOutput> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.tool_with("snmpget", &["-t", "0.5", "-r", "0"], &[oid])?;
            let ok = out.success() && out.value_of(oid).is_some_and(|v| !v.starts_with("No Such"));
            if ok || Instant::now() >= deadline {
                return Ok(out);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The temp dir holding config, socket and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The AgentX unix socket path snmpd listens on.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("agentx.sock")
    }

    /// The UDP port snmpd serves SNMP on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `udp:127.0.0.1:PORT`, the address argument for the client tools.
    pub fn address(&self) -> String {
        format!("udp:127.0.0.1:{}", self.port)
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("snmpd.conf")
    }

    /// The log of the current (latest) snmpd run.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("snmpd.{start}.log"))
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn write_conf(&self) -> Result<()> {
        let mut conf = format!(
            "master agentx\n\
             agentXSocket unix:{sock}\n\
             agentXPerms 0660 0755\n\
             rocommunity public 127.0.0.1\n\
             rwcommunity private 127.0.0.1\n",
            sock = self.socket_path().display()
        );
        for line in &self.opts.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        fs::write(self.conf_path(), conf).context("writing snmpd.conf")
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        self.write_conf()?;
        self.starts += 1;
        let log = fs::File::create(self.log_path(self.starts)).context("creating snmpd log")?;
        let log_err = log.try_clone()?;
        let child = Command::new(find_program("snmpd")?)
            .args(["-f", "-Lo", "-C", "-I", "-smux", "-c"])
            .arg(self.conf_path())
            .arg(self.address())
            // Keep snmpd's persistent state (engine boots etc.) out of /var/lib/snmp.
            .env("SNMP_PERSISTENT_DIR", self.dir.path().join("persist"))
            .env("MIBS", "")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .context("spawning snmpd")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.opts.ready_timeout;
        loop {
            if !self.is_running() {
                bail!("snmpd exited during startup; log:\n{}", self.log());
            }
            let out = self.tool_with("snmpget", &["-t", "0.3", "-r", "0"], &[SYS_UPTIME_0])?;
            if out.success() && self.socket_path().exists() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                bail!(
                    "snmpd did not answer within {:?}; last probe: {out}\nlog:\n{}",
                    self.opts.ready_timeout,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a net-snmp client tool (`snmpget`, `snmpwalk`, ...) against this
    /// snmpd with the standard options, then `args` (OIDs, set triples, ...).
    pub fn tool(&self, program: &str, args: &[&str]) -> Result<ToolOutput> {
        self.tool_with(program, &[], args)
    }

    /// Like [`Snmpd::tool`] with extra options placed after the standard ones,
    /// so they can override them (e.g. `-t 0.5 -r 0`) or add `-Cr5`, `-Cc`, ...
    pub fn tool_with(&self, program: &str, opts: &[&str], args: &[&str]) -> Result<ToolOutput> {
        let path = find_program(program)?;
        let timeout = format!("{}", self.opts.client_timeout_secs);
        let retries = self.opts.client_retries.to_string();
        let mut cmd = Command::new(&path);
        cmd.args(["-v2c", "-c", "public", "-On", "-Oe", "-m", ""])
            .args(["-t", &timeout, "-r", &retries])
            .args(opts)
            .arg(self.address())
            .args(args)
            .env("MIBS", "")
            .stdin(Stdio::null());
        let command = format!("{program} {:?} {} {:?}", opts, self.address(), args);
        let out = cmd
            .output()
            .with_context(|| format!("running {}", path.display()))?;
        Ok(ToolOutput {
            command,
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    pub fn get(&self, oids: &[&str]) -> Result<ToolOutput> {
        self.tool("snmpget", oids)
    }

    pub fn getnext(&self, oids: &[&str]) -> Result<ToolOutput> {
        self.tool("snmpgetnext", oids)
    }

    pub fn walk(&self, oid: &str) -> Result<ToolOutput> {
        self.tool("snmpwalk", &[oid])
    }

    pub fn bulkwalk(&self, oid: &str) -> Result<ToolOutput> {
        self.tool("snmpbulkwalk", &[oid])
    }

    /// `snmpbulkget -Cn<non_repeaters> -Cr<max_repetitions> oids...`
    pub fn bulkget(
        &self,
        non_repeaters: u32,
        max_repetitions: u32,
        oids: &[&str],
    ) -> Result<ToolOutput> {
        let n = format!("-Cn{non_repeaters}");
        let r = format!("-Cr{max_repetitions}");
        self.tool_with("snmpbulkget", &[&n, &r], oids)
    }

    pub fn table(&self, oid: &str) -> Result<ToolOutput> {
        self.tool_with("snmptable", &["-Ci", "-Cf", ","], &[oid])
    }

    /// `snmpset OID TYPE VALUE` (type as net-snmp spells it: i, u, s, x, ...),
    /// with the read-write community `private` so the request reaches the
    /// subagent instead of being refused by snmpd's access control.
    pub fn set(&self, oid: &str, ty: &str, value: &str) -> Result<ToolOutput> {
        self.tool_with("snmpset", &["-c", "private"], &[oid, ty, value])
    }

    /// Stops snmpd (SIGTERM, then SIGKILL after 3 s). The socket file may stay.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills snmpd hard (SIGKILL), like a crash: no Close, stale socket file.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts snmpd again on the same port and socket path (after `stop`/`kill`,
    /// or stops the running one first).
    pub fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            self.stop();
        }
        self.spawn_and_wait()
    }

    /// Stops and starts snmpd on the same port and socket path.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn_and_wait()
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        self.kill();
    }
}
