//! A private, real Postfix instance for tests.
//!
//! Each instance has its own config directory, queue directory, data
//! directory and log file (`maillog_file`, no syslog), listens for SMTP on a
//! free 127.0.0.1 port, and runs without chroot. Starting Postfix needs root;
//! a test run as another user fails with a message saying so.
//!
//! ```ignore
//! let pf = Postfix::builder().alias("alice", "/dev/null").start();
//! let t = pf.smtp_send("a@example.com", &["alice@mx.test.invalid"], "Subject: x\r\n\r\nhi\r\n");
//! assert_eq!(t.data_code, Some(250));
//! ```

use super::{free_tcp_port, is_root, require_program, wait_until};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The hostname every instance uses; local deliveries go to `user@MYHOSTNAME`.
pub const MYHOSTNAME: &str = "mx.test.invalid";

/// master.cf services (no chroot); the smtpd inet line is added per instance.
const MASTER_CF: &str = include_str!("../fixtures/postfix-master.cf");

/// Configures a private Postfix instance before it starts.
pub struct PostfixBuilder {
    main_cf: Vec<String>,
    master_cf: Vec<String>,
    aliases: Vec<(String, String)>,
    files: Vec<(String, String)>,
    pickup: bool,
}

impl PostfixBuilder {
    /// Adds a `main.cf` line (later lines override earlier ones).
    pub fn main_cf(mut self, line: &str) -> Self {
        self.main_cf.push(line.to_string());
        self
    }

    /// Adds a `master.cf` line.
    pub fn master_cf(mut self, line: &str) -> Self {
        self.master_cf.push(line.to_string());
        self
    }

    /// Adds an alias (`name: target`) to the instance's alias map.
    pub fn alias(mut self, name: &str, target: &str) -> Self {
        self.aliases.push((name.to_string(), target.to_string()));
        self
    }

    /// Writes a file into the config directory before start. `{dir}` in the
    /// content is replaced by the instance's base directory.
    pub fn file(mut self, name: &str, content: &str) -> Self {
        self.files.push((name.to_string(), content.to_string()));
        self
    }

    /// Leaves pickup out of master.cf, so sendmail's messages stay in maildrop.
    pub fn without_pickup(mut self) -> Self {
        self.pickup = false;
        self
    }

