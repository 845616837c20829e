//! Saving state (counters, parser state, log positions) atomically as JSON.
//!
//! A save writes a temporary file in the same directory, fsyncs it, renames it
//! over the state file and fsyncs the directory: after a crash or power loss
//! the file is either the old or the new state, never a mix. A failed save
//! (unwritable directory, full disk) leaves the old file in place, removes its
//! temporary file and returns the error; the next save tries again from scratch.
//!
//! The file is an envelope `{"format": "postfix-agentx-state", "version": N,
//! "savedAt": UNIX_SECONDS, "data": T}` so that a file from another program or
//! another format version is reported as such rather than misread.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Written into every state file; a file with another version is not loaded.
pub const STATE_FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "postfix-agentx-state";
/// Default cap on the size of a state file that `load` will read.
pub const DEFAULT_MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug)]
pub enum LoadOutcome<T> {
    /// No state file: a first start.
    Missing,
    /// The file exists but cannot be used (garbage, too large, other version);
    /// the reason is meant for humans. Start fresh; the next save replaces it.
    Corrupt(String),
    Loaded(T),
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot serialize state: {0}")]
    Serialize(serde_json::Error),
    #[error("cannot {action} {path}: {source}")]
    Write {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeOut<'a, T> {
    format: &'a str,
    version: u32,
    saved_at: u64,
    data: &'a T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeHeader {
    format: String,
    version: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeIn<T> {
    data: T,
}

#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
    max_bytes: u64,
}

/// Makes temporary names unique within the process (several stores, threads).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl StateStore {
    pub fn new(path: impl Into<PathBuf>) -> StateStore {
        StateStore {
            path: path.into(),
            max_bytes: DEFAULT_MAX_STATE_BYTES,
        }
    }

