//! The object storage backend (`--out s3://bucket/prefix`, also `gs://`, `az://`, `file://`):
//! the layout of a local output folder (`OUT/<table>/part-*.parquet`, `OUT/.fhir2table/...`)
//! kept as objects, in either format. docs/OBJECT-STORAGE.md gives the design; in short:
//!
//! - **Lock**: `OUT/.fhir2table/_lock`, created with a conditional PUT (`If-None-Match: *`), so
//!   of two runs only one creates it; removed when the run ends. A run killed with `kill -9`
//!   leaves it, and the next run is refused (exit 4) with a message saying how to remove it:
//!   unlike a kernel `flock`, nothing tells a dead holder from a slow one.
//! - **Staging**: tables are written as on local disk, into a local scratch folder (the system's
//!   temporary folder), and uploaded at the commit, each file streamed in parts (multipart
//!   upload), into `OUT/.fhir2table/_staging-<run>/`, where no table reader looks. An object
//!   appears whole when its upload completes, or not at all.
//! - **Commit**: a journal object `OUT/.fhir2table/_commit.json` (the commit point) lists the
//!   steps: server-side copies of the staged objects to their tables, deletes of the files an
//!   overwrite replaces, one Delta transaction per table (`--format delta`: the kernel's
//!   put-if-absent of `_delta_log/N.json` makes it atomic), and the state and report writes.
//!   Each step is idempotent; the next run replays a journal a killed run left, then removes the
//!   dead runs' staging objects.
//! - **Not atomic**: object stores have no rename of many objects at once. A Parquet table's new
//!   files appear one by one during the commit, and an overwrite removes the old ones after the
//!   new ones are in, so a reader listing the folder meanwhile can see both. A Delta table
//!   changes all at once, in its transaction.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{ChunkReader, Length};
use serde::{Deserialize, Serialize};

use super::commit::{content_digest, is_plain_name, Output, RemoveGuard, Staging};
use super::delta::{check_remote_schema, commit_to, is_remote_delta_table, remote_live_files, Target};
use super::layout::{is_internal, is_part, LOCK_FILE, STAGING_PREFIX, TOOL_FOLDER};
use super::parquet::read_batches;
use super::store::{Batches, Part, RunInfo, StagedRun, Store, TableWriter};
use super::{Format, Locked, WriteOptions, WrongFormat};
use crate::remote::Location;

/// The commit journal's name below `OUT`.
const JOURNAL: &str = ".fhir2table/_commit.json";

/// Version of the journal's layout; a newer one is refused, not guessed at.
const JOURNAL_FORMAT: u32 = 1;

/// Bytes fetched from a part's end to read its footer in one request (most footers fit).
const FOOTER_GUESS: u64 = 64 << 10;

/// An output on object storage, opened for changing: locked, any commit a killed run left half
/// done finished, and dead runs' staging objects removed.
pub(super) struct ObjectOutput {
    root: Location,
    format: Format,
    /// The local scratch folder, itself opened as a local output: its staging folder is where
    /// the run's tables are written before they are uploaded. Dropped (unlocked) before the
    /// folder is removed, which the next field does.
    scratch: Output,
    scratch_folder: ScratchFolder,
    _lock: Lock,
    recovered: bool,
}

/// The lock object; removed when the run ends (dropped).
struct Lock {
    root: Location,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Err(error) = self.root.delete(&lock_name()) {
            tracing::error!(
                "cannot remove the lock {} (remove it by hand): {error:#}",
                self.root.display(&lock_name())
            );
        }
    }
}

fn lock_name() -> String {
    format!("{TOOL_FOLDER}/{LOCK_FILE}")
}

/// A local scratch folder, removed when dropped.
struct ScratchFolder(PathBuf);

