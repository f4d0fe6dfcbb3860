//! Deduplication of appended datasets: after incremental runs the same resource may sit in several
//! Parquet files. Compaction keeps, per resource `id`, the newest: greatest `last_updated` (an
//! instant, so offsets compare correctly), then the latest input (files sort by run; later rows
//! in a file are later input), and writes the table again as one file.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use arrow_select::filter::filter_record_batch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use super::WriteOptions;
use crate::fsops;

/// Where a resource's newest row is: its `last_updated`, file and row (the order they compare in).
type Newest = (i64, u32, u32);

/// What compaction did to one table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    pub rows_before: u64,
    pub rows_after: u64,
}

/// The metadata key under which each Parquet file records the resource type of its rows.
pub const RESOURCE_TYPE_KEY: &str = "fhir2table.resource_type";

/// What makes an older row obsolete besides a newer row for the same id: a DELETE of the
/// resource in a later run, or its input file converted again by a later run.
#[derive(Debug, Default)]
pub struct Superseded {
    /// Latest run stamp of a DELETE, by id hash.
    pub deleted: HashMap<u64, String>,
    /// Latest run stamp that converted each input (`source_file`).
    pub reconverted: HashMap<String, String>,
}

impl Superseded {
    fn drops(&self, id: &str, source_file: Option<&str>, file_stamp: &str) -> bool {
        let deleted = self
            .deleted
            .get(&id_key(id))
            .is_some_and(|stamp| stamp.as_str() >= file_stamp);
        let reconverted = source_file
            .and_then(|file| self.reconverted.get(file))
            .is_some_and(|stamp| stamp.as_str() > file_stamp);
        deleted || reconverted
    }
}

/// The run stamp in a part file's name (`part-<stamp>-<pid>.parquet`).
pub fn file_stamp(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.strip_prefix("part-")
        .and_then(|rest| rest.split('-').next())
        .unwrap_or_default()
        .to_owned()
}

/// The ids of the resources of `resource_type` deleted in the tombstone files, with the latest
/// run stamp of each deletion.
pub fn tombstones(files: &[PathBuf], resource_type: &str) -> Result<HashMap<u64, String>> {
    let mut deleted: HashMap<u64, String> = HashMap::new();
    for file in files {
        let stamp = file_stamp(file);
        for batch in batches(file)? {
            let batch = batch?;
            let types = batch.column(0).as_string::<i32>();
            let ids = batch.column(1).as_string::<i32>();
            for i in 0..batch.num_rows() {
                if types.value(i) == resource_type {
                    let slot = deleted.entry(id_key(ids.value(i))).or_default();
                    if stamp > *slot {
                        *slot = stamp.clone();
                    }
                }
            }
        }
    }
    Ok(deleted)
}

/// Whether a table can be deduplicated: it needs an `id` column of strings.
pub fn can_compact(schema: &SchemaRef) -> bool {
    schema
        .field_with_name("id")
        .is_ok_and(|f| f.data_type() == &DataType::Utf8)
}

fn id_key(id: &str) -> u64 {
    crate::fhir::key_hash::text_key(id)
}

fn last_updated(batch: &RecordBatch) -> Option<&arrow_array::PrimitiveArray<TimestampMicrosecondType>> {
    let column = batch.column_by_name("last_updated")?;
    match column.data_type() {
        DataType::Timestamp(_, _) => Some(column.as_primitive::<TimestampMicrosecondType>()),
        _ => None,
    }
}

/// The `id` column (its presence is checked by [`can_compact`]).
fn id_column(batch: &RecordBatch) -> &arrow_array::StringArray {
    batch
        .column_by_name("id")
        .expect("checked by can_compact")
        .as_string::<i32>()
}

fn source_files(batch: &RecordBatch) -> Option<&arrow_array::StringArray> {
    let column = batch.column_by_name("source_file")?;
    (column.data_type() == &DataType::Utf8).then(|| column.as_string::<i32>())
}

fn batches(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(super::parquet::READ_BATCH_ROWS)
        .build()?;
    Ok(reader.map(|batch| batch.map_err(Into::into)))
}

/// Writes the deduplicated rows of `files` (oldest first) to `target`. `one_row_per_id` keeps a
/// single row per id (built-in tables); otherwise every row of the id from its newest file is kept
/// (views may give several rows per resource). Memory: one entry per distinct id (about 40 bytes).
pub fn compact_files(
    files: &[PathBuf],
    target: &Path,
    schema: SchemaRef,
    options: &WriteOptions,
    one_row_per_id: bool,
    superseded: &Superseded,
) -> Result<Compaction> {
    let mut newest: HashMap<u64, Newest> = HashMap::new();
    let mut compaction = Compaction::default();
    for (file_index, file) in files.iter().enumerate() {
        let mut row = 0u32;
        let stamp = file_stamp(file);
        for batch in batches(file)? {
            let batch = batch?;
            let ids = id_column(&batch);
            let sources = source_files(&batch);
            let updated = last_updated(&batch);
            for i in 0..batch.num_rows() {
                let this_row = row;
                row += 1;
                if superseded.drops(ids.value(i), sources.map(|s| s.value(i)), &stamp) {
                    continue;
                }
                let last_updated = updated.filter(|u| u.is_valid(i)).map_or(i64::MIN, |u| u.value(i));
                let candidate = (last_updated, file_index as u32, this_row);
                let slot = newest.entry(id_key(ids.value(i))).or_insert(candidate);
                if candidate > *slot {
                    *slot = candidate;
                }
            }
            compaction.rows_before += batch.num_rows() as u64;
        }
    }
    let output = fsops::create_file(target).with_context(|| format!("cannot create {}", target.display()))?;
    let mut writer = ArrowWriter::try_new(output, schema, Some(options.properties()))?;
    for (file_index, file) in files.iter().enumerate() {
        let mut row = 0u32;
        for batch in batches(file)? {
            let batch = batch?;
            let ids = id_column(&batch);
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|i| {
                    let Some(&(_, winner_file, winner_row)) = newest.get(&id_key(ids.value(i))) else {
                        return Some(false);
                    };
                    let this_row = row + i as u32;
                    Some(winner_file == file_index as u32 && (!one_row_per_id || winner_row == this_row))
                })
                .collect();
            row += batch.num_rows() as u32;
            let kept = filter_record_batch(&batch, &keep)?;
            compaction.rows_after += kept.num_rows() as u64;
            writer.write(&kept)?;
        }
    }
    fsops::sync_file(&writer.into_inner()?)?;
    Ok(compaction)
}
