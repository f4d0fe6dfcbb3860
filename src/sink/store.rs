//! The interface between a run and where its tables are kept. `convert` and `compact` see an
//! output only through [`Store`], [`StagedRun`] and [`TableWriter`], so a second backend (object
//! storage) is a new implementation of these, not a change to the runs. The local Parquet folder
//! (`local.rs`) and the Delta Lake tables (`delta.rs`) implement them.
//!
//! What every backend guarantees, and `tests/crash_points.rs` checks for the local one: only one
//! run changes an output at a time; nothing staged is visible before [`StagedRun::commit`]; a
//! commit makes all of its tables and files visible or none of them, whenever the process dies;
//! and a commit a dead run started is finished (or dropped, if it had not reached its commit
//! point) by the next run's opening, before it reads anything.

use std::ffi::OsString;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Result;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use super::part::{file_stamp, run_stamp};
use super::WriteOptions;

/// An output opened for changing: held against other runs, and any commit a killed run left
/// half done finished (see [`super::open`]).
pub trait Store: Send + Sync {
    /// Whether opening finished a commit that a killed run had started (the run logs it).
    fn recovered(&self) -> bool;

    /// Where a table (or another file of the output, such as the run report) is kept, as
    /// reports and messages show it.
    fn location(&self, name: &str) -> String;

    /// The tables in the output, sorted by name, for `compact`; the tool's own (names starting
    /// with `_` or `.`) are left out.
    fn tables(&self) -> Result<Vec<String>>;

    /// Whether the output has a table of this name, an empty one included: appending no rows to
    /// an existing table adds no empty part to it.
    fn exists(&self, table: &str) -> bool;

    /// Whether nothing at all is kept under the table's name (no table, or an empty one), which
    /// is what `--mode error` asks before writing.
    fn is_empty(&self, table: &str) -> bool;

    /// The table's part files, oldest first (none when there is no such table).
    fn parts(&self, table: &str) -> Result<Vec<Part>>;

    /// The Arrow schema a part was written with, its metadata included (`compact` reads the
    /// rows' resource type from it, `--mode append` compares it with the new rows').
    fn schema(&self, part: &Part) -> Result<SchemaRef>;

    /// The record batches of a part, in order, a bounded number of rows at a time.
    fn read(&self, part: &Part) -> Result<Batches>;

    /// The record batches of a part with only the columns that hold a value or an empty object
    /// or list in some row (`reached.rs`): a column left out is null in every row. What
    /// `export` reads wide resource tables with.
    fn read_reached(&self, part: &Part) -> Result<Batches> {
        super::parquet::read_columns(&self.local_file(part)?, true)
    }

    /// A local file holding the part's bytes: the part itself on local disk, a download (kept
    /// while the output is open) on object storage. A sharded run's commit takes each shard's
    /// parts through it.
    fn local_file(&self, part: &Part) -> Result<std::path::PathBuf>;

    /// Begins a run's changes, written with `options` where no reader sees them until
    /// [`StagedRun::commit`].
    fn stage(&self, options: WriteOptions) -> Result<Box<dyn StagedRun>>;

    /// Writes one file of the output (`name` relative to it) on its own, replacing it whole: the
    /// run report of a run that failed before its commit, or that retired inputs after it.
    fn write_file(&self, name: &str, content: &[u8]) -> Result<()>;
}

/// The record batches [`Store::read`] returns.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch>>>;

/// One part file of a stored table, as [`Store::parts`] lists it.
#[derive(Debug)]
pub struct Part {
    pub(super) table: String,
    /// The file's name (see [`super::part_file_name`]), as the OS gives it: a local file's name
    /// need not be UTF-8.
    pub(super) file: OsString,
}

impl Part {
    /// The stamp of the run that wrote the part: `compact` tells older rows from newer by it.
    pub fn stamp(&self) -> String {
        file_stamp(std::path::Path::new(&self.file))
    }

    /// The part's file name (parts are only ever listed with UTF-8 names): a sharded run's
    /// commit keeps each shard's part under its name.
    pub fn file_name(&self) -> String {
        self.file.to_string_lossy().into_owned()
    }
}

/// A run's changes, built where no reader sees them. [`StagedRun::commit`] makes them visible all
/// at once; dropped without a commit, they leave the output as it was.
pub trait StagedRun {
    /// Starts the part file `file` (named by [`super::part_file_name`]) of `table`. A table name
    /// that is not a plain name (`..`, a separator, NUL) is refused before anything is written.
    fn create(&self, table: &str, file: &str, schema: SchemaRef) -> Result<Box<dyn TableWriter>>;