impl Drop for ScratchFolder {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Opens the output at `url` (see [`super::open`]).
pub(super) fn open(url: &str, format: Format) -> Result<Box<dyn Store>> {
    let root = Location::parse(url).map_err(|error| crate::UsageError(format!("--out {url}: {error:#}")))?;
    let lock = take_lock(&root)?;
    let folder = std::env::temp_dir().join(format!(
        "fhir2table-{}-{}",
        std::process::id(),
        super::run_stamp(std::time::SystemTime::now())
    ));
    fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create the scratch folder {}", folder.display()))?;
    let scratch_folder = ScratchFolder(folder);
    let mut output = ObjectOutput {
        root,
        format,
        scratch: Output::open(&scratch_folder.0)?,
        scratch_folder,
        _lock: lock,
        recovered: false,
    };
    output.recovered = output.recover()?;
    output.remove_debris()?;
    output.check_format()?;
    Ok(Box::new(output))
}

/// Creates the lock object, or fails with [`Locked`] naming the holder.
fn take_lock(root: &Location) -> Result<Lock> {
    let started = crate::fhir::datetime::format_utc(std::time::SystemTime::now());
    let text = format!(
        "pid={}\nhost={}\nstarted={started}\n",
        std::process::id(),
        super::lock::host_name()
    );
    if root.put_new(&lock_name(), text.as_bytes())? {
        return Ok(Lock { root: root.clone() });
    }
    let holder = root
        .get(&lock_name())?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let field = |name: &str| super::lock::holder_field(&holder, name);
    Err(Locked(format!(
        "{} is in use by another fhir2table run (pid {} on {}, since {}); if that run is dead \
         (killed), remove {} and run again",
        root.display(""),
        field("pid"),
        field("host"),
        field("started"),
        root.display(&lock_name())
    ))
    .into())
}

/// One idempotent step of a commit on object storage; names are relative to `OUT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
enum RemoteStep {
    /// Copy the staged object `from` to `to` (skipped once the staging objects are gone).
    Copy { from: String, to: String },
    /// Delete the object `path` (a file an overwrite replaces).
    Delete { path: String },
    /// One Delta transaction on the table `OUT/<table>` adding `files` (see `delta.rs`).
    DeltaCommit {
        table: String,
        files: Vec<String>,
        replace: bool,
        run: RunInfo,
    },
    /// Write the object `path` with this content (the state, the report).
    Write { path: String, content: String },
    /// Delete every object below `path` (a shard folder the commit took in) but its lock, while
    /// `guard` holds (see `commit::RemoveGuard`; with the guard file gone, while no lock object
    /// says a run is converting there). The lock goes when its holder lets it go.
    Remove { path: String, guard: RemoveGuard },
}

/// What a commit does, written down (as the object [`JOURNAL`]) before doing it.
#[derive(Debug, Serialize, Deserialize)]
struct RemoteJournal {
    format: u32,
    /// The staging prefix's name inside `OUT/.fhir2table/`.
    staging: String,
    steps: Vec<RemoteStep>,
}

/// A `/`-separated name inside `OUT`: every part plain (no `..`, no empty part).
fn is_inside(name: &str) -> bool {
    !name.is_empty() && name.split('/').all(is_plain_name)
}

impl RemoteJournal {
    /// Refuses any name that could reach outside `OUT`.
    fn check(&self) -> Result<()> {
        if !self.staging.starts_with(STAGING_PREFIX) || !is_plain_name(&self.staging) {
            bail!("{:?} is not a staging name", self.staging);
        }
        for step in &self.steps {
            let names: Vec<&String> = match step {
                RemoteStep::Copy { from, to } => vec![from, to],
                RemoteStep::Delete { path } | RemoteStep::Write { path, .. } => vec![path],
                RemoteStep::Remove { path, guard } => {
                    if !path.starts_with(&format!("{TOOL_FOLDER}/")) || !is_inside(&guard.file) {
                        bail!("{path:?} is not a folder inside {TOOL_FOLDER}");
                    }
                    vec![path]
                }
                RemoteStep::DeltaCommit { table, files, .. } => {
                    if let Some(bad) = std::iter::once(table).chain(files).find(|n| !is_plain_name(n)) {
                        bail!("{bad:?} is not a plain name");
                    }
                    continue;
                }
            };
            if let Some(bad) = names.into_iter().find(|name| !is_inside(name)) {
                bail!("{bad:?} is not a name inside the output");
            }
        }
        Ok(())
    }