    /// Files larger than this are reported as corrupt instead of being read.
    #[cfg(test)]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> StateStore {
        self.max_bytes = max_bytes;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state. Only I/O failures other than "not found" are errors
    /// (e.g. permission denied: the file may be fine, so do not overwrite it
    /// blindly); anything wrong with the content is `Corrupt`.
    pub fn load<T: DeserializeOwned>(&self) -> Result<LoadOutcome<T>, StateError> {
        let read_err = |source| StateError::Read {
            path: self.path.clone(),
            source,
        };
        // O_NOFOLLOW: a symlink planted in place of the file is an error
        // (the file is then never replaced), not a way to read another file.
        let (file, meta) = match crate::file_trust::open_regular(&self.path, true) {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LoadOutcome::Missing),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                return Ok(LoadOutcome::Corrupt(e.to_string()))
            }
            Err(e) => return Err(read_err(e)),
        };
        if meta.len() > self.max_bytes {
            return Ok(LoadOutcome::Corrupt(format!(
                "{} is {} bytes, more than the {} bytes a state file may have",
                self.path.display(),
                meta.len(),
                self.max_bytes
            )));
        }
        let mut bytes = Vec::new();
        // take(): the file may grow between fstat and read.
        file.take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > self.max_bytes {
            return Ok(LoadOutcome::Corrupt(format!(
                "{} grew beyond {} bytes while being read",
                self.path.display(),
                self.max_bytes
            )));
        }
        let header: EnvelopeHeader = match serde_json::from_slice(&bytes) {
            Ok(h) => h,
            Err(e) => {
                return Ok(LoadOutcome::Corrupt(format!(
                    "{} is not a state file: {e}",
                    self.path.display()
                )))
            }
        };
        if header.format != FORMAT_NAME {
            return Ok(LoadOutcome::Corrupt(format!(
                "{} has format {:?}, expected {FORMAT_NAME:?}",
                self.path.display(),
                header.format
            )));
        }
        if header.version != STATE_FORMAT_VERSION {
            return Ok(LoadOutcome::Corrupt(format!(
                "{} has state format version {}, this agent reads version {STATE_FORMAT_VERSION}",
                self.path.display(),
                header.version
            )));
        }
        match serde_json::from_slice::<EnvelopeIn<T>>(&bytes) {
            Ok(env) => Ok(LoadOutcome::Loaded(env.data)),
            Err(e) => Ok(LoadOutcome::Corrupt(format!(
                "{} has unusable data: {e}",
                self.path.display()
            ))),
        }
    }

    /// Checks, before anything is read or written, that only the agent's
    /// user (`agent_uid`, or root) can change the state: else another user
    /// could plant counters that are served, and that come back after every
    /// restart. Creates the directory (mode 0750) when it is missing. The
    /// error says what is wrong and how to fix it; the agent must not start.
    ///
    /// Also refuses a state file that exists but cannot be read: saving would
    /// replace the counters it holds.
    pub fn check_trusted(&self, agent_uid: u32) -> Result<(), String> {
        use crate::file_trust::{chown_owner, describe_uid, kind_name, writable_by_others};
        use std::os::unix::fs::DirBuilderExt;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let owner = chown_owner(agent_uid);
        let fix_dir = format!(
            "give it to the agent's user and make it writable by no one else \
             (`chown {owner} {d} && chmod 0750 {d}`; systemd's StateDirectory= does that)",
            d = dir.display()
        );
        if !dir.exists() {
            // A failure shows up at the first save, as a health error.
            let _ = fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(&dir);
        }
        match fs::symlink_metadata(&dir) {
            Ok(meta) => {
                if let Some(why) = writable_by_others("state directory", &dir, &meta, agent_uid) {
                    return Err(format!("{why}; {fix_dir}"));
                }
                if !meta.is_dir() {
                    return Err(format!(
                        "state directory {} is {}",
                        dir.display(),
                        kind_name(meta.file_type())
                    ));
                }
            }
            // Cannot be created or seen (read-only file system, no search
            // permission): the first save reports it as a health error.
            Err(_) => return Ok(()),
        }
        let meta = match fs::symlink_metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "cannot look at the state file {}: {e}; {fix_dir}",
                    self.path.display()
                ))
            }
        };
        let fix_file = format!(
            "it holds the saved counters and must never be replaced unread: \
             `chown {owner} {p} && chmod 0640 {p}` (the agent runs as {}), \
             or remove it to start the counters from zero",
            describe_uid(agent_uid),
            p = self.path.display()
        );
        if let Some(why) = writable_by_others("state file", &self.path, &meta, agent_uid) {
            return Err(format!("{why}; {fix_file}"));
        }
        if !meta.is_file() {
            return Err(format!(
                "state file {} is {}; remove it",
                self.path.display(),
                kind_name(meta.file_type())
            ));
        }
        if let Err(e) = crate::file_trust::open_regular(&self.path, true) {
            return Err(format!(
                "state file {} exists but cannot be read ({e}): owner {}, mode {:04o}; {fix_file}",
                self.path.display(),
                describe_uid(std::os::unix::fs::MetadataExt::uid(&meta)),
                std::os::unix::fs::MetadataExt::mode(&meta) & 0o7777,
            ));
        }
        Ok(())
    }

    /// Replaces the state file atomically and durably.
    pub fn save<T: Serialize>(&self, value: &T) -> Result<(), StateError> {
        let saved_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let bytes = serde_json::to_vec(&EnvelopeOut {
            format: FORMAT_NAME,
            version: STATE_FORMAT_VERSION,
            saved_at,
            data: value,
        })
        .map_err(StateError::Serialize)?;

        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state".into());
        let temp = dir.join(format!(
            ".{name}.tmp.{}.{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write_err = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Write {
                action,
                path,
                source,
            }
        };

        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o640)
                .open(&temp)
                .map_err(write_err("create temporary state file", &temp))?;
            file.write_all(&bytes)
                .map_err(write_err("write temporary state file", &temp))?;
            file.sync_all()
                .map_err(write_err("fsync temporary state file", &temp))?;
            drop(file);
            fs::rename(&temp, &self.path)
                .map_err(write_err("rename temporary state file to", &self.path))
        })();
        if result.is_err() {
            // Best effort: a failed save must not leave litter that fills the disk further.
            let _ = fs::remove_file(&temp);
            return result;
        }
        // The rename is durable only once the directory is on disk.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err("fsync state directory", &dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        lines: u64,
        names: BTreeMap<String, u64>,
    }

    fn sample() -> Sample {
        Sample {
            lines: 42,
            names: [("smtpd".to_string(), 7)].into_iter().collect(),
        }
    }

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state.json"));
        assert!(matches!(
            store.load::<Sample>().unwrap(),
            LoadOutcome::Missing
        ));
        store.save(&sample()).unwrap();
        match store.load::<Sample>().unwrap() {
            LoadOutcome::Loaded(s) => assert_eq!(s, sample()),
            other => panic!("{other:?}"),
        }
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = StateStore::new(&path);
        for garbage in [
            &b""[..],
            b"\xff\xfe\x00garbage",
            b"{\"format\":\"postfix-agentx-state\"",
            b"[1,2,3]",
            b"{\"format\":\"other\",\"version\":1,\"data\":{}}",
            b"{\"format\":\"postfix-agentx-state\",\"version\":1,\"data\":{\"lines\":\"x\"}}",
        ] {
            fs::write(&path, garbage).unwrap();
            assert!(
                matches!(store.load::<Sample>().unwrap(), LoadOutcome::Corrupt(_)),
                "{garbage:?}"
            );
        }
        // A later save replaces the garbage.
        store.save(&sample()).unwrap();
        assert!(matches!(
            store.load::<Sample>().unwrap(),
            LoadOutcome::Loaded(_)
        ));
    }

    #[test]
    fn other_version_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(
            &path,
            br#"{"format":"postfix-agentx-state","version":99,"savedAt":0,"data":{"lines":1,"names":{}}}"#,
        )
        .unwrap();
        match StateStore::new(&path).load::<Sample>().unwrap() {
            LoadOutcome::Corrupt(reason) => assert!(reason.contains("version 99"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn huge_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, vec![b' '; 10_000]).unwrap();
        match StateStore::new(&path)
            .with_max_bytes(1000)
            .load::<Sample>()
            .unwrap()
        {
            LoadOutcome::Corrupt(reason) => assert!(reason.contains("10000 bytes"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn directory_instead_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        assert!(matches!(
            store.load::<Sample>().unwrap(),
            LoadOutcome::Corrupt(_)
        ));
    }

    #[test]
    fn missing_directory_is_an_error_with_context() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("nonexistent/state.json"));
        let err = store.save(&sample()).unwrap_err().to_string();
        assert!(
            err.contains("nonexistent") && err.contains("No such file"),
            "{err}"
        );
    }

    fn uid_of(path: &Path) -> u32 {
        std::os::unix::fs::MetadataExt::uid(&fs::metadata(path).unwrap())
    }

    #[test]
    fn world_writable_directory_or_planted_symlink_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let me = uid_of(dir.path());
        let state_dir = dir.path().join("state");
        let store = StateStore::new(state_dir.join("log-state.json"));
        // Missing: created, private, trusted.
        store.check_trusted(me).unwrap();
        assert_eq!(
            fs::metadata(&state_dir).unwrap().permissions().mode() & 0o777,
            0o750
        );
        fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = store.check_trusted(me).unwrap_err();
        assert!(
            err.contains("state directory") && err.contains("mode 1777") && err.contains("chown"),
            "{err}"
        );
        fs::set_permissions(&state_dir, fs::Permissions::from_mode(0o755)).unwrap();
        store.save(&sample()).unwrap();
        store.check_trusted(me).unwrap();
        // A group-writable state file.
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o660)).unwrap();
        let err = store.check_trusted(me).unwrap_err();
        assert!(
            err.contains("state file") && err.contains("mode 0660"),
            "{err}"
        );
        // A symlink in its place: refused before, and never followed by load.
        fs::remove_file(store.path()).unwrap();
        let elsewhere = dir.path().join("forged.json");
        StateStore::new(&elsewhere).save(&sample()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, store.path()).unwrap();
        let err = store.check_trusted(me).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        let err = store.load::<Sample>().unwrap_err().to_string();
        assert!(err.contains("symbolic links"), "{err}");
        // The state directory itself as a symlink.
        fs::remove_file(store.path()).unwrap();
        let linked = StateStore::new(dir.path().join("linked/log-state.json"));
        std::os::unix::fs::symlink(&state_dir, dir.path().join("linked")).unwrap();
        let err = linked.check_trusted(me).unwrap_err();
        assert!(
            err.contains("state directory") && err.contains("symbolic link"),
            "{err}"
        );
    }

    #[test]
    fn a_fifo_as_state_file_is_refused_and_never_blocks_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log-state.json");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let store = StateStore::new(&path);
        let err = store.check_trusted(uid_of(dir.path())).unwrap_err();
        assert!(err.contains("is a FIFO"), "{err}");
        assert!(
            matches!(store.load::<Sample>().unwrap(), LoadOutcome::Corrupt(r) if r.contains("FIFO"))
        );
    }

    /// A private tmpfs, unmounted on drop (even when the test fails).
    struct TmpfsMount {
        dir: tempfile::TempDir,
    }

    impl TmpfsMount {
        fn new(size: &str) -> TmpfsMount {
            let dir = tempfile::tempdir().unwrap();
            let out = std::process::Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(dir.path())
                .output()
                .expect("run mount");
            assert!(
                out.status.success(),
                "this test needs root and mount(8) (util-linux) to make a small tmpfs: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            TmpfsMount { dir }
        }

        fn remount(&self, opt: &str) {
            let out = std::process::Command::new("mount")
                .args(["-o", &format!("remount,{opt}")])
                .arg(self.dir.path())
                .output()
                .expect("run mount");
            assert!(
                out.status.success(),
                "remount {opt}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    impl Drop for TmpfsMount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }

    fn big_sample(entries: usize) -> Sample {
        Sample {
            lines: 1,
            names: (0..entries)
                .map(|i| (format!("queue-id-{i:08}"), i as u64))
                .collect(),
        }
    }

    #[test]
    fn disk_full_keeps_old_state_and_later_save_succeeds() {
        let fs_ = TmpfsMount::new("64k");
        let store = StateStore::new(fs_.dir.path().join("state.json"));
        store.save(&sample()).unwrap();
        let err = store.save(&big_sample(20_000)).unwrap_err().to_string();
        assert!(err.contains("No space left on device"), "{err}");
        assert!(err.contains("temporary state file"), "{err}");
        // The old state is intact and no temporary file is left.
        match store.load::<Sample>().unwrap() {
            LoadOutcome::Loaded(s) => assert_eq!(s, sample()),
            other => panic!("{other:?}"),
        }
        let names: Vec<_> = fs::read_dir(fs_.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        // Once there is room again (smaller state here), saving works.
        store.save(&big_sample(100)).unwrap();
        assert!(
            matches!(store.load::<Sample>().unwrap(), LoadOutcome::Loaded(s) if s.names.len() == 100)
        );
    }

    #[test]
    fn read_only_directory_is_an_error_then_recovers() {
        let fs_ = TmpfsMount::new("1m");
        let store = StateStore::new(fs_.dir.path().join("state.json"));
        store.save(&sample()).unwrap();
        fs_.remount("ro");
        let err = store.save(&big_sample(3)).unwrap_err().to_string();
        assert!(err.contains("Read-only file system"), "{err}");
        assert!(matches!(store.load::<Sample>().unwrap(), LoadOutcome::Loaded(s) if s == sample()));
        fs_.remount("rw");
        store.save(&big_sample(3)).unwrap();
        assert!(
            matches!(store.load::<Sample>().unwrap(), LoadOutcome::Loaded(s) if s.names.len() == 3)
        );
    }
}
