//! Parquet files: how they are written (codec, row groups), read back, and rewritten.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowWriter, ARROW_SCHEMA_META_KEY};
use parquet::basic::{Compression as ParquetCodec, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, SchemaDescPtr, TypePtr};
use serde::Deserialize;

use super::absent::{
    leaf_kinds, own_paths, path_of_no_leaf, AbsentChunks, HeldRange, Kind, NullChunkProperties, Plan,
};
use super::leaves::Leaves;
use super::page_codec::Zstd;
use super::parquet_schema::parquet_schema;
use super::store::{Batches, TableWriter};
use super::wide_file::{encode_reached, ClosedChunk, FooterFrame, WideFile};
use crate::fsops;
use crate::threads::on_threads;

/// The metadata key under which each Parquet file records the resource type of its rows.
pub const RESOURCE_TYPE_KEY: &str = "fhir2table.resource_type";
/// The metadata key under which each Parquet file records the name of its table.
pub const TABLE_KEY: &str = "fhir2table.table";
/// The metadata key under which a built-in table's files record its contract version.
pub const CONTRACT_KEY: &str = "fhir2table.contract";

/// Row groups are cut at this many rows or this encoded size, whichever comes first. The writer
/// holds one row group per table in memory, so these bound its memory whatever the input size;
/// 128k rows is well inside what DuckDB, Spark and pyarrow read efficiently. A wide table's row
/// groups are cut at this many rows only: they are the rows it held ([`WIDE_HELD_BYTES`] of
/// Arrow memory and a batch at most), encoded a column at a time ([`encode_row_group`]), so an
/// encoded row group is about the size of the held rows' memory (more where levels take more
/// room than Arrow's bits, as for booleans under lists).
const ROW_GROUP_ROWS: usize = 128 * 1024;
const ROW_GROUP_BYTES: usize = 16 << 20;

/// Rows per batch when a finished file is read back (reference pass, compact). A string cell is at
/// most 1 MiB (larger ones become null), so 1,024 rows keep a string column of a batch under the
/// 2 GiB that Arrow's 32-bit offsets address (8,192 rows could reach 8 GiB).
const READ_BATCH_ROWS: usize = 1024;

/// The Parquet page compression codec (`--compression`, `compression`: the flag and the config
/// key take the same lowercase names; a test in src/config.rs checks that they agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, clap::ValueEnum)]
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
    /// How many threads encode a wide table's row group (the run's `--threads`). The run's one
    /// writer thread encodes every table, and on `--resources all` it is the bottleneck: the
    /// workers wait for it (see [`encode_row_group`]).
    pub threads: usize,
}

/// Field metadata that asks for a lookup index on a column: a Parquet bloom filter per row group,
/// which DuckDB, Spark and Trino use to skip row groups for `column = value`.
pub const LOOKUP_INDEX_KEY: &str = "fhir2table.lookup";

/// False-positive rate of the lookup bloom filters: a row group without the value is read anyway
/// once in a hundred times. parquet-rs sizes each filter for a full row group and then folds it
/// down to the distinct values it saw, so few distinct values give a small filter.
const LOOKUP_FALSE_POSITIVES: f64 = 0.01;

/// Parquet key-value metadata key: the tool version that wrote the file.
pub const TOOL_VERSION_KEY: &str = "fhir2table.version";

/// Spark decides from this key whether a file's dates and timestamps before 1582-10-15 were
/// written in the old hybrid calendar: a file without it is read by the session's
/// `spark.sql.parquet.datetimeRebaseModeInRead`, which in Spark 3.x fails the whole scan, while a
/// version of 3.0.0 or later (and no `org.apache.spark.legacyDateTime` key) tells Spark the values
/// are proleptic Gregorian, as Arrow and this tool write them. Read as a string comparison.
const SPARK_CALENDAR_KEY: &str = "org.apache.spark.version";
const SPARK_PROLEPTIC_GREGORIAN: &str = "3.0.0";

impl WriteOptions {
    /// Writer settings for a file of `schema`. Every `fhir2table.*` entry of the schema's
    /// metadata (table, resource type, contract) is also written as Parquet key-value metadata,
    /// which Spark, DuckDB and Trino read while none of them reads the `ARROW:schema` blob; the
    /// tool version is this binary's. List columns are written as the Parquet spec's
    /// `list.element` (pyiceberg and other spec-strict readers need it).
    fn properties(&self, schema: &Schema) -> WriterProperties {
        self.properties_for(schema, None)
    }

    /// [`WriteOptions::properties`] for a file whose first batch is `first`. A wide table
    /// (more than [`WIDE_TABLE_LEAVES`] leaf columns: the lossless resource tables, thousands
    /// each) compresses only the columns its first batch reaches (see [`filled_leaves`]) and
    /// leaves the rest uncompressed: the Parquet writer keeps a compressor and a decompressor
    /// context per compressed column of a row group, which for 5 000-column tables cost
    /// gigabytes and a fifth of the run, while most of those columns are null under null
    /// parents. A column the first batch does not reach but a later one does is still written
    /// whole, only uncompressed. Those columns also get row group statistics only, no page
    /// index: the writer keeps every row group's column and offset indexes until the file ends,
    /// for thousands of columns per row group. Row group statistics stay on every column: their
    /// definition level histograms tell `export` which columns to read (`reached.rs`), which
    /// made it four times faster; turning them off saved 5-10 MB of footer metadata held
    /// while writing (500 MB of Bundles: 311 -> 306 MB peak RSS). The next files of a wide
    /// table's part keep the settings of its first file (see `WideFileSettings`). The null
    /// chunks of the leaves no row of a row group reaches are not written by column writers and
    /// take the run's codec where it makes them smaller ([`null_chunk_properties`]).
    pub(super) fn properties_for(&self, schema: &Schema, first: Option<&RecordBatch>) -> WriterProperties {
        self.properties_with_own_leaves(schema, first).0
    }

    /// The Parquet codec of the run's `--compression`.
    pub(super) fn codec(&self) -> ParquetCodec {
        match self.compression {
            Compression::Zstd => ParquetCodec::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1 is valid")),
            Compression::Snappy => ParquetCodec::SNAPPY,
            Compression::None => ParquetCodec::UNCOMPRESSED,
        }
    }

    /// [`WriteOptions::properties_for`], and per leaf column (in schema order) whether the
    /// properties set anything for it alone: a wide table's filled leaves and a lookup column's
    /// bloom filter. Every other leaf has the file's defaults, so [`leaf_kinds`] looks up only
    /// these: looking up each of a resource table's thousands of leaves by its path hashed the
    /// path six times, 9% of a `--resources all` run on a small input.
    fn properties_with_own_leaves(
        &self,
        schema: &Schema,
        first: Option<&RecordBatch>,
    ) -> (WriterProperties, Vec<bool>) {
        let mut own = vec![false; leaf_count(schema.fields())];
        let codec = self.codec();
        let mut builder = WriterProperties::builder();
        let mut first_leaf = 0;
        for field in schema.fields() {
            let leaves = super::absent::leaf_count(field.data_type());
            first_leaf += leaves;
            if field.metadata().contains_key(LOOKUP_INDEX_KEY) {
                own[first_leaf - leaves..first_leaf].fill(true);
                let column = ColumnPath::from(field.name().as_str());
                builder = builder
                    .set_column_bloom_filter_enabled(column.clone(), true)
                    .set_column_bloom_filter_fpp(column.clone(), LOOKUP_FALSE_POSITIVES)
                    .set_column_bloom_filter_max_ndv(column, ROW_GROUP_ROWS as u64);
            }
        }
        let mut default_codec = codec;
        if let Some(first) = first {
            let (mut filled, mut leaves) = (Vec::new(), 0);
            for (field, column) in schema.fields().iter().zip(first.columns()) {
                let mut path = vec![field.name().clone()];
                leaves += filled_leaves(field, column.as_ref(), &mut path, leaves, &mut filled);
            }
            if leaves > WIDE_TABLE_LEAVES {
                default_codec = ParquetCodec::UNCOMPRESSED;
                builder = builder
                    .set_dictionary_enabled(false)
                    .set_statistics_enabled(EnabledStatistics::Chunk);
                for (leaf, path) in filled {
                    own[leaf] = true;
                    builder = builder
                        .set_column_compression(path.clone(), codec)
                        .set_column_dictionary_enabled(path.clone(), true)
                        .set_column_statistics_enabled(path, EnabledStatistics::Page);
                }
            }
        }
        let properties = builder
            .set_compression(default_codec)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_created_by(format!("fhir2table {}", env!("CARGO_PKG_VERSION")))
            .set_coerce_types(true)
            .set_key_value_metadata(Some(key_value_metadata(schema)))
            .build();
        (properties, own)
    }
}