    /// Carries out every step, then removes the journal and the staging objects.
    fn carry_out(
        &self,
        root: &Location,
        local_copy: &dyn Fn(&str, &str) -> Option<PathBuf>,
        scratch: &Path,
    ) -> Result<()> {
        for step in &self.steps {
            match step {
                RemoteStep::Copy { from, to } => {
                    if root.head(from)?.is_some() {
                        root.copy(from, to)?;
                    }
                }
                RemoteStep::Delete { path } => root.delete(path)?,
                RemoteStep::Remove { path, guard } => {
                    let lock = format!("{path}/{TOOL_FOLDER}/{LOCK_FILE}");
                    let holds = match root.get(&format!("{path}/{}", guard.file))? {
                        Some(content) => content_digest(&content) == guard.digest,
                        None => root.head(&lock)?.is_none(),
                    };
                    if holds {
                        for object in root.list(path)? {
                            if object.relative != lock {
                                root.delete(&object.relative)?;
                            }
                        }
                    }
                }
                RemoteStep::DeltaCommit {
                    table,
                    files,
                    replace,
                    run,
                } => {
                    let location = root.child(table);
                    let copy = |file: &str| local_copy(table, file);
                    let target = Target::Remote {
                        table: &location,
                        local_copy: &copy,
                        scratch,
                    };
                    commit_to(&target, files, *replace, run)?;
                }
                RemoteStep::Write { path, content } => root.put(path, content.as_bytes())?,
            }
        }
        root.delete(JOURNAL).context("cannot remove the commit journal")?;
        // Committed; the staging objects are garbage (the next run removes what is left).
        if let Err(error) = root.delete_all(&format!("{TOOL_FOLDER}/{}", self.staging)) {
            tracing::warn!("cannot remove the staging objects (the next run will): {error:#}");
        }
        Ok(())
    }
}

/// Where a table's files are, relative to `OUT`.
fn folder(table: &str) -> String {
    match is_internal(table) {
        true => format!("{TOOL_FOLDER}/{table}"),
        false => table.to_owned(),
    }
}

/// Whether a table of an output of `format` is a Delta table (the tool's own never are).
fn is_delta(format: Format, table: &str) -> bool {
    format == Format::Delta && !is_internal(table)
}

/// The part files right inside a table's folder, sorted (oldest first).
fn parquet_parts(root: &Location, table: &str) -> Result<Vec<String>> {
    let folder = folder(table);
    let mut names: Vec<String> = root
        .list(&folder)?
        .into_iter()
        .filter_map(|object| {
            let name = object.relative.strip_prefix(&format!("{folder}/"))?.to_owned();
            (!name.contains('/') && is_part(table, &name)).then_some(name)
        })
        .collect();
    names.sort();
    Ok(names)
}

impl ObjectOutput {
    fn is_delta(&self, table: &str) -> bool {
        is_delta(self.format, table)
    }

    fn parquet_parts(&self, table: &str) -> Result<Vec<String>> {
        parquet_parts(&self.root, table)
    }

    /// Where a part is, relative to `OUT`.
    fn part_name(&self, part: &Part) -> String {
        format!("{}/{}", folder(&part.table), part.file.to_string_lossy())
    }

    /// Finishes the commit a killed run left, if any; `true` if there was one.
    fn recover(&self) -> Result<bool> {
        let Some(text) = self.root.get(JOURNAL)? else {
            return Ok(false);
        };
        let journal: RemoteJournal = serde_json::from_slice(&text).with_context(|| {
            format!(
                "the commit journal {} is damaged; the output may be between two runs' tables",
                self.root.display(JOURNAL)
            )
        })?;
        if journal.format > JOURNAL_FORMAT {
            bail!(
                "the commit journal {} was written by a newer fhir2table (format {}); finish it with that version",
                self.root.display(JOURNAL),
                journal.format
            );
        }
        journal.check().with_context(|| {
            format!(
                "the commit journal {} names a path outside it",
                self.root.display(JOURNAL)
            )
        })?;
        journal.carry_out(&self.root, &|_, _| None, &self.scratch_folder.0)?;
        Ok(true)
    }

