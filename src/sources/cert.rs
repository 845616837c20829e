//! Certificate expiry: the certificates Postfix is configured with (postconf),
//! extra files from the configuration, and those the TLS probes were served.
//!
//! Only the validity is read; no chain is verified, so self-signed and
//! expired certificates are read like any other. Of a file with several
//! certificates (a chain, or a Postfix `*_chain_files` file with the key
//! first) the first certificate counts: the leaf.

use super::{Collected, Collector, Outcome};
use crate::snapshot::CertRow;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Certificate files larger than this are not read (a PEM chain is a few KiB).
const MAX_FILE: u64 = 1024 * 1024;
/// Longest name in the certificate table (the MIB index is SIZE (1..64)).
pub const MAX_NAME: usize = 64;
/// Rows of certificates that probes found served are named `probe:NAME`;
/// they belong to the probes, not to the file scan.
pub const PROBE_ROW_PREFIX: &str = "probe:";

/// Postfix parameters that name certificate files.
pub const POSTFIX_PARAMETERS: [&str; 16] = [
    "smtpd_tls_cert_file",
    "smtpd_tls_dcert_file",
    "smtpd_tls_eccert_file",
    "smtpd_tls_chain_files",
    "smtp_tls_cert_file",
    "smtp_tls_dcert_file",
    "smtp_tls_eccert_file",
    "smtp_tls_chain_files",
    "lmtp_tls_cert_file",
    "lmtp_tls_dcert_file",
    "lmtp_tls_eccert_file",
    "lmtp_tls_chain_files",
    "tlsproxy_tls_cert_file",
    "tlsproxy_tls_dcert_file",
    "tlsproxy_tls_eccert_file",
    "tlsproxy_tls_chain_files",
];

/// What is read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub not_after: SystemTime,
}

/// Reads one DER certificate.
pub fn parse_der(der: &[u8]) -> Result<CertInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    let ts = cert.validity().not_after.timestamp();
    let not_after = if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    };
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        not_after,
    })
}

/// The first certificate of a PEM file (other blocks, such as a private
/// key before it, are skipped), or the file as DER if it has no PEM.
pub fn parse_file_contents(data: &[u8]) -> Result<CertInfo> {
    let mut saw_pem = false;
    for pem in x509_parser::pem::Pem::iter_from_buffer(data) {
        let pem = match pem {
            Ok(p) => p,
            // A broken block after the first certificate does not matter;
            // before it, it is the file's problem.
            Err(e) if saw_pem => bail!("bad PEM: {e}"),
            Err(_) => break,
        };
        saw_pem = true;
        if pem.label == "CERTIFICATE" || pem.label == "TRUSTED CERTIFICATE" {
            return parse_der(&pem.contents);
        }
    }
    if saw_pem {
        bail!("no CERTIFICATE block in the PEM file");
    }
    parse_der(data).context("neither PEM with a CERTIFICATE block nor a DER certificate")
}

/// Reads `path` (at most `MAX_FILE` bytes).
pub fn read_file(path: &Path) -> Result<CertInfo> {
    use std::io::Read;
    // Non-blocking open and a check on the descriptor: a FIFO in its place
    // must not hang the certificate collector.
    let (file, meta) = crate::file_trust::open_regular(path, false)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_FILE {
        bail!("{} is larger than {MAX_FILE} bytes", path.display());
    }
    let mut data = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse_file_contents(&data).with_context(|| path.display().to_string())
}

/// Whole days from `now` to `not_after`, rounded down (negative once expired).
pub fn days_to_expiry(not_after: SystemTime, now: SystemTime) -> i64 {
    let secs = match not_after.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            // Round the past up, so one second after expiry is day -1.
            let d = e.duration();
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            -i64::try_from(secs).unwrap_or(i64::MAX)
        }
    };
    secs.div_euclid(86_400)
}

/// The table row for `info` under `name`.
pub fn row(name: String, info: &CertInfo, now: SystemTime) -> CertRow {
    CertRow {
        name,
        subject: info.subject.clone(),
        not_after: info.not_after,
        days_to_expiry: days_to_expiry(info.not_after, now),
    }
}

/// The table name of a file: its path, or for paths longer than 64
/// characters `...` and the path's last 61.
pub fn file_row_name(path: &Path) -> String {
    let full = path.display().to_string();
    if full.len() <= MAX_NAME {
        return full;
    }
    let mut start = full.len() - (MAX_NAME - 3);
    while !full.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &full[start..])
}

