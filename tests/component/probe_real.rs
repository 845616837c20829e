//! Probes and certificate expiry against real programs: a private Postfix
//! delivering into a Maildir that a private Dovecot serves over IMAP and
//! POP3, fake SMTP servers for the failure cases, and the values read back
//! through a real snmpd with snmptable.

use crate::support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::agent::{config_for_socket, Agent};
use support::postfix::{tcp_listening, Postfix};
use support::snmpd::Snmpd;
use support::{free_tcp_port, wait_until};

const DOMAIN: &str = "probe.test.invalid";
use support::dovecot::{self_signed, write_cert, Dovecot, MAIL_UID, PASSWORD};

type Rows = support::mibs::Rows;

fn table(snmpd: &Snmpd, name: &str) -> Rows {
    support::mibs::snmptable_rows(&snmpd.address(), name)
}

fn cell(rows: &Rows, row: &str, col: &str) -> String {
    rows.get(row)
        .and_then(|r| r.get(col))
        .cloned()
        .unwrap_or_default()
}

/// Waits until probe `name` has `status`; panics with the table and logs.
fn wait_status(snmpd: &Snmpd, agent: &Agent, name: &str, status: &str, secs: u64) -> Rows {
    let ok = wait_until(Duration::from_secs(secs), || {
        cell(
            &table(snmpd, "postfixProbeTable"),
            name,
            "postfixProbeStatus",
        ) == status
    });
    let rows = table(snmpd, "postfixProbeTable");
    assert!(
        ok,
        "probe {name} did not reach {status}: {:?}\nagent log:\n{}",
        rows.get(name),
        agent.log()
    );
    rows
}

/// A Postfix instance that delivers `user@DOMAIN` into Dovecot's Maildirs.
fn postfix_for(dovecot: &Dovecot, users: &[&str], extra: &[String]) -> Postfix {
    let map: Vec<String> = users.iter().map(|u| format!("{u}@{DOMAIN}={u}/")).collect();
    let mut b = Postfix::builder()
        .main_cf(&format!("virtual_mailbox_domains = {DOMAIN}"))
        .main_cf(&format!(
            "virtual_mailbox_base = {}",
            dovecot.maildir_base().display()
        ))
        .main_cf(&format!(
            "virtual_mailbox_maps = inline:{{ {} }}",
            map.join(", ")
        ))
        .main_cf(&format!("virtual_uid_maps = static:{MAIL_UID}"))
        .main_cf(&format!("virtual_gid_maps = static:{MAIL_UID}"));
    for line in extra {
        b = if line.contains(" inet ") {
            b.master_cf(line)
        } else {
            b.main_cf(line)
        };
    }
    b.start()
}

/// Starts the agent; its config holds passwords, so the first start must be
/// refused (mode 0644) and the second, after chmod 640, must run.
fn start_agent_with_private_config(config: &str) -> Agent {
    let mut agent = Agent::start(config);
    assert!(
        agent.wait_for_log("chmod 640", Duration::from_secs(10)),
        "a world-readable config with passwords must be refused:\n{}",
        agent.log()
    );
    fs::set_permissions(&agent.config_path, fs::Permissions::from_mode(0o640)).unwrap();
    agent.restart();
    agent
}

fn round_trip_probe(
    name: &str,
    kind: &str,
    target: u16,
    tls: &str,
    user: &str,
    smtp: u16,
) -> String {
    format!(
        "[[probe]]\nname = \"{name}\"\ntype = \"{kind}\"\ntarget = \"127.0.0.1:{target}\"\n\
         tls = \"{tls}\"\ntls_verify = false\nsmtp_target = \"127.0.0.1:{smtp}\"\n\
         to = \"{user}@{DOMAIN}\"\nfrom = \"sender@{DOMAIN}\"\nuser = \"{user}\"\n\
         password = \"{PASSWORD}\"\ninterval_seconds = 3600\ntimeout_seconds = 10\n\
         wait_seconds = 30\n"
    )
}