    /// Removes the staging objects of dead runs (only the lock's holder writes them).
    fn remove_debris(&self) -> Result<()> {
        for name in self.root.folders(TOOL_FOLDER)? {
            if name.starts_with(STAGING_PREFIX) {
                self.root.delete_all(&format!("{TOOL_FOLDER}/{name}"))?;
            }
        }
        Ok(())
    }

    /// Refuses tables of the other format (see [`super::open`]).
    fn check_format(&self) -> Result<()> {
        for table in self.tables()? {
            let delta = is_remote_delta_table(&self.root.child(&table))?;
            let (found, wanted) = match (self.format, delta) {
                (Format::Parquet, true) => ("a Delta table", "--format delta"),
                (Format::Delta, false) if self.parquet_parts(&table)?.is_empty() => continue,
                (Format::Delta, false) => ("a folder of Parquet files", "--format parquet"),
                _ => continue,
            };
            return Err(WrongFormat(format!(
                "{} is {found}: use {wanted} for this output, or another --out",
                self.root.display(&table)
            ))
            .into());
        }
        Ok(())
    }
}

impl Store for ObjectOutput {
    fn recovered(&self) -> bool {
        self.recovered
    }

    fn location(&self, name: &str) -> String {
        self.root.display(&folder(name))
    }

    fn tables(&self) -> Result<Vec<String>> {
        Ok(self
            .root
            .folders("")?
            .into_iter()
            .filter(|name| !name.starts_with('.') && !name.starts_with('_'))
            .collect())
    }

    fn exists(&self, table: &str) -> bool {
        match self.is_delta(table) {
            true => is_remote_delta_table(&self.root.child(table)).unwrap_or(false),
            false => self.root.child(&folder(table)).has_objects().unwrap_or(false),
        }
    }

    fn is_empty(&self, table: &str) -> bool {
        match self.is_delta(table) {
            true => self.parts(table).map_or(true, |parts| parts.is_empty()),
            false => !self.root.child(&folder(table)).has_objects().unwrap_or(false),
        }
    }

    fn parts(&self, table: &str) -> Result<Vec<Part>> {
        let names = match self.is_delta(table) {
            true => remote_live_files(&self.root.child(table))?,
            false => self.parquet_parts(table)?,
        };
        Ok(names
            .into_iter()
            .map(|file| Part {
                table: table.to_owned(),
                file: file.into(),
            })
            .collect())
    }

    /// Read from the file's footer alone, with range requests.
    fn schema(&self, part: &Part) -> Result<SchemaRef> {
        let name = self.part_name(part);
        let tail = Tail::fetch(&self.root, &name)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(tail)
            .with_context(|| format!("{} is not a readable Parquet file", self.root.display(&name)))?;
        Ok(builder.schema().clone())
    }

    /// Downloads the part into the scratch folder and reads it from there (`compact`).
    fn read(&self, part: &Part) -> Result<Batches> {
        let name = self.part_name(part);
        let local = self
            .scratch_folder
            .0
            .join(format!("read-{}", part.file.to_string_lossy()));
        let mut reader = self.root.reader(&name, None)?;
        crate::fsops::write_atomically_from(&local, &mut reader)
            .with_context(|| format!("cannot download {}", self.root.display(&name)))?;
        let batches = read_batches(&local);
        // The open file stays readable; its name is not needed any more.
        let _ = fs::remove_file(&local);
        batches
    }

    /// Downloaded into the scratch folder, which goes when the output is dropped.
    fn local_file(&self, part: &Part) -> Result<PathBuf> {
        let name = self.part_name(part);
        let local =
            self.scratch_folder
                .0
                .join(format!("copy-{}-{}", part.table, part.file.to_string_lossy()));
        let mut reader = self.root.reader(&name, None)?;
        crate::fsops::write_atomically_from(&local, &mut reader)
            .with_context(|| format!("cannot download {}", self.root.display(&name)))?;
        Ok(local)
    }

