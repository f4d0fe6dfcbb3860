//! Writing tables: a run stages its tables where no reader sees them and commits them all at once,
//! so readers never see a half-written table. Runs use an output only through the interface in
//! `store.rs` ([`Store`], [`StagedRun`], [`TableWriter`]), implemented by the local Parquet folder
//! (`local.rs`) and by Delta Lake tables in a local folder (`delta.rs`, cargo feature `delta`).

mod absent;
mod commit;
#[cfg(feature = "delta")]
mod delta;
mod footer;
mod ipc_schema;
mod layout;
mod leaves;
mod local;
mod lock;
mod migrate;
mod null_pages;
#[cfg(feature = "cloud")]
mod object;
mod page_codec;
mod parquet;
mod parquet_schema;
mod part;
pub(crate) mod reached;
mod store;
mod thrift;
mod wide_file;

use std::path::Path;

use anyhow::Result;

pub use self::parquet::{
    distinct_buffer_bytes, same_column, same_columns, schema_of, Compression, WriteOptions, CONTRACT_KEY,
    LOOKUP_INDEX_KEY, RESOURCE_TYPE_KEY, TABLE_KEY, TOOL_VERSION_KEY, WIDE_ROWS_PER_FILE_VARIABLE,
    WIDE_TABLE_LEAVES,
};
pub use commit::{journal_path, Output};
pub use layout::{is_internal, shard_folder, shards_folder, TOOL_FOLDER};
pub use lock::{Locked, OutputLock};
pub use part::{part_file_name, run_stamp};
pub use store::{Batches, Part, RunInfo, StagedRun, Store, TableWriter};

/// How tables are kept (`--format`, `format`): the flag and the config key take the same
/// lowercase names (a test in src/config.rs checks that they agree).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A folder of Parquet files per table, read by any Parquet reader.
    #[default]
    Parquet,
    /// A Delta Lake table per table: Parquet files and a transaction log (`_delta_log/`), read
    /// with time travel by Delta readers (Spark, Databricks, Trino, DuckDB, delta-rs).
    Delta,
}

/// The output's tables are kept in another format than the run asked for: a usage error, found
/// before anything is written.
#[derive(Debug)]
pub struct WrongFormat(pub String);

impl std::fmt::Display for WrongFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WrongFormat {}

/// The format of the tables already in `folder`: Delta when any table folder holds a Delta log,
/// else Parquet (also for an empty or new folder). `compact` works on either.
pub fn format_of(folder: &Path) -> Format {
    let tables = std::fs::read_dir(folder).into_iter().flatten().flatten();
    match tables
        .into_iter()
        .any(|entry| layout::is_delta_table(&entry.path()))
    {
        true => Format::Delta,
        false => Format::Parquet,
    }
}

/// Refuses a local `folder` that no run has written to (no `.fhir2table/`, nor an older
/// release's files), before anything is created in it: `export` and `compact` read an existing
/// output, and opening one takes its lock, which would leave a tool folder in a folder of the
/// user's that was named by mistake. Both work on local folders only.
pub fn check_is_output(folder: &Path) -> Result<()> {
    if folder.is_dir() && (layout::tool_folder(folder).is_dir() || migrate::has_legacy_files(folder)) {
        return Ok(());
    }
    Err(crate::UsageError(format!(
        "{} is not an output folder (fhir2table convert writes one, with {TOOL_FOLDER}/ in it)",
        folder.display()
    ))
    .into())
}

/// Opens the output at `folder` for changing (see [`Store`]): locks it (failing with [`Locked`]
/// while another run holds it) and finishes a commit a killed run left half done. The one place
/// where a run's backend is chosen. The folder must exist; tables of the other format in it are
/// refused with [`WrongFormat`] (a Parquet file added beside a Delta table is one no Delta reader
/// sees, and a Delta log over a folder of Parquet files hides them).
pub fn open(folder: &Path, format: Format) -> Result<Box<dyn Store>> {
    if crate::remote::is_url(folder) {
        #[cfg(feature = "cloud")]
        return object::open(&folder.to_string_lossy(), format);
        #[cfg(not(feature = "cloud"))]
        return Err(crate::remote::Location::parse(&folder.to_string_lossy())
            .map(|_| ())
            .unwrap_err());
    }
    let output = Output::open(folder)?;
    check_format(&output, format)?;
    match format {
        Format::Parquet => Ok(Box::new(output)),
        #[cfg(feature = "delta")]
        Format::Delta => Ok(Box::new(delta::DeltaOutput::new(output)?)),
        #[cfg(not(feature = "delta"))]
        Format::Delta => Err(WrongFormat(
            "--format delta: this fhir2table was built without Delta Lake support (cargo feature `delta`)"
                .into(),
        )
        .into()),
    }
}

/// Refuses an output whose tables are kept in the other format (see [`open`]).
fn check_format(output: &Output, format: Format) -> Result<()> {
    for table in output.tables()? {
        let folder = layout::table_folder(&output.root, &table);
        let delta = layout::is_delta_table(&folder);
        let (found, wanted) = match (format, delta) {
            (Format::Parquet, true) => ("a Delta table", "--format delta"),
            (Format::Delta, false) if output.parts(&table)?.is_empty() => continue,
            (Format::Delta, false) => ("a folder of Parquet files", "--format parquet"),
            _ => continue,
        };
        return Err(WrongFormat(format!(
            "{} is {found}: use {wanted} for this output, or another --out",
            folder.display()
        ))
        .into());
    }
    Ok(())
}

/// The Parquet files that hold a table's rows now: every one in a plain table folder, or those of
/// a Delta table's newest version (files that earlier versions removed stay for time travel and
/// are not rows any more). Sorted by name, which is oldest first.
pub fn table_files(folder: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    if layout::is_delta_table(folder) {
        #[cfg(feature = "delta")]
        {
            let mut names = delta::live_file_names(folder)?;
            names.sort();
            return Ok(names.into_iter().map(|name| folder.join(name)).collect());
        }
        #[cfg(not(feature = "delta"))]
        anyhow::bail!(
            "{} is a Delta table: this fhir2table was built without Delta Lake support (cargo feature `delta`)",
            folder.display()
        );
    }
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(folder)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    Ok(files)
}
