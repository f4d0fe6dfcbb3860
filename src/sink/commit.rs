//! Changing an output folder so that a crash at any moment leaves it exactly as it was before the
//! change or exactly as it is after it. Every writing command (`convert` in every mode, `compact`)
//! goes through here: it opens the folder ([`Output::open`]: lock, finish an interrupted commit,
//! clear debris), builds its new files in a private staging folder ([`Store::stage`]) and
//! [`StagedRun::commit`]s them.
//!
//! [`Store::stage`]: super::Store::stage
//! [`StagedRun::commit`]: super::StagedRun::commit
//!
//! # The commit state machine
//!
//! `OUT` is the output folder, `S` = `OUT/.fhir2table/_staging-<pid>` the staging folder and `J` =
//! `OUT/.fhir2table/_commit.json` the journal (see `layout.rs` for where each table's folder is). Every file-system call below goes through
//! [`crate::fsops`], which fsyncs the file or folder it changed.
//!
//! | state | what is on disk | a crash here ends, after the next run's [`Output::open`], in |
//! |---|---|---|
//! | building | `S` holds new files (each synced when finished); `OUT` untouched | before (`S` is removed) |
//! | 1. journal written | `J` written atomically (temp file, fsync, rename, fsync `OUT`): **the commit point** | after (steps replayed) |
//! | 2. steps | each step of `J` carried out in order | after (steps replayed) |
//! | 3. journal removed | `J` removed, `OUT` fsynced | after (`S` is garbage, removed) |
//! | 4. staging removed | `S` (now holding only replaced tables) removed | after |
//!
//! Every step is idempotent, decided by whether its staged source still exists, which stays true
//! until the step's last rename and false ever after, because nothing removes `S` while `J` exists:
//!
//! - `Replace T`: if `S/T` exists: move `OUT/T` (if any) to `S/.previous/T`, then `S/T` to `OUT/T`.
//! - `Add T f`: if `S/T/f` exists: create `OUT/T`, move `S/T/f` to `OUT/T/f`.
//! - `Write p`: write the journal's copy of file `p` atomically (the incremental state, the report).
//! - `DeltaCommit T`: (`--format delta`, after the `Add` steps that moved its files into `OUT/T`)
//!   unless the Delta log of `OUT/T` already records this run's transaction id, commit one Delta
//!   transaction that adds those files (removing every live file first when replacing); see
//!   `delta.rs`. Each such step is atomic for Delta readers on its own: a reader may see one
//!   table at the run's version and another still at the one before until the journal is done.
//!
//! Nothing outside `OUT` is named in a journal: tables and files are single names checked against
//! path tricks (`..`, `/`, NUL) when the journal is written and again when it is replayed. A
//! journal that cannot be read or parsed is an error naming it, never "no journal".

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::layout::{table_folder, tool_folder, JOURNAL_FILE, STAGING_PREFIX, TOOL_FOLDER};
use super::lock::OutputLock;
use super::store::RunInfo;
use super::WriteOptions;
use crate::fsops;

/// Where the commit journal of `out` is (the crash-point tests look for it).
pub fn journal_path(out: &Path) -> PathBuf {
    Layout::Current.journal(out)
}

/// Where a journal, its staging folder and its tables are: this release's layout, or the one of
/// releases that kept everything at the top of `OUT` (a journal they left is finished in their
/// layout before `migrate.rs` moves their files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    Current,
    Legacy,
}

impl Layout {
    fn journal(self, out: &Path) -> PathBuf {
        match self {
            Layout::Current => tool_folder(out).join(JOURNAL_FILE),
            Layout::Legacy => out.join(LEGACY_JOURNAL_FILE),
        }
    }

    fn staging_prefix(self) -> &'static str {
        match self {
            Layout::Current => STAGING_PREFIX,
            Layout::Legacy => LEGACY_STAGING_PREFIX,
        }
    }

    fn staging(self, out: &Path, name: &str) -> PathBuf {
        match self {
            Layout::Current => tool_folder(out).join(name),
            Layout::Legacy => out.join(name),
        }
    }

    fn table(self, out: &Path, table: &str) -> PathBuf {
        match self {
            Layout::Current => table_folder(out, table),
            Layout::Legacy => out.join(table),
        }
    }
}

/// The journal and staging folders of releases before the tool folder, at the top of `OUT`.
pub(super) const LEGACY_JOURNAL_FILE: &str = ".fhir2table-commit.json";
pub(super) const LEGACY_STAGING_PREFIX: &str = ".fhir2table-staging-";