#[test]
fn round_trips_and_certificates_through_real_postfix_dovecot_and_snmpd() {
    let snmpd = Snmpd::start().unwrap();
    let users = [
        "imapuser",
        "pop3user",
        "plainuser",
        "subuser",
        "imapsuser",
        "stlsuser",
    ];
    let dovecot = Dovecot::start(&users);
    let certs = support::temp_dir("pfagentx-certs-");
    fs::set_permissions(certs.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (valid, valid_key) = write_cert(certs.path(), "valid", "mx.test.invalid", (2040, 1, 1));
    let (expired, expired_key) =
        write_cert(certs.path(), "expired", "old.test.invalid", (2002, 1, 1));
    let expired_port = free_tcp_port();
    let submission_port = free_tcp_port();
    let smtps_port = free_tcp_port();
    let pf = postfix_for(
        &dovecot,
        &users,
        &[
            format!("smtpd_tls_cert_file = {}", valid.display()),
            format!("smtpd_tls_key_file = {}", valid_key.display()),
            "smtpd_tls_security_level = may".to_string(),
            // A second smtpd serving the expired certificate (a master.cf
            // override, so the agent must read `postconf -P` too).
            format!(
                "127.0.0.1:{expired_port} inet n - n - - smtpd -o smtpd_tls_cert_file={} -o smtpd_tls_key_file={}",
                expired.display(),
                expired_key.display()
            ),
            // Submission: TLS required, and only authenticated clients may send.
            format!(
                "127.0.0.1:{submission_port} inet n - n - - smtpd -o smtpd_tls_security_level=encrypt \
                 -o smtpd_sasl_auth_enable=yes -o smtpd_sasl_type=dovecot -o smtpd_sasl_path={} \
                 -o smtpd_client_restrictions=permit_sasl_authenticated,reject",
                dovecot.auth_socket().display()
            ),
            format!(
                "127.0.0.1:{smtps_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes \
                 -o smtpd_tls_security_level=encrypt"
            ),
        ],
    );
    let ports = [expired_port, submission_port, smtps_port];
    assert!(wait_until(Duration::from_secs(10), || ports
        .iter()
        .all(|&p| tcp_listening(p))));

    // Leftovers of an earlier run and an unrelated message, already delivered.
    for user in ["imapuser", "pop3user"] {
        let probe = if user == "imapuser" { "imap" } else { "pop3s" };
        for subject in [
            format!("[postfix-agentx probe {probe}] old-token"),
            "keep me".to_string(),
        ] {
            let t = pf.smtp_send(
                &format!("x@{DOMAIN}"),
                &[&format!("{user}@{DOMAIN}")],
                &format!("Subject: {subject}\n\nbody\n"),
            );
            assert_eq!(t.data_code, Some(250), "{t:?}");
        }
    }
    assert!(
        wait_until(Duration::from_secs(20), || dovecot
            .messages("imapuser")
            .len()
            == 2
            && dovecot.messages("pop3user").len() == 2),
        "messages not delivered to the Maildirs:\n{}",
        pf.log_text()
    );

    let smtp = pf.smtp_port;
    let mut config = config_for_socket(&snmpd.socket_path());
    config.push_str(&format!(
        "[log]\nenabled = false\n[queue]\nenabled = false\n[process]\nenabled = false\n\
         [postfix]\nconfig_directory = \"{}\"\n[certs]\ninterval_seconds = 2\n\
         [[probe]]\nname = \"smtp\"\ntype = \"smtp\"\ntarget = \"127.0.0.1:{smtp}\"\n\
         tls = \"starttls\"\ninterval_seconds = 2\n\
         [[probe]]\nname = \"smtp-expired\"\ntype = \"smtp\"\n\
         target = \"127.0.0.1:{expired_port}\"\ntls = \"starttls\"\ninterval_seconds = 2\n\
         [[probe]]\nname = \"smtp-verified\"\ntype = \"smtp\"\ntarget = \"127.0.0.1:{smtp}\"\n\
         tls = \"starttls\"\ntls_verify = true\ninterval_seconds = 2\n\
         [[probe]]\nname = \"smtps\"\ntype = \"smtp\"\ntarget = \"127.0.0.1:{smtps_port}\"\n\
         tls = \"implicit\"\ninterval_seconds = 2\n",
        pf.config_dir.display()
    ));
    config.push_str(&round_trip_probe(
        "imap",
        "imap-roundtrip",
        dovecot.imap,
        "starttls",
        "imapuser",
        smtp,
    ));
    config.push_str(&round_trip_probe(
        "pop3s",
        "pop3-roundtrip",
        dovecot.pop3s,
        "implicit",
        "pop3user",
        smtp,
    ));
    config.push_str(&round_trip_probe(
        "imap-plain",
        "imap-roundtrip",
        dovecot.imap,
        "none",
        "plainuser",
        smtp,
    ));
    config.push_str(&round_trip_probe(
        "imaps",
        "imap-roundtrip",
        dovecot.imaps,
        "implicit",
        "imapsuser",
        smtp,
    ));
    config.push_str(&round_trip_probe(
        "pop3-stls",
        "pop3-roundtrip",
        dovecot.pop3,
        "starttls",
        "stlsuser",
        smtp,
    ));
    // Submission with AUTH PLAIN after STARTTLS, and the same without AUTH.
    config.push_str(&format!(
        "{}smtp_user = \"subuser\"\nsmtp_password = \"{PASSWORD}\"\n",
        round_trip_probe(
            "imap-auth",
            "imap-roundtrip",
            dovecot.imap,
            "starttls",
            "subuser",
            submission_port
        )
    ));
    config.push_str(&round_trip_probe(
        "imap-noauth",
        "imap-roundtrip",
        dovecot.imap,
        "starttls",
        "subuser",
        submission_port,
    ));
    let agent = start_agent_with_private_config(&config);

    let rows = wait_status(&snmpd, &agent, "imap-noauth", "failed", 60);
    let reason = cell(&rows, "imap-noauth", "postfixProbeLastError");
    assert!(reason.starts_with("SMTP: RCPT TO 554 5.7.1"), "{reason}");
    for name in [
        "smtp",
        "smtp-expired",
        "smtps",
        "imap",
        "pop3s",
        "imap-plain",
        "imap-auth",
        "imaps",
        "pop3-stls",
    ] {
        wait_status(&snmpd, &agent, name, "ok", 60);
    }
    let rows = wait_status(&snmpd, &agent, "smtp-verified", "failed", 20);
    let reason = cell(&rows, "smtp-verified", "postfixProbeLastError");
    assert!(
        reason.contains("TLS handshake failed") && reason.contains("certificate"),
        "{reason}"
    );
    for name in [
        "imap",
        "pop3s",
        "imap-plain",
        "imap-auth",
        "imaps",
        "pop3-stls",
    ] {
        assert_eq!(cell(&rows, name, "postfixProbeSuccesses"), "1", "{rows:?}");
        assert_eq!(cell(&rows, name, "postfixProbeLastError"), "", "{rows:?}");
        let latency: u64 = cell(&rows, name, "postfixProbeLatency").parse().unwrap();
        assert!(latency > 0 && latency < 30_000, "{name}: {latency} ms");
    }
    assert_eq!(cell(&rows, "imap", "postfixProbeType"), "imapRoundtrip");
    assert_eq!(cell(&rows, "pop3s", "postfixProbeType"), "pop3Roundtrip");
    assert_eq!(
        cell(&rows, "pop3s", "postfixProbeTarget"),
        format!("127.0.0.1:{}", dovecot.pop3s)
    );
    let banner: u64 = cell(&rows, "smtp", "postfixProbeBannerLatency")
        .parse()
        .unwrap();
    let total: u64 = cell(&rows, "smtp", "postfixProbeLatency").parse().unwrap();
    assert!(banner <= total, "{rows:?}");

    // Probe messages and leftovers are gone; the unrelated message stays.
    for user in ["imapuser", "pop3user"] {
        let left = dovecot.messages(user);
        assert_eq!(left.len(), 1, "{user}: {left:?}");
        assert!(left[0].contains("Subject: keep me"), "{left:?}");
    }
    assert!(dovecot.messages("plainuser").is_empty());
    for user in ["subuser", "imapsuser", "stlsuser"] {
        assert!(dovecot.messages(user).is_empty(), "{user}");
    }

    // Certificates: the files (main.cf and the master.cf override) and the
    // ones served in the STARTTLS handshakes.
    let want = [
        (valid.display().to_string(), true),
        (expired.display().to_string(), false),
        ("probe:smtp".to_string(), true),
        ("probe:smtp-expired".to_string(), false),
        ("probe:smtps".to_string(), true),
        ("probe:imap".to_string(), true),
        ("probe:pop3s".to_string(), true),
        ("probe:imaps".to_string(), true),
        ("probe:pop3-stls".to_string(), true),
    ];
    let have_all = || {
        let t = table(&snmpd, "postfixCertTable");
        want.iter().all(|(n, _)| t.contains_key(n))
    };
    assert!(
        wait_until(Duration::from_secs(20), have_all),
        "{:?}\n{}",
        table(&snmpd, "postfixCertTable"),
        agent.log()
    );
    let certs_table = table(&snmpd, "postfixCertTable");
    for (name, valid) in &want {
        let days: i64 = cell(&certs_table, name, "postfixCertDaysToExpiry")
            .parse()
            .unwrap();
        if *valid {
            assert!(days > 3000, "{name}: {days} ({certs_table:?})");
        } else {
            assert!(days < -8000, "{name}: {days} ({certs_table:?})");
        }
    }
    assert!(
        cell(&certs_table, "probe:smtp-expired", "postfixCertSubject").contains("old.test.invalid")
    );
    assert!(cell(&certs_table, "probe:smtp", "postfixCertSubject").contains("mx.test.invalid"));
    assert!(cell(&certs_table, "probe:imap", "postfixCertSubject").contains("localhost"));
    assert!(cell(
        &certs_table,
        &valid.display().to_string(),
        "postfixCertNotAfter"
    )
    .starts_with("2040-1-1"));
    // The plain IMAP probe was served no certificate.
    assert!(
        !certs_table.contains_key("probe:imap-plain"),
        "{certs_table:?}"
    );

    // Renewal: a new certificate in the same file shows up on the next read.
    let (renewed, _) = self_signed("mx.test.invalid", (2045, 6, 1));
    fs::write(&valid, renewed).unwrap();
    let path = valid.display().to_string();
    assert!(
        wait_until(Duration::from_secs(15), || cell(
            &table(&snmpd, "postfixCertTable"),
            &path,
            "postfixCertNotAfter"
        )
        .starts_with("2045-6-1")),
        "{:?}",
        table(&snmpd, "postfixCertTable")
    );

    // Never a password in the log.
    assert!(
        !agent.log().contains(PASSWORD),
        "password in the agent's log"
    );
}

#[test]
fn mailbox_outage_fails_the_round_trip_and_recovery_clears_it() {
    let snmpd = Snmpd::start().unwrap();
    let mut dovecot = Dovecot::start(&["imapuser"]);
    let pf = postfix_for(&dovecot, &["imapuser"], &[]);
    let mut config = config_for_socket(&snmpd.socket_path());
    config.push_str(
        "[log]\nenabled = false\n[queue]\nenabled = false\n[process]\nenabled = false\n\
         [certs]\nenabled = false\n",
    );
    config.push_str(
        &round_trip_probe(
            "imap",
            "imap-roundtrip",
            dovecot.imap,
            "starttls",
            "imapuser",
            pf.smtp_port,
        )
        .replace("interval_seconds = 3600", "interval_seconds = 2")
        .replace("timeout_seconds = 10", "timeout_seconds = 3")
        .replace("wait_seconds = 30", "wait_seconds = 10"),
    );
    let agent = start_agent_with_private_config(&config);
    wait_status(&snmpd, &agent, "imap", "ok", 60);
    // [certs] enabled = false: no certificate table at all.
    assert!(table(&snmpd, "postfixCertTable").is_empty());

    dovecot.stop();
    // A run during Dovecot's shutdown may see a reset; the next one a refusal.
    let refused = wait_until(Duration::from_secs(30), || {
        let rows = table(&snmpd, "postfixProbeTable");
        cell(&rows, "imap", "postfixProbeStatus") == "failed"
            && cell(&rows, "imap", "postfixProbeLastError") == "IMAP: connection refused"
    });
    let rows = table(&snmpd, "postfixProbeTable");
    assert!(refused, "{rows:?}\n{}", agent.log());
    let successes: u64 = cell(&rows, "imap", "postfixProbeSuccesses")
        .parse()
        .unwrap();
    assert!(
        cell(&rows, "imap", "postfixProbeConsecutiveFailures")
            .parse::<u64>()
            .unwrap()
            >= 1
    );

    dovecot.start_again();
    let rows = wait_status(&snmpd, &agent, "imap", "ok", 60);
    assert!(
        cell(&rows, "imap", "postfixProbeSuccesses")
            .parse::<u64>()
            .unwrap()
            > successes
    );
    assert_eq!(cell(&rows, "imap", "postfixProbeConsecutiveFailures"), "0");
    assert_eq!(cell(&rows, "imap", "postfixProbeLastError"), "");
}

/// Accepts connections and answers each with `banner`, then follows a tiny
/// SMTP dialogue without STARTTLS.
fn fake_smtp(banner: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = stream.try_clone().unwrap();
                let _ = w.write_all(banner.as_bytes());
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let reply: &[u8] = if line.starts_with("EHLO") {
                        b"250-fake.test.invalid\r\n250 PIPELINING\r\n"
                    } else if line.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"502 no\r\n"
                    };
                    if w.write_all(reply).is_err() || line.starts_with("QUIT") {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn smtp_failures_are_named_and_never_hang() {
    let snmpd = Snmpd::start().unwrap();
    let rejecting = fake_smtp("554 5.7.1 go away\r\n");
    let no_tls = fake_smtp("220 fake.test.invalid ESMTP\r\n");
    // Accepts (the kernel completes the handshake) but never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let closed = free_tcp_port();
    let mut config = config_for_socket(&snmpd.socket_path());
    config.push_str("[log]\nenabled = false\n[queue]\nenabled = false\n[process]\nenabled = false\n[certs]\nfrom_postfix = false\n");
    for (name, port, tls) in [
        ("rejecting", rejecting, "may"),
        ("no-tls", no_tls, "starttls"),
        ("no-tls-may", no_tls, "may"),
        ("silent", silent_port, "may"),
        ("closed", closed, "may"),
    ] {
        config.push_str(&format!(
            "[[probe]]\nname = \"{name}\"\ntype = \"smtp\"\ntarget = \"127.0.0.1:{port}\"\n\
             tls = \"{tls}\"\ninterval_seconds = 2\ntimeout_seconds = 2\n"
        ));
    }
    config.push_str("[[probe]]\nname = \"off\"\ntype = \"smtp\"\nenabled = false\n");
    let dump_config = config.clone();
    // Mid-run at shutdown: the agent must not wait out this timeout.
    config.push_str(&format!(
        "[[probe]]\nname = \"silent-long\"\ntype = \"smtp\"\n\
         target = \"127.0.0.1:{silent_port}\"\ntimeout_seconds = 120\n"
    ));
    let mut agent = Agent::start(&config);
    let expect = [
        ("rejecting", "failed", "banner 554 5.7.1 go away"),
        ("no-tls", "failed", "STARTTLS not offered"),
        ("no-tls-may", "ok", ""),
        ("silent", "timeout", "timed out waiting for the banner"),
        ("closed", "failed", "connection refused"),
        ("off", "disabled", ""),
    ];
    for (name, status, _) in expect {
        wait_status(&snmpd, &agent, name, status, 30);
    }
    let rows = table(&snmpd, "postfixProbeTable");
    for (name, status, reason) in expect {
        assert_eq!(cell(&rows, name, "postfixProbeStatus"), status, "{rows:?}");
        assert_eq!(
            cell(&rows, name, "postfixProbeLastError"),
            reason,
            "{rows:?}"
        );
    }
    let latency: u64 = cell(&rows, "silent", "postfixProbeLatency")
        .parse()
        .unwrap();
    assert!(
        (1900..5000).contains(&latency),
        "timeout after ~2 s, not a hang: {latency}"
    );
    assert_eq!(cell(&rows, "off", "postfixProbeFailures"), "0");
    assert!(cell(&rows, "no-tls-may", "postfixProbeBannerLatency")
        .parse::<u64>()
        .is_ok());
    // The health row names a failing probe.
    let health = table(&snmpd, "postfixSourceTable");
    assert_eq!(
        cell(&health, "probes", "postfixSourceStatus"),
        "error",
        "{health:?}"
    );

    // `dump` runs each probe once.
    let dump_path = agent.dir.path().join("dump.toml");
    fs::write(&dump_path, dump_config).unwrap();
    let dump = support::agent::run_cli(&["dump", "-c", &dump_path.display().to_string()]);
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let line = |object: &str| {
        text.lines()
            .find(|l| l.starts_with(object))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("postfixProbeLastError.\"closed\"").ends_with("connection refused"),
        "{text}"
    );
    assert!(
        line("postfixProbeLastError.\"rejecting\"").ends_with("banner 554 5.7.1 go away"),
        "{text}"
    );

    let (took, status) = agent
        .terminate(Duration::from_secs(10))
        .expect("agent exits on SIGTERM while a probe waits on a silent server");
    assert!(status.success(), "{status:?}\n{}", agent.log());
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    drop(silent);
    let _ = TcpStream::connect(("127.0.0.1", closed));
}
