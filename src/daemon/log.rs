//! The log collector thread: follows the mail log (files or the journal),
//! counts every line, publishes the counters and saves them with the read
//! positions, so a restart resumes exactly where the last save left off.

use super::Shutdown;
use crate::config::Config;
use crate::publisher::Publisher;
use crate::sources::log::input::{self, InputSettings, LogInput, LogState, Polled};
use crate::sources::log::state::{LoadOutcome, StateStore};
use crate::sources::log::{largest_counter, LogAccumulator, COUNTER_CEILING};
use anyhow::Result;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const SOURCE: &str = "log";
const STATE_SOURCE: &str = "state";
const STATE_FILE: &str = "log-state.json";

/// The log input's part of the configuration.
pub fn input_settings(config: &Config) -> InputSettings {
    InputSettings {
        source: config.log.source,
        paths: config.log.path.clone(),
        start: config.log.start_at,
        postfix_config_directory: config.postfix.config_directory.clone(),
    }
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Refuses to start (a [`crate::refusal::ConfigError`], exit 78) when the
/// state directory or file can be changed by another user, or when a state
/// file exists that cannot be read: see [`StateStore::check_trusted`].
pub fn check_state(config: &Config) -> Result<()> {
    let store = StateStore::new(config.state.directory.join(STATE_FILE));
    store
        .check_trusted(crate::file_trust::effective_uid())
        .map_err(crate::refusal::config_error)
}

/// Saves the state and keeps its health row; refuses to save when the saved
/// state could not be read at start (saving would destroy it).
struct Saver<'a> {
    store: &'a StateStore,
    detail: String,
    /// Why saving is off, for the health row.
    disabled: Option<String>,
}

impl Saver<'_> {
    /// Saves; `false` (after logging why) if that failed and should be retried.
    fn save(&self, state: &LogState, publisher: &Publisher) -> bool {
        match &self.disabled {
            Some(why) => {
                publisher.health(STATE_SOURCE, &self.detail, |h| h.failure(why.clone()));
                true
            }
            None => save(self.store, state, &self.detail, publisher),
        }
    }
}

/// Loads the saved state, or starts fresh saying why. Publishes the `state`
/// health row at once. A state file that exists but cannot be read turns
/// saving off: the file may hold good counters (the start-up check refuses
/// this case; here it can only come from a change since).
fn load_state<'a>(
    store: &'a StateStore,
    config: &Config,
    publisher: &Publisher,
) -> (LogState, bool, Saver<'a>) {
    let fresh = || LogState {
        accumulator: LogAccumulator::new(&config.log.syslog_names),
        files: Vec::new(),
        journal_cursor: None,
        journal_last_line: None,
        discontinuity_time: epoch_secs(SystemTime::now()),
    };
    let mut saver = Saver {
        store,
        detail: store.path().display().to_string(),
        disabled: None,
    };
    let detail = saver.detail.clone();
    let (state, resumed) = match store.load::<LogState>() {
        Ok(LoadOutcome::Loaded(mut s)) => {
            s.accumulator
                .set_extra_syslog_names(&config.log.syslog_names);
            tracing::info!(
                state = %store.path().display(),
                "resuming counters and log positions from the saved state"
            );
            let largest = largest_counter(s.accumulator.counters());
            if largest >= COUNTER_CEILING {
                // About to wrap: restart the counters (not the positions)
                // and say so through the discontinuity time.
                tracing::warn!(
                    state = %store.path().display(),
                    "a saved counter is {largest}, near 2^64: counters restart at zero \
                     with a new discontinuity time"
                );
                s.accumulator.counters = Default::default();
                s.discontinuity_time = epoch_secs(SystemTime::now());
            }
            publisher.health(STATE_SOURCE, &detail, |h| h.success(SystemTime::now()));
            (s, true)
        }
        Ok(LoadOutcome::Missing) => {
            tracing::info!(
                state = %store.path().display(),
                "no saved state: counters start at zero"
            );
            publisher.health(STATE_SOURCE, &detail, |h| h.success(SystemTime::now()));
            (fresh(), false)
        }
        Ok(LoadOutcome::Corrupt(reason)) => {
            let msg = format!("saved state is unusable ({reason}): counters start at zero");
            tracing::warn!(state = %store.path().display(), "{msg}");
            publisher.health(STATE_SOURCE, &detail, |h| h.failure(msg));
            (fresh(), false)
        }
        Err(e) => {
            let msg = format!(
                "cannot read the saved state ({e}): counters start at zero and are not \
                 saved, so that the file is kept; fix its owner or mode and restart"
            );
            tracing::error!("{msg}");
            publisher.health(STATE_SOURCE, &detail, |h| h.failure(msg.clone()));
            saver.disabled = Some(msg);
            (fresh(), false)
        }
    };
    (state, resumed, saver)
}

