//! Permanent startup refusals: the configuration, or a file the agent must
//! trust (its config, its state), is wrong in a way that restarting cannot
//! fix. `main` exits with [`EX_CONFIG`] for these, so that systemd's
//! `RestartPreventExitStatus=78` stops retrying and the unit shows failed.

use std::fmt;

/// sysexits.h `EX_CONFIG`: "configuration error". Packaging relies on it.
pub const EX_CONFIG: u8 = 78;

/// A refusal to start that only an administrator can fix. Carried inside an
/// `anyhow::Error` (possibly under more context) and found again by
/// [`is_config_error`].
#[derive(Debug)]
pub struct ConfigError {
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A new refusal with `message` (say what is wrong and how to fix it).
pub fn config_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(ConfigError {
        message: message.into(),
    })
}

/// Marks an existing error (e.g. a config parse error with its chain) as a
/// refusal, keeping its whole message.
pub fn into_config_error(e: anyhow::Error) -> anyhow::Error {
    if is_config_error(&e) {
        return e;
    }
    config_error(format!("{e:#}"))
}

/// True if `e`, or anything in its chain, is a [`ConfigError`].
pub fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<ConfigError>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn found_under_context_and_keeps_the_message() {
        let e: anyhow::Result<()> = Err(config_error("state directory /x is mode 1777"));
        let e = e.context("starting the log collector").unwrap_err();
        assert!(is_config_error(&e));
        assert!(format!("{e:#}").contains("mode 1777"));
        let plain = anyhow::anyhow!("connection refused");
        assert!(!is_config_error(&plain));
        let wrapped = into_config_error(plain.context("in f.toml"));
        assert!(is_config_error(&wrapped));
        assert_eq!(format!("{wrapped:#}"), "in f.toml: connection refused");
    }
}
