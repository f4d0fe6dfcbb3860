//! Every file-system call that changes an output folder (or the archive and quarantine folders)
//! goes through this module, for two reasons: each one is followed by the durability it needs
//! (files and their directories are fsynced where a crash could otherwise undo a rename), and each
//! one is a numbered crash point that tests can stop the process at. Two calls do not, on
//! purpose: creating `--out` itself before its lock can be taken, and the best-effort removal of
//! a failed run's staging folder (garbage either way; the next run removes what is left).
//!
//! Crash points: with `FHIR2TABLE_CRASH_AFTER_FS_CALL=N` in the environment the process aborts
//! right after its N-th call here, with no destructor, flush or clean-up, as a `kill -9` or a
//! power cut at that moment would leave it. With `FHIR2TABLE_FAIL_FS_CALL=N` the N-th call fails
//! with an I/O error instead of being made (a failing disk). tests/crash_points.rs runs every
//! commit path once per call number with each and checks that the next run ends in exactly the
//! state before or after it. The variables are for tests only; they are read once and cost one
//! atomic increment per call.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that names the call after which the process aborts (tests only).
pub const CRASH_AFTER_VARIABLE: &str = "FHIR2TABLE_CRASH_AFTER_FS_CALL";

/// The environment variable that names the call that fails with an I/O error (tests only).
pub const FAIL_VARIABLE: &str = "FHIR2TABLE_FAIL_FS_CALL";

static CALLS: AtomicU64 = AtomicU64::new(0);

fn call_number(variable: &str) -> Option<u64> {
    std::env::var(variable).ok()?.parse().ok()
}

/// The test hooks, when set: the call to abort after and the call to fail.
fn hooks() -> (Option<u64>, Option<u64>) {
    static HOOKS: OnceLock<(Option<u64>, Option<u64>)> = OnceLock::new();
    *HOOKS.get_or_init(|| (call_number(CRASH_AFTER_VARIABLE), call_number(FAIL_VARIABLE)))
}

/// Makes one counted call: fails it if it is the one the fail hook names, and stops the process
/// dead right after it if it is the one the crash hook names. A call that failed on its own
/// changed nothing and is no crash point.
fn counted<T>(call: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let (crash_after, fail) = hooks();
    if crash_after.is_none() && fail.is_none() {
        return call();
    }
    let number = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if fail == Some(number) {
        return Err(io::Error::other(format!(
            "{FAIL_VARIABLE}: injected failure of call {number}"
        )));
    }
    let result = call();
    if result.is_ok() && crash_after == Some(number) {
        std::process::abort();
    }
    result
}

/// Creates a folder and its missing parents, durably: each new folder's entry in its parent is
/// synced, so a file later moved into it cannot outlive the folder across a power cut.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut folder = path;
    while !folder.as_os_str().is_empty() && !folder.is_dir() {
        missing.push(folder);
        match folder.parent() {
            Some(parent) => folder = parent,
            None => break,
        }
    }
    for &new in missing.iter().rev() {
        match counted(|| fs::create_dir(new)) {
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && new.is_dir() => {}
            other => other?,
        }
        sync_parent(new)?;
    }
    Ok(())
}

/// Creates one folder in an existing parent, durably, failing with `AlreadyExists` when it is
/// there: a folder that marks work in progress, which two processes must not both take.
pub fn create_new_dir(path: &Path) -> io::Result<()> {
    counted(|| fs::create_dir(path))?;
    sync_parent(path)
}

/// Creates (or truncates) a file for writing.
pub fn create_file(path: &Path) -> io::Result<File> {
    counted(|| File::create(path))
}

/// Flushes a file's data and metadata to the disk.
pub fn sync_file(file: &File) -> io::Result<()> {
    counted(|| file.sync_all())
}

/// Flushes a folder's entries (names created, renamed or removed in it) to the disk. A rename is
/// only durable once both folders it touched are synced.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    counted(|| File::open(path).and_then(|dir| dir.sync_all()))
}

/// Renames, then makes the rename durable by syncing the folders on both sides.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    counted(|| fs::rename(from, to))?;
    sync_parent(to)?;
    if from.parent() != to.parent() {
        sync_parent(from)?;
    }
    Ok(())
}

/// Removes a file, durably.
pub fn remove_file(path: &Path) -> io::Result<()> {
    counted(|| fs::remove_file(path))?;
    sync_parent(path)
}

/// Removes a folder and everything in it, durably. Used only for folders that are garbage once
/// the commit journal is gone, so a crash half way through leaves garbage, never a half table.
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    counted(|| fs::remove_dir_all(path))?;
    sync_parent(path)
}

/// Copies a file through a temporary sibling and a rename, so `to` is never seen half-copied.
pub fn copy(from: &Path, to: &Path) -> io::Result<()> {
    let temporary = temporary_sibling(to);
    counted(|| fs::copy(from, &temporary))?;
    sync_file(&File::open(&temporary)?)?;
    rename(&temporary, to)
}

/// Gives the finished file `from` a second name `to` (a hard link, so nothing is copied), or
/// copies it where a link cannot be made (another file system). Either way `to` appears whole,
/// and `from` is left as it was.
pub fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    match counted(|| fs::hard_link(from, to)) {
        Ok(()) => sync_parent(to),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Err(error),
        Err(_) => copy(from, to),
    }
}

/// Writes `content` to `path` through a temporary file and a rename, so readers (and a crash) see
/// the old file or the new one, never a part of one.
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let temporary = temporary_sibling(path);
    let mut file = create_file(&temporary)?;
    let written = file.write_all(content).and_then(|()| sync_file(&file));
    drop(file);
    if let Err(error) = written {
        // A full disk, say: leave no half-written temporary behind.
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    rename(&temporary, path)
}

/// [`write_atomically`] for content that arrives as a stream (a copy of an input on object
/// storage), so it need not fit in memory.
pub fn write_atomically_from(path: &Path, content: &mut dyn std::io::Read) -> io::Result<()> {
    let temporary = temporary_sibling(path);
    let mut file = create_file(&temporary)?;
    let written = io::copy(content, &mut file).and_then(|_| sync_file(&file));
    drop(file);
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    rename(&temporary, path)
}

/// `name.<n>.tmp-<pid>` beside `path`: unique among this process's threads, and the form the
/// next run recognises as debris of a dead run.
fn temporary_sibling(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    name.push(format!(".{n}.tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}