/// Version of the journal's layout; a journal of a newer one is refused, not guessed at.
const JOURNAL_FORMAT: u32 = 1;

/// An output folder opened for changing: locked against other runs, any commit a killed run left
/// half done finished, and the debris of dead runs removed. The local backend's
/// [`Store`](super::Store).
pub struct Output {
    pub(super) root: PathBuf,
    _lock: OutputLock,
    /// The lock file of older releases, held too while it exists (see `migrate::legacy_lock`).
    _legacy_lock: Option<OutputLock>,
    pub(super) recovered: bool,
}

impl Output {
    /// Opens `root` (which must exist). Fails with [`super::Locked`] while another run holds it.
    pub fn open(root: &Path) -> Result<Output> {
        let tools = tool_folder(root);
        fsops::create_dir_all(&tools)
            .with_context(|| format!("output folder {} is not writable", root.display()))?;
        let lock = OutputLock::acquire(root)?;
        let legacy_lock = super::migrate::legacy_lock(root)?;
        let recovered_legacy = super::migrate::from_top_level_layout(root)?;
        let recovered = recover(root, Layout::Current)? || recovered_legacy;
        remove_debris(&[tools], is_debris)?;
        Ok(Output {
            root: root.to_path_buf(),
            _lock: lock,
            _legacy_lock: legacy_lock,
            recovered,
        })
    }

    /// Creates this run's staging folder, where files are written with `options`.
    pub(super) fn create_staging(&self, options: WriteOptions) -> Result<Staging> {
        let name = format!("{STAGING_PREFIX}{}", std::process::id());
        let dir = Layout::Current.staging(&self.root, &name);
        fsops::create_dir_all(&dir)
            .with_context(|| format!("output folder {} is not writable", self.root.display()))?;
        Ok(Staging {
            out: self.root.clone(),
            name,
            dir,
            options,
            consumed: false,
            removed: Vec::new(),
        })
    }
}

/// A run's private folder under `OUT`. Tables are written here and moved into place by the
/// commit; if the run fails before, the folder is removed and `OUT` is unchanged. The local
/// backend's [`StagedRun`](super::StagedRun).
pub struct Staging {
    out: PathBuf,
    name: String,
    dir: PathBuf,
    pub(super) options: WriteOptions,
    consumed: bool,
    /// The `Remove` steps the commit ends with.
    removed: Vec<Step>,
}

/// One idempotent step of a commit (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub(super) enum Step {
    /// Replace the table folder `OUT/<table>` by the staged one.
    Replace { table: String },
    /// Move the staged file `<file>` into the table folder `OUT/<table>/`.
    Add { table: String, file: String },
    /// Write the file `OUT/<path>` (a relative path) with this content.
    Write { path: String, content: String },
    /// Make the `files` already in the Delta table `OUT/<table>` visible in one Delta commit
    /// recording `run` (replacing every live file when `replace`), unless it already landed.
    DeltaCommit {
        table: String,
        files: Vec<String>,
        replace: bool,
        run: RunInfo,
    },
    /// Remove the folder `OUT/<path>` (a relative path inside the tool's folder) and all in it:
    /// the shard folders whose files the commit took in, so no later commit takes them again.
    /// Only while `guard` holds: a journal replayed late must not remove what another run put
    /// there since under the same name.
    Remove { path: String, guard: RemoveGuard },
}

/// When a [`Step::Remove`] may remove its folder: while its file `file` still has the content
/// the commit planned with (`digest`), or, once that file is gone (a removal cut short), while no
/// live process holds the folder's lock (a new run converting there holds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RemoveGuard {
    pub(super) file: String,
    pub(super) digest: String,
}

/// A digest of a file's content for [`RemoveGuard`]: the same bytes give the same text in every
/// release (SipHash-1-3 with zero keys).
pub(super) fn content_digest(content: &[u8]) -> String {
    use std::hash::Hasher;
    let mut hasher = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    hasher.write(content);
    format!("{:016x}-{}", hasher.finish(), content.len())
}

/// What a commit does, written down before doing it.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    format: u32,
    /// The staging folder's name inside `OUT`.
    staging: String,
    steps: Vec<Step>,
}

impl Staging {
    /// Where a table is built during the run. A table name that is not a plain folder name
    /// (`..`, a separator, NUL) is refused here, before anything is written.
    pub(super) fn table_dir(&self, table: &str) -> Result<PathBuf> {
        if !is_plain_name(table) {
            bail!("{table:?} cannot be a table name: it is not a plain folder name");
        }
        Ok(self.dir.join(table))
    }

