//! Writing tables: a run stages its tables where no reader sees them and commits them all at once,
//! so readers never see a half-written table. Runs use an output only through the interface in
//! `store.rs` ([`Store`], [`StagedRun`], [`TableWriter`]); the local Parquet folder is its one
//! implementation (`local.rs`).

mod commit;
mod footer;
mod layout;
mod local;
mod lock;
mod migrate;
mod parquet;
mod part;
mod store;

use std::path::Path;

use anyhow::Result;

pub use self::parquet::{
    same_column, same_columns, schema_of, Compression, WriteOptions, CONTRACT_KEY, LOOKUP_INDEX_KEY,
    RESOURCE_TYPE_KEY, TABLE_KEY, TOOL_VERSION_KEY,
};
pub use commit::{journal_path, Output};
pub use layout::{is_internal, TOOL_FOLDER};
pub use lock::{Locked, OutputLock};
pub use part::{part_file_name, run_stamp};
pub use store::{Batches, Part, StagedRun, Store, TableWriter};

/// Opens the output at `folder` for changing (see [`Store`]): locks it (failing with [`Locked`]
/// while another run holds it) and finishes a commit a killed run left half done. The one place
/// where a run's backend is chosen; today it is always a local folder, which must exist.
pub fn open(folder: &Path) -> Result<Box<dyn Store>> {
    Ok(Box::new(Output::open(folder)?))
}
