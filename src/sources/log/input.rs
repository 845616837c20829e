//! Where the log's lines come from, and what is saved of it: the log files
//! (followed across rotations) or the systemd journal, chosen by the
//! configuration or by what exists, and the saved state that lets a restart
//! resume at the same line, across a change of source too.

use super::follow::{FilePosition, FollowOptions, LineSink, LogFollower, PathState, StartFrom};
use super::journal::{JournalConfig, JournalFollower, JournalSource};
use super::switch as source_switch;
use super::LogAccumulator;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Postfix logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// Log files if one is found, else the systemd journal.
    Auto,
    File,
    Journal,
}

/// What the input needs from the configuration.
#[derive(Debug, Clone)]
pub struct InputSettings {
    pub source: LogSource,
    /// Configured log files; empty: the usual places, then `maillog_file`.
    pub paths: Vec<PathBuf>,
    /// Where to start a file (or the journal) with no saved position.
    pub start: StartFrom,
    /// Asked for `maillog_file` when no file is configured or found.
    pub postfix_config_directory: PathBuf,
}

/// What is saved: counters and message state, and where reading stopped.
/// Both are taken at the same moment, so they always agree.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogState {
    pub accumulator: LogAccumulator,
    #[serde(default)]
    pub files: Vec<FilePosition>,
    #[serde(default)]
    pub journal_cursor: Option<String>,
    /// The last line counted from the journal: where a log file that
    /// appears later (rsyslog installed) takes over.
    #[serde(default)]
    pub journal_last_line: Option<String>,
    /// When these counters started from zero (seconds since the epoch).
    pub discontinuity_time: u64,
}

struct Counting<'a>(&'a mut LogAccumulator);

impl LineSink for Counting<'_> {
    fn line(&mut self, line: &[u8]) {
        self.0.ingest_line(line);
    }
}

/// What one poll of the input read.
pub struct Polled {
    pub lines: u64,
    /// More to read now: poll again before waiting.
    pub more: bool,
    /// For the agent's log, each with whether it is a warning.
    pub messages: Vec<(bool, String)>,
}

impl Polled {
    fn new(lines: u64, more: bool, messages: impl Iterator<Item = (bool, String)>) -> Polled {
        Polled {
            lines,
            more,
            messages: messages.collect(),
        }
    }
}

/// Where lines come from.
pub enum LogInput {
    Files(LogFollower),
    Journal(Box<JournalFollower>),
}

impl LogInput {
    /// Reads what is available.
    pub fn poll(&mut self, acc: &mut LogAccumulator) -> std::io::Result<Polled> {
        let mut sink = Counting(acc);
        Ok(match self {
            LogInput::Files(f) => {
                let out = f.poll(&mut sink)?;
                let messages = out.events.iter().map(|e| (e.is_warning(), e.to_string()));
                Polled::new(out.lines, out.more, messages)
            }
            LogInput::Journal(j) => {
                let out = j.poll(&mut sink)?;
                let messages = out.events.iter().map(|e| (e.is_warning(), e.to_string()));
                Polled::new(out.lines, out.more, messages)
            }
        })
    }

    pub fn wait(&mut self, timeout: Duration) -> std::io::Result<()> {
        match self {
            LogInput::Files(f) => f.wait(timeout),
            LogInput::Journal(j) => j.wait(timeout),
        }
    }

    /// The current error, if the source is failing now.
    pub fn current_error(&self) -> Option<String> {
        match self {
            LogInput::Files(f) => {
                let errors: Vec<String> = f
                    .status()
                    .into_iter()
                    .filter_map(|s| match s.state {
                        PathState::Error(e) => Some(e),
                        PathState::Waiting(w) => Some(format!("waiting: {w}")),
                        PathState::Following => None,
                    })
                    .collect();
                (!errors.is_empty()).then(|| errors.join("; "))
            }
            LogInput::Journal(j) => j.last_error().map(str::to_string),
        }
    }

