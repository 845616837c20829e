//! One-shot counting of whole log files (the `parse` subcommand).

use super::counters::LogAccumulator;
use super::reader::LineReader;
use crate::snapshot::LogCounters;
use anyhow::Context;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Count the given files in order (`-` is stdin, `*.gz` is decompressed)
/// into one set of counters. A last line without a newline is counted too:
/// the files are complete. State carries over from one file to the next,
/// so rotated files given oldest first are counted as one log.
pub fn parse_paths(paths: &[PathBuf], syslog_names: &[String]) -> anyhow::Result<LogCounters> {
    let mut acc = LogAccumulator::new(syslog_names);
    for path in paths {
        parse_path(&mut acc, path)?;
    }
    Ok(acc.counters)
}

/// Count one file into `acc`.
pub fn parse_path(acc: &mut LogAccumulator, path: &Path) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        let stdin = std::io::stdin();
        return ingest_reader(acc, stdin.lock()).context("reading standard input");
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let result = if path.extension().is_some_and(|e| e == "gz") {
        ingest_reader(acc, flate2::read::MultiGzDecoder::new(file))
    } else {
        ingest_reader(acc, file)
    };
    result.with_context(|| format!("reading {}", path.display()))
}

/// Count every line of `source`, including a last line without newline.
pub fn ingest_reader<R: Read>(acc: &mut LogAccumulator, source: R) -> std::io::Result<()> {
    let mut reader = LineReader::new(source);
    reader.for_each_line(|line| acc.ingest_line(line))?;
    if reader.pending_bytes() > 0 {
        acc.ingest_line(reader.partial_line());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postfix-3.7-sample.log")
    }

    /// The counts tests/component/log_real_postfix.rs established for this log from
    /// what Postfix did (mailboxes, sink dumps, queue).
    fn check_fixture_counts(c: &LogCounters) {
        assert_eq!(c.delivered, 20);
        assert_eq!(c.forwarded, 2);
        assert_eq!(c.received, 21);
        assert_eq!(c.generated, 4);
        assert_eq!(c.rejected, 9);
        assert_eq!(c.discarded, 2);
        assert_eq!(c.deferred, 3);
        assert_eq!(c.bounced, 1);
        assert_eq!(c.expired, 1);
        assert_eq!(c.held, 3);
        assert_eq!(
            (c.log_warning, c.log_error, c.log_fatal, c.log_panic),
            (2, 1, 1, 1)
        );
        assert_eq!(c.smtp_connections, 31);
        assert_eq!((c.tls_connections_in, c.tls_connections_out), (1, 1));
        assert_eq!(c.lines_unparsed, 0);
    }

    #[test]
    fn fixture_counts() {
        let c = parse_paths(&[fixture()], &[]).unwrap();
        check_fixture_counts(&c);
        assert_eq!(c.lines_read, 224);
    }

    #[test]
    fn gzip_and_plain_give_the_same_counts() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("maillog.1.gz");
        let mut enc = flate2::write::GzEncoder::new(
            File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(&std::fs::read(fixture()).unwrap()).unwrap();
        enc.finish().unwrap();
        let plain = parse_paths(&[fixture()], &[]).unwrap();
        let packed = parse_paths(&[gz], &[]).unwrap();
        assert_eq!(plain, packed);
    }

    #[test]
    fn last_line_without_newline_counts_in_a_complete_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("maillog");
        std::fs::write(
            &path,
            "Nov 29 13:13:38 mx postfix/smtpd[1]: connect from c[192.0.2.1]\n\
             Nov 29 13:13:38 mx postfix/smtpd[1]: connect from c[192.0.2.1]",
        )
        .unwrap();
        let c = parse_paths(&[path], &[]).unwrap();
        assert_eq!(c.smtp_connections, 2);
        assert_eq!(c.lines_read, 2);
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = parse_paths(&[PathBuf::from("/nonexistent/maillog")], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/maillog"));
    }
}
