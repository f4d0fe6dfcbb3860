use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Prefix of the hidden folder a run builds its tables in.
const STAGING_PREFIX: &str = ".fhir2table-staging-";

/// A run's private folder under `--out`. Tables are written here and moved into place by
/// [`Staging::commit`]; if the run fails, the folder is removed and the previous output stays.
pub struct Staging {
    out: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// Creates `out` (if needed) and this run's staging folder in it, after clearing staging
    /// folders left by runs that were killed. Fails when `out` is not writable.
    pub fn create(out: &Path) -> Result<Staging> {
        fs::create_dir_all(out).with_context(|| format!("cannot create output folder {}", out.display()))?;
        remove_abandoned_staging(out);
        let dir = out.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        fs::create_dir(&dir).with_context(|| format!("output folder {} is not writable", out.display()))?;
        Ok(Staging {
            out: out.to_path_buf(),
            dir,
            committed: false,
        })
    }

    /// Where a table is built during the run.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.dir.join(table)
    }

    /// The renames that put the staged tables in place: `replace` swaps each whole table folder
    /// (overwrite mode: the old one goes aside into the staging folder), otherwise each new Parquet
    /// file moves in beside the existing ones (append mode).
    pub fn plan(&self, tables: &[&str], replace: bool) -> Result<Vec<Move>> {
        let mut moves = Vec::new();
        for table in tables {
            let target = self.out.join(table);
            if replace {
                moves.push(Move::new(&target, &self.dir.join(".previous").join(table)));
                moves.push(Move::new(&self.table_dir(table), &target));
                continue;
            }
            let mut files: Vec<PathBuf> = fs::read_dir(self.table_dir(table))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<io::Result<_>>()?;
            files.sort();
            for file in files {
                let name = file.file_name().expect("staged files have names");
                moves.push(Move::new(&file, &target.join(name)));
            }
        }
        Ok(moves)
    }

    /// Commits: writes the journal (the moves and the files to write after them), carries it
    /// out, and removes the staging folder. A run killed at any point is finished by the next
    /// run's [`recover`], so the output is always either before or after this commit.
    pub fn commit(mut self, journal: Journal) -> Result<()> {
        journal.write(&self.out)?;
        self.committed = true;
        journal.carry_out(&self.out)
    }

    /// The staging folder's path (recorded in the journal so recovery can remove it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// One rename of a commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Move {
    pub from: PathBuf,
    pub to: PathBuf,
}

impl Move {
    fn new(from: &Path, to: &Path) -> Move {
        Move {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        }
    }

    /// Renames if it has not happened yet: the source is there and the target is not. Safe to
    /// repeat, in order, after a crash at any point.
    fn carry_out(&self) -> Result<()> {
        if !self.from.exists() || self.to.exists() {
            return Ok(());
        }
        if let Some(parent) = self.to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::rename(&self.from, &self.to)
            .with_context(|| format!("cannot move {} to {}", self.from.display(), self.to.display()))
    }
}

/// The name of the commit journal inside `--out`.
const JOURNAL_FILE: &str = ".fhir2table-commit.json";

/// What a commit does, written down before doing it: renames, then files written whole (the
/// state and the run report), then the staging folder removed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Journal {
    pub moves: Vec<Move>,
    /// (path, content) written atomically after the moves.
    pub files: Vec<(PathBuf, String)>,
    pub staging: PathBuf,
}

impl Journal {
    fn write(&self, out: &Path) -> Result<()> {
        let text = serde_json::to_vec(self)?;
        write_atomically(&out.join(JOURNAL_FILE), &text).context("cannot write the commit journal")
    }

    fn carry_out(&self, out: &Path) -> Result<()> {
        for step in &self.moves {
            step.carry_out()?;
        }
        for (path, content) in &self.files {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            write_atomically(path, content.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if self.staging.exists() {
            fs::remove_dir_all(&self.staging)
                .with_context(|| format!("cannot remove {}", self.staging.display()))?;
        }
        fs::remove_file(out.join(JOURNAL_FILE)).context("cannot remove the commit journal")?;
        Ok(())
    }
}

/// Finishes a commit that a killed run left half done. Call under the output lock, before
/// creating a new staging folder.
pub fn recover(out: &Path) -> Result<bool> {
    let path = out.join(JOURNAL_FILE);
    let Ok(text) = fs::read(&path) else {
        return Ok(false);
    };
    let journal: Journal = serde_json::from_slice(&text)
        .with_context(|| format!("{} is damaged; remove it to continue", path.display()))?;
    journal.carry_out(out)?;
    Ok(true)
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes `content` to `path` through a temporary file and a rename, so readers see the old or the
/// new file, never a part of one.
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = fs::File::create(&temporary)?;
    file.write_all(content)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

/// Removes staging folders whose process is gone (a killed run); never those of live runs.
/// Also removes the temporary files (`….tmp-<pid>`, lock drafts) such runs left in `out` and
/// `out/_state`.
fn remove_abandoned_staging(out: &Path) {
    for folder in [out.to_path_buf(), out.join("_state")] {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let owner = name
                .strip_prefix(STAGING_PREFIX)
                .or_else(|| name.rsplit_once(".tmp-").map(|(_, pid)| pid))
                .or_else(|| name.strip_prefix(".fhir2table.lock."));
            let Some(pid) = owner.filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if Path::new("/proc").join(pid).exists() {
                continue;
            }
            let path = entry.path();
            let _ = if path.is_dir() {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
        }
    }
}
