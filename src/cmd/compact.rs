//! `fhir2table compact`: deduplicate the tables of an output folder after appends.

const ABOUT: &str = "Deduplicate appended tables: keep each resource's newest row, one file per table";

const LONG_ABOUT: &str = "\
Deduplicate the tables of an output folder. Incremental and append runs add new Parquet files, so
a resource converted again (a re-export, an updated record) appears more than once. compact keeps,
per resource id, the newest: the greatest last_updated (compared as instants), then the latest
input (later runs, later rows). Built-in tables keep one row per id; a view keeps all the rows
its newest file has for that id. Rows are dropped when a later run deleted the resource (Bulk
Data deleted/ files, kept in OUT/_deleted/) or converted their input file again (incremental
state). Each table is rewritten as one file and swapped in atomically, under the same lock and
journal as convert.";

const AFTER_HELP: &str = "\
Examples:
  fhir2table compact /data/warehouse
  fhir2table convert --incremental --in /data/landing --out /data/warehouse && fhir2table compact /data/warehouse";

use std::path::PathBuf;

use anyhow::Result;

use std::collections::HashMap;

use crate::sink::{
    can_compact, compact_files, schema_of, tombstones, Compression, Output, Superseded, WriteOptions,
    RESOURCE_TYPE_KEY,
};
use crate::state::State;
use crate::table::deleted::DELETED_TABLE;
use crate::table::BUILTIN_TABLE_NAMES;
use crate::{Exit, UsageError};

/// Arguments of `fhir2table compact`.
#[derive(Debug, clap::Args)]
#[command(about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Args {
    /// The output folder of earlier `convert` runs
    #[arg(value_name = "OUT")]
    pub out: PathBuf,

    /// Parquet compression of the rewritten files: zstd, snappy or none [default: zstd]
    #[arg(long, value_name = "CODEC", default_value = "zstd")]
    pub compression: Compression,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// The Parquet files of a table folder, oldest first (none if it does not exist).
fn parquet_files(folder: &std::path::Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    Ok(files)
}

/// Runs `compact`.
pub fn run(args: Args) -> Result<Exit> {
    let out = &args.out;
    if !out.is_dir() {
        return Err(UsageError(format!("{} is not an output folder", out.display())).into());
    }
    let output = Output::open(out)?;
    let staging = output.stage()?;
    let options = WriteOptions {
        compression: args.compression,
    };
    // Tombstones (DELETE requests) and the run that last converted each input.
    let deleted_files = parquet_files(&out.join(DELETED_TABLE))?;
    let reconverted: HashMap<String, String> = State::load(out)?
        .inputs
        .into_iter()
        .map(|(path, record)| (path, record.run))
        .collect();
    let mut compacted = Vec::new();
    let mut summary = Vec::new();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(out)?.flatten().map(|e| e.path()).collect();
    folders.sort();
    for folder in folders {
        let name = folder
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !folder.is_dir() || name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let files = parquet_files(&folder)?;
        let Some(newest) = files.last() else { continue };
        let schema = schema_of(newest)?;
        if !can_compact(&schema) {
            summary.push(format!("{name}: no id column, left as it is"));
            continue;
        }
        let target_dir = staging.table_dir(&name)?;
        crate::fsops::create_dir_all(&target_dir)?;
        let stamp = crate::report::format_utc(std::time::SystemTime::now()).replace(['-', ':'], "");
        let target = target_dir.join(format!("part-{stamp}-compacted.parquet"));
        let one_row_per_id = BUILTIN_TABLE_NAMES.contains(&name.as_str());
        let superseded = Superseded {
            deleted: match schema.metadata().get(RESOURCE_TYPE_KEY) {
                Some(resource_type) => tombstones(&deleted_files, resource_type)?,
                None => Default::default(),
            },
            reconverted: reconverted.clone(),
        };
        let result = compact_files(&files, &target, schema, &options, one_row_per_id, &superseded)?;
        summary.push(format!(
            "{name}: {} rows in {} file(s) -> {} rows in 1 file",
            result.rows_before,
            files.len(),
            result.rows_after
        ));
        compacted.push(name);
    }
    let names: Vec<&str> = compacted.iter().map(String::as_str).collect();
    let steps = staging.plan(&names, true)?;
    staging.commit(steps)?;
    if !args.quiet {
        for line in summary {
            eprintln!("{line}");
        }
    }
    Ok(Exit::Success)
}
