//! Asking Postfix for its settings: `postconf`, run directly (no shell),
//! the one place that does. The queue, process, certificate and log
//! sources each need a parameter or two (queue_directory, maillog_file,
//! the TLS certificate files).

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// `postconf [-c DIR] ARGS...`: its standard output. Fails with the exit
/// status and what postconf printed on stderr (e.g. "open
/// /etc/postfix/main.cf: No such file or directory").
pub fn run(postconf: &Path, config_directory: Option<&Path>, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(postconf);
    if let Some(dir) = config_directory {
        cmd.arg("-c").arg(dir);
    }
    let out = cmd
        .args(args)
        .output()
        .with_context(|| format!("running {} (is Postfix installed?)", postconf.display()))?;
    if !out.status.success() {
        let dir = config_directory
            .map(|d| format!(" -c {}", d.display()))
            .unwrap_or_default();
        bail!(
            "{}{dir} {} failed ({}): {}",
            postconf.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout)
        .with_context(|| format!("postconf {}: output is not UTF-8", args.join(" ")))
}

/// The value of one parameter (`postconf -h NAME`), trimmed; an empty value
/// is an error.
pub fn value(postconf: &Path, config_directory: Option<&Path>, name: &str) -> Result<String> {
    let value = run(postconf, config_directory, &["-h", name])?
        .trim()
        .to_owned();
    if value.is_empty() {
        bail!("postconf printed an empty {name}");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_postconf_is_a_clear_error() {
        let err = value(Path::new("/nonexistent/postconf"), None, "queue_directory").unwrap_err();
        assert!(
            format!("{err:#}").contains("is Postfix installed"),
            "{err:#}"
        );
    }

    #[test]
    fn a_failing_postconf_says_what_it_printed() {
        let err = run(Path::new("/bin/sh"), None, &["-c", "echo boom >&2; exit 3"]).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("boom") && text.contains("exit status: 3"),
            "{text}"
        );
    }
}
