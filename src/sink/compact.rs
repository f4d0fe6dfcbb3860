//! The sink's part of compaction: reading a table's Parquet files back, batch by batch, and
//! writing the rows that are kept to one new file. Which rows are kept is a table rule (see
//! `table::dedup`), handed in by the caller.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::SchemaRef;
use arrow_select::filter::filter_record_batch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

use super::WriteOptions;
use crate::fsops;

/// The metadata key under which each Parquet file records the resource type of its rows.
pub const RESOURCE_TYPE_KEY: &str = "fhir2table.resource_type";
/// The metadata key under which each Parquet file records the name of its table.
pub const TABLE_KEY: &str = "fhir2table.table";
/// The metadata key under which a built-in table's files record its contract version.
pub const CONTRACT_KEY: &str = "fhir2table.contract";

/// A run's stamp for part file names: its start in UTC to the microsecond, always with six
/// fraction digits and no separators (`20261130T052000.123456Z`). Every writer uses it, so
/// stamps compare as text in time order.
pub fn run_stamp(time: std::time::SystemTime) -> String {
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let whole_seconds = crate::fhir::format_timestamp(since_epoch.as_secs() as i64 * 1_000_000);
    let seconds = whole_seconds.trim_end_matches('Z').replace(['-', ':'], "");
    format!("{seconds}.{:06}Z", since_epoch.subsec_micros())
}

/// The name of a table's part file: `part-<stamp>-<tag>.parquet`, where the stamp is the run's
/// start (`YYYYMMDDTHHMMSS[.ffffff]Z`, so names sort oldest first in a dataset) and the tag tells
/// runs of the same moment apart (a pid, or `compacted`). [`file_stamp`] reads the stamp back.
pub fn part_file_name(stamp: &str, tag: &str) -> String {
    format!("part-{stamp}-{tag}.parquet")
}

/// The run stamp in a part file's name (see [`part_file_name`]).
pub fn file_stamp(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.strip_prefix("part-")
        .and_then(|rest| rest.split('-').next())
        .unwrap_or_default()
        .to_owned()
}

/// The record batches of a Parquet file, in order.
pub fn read_batches(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(super::parquet::READ_BATCH_ROWS)
        .build()?;
    Ok(reader.map(|batch| batch.map_err(Into::into)))
}

/// Writes the rows of `files` (in order) that `keep` selects to the new file `target`, synced,
/// and returns how many were written. `keep` gets each batch with its file's position in
/// `files` and the number of that file's rows before the batch.
pub fn rewrite_rows(
    files: &[PathBuf],
    target: &Path,
    schema: SchemaRef,
    options: &WriteOptions,
    mut keep: impl FnMut(usize, u32, &RecordBatch) -> BooleanArray,
) -> Result<u64> {
    let output = fsops::create_file(target).with_context(|| format!("cannot create {}", target.display()))?;
    let properties = options.properties(&schema);
    let mut writer = ArrowWriter::try_new(output, schema.clone(), Some(properties))?;
    let mut written = 0;
    for (file_index, file) in files.iter().enumerate() {
        let mut row = 0u32;
        for batch in read_batches(file)? {
            let batch = batch?;
            let kept = filter_record_batch(&batch, &keep(file_index, row, &batch))?;
            let kept = super::parquet::conform(kept, &schema)?;
            row += batch.num_rows() as u32;
            written += kept.num_rows() as u64;
            writer.write(&kept)?;
        }
    }
    super::parquet::finish_file(writer, target)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_stamps_sort_as_text_in_time_order() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |micros: u64| run_stamp(UNIX_EPOCH + Duration::from_micros(micros));
        assert_eq!(at(1_795_478_400_000_000), "20261124T000000.000000Z");
        assert_eq!(at(1_795_478_400_500_000), "20261124T000000.500000Z");
        assert!(at(1_795_478_400_000_000) < at(1_795_478_400_000_001));
        assert!(at(1_795_478_399_999_999) < at(1_795_478_400_000_000));
    }

    #[test]
    fn part_file_names_give_their_stamp_back() {
        let name = part_file_name("20261130T052000.123456Z", "4242");
        assert_eq!(name, "part-20261130T052000.123456Z-4242.parquet");
        assert_eq!(file_stamp(Path::new(&name)), "20261130T052000.123456Z");
        let compacted = part_file_name("20261130T052000Z", "compacted");
        assert_eq!(file_stamp(Path::new(&compacted)), "20261130T052000Z");
    }
}