/// Hands the pages of freed memory back to the system (glibc's `malloc_trim`). A wide table's
/// row group frees tens of MB at once, made in small pieces by the worker threads and freed by
/// the writer's; glibc keeps such pages in its per-thread arenas, so without this the resident
/// memory stayed 70-190 MB above the heap (500 MB of Bundles, of NDJSON).
///
/// Not after every row group, though: a trim walks every arena, and the pages it hands back are
/// faulted in again by the next batches. Trimming after every row group was 3-4% of the CPU time
/// of `--resources all` and doubled its system time; once per [`TRIM_AFTER_FREED_BYTES`] of
/// freed row groups (`freed`: the Arrow memory of the batches just written, now freed) keeps
/// most of the saving in memory. A `convert` run with resource tables allocates them with
/// mimalloc (`crate::allocator`), which purges freed pages itself; the trim then hands back only
/// what glibc still holds (the C libraries' blocks), and `compact` rewrites wide tables under
/// glibc.
fn release_free_memory(freed: usize) {
    static FREED: AtomicUsize = AtomicUsize::new(0);
    let freed_since = FREED.fetch_add(freed, Ordering::Relaxed) + freed;
    if freed_since < TRIM_AFTER_FREED_BYTES {
        return;
    }
    // What other threads added meanwhile stays counted.
    FREED.fetch_sub(freed_since, Ordering::Relaxed);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds unused; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// See [`release_free_memory`]. Measured with `--resources all`, 2 threads: on 500 MB of
/// Bundles, trimming after every row group took 3.19-3.27 s and peaked at 240 MB; after 64 MB
/// freed, 2.93-3.07 s and 254-259 MB; after 96 MB, 2.96-2.98 s and 263-265 MB.
const TRIM_AFTER_FREED_BYTES: usize = 64 << 20;

/// Tables with more leaf columns than this compress only the columns their part's first batch
/// reaches (see [`WriteOptions::properties_for`]); the built-in tables and views have a few
/// dozen. Below it, a row group's column chunks cost little next to its rows (the run's memory
/// budget weighs a table by its leaves from here up: `convert/worker.rs`).
pub const WIDE_TABLE_LEAVES: usize = 512;

/// The Arrow memory of held batches at which a wide table writes them out as a row group
/// (besides [`ROW_GROUP_ROWS`], and the run's budget over all its writers).
const WIDE_HELD_BYTES: usize = 32 << 20;

/// About how many rows times reached leaf columns a wide table hands the Parquet writer at once.
/// The writer works out the levels of every leaf under a column of the slice it is given before
/// it writes any (two bytes per level, each list item a level, null members too, and the
/// indexes of the values): for a batch of 5 000 rows of a resource table, all its leaves, that
/// came to 80 MB. Only the reached leaves are handed over, a few hundred, so a slice is mostly a
/// whole held batch, whose levels then take about as much as its Arrow arrays.
const WIDE_WRITE_LEVELS: usize = 8 << 20;

/// The memory of a batch's buffers, each counted once: the columns of a lossless table that a
/// batch does not reach share one zeroed buffer, which `get_array_memory_size` counts per column.
pub fn distinct_buffer_bytes(batch: &RecordBatch) -> usize {
    // Each buffer's address and size, counted once at the end (see `sum_distinct`).
    type Seen = Vec<(usize, usize)>;
    fn count(buffer: &arrow_buffer::Buffer, seen: &mut Seen) {
        seen.push((buffer.data_ptr().as_ptr() as usize, buffer.capacity()));
    }
    // Structs and lists are walked as arrays: `to_data` on a struct of thousands of columns
    // copies the description of every one of them, for each batch.
    fn visit(array: &dyn Array, seen: &mut Seen, recent: &mut Recent) {
        if recent.visited(array) {
            return;
        }
        if let Some(nulls) = array.nulls() {
            count(nulls.buffer(), seen);
        }
        match array.data_type() {
            DataType::Struct(_) => {
                for column in array.as_struct().columns() {
                    visit(column.as_ref(), seen, recent);
                }
            }
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                count(list.offsets().inner().inner(), seen);
                visit(list.values().as_ref(), seen, recent);
            }
            // The leaf types of the tables, read without `to_data`, which builds an
            // `ArrayData` per leaf: thousands per batch of a resource table.
            DataType::Utf8 => {
                let strings = array.as_string::<i32>();
                count(strings.offsets().inner().inner(), seen);
                count(strings.values(), seen);
            }
            DataType::Boolean => count(array.as_boolean().values().inner(), seen),
            DataType::Int32 => count(array.as_primitive::<Int32Type>().values().inner(), seen),
            DataType::Decimal128(_, _) => {
                count(array.as_primitive::<Decimal128Type>().values().inner(), seen)
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => count(
                array.as_primitive::<TimestampMicrosecondType>().values().inner(),
                seen,
            ),
            _ => {
                for buffer in array.to_data().buffers() {
                    count(buffer, seen);
                }
            }
        }
    }
    let mut seen = Seen::with_capacity(4 * batch.num_columns());
    let mut recent = Recent::default();
    for column in batch.columns() {
        visit(column.as_ref(), &mut seen, &mut recent);
    }
    sum_distinct(&seen)
}

/// The arrays a walk of a batch met last. The null columns of a resource table's batch are a
/// few arrays, one per leaf type, each the column of thousands of leaves (`NullCache` in
/// `table/lossless/rows.rs`): an array met again is skipped whole, its buffers counted the
/// first time. Eight are enough for the leaf types a resource table has.
#[derive(Default)]
struct Recent {
    arrays: [usize; 8],
    next: usize,
}

impl Recent {
    /// Whether `array` was met lately; it is remembered if not.
    fn visited(&mut self, array: &dyn Array) -> bool {
        let address = array as *const dyn Array as *const () as usize;
        if self.arrays.contains(&address) {
            return true;
        }
        self.arrays[self.next] = address;
        self.next = (self.next + 1) % self.arrays.len();
        false
    }
}

/// The sum of the sizes of `buffers` (address, size), each address counted once. An open
/// addressing table of the addresses, twice as many slots as buffers: sorting the tens of
/// thousands of buffers of a resource table's batch took half of `distinct_buffer_bytes`, and
/// that was 1.5% of the instructions of `--resources all` on 500 MB of Bundles, on the writer
/// thread (the standard hash set, with its keyed hash, cost twice as much as the sort).
fn sum_distinct(buffers: &[(usize, usize)]) -> usize {
    let slots = (2 * buffers.len()).next_power_of_two().max(2);
    let shift = usize::BITS - slots.trailing_zeros();
    // An empty slot holds no address: buffers start at non-null, aligned addresses.
    let mut table = vec![0usize; slots];
    let mut total = 0;
    for &(address, size) in buffers {
        // Fibonacci hashing: the top bits of the address times 2^64 / phi.
        let mut slot = (address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) as usize >> shift;
        loop {
            match table[slot] {
                0 => {
                    table[slot] = address;
                    total += size;
                    break;
                }
                taken if taken == address => break,
                _ => slot = (slot + 1) & (slots - 1),
            }
        }
    }
    total
}

/// How many leaf (Parquet) columns `fields` make.
fn leaf_count(fields: &Fields) -> usize {
    fields
        .iter()
        .map(|field| super::absent::leaf_count(field.data_type()))
        .sum()
}

/// The leaf columns under `field` that `column` fills, as their index among the file's leaves
/// (`field`'s first is `first_leaf`) and their Parquet path (a list's items are
/// `list.element`, as the writer names them), pushed onto `filled`; returns how many leaf
/// columns `field` has. A leaf is filled when every struct and list above it holds something. Those
/// columns carry values or levels worth compressing; the others are runs of one null level that
/// need no codec. `path` is the path down to `field`, itself included (a stack the walk pushes
/// and pops: the leaves of a resource table number thousands, and only a few hundred are filled).
///
/// This differs from `absent::reach` on purpose. Here a leaf counts as filled when every struct
/// above it has some non-null slot and every list some item, whichever rows those are, and its
/// own nulls count too: the answer only picks writer settings from the first batch, where a
/// column compressed without need costs a little speed, never data. `reach` decides which
/// leaves the Arrow writer writes, so it follows the validity of each slot down the path.
fn filled_leaves(
    field: &Field,
    column: &dyn Array,
    path: &mut Vec<String>,
    first_leaf: usize,
    filled: &mut Vec<(usize, ColumnPath)>,
) -> usize {
    match field.data_type() {
        DataType::Struct(children) => {
            let structs = column.as_struct();
            if structs.null_count() == structs.len() {
                // Nothing below is filled: the leaves are counted without walking the arrays.
                return super::absent::leaf_count(field.data_type());
            }
            let mut leaves = 0;
            for (child, child_column) in children.iter().zip(structs.columns()) {
                path.push(child.name().clone());
                leaves += filled_leaves(child, child_column.as_ref(), path, first_leaf + leaves, filled);
                path.pop();
            }
            leaves
        }
        DataType::List(item) => {
            let values = column.as_list::<i32>().values();
            if values.is_empty() {
                return super::absent::leaf_count(field.data_type());
            }
            path.extend(["list".to_owned(), item.name().clone()]);
            let leaves = filled_leaves(item, values.as_ref(), path, first_leaf, filled);
            path.truncate(path.len() - 2);
            leaves
        }
        _ => {
            if !column.is_empty() {
                filled.push((first_leaf, ColumnPath::new(path.clone())));
            }
            1
        }
    }
}

fn key_value_metadata(schema: &Schema) -> Vec<KeyValue> {
    let mut entries: Vec<KeyValue> = schema
        .metadata()
        .iter()
        .filter(|(key, _)| key.starts_with("fhir2table.") && key.as_str() != TOOL_VERSION_KEY)
        .map(|(key, value)| KeyValue::new(key.clone(), value.clone()))
        .collect();
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    entries.push(KeyValue::new(
        TOOL_VERSION_KEY.to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    ));
    entries.push(KeyValue::new(
        SPARK_CALENDAR_KEY.to_owned(),
        SPARK_PROLEPTIC_GREGORIAN.to_owned(),
    ));
    entries
}

/// Writes the footer of a Parquet file, makes its floating-point statistics readable by every
/// engine (see `footer.rs`) and syncs it to disk. Every Parquet file the tool writes ends here.
pub(crate) fn finish_file(mut writer: ArrowWriter<File>, path: &Path) -> Result<()> {
    let metadata = writer
        .finish()
        .with_context(|| format!("cannot finish {}", path.display()))?;
    finish_written(writer.inner_mut(), &metadata, path)
}

/// The end of [`finish_file`], once the footer is written: float orders, sync.
fn finish_written(
    file: &mut File,
    metadata: &parquet::file::metadata::ParquetMetaData,
    path: &Path,
) -> Result<()> {
    super::footer::declare_float_orders_for_all_readers(path, file, metadata)
        .with_context(|| format!("cannot finish {}", path.display()))?;
    fsops::sync_file(file).with_context(|| format!("cannot sync {}", path.display()))
}

/// What a wide table's row group is made of: the held batches, the slices of them that are
/// its rows (in order, each a write), the file's settings, the plan of reached leaves and the
/// schema cut down to them.
struct RowGroupInput<'a> {
    schema: &'a SchemaRef,
    held: &'a [RecordBatch],
    rows: &'a [HeldRange],
    props: &'a WriterPropertiesPtr,
    /// The settings the reached leaves' column writers encode with: `props` without zstd
    /// (`WideFileSettings::encoded_with`).
    encoded_with: &'a WriterPropertiesPtr,
    plan: &'a Plan,
}