    /// Only the current source's positions are kept: a position left from
    /// an earlier source would be resumed from, long after, if that source
    /// came back, and count again what the other source gave meanwhile.
    pub fn save_into(&self, state: &mut LogState) {
        match self {
            LogInput::Files(f) => {
                state.files = f.positions();
                state.journal_cursor = None;
                state.journal_last_line = None;
            }
            LogInput::Journal(j) => {
                state.files.clear();
                state.journal_cursor = j.cursor().map(str::to_string);
                if !j.last_line().is_empty() {
                    state.journal_last_line =
                        Some(String::from_utf8_lossy(j.last_line()).into_owned());
                }
            }
        }
    }
}

/// The log files to follow: configured, or the usual places, or Postfix's
/// own `maillog_file`.
pub fn resolve_paths(settings: &InputSettings) -> Result<Vec<PathBuf>> {
    if !settings.paths.is_empty() {
        return Ok(settings.paths.clone());
    }
    for p in ["/var/log/mail.log", "/var/log/maillog"] {
        if Path::new(p).exists() {
            return Ok(vec![PathBuf::from(p)]);
        }
    }
    let maillog_file = crate::sources::postconf::value(
        Path::new("postconf"),
        Some(&settings.postfix_config_directory),
        "maillog_file",
    )
    .unwrap_or_default();
    if !maillog_file.trim().is_empty() {
        return Ok(vec![PathBuf::from(maillog_file.trim())]);
    }
    bail!(
        "no mail log found: neither /var/log/mail.log nor /var/log/maillog exists and \
         Postfix has no maillog_file; set log.path, or log.source = \"journal\""
    )
}

/// Opens the input `settings` ask for, resuming from `state` when
/// `resumed`; also says what it reads, for the health row. A change of
/// source since the state was saved (journal to file or back) resumes after
/// the last line the other source counted, where it can be found.
pub fn open(
    settings: &InputSettings,
    state: &LogState,
    resumed: bool,
) -> Result<(LogInput, String)> {
    let start = settings.start;
    let use_journal = match settings.source {
        LogSource::Journal => true,
        LogSource::File => false,
        LogSource::Auto => resolve_paths(settings).is_err(),
    };
    if use_journal {
        let switched_from_file =
            resumed && state.journal_cursor.is_none() && !state.files.is_empty();
        let mark = switched_from_file
            .then(|| source_switch::mark_of_saved_files(&state.files))
            .flatten();
        if switched_from_file && mark.is_none() {
            tracing::warn!(
                "log source changed from a file to the journal, and the file's last counted \
                 line is gone: reading the journal from its end (entries logged while the \
                 agent was stopped are not counted)"
            );
        }
        let start = if switched_from_file {
            StartFrom::End
        } else {
            start
        };
        let mut journal = JournalFollower::new(
            JournalConfig::new(JournalSource::System),
            state.journal_cursor.clone(),
            start,
        );
        if let Some(mark) = mark {
            tracing::info!(
                "log source changed from a file to the journal: resuming the journal after \
                 the last line counted from the file"
            );
            journal.resume_after_file(mark);
        }
        return Ok((
            LogInput::Journal(Box::new(journal)),
            "systemd journal".to_string(),
        ));
    }
    let paths = resolve_paths(settings)?;
    let detail = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut saved = state.files.clone();
    if resumed && saved.is_empty() && state.journal_cursor.is_some() {
        saved = source_switch::positions_after_journal(
            &paths,
            state.journal_last_line.as_deref(),
            state.journal_cursor.as_deref(),
        );
        for p in &saved {
            tracing::info!(
                "log source changed from the journal to {}: reading it from byte {}, after \
                 the last line the journal gave",
                p.path.display(),
                p.offset
            );
        }
    }
    // With saved positions, files not in the state are new: read them whole.
    let start = if resumed { StartFrom::Beginning } else { start };
    let follower = LogFollower::new(paths, &saved, start, FollowOptions::default())
        .context("set up inotify for the log files")?;
    Ok((LogInput::Files(follower), detail))
}
