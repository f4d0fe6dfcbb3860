//! The Delta Lake backend (`--format delta`): each table `OUT/<table>/` is a Delta table whose
//! data files are the Parquet files of `parquet.rs`, made visible by Delta transactions that the
//! Delta project's kernel writes (`delta_kernel`, pinned; see docs/DELTA.md). Every kernel call of
//! the tool is in this module, so a kernel upgrade touches this file alone.
//!
//! It is the local backend with another last step. The lock, the staging folder and the commit
//! journal are `commit.rs`'s: a run writes its files into the staging folder; its commit journal
//! moves them into the table folders (where Delta readers still do not see them, as only the log
//! names files) and then holds one `DeltaCommit` step per table, each one Delta transaction
//! that adds the run's files (and, to replace a table, removes every file it had), before the
//! incremental state and the run report are written.
//!
//! What is atomic: each table's transaction, for every Delta reader. What is not: the tables
//! among themselves. While a commit is carried out, a reader can see one table at the run's
//! version and another still at the version before; a run killed there leaves it so until the
//! next run opens the output and finishes the journal. Every transaction records the run's
//! sequence as its application transaction version (`txn`, app id [`APP_ID`]), so a transaction
//! replayed after a crash sees that it already landed and is not committed twice.
//!
//! The tool's own tables (the tombstones) stay Parquet parts in `OUT/.fhir2table/`, as in the
//! local backend: no reader queries them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use anyhow::{anyhow, bail, Context, Result};
use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_conversion::TryFromArrow;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::object_store::local::LocalFileSystem;
use delta_kernel::schema::{SchemaRef as DeltaSchemaRef, StructType};
use delta_kernel::transaction::create_table::create_table;
use delta_kernel::transaction::{CommitResult, Transaction, UpdateTableOperation};
use delta_kernel::{Engine, EngineData, FileMeta, Snapshot};
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use delta_kernel_default_engine::parquet::DataFileMetadata;
use delta_kernel_default_engine::stats::FileStatsAccumulator;
use delta_kernel_default_engine::{build_add_file_metadata, DefaultEngineBuilder};
use url::Url;

use super::commit::{is_plain_name, Output, Staging, Step};
use super::layout::{is_delta_table, is_internal, table_folder, DELTA_LOG};
use super::parquet::{read_batches, schema_of};
use super::store::{Batches, Part, RunInfo, StagedRun, Store, TableWriter};
use super::WriteOptions;
use crate::fsops;

/// The application id of fhir2table's transactions in a Delta log (see the module doc).
const APP_ID: &str = "fhir2table";

/// How often a table's transaction is tried when another writer commits first: each try starts
/// from the table's newest version.
const COMMIT_ATTEMPTS: usize = 3;

/// An output folder of Delta tables: the local [`Output`] (lock, journal, the tool's own files)
/// whose tables are read through their Delta logs.
pub(super) struct DeltaOutput {
    local: Output,
}

impl DeltaOutput {
    /// The Delta view of an opened (locked and recovered) output folder, with what killed
    /// commits left in the tables' logs removed.
    pub(super) fn new(local: Output) -> Result<DeltaOutput> {
        remove_interrupted_log_writes(&local)?;
        Ok(DeltaOutput { local })
    }

    fn folder(&self, table: &str) -> PathBuf {
        table_folder(&self.local.root, table)
    }
}