/// Encodes a wide table's row group and appends it to `file`: each top-level column is a unit of
/// work on `threads` threads (widest first, from a shared queue), which makes the column
/// writers of its reached leaves, writes every slice of the row group into them, closes them
/// (compressing their pages with the thread's zstd context: `page_codec.rs`) and makes the null
/// chunks of its other leaves (`absent`, one per thread). The chunks are then appended in
/// schema order.
///
/// Why a column at a time rather than a slice at a time for all columns: a column's writers
/// live only while its unit runs, so their encoders' state (dictionaries, pages not yet
/// compressed, compression contexts) is held for one column per thread rather than for every
/// reached leaf of the row group; the threads meet once per row group instead of once per
/// slice; and a column's writers stay warm in the cache from its first slice to its last.
fn encode_row_group<'a>(
    file: &mut WideFile,
    input: RowGroupInput<'_>,
    absent: impl Fn() -> AbsentChunks<'a> + Sync,
    threads: usize,
) -> Result<()> {
    let RowGroupInput {
        schema,
        held,
        rows,
        props,
        encoded_with,
        plan,
    } = input;
    let file_leaves = file.leaves().clone();
    let row_group = file.row_groups();
    let mut closed: Vec<Vec<ClosedChunk>> = (0..plan.columns()).map(|_| Vec::new()).collect();
    let mut jobs = Vec::with_capacity(plan.columns());
    let mut first_leaf = 0;
    for (position, slot) in closed.iter_mut().enumerate() {
        let leaves = plan.reached_in(position).count();
        jobs.push((position, first_leaf, leaves, slot));
        first_leaf += leaves;
    }
    anyhow::ensure!(
        first_leaf == file_leaves.len(),
        "the plan's leaves and the file's differ"
    );
    jobs.sort_by_key(|&(position, _, leaves, _)| std::cmp::Reverse((plan.reached_leaves(position), leaves)));
    on_threads(
        threads,
        jobs,
        || (absent(), Zstd::default()),
        |(absent, zstd), (position, first_leaf, leaves, slot)| {
            let field = &schema.fields()[position];
            let mut writers = Vec::new();
            let mut descr = None;
            if plan.reached_leaves(position) > 0 {
                for (at, (batch, range)) in rows.iter().enumerate() {
                    let column = held[*batch].column(position).slice(range.start, range.len());
                    let (part, column) = plan
                        .reached_part(position, field, &column)?
                        .context("a column with reached leaves has a reached part")?;
                    if at == 0 {
                        let (made, made_for) = column_writers(encoded_with, part.clone(), row_group)?;
                        anyhow::ensure!(
                            made.len() == plan.reached_leaves(position),
                            "{}: leaves and column writers differ",
                            field.name()
                        );
                        (writers, descr) = (made, Some(made_for));
                    }
                    let leaf_columns = compute_leaves(&part, &column)?;
                    anyhow::ensure!(
                        leaf_columns.len() == writers.len(),
                        "{}: leaves and column writers differ",
                        field.name()
                    );
                    for (writer, leaf) in writers.iter_mut().zip(leaf_columns) {
                        writer.write(&leaf)?;
                    }
                }
            }
            let closed = writers
                .into_iter()
                .map(|writer| writer.close())
                .collect::<parquet::errors::Result<Vec<_>>>()?;
            let encoded = match descr {
                Some(descr) => encode_reached(closed, descr, encoded_with, props, zstd, row_group)?,
                None => Vec::new(),
            };
            slot.reserve_exact(leaves);
            let mut own = encoded.into_iter();
            for (index, reached) in plan.reached_in(position).enumerate() {
                let chunk = if reached {
                    ClosedChunk::Reached(Box::new(own.next().context("fewer column writers than leaves")?))
                } else {
                    let leaf = first_leaf + index;
                    let (pages, template) = absent.chunk(position, index, leaf, &file_leaves)?;
                    ClosedChunk::Absent(pages, template)
                };
                slot.push(chunk);
            }
            anyhow::ensure!(own.next().is_none(), "more column writers than leaves");
            Ok(())
        },
    )?;
    let row_count = rows.iter().map(|(_, range)| range.len()).sum();
    file.append_row_group(closed.into_iter().flatten().collect(), row_count)
}

/// The column writers of one top-level column's reached leaves (`part`, the column cut down to
/// them), for row group `row_group`, and the schema they write (that column alone). Only the
/// reached leaves get one: the Arrow writer's factory makes a writer for every leaf of its
/// schema, for a resource table thousands that the chunks of `absent.rs` leave unused (40 MB at
/// the peak and 6% of the time of `--resources all` on 500 MB of Bundles). Its leaves' names,
/// types and levels are the file's own, which `WideFile::append_row_group` checks as each
/// chunk is appended.
fn column_writers(
    props: &WriterPropertiesPtr,
    part: FieldRef,
    row_group: usize,
) -> Result<(Vec<ArrowColumnWriter>, SchemaDescPtr)> {
    let alone = Arc::new(Schema::new(vec![part]));
    let parquet_schema = parquet_schema(&alone, props.coerce_types())?;
    let cut = SerializedFileWriter::new(std::io::sink(), parquet_schema, props.clone())?;
    let writers = ArrowRowGroupWriterFactory::new(&cut, alone).create_column_writers(row_group)?;
    // A copy shares the column descriptors the writers were made with.
    Ok((writers, Arc::new(cut.schema_descr().clone())))
}

/// One table's Parquet file inside a dataset folder: the local backend's [`TableWriter`].
pub(super) struct DatasetWriter {
    path: PathBuf,
    /// The file until its first batch comes: the writer's settings depend on it (on a wide
    /// table's next files, they are the first file's: see [`WideFileSettings`]).
    file: Option<File>,
    writer: Option<ArrowWriter<File>>,
    /// A wide table's file writer, in place of `writer`: its row groups are encoded column by
    /// column on several threads.
    columns: Option<WideFile>,
    schema: SchemaRef,
    options: WriteOptions,
    rows: u64,
    /// The schema's leaf columns: a column chunk each per row group.
    leaves: usize,
    /// Whether the table has more than [`WIDE_TABLE_LEAVES`] leaf columns: its batches are then
    /// held (`held`) and written a whole row group at a time (see [`DatasetWriter::write_held`]).
    wide: bool,
    /// A wide table's batches not yet written, and their Arrow memory.
    held: Vec<RecordBatch>,
    held_bytes: usize,
    /// The folder and the name of the first file: a wide table goes on in a next file
    /// (`<name>_000001.parquet`, ...) once its file has [`WIDE_FILE_CHUNKS`] column chunks.
    dir: PathBuf,
    file_name: String,
    /// Files of this part completed so far, and column chunks in the open one.
    completed_files: usize,
    chunks_in_file: usize,
    /// The part's earlier file whose footer is being written on a thread of its own (see
    /// [`DatasetWriter::complete_open_file`]); joined before the next one and by
    /// [`TableWriter::finish`].
    finishing: Vec<std::thread::JoinHandle<Result<()>>>,
    /// [`WIDE_FILE_CHUNKS`], [`ROW_GROUP_ROWS`] and [`WIDE_WRITE_LEVELS`], but for tests.
    chunks_per_file: usize,
    row_group_rows: usize,
    write_levels: usize,
    /// The held rows at which they are written out: [`ROW_GROUP_ROWS`], but for the test hook.
    held_rows_limit: usize,
    /// A wide table's file settings, from its first file: the next files of the part take them
    /// as they are.
    settings: Option<WideFileSettings>,
}

/// What every file of a wide table's part shares, worked out once from its first file. Working
/// the writer settings and schema out again from each file's first batch converted and encoded
/// the schema of thousands of columns each time (5% of the CPU time of `--resources all`, over
/// 26 files), and looking each leaf's settings up by its path for every row group hashed
/// thousands of paths a few times over (2%).
struct WideFileSettings {
    /// The writer settings, without their key-value metadata (the `ARROW:schema` entry among
    /// it), which `frame` holds encoded.
    properties: WriterPropertiesPtr,
    /// The leaf columns of the Parquet schema, which every file of the part shares
    /// (`wide_file.rs`), made once per table rather than once per file, and kept compact
    /// (`leaves.rs`) rather than as the crate's descriptors. The next files are made from them
    /// and `properties` alone, without an Arrow writer.
    leaves: Arc<Leaves>,
    /// The settings the null chunks of the leaves no row of a row group reaches are encoded
    /// with (`absent.rs`): `properties` with the run's codec for every column, or with none
    /// where that does not make a chunk smaller ([`NullChunkProperties`]). Those leaves are left
    /// uncompressed in `properties` so that the Parquet writer keeps no codec per column
    /// writer; a null chunk is encoded once per group of leaves and its pages shared, so it
    /// costs one compression (and one encoding more where that does not make it smaller), and
    /// its bit-packed levels (one per row or list item under a node that rows do reach) were
    /// two thirds of the bytes of the resource tables (500 MB of Bundles: 80 MB of the 122 MB
    /// of Parquet the run wrote).
    null_properties: NullChunkProperties,
    /// The settings the column writers of the leaves rows reach encode with: `properties`, but
    /// with no codec where that is zstd, whose pages are compressed by `page_codec.rs` with a
    /// context per thread and row group instead of one per column writer (see there).
    encoded_with: WriterPropertiesPtr,
    /// Each leaf's settings in `null_properties.compressed`, as `absent.rs` groups leaves by
    /// them.
    kinds: Arc<[Kind]>,
    /// Whether each leaf has a bloom filter.
    bloom_filtered: Vec<bool>,
    /// The footer's parts that do not depend on the row groups, shared by the part's files.
    frame: Arc<FooterFrame>,
}