/// How often an idle log's health row gets a new last-success time. Each
/// update rebuilds the MIB view, which costs far more than the idle poll
/// itself (two a second), so an idle agent would spend its CPU on it.
const IDLE_HEALTH_REFRESH: Duration = Duration::from_secs(5);

/// Follows the log until shutdown, then saves the state one last time.
pub fn run(config: Config, publisher: Arc<Publisher>, shutdown: Shutdown) {
    let store = StateStore::new(config.state.directory.join(STATE_FILE));
    let (mut state, resumed, saver) = load_state(&store, &config, &publisher);
    let discontinuity = SystemTime::UNIX_EPOCH + Duration::from_secs(state.discontinuity_time);
    publisher.update(|s| {
        s.agent.discontinuity_time = discontinuity;
        s.log = Some(state.accumulator.counters().clone());
    });
    let save_every = Duration::from_secs(config.state.save_interval_seconds);

    let mut input = None;
    let mut detail = String::new();
    let mut last_save = Instant::now();
    let mut dirty = !resumed;
    // When the health row was last set to ok; None after an error, so the
    // next good poll sets it at once. Idle polls refresh it only now and then.
    let mut health_ok_at: Option<Instant> = None;
    loop {
        if input.is_none() {
            match input::open(&input_settings(&config), &state, resumed) {
                Ok((i, d)) => {
                    tracing::info!("following the mail log: {d}");
                    detail = d;
                    input = Some(i);
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    tracing::warn!("{msg}");
                    publisher.health(SOURCE, "no log", |h| h.failure(msg));
                    if !shutdown.sleep(Duration::from_secs(10)) {
                        break;
                    }
                    continue;
                }
            }
        }
        let Some(inp) = input.as_mut() else { continue };
        let mut more = false;
        match inp.poll(&mut state.accumulator) {
            Ok(Polled {
                lines,
                more: m,
                messages: events,
            }) => {
                more = m;
                for (warning, e) in &events {
                    if *warning {
                        tracing::warn!("log: {e}");
                    } else {
                        tracing::info!("log: {e}");
                    }
                }
                let error = inp.current_error();
                if lines > 0 || !events.is_empty() {
                    dirty |= lines > 0;
                    let counters = state.accumulator.counters().clone();
                    publisher.update(|s| {
                        s.log = Some(counters);
                        let h = s.health_mut(SOURCE, &detail);
                        match &error {
                            Some(err) => h.failure(err.clone()),
                            None => h.success(SystemTime::now()),
                        }
                    });
                    health_ok_at = error.is_none().then(Instant::now);
                } else if error.is_none()
                    && health_ok_at.map_or(true, |t| t.elapsed() >= IDLE_HEALTH_REFRESH)
                {
                    publisher.health(SOURCE, &detail, |h| h.success(SystemTime::now()));
                    health_ok_at = Some(Instant::now());
                }
            }
            Err(e) => {
                let msg = format!("reading the mail log: {e}");
                tracing::warn!("{msg}");
                publisher.health(SOURCE, &detail, |h| h.failure(msg));
                health_ok_at = None;
            }
        }
        if dirty && last_save.elapsed() >= save_every {
            inp.save_into(&mut state);
            // A failed save (full or read-only disk) is retried at the next
            // interval even if no new line arrives.
            dirty = !saver.save(&state, &publisher);
            last_save = Instant::now();
        }
        if shutdown.requested() {
            break;
        }
        if !more {
            if let Err(e) = inp.wait(Duration::from_millis(500)) {
                tracing::warn!("waiting for log changes: {e}");
                shutdown.sleep(Duration::from_millis(500));
            }
        }
    }
    if let Some(inp) = &input {
        inp.save_into(&mut state);
    }
    saver.save(&state, &publisher);
}