    /// Has the commit remove the folder `path` (relative to `OUT`, inside the tool's folder) after
    /// its other steps, in the same journal: a crash cannot leave it both committed and in place.
    /// The folder's file `guard` (relative to it) must keep its present content until then.
    pub(super) fn remove_with_commit(&mut self, path: &str, guard: &str) -> Result<()> {
        let file = self.out.join(path).join(guard);
        let content = fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let step = Step::Remove {
            path: path.to_owned(),
            guard: RemoveGuard {
                file: guard.to_owned(),
                digest: content_digest(&content),
            },
        };
        step_paths_are_inside(&step)?;
        self.removed.push(step);
        Ok(())
    }

    /// Gives the staged table `table` the finished file `from` as its part `file`, linked or
    /// copied (see [`fsops::link_or_copy`]); `from` stays as it was.
    pub(super) fn adopt(&self, table: &str, file: &str, from: &Path) -> Result<()> {
        if !is_plain_name(file) {
            bail!("{file:?} is not a plain file name");
        }
        let folder = self.table_dir(table)?;
        fsops::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
        let to = folder.join(file);
        fsops::link_or_copy(from, &to)
            .with_context(|| format!("cannot take {} into {}", from.display(), to.display()))
    }

    /// The steps that put the staged tables in place: `replace` swaps each whole table folder
    /// (overwrite, compact), otherwise each staged file joins the existing ones (append).
    pub(super) fn plan(&self, tables: &[&str], replace: bool) -> Result<Vec<Step>> {
        let mut steps = Vec::new();
        for &table in tables {
            if replace {
                steps.push(Step::Replace { table: table.into() });
                continue;
            }
            let mut files: Vec<String> = fs::read_dir(self.table_dir(table)?)?
                .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<io::Result<_>>()?;
            files.sort();
            for file in files {
                steps.push(Step::Add {
                    table: table.into(),
                    file,
                });
            }
        }
        Ok(steps)
    }