    /// Starts the instance; panics with a clear reason if it cannot.
    pub fn start(self) -> Postfix {
        require_program("postfix", "postfix");
        assert!(
            is_root(),
            "starting a private Postfix instance needs root (postfix start); run the tests as root, as .ci/run does"
        );
        let base = super::temp_dir("pfagentx-postfix-");
        // Postfix daemons run as user postfix and must traverse the base dir.
        fs::set_permissions(base.path(), fs::Permissions::from_mode(0o755)).expect("chmod base");
        let dir = base.path().to_path_buf();
        let config_dir = dir.join("etc");
        let queue_dir = dir.join("spool");
        let data_dir = dir.join("data");
        let log_dir = dir.join("log");
        let mail_dir = dir.join("mail");
        for d in [&config_dir, &queue_dir, &data_dir, &log_dir, &mail_dir] {
            fs::create_dir_all(d).expect("create instance dir");
        }
        // Deliveries to files run as default_privs (nobody): let them write.
        fs::set_permissions(&mail_dir, fs::Permissions::from_mode(0o1777)).expect("chmod mail");
        chown(&data_dir, "postfix");
        let smtp_port = free_tcp_port();
        let d = dir.display().to_string();
        let mut main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {d}/spool\n\
             data_directory = {d}/data\n\
             command_directory = /usr/sbin\n\
             daemon_directory = /usr/lib/postfix/sbin\n\
             meta_directory = /etc/postfix\n\
             shlib_directory = /usr/lib/postfix\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = {MYHOSTNAME}\n\
             mydomain = test.invalid\n\
             myorigin = $myhostname\n\
             mydestination = $myhostname, localhost\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             relayhost =\n\
             maillog_file = {d}/log/maillog\n\
             maillog_file_prefixes = {d}/log\n\
             alias_maps = hash:{d}/etc/aliases\n\
             alias_database = hash:{d}/etc/aliases\n\
             smtputf8_enable = no\n\
             biff = no\n\
             smtpd_banner = $myhostname ESMTP\n\
             # tests must not wait on DNS\n\
             disable_dns_lookups = yes\n\
             smtp_host_lookup = native\n\
             # retry quickly so deferred mail moves in test time\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             smtp_connect_timeout = 2s\n"
        );
        for line in &self.main_cf {
            main_cf.push_str(&line.replace("{dir}", &d));
            main_cf.push('\n');
        }
        let mut master_cf = format!("127.0.0.1:{smtp_port} inet n - n - - smtpd\n");
        for line in MASTER_CF.lines() {
            if line.starts_with('#') || !self.pickup && line.starts_with("pickup ") {
                continue;
            }
            master_cf.push_str(line);
            master_cf.push('\n');
        }
        for line in &self.master_cf {
            master_cf.push_str(&line.replace("{dir}", &d));
            master_cf.push('\n');
        }
        fs::write(config_dir.join("main.cf"), main_cf).expect("write main.cf");
        fs::write(config_dir.join("master.cf"), master_cf).expect("write master.cf");
        let mut aliases = String::from("postmaster: root\n");
        for (name, target) in &self.aliases {
            aliases.push_str(&format!("{name}: {}\n", target.replace("{dir}", &d)));
        }
        fs::write(config_dir.join("aliases"), aliases).expect("write aliases");
        for (name, content) in &self.files {
            let path = config_dir.join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("create file dir");
            }
            fs::write(&path, content.replace("{dir}", &d)).expect("write config file");
        }
        run_ok(
            Command::new("postalias")
                .arg("-c")
                .arg(&config_dir)
                .arg(config_dir.join("aliases")),
        );
        let pf = Postfix {
            base,
            config_dir,
            queue_dir,
            log_path: log_dir.join("maillog"),
            mail_dir,
            smtp_port,
        };
        pf.start_again();
        pf
    }
}

/// A running private Postfix instance; stopped (and its files removed) on drop.
pub struct Postfix {
    base: tempfile::TempDir,
    pub config_dir: PathBuf,
    pub queue_dir: PathBuf,
    pub log_path: PathBuf,
    /// A world-writable directory for file and mailbox deliveries.
    pub mail_dir: PathBuf,
    pub smtp_port: u16,
}

impl Postfix {
    pub fn builder() -> PostfixBuilder {
        PostfixBuilder {
            main_cf: Vec::new(),
            master_cf: Vec::new(),
            aliases: Vec::new(),
            files: Vec::new(),
            pickup: true,
        }
    }

    /// The instance's base directory (parent of etc/, spool/, log/, mail/).
    pub fn dir(&self) -> &Path {
        self.base.path()
    }