    fn stage(&self, options: WriteOptions) -> Result<Box<dyn StagedRun>> {
        Ok(Box::new(ObjectStaging {
            local: self.scratch.create_staging(options)?,
            root: self.root.clone(),
            format: self.format,
            scratch: self.scratch_folder.0.clone(),
            removed: Vec::new(),
        }))
    }

    fn write_file(&self, name: &str, content: &[u8]) -> Result<()> {
        self.root.put(name, content)
    }
}

/// A run's changes to an output on object storage: written into the local staging folder,
/// uploaded and committed by [`StagedRun::commit`].
struct ObjectStaging {
    local: Staging,
    root: Location,
    format: Format,
    scratch: PathBuf,
    /// The `Remove` steps the commit ends with: the shard folders it took in.
    removed: Vec<RemoteStep>,
}

impl StagedRun for ObjectStaging {
    fn create(&self, table: &str, file: &str, schema: SchemaRef) -> Result<Box<dyn TableWriter>> {
        self.local.create(table, file, schema)
    }

    fn rewrite_marked_strings(
        &self,
        table: &str,
        file: &str,
        marker: char,
        replace: &mut dyn FnMut(&str, &str) -> Option<String>,
    ) -> Result<()> {
        self.local.rewrite_marked_strings(table, file, marker, replace)
    }

    /// The file is staged locally like the run's own and uploaded with them at the commit.
    fn adopt(&self, table: &str, file: &str, from: &Path) -> Result<()> {
        self.local.adopt(table, file, from)
    }

    fn remove_with_commit(&mut self, path: &str, guard: &str) -> Result<()> {
        if !is_inside(path) || !path.starts_with(&format!("{TOOL_FOLDER}/")) || !is_inside(guard) {
            bail!("{path:?} is not a folder inside {TOOL_FOLDER}");
        }
        let file = format!("{path}/{guard}");
        let content = self
            .root
            .get(&file)?
            .ok_or_else(|| anyhow!("{} is missing", self.root.display(&file)))?;
        self.removed.push(RemoteStep::Remove {
            path: path.to_owned(),
            guard: RemoveGuard {
                file: guard.to_owned(),
                digest: content_digest(&content),
            },
        });
        Ok(())
    }

