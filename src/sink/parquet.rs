//! Parquet files: how they are written (codec, row groups), read back, and rewritten.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as ParquetCodec, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Deserialize;

use super::store::{Batches, TableWriter};
use crate::fsops;

/// The metadata key under which each Parquet file records the resource type of its rows.
pub const RESOURCE_TYPE_KEY: &str = "fhir2table.resource_type";

/// Row groups are cut at this many rows or this encoded size, whichever comes first. The writer
/// holds one row group per table in memory, so these bound its memory whatever the input size;
/// 128k rows is well inside what DuckDB, Spark and pyarrow read efficiently.
const ROW_GROUP_ROWS: usize = 128 * 1024;
const ROW_GROUP_BYTES: usize = 16 << 20;

/// Rows per batch when a finished file is read back (reference pass, compact). A string cell is at
/// most 1 MiB (larger ones become null), so 1,024 rows keep a string column of a batch under the
/// 2 GiB that Arrow's 32-bit offsets address (8,192 rows could reach 8 GiB).
const READ_BATCH_ROWS: usize = 1024;

/// The Parquet page compression codec (`--compression`, `compression`: the flag and the config
/// key take the same lowercase names; a test in src/config.rs checks that they agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd level 1: as fast as snappy here and a third smaller (see notes in README).
    #[default]
    Zstd,
    /// Snappy: fast, larger files than zstd.
    Snappy,
    /// Uncompressed pages.
    None,
}

/// How datasets are written.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub compression: Compression,
}

impl WriteOptions {
    fn properties(&self) -> WriterProperties {
        let codec = match self.compression {
            Compression::Zstd => ParquetCodec::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1 is valid")),
            Compression::Snappy => ParquetCodec::SNAPPY,
            Compression::None => ParquetCodec::UNCOMPRESSED,
        };
        WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_created_by(format!("fhir2table {}", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

/// One table's Parquet file inside a dataset folder: the local backend's [`TableWriter`].
pub(super) struct DatasetWriter {
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

impl DatasetWriter {
    /// Creates `dir` and the Parquet file `file_name` in it.
    pub(super) fn create(
        dir: &Path,
        file_name: &str,
        schema: SchemaRef,
        options: &WriteOptions,
    ) -> Result<Self> {
        fsops::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(file_name);
        let file = fsops::create_file(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let writer = ArrowWriter::try_new(file, schema, Some(options.properties()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(DatasetWriter {
            path,
            writer,
            rows: 0,
        })
    }
}

impl TableWriter for DatasetWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Completes the file: footer written, data synced to disk.
    fn finish(self: Box<Self>) -> Result<u64> {
        let file = self
            .writer
            .into_inner()
            .with_context(|| format!("cannot finish {}", self.path.display()))?;
        fsops::sync_file(&file).with_context(|| format!("cannot sync {}", self.path.display()))?;
        Ok(self.rows)
    }
}

/// The Arrow schema stored in an existing Parquet file, its metadata included.
pub fn schema_of(path: &Path) -> Result<SchemaRef> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    Ok(builder.schema().clone())
}

/// The record batches of a Parquet file, in order.
pub(super) fn read_batches(path: &Path) -> Result<Batches> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(READ_BATCH_ROWS)
        .build()?;
    Ok(Box::new(reader.map(|batch| batch.map_err(Into::into))))
}

/// Rewrites a finished Parquet file, replacing every string cell that starts with `marker` by
/// what `replace` returns for the rest of it (`None` makes the cell null). Streams batch by batch,
/// so memory stays bounded whatever the file's size. The file's schema metadata (the resource
/// type `compact` applies deletions by) is kept.
pub(super) fn rewrite_marked_strings(
    path: &Path,
    options: &WriteOptions,
    marker: char,
    mut replace: impl FnMut(&str, &str) -> Option<String>,
) -> Result<()> {
    let input = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(input)?;
    // The builder's schema carries the stored metadata; the reader's batches do not.
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(READ_BATCH_ROWS).build()?;
    let temporary = path.with_extension("parquet.tmp");
    let output =
        fsops::create_file(&temporary).with_context(|| format!("cannot create {}", temporary.display()))?;
    let mut writer = ArrowWriter::try_new(output, schema.clone(), Some(options.properties()))
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    for batch in reader {
        let batch = batch?;
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| match field.data_type() {
                DataType::Utf8 => replace_marked(column, field.name(), marker, &mut replace),
                _ => column.clone(),
            })
            .collect();
        writer
            .write(&RecordBatch::try_new(schema.clone(), columns)?)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
    }
    let finished = writer
        .into_inner()
        .with_context(|| format!("cannot finish {}", temporary.display()))?;
    fsops::sync_file(&finished).with_context(|| format!("cannot sync {}", temporary.display()))?;
    fsops::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn replace_marked(
    column: &ArrayRef,
    name: &str,
    marker: char,
    replace: &mut impl FnMut(&str, &str) -> Option<String>,
) -> ArrayRef {
    let strings = column
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("Utf8 columns are StringArrays");
    if !strings.iter().flatten().any(|value| value.starts_with(marker)) {
        return column.clone();
    }
    let replaced: StringArray = strings
        .iter()
        .map(|value| match value?.strip_prefix(marker) {
            Some(pending) => replace(name, pending),
            None => value.map(str::to_owned),
        })
        .collect();
    Arc::new(replaced)
}