/// Removes the temporary files of log writes a killed process left. The kernel writes commit `N`
/// through object_store's local store, which writes `N.json#<k>`, links it to `N.json` (failing
/// if that exists: the atomic commit) and then removes `N.json#<k>`; a kill in between leaves
/// the temporary file. Delta readers ignore it, so this is tidiness, and it is safe because the
/// caller holds the output's lock and no other writer shares an output's tables.
fn remove_interrupted_log_writes(output: &Output) -> Result<()> {
    for table in output.tables()? {
        let log = table_folder(&output.root, &table).join(DELTA_LOG);
        let Ok(entries) = fs::read_dir(&log) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(is_interrupted_log_write) {
                let path = entry.path();
                fsops::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// `00000000000000000003.json#17`: a log file's name (a commit, a checkpoint, the checkpoint
/// hint), `#`, and object_store's attempt number.
fn is_interrupted_log_write(name: &str) -> bool {
    let Some((file, attempt)) = name.rsplit_once('#') else {
        return false;
    };
    let version = file.split('.').next().unwrap_or_default();
    let log_file =
        file == "_last_checkpoint" || (version.len() == 20 && version.bytes().all(|b| b.is_ascii_digit()));
    !attempt.is_empty() && attempt.bytes().all(|b| b.is_ascii_digit()) && log_file
}

impl Store for DeltaOutput {
    fn recovered(&self) -> bool {
        self.local.recovered()
    }

    fn location(&self, name: &str) -> String {
        self.local.location(name)
    }

    fn tables(&self) -> Result<Vec<String>> {
        self.local.tables()
    }

    fn exists(&self, table: &str) -> bool {
        match is_internal(table) {
            true => self.local.exists(table),
            false => is_delta_table(&self.folder(table)),
        }
    }

    /// A Delta table without live files is empty, whatever its history holds.
    fn is_empty(&self, table: &str) -> bool {
        match is_internal(table) {
            true => self.local.is_empty(table),
            false => self.parts(table).map_or(true, |parts| parts.is_empty()),
        }
    }

    /// The files of the table's newest version, by name (oldest first); files that earlier
    /// versions removed stay in the folder for time travel and are not parts.
    fn parts(&self, table: &str) -> Result<Vec<Part>> {
        if is_internal(table) {
            return self.local.parts(table);
        }
        let folder = self.folder(table);
        if !is_delta_table(&folder) {
            return Ok(Vec::new());
        }
        let engine = engine();
        let snapshot = snapshot(&engine, &folder)?;
        let mut files = live_files(&engine, &snapshot)
            .with_context(|| format!("cannot list the files of the Delta table {}", folder.display()))?;
        files.sort();
        Ok(files
            .into_iter()
            .map(|file| Part {
                table: table.to_owned(),
                file: file.into(),
            })
            .collect())
    }

    fn schema(&self, part: &Part) -> Result<SchemaRef> {
        schema_of(&self.folder(&part.table).join(&part.file))
    }

    fn read(&self, part: &Part) -> Result<Batches> {
        read_batches(&self.folder(&part.table).join(&part.file))
    }

    fn local_file(&self, part: &Part) -> Result<PathBuf> {
        Ok(self.folder(&part.table).join(&part.file))
    }

    fn stage(&self, options: WriteOptions) -> Result<Box<dyn StagedRun>> {
        Ok(Box::new(DeltaStaging {
            local: self.local.create_staging(options)?,
            root: self.local.root.clone(),
        }))
    }

    fn write_file(&self, name: &str, content: &[u8]) -> Result<()> {
        self.local.write_file(name, content)
    }
}

/// A run's changes to an output of Delta tables: files written into the local staging folder,
/// committed by the journal's `Add` and `DeltaCommit` steps.
struct DeltaStaging {
    local: Staging,
    root: PathBuf,
}

impl StagedRun for DeltaStaging {
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

    fn adopt(&self, table: &str, file: &str, from: &std::path::Path) -> Result<()> {
        self.local.adopt(table, file, from)
    }

    fn remove_with_commit(&mut self, path: &str, guard: &str) -> Result<()> {
        self.local.remove_with_commit(path, guard)
    }

    /// Journals, for each Delta table, the moves of its staged files into its folder and then
    /// its transaction; the tool's own tables are committed as the local backend does. Refuses
    /// (before the commit point, so the output stays as it was) files whose schema is not the
    /// table's: kernel 0.30 cannot change a table's schema in a write.
    fn commit(
        self: Box<Self>,
        tables: &[&str],
        replace: bool,
        files: Vec<(&str, String)>,
        run: &RunInfo,
    ) -> Result<()> {
        let mut steps = Vec::new();
        for &table in tables {
            if is_internal(table) {
                steps.extend(self.local.plan(&[table], replace)?);
                continue;
            }
            let moves = self.local.plan(&[table], false)?;
            let staged: Vec<String> = moves
                .iter()
                .filter_map(|step| match step {
                    Step::Add { file, .. } => Some(file.clone()),
                    _ => None,
                })
                .collect();
            self.check_schema(table, &staged)?;
            steps.extend(moves);
            steps.push(Step::DeltaCommit {
                table: table.to_owned(),
                files: staged,
                replace,
                run: run.clone(),
            });
        }
        steps.extend(files.into_iter().map(|(path, content)| Step::Write {
            path: path.to_owned(),
            content,
        }));
        self.local.commit_steps(steps)
    }
}

impl DeltaStaging {
    /// Checks that every staged file of `table` has the Delta schema of the existing table.
    fn check_schema(&self, table: &str, staged: &[String]) -> Result<()> {
        let folder = table_folder(&self.root, table);
        if !is_delta_table(&folder) {
            return Ok(());
        }
        let engine = engine();
        let existing = snapshot(&engine, &folder)?.schema();
        for file in staged {
            let path = self.local.table_dir(table)?.join(file);
            if delta_schema(schema_of(&path)?.as_ref())? != *existing {
                bail!(
                    "cannot write {}: the Delta table's schema differs from the new rows' and \
                     fhir2table cannot change a Delta table's schema yet; move the table away or \
                     use another --out",
                    folder.display()
                );
            }
        }
        Ok(())
    }
}

/// The journal's `DeltaCommit` step: makes `files` (already in the table folder `folder`)
/// visible in one Delta transaction recording `run`, creating the table if there is none and,
/// with `replace`, removing every file its newest version has. Does nothing when the log already
/// holds the run's transaction (a replay after a crash). Tries again from the newest version
/// when another writer committed first.
pub(super) fn commit_table(folder: &Path, files: &[String], replace: bool, run: &RunInfo) -> Result<()> {
    // Absolute, as the files' URLs must lie under the table's.
    let folder = &std::path::absolute(folder)?;
    commit_to(&Target::Local(folder), files, replace, run)
}

/// Where a Delta table is: a local folder, or a location on object storage (`object.rs`),
/// whose files' statistics are read from a local copy of each (the staged file, or a download
/// when a commit is replayed).
pub(super) enum Target<'t> {
    Local(&'t Path),
    #[cfg(feature = "cloud")]
    Remote {
        table: &'t crate::remote::Location,
        /// The local copy of a file of the table, when the run still has it.
        local_copy: &'t dyn Fn(&str) -> Option<PathBuf>,
        /// Where a file is downloaded to when there is no local copy.
        scratch: &'t Path,
    },
}

/// A file to add, as the kernel needs it: where to read its rows (for statistics) and where
/// the table's log points at it.
struct FileToAdd {
    local: PathBuf,
    location: Url,
    modified_millis: i64,
    size: u64,
    /// A downloaded copy, removed once read.
    downloaded: bool,
}

impl Target<'_> {
    fn url(&self) -> Result<Url> {
        match self {
            Target::Local(folder) => table_url(folder),
            #[cfg(feature = "cloud")]
            Target::Remote { table, .. } => table.folder_url(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Local(folder) => folder.display().to_string(),
            #[cfg(feature = "cloud")]
            Target::Remote { table, .. } => table.display(""),
        }
    }

    fn is_table(&self) -> Result<bool> {
        match self {
            Target::Local(folder) => Ok(is_delta_table(folder)),
            #[cfg(feature = "cloud")]
            Target::Remote { table, .. } => is_remote_delta_table(table),
        }
    }

    fn engine(&self) -> Box<dyn Engine> {
        match self {
            Target::Local(_) => Box::new(engine()),
            #[cfg(feature = "cloud")]
            Target::Remote { table, .. } => Box::new(remote_engine(table)),
        }
    }

    fn file(&self, name: &str) -> Result<FileToAdd> {
        match self {
            Target::Local(folder) => {
                let path = folder.join(name);
                let metadata =
                    fs::metadata(&path).with_context(|| format!("cannot look at {}", path.display()))?;
                let modified = metadata.modified()?.duration_since(UNIX_EPOCH)?.as_millis();
                let location = Url::from_file_path(&path)
                    .map_err(|()| anyhow!("{} is not an absolute path", path.display()))?;
                Ok(FileToAdd {
                    local: path,
                    location,
                    modified_millis: i64::try_from(modified)?,
                    size: metadata.len(),
                    downloaded: false,
                })
            }
            #[cfg(feature = "cloud")]
            Target::Remote {
                table,
                local_copy,
                scratch,
            } => {
                let info = table
                    .head(name)?
                    .ok_or_else(|| anyhow!("{} is missing", table.display(name)))?;
                let (local, downloaded) = match local_copy(name) {
                    Some(path) => (path, false),
                    None => {
                        let path = scratch.join(name);
                        let mut reader = table.reader(name, None)?;
                        fsops::write_atomically_from(&path, &mut reader)
                            .with_context(|| format!("cannot download {}", table.display(name)))?;
                        (path, true)
                    }
                };
                Ok(FileToAdd {
                    local,
                    location: self.url()?.join(name)?,
                    modified_millis: i64::try_from(info.modified / 1_000_000)?,
                    size: info.size,
                    downloaded,
                })
            }
        }
    }

    /// Makes a landed commit durable where the store does not (the local folder).
    fn landed(&self, version: u64) -> Result<()> {
        match self {
            Target::Local(folder) => sync_commit(folder, version),
            #[cfg(feature = "cloud")]
            Target::Remote { .. } => Ok(()),
        }
    }
}

/// [`commit_table`] on any [`Target`].
pub(super) fn commit_to(target: &Target<'_>, files: &[String], replace: bool, run: &RunInfo) -> Result<()> {
    let engine = target.engine();
    let engine = engine.as_ref();
    for attempt in 1..=COMMIT_ATTEMPTS {
        let committed = if target.is_table()? {
            let snapshot = snapshot_at(engine, target)?;
            if snapshot.get_app_id_version(APP_ID, engine)? == Some(run.sequence) {
                return Ok(());
            }
            update(engine, snapshot, target, files, replace, run)?
        } else if files.is_empty() {
            return Ok(());
        } else {
            create(engine, target, files, run)?
        };
        if committed {
            return Ok(());
        }
        tracing::warn!(
            "another writer committed to {} first (try {attempt} of {COMMIT_ATTEMPTS}); trying again",
            target.describe()
        );
    }
    bail!(
        "cannot commit to the Delta table {}: other writers kept committing first; the next \
         fhir2table run on this output tries again",
        target.describe()
    )
}

/// Creates the Delta table at `target` with the schema of its first file, holding `files`.
/// `false` when another writer created it first.
fn create(engine: &dyn Engine, target: &Target<'_>, files: &[String], run: &RunInfo) -> Result<bool> {
    let first = target.file(&files[0])?;
    let schema = schema_of(&first.local);
    first.done();
    let schema = Arc::new(delta_schema(schema?.as_ref())?);
    let (info, info_schema) = commit_info(run)?;
    let mut transaction = create_table(target.url()?.as_str(), schema, engine_info(), true)
        .with_commit_info(info, info_schema)
        .with_transaction_id(APP_ID, run.sequence)
        .build(engine, Box::new(FileSystemCommitter::new()))
        .with_context(|| format!("cannot create the Delta table {}", target.describe()))?;
    add_files(&mut transaction, target, files)?;
    finish(transaction.commit(engine), target)
}

/// Adds `files` to the table `snapshot` is a version of, first removing all its files when
/// `replace`. `false` when another writer committed first.
fn update(
    engine: &dyn Engine,
    snapshot: Arc<Snapshot>,
    target: &Target<'_>,
    files: &[String],
    replace: bool,
    run: &RunInfo,
) -> Result<bool> {
    let operation = match run.command.as_str() {
        "compact" => UpdateTableOperation::Custom("COMPACT".into()),
        _ => UpdateTableOperation::Write,
    };
    let mode = if replace { "Overwrite" } else { "Append" };
    let (info, info_schema) = commit_info(run)?;
    let mut transaction = snapshot
        .clone()
        .update_table(operation, engine_info(), true)
        .with_commit_info(info, info_schema)
        .with_transaction_id(APP_ID, run.sequence)
        .with_operation_parameters([("mode", Some(mode))])
        .build(engine, Box::new(FileSystemCommitter::new()))
        .with_context(|| format!("cannot start a transaction on {}", target.describe()))?;
    if replace {
        let scan = snapshot.scan_builder().build()?;
        for files in scan.scan_metadata(engine)? {
            transaction.remove_files(files?.scan_files);
        }
    }
    add_files(&mut transaction, target, files)?;
    finish(transaction.commit(engine), target)
}

/// `true` for a commit that landed (made durable: see [`sync_commit`]), `false` for one another
/// writer beat; an error otherwise.
fn finish<S>(result: delta_kernel::KernelResult<CommitResult<S>>, target: &Target<'_>) -> Result<bool> {
    match result.with_context(|| format!("cannot commit to the Delta table {}", target.describe()))? {
        CommitResult::Committed(committed) => {
            target.landed(committed.commit_version())?;
            if committed.post_commit_stats().commits_since_checkpoint >= CHECKPOINT_INTERVAL {
                if let Err(error) = checkpoint(target) {
                    // The commit stands; the next one past the interval tries again.
                    tracing::warn!("cannot write a checkpoint of {}: {error:#}", target.describe());
                }
            }
            Ok(true)
        }
        CommitResult::Conflicted(_) | CommitResult::Retryable(_) => Ok(false),
    }
}

/// How many commits a table's log may gather after its last checkpoint (version 0 counts as one)
/// before the next commit writes a new one: readers then replay at most this many commit files
/// after the checkpoint, however many nightly runs the table has seen. Delta/Spark's default.
const CHECKPOINT_INTERVAL: u64 = 10;

/// Writes a checkpoint of the table's newest version (the kernel's own, `N.checkpoint.parquet`
/// and `_last_checkpoint`), then syncs the log folder. A checkpoint only repeats what the commits
/// already say, so a crash here loses nothing: readers ignore a missing or unfinished one.
fn checkpoint(target: &Target<'_>) -> Result<()> {
    let engine: Box<dyn Engine> = match target {
        // On an engine with a multi-threaded runtime: the checkpoint writer reads the log while
        // it writes, and on the single I/O thread of `engine()` the two wait for each other
        // forever. (The object-storage engine runs on the process's multi-threaded runtime.)
        Target::Local(_) => {
            let executor = TokioMultiThreadExecutor::new_owned_runtime(Some(2), None)?;
            let engine = DefaultEngineBuilder::new(Arc::new(LocalFileSystem::new()))
                .with_task_executor(Arc::new(executor))
                .build();
            Box::new(engine)
        }
        #[cfg(feature = "cloud")]
        Target::Remote { .. } => target.engine(),
    };
    let snapshot = snapshot_at(engine.as_ref(), target)?;
    snapshot.checkpoint(engine.as_ref(), None)?;
    if let Target::Local(folder) = target {
        let log = folder.join(DELTA_LOG);
        fsops::sync_dir(&log).with_context(|| format!("cannot sync {}", log.display()))?;
    }
    Ok(())
}

/// Syncs a new Delta commit file and the folders naming it: the kernel's local store does not,
/// and the commit journal that would redo the commit is removed once its steps are done, so a
/// power cut after that must not lose the commit.
fn sync_commit(folder: &Path, version: u64) -> Result<()> {
    let log = folder.join(DELTA_LOG);
    let commit = log.join(format!("{version:020}.json"));
    let file = fs::File::open(&commit).with_context(|| format!("cannot open {}", commit.display()))?;
    fsops::sync_file(&file).with_context(|| format!("cannot sync {}", commit.display()))?;
    for folder in [&log, folder] {
        fsops::sync_dir(folder).with_context(|| format!("cannot sync {}", folder.display()))?;
    }
    Ok(())
}

impl FileToAdd {
    /// Removes a downloaded copy (a staged one belongs to the run).
    fn done(&self) {
        if self.downloaded {
            let _ = fs::remove_file(&self.local);
        }
    }
}

/// Adds each file of `files` (in the table at `target`) to the transaction, with the statistics
/// Delta readers skip files by, computed from the file's rows by the kernel's engine.
fn add_files<S>(transaction: &mut Transaction<S>, target: &Target<'_>, files: &[String]) -> Result<()> {
    let context = transaction.write_state()?.write_context_builder().build()?;
    for file in files {
        let source = target.file(file)?;
        let path = &source.local;
        let mut stats = FileStatsAccumulator::new(context.stats_columns(), context.physical_data_schema());
        let mut merged = false;
        let read = read_batches(path).and_then(|batches| {
            for batch in batches {
                stats.merge(&batch?)?;
                merged = true;
            }
            if !merged {
                // A file without rows still gets statistics (numRecords 0), which readers expect.
                stats.merge(&RecordBatch::new_empty(strip_metadata(schema_of(path)?.as_ref())))?;
            }
            Ok(())
        });
        source.done();
        read?;
        let stats = stats
            .finish()?
            .ok_or_else(|| anyhow!("no statistics for {}", target.describe()))?;
        let file_meta = FileMeta::new(source.location, source.modified_millis, source.size);
        let add = build_add_file_metadata(DataFileMetadata::new(file_meta, stats), &context)?;
        transaction.add_files(add);
    }
    Ok(())
}

/// The one-row commit info fhir2table adds to every commit: the run, its command and its inputs.
fn commit_info(run: &RunInfo) -> Result<(Box<dyn EngineData>, DeltaSchemaRef)> {
    let mut inputs = ListBuilder::new(StringBuilder::new());
    for input in &run.inputs {
        inputs.values().append_value(input);
    }
    inputs.append(true);
    let inputs = inputs.finish();
    let schema = Arc::new(Schema::new(vec![
        Field::new("runId", DataType::Utf8, false),
        Field::new("command", DataType::Utf8, false),
        Field::new("inputs", inputs.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![run.run_id.as_str()])),
            Arc::new(StringArray::from(vec![run.command.as_str()])),
            Arc::new(inputs),
        ],
    )?;
    let info_schema = Arc::new(StructType::try_from_arrow(schema.as_ref())?);
    Ok((Box::new(ArrowEngineData::new(batch)), info_schema))
}

/// The files of the snapshot's version, as names in the table folder.
fn live_files(engine: &dyn Engine, snapshot: &Arc<Snapshot>) -> Result<Vec<String>> {
    let scan = snapshot.clone().scan_builder().build()?;
    let mut files = Vec::new();
    for metadata in scan.scan_metadata(engine)? {
        let (data, selection) = metadata?.scan_files.into_parts();
        let data = ArrowEngineData::try_from_engine_data(data)?;
        let paths = data
            .record_batch()
            .column_by_name("path")
            .and_then(|column| column.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| anyhow!("the kernel's scan rows have no path column"))?;
        for row in 0..paths.len() {
            if !selection.get(row).copied().unwrap_or(true) || paths.is_null(row) {
                continue;
            }
            let path = paths.value(row);
            if !is_plain_name(path) || path.contains('%') {
                bail!("the table holds {path:?}, a file fhir2table did not write");
            }
            files.push(path.to_owned());
        }
    }
    Ok(files)
}

/// The Delta schema of the files an Arrow schema describes. Field metadata (the lookup-index
/// marks) stays in the Parquet files and out of the table's schema.
fn delta_schema(schema: &Schema) -> Result<StructType> {
    Ok(StructType::try_from_arrow(strip_metadata(schema).as_ref())?)
}

fn strip_metadata(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            field
                .as_ref()
                .clone()
                .with_metadata(std::collections::HashMap::new())
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The names of the files of the newest version of the Delta table at `folder` (for `inspect`,
/// which reads without opening the output for a run).
pub(super) fn live_file_names(folder: &Path) -> Result<Vec<String>> {
    let engine = engine();
    let snapshot = snapshot(&engine, folder)?;
    live_files(&engine, &snapshot)
        .with_context(|| format!("cannot list the files of the Delta table {}", folder.display()))
}

/// The newest version of the Delta table at `folder`.
fn snapshot(engine: &dyn Engine, folder: &Path) -> Result<Arc<Snapshot>> {
    snapshot_at(engine, &Target::Local(folder))
}

/// The newest version of the Delta table at `target`.
fn snapshot_at(engine: &dyn Engine, target: &Target<'_>) -> Result<Arc<Snapshot>> {
    Snapshot::builder_for(target.url()?.as_str())
        .build(engine)
        .with_context(|| format!("cannot read the Delta log of {}", target.describe()))
}

fn table_url(folder: &Path) -> Result<Url> {
    let absolute = std::path::absolute(folder)?;
    Url::from_directory_path(&absolute).map_err(|()| anyhow!("{} is not a folder path", folder.display()))
}

/// What the commit info's `engineInfo` names.
fn engine_info() -> String {
    format!("fhir2table/{}", env!("CARGO_PKG_VERSION"))
}

/// The kernel's default engine on the local file system (it runs its own I/O thread).
fn engine() -> impl Engine {
    DefaultEngineBuilder::new(Arc::new(LocalFileSystem::new())).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_object_stores_temporary_log_files_count_as_interrupted_writes() {
        assert!(is_interrupted_log_write("00000000000000000003.json#17"));
        assert!(is_interrupted_log_write(
            "00000000000000000010.checkpoint.parquet#1"
        ));
        for name in [
            "00000000000000000003.json",
            "00000000000000000003.json#",
            "00000000000000000003.json#x",
            "3.json#1",
            "_last_checkpoint",
            "notes#1",
        ] {
            assert!(!is_interrupted_log_write(name), "{name}");
        }
    }
}

/// Delta tables on object storage (`object.rs`): the same kernel calls on the store's engine.
#[cfg(feature = "cloud")]
mod remote {
    use std::sync::Arc;

    use anyhow::{bail, Context, Result};
    use delta_kernel::Engine;
    use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
    use delta_kernel_default_engine::DefaultEngineBuilder;

    use super::{delta_schema, live_files, schema_of, snapshot_at, Target, DELTA_LOG};
    use crate::remote::{runtime, Location};

    /// The kernel's default engine on the table's store, running its tasks on the process's I/O
    /// runtime.
    pub(in crate::sink) fn remote_engine(table: &Location) -> impl Engine {
        let executor = Arc::new(TokioMultiThreadExecutor::new(runtime().handle().clone()));
        DefaultEngineBuilder::new(table.store())
            .with_task_executor(executor)
            .build()
    }

    /// Whether the location holds a Delta table: a commit or checkpoint in its log.
    pub(in crate::sink) fn is_remote_delta_table(table: &Location) -> Result<bool> {
        Ok(table.list(DELTA_LOG)?.iter().any(|object| {
            let name = object.relative.rsplit('/').next().unwrap_or_default();
            name.starts_with(|c: char| c.is_ascii_digit())
        }))
    }

    /// The files of the newest version of the Delta table at `table`, by name.
    pub(in crate::sink) fn remote_live_files(table: &Location) -> Result<Vec<String>> {
        if !is_remote_delta_table(table)? {
            return Ok(Vec::new());
        }
        let engine = remote_engine(table);
        let snapshot = snapshot_at(&engine, &remote_target(table))?;
        let mut files = live_files(&engine, &snapshot)
            .with_context(|| format!("cannot list the files of the Delta table {}", table.display("")))?;
        files.sort();
        Ok(files)
    }

    /// Refuses staged files whose schema is not the existing table's (see `DeltaStaging`).
    pub(in crate::sink) fn check_remote_schema(
        table: &Location,
        staged: &[std::path::PathBuf],
    ) -> Result<()> {
        if !is_remote_delta_table(table)? {
            return Ok(());
        }
        let engine = remote_engine(table);
        let existing = snapshot_at(&engine, &remote_target(table))?.schema();
        for path in staged {
            if delta_schema(schema_of(path)?.as_ref())? != *existing {
                bail!(
                    "cannot write {}: the Delta table's schema differs from the new rows' and \
                     fhir2table cannot change a Delta table's schema yet; move the table away or \
                     use another --out",
                    table.display("")
                );
            }
        }
        Ok(())
    }

    /// A target for reading only (no local copies needed).
    fn remote_target(table: &Location) -> Target<'_> {
        Target::Remote {
            table,
            local_copy: &|_| None,
            scratch: std::path::Path::new("."),
        }
    }
}

#[cfg(feature = "cloud")]
pub(super) use remote::{check_remote_schema, is_remote_delta_table, remote_engine, remote_live_files};
