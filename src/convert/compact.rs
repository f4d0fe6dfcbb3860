//! The compaction run (`fhir2table compact`), in the same steps as a conversion: plan (open the
//! output folder, find its tables, the tombstones and the incremental state), rewrite each table
//! that can be deduplicated into the staging folder, commit them in one [`Staging::commit`], and
//! report what was done to each table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use arrow_schema::SchemaRef;

use crate::sink::{
    file_stamp, read_batches, rewrite_rows, schema_of, Compression, Output, Staging, WriteOptions,
    RESOURCE_TYPE_KEY,
};
use crate::state::State;
use crate::table::builtin_tables;
use crate::table::dedup::{add_tombstones, Deduplication, NewestRows, Superseded, Tombstones};
use crate::table::deleted::DELETED_TABLE;
use crate::UsageError;

use super::with_table_metadata;

/// What compaction did to one table, for the summary and `--report json`.
#[derive(Debug, serde::Serialize)]
pub struct TableOutcome {
    /// The table's name (its folder under the output folder).
    pub table: String,
    /// How many Parquet files the table had before.
    pub files_before: usize,
    /// Whether duplicates were removed (the table has an `id` column).
    pub deduplicated: bool,
    /// Whether tombstones were applied (the rows' resource type is known).
    pub deletions_applied: bool,
    /// Rows before compaction (when the table was rewritten).
    pub rows_before: Option<u64>,
    /// Rows after compaction (when the table was rewritten).
    pub rows_after: Option<u64>,
    /// What was not done, and why.
    pub note: Option<String>,
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