    /// Rewrites the finished part `file` of `table`, replacing every string cell that starts with
    /// `marker` by what `replace` returns for the column's name and the rest of the cell (`None`
    /// makes it null): conditional references are resolved so once the run knows every
    /// identifier. Streams batch by batch and keeps the schema's metadata.
    fn rewrite_marked_strings(
        &self,
        table: &str,
        file: &str,
        marker: char,
        replace: &mut dyn FnMut(&str, &str) -> Option<String>,
    ) -> Result<()>;

    /// Takes the finished part file at `from` (a shard's, see `convert::shards`) into the staged
    /// table `table` as its part `file` (a stored part name), without copying where the file
    /// system allows; `from` is left as it was, so a commit that fails can be tried again.
    fn adopt(&self, table: &str, file: &str, from: &Path) -> Result<()>;

    /// Has the commit also remove the folder `path` (relative to the output, inside its tool
    /// folder) in the same journal: the shard folders whose parts it took in. The folder's file
    /// `guard` (its manifest) must keep its present content until then; a journal replayed after
    /// another run wrote the folder anew leaves it alone.
    fn remove_with_commit(&mut self, path: &str, guard: &str) -> Result<()>;

    /// Commits: makes the staged parts of `tables` and the `files` (each a path relative to the
    /// output and its content: the incremental state, the run report) visible together. With
    /// `replace` each table is replaced whole (overwrite, compact), otherwise its staged parts
    /// join the existing ones (append). After an error the output is either unchanged or, once
    /// the commit point was passed, finished by the next [`super::open`]. `run` is what a backend
    /// with a history (Delta's commit info) records of the run; the Parquet folder keeps none.
    fn commit(
        self: Box<Self>,
        tables: &[&str],
        replace: bool,
        files: Vec<(&str, String)>,
        run: &RunInfo,
    ) -> Result<()>;
}

/// What a commit records about the run that made it where the backend keeps a history (each
/// Delta commit's `commitInfo`), so a table's history says which run and inputs each version
/// came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's stamp ([`super::run_stamp`] of its start), which also names its part files.
    pub run_id: String,
    /// The run's start in microseconds since 1970. It grows from run to run, so a Delta commit
    /// records it as its application transaction version, and a commit replayed after a crash
    /// sees that it already landed.
    pub sequence: i64,
    /// The command that made the commit (`convert`, `compact`).
    pub command: String,
    /// The inputs the run converted, relative to `--in`.
    pub inputs: Vec<String>,
}

impl RunInfo {
    /// The record of a run of `command` that started at `started` and read `inputs`.
    pub fn new(started: SystemTime, command: &str, inputs: Vec<String>) -> RunInfo {
        let since_epoch = started.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        RunInfo {
            run_id: run_stamp(started),
            sequence: i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX),
            command: command.to_owned(),
            inputs,
        }
    }
}

/// Writes one staged part of a table, batch by batch.
pub trait TableWriter: Send {
    /// Adds a batch of rows (of the schema the part was created with).
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Bytes the writer holds in memory: the row group in progress, and what each row group
    /// allocates whole when it starts (a lookup column's bloom filter).
    fn buffered_bytes(&self) -> usize;

    /// The rows of the row group in progress, encoded: what writing it out would free.
    fn row_group_bytes(&self) -> usize;

    /// Writes out the rows held in memory (ends the row group in progress), so that a run's
    /// memory stays within a budget across all its tables.
    fn flush(&mut self) -> Result<()>;

    /// The table's leaf columns: each row group costs a column chunk per leaf (its pages,
    /// metadata and footer entry), whatever its rows.
    fn leaf_columns(&self) -> usize;

    /// Column chunks whose metadata the open file keeps in memory until its footer.
    fn footer_chunks(&self) -> usize {
        0
    }

    /// Completes the open file, footer written, to free that metadata; the part goes on in a
    /// next file with the next rows. A writer of one file per part does nothing.
    fn complete_file(&mut self) -> Result<()> {
        Ok(())
    }

    /// Completes the part (durable when this returns) and returns how many rows it holds.
    fn finish(self: Box<Self>) -> Result<u64>;
}
