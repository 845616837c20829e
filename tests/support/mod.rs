//! Test harnesses that start real programs (Postfix, snmpd, ...) privately.
#![allow(dead_code)]

pub mod agent;
pub mod dovecot;
pub mod mibs;
pub mod postfix;
pub mod snmpd;
pub mod traps;
pub mod workload;

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;

/// A new temporary directory named `PREFIX...`, removed when dropped.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temporary directory {prefix}...: {e}"))
}

/// Finds `program` on PATH or in the sbin directories, or panics with the
/// Debian package that provides it: a test that needs a real program never
/// silently passes without it.
pub fn require_program(program: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/sbin", "/sbin", "/usr/bin", "/usr/lib/postfix/sbin"] {
        dirs.push(PathBuf::from(extra));
    }
    for dir in dirs {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "this test needs `{program}`, which is not installed: \
         run `apt-get install -y {package}` (or `bash .ci/run`, which installs every test dependency)"
    );
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral TCP port");
    l.local_addr().expect("local addr").port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    s.local_addr().expect("local addr").port()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Polls `cond` until it is true or `timeout` passes.
pub fn wait_until(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Runs the ignored test `helper` (its path in the tier's binary,
/// `module::name`) of the current test binary through
/// `cmd` (a `setpriv ...` or `unshare ...` prefix that drops privileges),
/// and parses the JSON the helper printed after `prefix` on one line.
pub fn run_helper_test(
    mut cmd: std::process::Command,
    helper: &str,
    prefix: &str,
) -> serde_json::Value {
    let exe = std::env::current_exe().expect("test binary path");
    let out = cmd
        .arg(&exe)
        .args(["--ignored", "--exact", helper, "--nocapture"])
        .output()
        .expect("run the helper test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper {helper} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line from helper {helper}: {stdout}"));
    serde_json::from_str(line).expect("helper JSON")
}

/// Held by the tests that measure time or CPU, or load the machine, so
/// that no two of them run at once in a test binary (the rest run beside
/// them as usual). A test that panicked while holding it does not block the
/// others: the lock is taken back from a poisoned state.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