    /// One line for stderr saying what was done to the table.
    pub fn summary(&self) -> String {
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

/// Why a table without an `id` column is left as it is.
const NO_ID_COLUMN: &str = "not deduplicated: no id column, so rows of a resource converted more \
than once stay duplicated (give the view an id column, e.g. getResourceKey())";

/// Why deletions were not applied to a table.
const NO_RESOURCE_TYPE: &str = "deletions not applied: no file records the rows' resource type \
(written by an older fhir2table; convert again with --mode overwrite)";

/// Deduplicates the tables of the output folder `out` (see `fhir2table compact --help`) and
/// returns what was done to each table, in folder order. Each rewritten table is swapped in
/// atomically, under the same lock and journal as `convert`.
pub fn compact(out: &Path, compression: Compression) -> Result<Vec<TableOutcome>> {
    // Plan: the folder, what makes rows obsolete, and the tables.
    if !out.is_dir() {
        return Err(UsageError(format!("{} is not an output folder", out.display())).into());
    }
    let output = Output::open(out)?;
    let staging = output.stage()?;
    let options = WriteOptions { compression };
    let obsolete = ObsoleteRows::load(out)?;
    let mut compacted = Vec::new();
    let mut outcomes = Vec::new();
    for (name, folder) in table_folders(out)? {
        let files = parquet_files(&folder)?;
        let Some(newest) = files.last() else { continue };
        // Rewrite: the table's rows, deduplicated, into one staged file.
        let outcome = compact_table(&staging, &name, &files, schema_of(newest)?, &options, &obsolete)?;
        if outcome.deduplicated {
            compacted.push(name);
        }
        outcomes.push(outcome);
    }
    // Commit: every rewritten table replaces its folder at once.
    let names: Vec<&str> = compacted.iter().map(String::as_str).collect();
    let steps = staging.plan(&names, true)?;
    staging.commit(steps)?;
    Ok(outcomes)
}

/// What makes rows obsolete across the output folder: tombstones (DELETE requests) and the run
/// that last converted each input.
struct ObsoleteRows {
    deleted: Tombstones,
    reconverted: HashMap<String, String>,
}

impl ObsoleteRows {
    fn load(out: &Path) -> Result<Self> {
        let mut deleted = Tombstones::new();
        for file in parquet_files(&out.join(DELETED_TABLE))? {
            let stamp = file_stamp(&file);
            for batch in read_batches(&file)? {
                add_tombstones(&mut deleted, &batch?, &stamp);
            }
        }
        let reconverted = State::load(out)?
            .inputs
            .into_iter()
            .map(|(path, record)| (path, record.run))
            .collect();
        Ok(ObsoleteRows { deleted, reconverted })
    }
}

/// The table folders of `out`, sorted, with their names; the tool's own (`_` or `.` names) are
/// left out, and so are names that are not UTF-8 (no table of this tool has one, and a lossy
/// copy of the name would commit the table beside the original).
fn table_folders(out: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(out)?.flatten().map(|e| e.path()).collect();
    folders.sort();
    Ok(folders
        .into_iter()
        .filter_map(|folder| {
            let name = folder.file_name()?.to_str()?.to_owned();
            let table = folder.is_dir() && !name.starts_with('.') && !name.starts_with('_');
            table.then_some((name, folder))
        })
        .collect())
}

/// Rewrites one table's `files` (oldest first) as one deduplicated file in `staging`, unless it
/// has no id column to deduplicate by; says what was done.
fn compact_table(
    staging: &Staging,
    name: &str,
    files: &[PathBuf],
    schema: SchemaRef,
    options: &WriteOptions,
    obsolete: &ObsoleteRows,
) -> Result<TableOutcome> {
    let mut outcome = TableOutcome::new(name, files.len());
    let Some(rule) = Deduplication::of(name, &schema) else {
        outcome.note = Some(NO_ID_COLUMN.to_owned());
        return Ok(outcome);
    };
    let target_dir = staging.table_dir(name)?;
    crate::fsops::create_dir_all(&target_dir)?;
    let stamp = crate::sink::run_stamp(std::time::SystemTime::now());
    let target = target_dir.join(crate::sink::part_file_name(&stamp, "compacted"));
    let resource_type = resource_type_of(name, files)?;
    let none = HashMap::new();
    let superseded = Superseded {
        deleted: resource_type
            .as_ref()
            .and_then(|resource_type| obsolete.deleted.get(resource_type))
            .unwrap_or(&none),
        reconverted: &obsolete.reconverted,
    };
    if resource_type.is_none() {
        outcome.note = Some(NO_RESOURCE_TYPE.to_owned());
    }
    let schema = with_table_metadata(schema, name, resource_type.as_deref(), None);
    let (rows_before, rows_after) = deduplicate(files, &target, schema, options, rule, superseded)?;
    outcome.deduplicated = true;
    outcome.deletions_applied = resource_type.is_some();
    outcome.rows_before = Some(rows_before);
    outcome.rows_after = Some(rows_after);
    Ok(outcome)
}

/// Writes the rows of `files` (oldest first) that survive `rule` to `target`, in two passes over
/// the files: the first finds each resource's newest row, the second writes the rows kept.
/// Returns the rows before and after.
fn deduplicate(
    files: &[PathBuf],
    target: &Path,
    schema: SchemaRef,
    options: &WriteOptions,
    rule: Deduplication,
    superseded: Superseded<'_>,
) -> Result<(u64, u64)> {
    let mut newest = NewestRows::new(rule, superseded);
    let mut rows_before = 0;
    for (file_index, file) in files.iter().enumerate() {
        let stamp = file_stamp(file);
        let mut row = 0u32;
        for batch in read_batches(file)? {
            let batch = batch?;
            newest.observe(file_index, &stamp, row, &batch);
            row += batch.num_rows() as u32;
            rows_before += batch.num_rows() as u64;
        }
    }
    let rows_after = rewrite_rows(files, target, schema, options, |file_index, first_row, batch| {
        newest.keep(file_index, first_row, batch)
    })?;
    Ok((rows_before, rows_after))
}

/// The Parquet files of a table folder, oldest first (none if it does not exist).
fn parquet_files(folder: &Path) -> Result<Vec<PathBuf>> {
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