/// Reads every file; rows for those that parsed, and one error per other file.
pub fn scan(files: &[PathBuf], now: SystemTime) -> (Vec<CertRow>, Vec<String>) {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    for path in files {
        match read_file(path) {
            Ok(info) => {
                let name = file_row_name(path);
                if names.insert(name.clone()) {
                    rows.push(row(name, &info, now));
                }
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    (rows, errors)
}

/// The certificate files of a Postfix instance, from main.cf
/// (`postconf -x`) and master.cf `-o` overrides (`postconf -P -x`), without
/// duplicates, empty values and `none`.
pub fn postfix_cert_files(postconf: &Path, config_directory: &Path) -> Result<Vec<PathBuf>> {
    let main = super::postconf::run(
        postconf,
        Some(config_directory),
        &[&["-x"], &POSTFIX_PARAMETERS[..]].concat(),
    )?;
    // master.cf overrides look like `submission/inet/smtpd_tls_cert_file = /x`.
    let master = super::postconf::run(postconf, Some(config_directory), &["-P", "-x"])?;
    let mut seen = BTreeSet::new();
    let mut files = Vec::new();
    for line in main.lines().chain(master.lines()) {
        let Some((name, value)) = line.split_once(" = ") else {
            continue;
        };
        let parameter = name.trim().rsplit('/').next().unwrap_or("");
        if !POSTFIX_PARAMETERS.contains(&parameter) {
            continue;
        }
        for file in value.split(|c: char| c == ',' || c.is_whitespace()) {
            if file.is_empty() || file.eq_ignore_ascii_case("none") {
                continue;
            }
            if seen.insert(file.to_string()) {
                files.push(PathBuf::from(file));
            }
        }
    }
    Ok(files)
}

/// The certificate files as a [`Collector`]: the configured files and, if
/// asked, those Postfix's configuration names, read at every collection.
pub struct CertCollector {
    files: Vec<PathBuf>,
    /// (postconf program, Postfix config directory) to ask for more files.
    from_postfix: Option<(PathBuf, PathBuf)>,
    interval: Duration,
}

impl CertCollector {
    pub fn new(
        files: Vec<PathBuf>,
        from_postfix: Option<(PathBuf, PathBuf)>,
        interval: Duration,
    ) -> CertCollector {
        CertCollector {
            files,
            from_postfix,
            interval,
        }
    }

    /// The files to read: configured ones, then Postfix's.
    fn files(&self) -> (Vec<PathBuf>, Vec<String>) {
        let mut files = self.files.clone();
        let mut errors = Vec::new();
        if let Some((postconf, config_directory)) = &self.from_postfix {
            match postfix_cert_files(postconf, config_directory) {
                Ok(found) => {
                    for f in found {
                        if !files.contains(&f) {
                            files.push(f);
                        }
                    }
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        (files, errors)
    }
}

impl Collector for CertCollector {
    fn source(&self) -> &'static str {
        "certs"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Collected {
        let (files, mut errors) = self.files();
        let (rows, scan_errors) = scan(&files, SystemTime::now());
        errors.extend(scan_errors);
        Collected {
            detail: None,
            publish: Box::new(move |s| {
                let table = s.certs.get_or_insert_with(Vec::new);
                table.retain(|r| r.name.starts_with(PROBE_ROW_PREFIX));
                table.extend(rows);
                table.sort_by(|a, b| a.name.cmp(&b.name));
                if errors.is_empty() {
                    Outcome::Success
                } else {
                    Outcome::Failure(errors.join("; "))
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_pem(cn: &str, not_after: (i32, u8, u8)) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn first_certificate_of_a_chain_file_counts() {
        let (leaf, key) = cert_pem("leaf.example", (2040, 6, 1));
        let (ca, _) = cert_pem("ca.example", (2050, 1, 1));
        // Postfix chain_files order: key, then leaf, then the rest.
        let text = format!("{key}{leaf}{ca}");
        let info = parse_file_contents(text.as_bytes()).unwrap();
        assert!(info.subject.contains("CN=leaf.example"), "{info:?}");
        let expected = jiff::Timestamp::from_second(
            jiff::civil::date(2040, 6, 1)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .unwrap()
                .timestamp()
                .as_second(),
        )
        .unwrap();
        assert_eq!(
            info.not_after,
            UNIX_EPOCH + Duration::from_secs(expected.as_second().unsigned_abs())
        );
    }

    #[test]
    fn expired_certificate_has_negative_days() {
        let (pem, _) = cert_pem("old.example", (2001, 1, 1));
        let info = parse_file_contents(pem.as_bytes()).unwrap();
        let r = row("x".into(), &info, SystemTime::now());
        assert!(r.days_to_expiry < -9000, "{r:?}");
    }

    #[test]
    fn days_round_down() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(
            days_to_expiry(now + day * 3 + Duration::from_secs(5), now),
            3
        );
        assert_eq!(days_to_expiry(now + Duration::from_secs(3600), now), 0);
        assert_eq!(days_to_expiry(now - Duration::from_secs(3600), now), -1);
        assert_eq!(days_to_expiry(now - day * 2, now), -2);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_file_contents(b"").is_err());
        assert!(parse_file_contents(b"hello world").is_err());
        assert!(parse_file_contents(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        .is_err());
        let key_only = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = format!(
            "{:#}",
            parse_file_contents(key_only.as_bytes()).unwrap_err()
        );
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }

    #[test]
    fn der_files_are_read_too() {
        let mut params = rcgen::CertificateParams::new(vec!["der.example".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert!(parse_file_contents(cert.der()).is_ok());
    }

    #[test]
    fn long_paths_keep_their_end() {
        let p = PathBuf::from(format!("/etc/{}/cert.pem", "x".repeat(100)));
        let name = file_row_name(&p);
        assert_eq!(name.len(), MAX_NAME);
        assert!(
            name.starts_with("...") && name.ends_with("/cert.pem"),
            "{name}"
        );
        assert_eq!(file_row_name(Path::new("/etc/a.pem")), "/etc/a.pem");
    }

    #[test]
    fn scan_reports_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let (pem, _) = cert_pem("a.example", (2040, 1, 1));
        let good = dir.path().join("good.pem");
        std::fs::write(&good, pem).unwrap();
        let missing = dir.path().join("missing.pem");
        let (rows, errors) = scan(&[good.clone(), missing], SystemTime::now());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, good.display().to_string());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("missing.pem"), "{errors:?}");
    }
}