    /// `postfix start`, then waits until master runs and SMTP answers.
    pub fn start_again(&self) {
        let out = self.postfix_cmd(&["start"]);
        assert!(
            out.status.success(),
            "postfix start failed: {}{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        let port = self.smtp_port;
        // Look for the listening socket instead of connecting to it: a probe
        // connection would show up in the log as an SMTP client.
        let up = wait_until(Duration::from_secs(15), || tcp_listening(port));
        assert!(
            up,
            "Postfix did not listen on 127.0.0.1:{port}\nlog:\n{}",
            self.log_text()
        );
    }

    /// `postfix stop`.
    pub fn stop(&self) {
        let _ = self.postfix_cmd(&["stop"]);
        let pid_file = self.queue_dir.join("pid/master.pid");
        wait_until(Duration::from_secs(10), || self.master_pid().is_none());
        let _ = fs::remove_file(pid_file);
    }

    /// The master's pid, if it runs.
    pub fn master_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.queue_dir.join("pid/master.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        // SAFETY: kill with signal 0 only checks that the process exists.
        (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }

    /// Runs `postfix -c CONFIG ARGS...`.
    pub fn postfix_cmd(&self, args: &[&str]) -> Output {
        Command::new("postfix")
            .arg("-c")
            .arg(&self.config_dir)
            .args(args)
            .output()
            .expect("run postfix")
    }

    /// Runs one of Postfix's commands with `-c CONFIG` and says whether it
    /// succeeded: for a wake-up retried in a wait loop, which may fail while
    /// the master has the service throttled.
    pub fn try_command(&self, program: &str, args: &[&str]) -> bool {
        Command::new(program)
            .arg("-c")
            .arg(&self.config_dir)
            .args(args)
            .output()
            .is_ok_and(|out| out.status.success())
    }

    /// Runs one of Postfix's commands (`postsuper`, `postqueue`, `postconf`,
    /// `postlog`, ...) with `-c CONFIG`, asserting success.
    pub fn command(&self, program: &str, args: &[&str]) -> String {
        let out = run_ok(
            Command::new(program)
                .arg("-c")
                .arg(&self.config_dir)
                .args(args),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The whole log as text (lossy).
    pub fn log_text(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the log contains `needle` at least `count` times.
    pub fn wait_for_log(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_text().matches(needle).count() >= count)
    }

    /// `postqueue -j`: one JSON object per queued message.
    pub fn queue_json(&self) -> Vec<serde_json::Value> {
        self.command("postqueue", &["-j"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("postqueue -j line is JSON"))
            .collect()
    }

    /// Waits until `postqueue -j` shows no message.
    pub fn wait_queue_empty(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.queue_json().is_empty())
    }

    /// `postqueue -f`: attempt to deliver everything now.
    pub fn flush(&self) {
        self.command("postqueue", &["-f"]);
    }

    /// Submits `message` with sendmail (local submission via maildrop/pickup).
    pub fn sendmail(&self, from: &str, recipients: &[&str], message: &str) {
        let mut child = Command::new("sendmail")
            .arg("-C")
            .arg(&self.config_dir)
            .arg("-f")
            .arg(from)
            .args(recipients)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sendmail");
        child
            .stdin
            .take()
            .expect("sendmail stdin")
            .write_all(message.as_bytes())
            .expect("write to sendmail");
        let out = child.wait_with_output().expect("wait for sendmail");
        assert!(
            out.status.success(),
            "sendmail failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Opens an SMTP session to this instance.
    pub fn smtp(&self) -> SmtpClient {
        SmtpClient::connect(self.smtp_port)
    }

    /// One SMTP transaction: EHLO, MAIL, RCPT for each recipient, DATA if any
    /// recipient was accepted, QUIT. Returns every reply code.
    pub fn smtp_send(&self, from: &str, recipients: &[&str], message: &str) -> SmtpTranscript {
        let mut c = self.smtp();
        c.command("EHLO client.test.invalid");
        let mail_code = c.command(&format!("MAIL FROM:<{from}>")).0;
        let mut rcpt_codes = Vec::new();
        for r in recipients {
            rcpt_codes.push(c.command(&format!("RCPT TO:<{r}>")).0);
        }
        let mut data_code = None;
        let mut data_text = String::new();
        if mail_code == 250 && rcpt_codes.contains(&250) {
            let (code, _) = c.command("DATA");
            if code == 354 {
                let (code, text) = c.send_data(message);
                data_code = Some(code);
                data_text = text;
            } else {
                data_code = Some(code);
            }
        }
        c.command("QUIT");
        SmtpTranscript {
            mail_code,
            rcpt_codes,
            data_code,
            data_text,
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if self.master_pid().is_some() {
            let _ = self.postfix_cmd(&["stop"]);
            wait_until(Duration::from_secs(10), || self.master_pid().is_none());
        }
        if let Some(pid) = self.master_pid() {
            // SAFETY: sending SIGKILL to our own test instance's master.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Reply codes of one SMTP transaction.
#[derive(Debug, Clone)]
pub struct SmtpTranscript {
    pub mail_code: u16,
    pub rcpt_codes: Vec<u16>,
    pub data_code: Option<u16>,
    /// The reply text after the final `.` (holds `queued as QID`).
    pub data_text: String,
}

impl SmtpTranscript {
    /// The queue id from `250 2.0.0 Ok: queued as QID`.
    pub fn queue_id(&self) -> Option<String> {
        self.data_text
            .split("queued as ")
            .nth(1)
            .map(|s| s.trim().to_string())
    }
}

/// A minimal SMTP client: enough to drive Postfix's smtpd in tests.
pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    pub banner: (u16, String),
}

impl SmtpClient {
    pub fn connect(port: u16) -> SmtpClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to SMTP");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set timeout");
        let writer = stream.try_clone().expect("clone stream");
        let mut c = SmtpClient {
            reader: BufReader::new(stream),
            writer,
            banner: (0, String::new()),
        };
        c.banner = c.reply();
        c
    }

    /// Reads one (possibly multi-line) reply.
    pub fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read SMTP reply");
            if n == 0 {
                return (0, text);
            }
            text.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return (code, text);
            }
        }
    }

    /// Sends a command line and reads its reply.
    pub fn command(&mut self, line: &str) -> (u16, String) {
        if self
            .writer
            .write_all(format!("{line}\r\n").as_bytes())
            .is_err()
        {
            return (0, String::new());
        }
        self.reply()
    }

    /// Sends a message body (dot-stuffed, CRLF line ends) and the final `.`.
    pub fn send_data(&mut self, message: &str) -> (u16, String) {
        let mut out = String::new();
        for line in message.lines() {
            if line.starts_with('.') {
                out.push('.');
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str(".\r\n");
        self.writer.write_all(out.as_bytes()).expect("send DATA");
        self.reply()
    }
}

/// What a fake remote MTA (Postfix's `smtp-sink`) does with mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    /// Accepts every message.
    Accept,
    /// Answers RCPT with 450 (deferral).
    SoftReject,
    /// Answers RCPT with 550 (bounce).
    HardReject,
}

/// A running `smtp-sink`, killed on drop.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    /// Each accepted message is dumped here, one file per message.
    pub dump_dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start(mode: SinkMode) -> SmtpSink {
        let program = require_program("smtp-sink", "postfix");
        let dump_dir = super::temp_dir("pfagentx-sink-");
        // smtp-sink refuses to run as root without -u; it writes as that user.
        fs::set_permissions(dump_dir.path(), fs::Permissions::from_mode(0o777))
            .expect("chmod sink");
        let port = free_tcp_port();
        let mut cmd = Command::new(program);
        if is_root() {
            cmd.arg("-u").arg("nobody");
        }
        // `-d` dumps each message to its own file named by the template.
        cmd.arg("-d")
            .arg(dump_dir.path().join("%Y%m%d%H%M%S."))
            .arg("-h")
            .arg("sink.test.invalid");
        match mode {
            SinkMode::Accept => {}
            SinkMode::SoftReject => {
                cmd.arg("-r").arg("RCPT");
            }
            SinkMode::HardReject => {
                cmd.arg("-f").arg("RCPT");
            }
        }
        cmd.arg(format!("127.0.0.1:{port}")).arg("16");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start smtp-sink");
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "smtp-sink did not listen on 127.0.0.1:{port}");
        SmtpSink {
            child,
            port,
            dump_dir,
        }
    }

    /// Number of messages the sink accepted (one dump file each).
    pub fn messages(&self) -> usize {
        fs::read_dir(self.dump_dir.path())
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0)
    }

    /// The dumped messages' contents.
    pub fn contents(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(dir) = fs::read_dir(self.dump_dir.path()) {
            for entry in dir.filter_map(Result::ok) {
                let mut s = String::new();
                if let Ok(mut f) = fs::File::open(entry.path()) {
                    let _ = f.read_to_string(&mut s);
                }
                out.push(s);
            }
        }
        out
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// True if something listens on 127.0.0.1:`port` (or 0.0.0.0), per /proc/net/tcp.
pub fn tcp_listening(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table.lines().skip(1).any(|line| {
        let mut f = line.split_whitespace();
        let local = f.nth(1).unwrap_or("");
        let state = f.nth(1).unwrap_or("");
        state == "0A" && wanted.iter().any(|w| w.as_str() == local)
    })
}

fn chown(path: &Path, user: &str) {
    run_ok(Command::new("chown").arg(user).arg(path));
}
