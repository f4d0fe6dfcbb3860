//! Bringing an output folder written by an older release into the current layout (`layout.rs`).
//! Those releases kept the tool's files at the top of `OUT`: `_run.json`, `_state/state.json`,
//! `_deleted/`, `.fhir2table.lock`, `.fhir2table-commit.json` and `.fhir2table-staging-<pid>/`.
//!
//! The migration runs when a run opens the folder, holding both the new lock and the old one
//! (`Output::open` holds the old one for the whole run whenever its file exists, so an older
//! release still running on the folder refuses this run, and the other way round). It
//! first finishes a commit the older release left half done, in that release's layout; then
//! moves each file with one rename, decided by whether its old place still exists. A run killed at
//! any point therefore leaves a folder that the next run finishes migrating, and the tables, which
//! stay where they are, never change.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::commit::{all_digits, is_temporary_file, recover, remove_debris, Layout};
use super::commit::{LEGACY_JOURNAL_FILE, LEGACY_STAGING_PREFIX};
use super::layout::{stored_part_name, table_folder, tool_folder};
use super::lock::OutputLock;
use crate::fsops;

/// Where older releases kept their lock.
const LEGACY_LOCK_FILE: &str = ".fhir2table.lock";

/// Old place (under `OUT`) → new place, for each file or folder that moves.
const MOVES: &[(&str, &str)] = &[
    ("_run.json", ".fhir2table/_run.json"),
    ("_state/state.json", ".fhir2table/_state.json"),
    ("_deleted", ".fhir2table/_deleted"),
];

/// The tool's own table that older releases kept at the top as a Parquet dataset.
const LEGACY_TOMBSTONES: &str = "_deleted";

/// Migrates `out` if an older release left anything at its top; `true` if that included
/// finishing a commit the older release left half done. The caller holds the current lock (and
/// the old one, when its file exists) and has created the tool folder.
pub(super) fn from_top_level_layout(out: &Path) -> Result<bool> {
    // The caller holds the older releases' lock (see `legacy_lock`).
    let top: Vec<String> = match fs::read_dir(out) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .collect(),
        Err(error) => return Err(anyhow::Error::new(error).context(format!("cannot list {}", out.display()))),
    };
    if !top.iter().any(|name| is_legacy(name)) {
        return Ok(false);
    }
    let recovered = recover(out, Layout::Legacy)?;
    for (from, to) in MOVES {
        move_if_present(&out.join(from), &out.join(to))?;
    }
    give_tombstones_their_extension(out)?;
    remove_debris(&[out.to_path_buf(), out.join("_state")], is_legacy_debris)?;
    remove_if_empty(&out.join("_state"))?;
    tracing::info!(
        "moved the files of an older fhir2table release into {}",
        tool_folder(out).display()
    );
    Ok(recovered)
}

/// The lock of older releases, taken too when its file exists, for as long as the caller holds
/// it: an older release still running on the folder then refuses this run, and the other way
/// round. The file is never removed (an older release may hold it open and lock it right after).
pub(super) fn legacy_lock(out: &Path) -> Result<Option<OutputLock>> {
    let path = out.join(LEGACY_LOCK_FILE);
    match exists(&path)? {
        true => Ok(Some(OutputLock::acquire_file(&path, out)?)),
        false => Ok(None),
    }
}

/// Whether an older release left its files at the top of `out`: such a folder is an output too.
pub(super) fn has_legacy_files(out: &Path) -> bool {
    std::iter::once(LEGACY_LOCK_FILE)
        .chain(MOVES.iter().map(|(from, _)| *from))
        .any(|name| out.join(name).exists())
}

/// A name at the top of `OUT` that only an older release creates (its lock file aside: it stays).
fn is_legacy(name: &str) -> bool {
    name == LEGACY_JOURNAL_FILE
        || name == "_state"
        || MOVES.iter().any(|(from, _)| *from == name)
        || is_legacy_debris(name)
}

/// Staging folders, temporary files and lock drafts of older releases.
fn is_legacy_debris(name: &str) -> bool {
    name.strip_prefix(LEGACY_STAGING_PREFIX).is_some_and(all_digits)
        || name.strip_prefix(".fhir2table.lock.").is_some_and(all_digits)
        || is_temporary_file(name)
}

fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(anyhow::Error::new(error).context(format!("cannot look at {}", path.display()))),
    }
}

fn move_if_present(from: &Path, to: &Path) -> Result<()> {
    if !exists(from)? {
        return Ok(());
    }
    if exists(to)? {
        bail!(
            "{} and {} both exist: the output folder was written by an older and a newer fhir2table \
             release; remove the one that is out of date",
            from.display(),
            to.display()
        );
    }
    fsops::rename(from, to).with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
}

/// Older releases named the tombstones' files `*.parquet`; now they end so that no reader's
/// `*.parquet` glob picks them up.
fn give_tombstones_their_extension(out: &Path) -> Result<()> {
    let folder = table_folder(out, LEGACY_TOMBSTONES);
    let Ok(entries) = fs::read_dir(&folder) else {
        return Ok(());
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    for name in names {
        let stored = stored_part_name(LEGACY_TOMBSTONES, &name);
        if stored != name {
            let (from, to): (PathBuf, PathBuf) = (folder.join(&name), folder.join(stored.as_ref()));
            move_if_present(&from, &to)?;
        }
    }
    Ok(())
}

fn remove_if_empty(folder: &Path) -> Result<()> {
    let empty = match fs::read_dir(folder) {
        Ok(mut entries) => entries.next().is_none(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!("cannot list {}", folder.display())))
        }
    };
    if empty {
        fsops::remove_dir_all(folder).with_context(|| format!("cannot remove {}", folder.display()))?;
    }
    Ok(())
}