    /// Commits: makes the staged files durable, writes the journal (the commit point), carries
    /// out its steps and clears up. After an error before the journal, `OUT` is unchanged; after
    /// one past it, the next [`Output::open`] finishes the commit.
    pub(super) fn commit_steps(mut self, mut steps: Vec<Step>) -> Result<()> {
        steps.append(&mut self.removed);
        let journal = Journal {
            format: JOURNAL_FORMAT,
            staging: self.name.clone(),
            steps,
        };
        journal.check(Layout::Current)?;
        for step in &journal.steps {
            if let Step::Replace { table } | Step::Add { table, .. } = step {
                let folder = self.table_dir(table)?;
                if folder.is_dir() {
                    fsops::sync_dir(&folder).with_context(|| format!("cannot sync {}", folder.display()))?;
                }
            }
        }
        fsops::sync_dir(&self.dir).with_context(|| format!("cannot sync {}", self.dir.display()))?;
        let text = serde_json::to_vec(&journal)?;
        // From here the staging folder belongs to the journal: even if writing it fails half way
        // (renamed, but its folder not synced), the journal may exist and need every staged file.
        // If it does not, the next run removes the folder as debris.
        self.consumed = true;
        fsops::write_atomically(&journal_path(&self.out), &text)
            .context("cannot write the commit journal")?;
        journal.carry_out(&self.out, Layout::Current)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.consumed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Journal {
    /// Refuses any name that could reach outside `OUT` or the staging folder.
    fn check(&self, layout: Layout) -> Result<()> {
        if !self.staging.starts_with(layout.staging_prefix()) || !is_plain_name(&self.staging) {
            bail!("staging folder {:?} is not a staging folder name", self.staging);
        }
        for step in &self.steps {
            let names: Vec<&str> = match step {
                Step::Replace { table } => vec![table],
                Step::Add { table, file } => vec![table, file],
                Step::DeltaCommit { table, files, .. } => {
                    std::iter::once(table).chain(files).map(String::as_str).collect()
                }
                Step::Write { .. } | Step::Remove { .. } => {
                    step_paths_are_inside(step)?;
                    continue;
                }
            };
            if let Some(bad) = names.into_iter().find(|name| !is_plain_name(name)) {
                bail!("{bad:?} is not a plain file or folder name");
            }
        }
        Ok(())
    }

    fn carry_out(&self, out: &Path, layout: Layout) -> Result<()> {
        let staging = layout.staging(out, &self.staging);
        for step in &self.steps {
            carry_out(step, out, &staging, layout)?;
        }
        fsops::remove_file(&layout.journal(out)).context("cannot remove the commit journal")?;
        // Committed. What is left in the staging folder is garbage; if it cannot go now, the
        // next run removes it.
        if staging.exists() {
            if let Err(error) = fsops::remove_dir_all(&staging) {
                tracing::warn!("cannot remove {} (the next run will): {error}", staging.display());
            }
        }
        Ok(())
    }
}

/// Refuses a `Write` or `Remove` step whose path could reach outside `OUT` (or is `OUT` itself),
/// and a `Remove` of anything but a folder inside the tool's own: no commit removes a table.
fn step_paths_are_inside(step: &Step) -> Result<()> {
    let (Step::Write { path, .. } | Step::Remove { path, .. }) = step else {
        return Ok(());
    };
    let path = Path::new(path);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || path.as_os_str().is_empty() {
        bail!("{} is not a path inside the output folder", path.display());
    }
    let in_tool_folder = path.starts_with(TOOL_FOLDER) && path.components().count() > 1;
    if let Step::Remove { guard, .. } = step {
        if !in_tool_folder {
            bail!("{} is not a folder inside {TOOL_FOLDER}", path.display());
        }
        let file = Path::new(&guard.file);
        if !file.components().all(|c| matches!(c, Component::Normal(_))) || guard.file.is_empty() {
            bail!("{} is not a file inside {}", guard.file, path.display());
        }
    }
    Ok(())
}

fn carry_out(step: &Step, out: &Path, staging: &Path, layout: Layout) -> Result<()> {
    let moved = |from: &Path, to: &Path| {
        fsops::rename(from, to).with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
    };
    match step {
        Step::Replace { table } => {
            let staged = staging.join(table);
            if !exists(&staged)? {
                return Ok(());
            }
            let target = layout.table(out, table);
            if exists(&target)? {
                let previous = staging.join(".previous");
                fsops::create_dir_all(&previous)?;
                moved(&target, &previous.join(table))?;
            }
            moved(&staged, &target)
        }
        Step::Add { table, file } => {
            let staged = staging.join(table).join(file);
            if !exists(&staged)? {
                return Ok(());
            }
            let folder = layout.table(out, table);
            fsops::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
            moved(&staged, &folder.join(file))
        }
        Step::Write { path, content } => {
            let path = out.join(path);
            if let Some(parent) = path.parent() {
                fsops::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            fsops::write_atomically(&path, content.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))
        }
        Step::Remove { path, guard } => {
            let path = out.join(path);
            if !exists(&path)? || !guard_holds(&path, guard)? {
                return Ok(());
            }
            fsops::remove_dir_all(&path).with_context(|| format!("cannot remove {}", path.display()))
        }
        #[cfg(feature = "delta")]
        Step::DeltaCommit {
            table,
            files,
            replace,
            run,
        } => super::delta::commit_table(&layout.table(out, table), files, *replace, run),
        #[cfg(not(feature = "delta"))]
        Step::DeltaCommit { table, .. } => bail!(
            "the interrupted commit of {} is a Delta Lake commit: finish it with a fhir2table \
             built with the `delta` feature",
            layout.table(out, table).display()
        ),
    }
}

/// Whether a [`Step::Remove`] may remove `folder` now (see [`RemoveGuard`]).
fn guard_holds(folder: &Path, guard: &RemoveGuard) -> Result<bool> {
    match fs::read(folder.join(&guard.file)) {
        Ok(content) if content_digest(&content) == guard.digest => Ok(true),
        Ok(_) => {
            tracing::info!(
                "left {} in place: another run has written it since this commit was planned",
                folder.display()
            );
            Ok(false)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            // Taking the lock tells a live run's folder from one this step began to remove.
            match OutputLock::acquire(folder) {
                Ok(_free) => Ok(true),
                Err(error) if error.is::<super::Locked>() => Ok(false),
                Err(_) => Ok(true),
            }
        }
        Err(error) => {
            Err(anyhow::Error::new(error)
                .context(format!("cannot read {}", folder.join(&guard.file).display())))
        }
    }
}

/// Whether `path` exists; an error other than "not found" is an error, not "absent".
fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(anyhow::Error::new(error).context(format!("cannot look at {}", path.display()))),
    }
}

/// A single, ordinary file or folder name: no separators, not `.` or `..`, no NUL.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1
}

