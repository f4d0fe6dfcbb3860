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
journal as convert. A table without an id column (a view that has none) cannot be deduplicated:
it is left as it is, and the summary and --report json say so.";

const AFTER_HELP: &str = "\
Examples:
  fhir2table compact /data/warehouse
  fhir2table convert --incremental --in /data/landing --out /data/warehouse && fhir2table compact /data/warehouse";

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use arrow_schema::SchemaRef;

use crate::sink::{
    can_compact, compact_files, schema_of, tombstones, Compression, Output, Superseded, WriteOptions,
    RESOURCE_TYPE_KEY,
};
use crate::state::State;
use crate::table::deleted::DELETED_TABLE;
use crate::table::{builtin_tables, BUILTIN_TABLE_NAMES};
use crate::{Exit, UsageError};

/// Arguments of `fhir2table compact`.
#[derive(Debug, clap::Args)]
#[command(about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Args {
    /// The output folder of earlier `convert` runs
    #[arg(value_name = "OUT")]
    pub out: PathBuf,

    /// Parquet compression of the rewritten files
    #[arg(long, value_name = "CODEC", default_value = "zstd")]
    pub compression: Compression,

    /// Print what was done to each table on stdout as JSON: `--report json`
    #[arg(long, value_name = "FORMAT", value_parser = ["json"])]
    pub report: Option<String>,

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
    let mut outcomes = Vec::new();
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
        let mut outcome = TableOutcome::new(&name, files.len());
        if !can_compact(&schema) {
            outcome.note = Some(NO_ID_COLUMN.to_owned());
            outcomes.push(outcome);
            continue;
        }
        let target_dir = staging.table_dir(&name)?;
        crate::fsops::create_dir_all(&target_dir)?;
        let stamp = crate::report::format_utc(std::time::SystemTime::now()).replace(['-', ':'], "");
        let target = target_dir.join(format!("part-{stamp}-compacted.parquet"));
        let one_row_per_id = BUILTIN_TABLE_NAMES.contains(&name.as_str());
        let resource_type = resource_type_of(&name, &files)?;
        let superseded = Superseded {
            deleted: match &resource_type {
                Some(resource_type) => tombstones(&deleted_files, resource_type)?,
                None => Default::default(),
            },
            reconverted: reconverted.clone(),
        };
        if resource_type.is_none() {
            outcome.note = Some(NO_RESOURCE_TYPE.to_owned());
        }
        let schema = with_resource_type(schema, resource_type.as_deref());
        let result = compact_files(&files, &target, schema, &options, one_row_per_id, &superseded)?;
        outcome.deduplicated = true;
        outcome.deletions_applied = resource_type.is_some();
        outcome.rows_before = Some(result.rows_before);
        outcome.rows_after = Some(result.rows_after);
        outcomes.push(outcome);
        compacted.push(name);
    }
    let names: Vec<&str> = compacted.iter().map(String::as_str).collect();
    let steps = staging.plan(&names, true)?;
    staging.commit(steps)?;
    if args.report.is_some() {
        let report = serde_json::json!({ "tables": outcomes });
        super::print_out(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    if !args.quiet {
        for outcome in &outcomes {
            eprintln!("{}", outcome.summary());
        }
    }
    Ok(Exit::Success)
}

/// Why a table without an `id` column is left as it is.
const NO_ID_COLUMN: &str = "not deduplicated: no id column, so rows of a resource converted more \
than once stay duplicated (give the view an id column, e.g. getResourceKey())";

/// Why deletions were not applied to a table.
const NO_RESOURCE_TYPE: &str = "deletions not applied: no file records the rows' resource type \
(written by an older fhir2table; convert again with --mode overwrite)";

/// What compaction did to one table, for the summary and `--report json`.
#[derive(Debug, serde::Serialize)]
struct TableOutcome {
    table: String,
    files_before: usize,
    /// Whether duplicates were removed (the table has an `id` column).
    deduplicated: bool,
    /// Whether tombstones were applied (the rows' resource type is known).
    deletions_applied: bool,
    rows_before: Option<u64>,
    rows_after: Option<u64>,
    /// What was not done, and why.
    note: Option<String>,
}

impl TableOutcome {
    fn new(table: &str, files_before: usize) -> Self {
        TableOutcome {
            table: table.to_owned(),
            files_before,
            deduplicated: false,
            deletions_applied: false,
            rows_before: None,
            rows_after: None,
            note: None,
        }
    }

    fn summary(&self) -> String {
        let mut line = format!("{}: ", self.table);
        if let (Some(before), Some(after)) = (self.rows_before, self.rows_after) {
            line += &format!(
                "{before} rows in {} file(s) -> {after} rows in 1 file",
                self.files_before
            );
        } else {
            line += &format!("{} file(s) left as they are", self.files_before);
        }
        if let Some(note) = &self.note {
            line += &format!("; {note}");
        }
        line
    }
}

/// The resource type of a table's rows, for applying tombstones: recorded in the metadata of its
/// files (the newest first; files rewritten by older versions lost it), else known for the
/// built-in tables.
fn resource_type_of(table: &str, files: &[PathBuf]) -> Result<Option<String>> {
    for file in files.iter().rev() {
        if let Some(resource_type) = schema_of(file)?.metadata().get(RESOURCE_TYPE_KEY) {
            return Ok(Some(resource_type.clone()));
        }
    }
    Ok(builtin_tables(1)
        .iter()
        .find(|builtin| builtin.name() == table)
        .map(|builtin| builtin.source_resource_type().to_owned()))
}

/// The schema with `resource_type` in its metadata, so the compacted file records it too.
fn with_resource_type(schema: SchemaRef, resource_type: Option<&str>) -> SchemaRef {
    match resource_type {
        Some(resource_type)
            if schema.metadata().get(RESOURCE_TYPE_KEY).map(String::as_str) != Some(resource_type) =>
        {
            let mut metadata = schema.metadata().clone();
            metadata.insert(RESOURCE_TYPE_KEY.to_owned(), resource_type.to_owned());
            Arc::new(schema.as_ref().clone().with_metadata(metadata))
        }
        _ => schema,
    }
}