impl WideFileSettings {
    /// The settings of a file of schema `root` (its leaves `leaves`) written with `properties`,
    /// which set something for the leaves `own` marks alone (all of them when `own` does not
    /// cover the file's leaves).
    fn of(
        properties: &WriterPropertiesPtr,
        root: &TypePtr,
        leaves: Leaves,
        own: &[bool],
        codec: ParquetCodec,
    ) -> Result<Self> {
        let frame = Arc::new(FooterFrame::of(root, &leaves, properties)?);
        // The footer frame holds the key-value metadata from here on; row groups never read it.
        let properties = without_key_value_metadata(properties);
        let own = (own.len() == leaves.len()).then_some(own);
        // The paths of the leaves that may have settings of their own in `properties`.
        let paths = own_paths(&leaves, own);
        let null_properties = null_chunk_properties(&properties, codec, paths.iter().flatten());
        let bloom_by_default = properties.bloom_filter_properties(&path_of_no_leaf()).is_some();
        let bloom_filtered = paths
            .iter()
            .map(|path| match path {
                None => bloom_by_default,
                Some(path) => properties.bloom_filter_properties(path).is_some(),
            })
            .collect();
        let encoded_with = match codec {
            ParquetCodec::ZSTD(_) => null_properties.uncompressed.clone(),
            _ => properties.clone(),
        };
        Ok(WideFileSettings {
            encoded_with,
            kinds: leaf_kinds(&leaves, &null_properties.compressed, &paths),
            bloom_filtered,
            properties,
            null_properties,
            leaves: Arc::new(leaves),
            frame,
        })
    }
}

/// Adds `schema` to `properties`' key-value metadata as the `ARROW:schema` entry (replacing one
/// there), which Arrow readers take the columns' Arrow types from: encoded by `ipc_schema.rs`
/// where it knows every type, by the crate otherwise.
fn add_arrow_schema(schema: &Schema, properties: &mut WriterProperties) {
    let Some(encoded) = super::ipc_schema::encoded_arrow_schema(schema) else {
        return add_encoded_arrow_schema_to_metadata(schema, properties);
    };
    let mut entries = properties.key_value_metadata().cloned().unwrap_or_default();
    entries.retain(|entry| entry.key != ARROW_SCHEMA_META_KEY);
    entries.push(KeyValue::new(ARROW_SCHEMA_META_KEY.to_owned(), encoded));
    let taken = std::mem::take(properties);
    *properties = taken.into_builder().set_key_value_metadata(Some(entries)).build();
}

/// `properties` without their key-value metadata: the `ARROW:schema` entry of a resource
/// table is a few hundred KB of base64 text per table, which its files' footer frame already
/// holds encoded, and every table of a long run keeps its settings until the end (16 tables of
/// Synthea Bundles: 4.8 MB).
fn without_key_value_metadata(properties: &WriterProperties) -> WriterPropertiesPtr {
    Arc::new(
        properties
            .clone()
            .into_builder()
            .set_key_value_metadata(None)
            .build(),
    )
}

/// The settings a wide file's null chunks are encoded with (`absent.rs`): `properties` with
/// `codec`, the run's, for every column that has no codec of its own (see
/// `WideFileSettings::null_properties`), and for the chunks the codec does not make smaller,
/// with no codec for any column (`own_paths`: the columns `properties` may set one for alone);
/// both without the key-value metadata (the `ARROW:schema` entry of thousands of columns),
/// which column chunks never read.
pub(super) fn null_chunk_properties<'p>(
    properties: &WriterProperties,
    codec: ParquetCodec,
    own_paths: impl IntoIterator<Item = &'p ColumnPath>,
) -> NullChunkProperties {
    let settings = properties.clone().into_builder().set_key_value_metadata(None);
    let compressed = settings.clone().set_compression(codec).build();
    let uncompressed = own_paths
        .into_iter()
        .fold(
            settings.set_compression(ParquetCodec::UNCOMPRESSED),
            |settings, path| settings.set_column_compression(path.clone(), ParquetCodec::UNCOMPRESSED),
        )
        .build();
    NullChunkProperties {
        compressed: Arc::new(compressed),
        uncompressed: Arc::new(uncompressed),
    }
}

/// The column chunks after which a wide table's file is completed and the next one started.
/// A file keeps an account of every column chunk until its footer is written, and a resource
/// table has thousands of columns per row group: on 500 MB of Bulk NDJSON the open files held
/// 212 000 chunks, which the parquet crate's writer kept at about 850 bytes each, over 100 MB
/// growing with the input. `wide_file.rs` keeps a null chunk's in 24 bytes (a reached chunk's
/// is still the crate's metadata), and completing a file at this many chunks bounds it per
/// table whatever the input size; it also bounds a footer's size, which readers parse whole.
const WIDE_FILE_CHUNKS: usize = 16_000;

/// The environment variable that, in tests, cuts a wide table's row groups at this many rows and
/// completes its file after each write, so that a few rows already make a part of several files
/// (tests/crash_points.rs kills a run at each file-system call of such a part). Read once.
pub const WIDE_ROWS_PER_FILE_VARIABLE: &str = "FHIR2TABLE_WIDE_ROWS_PER_FILE";

/// The rows [`WIDE_ROWS_PER_FILE_VARIABLE`] names, when it is set.
fn wide_rows_per_file_hook() -> Option<usize> {
    static HOOK: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *HOOK.get_or_init(|| {
        let rows: usize = std::env::var(WIDE_ROWS_PER_FILE_VARIABLE).ok()?.parse().ok()?;
        (rows > 0).then_some(rows)
    })
}

