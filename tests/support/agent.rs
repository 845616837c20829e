//! The built `postfix-agentx` binary, started by a test with its own config.

use super::{is_root, wait_until};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_postfix-agentx");
/// The default (provisional) MIB root.
pub const ROOT: &str = "1.3.6.1.4.1.8072.9999.9999.25";

/// A running agent; SIGTERM then SIGKILL on drop.
pub struct Agent {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub config_path: PathBuf,
}

impl Agent {
    /// Writes `config` (TOML) into a temp dir and starts `postfix-agentx run`.
    /// `{dir}` in the config is replaced by that temp dir; the state directory
    /// defaults to `{dir}/state` unless the config sets `[state]`.
    pub fn start(config: &str) -> Agent {
        Agent::start_with_mode(config, 0o644)
    }

    /// Like `start`, with the config file readable by its owner only, as a
    /// config holding passwords must be.
    pub fn start_private(config: &str) -> Agent {
        Agent::start_with_mode(config, 0o600)
    }

    fn start_with_mode(config: &str, mode: u32) -> Agent {
        let dir = super::temp_dir("pfagentx-agent-");
        let d = dir.path().display().to_string();
        let mut text = config.replace("{dir}", &d);
        if !text.contains("[state]") {
            text.push_str(&format!("\n[state]\ndirectory = \"{d}/state\"\n"));
        }
        let config_path = dir.path().join("agent.toml");
        fs::write(&config_path, text).expect("write agent config");
        fs::set_permissions(
            &config_path,
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .expect("chmod agent config");
        let mut agent = Agent {
            dir,
            child: None,
            config_path,
        };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        // Appended across restarts, so a failure shows every run's log.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("agent log");
        let log2 = log.try_clone().expect("clone log");
        let mut cmd = Command::new(BIN);
        cmd.arg("run").arg("-c").arg(&self.config_path);
        if is_root() {
            cmd.arg("--allow-root");
        }
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

    /// Starts the agent again with the same config and state.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// What the agent logged (stderr), ANSI colours included as written.
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// Waits until the agent's log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Sends SIGTERM and waits up to `timeout`; returns how long the exit took
    /// and the exit status, or None if it did not exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<(Duration, std::process::ExitStatus)> {
        let mut child = self.child.take()?;
        let start = Instant::now();
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((start.elapsed(), status));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn stop(&mut self) {
        let _ = self.terminate(Duration::from_secs(5));
    }

    /// SIGKILL, like a crash: no state saved on the way out.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the binary with `args` to completion.
pub fn run_cli(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run postfix-agentx")
}

/// A minimal agent config pointing at an AgentX socket.
pub fn config_for_socket(socket: &Path) -> String {
    format!(
        "[agentx]\nsocket = \"unix:{}\"\nreconnect_max_seconds = 1\n",
        socket.display()
    )
}
