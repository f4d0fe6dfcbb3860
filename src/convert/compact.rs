//! The compaction run (`fhir2table compact`), in the same steps as a conversion: plan (open the
//! output folder, find its tables, the tombstones and the incremental state), rewrite each table
//! that can be deduplicated into the staging folder, commit them in one [`StagedRun::commit`], and
//! report what was done to each table.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use arrow_schema::SchemaRef;
use arrow_select::filter::filter_record_batch;

use crate::sink::{
    part_file_name, run_stamp, Compression, Part, RunInfo, StagedRun, Store, TableWriter, WriteOptions,
    RESOURCE_TYPE_KEY,
};
use crate::state::State;
use crate::table::builtin_tables;
use crate::table::dedup::{add_tombstones, Deduplication, NewestRows, Superseded, Tombstones};
use crate::table::deleted::DELETED_TABLE;

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
    crate::sink::check_is_output(out)?;
    let started = std::time::SystemTime::now();
    let output = crate::sink::open(out, crate::sink::format_of(out))?;
    let staging = output.stage(WriteOptions {
        compression,
        threads: 1,
    })?;
    let obsolete = ObsoleteRows::load(&*output, out)?;
    let mut compacted = Vec::new();
    let mut outcomes = Vec::new();
    for name in output.tables()? {
        let parts = output.parts(&name)?;
        let Some(newest) = parts.last() else { continue };
        // Rewrite: the table's rows, deduplicated, into one staged file.
        let schema = output.schema(newest)?;
        let outcome = compact_table(&*output, &*staging, &name, &parts, schema, &obsolete)?;
        if outcome.deduplicated {
            compacted.push(name);
        }
        outcomes.push(outcome);
    }
    // Commit: every rewritten table replaces its folder at once.
    let names: Vec<&str> = compacted.iter().map(String::as_str).collect();
    staging.commit(
        &names,
        true,
        Vec::new(),
        &RunInfo::new(started, "compact", Vec::new()),
    )?;
    Ok(outcomes)
}

/// What makes rows obsolete across the output folder: tombstones (DELETE requests) and the run
/// that last converted each input.
struct ObsoleteRows {
    deleted: Tombstones,
    reconverted: HashMap<String, String>,
}

impl ObsoleteRows {
    fn load(output: &dyn Store, out: &Path) -> Result<Self> {
        let mut deleted = Tombstones::new();
        for part in output.parts(DELETED_TABLE)? {
            let stamp = part.stamp();
            for batch in output.read(&part)? {
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

/// Rewrites one table's `parts` (oldest first) as one deduplicated part in `staging`, unless it
/// has no id column to deduplicate by; says what was done.
fn compact_table(
    output: &dyn Store,
    staging: &dyn StagedRun,
    name: &str,
    parts: &[Part],
    schema: SchemaRef,
    obsolete: &ObsoleteRows,
) -> Result<TableOutcome> {
    let mut outcome = TableOutcome::new(name, parts.len());
    let Some(rule) = Deduplication::of(name, &schema) else {
        outcome.note = Some(NO_ID_COLUMN.to_owned());
        return Ok(outcome);
    };
    let stamp = run_stamp(std::time::SystemTime::now());
    let file = part_file_name(&stamp, "compacted");
    let resource_type = resource_type_of(output, name, parts)?;
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
    // Two passes over the parts: the first finds each resource's newest row, the second writes
    // the rows kept.
    let mut newest = NewestRows::new(rule, superseded);
    let rows_before = observe_rows(output, parts, &mut newest)?;
    let writer = staging.create(name, &file, schema)?;
    let rows_after = write_kept_rows(output, parts, &newest, writer)?;
    outcome.deduplicated = true;
    outcome.deletions_applied = resource_type.is_some();
    outcome.rows_before = Some(rows_before);
    outcome.rows_after = Some(rows_after);
    Ok(outcome)
}

/// The first pass of a deduplication: shows `newest` every row of `parts` (oldest first);
/// returns how many there are.
fn observe_rows(output: &dyn Store, parts: &[Part], newest: &mut NewestRows<'_>) -> Result<u64> {
    let mut rows = 0;
    for (part_index, part) in parts.iter().enumerate() {
        let stamp = part.stamp();
        let mut row = 0u32;
        for batch in output.read(part)? {
            let batch = batch?;
            newest.observe(part_index, &stamp, row, &batch);
            row += batch.num_rows() as u32;
            rows += batch.num_rows() as u64;
        }
    }
    Ok(rows)
}

/// The second pass: writes the rows of `parts` that `newest` keeps with `writer`, and finishes
/// it; returns how many were written.
fn write_kept_rows(
    output: &dyn Store,
    parts: &[Part],
    newest: &NewestRows<'_>,
    mut writer: Box<dyn TableWriter>,
) -> Result<u64> {
    for (part_index, part) in parts.iter().enumerate() {
        let mut row = 0u32;
        for batch in output.read(part)? {
            let batch = batch?;
            let kept = filter_record_batch(&batch, &newest.keep(part_index, row, &batch))?;
            row += batch.num_rows() as u32;
            writer.write(&kept)?;
        }
    }
    writer.finish()
}

/// The resource type of a table's rows, for applying tombstones: recorded in the metadata of its
/// parts (the newest first; parts rewritten by older versions lost it), else known for the
/// built-in tables.
fn resource_type_of(output: &dyn Store, table: &str, parts: &[Part]) -> Result<Option<String>> {
    for part in parts.iter().rev() {
        if let Some(resource_type) = output.schema(part)?.metadata().get(RESOURCE_TYPE_KEY) {
            return Ok(Some(resource_type.clone()));
        }
    }
    Ok(builtin_tables(1)
        .iter()
        .find(|builtin| builtin.name() == table)
        .map(|builtin| builtin.source_resource_type().to_owned()))
}