/// The name of the `index`th file of a part (the first is `file_name` itself): the part's stamp
/// and tag stay first, so the files read back as the part's, and `_000001`, `_000002`, ... sort
/// after the first file's `.parquet` and in order, as `compact` takes later files for later
/// input.
pub(super) fn continued_file_name(file_name: &str, index: usize) -> String {
    if index == 0 {
        return file_name.to_owned();
    }
    match file_name.rsplit_once('.') {
        Some((stem, extension)) => format!("{stem}_{index:06}.{extension}"),
        None => format!("{file_name}_{index:06}"),
    }
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
        let hook = wide_rows_per_file_hook();
        let leaves = leaf_count(schema.fields());
        Ok(DatasetWriter {
            path,
            file: Some(file),
            writer: None,
            columns: None,
            leaves,
            wide: leaves > WIDE_TABLE_LEAVES,
            schema,
            options: *options,
            rows: 0,
            held: Vec::new(),
            held_bytes: 0,
            dir: dir.to_owned(),
            file_name: file_name.to_owned(),
            completed_files: 0,
            chunks_in_file: 0,
            finishing: Vec::new(),
            chunks_per_file: if hook.is_some() { 1 } else { WIDE_FILE_CHUNKS },
            row_group_rows: hook.unwrap_or(ROW_GROUP_ROWS),
            held_rows_limit: hook.unwrap_or(ROW_GROUP_ROWS),
            write_levels: WIDE_WRITE_LEVELS,
            settings: None,
        })
    }

    /// Completes a wide table's open file once it holds [`WIDE_FILE_CHUNKS`] column chunks;
    /// the next held rows start the next file.
    fn complete_full_file(&mut self) -> Result<()> {
        if self.chunks_in_file < self.chunks_per_file {
            return Ok(());
        }
        self.complete_open_file()
    }

    /// Completes a wide table's open file, if it has one with row groups; the next held rows
    /// start the next file. The footer is written and the file synced on a thread of its own:
    /// encoding the footer of 16,000 column chunks, on the one thread that writes every table,
    /// held up the workers whose batches queued for it (2% of the instructions of
    /// `--resources all` on Bulk NDJSON, and a sync to disk besides). The part's
    /// [`TableWriter::finish`] waits for it.
    fn complete_open_file(&mut self) -> Result<()> {
        let Some(file) = self.columns.take() else {
            return Ok(());
        };
        // One file of a part finishing at a time: each holds its chunks' accounts and, while
        // encoding, its footer (about 100 bytes a column chunk) until written.
        self.join_finishing()?;
        let path = self.path.clone();
        let finishing = std::thread::Builder::new()
            .name("fhir2table-footer".to_owned())
            .spawn(move || {
                file.finish()
                    .with_context(|| format!("cannot finish {}", path.display()))
            })
            .context("cannot start a thread to finish a file")?;
        self.finishing.push(finishing);
        self.completed_files += 1;
        self.chunks_in_file = 0;
        Ok(())
    }

    /// Waits for the files [`DatasetWriter::complete_open_file`] left finishing: the first
    /// error, if any.
    fn join_finishing(&mut self) -> Result<()> {
        let mut outcome = Ok(());
        for finishing in self.finishing.drain(..) {
            let finished = finishing
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error: a file's footer was not written")));
            outcome = outcome.and(finished);
        }
        outcome
    }

    /// Starts the next file of a wide table whose earlier file was completed, with the first
    /// file's settings and schema.
    fn start_next_file(&mut self, settings: &WideFileSettings) -> Result<WideFile> {
        let path = self
            .dir
            .join(continued_file_name(&self.file_name, self.completed_files));
        let file = fsops::create_file(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let writer = WideFile::on(
            file,
            &path,
            settings.leaves.clone(),
            settings.properties.clone(),
            settings.frame.clone(),
        )?;
        self.path = path;
        Ok(writer)
    }

    /// Writes a wide table's held batches as one row group (or more, past the row group limits)
    /// and closes it. The Parquet writer keeps the state of every leaf column of a row group in
    /// progress (encoders, level buffers, statistics):
    /// for the thousands of leaves of a resource table, several kilobytes each, tens of MB per
    /// table. Writing a row group in one go keeps that state for one table at a time, where
    /// writing each batch as it comes kept it for every table of the run at once (on 75 MB of
    /// Synthea Bundles with `--resources all`, this took the peak from 790 to 620 MB).
    fn write_held(&mut self) -> Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let freed = std::mem::take(&mut self.held_bytes);
        if self.columns.is_none() {
            let file = match self.settings.take() {
                // A next file of the part: the first file's settings, the file writer made
                // straight away (an Arrow writer would convert the schema again).
                Some(settings) => {
                    let file = self.start_next_file(&settings);
                    self.settings = Some(settings);
                    file?
                }
                // The part's first file: its settings worked out from the first batch.
                None => self.first_wide_file(&held[0])?,
            };
            self.columns = Some(file);
        }
        let threads = self.options.threads.max(1);
        let file = self.columns.as_mut().expect("made above");
        let settings = self.settings.as_ref().expect("made with the file");
        let props = &settings.null_properties;
        let plan = Plan::new(&self.schema, &held, &settings.bloom_filtered);
        // The levels of a slice are worked out for every reached leaf of a column before any
        // is written (see [`WIDE_WRITE_LEVELS`]). Only the reached leaves count: the others are
        // not handed to the writer, and cutting by all the leaves made slices of a thousand
        // rows, each a write of its own for every reached column.
        let leaves = self.leaves;
        let reached: usize = (0..plan.columns())
            .map(|position| plan.reached_leaves(position))
            .sum();
        let rows_per_write = (self.write_levels / reached.max(1)).clamp(1, self.row_group_rows);
        // The held rows cut into row groups of at most `row_group_rows` rows, each a list of
        // slices written one after the other.
        let mut groups: Vec<Vec<HeldRange>> = Vec::new();
        let mut group_rows = 0;
        for (index, batch) in held.iter().enumerate() {
            for start in (0..batch.num_rows()).step_by(rows_per_write) {
                let end = batch.num_rows().min(start + rows_per_write);
                match groups.last_mut() {
                    Some(group) if group_rows + (end - start) <= self.row_group_rows => {
                        group.push((index, start..end))
                    }
                    _ => {
                        groups.push(vec![(index, start..end)]);
                        group_rows = 0;
                    }
                }
                group_rows += end - start;
            }
        }
        let mut chunks = 0;
        for rows in &groups {
            let absent =
                || AbsentChunks::new(&plan, &self.schema, &held, rows, props.clone(), &settings.kinds);
            chunks += leaves;
            encode_row_group(
                file,
                RowGroupInput {
                    schema: &self.schema,
                    held: &held,
                    rows,
                    props: &settings.properties,
                    encoded_with: &settings.encoded_with,
                    plan: &plan,
                },
                absent,
                threads,
            )?;
        }
        drop(plan);
        drop(held);
        self.chunks_in_file += chunks;
        self.complete_full_file()?;
        release_free_memory(freed);
        Ok(())
    }

    /// A wide table's first file, as [`ArrowWriter`] would start it (the same Parquet schema
    /// and settings, the Arrow schema among them), and the leaves its settings name alone. The
    /// Parquet schema is made by `parquet_schema.rs`, not by the Arrow writer, which described
    /// it for nothing (see there), and whose row group writers a wide table does not use.
    fn first_wide_file(&mut self, first: &RecordBatch) -> Result<WideFile> {
        let Some(file) = self.file.take() else {
            anyhow::bail!("cannot write {}: its writer failed to start", self.path.display());
        };
        let (mut properties, own_leaves) = self.options.properties_with_own_leaves(&self.schema, Some(first));
        add_arrow_schema(&self.schema, &mut properties);
        let properties = Arc::new(properties);
        let started = (|| {
            let root = parquet_schema(&self.schema, properties.coerce_types())?;
            let leaves = Leaves::of_root(&root);
            let settings =
                WideFileSettings::of(&properties, &root, leaves, &own_leaves, self.options.codec())?;
            let writer = WideFile::on(
                file,
                &self.path,
                settings.leaves.clone(),
                settings.properties.clone(),
                settings.frame.clone(),
            )?;
            anyhow::Ok((writer, settings))
        })();
        let (writer, settings) = started.with_context(|| format!("cannot write {}", self.path.display()))?;
        self.settings = Some(settings);
        Ok(writer)
    }

    /// The Parquet writer, made on the first batch (`first`) or, for a file that gets none, at
    /// the end.
    fn writer(&mut self, first: Option<&RecordBatch>) -> Result<&mut ArrowWriter<File>> {
        if self.writer.is_none() {
            let Some(file) = self.file.take() else {
                anyhow::bail!("cannot write {}: its writer failed to start", self.path.display());
            };
            let properties = self.options.properties_for(&self.schema, first);
            let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(properties))
                .with_context(|| format!("cannot write {}", self.path.display()))?;
            self.writer = Some(writer);
        }
        Ok(self.writer.as_mut().expect("made above"))
    }
}

impl TableWriter for DatasetWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        // Rows read back from older parts (compact) may name list elements `item`.
        let batch = conform(batch, &self.schema)?;
        self.rows += batch.num_rows() as u64;
        if self.wide {
            // A batch without rows (compact's filter may give one) would decide nothing about
            // the part (its first file's settings come from its first held batch) and could
            // start an empty next file.
            if batch.num_rows() == 0 {
                return Ok(());
            }
            self.held_bytes += distinct_buffer_bytes(&batch);
            self.held.push(batch.into_owned());
            let held_rows: usize = self.held.iter().map(RecordBatch::num_rows).sum();
            if held_rows >= self.held_rows_limit || self.held_bytes >= WIDE_HELD_BYTES {
                self.write_held()
                    .with_context(|| format!("cannot write {}", self.path.display()))?;
            }
            return Ok(());
        }
        self.writer(Some(&batch))?
            .write(&batch)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn buffered_bytes(&self) -> usize {
        self.held_bytes + self.writer.as_ref().map_or(0, ArrowWriter::memory_size)
    }

    fn row_group_bytes(&self) -> usize {
        self.held_bytes + self.writer.as_ref().map_or(0, ArrowWriter::in_progress_size)
    }

    fn flush(&mut self) -> Result<()> {
        self.write_held()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        let Some(writer) = self.writer.as_mut() else {
            // A wide table's row groups are closed as they are written.
            return Ok(());
        };
        writer
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn leaf_columns(&self) -> usize {
        self.leaves
    }

    fn footer_chunks(&self) -> usize {
        if self.columns.is_some() {
            self.chunks_in_file
        } else {
            0
        }
    }

    fn complete_file(&mut self) -> Result<()> {
        self.complete_open_file()
    }

    /// Completes the file: footer written, data synced to disk (the part's earlier files too).
    fn finish(mut self: Box<Self>) -> Result<u64> {
        self.write_held()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.join_finishing()?;
        if let Some(file) = self.columns.take() {
            file.finish()
                .with_context(|| format!("cannot finish {}", self.path.display()))?;
            return Ok(self.rows);
        }
        if self.completed_files > 0 && self.file.is_none() {
            // A wide table whose last file was completed with its last rows.
            return Ok(self.rows);
        }
        self.writer(None)?;
        let writer = self.writer.take().expect("made above");
        finish_file(writer, &self.path)?;
        Ok(self.rows)
    }
}

impl Drop for DatasetWriter {
    /// A writer given up (its run failed) still waits for the files it left finishing, so that
    /// no thread writes into the output once the run has returned.
    fn drop(&mut self) {
        let _ = self.join_finishing();
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
    read_columns(path, false)
}

/// [`read_batches`], with only the columns that hold something when `reached_only` (see
/// `reached.rs`).
pub(super) fn read_columns(path: &Path, reached_only: bool) -> Result<Batches> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(READ_BATCH_ROWS);
    if reached_only {
        if let Some(projection) = super::reached::reached_projection(builder.metadata()) {
            builder = builder.with_projection(projection);
        }
    }
    let reader = builder.build()?;
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
    let mut writer = ArrowWriter::try_new(output, schema.clone(), Some(options.properties(&schema)))
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
    finish_file(writer, &temporary)?;
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

/// Whether a dataset's existing columns take new rows of `wanted`'s columns: the same names,
/// types and nullability, where a list's element field may be named `item` (files written before
/// list columns followed the Parquet spec) or `element`; readers see no difference between the two.
pub fn same_columns(found: &Fields, wanted: &Fields) -> bool {
    found.len() == wanted.len() && found.iter().zip(wanted.iter()).all(|(a, b)| same_column(a, b))
}

/// One column of [`same_columns`]: field metadata (such as the lookup-index mark) does not count.
pub fn same_column(found: &Field, wanted: &Field) -> bool {
    found.name() == wanted.name()
        && found.is_nullable() == wanted.is_nullable()
        && spec_list_names(found.data_type()) == spec_list_names(wanted.data_type())
}

fn spec_list_names(data_type: &DataType) -> DataType {
    match data_type {
        DataType::List(element) => DataType::List(Arc::new(Field::new(
            "element",
            spec_list_names(element.data_type()),
            element.is_nullable(),
        ))),
        other => other.clone(),
    }
}

/// `batch` under `schema` when their columns differ only in list element names (see
/// [`same_columns`]), so rows of older and newer files can be written to one file.
fn conform<'b>(batch: &'b RecordBatch, schema: &SchemaRef) -> Result<Cow<'b, RecordBatch>> {
    // Types only: field metadata (the lookup marks the writer's schema carries and a table's
    // batches do not) does not matter to the writer, and comparing it sent every batch through
    // the rebuild below.
    let same_types = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .all(|(column, field)| column.data_type() == field.data_type());
    if same_types {
        return Ok(Cow::Borrowed(batch));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| relabel_lists(column, field.data_type()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Cow::Owned(RecordBatch::try_new(schema.clone(), columns)?))
}