/// Saves the state; `false` (after logging why) if that failed.
fn save(store: &StateStore, state: &LogState, detail: &str, publisher: &Publisher) -> bool {
    // systemd's StateDirectory= creates it; elsewhere we do. A failure here
    // shows up as the save's own error below.
    if let Some(dir) = store.path().parent() {
        if !dir.is_dir() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::debug!("cannot create {}: {e}", dir.display());
            }
        }
    }
    match store.save(state) {
        Ok(()) => {
            publisher.health(STATE_SOURCE, detail, |h| h.success(SystemTime::now()));
            true
        }
        Err(e) => {
            // Counting goes on in memory; the next save retries.
            let msg = format!("{e}");
            tracing::warn!("cannot save the state: {msg}");
            publisher.health(STATE_SOURCE, detail, |h| h.failure(msg));
            false
        }
    }
}

/// For `dump`: the saved counters plus whatever the log holds beyond the
/// saved positions, without saving anything.
///
/// Shows the saved counters only if `run` would trust them (see
/// [`StateStore::check_trusted`]); else the `state` row says why and no log
/// counters are shown. Root running `dump` trusts the state directory's
/// owner (the agent's user) as the agent does; anyone else trusts only
/// themselves and root.
pub fn collect_once(config: &Config, publisher: &Publisher) {
    let store = StateStore::new(config.state.directory.join(STATE_FILE));
    // Nothing saved yet: nothing to check, and no directory to create as
    // whoever runs `dump` (root would make it unwritable for the agent).
    if config.state.directory.exists() {
        let me = crate::file_trust::effective_uid();
        let agent_uid = match std::fs::symlink_metadata(&config.state.directory) {
            Ok(meta) if me == 0 => std::os::unix::fs::MetadataExt::uid(&meta),
            _ => me,
        };
        if let Err(why) = store.check_trusted(agent_uid) {
            let detail = store.path().display().to_string();
            publisher.health(STATE_SOURCE, &detail, |h| {
                h.failure(format!("saved counters not shown: {why}"))
            });
            return;
        }
    }
    let (mut state, resumed, _) = load_state(&store, config, publisher);
    if resumed {
        // The files only: reading the journal to its end takes long.
        if let Ok((mut f @ LogInput::Files(_), detail)) =
            input::open(&input_settings(config), &state, resumed)
        {
            loop {
                match f.poll(&mut state.accumulator) {
                    Ok(out) if out.more => continue,
                    Ok(_) => break,
                    Err(e) => {
                        publisher.health(SOURCE, &detail, |h| h.failure(e.to_string()));
                        break;
                    }
                }
            }
        }
    }
    let discontinuity = SystemTime::UNIX_EPOCH + Duration::from_secs(state.discontinuity_time);
    let counters = state.accumulator.counters().clone();
    publisher.update(|s| {
        s.agent.discontinuity_time = discontinuity;
        s.log = Some(counters);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{HealthState, Snapshot};

    fn publisher() -> Publisher {
        let root = crate::snmp::Oid::parse(crate::mib::text::DEFAULT_ROOT).unwrap();
        Publisher::new(root, Snapshot::new(super::super::agent_info()))
    }

    /// The start-up check refuses an unreadable state; should the file turn
    /// unreadable after it (here: replaced by a symlink, which O_NOFOLLOW
    /// refuses even to root), the state is kept and saving is off.
    #[test]
    fn a_state_that_cannot_be_read_is_never_saved_over() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            state: crate::config::StateConfig {
                directory: dir.path().to_path_buf(),
                ..Default::default()
            },
            ..Default::default()
        };
        let path = dir.path().join(STATE_FILE);
        let target = dir.path().join("elsewhere.json");
        std::fs::write(&target, b"precious").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let store = StateStore::new(&path);
        let publisher = publisher();
        let (state, resumed, saver) = load_state(&store, &config, &publisher);
        assert!(!resumed);
        assert!(saver.disabled.is_some());
        // A save is "done" (no retry loop) but writes nothing.
        assert!(saver.save(&state, &publisher));
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        let snapshot = publisher.snapshot();
        let row = &snapshot.health[STATE_SOURCE];
        assert_eq!(row.state, HealthState::Error);
        assert!(row.last_error.contains("not saved"), "{}", row.last_error);
    }

    #[test]
    fn the_state_row_is_there_before_the_first_save() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            state: crate::config::StateConfig {
                directory: dir.path().to_path_buf(),
                ..Default::default()
            },
            ..Default::default()
        };
        let store = StateStore::new(dir.path().join(STATE_FILE));
        let publisher = publisher();
        let (_, _, saver) = load_state(&store, &config, &publisher);
        assert!(saver.disabled.is_none());
        assert_eq!(
            publisher.snapshot().health[STATE_SOURCE].state,
            HealthState::Ok
        );
    }
}
