//! Every file-system call that changes an output folder (or the archive and quarantine folders)
//! goes through this module, for two reasons: each one is followed by the durability it needs
//! (files and their directories are fsynced where a crash could otherwise undo a rename), and each
//! one is a numbered crash point that tests can stop the process at.
//!
//! Crash points: with `FHIR2TABLE_CRASH_AFTER_FS_CALL=N` in the environment the process aborts
//! right after its N-th call here, with no destructor, flush or clean-up, as a `kill -9` or a
//! power cut at that moment would leave it. tests/crash_points.rs runs every commit path once per
//! call number and checks that the next run ends in exactly the state before or after it. The
//! variable is for tests only; it is read once and costs one atomic increment per call.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that names the call after which the process aborts (tests only).
pub const CRASH_AFTER_VARIABLE: &str = "FHIR2TABLE_CRASH_AFTER_FS_CALL";

static CALLS: AtomicU64 = AtomicU64::new(0);

fn crash_after() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(|| std::env::var(CRASH_AFTER_VARIABLE).ok()?.parse().ok())
}

/// Counts one call and, when it is the one named by the crash variable, stops the process dead.
fn crash_point() {
    let Some(limit) = crash_after() else {
        return;
    };
    if CALLS.fetch_add(1, Ordering::SeqCst) + 1 == limit {
        std::process::abort();
    }
}

/// Runs one call and passes its crash point only if it succeeded (a failed call changed nothing).
fn counted<T>(result: io::Result<T>) -> io::Result<T> {
    if result.is_ok() {
        crash_point();
    }
    result
}

/// Creates a folder and its missing parents.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    counted(fs::create_dir_all(path))
}

/// Creates (or truncates) a file for writing.
pub fn create_file(path: &Path) -> io::Result<File> {
    counted(File::create(path))
}

/// Flushes a file's data and metadata to the disk.
pub fn sync_file(file: &File) -> io::Result<()> {
    counted(file.sync_all())
}

/// Flushes a folder's entries (names created, renamed or removed in it) to the disk. A rename is
/// only durable once both folders it touched are synced.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    counted(File::open(path).and_then(|dir| dir.sync_all()))
}

/// Renames, then makes the rename durable by syncing the folders on both sides.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    counted(fs::rename(from, to))?;
    sync_parent(to)?;
    if from.parent() != to.parent() {
        sync_parent(from)?;
    }
    Ok(())
}

/// Removes a file, durably.
pub fn remove_file(path: &Path) -> io::Result<()> {
    counted(fs::remove_file(path))?;
    sync_parent(path)
}

/// Removes a folder and everything in it, durably. Used only for folders that are garbage once
/// the commit journal is gone, so a crash half way through leaves garbage, never a half table.
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    counted(fs::remove_dir_all(path))?;
    sync_parent(path)
}

/// Copies a file through a temporary sibling and a rename, so `to` is never seen half-copied.
pub fn copy(from: &Path, to: &Path) -> io::Result<()> {
    let temporary = temporary_sibling(to);
    counted(fs::copy(from, &temporary))?;
    sync_file(&File::open(&temporary)?)?;
    rename(&temporary, to)
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

/// `name.tmp-<pid>` beside `path`: the form the next run recognises as debris of a dead run.
fn temporary_sibling(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}