fn relabel_lists(array: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    match (array.data_type(), target) {
        (DataType::List(_), DataType::List(element)) => {
            let list = array.as_list::<i32>();
            let values = relabel_lists(list.values(), element.data_type())?;
            let relabelled = ListArray::try_new(
                element.clone(),
                list.offsets().clone(),
                values,
                list.nulls().cloned(),
            )?;
            Ok(Arc::new(relabelled))
        }
        _ => Ok(array.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::StringBuilder;
    use arrow_schema::Fields;
    use std::collections::HashSet;

    /// One row: a text column `c` (filled), a null struct `n` of `width` text members, a struct
    /// `s` {a: filled, b: null} and a list `l` with one null text item.
    fn first_batch(width: usize) -> RecordBatch {
        let text = |value: Option<&str>| -> ArrayRef {
            let mut builder = StringBuilder::new();
            builder.append_option(value);
            Arc::new(builder.finish())
        };
        let text_fields = |names: Vec<String>| {
            Fields::from(
                names
                    .into_iter()
                    .map(|name| Field::new(name, DataType::Utf8, true))
                    .collect::<Vec<_>>(),
            )
        };
        let wide = text_fields((0..width).map(|i| format!("m{i}")).collect());
        let pair = text_fields(vec!["a".into(), "b".into()]);
        let item = Arc::new(Field::new("element", DataType::Utf8, true));
        let fields = vec![
            Field::new("c", DataType::Utf8, true),
            Field::new("n", DataType::Struct(wide.clone()), true),
            Field::new("s", DataType::Struct(pair.clone()), true),
            Field::new("l", DataType::List(item.clone()), true),
        ];
        let columns: Vec<ArrayRef> = vec![
            text(Some("x")),
            Arc::new(arrow_array::StructArray::new_null(wide, 1)),
            Arc::new(arrow_array::StructArray::new(
                pair,
                vec![text(Some("y")), text(None)],
                None,
            )),
            Arc::new(ListArray::new(
                item,
                arrow_buffer::OffsetBuffer::from_lengths([1]),
                text(None),
                None,
            )),
        ];
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    fn codec(properties: &WriterProperties, path: &[&str]) -> ParquetCodec {
        properties.compression(&ColumnPath::new(path.iter().map(|p| p.to_string()).collect()))
    }

    #[test]
    fn wide_tables_compress_only_the_columns_their_first_batch_reaches() {
        let options = zstd_options();
        let zstd = options.codec();
        let wide = first_batch(WIDE_TABLE_LEAVES);
        let properties = options.properties_for(&wide.schema(), Some(&wide));
        assert_eq!(codec(&properties, &["c"]), zstd);
        assert_eq!(codec(&properties, &["n", "m0"]), ParquetCodec::UNCOMPRESSED);
        assert_eq!(codec(&properties, &["s", "a"]), zstd);
        assert_eq!(
            codec(&properties, &["s", "b"]),
            zstd,
            "a null under a filled struct"
        );
        assert_eq!(
            codec(&properties, &["l", "list", "element"]),
            zstd,
            "the levels of an item"
        );
        // Narrow tables, and files written without a first batch, compress every column.
        let narrow = first_batch(3);
        let properties = options.properties_for(&narrow.schema(), Some(&narrow));
        assert_eq!(codec(&properties, &["n", "m0"]), zstd);
        let properties = options.properties(&wide.schema());
        assert_eq!(codec(&properties, &["n", "m0"]), zstd);
    }

    /// Zstd, one thread: the options the settings tests write with.
    fn zstd_options() -> WriteOptions {
        WriteOptions {
            compression: Compression::Zstd,
            threads: 1,
        }
    }

    /// The fields of `batch`, to be changed or added to.
    fn fields_of(batch: &RecordBatch) -> Vec<Field> {
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect()
    }

    /// The leaves `own` marks, by index.
    fn marked(own: &[bool]) -> Vec<usize> {
        own.iter()
            .enumerate()
            .filter(|(_, own)| **own)
            .map(|(leaf, _)| leaf)
            .collect()
    }

    /// The leaves a wide file's settings name alone are the filled ones and a lookup column's;
    /// the kinds worked out from those marks and the defaults are the kinds looked up leaf by
    /// leaf, and so are the bloom filters.
    #[test]
    fn settings_of_the_marked_leaves_are_the_settings_looked_up() {
        let options = zstd_options();
        let wide = first_batch(WIDE_TABLE_LEAVES);
        let mut fields = fields_of(&wide);
        let lookup: std::collections::HashMap<String, String> =
            [(LOOKUP_INDEX_KEY.to_owned(), "true".to_owned())]
                .into_iter()
                .collect();
        fields[0] = fields[0].clone().with_metadata(lookup);
        let wide = RecordBatch::try_new(Arc::new(Schema::new(fields)), wide.columns().to_vec()).unwrap();
        let (properties, own) = options.properties_with_own_leaves(&wide.schema(), Some(&wide));
        // c (lookup and filled), s.a, s.b and l's item: filled; n's members are not.
        let leaves = own.len();
        assert_eq!(marked(&own), vec![0, leaves - 3, leaves - 2, leaves - 1]);
        let parquet_schema = parquet::arrow::ArrowSchemaConverter::new()
            .with_coerce_types(true)
            .convert(&wide.schema())
            .unwrap();
        let root = parquet_schema.root_schema_ptr();
        assert_eq!(parquet_schema.columns().len(), leaves);
        let codec = options.codec();
        let same_either_way = |properties: WriterProperties, own: &[bool]| {
            let properties = Arc::new(properties);
            let (looked_up, from_marks) = (
                WideFileSettings::of(&properties, &root, Leaves::of_root(&root), &[], codec).unwrap(),
                WideFileSettings::of(&properties, &root, Leaves::of_root(&root), own, codec).unwrap(),
            );
            assert!(looked_up.kinds.iter().eq(from_marks.kinds.iter()));
            assert_eq!(looked_up.bloom_filtered, from_marks.bloom_filtered);
            looked_up
        };
        let looked_up = same_either_way(properties, &own);
        // Neither is all defaults, or the comparison would prove little.
        assert!(looked_up.kinds.iter().any(|kind| *kind != looked_up.kinds[1]));
        assert!(looked_up.bloom_filtered[0]);
        // Without a first batch only the lookup column is marked, and its bloom filter is kept.
        let (properties, own) = options.properties_with_own_leaves(&wide.schema(), None);
        assert_eq!(marked(&own), vec![0]);
        assert!(same_either_way(properties, &own).bloom_filtered[0]);
    }

    /// A filled leaf's mark is at its own index after an empty list, a null struct and within
    /// a list of structs.
    #[test]
    fn filled_leaves_are_marked_at_their_index() {
        let options = zstd_options();
        let padding = first_batch(WIDE_TABLE_LEAVES);
        let pair = Fields::from(vec![
            Field::new("x", DataType::Utf8, true),
            Field::new("y", DataType::Utf8, true),
        ]);
        let text =
            |value: Option<&str>| -> ArrayRef { Arc::new(arrow_array::StringArray::from(vec![value])) };
        let items = Arc::new(Field::new("element", DataType::Struct(pair.clone()), true));
        let empty_item = Arc::new(Field::new("element", DataType::Utf8, true));
        let mut fields = fields_of(&padding);
        let mut columns = padding.columns().to_vec();
        fields.push(Field::new("e", DataType::List(empty_item.clone()), true));
        columns.push(Arc::new(ListArray::new(
            empty_item,
            arrow_buffer::OffsetBuffer::from_lengths([0]),
            Arc::new(arrow_array::StringArray::from(Vec::<Option<&str>>::new())),
            None,
        )));
        fields.push(Field::new("f", DataType::Utf8, true));
        columns.push(text(Some("z")));
        fields.push(Field::new("g", DataType::List(items.clone()), true));
        columns.push(Arc::new(ListArray::new(
            items,
            arrow_buffer::OffsetBuffer::from_lengths([1]),
            Arc::new(arrow_array::StructArray::new(
                pair,
                vec![text(None), text(Some("w"))],
                None,
            )),
            None,
        )));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let (_, own) = options.properties_with_own_leaves(&batch.schema(), Some(&batch));
        let leaves = own.len();
        // c, s.a, s.b, l's item; then e's item (empty: not filled), f, g.x and g.y.

        assert_eq!(
            marked(&own),
            vec![
                0,
                leaves - 7,
                leaves - 6,
                leaves - 5,
                leaves - 3,
                leaves - 2,
                leaves - 1
            ]
        );
    }

    /// A wide table goes on in a next file once its file holds the chunks it may (here one
    /// row group): the files sort in the order they were written, each a readable Parquet file
    /// with its rows, and no empty file is left after the last one.
    #[test]
    fn wide_tables_go_on_in_a_next_file_once_a_file_is_full() {
        rolls_over_after_each_row_group(|writer| writer.chunks_per_file = 1, |_| {});
    }

    /// The run completes the file keeping the most chunks' metadata (`complete_file`, see
    /// `FOOTER_CHUNKS_BUDGET` in convert/worker.rs): the part goes on in the next file just so.
    #[test]
    fn a_wide_tables_file_completed_early_goes_on_in_a_next_file() {
        rolls_over_after_each_row_group(
            |_| {},
            |writer| {
                let leaves = leaf_count(writer.schema.fields());
                assert_eq!(writer.footer_chunks(), leaves);
                writer.complete_file().unwrap();
                assert_eq!(writer.footer_chunks(), 0);
                writer.complete_file().unwrap();
            },
        );
    }

    /// Writes three one-row row groups to a wide table's part, `set_up` having set the writer
    /// up and `after_each` called after each row group; checks that each went to a file of its own.
    fn rolls_over_after_each_row_group(
        set_up: impl Fn(&mut DatasetWriter),
        after_each: impl Fn(&mut DatasetWriter),
    ) {
        let folder = tempfile::tempdir().unwrap();
        let options = WriteOptions {
            compression: Compression::Zstd,
            threads: 2,
        };
        let wide = first_batch(WIDE_TABLE_LEAVES);
        let mut writer =
            DatasetWriter::create(folder.path(), "part-1.parquet", wide.schema(), &options).unwrap();
        set_up(&mut writer);
        for value in ["first", "second", "third"] {
            let mut columns = wide.columns().to_vec();
            columns[0] = Arc::new(StringArray::from(vec![value]));
            writer
                .write(&RecordBatch::try_new(wide.schema(), columns).unwrap())
                .unwrap();
            writer.flush().unwrap();
            after_each(&mut writer);
        }
        assert_eq!(Box::new(writer).finish().unwrap(), 3);
        let mut names: Vec<String> = std::fs::read_dir(folder.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["part-1.parquet", "part-1_000001.parquet", "part-1_000002.parquet"]
        );
        let mut first_file_metadata = None;
        for (name, value) in names.iter().zip(["first", "second", "third"]) {
            let path = folder.path().join(name);
            let batches: Vec<RecordBatch> = read_batches(&path).unwrap().map(Result::unwrap).collect();
            assert_eq!(batches.len(), 1, "{name}");
            assert_eq!(batches[0].num_rows(), 1, "{name}");
            assert_eq!(batches[0].column(0).as_string::<i32>().value(0), value, "{name}");
            // The next files take the first file's settings (`WideFileSettings`): the same
            // key-value metadata, one Arrow schema entry that reads back as the table's, and
            // the column the first batch filled compressed.
            assert_eq!(
                schema_of(&path).unwrap().fields(),
                wide.schema().fields(),
                "{name}"
            );
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
            let metadata = reader.metadata();
            let entries = metadata.file_metadata().key_value_metadata().unwrap().clone();
            let arrow_schemas = entries.iter().filter(|entry| entry.key == "ARROW:schema").count();
            assert_eq!(arrow_schemas, 1, "{name}");
            // The filled column has page statistics (a column index); the unfilled one, a
            // null chunk of one run of levels (uncompressed), has row group statistics only.
            let (filled, unfilled) = (metadata.row_group(0).column(0), metadata.row_group(0).column(1));
            assert!(matches!(filled.compression(), ParquetCodec::ZSTD(_)), "{name}");
            assert!(filled.column_index_offset().is_some(), "{name}");
            assert_eq!(unfilled.compression(), ParquetCodec::UNCOMPRESSED, "{name}");
            assert!(unfilled.column_index_offset().is_none(), "{name}");
            let first = first_file_metadata.get_or_insert_with(|| entries.clone());
            assert_eq!(*first, entries, "{name}");
        }
    }

    /// The null chunks of the leaves no row reaches take the run's codec, whatever the file's
    /// settings give those leaves (uncompressed), where it makes them smaller: not for levels
    /// of one run each, even for a leaf whose settings have the run's codec, nor for a few
    /// levels of two runs. All read back as the nulls written; a leaf that a row does reach
    /// keeps the settings' codec. The same in one file and in a file per row group, whose next
    /// files take the first file's settings (`WideFileSettings`).
    #[test]
    fn null_chunks_take_the_runs_codec_where_it_makes_them_smaller() {
        let runs = [Compression::Zstd, Compression::Snappy, Compression::None]
            .into_iter()
            .flat_map(|compression| [(compression, false), (compression, true)]);
        for (compression, file_per_row_group) in runs {
            let options = WriteOptions {
                compression,
                threads: 1,
            };
            let folder = tempfile::tempdir().unwrap();
            let wide = first_batch(WIDE_TABLE_LEAVES);
            let mut writer =
                DatasetWriter::create(folder.path(), "part-1.parquet", wide.schema(), &options).unwrap();
            if file_per_row_group {
                writer.chunks_per_file = 1;
            }
            // A row that fills `n.m0`, which the first batch leaves null.
            let mut filled_row = wide.columns().to_vec();
            let DataType::Struct(members) = wide.schema().field(1).data_type().clone() else {
                unreachable!("n is a struct");
            };
            let mut filled: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![Some("v")]))];
            filled.extend((1..members.len()).map(|_| Arc::new(StringArray::new_null(1)) as ArrayRef));
            filled_row[1] = Arc::new(arrow_array::StructArray::new(members, filled, None));
            let filled_row = RecordBatch::try_new(wide.schema(), filled_row).unwrap();
            // A row without `c`, which the first batch fills.
            let mut blank = wide.columns().to_vec();
            blank[0] = Arc::new(StringArray::new_null(1));
            let blank = RecordBatch::try_new(wide.schema(), blank).unwrap();
            // `n` present, then null, in turn: its unreached members' levels are 2 000
            // bit-packed ones in the first, two runs in the second.
            let concat = |batches: &[&RecordBatch]| {
                arrow_select::concat::concat_batches(&wide.schema(), batches.iter().copied()).unwrap()
            };
            let alternating = concat(&[&filled_row, &wide].repeat(1_000));
            let pair = concat(&[&filled_row, &wide]);
            let row_groups = [&wide, &alternating, &blank, &pair];
            for batch in row_groups {
                writer.write(batch).unwrap();
                writer.flush().unwrap();
            }
            assert_eq!(Box::new(writer).finish().unwrap(), 2_004);
            let mut paths: Vec<PathBuf> = std::fs::read_dir(folder.path())
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect();
            paths.sort();
            assert_eq!(paths.len(), if file_per_row_group { 4 } else { 1 });
            let (mut read, mut groups) = (Vec::new(), Vec::new());
            for path in &paths {
                read.extend(read_batches(path).unwrap().map(Result::unwrap));
                let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
                groups.extend(reader.metadata().row_groups().iter().cloned());
            }
            let what = format!("{compression:?}, a file per row group: {file_per_row_group}");
            assert_eq!(
                concat(&read.iter().collect::<Vec<_>>()),
                concat(&row_groups),
                "{what}"
            );
            assert_eq!(groups.len(), 4);
            // Per (row group, leaf): `n.m0`, a null chunk of one run, then a column writer's;
            // `n.m1`, null throughout: one run, bit-packed, two runs; `c`, filled, then a
            // null chunk of one run.
            let cases = [(0, 1), (1, 1), (0, 2), (1, 2), (3, 2), (1, 0), (2, 0)];
            let codecs: Vec<ParquetCodec> = cases
                .iter()
                .map(|&(group, leaf)| groups[group].column(leaf).compression())
                .collect();
            let (run, none) = (options.codec(), ParquetCodec::UNCOMPRESSED);
            assert_eq!(codecs, [none, none, none, run, none, run, none], "{what}");
        }
    }

    /// Each address counts once whatever the order, the repeats and the collisions in the
    /// table: against the sum of the distinct addresses' sizes worked out by sorting.
    #[test]
    fn distinct_buffers_sum_each_address_once() {
        fn by_sorting(buffers: &[(usize, usize)]) -> usize {
            let mut sorted = buffers.to_vec();
            sorted.sort_unstable();
            sorted.dedup_by_key(|(address, _)| *address);
            sorted.iter().map(|(_, size)| size).sum()
        }
        assert_eq!(sum_distinct(&[]), 0);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..200 {
            let count = (next() % 3000) as usize;
            let mut buffers = Vec::with_capacity(count);
            for _ in 0..count {
                // Aligned heap-like addresses, addresses that share their high bits (they
                // collide in the table), and repeats of earlier ones.
                let address = match next() % 3 {
                    0 => ((next() % (1 << 40)) as usize + 1) * 64,
                    1 => ((round + 1) << 40) | (((next() % 64) as usize + 1) * 8),
                    _ => match buffers.last() {
                        Some(&(address, _)) => address,
                        None => 64,
                    },
                };
                // The same address always has the same size, as a buffer does.
                buffers.push((address, address % 1000));
            }
            assert_eq!(sum_distinct(&buffers), by_sorting(&buffers), "round {round}");
        }
    }

    /// The held bytes count every buffer once, as the buffers of the batch's `ArrayData` tree
    /// (walked the slow way here) are counted; columns that share buffers count them once.
    #[test]
    fn held_batches_count_each_buffer_once() {
        fn by_data(batch: &RecordBatch) -> usize {
            fn visit(data: &arrow_data::ArrayData, seen: &mut HashSet<usize>, total: &mut usize) {
                let nulls = data.nulls().map(|nulls| nulls.buffer());
                for buffer in data.buffers().iter().chain(nulls) {
                    if seen.insert(buffer.data_ptr().as_ptr() as usize) {
                        *total += buffer.capacity();
                    }
                }
                for child in data.child_data() {
                    visit(child, seen, total);
                }
            }
            let (mut seen, mut total) = (HashSet::new(), 0);
            for column in batch.columns() {
                visit(&column.to_data(), &mut seen, &mut total);
            }
            total
        }
        let batch = first_batch(3);
        assert_eq!(distinct_buffer_bytes(&batch), by_data(&batch));
        assert!(distinct_buffer_bytes(&batch) > 0);
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .chain(batch.schema().fields())
            .enumerate()
            .map(|(index, field)| field.as_ref().clone().with_name(format!("f{index}")))
            .collect();
        let columns: Vec<ArrayRef> = batch.columns().iter().chain(batch.columns()).cloned().collect();
        let doubled = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        assert_eq!(distinct_buffer_bytes(&doubled), distinct_buffer_bytes(&batch));
        // Every leaf type of the resource tables, each read its own way, and one read through
        // `to_data` (Int64).
        let leaves: Vec<ArrayRef> = vec![
            Arc::new(arrow_array::Int32Array::from(vec![Some(1), None, Some(3)])),
            Arc::new(arrow_array::BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
            ])),
            Arc::new(
                arrow_array::Decimal128Array::from(vec![Some(150), None, Some(1)])
                    .with_precision_and_scale(32, 6)
                    .unwrap(),
            ),
            Arc::new(
                arrow_array::TimestampMicrosecondArray::from(vec![Some(1), Some(2), None])
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("bc")])),
            Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3])),
        ];
        let typed = RecordBatch::try_from_iter(
            leaves
                .into_iter()
                .enumerate()
                .map(|(index, column)| (format!("c{index}"), column)),
        )
        .unwrap();
        assert_eq!(distinct_buffer_bytes(&typed), by_data(&typed));
        // A struct whose members are a few arrays met again and again, as a resource table's
        // null columns are, more of them than the walk remembers at once, in a varying order.
        let arrays: Vec<ArrayRef> = (0..12)
            .map(|index| {
                Arc::new(arrow_array::Int32Array::from(vec![index; 3 + index as usize % 4])) as ArrayRef
            })
            .map(|array| array.slice(0, 3))
            .collect();
        let picks = (0..40).map(|index| (index * 7 + index / 5) % arrays.len());
        let (fields, members): (Vec<Field>, Vec<ArrayRef>) = picks
            .enumerate()
            .map(|(index, pick)| {
                (
                    Field::new(format!("m{index}"), DataType::Int32, false),
                    arrays[pick].clone(),
                )
            })
            .unzip();
        let shared = arrow_array::StructArray::new(fields.into(), members, None);
        let shared = RecordBatch::try_from_iter([("s", Arc::new(shared) as ArrayRef)]).unwrap();
        assert_eq!(distinct_buffer_bytes(&shared), by_data(&shared));
    }

    /// Writes `batches` as a wide table's part, one row at a time into row groups of
    /// `group_rows` rows, and as the plain Arrow writer writes them; asserts both files have
    /// `groups` row groups, the same levels chunk by chunk and the same rows.
    fn same_as_the_arrow_writer(batches: &[RecordBatch], group_rows: usize, groups: usize) {
        let schema = batches[0].schema();
        let options = WriteOptions {
            compression: Compression::Zstd,
            threads: 2,
        };
        let folder = tempfile::tempdir().unwrap();
        let mut writer =
            DatasetWriter::create(folder.path(), "part.parquet", schema.clone(), &options).unwrap();
        writer.row_group_rows = group_rows;
        writer.write_levels = 1;
        for batch in batches {
            writer.write(batch).unwrap();
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(Box::new(writer).finish().unwrap(), rows as u64);

        let properties = options
            .properties_for(&schema, Some(&batches[0]))
            .into_builder()
            .set_max_row_group_row_count(Some(group_rows))
            .build();
        let mut plain = tempfile::tempfile().unwrap();
        let mut arrow_writer = ArrowWriter::try_new(&mut plain, schema, Some(properties)).unwrap();
        for batch in batches {
            arrow_writer.write(batch).unwrap();
        }
        arrow_writer.close().unwrap();

        let written = File::open(folder.path().join("part.parquet")).unwrap();
        let got = ParquetRecordBatchReaderBuilder::try_new(written).unwrap();
        let want = ParquetRecordBatchReaderBuilder::try_new(plain).unwrap();
        assert_eq!(got.metadata().num_row_groups(), groups);
        super::super::reached::same_chunks(got.metadata(), want.metadata());
        let got: Vec<RecordBatch> = got.build().unwrap().map(Result::unwrap).collect();
        let want: Vec<RecordBatch> = want.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(got, want);
    }

    /// A leaf that no row reaches below lists of structs of lists with several items, empty,
    /// null and null items, over held batches and row groups that span them, comes out with the
    /// levels and counts the plain Arrow writer gives it (`absent.rs` works them out itself).
    #[test]
    fn null_leaves_below_lists_in_lists_match_the_arrow_writer() {
        let text = |values: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
        let text_field = |name: &str| Arc::new(Field::new(name, DataType::Utf8, true));
        // `c` first: a struct read back takes its levels from its first leaf, so the levels
        // of `c` (the leaf no row reaches) shape the rows compared below.
        let inner_fields = Fields::from(vec![text_field("c"), text_field("b")]);
        let inner_item = Arc::new(Field::new(
            "element",
            DataType::Struct(inner_fields.clone()),
            true,
        ));
        let outer_fields = Fields::from(vec![
            text_field("a"),
            Arc::new(Field::new("inner", DataType::List(inner_item.clone()), true)),
        ]);
        let outer_item = Arc::new(Field::new(
            "element",
            DataType::Struct(outer_fields.clone()),
            true,
        ));
        let wide = Fields::from(
            (0..WIDE_TABLE_LEAVES)
                .map(|i| text_field(&format!("m{i}")))
                .collect::<Vec<_>>(),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Struct(wide.clone()), true),
            Field::new("ll", DataType::List(outer_item.clone()), true),
        ]));
        let lists = |lengths: &[usize], valid: Vec<bool>| {
            (
                arrow_buffer::OffsetBuffer::from_lengths(lengths.iter().copied()),
                Some(valid.into()),
            )
        };
        // `b` is reached in some items, `c` in none; `a` in some outer items.
        let batch = |a: Vec<Option<&str>>,
                     inner: (&[usize], Vec<bool>),
                     b: Vec<Option<&str>>,
                     inner_valid: Vec<bool>,
                     outer: (&[usize], Vec<bool>),
                     outer_valid: Vec<bool>| {
            let items = b.len();
            let inner_items = arrow_array::StructArray::new(
                inner_fields.clone(),
                vec![text(vec![None; items]), text(b)],
                Some(inner_valid.into()),
            );
            let (offsets, nulls) = lists(inner.0, inner.1);
            let inner_lists = ListArray::new(inner_item.clone(), offsets, Arc::new(inner_items), nulls);
            let outer_items = arrow_array::StructArray::new(
                outer_fields.clone(),
                vec![text(a), Arc::new(inner_lists)],
                Some(outer_valid.into()),
            );
            let rows = outer.0.len();
            let (offsets, nulls) = lists(outer.0, outer.1);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(arrow_array::StructArray::new_null(wide.clone(), rows)),
                Arc::new(ListArray::new(
                    outer_item.clone(),
                    offsets,
                    Arc::new(outer_items),
                    nulls,
                )),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let batches = [
            // [{a: x, inner: [{b: 1}, {b: 2}]}, {inner: []}, {a: y, inner: null}], then null.
            batch(
                vec![Some("x"), None, Some("y")],
                (&[2, 0, 0], vec![true, true, false]),
                vec![Some("1"), Some("2")],
                vec![true, true],
                (&[3, 0], vec![true, false]),
                vec![true, true, true],
            ),
            // null, then [null, {inner: [null, {b: 3}, {b: 4}]}]: levels settled before
            // others go on, at both lists.
            batch(
                vec![None, None],
                (&[0, 3], vec![false, true]),
                vec![None, Some("3"), Some("4")],
                vec![false, true, true],
                (&[0, 2], vec![false, true]),
                vec![false, true],
            ),
            // [], then [{a: z, inner: [{b: 5}]}].
            batch(
                vec![Some("z")],
                (&[1], vec![true]),
                vec![Some("5")],
                vec![true],
                (&[0, 1], vec![true, true]),
                vec![true],
            ),
        ];
        same_as_the_arrow_writer(&batches, 3, 2);
    }

    /// Held batches that reach different leaves, written one row at a time into row groups of
    /// two rows that span batches, come out as the plain Arrow writer writes them: the same row
    /// groups, values, counts and level histograms (a leaf one row group reaches and the other
    /// does not, a struct present with nothing in it, empty and null lists).
    #[test]
    fn wide_row_groups_over_several_batches_match_the_arrow_writer() {
        let first = first_batch(WIDE_TABLE_LEAVES);
        let schema = first.schema();
        let text = |values: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
        let DataType::Struct(wide) = schema.field(1).data_type().clone() else {
            unreachable!()
        };
        let DataType::Struct(pair) = schema.field(2).data_type().clone() else {
            unreachable!()
        };
        let DataType::List(item) = schema.field(3).data_type().clone() else {
            unreachable!()
        };
        // Two rows: `n` with only m0 in the first row and null in the second, `s` null, `l` empty
        // then null.
        let mut members: Vec<ArrayRef> = vec![text(vec![Some("v"), None])];
        members.extend((1..wide.len()).map(|_| text(vec![None, None])));
        let second = RecordBatch::try_new(
            schema.clone(),
            vec![
                text(vec![Some("p"), None]),
                Arc::new(arrow_array::StructArray::new(
                    wide.clone(),
                    members,
                    Some(vec![true, false].into()),
                )),
                Arc::new(arrow_array::StructArray::new_null(pair.clone(), 2)),
                Arc::new(ListArray::new(
                    item.clone(),
                    arrow_buffer::OffsetBuffer::from_lengths([0, 0]),
                    text(vec![]),
                    Some(vec![true, false].into()),
                )),
            ],
        )
        .unwrap();
        // One row: `n` present with nothing in it, `s` with only b, `l` with two items.
        let members: Vec<ArrayRef> = (0..wide.len()).map(|_| text(vec![None])).collect();
        let third = RecordBatch::try_new(
            schema.clone(),
            vec![
                text(vec![Some("z")]),
                Arc::new(arrow_array::StructArray::new(wide, members, None)),
                Arc::new(arrow_array::StructArray::new(
                    pair,
                    vec![text(vec![None]), text(vec![Some("w")])],
                    None,
                )),
                Arc::new(ListArray::new(
                    item,
                    arrow_buffer::OffsetBuffer::from_lengths([2]),
                    text(vec![Some("a"), Some("b")]),
                    None,
                )),
            ],
        )
        .unwrap();
        let batches = [first, second, third];
        same_as_the_arrow_writer(&batches, 2, 2);
    }
}