    /// Uploads every staged file into the staging prefix, writes the journal (the commit point)
    /// and carries it out. Before the journal, a failure leaves the output as it was (the
    /// uploaded staging objects are removed by the next run).
    fn commit(
        self: Box<Self>,
        tables: &[&str],
        replace: bool,
        files: Vec<(&str, String)>,
        run: &RunInfo,
    ) -> Result<()> {
        let root = &self.root;
        // Files uploaded to their tables' folders before the commit point (Delta's).
        let mut uploaded = Vec::new();
        let planned = self.upload_and_plan(tables, replace, files, run, &mut uploaded);
        let journal = match planned {
            Ok(journal) => journal,
            Err(error) => {
                for name in &uploaded {
                    let _ = root.delete(name);
                }
                return Err(error);
            }
        };
        // The commit point. Should this fail after all (a timeout after the object landed), the
        // uploaded files stay for the next run's replay of the journal.
        root.put(JOURNAL, &serde_json::to_vec(&journal)?)
            .context("cannot write the commit journal")?;
        let local = &self.local;
        let local_copy = |table: &str, file: &str| {
            let path = local.table_dir(table).ok()?.join(file);
            path.exists().then_some(path)
        };
        journal.carry_out(root, &local_copy, &self.scratch)
    }
}

impl ObjectStaging {
    /// Uploads the staged files (Parquet tables' into the staging prefix, Delta tables' into
    /// their folders, each name pushed to `uploaded` first) and plans the journal to write.
    fn upload_and_plan(
        &self,
        tables: &[&str],
        replace: bool,
        files: Vec<(&str, String)>,
        run: &RunInfo,
        uploaded: &mut Vec<String>,
    ) -> Result<RemoteJournal> {
        let root = &self.root;
        let staging = format!("{STAGING_PREFIX}{}-{}", run.run_id, std::process::id());
        let mut copies = Vec::new();
        let mut deletes = Vec::new();
        let mut transactions = Vec::new();
        for &table in tables {
            let staged_folder = self.local.table_dir(table)?;
            let mut staged: Vec<String> = fs::read_dir(&staged_folder)
                .with_context(|| format!("cannot list {}", staged_folder.display()))?
                .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<_>>()?;
            staged.sort();
            if is_delta(self.format, table) {
                let paths: Vec<PathBuf> = staged.iter().map(|file| staged_folder.join(file)).collect();
                check_remote_schema(&root.child(table), &paths)?;
            }
            for file in &staged {
                let to = format!("{}/{file}", folder(table));
                if is_delta(self.format, table) {
                    // Delta readers see only what the log names: the file goes straight to its
                    // place, with no copy (removed again if the run fails before its commit).
                    uploaded.push(to.clone());
                    root.upload(&to, &staged_folder.join(file))?;
                    continue;
                }
                let from = format!("{TOOL_FOLDER}/{staging}/{table}/{file}");
                root.upload(&from, &staged_folder.join(file))?;
                copies.push(RemoteStep::Copy { from, to });
            }
            if is_delta(self.format, table) {
                transactions.push(RemoteStep::DeltaCommit {
                    table: table.to_owned(),
                    files: staged,
                    replace,
                    run: run.clone(),
                });
            } else if replace {
                for old in parquet_parts(root, table)? {
                    let path = format!("{}/{old}", folder(table));
                    deletes.push(RemoteStep::Delete { path });
                }
            }
        }
        // New files in before old ones go; the Delta transactions once their files are in;
        // the state and report last, as they describe the tables.
        let mut steps = copies;
        steps.extend(deletes);
        steps.extend(transactions);
        steps.extend(files.into_iter().map(|(path, content)| RemoteStep::Write {
            path: path.to_owned(),
            content,
        }));
        steps.extend(self.removed.iter().cloned());
        let journal = RemoteJournal {
            format: JOURNAL_FORMAT,
            staging,
            steps,
        };
        journal.check()?;
        Ok(journal)
    }
}

/// The end of a Parquet file, fetched with range requests, as a reader the parquet crate reads
/// the footer from (it never asks for bytes before the footer unless told to read rows).
struct Tail {
    size: u64,
    start: u64,
    bytes: bytes::Bytes,
}

impl Tail {
    fn fetch(root: &Location, name: &str) -> Result<Tail> {
        let size = root
            .head(name)?
            .ok_or_else(|| anyhow!("{} is missing", root.display(name)))?
            .size;
        if size < 8 {
            bail!("{} is not a Parquet file (too short)", root.display(name));
        }
        let start = size.saturating_sub(FOOTER_GUESS);
        let mut bytes = root.get_range(name, start..size)?;
        let footer = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into()?) as u64;
        let needed = size.saturating_sub(footer + 8);
        if needed < start {
            let mut more = root.get_range(name, needed..start)?;
            more.extend_from_slice(&bytes);
            bytes = more;
            return Ok(Tail {
                size,
                start: needed,
                bytes: bytes.into(),
            });
        }
        Ok(Tail {
            size,
            start,
            bytes: bytes.into(),
        })
    }
}

impl Length for Tail {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for Tail {
    type T = bytes::buf::Reader<bytes::Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        Ok(self.get_bytes(start, (self.size - start) as usize)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let end = start + length as u64;
        if start < self.start || end > self.size {
            return Err(parquet::errors::ParquetError::General(format!(
                "bytes {start}..{end} lie outside the fetched footer"
            )));
        }
        let offset = (start - self.start) as usize;
        Ok(self.bytes.slice(offset..offset + length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_names_stay_inside_the_output() {
        for name in ["patient/part-1.parquet", ".fhir2table/_run.json", "a"] {
            assert!(is_inside(name), "{name}");
        }
        for name in ["../x", "a/../../b", "/abs", "a//b", "", "a/./b"] {
            assert!(!is_inside(name), "{name}");
        }
        let journal = RemoteJournal {
            format: JOURNAL_FORMAT,
            staging: "_staging-1".into(),
            steps: vec![RemoteStep::Delete {
                path: "../other/x".into(),
            }],
        };
        assert!(journal.check().is_err());
    }
}
