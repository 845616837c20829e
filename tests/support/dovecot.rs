//! A private, real Dovecot (IMAP, IMAPS, POP3, POP3S on free loopback
//! ports) with passwd-file users, Maildirs, a self-signed certificate and a
//! SASL socket for Postfix; and self-signed test certificates.

use super::postfix::tcp_listening;
use super::{free_tcp_port, require_program, wait_until};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Every test user's password.
pub const PASSWORD: &str = "s3cret-pw";
/// Maildirs belong to nobody: Postfix's virtual(8) writes, Dovecot reads.
pub const MAIL_UID: u32 = 65534;

pub fn self_signed(cn: &str, not_after: (i32, u8, u8)) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(vec![cn.to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(2001, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes a certificate and its key (0600) into `dir`.
pub fn write_cert(
    dir: &Path,
    name: &str,
    cn: &str,
    not_after: (i32, u8, u8),
) -> (PathBuf, PathBuf) {
    let (cert, key) = self_signed(cn, not_after);
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    fs::write(&cert_path, cert).unwrap();
    fs::write(&key_path, key).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    (cert_path, key_path)
}

/// A private Dovecot (IMAP, IMAPS, POP3, POP3S on free ports), stopped on drop.
pub struct Dovecot {
    dir: tempfile::TempDir,
    conf: PathBuf,
    child: Option<Child>,
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
}

impl Dovecot {
    pub fn start(users: &[&str]) -> Dovecot {
        let program = require_program("dovecot", "dovecot-imapd dovecot-pop3d");
        assert!(
            super::is_root(),
            "a private Dovecot needs root; run the tests as root"
        );
        let dir = super::temp_dir("pfagentx-dovecot-");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        for sub in ["run", "state", "maildir"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let status = Command::new("chown")
            .arg(format!("{MAIL_UID}:{MAIL_UID}"))
            .arg(d.join("maildir"))
            .status()
            .unwrap();
        assert!(status.success());
        let passwd: String = users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}{PASSWORD}::::::\n"))
            .collect();
        fs::write(d.join("passwd"), passwd).unwrap();
        write_cert(d, "dovecot", "localhost", (2040, 1, 1));
        let (imap, imaps, pop3, pop3s) = (
            free_tcp_port(),
            free_tcp_port(),
            free_tcp_port(),
            free_tcp_port(),
        );
        let p = d.display();
        let conf = format!(
            "base_dir = {p}/run\n\
             state_dir = {p}/state\n\
             log_path = {p}/dovecot.log\n\
             protocols = imap pop3\n\
             listen = 127.0.0.1\n\
             ssl = yes\n\
             ssl_cert = <{p}/dovecot.pem\n\
             ssl_key = <{p}/dovecot.key\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain\n\
             mail_location = maildir:{p}/maildir/%u\n\
             mail_uid = {MAIL_UID}\n\
             mail_gid = {MAIL_UID}\n\
             first_valid_uid = 1\n\
             first_valid_gid = 1\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {p}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = home={p}/maildir/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  \
               inet_listener imaps {{\n    port = {imaps}\n    ssl = yes\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n  \
               inet_listener pop3s {{\n    port = {pop3s}\n    ssl = yes\n  }}\n}}\n\
             # SASL for Postfix's submission service (smtpd runs as postfix)\n\
             service auth {{\n  unix_listener auth-postfix {{\n    mode = 0666\n  }}\n}}\n"
        );
        let conf_path = d.join("dovecot.conf");
        fs::write(&conf_path, conf).unwrap();
        let _ = program;
        let mut dovecot = Dovecot {
            dir,
            conf: conf_path,
            child: None,
            imap,
            imaps,
            pop3,
            pop3s,
        };
        dovecot.start_again();
        dovecot
    }

    pub fn start_again(&mut self) {
        let child = Command::new(require_program("dovecot", "dovecot-imapd dovecot-pop3d"))
            .arg("-F")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start dovecot");
        self.child = Some(child);
        let ports = [self.imap, self.imaps, self.pop3, self.pop3s];
        let up = wait_until(Duration::from_secs(15), || {
            ports.iter().all(|&p| tcp_listening(p))
        });
        assert!(up, "dovecot did not listen on {ports:?}:\n{}", self.log());
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: SIGTERM to our own child; Dovecot's master stops its processes.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            if !wait_until(Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
            }) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let ports = [self.imap, self.imaps, self.pop3, self.pop3s];
        wait_until(Duration::from_secs(10), || {
            ports.iter().all(|&p| !tcp_listening(p))
        });
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// The SASL socket for Postfix's `smtpd_sasl_path`.
    pub fn auth_socket(&self) -> PathBuf {
        self.dir.path().join("run/auth-postfix")
    }

    pub fn maildir_base(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// The messages in `user`'s INBOX (new/ and cur/).
    pub fn messages(&self, user: &str) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = fs::read_dir(self.maildir_base().join(user).join(sub)) {
                for e in entries.filter_map(Result::ok) {
                    out.push(fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}