/// Finishes the commit that a killed run left half done, if any, in `layout`; `true` if there
/// was one. Must hold the output's lock.
pub(super) fn recover(out: &Path, layout: Layout) -> Result<bool> {
    let path = layout.journal(out);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!(
                "cannot read the commit journal {} of an interrupted run",
                path.display()
            )))
        }
    };
    let journal: Journal = serde_json::from_slice(&text).with_context(|| {
        format!(
            "the commit journal {} is damaged; the output folder may be between two runs' tables",
            path.display()
        )
    })?;
    if journal.format > JOURNAL_FORMAT {
        bail!(
            "the commit journal {} was written by a newer fhir2table (format {}); finish it with that version",
            path.display(),
            journal.format
        );
    }
    journal
        .check(layout)
        .with_context(|| format!("the commit journal {} names a path outside it", path.display()))?;
    journal.carry_out(out, layout)?;
    Ok(true)
}

/// Removes what dead runs left in `folders`: staging folders and temporary files. Only the holder
/// of the lock creates them, and the caller holds it, so every one is dead.
pub(super) fn remove_debris(folders: &[PathBuf], is_debris: impl Fn(&str) -> bool) -> Result<()> {
    for folder in folders {
        let entries = match fs::read_dir(folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!("cannot list {}", folder.display())))
            }
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_debris(name) {
                continue;
            }
            let path = entry.path();
            let removed = if entry.file_type()?.is_dir() {
                fsops::remove_dir_all(&path)
            } else {
                fsops::remove_file(&path)
            };
            removed.with_context(|| format!("cannot remove {} (left by a killed run)", path.display()))?;
        }
    }
    Ok(())
}

/// Names only this tool gives to temporary things in its folder: staging folders and
/// `*.tmp-<pid>` files.
fn is_debris(name: &str) -> bool {
    name.strip_prefix(STAGING_PREFIX).is_some_and(all_digits) || is_temporary_file(name)
}

/// `name.tmp-<pid>` or `name.<n>.tmp-<pid>`: a file `fsops::write_atomically` had not renamed yet.
pub(super) fn is_temporary_file(name: &str) -> bool {
    name.rsplit_once(".tmp-").is_some_and(|(_, pid)| all_digits(pid))
}

pub(super) fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_folder_are_not_plain() {
        for bad in ["", ".", "..", "../x", "a/b", "a\0b", "/abs", "a\\b"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        for good in [
            "patient",
            "_deleted",
            "part-20240101T000000Z-1.parquet",
            ".previous",
        ] {
            assert!(is_plain_name(good), "{good:?}");
        }
    }

    #[test]
    fn a_journal_naming_a_path_outside_is_refused() {
        let journal = |steps| Journal {
            format: JOURNAL_FORMAT,
            staging: format!("{STAGING_PREFIX}1"),
            steps,
        };
        let write = |path: &str| Step::Write {
            path: path.into(),
            content: String::new(),
        };
        let current = Layout::Current;
        assert!(journal(vec![write(".fhir2table/_state.json")])
            .check(current)
            .is_ok());
        assert!(journal(vec![write("../state.json")]).check(current).is_err());
        assert!(journal(vec![write("/etc/passwd")]).check(current).is_err());
        let replace = Step::Replace { table: "../x".into() };
        assert!(journal(vec![replace]).check(current).is_err());
        let remove = |path: &str| Step::Remove {
            path: path.into(),
            guard: RemoveGuard {
                file: ".fhir2table/_shard.json".into(),
                digest: "0-0".into(),
            },
        };
        let shard = remove(".fhir2table/_shards/0-of-2");
        assert!(journal(vec![shard]).check(current).is_ok());
        for bad in ["patient", ".fhir2table", ".fhir2table/../patient", "/tmp/x", ""] {
            assert!(journal(vec![remove(bad)]).check(current).is_err(), "{bad}");
        }
        let mut bad_staging = journal(Vec::new());
        bad_staging.staging = "..".into();
        assert!(bad_staging.check(current).is_err());
        assert!(
            journal(Vec::new()).check(Layout::Legacy).is_err(),
            "legacy journals name legacy staging"
        );
    }

    #[test]
    fn debris_is_only_what_the_tool_names_so() {
        assert!(is_debris("_staging-123"));
        assert!(is_debris("state.json.tmp-77"));
        assert!(is_debris("state.json.3.tmp-77"));
        assert!(is_debris("_commit.json.tmp-9"));
        assert!(!is_debris("_deleted"));
        assert!(!is_debris("_lock"));
        assert!(!is_debris("notes.tmp-draft"));
        assert!(!is_debris("_staging-"));
    }
}
