//! Opening files that other users control without letting them block us, and
//! deciding whether a file or directory the agent trusts (its config, its
//! state) can be changed by someone else.
//!
//! A log directory is writable by whoever runs syslog and sometimes by more:
//! a FIFO planted at `mail.log` or `mail.log.0` would block a plain `open(2)`
//! (and the thread in it) until a writer appears. [`open_regular`] opens with
//! `O_NONBLOCK` and then checks the opened descriptor, so the check and the
//! file read are the same inode.

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// What a non-regular file is, for messages.
pub fn kind_name(t: FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// The error for a path that is not a regular file (kind `InvalidInput`, so
/// callers can tell it from "not found" or "permission denied").
pub fn not_regular(path: &Path, t: FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is {}, not a regular file", path.display(), kind_name(t)),
    )
}

/// Opens `path` for reading without blocking on a FIFO or device, and checks
/// on the opened descriptor that it is a regular file. `nofollow` refuses a
/// symbolic link as the last component (`O_NOFOLLOW`: fails with `ELOOP`).
pub fn open_regular(path: &Path, nofollow: bool) -> io::Result<(File, Metadata)> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    // O_NONBLOCK means nothing for a regular file's reads; it stays set.
    Ok((file, meta))
}

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `uid N (name)`, the name when the password database has one.
pub fn describe_uid(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}

/// What to give `chown` for `uid`: its name, or the number.
pub fn chown_owner(uid: u32) -> String {
    user_name(uid).unwrap_or_else(|| uid.to_string())
}

/// The user name of `uid` from the password database.
fn user_name(uid: u32) -> Option<String> {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives the use of
    // pwd's string fields, which point into it.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: pw_name is a NUL-terminated string inside buf.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
    None
}

/// Why `meta` (of `path`) may be changed by a user other than `agent_uid`
/// (root is always allowed to), or `None` if only they can: it is a symbolic
/// link, belongs to another unprivileged user, or is group- or
/// world-writable. `what` names it in the message ("state directory").
pub fn writable_by_others(
    what: &str,
    path: &Path,
    meta: &Metadata,
    agent_uid: u32,
) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    let owner = meta.uid();
    let problem = if meta.file_type().is_symlink() {
        "is a symbolic link (whoever can change the link decides what is read)"
    } else if owner != agent_uid && owner != 0 {
        "belongs to another user"
    } else if mode & 0o022 != 0 {
        "is writable by users other than its owner"
    } else {
        return None;
    };
    Some(format!(
        "{what} {} {problem}: owner {}, mode {mode:04o}; the agent runs as {}",
        path.display(),
        describe_uid(owner),
        describe_uid(agent_uid),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    #[test]
    fn a_fifo_is_refused_at_once_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("mail.log");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let start = Instant::now();
        let err = open_regular(&fifo, false).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("is a FIFO"), "{err}");
        let err = open_regular(Path::new("/dev/null"), false).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        let err = open_regular(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn nofollow_refuses_a_symlink_and_regular_files_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_regular(&file, true).is_ok());
        assert!(open_regular(&link, false).is_ok());
        let err = open_regular(&link, true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
    }

    #[test]
    fn writable_by_others_names_owner_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let me = effective_uid();
        let path = dir.path();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert_eq!(writable_by_others("state directory", path, &meta, me), None);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let meta = std::fs::symlink_metadata(path).unwrap();
        let why = writable_by_others("state directory", path, &meta, me).unwrap();
        assert!(
            why.contains("mode 1777") && why.contains("state directory"),
            "{why}"
        );
        assert!(why.contains(&format!("uid {me}")), "{why}");
        // As seen by another agent user, our directory belongs to someone
        // else, unless we are root (root's files are trusted).
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let meta = std::fs::symlink_metadata(path).unwrap();
        let other = if me == 0 { 65534 } else { me + 1 };
        let why = writable_by_others("state directory", path, &meta, other);
        assert_eq!(why.is_none(), me == 0, "{why:?}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(path, &link).unwrap();
        let meta = std::fs::symlink_metadata(&link).unwrap();
        let why = writable_by_others("state directory", &link, &meta, me).unwrap();
        assert!(why.contains("symbolic link"), "{why}");
    }
}
