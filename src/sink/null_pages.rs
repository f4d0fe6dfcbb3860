//! Column chunks of nulls encoded by the tool rather than by the parquet crate's column writer.
//!
//! Why: a wide table's leaves that no row of a row group reaches get chunks of levels only
//! (`absent.rs`), one encoding per group of leaves, each over every row or list item of the
//! row group. The column writer takes such levels a value at a time (its run-length encoder,
//! its histograms, its counts), about 50 instructions per level: 5% of the instructions of
//! `--resources all` on 500 MB of Bulk NDJSON (34 million levels). Here runs are found and
//! bit-packed groups packed in one pass, and a whole run of one level costs one header.
//!
//! The chunk is what the column writer makes, and a test holds the two side by side: data
//! pages (format version 1) of at most the column's data page row count limit (the writer
//! checks it after each batch of 1,024 levels, so its pages may hold a few more rows),
//! holding the repetition and definition levels in the RLE / bit-packed hybrid and no values;
//! the same column metadata (statistics with the null count, level histograms, encodings and
//! their page counts) and offset and column indexes. One difference: a column whose settings
//! ask for a dictionary gets no dictionary page (there is no value to look up), so its
//! metadata names no dictionary encoding. Settings whose chunks only the column writer makes
//! (writer version 2, page header statistics, bloom filters, value encodings other than
//! PLAIN, page statistics of floating point columns, codecs other than zstd), and levels it
//! would refuse or that make no page (none, or repetition levels that do not start a row),
//! are left to it: [`NullPages::encode`] returns `None`.

use anyhow::{Context, Result};
use bytes::Bytes;
use parquet::basic::{
    BoundaryOrder, Compression, Encoding, EncodingMask, LogicalType, PageType, Type as PhysicalType,
};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::{ByteArray, FixedLenByteArray, Int96};
use parquet::file::metadata::{ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, PageEncodingStats};
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, ColumnDescriptor};

use super::page_codec::Zstd;

/// Encodes chunks of nulls, keeping a zstd context and a page buffer from one chunk to the next
/// (one per thread that closes row groups).
#[derive(Default)]
pub(super) struct NullPages {
    zstd: Zstd,
    body: Vec<u8>,
    packed: Vec<u8>,
}

impl NullPages {
    /// The pages and the writer's account of a chunk of `descr` whose every value is null, with
    /// definition levels `def` and repetition levels `rep` (ignored when the column does not
    /// repeat), under `props`; `None` where the settings ask for what only the column writer
    /// makes (see the module's doc).
    pub(super) fn encode(
        &mut self,
        descr: &ColumnDescPtr,
        props: &WriterProperties,
        def: &[i16],
        rep: &[i16],
    ) -> Result<Option<(Bytes, ColumnCloseResult)>> {
        let path = descr.path();
        let statistics = props.statistics_enabled(path);
        let zstd_level = match props.compression(path) {
            Compression::UNCOMPRESSED => None,
            Compression::ZSTD(level) => Some(level.compression_level()),
            _ => return Ok(None),
        };
        let (max_def, max_rep) = (descr.max_def_level(), descr.max_rep_level());
        // Page statistics of floating point columns count NaNs, which this does not.
        let floats = matches!(descr.physical_type(), PhysicalType::FLOAT | PhysicalType::DOUBLE)
            || matches!(descr.logical_type_ref(), Some(LogicalType::Float16));
        if props.writer_version() != WriterVersion::PARQUET_1_0
            || (statistics == EnabledStatistics::Page && floats)
            || props.write_page_header_statistics(path)
            || props.bloom_filter_properties(path).is_some()
            || !matches!(props.encoding(path), None | Some(Encoding::PLAIN))
            || max_def == 0
            || def.is_empty()
            || (max_rep > 0 && rep.len() != def.len())
            || rep.first().is_some_and(|first| max_rep > 0 && *first != 0)
        {
            return Ok(None);
        }
        let rep = if max_rep > 0 { rep } else { &[] };
        let row_limit = props.column_data_page_row_count_limit(path).max(1);
        // A column index as the column writer keeps one: for page statistics, each page
        // marked a null page with its null count and level histograms, in ascending order
        // (pages of nulls only). The writer counts a page as null when its nulls are as many
        // as its rows, so a page with more levels than rows (list items) makes it give up
        // the index, as it does here.
        let mut column_index = (statistics == EnabledStatistics::Page).then(|| {
            let mut index = ColumnIndexBuilder::new(descr.physical_type());
            index.set_boundary_order(BoundaryOrder::ASCENDING);
            index
        });
        let (mut rep_counts, mut def_counts) = (LevelCounts::new(max_rep), LevelCounts::new(max_def));
        let mut sink = TrackedWrite::new(Vec::new());
        let mut locations = Vec::new();
        let (mut compressed_size, mut uncompressed_size, mut rows) = (0u64, 0u64, 0u64);
        {
            let mut pages = SerializedPageWriter::new(&mut sink);
            let mut start = 0;
            while start < def.len() {
                let (end, page_rows) = page_end(rep, def.len(), start, row_limit);
                self.body.clear();
                let (mut page_rep, mut page_def) = (LevelCounts::new(max_rep), LevelCounts::new(max_def));
                if max_rep > 0 {
                    put_levels(
                        &mut self.body,
                        &mut self.packed,
                        &rep[start..end],
                        max_rep,
                        &mut page_rep,
                    );
                }
                put_levels(
                    &mut self.body,
                    &mut self.packed,
                    &def[start..end],
                    max_def,
                    &mut page_def,
                );
                let buf = match zstd_level {
                    None => Bytes::copy_from_slice(&self.body),
                    Some(level) => Bytes::from(self.zstd.at_level(level)?.compress(&self.body)?),
                };
                let page = Page::DataPage {
                    buf,
                    num_values: u32::try_from(end - start).context("a page of over 2^32 levels")?,
                    encoding: Encoding::PLAIN,
                    def_level_encoding: Encoding::RLE,
                    rep_level_encoding: Encoding::RLE,
                    statistics: None,
                };
                let spec = pages.write_page(CompressedPage::new(page, self.body.len()))?;
                if let Some(index) = column_index.as_mut() {
                    match end - start == page_rows {
                        true => index.append(true, Vec::new(), Vec::new(), (end - start) as i64, None),
                        false => index.to_invalid(),
                    }
                    index.append_histograms(&page_rep.histogram(), &page_def.histogram());
                }
                rep_counts.add(&page_rep);
                def_counts.add(&page_def);
                locations.push(PageLocation {
                    offset: spec.offset as i64,
                    compressed_page_size: spec.compressed_size as i32,
                    first_row_index: rows as i64,
                });
                compressed_size += spec.compressed_size as u64;
                uncompressed_size += spec.uncompressed_size as u64;
                rows += page_rows as u64;
                start = end;
            }
            pages.close()?;
        }
        let byte_arrays = descr.physical_type() == PhysicalType::BYTE_ARRAY;
        let mut metadata = ColumnChunkMetaData::builder(descr.clone())
            .set_compression(props.compression(path))
            .set_encodings_mask(EncodingMask::new_from_encodings(
                [Encoding::PLAIN, Encoding::RLE].iter(),
            ))
            .set_page_encoding_stats(vec![PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::PLAIN,
                count: locations.len() as i32,
            }])
            .set_total_compressed_size(compressed_size as i64)
            .set_total_uncompressed_size(uncompressed_size as i64)
            .set_num_values(def.len() as i64)
            .set_data_page_offset(0)
            .set_dictionary_page_offset(None);
        if statistics != EnabledStatistics::None {
            metadata = metadata
                .set_statistics(null_statistics(descr, def.len() as u64))
                .set_unencoded_byte_array_data_bytes(byte_arrays.then_some(0))
                .set_repetition_level_histogram(rep_counts.histogram())
                .set_definition_level_histogram(def_counts.histogram());
        }
        let indexed = statistics == EnabledStatistics::Page || !props.offset_index_disabled();
        let offset_index = indexed.then(|| OffsetIndexMetaData {
            unencoded_byte_array_data_bytes: (byte_arrays && statistics != EnabledStatistics::None)
                .then(|| vec![0; locations.len()]),
            page_locations: locations,
        });
        let close = ColumnCloseResult {
            bytes_written: compressed_size,
            rows_written: rows,
            metadata: metadata.build()?,
            bloom_filter: None,
            column_index: match column_index {
                Some(index) if index.valid() => Some(index.build()?),
                _ => None,
            },
            offset_index,
        };
        Ok(Some((Bytes::from(sink.into_inner()?), close)))
    }
}

/// Where the page starting at level `start` ends (`levels` in all), holding at most `limit`
/// rows, and how many it holds: a row starts at each repetition level 0 (`rep`; without
/// repetition levels, each level is a row).
fn page_end(rep: &[i16], levels: usize, start: usize, limit: usize) -> (usize, usize) {
    if rep.is_empty() {
        let end = levels.min(start + limit);
        return (end, end - start);
    }
    let mut rows = 0;
    for (at, level) in rep.iter().enumerate().skip(start) {
        if *level == 0 {
            if rows == limit {
                return (at, rows);
            }
            rows += 1;
        }
    }
    (levels, rows)
}

/// The bits per level a page gives levels up to `max_level` (none for a maximum of 0: the
/// page then holds no levels of that kind), as the writer's level encoder works them out. The
/// levels of a page are run-length or bit-packed at this width, so leaves of different depths
/// below one node (maximum definition levels 4 and 7, say) whose maximum levels need the same
/// width hold the same bytes.
pub(super) fn level_bits(max_level: i16) -> u8 {
    (u16::BITS - (max_level.max(0) as u16).leading_zeros()) as u8
}

/// Appends `levels` (up to `max_level`) in the RLE / bit-packed hybrid, with the 4-byte length
/// a version 1 data page puts before them, eight levels at a time, and adds them to `counts`:
/// eight equal levels start a run-length run, which takes every equal level after them; any
/// other eight are a group of a bit-packed run. The last levels (fewer than eight) are a group
/// padded with zeros: the page's level count says where the levels end. `packed` is a buffer
/// for a bit-packed run's groups, whose header (their count) comes before them.
fn put_levels(
    out: &mut Vec<u8>,
    packed: &mut Vec<u8>,
    levels: &[i16],
    max_level: i16,
    counts: &mut LevelCounts,
) {
    let length_at = out.len();
    out.extend_from_slice(&[0; 4]);
    packed.clear();
    let width = usize::from(level_bits(max_level));
    let mut at = 0;
    while at < levels.len() {
        let Some(group) = levels.get(at..at + 8) else {
            // The last levels, fewer than eight: a group of their own, padded.
            let mut last = [0i16; 8];
            last[..levels.len() - at].copy_from_slice(&levels[at..]);
            for level in &levels[at..] {
                counts.0[*level as usize] += 1;
            }
            pack_group(packed, &last, width);
            break;
        };
        let group: &[i16; 8] = group.try_into().expect("eight levels");
        let level = group[0];
        if *group == [level; 8] {
            let run = run_length(&levels[at..], level);
            flush_packed(out, packed, width);
            put_varint(out, (run as u64) << 1);
            out.extend_from_slice(&(level as u16).to_le_bytes()[..width.div_ceil(8)]);
            counts.0[level as usize] += run as i64;
            at += run;
            continue;
        }
        for level in group {
            counts.0[*level as usize] += 1;
        }
        pack_group(packed, group, width);
        at += 8;
    }
    flush_packed(out, packed, width);
    let length = (out.len() - length_at - 4) as u32;
    out[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
}

/// How many of `levels` from the first are `level` (eight at a time while eight are).
fn run_length(levels: &[i16], level: i16) -> usize {
    let eights = levels
        .chunks_exact(8)
        .take_while(|group| *group == [level; 8])
        .count();
    let rest = &levels[eights * 8..];
    eights * 8 + rest.iter().take_while(|next| **next == level).count()
}

/// Appends eight levels of `width` bits each, least significant bit first: `width` bytes.
fn pack_group(packed: &mut Vec<u8>, group: &[i16; 8], width: usize) {
    // Eight levels of up to eight bits fill a word; wider ones (maximum levels past 255,
    // deeper than any table nests) take two.
    if width <= 8 {
        let word = group.iter().enumerate().fold(0u64, |word, (index, level)| {
            word | u64::from(*level as u16) << (index * width)
        });
        // All eight bytes, then the ones past `width` dropped: a copy of fixed length.
        packed.extend_from_slice(&word.to_le_bytes());
        packed.truncate(packed.len() - (8 - width));
    } else {
        let words = group.iter().enumerate().fold(0u128, |words, (index, level)| {
            words | u128::from(*level as u16) << (index * width)
        });
        packed.extend_from_slice(&words.to_le_bytes()[..width]);
    }
}

/// Writes the groups in `packed` (`width` bytes each) as bit-packed runs, and empties it. A run
/// holds at most 63 groups, a one-byte header, as the parquet crate's writer makes them: the
/// format allows more, but readers have met few.
fn flush_packed(out: &mut Vec<u8>, packed: &mut Vec<u8>, width: usize) {
    for run in packed.chunks(MAX_GROUPS_PER_RUN * width) {
        let groups = run.len() / width;
        put_varint(out, ((groups as u64) << 1) | 1);
        out.extend_from_slice(run);
    }
    packed.clear();
}

/// The most groups of eight levels a bit-packed run holds here.
const MAX_GROUPS_PER_RUN: usize = 63;

/// An unsigned LEB128 number, as run headers are written.
fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// How many of each level up to a maximum a page or chunk has.
struct LevelCounts(Vec<i64>);

impl LevelCounts {
    /// No levels yet, for a maximum of `max_level`.
    fn new(max_level: i16) -> Self {
        LevelCounts(vec![0; max_level.max(0) as usize + 1])
    }

    fn add(&mut self, other: &LevelCounts) {
        for (count, more) in self.0.iter_mut().zip(&other.0) {
            *count += more;
        }
    }

    /// As the writer keeps them: none for a maximum level of 0.
    fn histogram(&self) -> Option<LevelHistogram> {
        let mut histogram = LevelHistogram::try_new(self.0.len() as i16 - 1)?;
        for (level, count) in self.0.iter().enumerate() {
            if *count > 0 {
                histogram.increment_by(level as i16, *count);
            }
        }
        Some(histogram)
    }
}

/// The column writer's chunk statistics for `nulls` nulls and no value, for `descr`'s type.
pub(super) fn null_statistics(descr: &ColumnDescriptor, nulls: u64) -> Statistics {
    let compatible = descr.sort_order().is_signed();
    macro_rules! typed {
        ($variant:ident, $value:ty) => {
            Statistics::$variant(
                ValueStatistics::<$value>::new(None, None, None, Some(nulls), false)
                    .with_backwards_compatible_min_max(compatible),
            )
        };
    }
    match descr.physical_type() {
        PhysicalType::BOOLEAN => typed!(Boolean, bool),
        PhysicalType::INT32 => typed!(Int32, i32),
        PhysicalType::INT64 => typed!(Int64, i64),
        PhysicalType::INT96 => typed!(Int96, Int96),
        PhysicalType::FLOAT => typed!(Float, f32),
        PhysicalType::DOUBLE => typed!(Double, f64),
        PhysicalType::BYTE_ARRAY => typed!(ByteArray, ByteArray),
        PhysicalType::FIXED_LEN_BYTE_ARRAY => typed!(FixedLenByteArray, FixedLenByteArray),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
    use parquet::arrow::ArrowSchemaConverter;
    use parquet::basic::ZstdLevel;
    use parquet::column::reader::{get_column_reader, ColumnReader};
    use parquet::file::properties::WriterPropertiesPtr;
    use parquet::file::serialized_reader::SerializedPageReader;

    use super::super::absent::encode_nulls as by_the_column_writer;
    use super::*;

    /// The leaves of a table like a resource table: text, integers, instants, decimals and
    /// booleans, at the top, in a struct, in a list of structs and in a list of lists.
    fn leaves() -> Vec<ColumnDescPtr> {
        let instant = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let members = Fields::from(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("count", DataType::Int32, true),
            Field::new("start", instant, true),
            Field::new("numeric", DataType::Decimal128(32, 6), true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("ratio", DataType::Float64, true),
        ]);
        let item = |data_type: DataType| Arc::new(Field::new("element", data_type, true));
        let schema = Schema::new(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("object", DataType::Struct(members.clone()), true),
            Field::new("items", DataType::List(item(DataType::Struct(members))), true),
            Field::new(
                "nested",
                DataType::List(item(DataType::List(item(DataType::Utf8)))),
                true,
            ),
        ]);
        ArrowSchemaConverter::new()
            .convert(&schema)
            .unwrap()
            .columns()
            .to_vec()
    }

    /// Levels of nulls for `descr` over `rows` rows: a row starts at each repetition level 0,
    /// and no definition level reaches the maximum. Stretches of rows alike (runs) and of rows
    /// drawn each anew, as null chunks have.
    fn null_levels(descr: &ColumnDescriptor, rows: usize, seed: u64) -> (Vec<i16>, Vec<i16>) {
        let (max_def, max_rep) = (descr.max_def_level() as u64, descr.max_rep_level() as u64);
        let mut state = seed;
        let mut next = |bound: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % bound
        };
        let (mut def, mut rep) = (Vec::new(), Vec::new());
        let mut row = 0;
        while row < rows {
            let alike = next(2) == 0;
            let stretch = (next(40) + 1) as usize;
            let level = next(max_def) as i16;
            for _ in 0..stretch.min(rows - row) {
                let items = if max_rep > 0 { next(4) + 1 } else { 1 };
                for item in 0..items {
                    rep.push(if item == 0 { 0 } else { next(max_rep) as i16 + 1 });
                    def.push(if alike { level } else { next(max_def) as i16 });
                }
                row += 1;
            }
        }
        (def, rep)
    }

    fn settings(
        statistics: EnabledStatistics,
        codec: Compression,
        dictionary: bool,
        page_rows: usize,
    ) -> WriterPropertiesPtr {
        Arc::new(
            WriterProperties::builder()
                .set_statistics_enabled(statistics)
                .set_compression(codec)
                .set_dictionary_enabled(dictionary)
                .set_data_page_row_count_limit(page_rows)
                .build(),
        )
    }

    /// The levels of a chunk (`pages` and its `close`) of `rows` rows, read back through the
    /// crate's page and column readers, with the count of values (none for nulls).
    fn read_back(
        descr: &ColumnDescPtr,
        pages: &Bytes,
        close: &ColumnCloseResult,
        rows: usize,
    ) -> (Vec<i16>, Vec<i16>) {
        let page_reader =
            SerializedPageReader::new(Arc::new(pages.clone()), &close.metadata, rows, None).unwrap();
        let (mut def, mut rep) = (Vec::new(), Vec::new());
        macro_rules! levels {
            ($reader:expr) => {{
                let mut reader = $reader;
                let mut values = Vec::new();
                let read = reader
                    .read_records(rows + 1, Some(&mut def), Some(&mut rep), &mut values)
                    .unwrap();
                assert_eq!((read.0, read.1), (rows, 0), "{}", descr.path());
            }};
        }
        match get_column_reader(descr.clone(), Box::new(page_reader)) {
            ColumnReader::BoolColumnReader(reader) => levels!(reader),
            ColumnReader::Int32ColumnReader(reader) => levels!(reader),
            ColumnReader::Int64ColumnReader(reader) => levels!(reader),
            ColumnReader::Int96ColumnReader(reader) => levels!(reader),
            ColumnReader::FloatColumnReader(reader) => levels!(reader),
            ColumnReader::DoubleColumnReader(reader) => levels!(reader),
            ColumnReader::ByteArrayColumnReader(reader) => levels!(reader),
            ColumnReader::FixedLenByteArrayColumnReader(reader) => levels!(reader),
        }
        if descr.max_rep_level() == 0 {
            rep.clear();
        }
        (def, rep)
    }

    #[test]
    fn null_chunks_are_the_column_writers_chunks() {
        let zstd = Compression::ZSTD(ZstdLevel::try_new(1).unwrap());
        let kinds = [
            (EnabledStatistics::Chunk, zstd),
            (EnabledStatistics::Chunk, Compression::UNCOMPRESSED),
            (EnabledStatistics::Page, Compression::UNCOMPRESSED),
            (EnabledStatistics::None, zstd),
        ];
        let mut pages = NullPages::default();
        for (seed, descr) in leaves().iter().enumerate() {
            for (statistics, codec) in kinds {
                for rows in [1, 9, 300, 2_500] {
                    let props = settings(statistics, codec, false, 20_000);
                    let (def, rep) = null_levels(descr, rows, seed as u64 * 31 + rows as u64);
                    let encoded = pages.encode(descr, &props, &def, &rep).unwrap();
                    if descr.physical_type() == PhysicalType::DOUBLE && statistics == EnabledStatistics::Page
                    {
                        // Page statistics of floats count NaNs: left to the column writer.
                        assert!(encoded.is_none());
                        continue;
                    }
                    let (ours, close) = encoded.unwrap();
                    let theirs = by_the_column_writer(descr.clone(), props.clone(), &def, &rep).unwrap();
                    let (mine, writers) = (&close.metadata, &theirs.close.metadata);
                    let what = format!("{} {statistics:?} {codec:?} {rows} rows", descr.path());
                    assert_eq!(mine.statistics(), writers.statistics(), "{what}");
                    assert_eq!(mine.num_values(), writers.num_values(), "{what}");
                    assert_eq!(mine.compression(), writers.compression(), "{what}");
                    assert_eq!(mine.encodings_mask(), writers.encodings_mask(), "{what}");
                    assert_eq!(
                        mine.page_encoding_stats(),
                        writers.page_encoding_stats(),
                        "{what}"
                    );
                    assert_eq!(
                        mine.definition_level_histogram(),
                        writers.definition_level_histogram(),
                        "{what}"
                    );
                    assert_eq!(
                        mine.repetition_level_histogram(),
                        writers.repetition_level_histogram(),
                        "{what}"
                    );
                    assert_eq!(
                        mine.unencoded_byte_array_data_bytes(),
                        writers.unencoded_byte_array_data_bytes(),
                        "{what}"
                    );
                    assert_eq!(
                        mine.dictionary_page_offset(),
                        writers.dictionary_page_offset(),
                        "{what}"
                    );
                    assert_eq!(mine.data_page_offset(), writers.data_page_offset(), "{what}");
                    assert_eq!(close.rows_written, theirs.close.rows_written, "{what}");
                    assert_eq!(close.column_index, theirs.close.column_index, "{what}");
                    let first_rows = |close: &ColumnCloseResult| {
                        close.offset_index.as_ref().map(|index| {
                            let rows: Vec<i64> = index
                                .page_locations
                                .iter()
                                .map(|page| page.first_row_index)
                                .collect();
                            (rows, index.unencoded_byte_array_data_bytes.clone())
                        })
                    };
                    assert_eq!(first_rows(&close), first_rows(&theirs.close), "{what}");
                    assert_eq!(close.bytes_written as i64, mine.compressed_size(), "{what}");
                    assert_eq!(
                        read_back(descr, &ours, &close, rows),
                        (
                            def.clone(),
                            if descr.max_rep_level() > 0 {
                                rep.clone()
                            } else {
                                Vec::new()
                            }
                        ),
                        "{what}"
                    );
                    assert_eq!(
                        read_back(descr, &theirs.pages, &theirs.close, rows),
                        read_back(descr, &ours, &close, rows),
                        "{what}"
                    );
                }
            }
        }
    }

    #[test]
    fn null_chunks_split_into_pages_of_the_row_limit_read_back_whole() {
        let mut pages = NullPages::default();
        for (seed, descr) in leaves().iter().enumerate() {
            for page_rows in [1, 7, 64] {
                // Floats' page statistics are the column writer's (see above).
                let statistics = match descr.physical_type() {
                    PhysicalType::DOUBLE => EnabledStatistics::Chunk,
                    _ => EnabledStatistics::Page,
                };
                let props = settings(
                    statistics,
                    Compression::ZSTD(ZstdLevel::default()),
                    true,
                    page_rows,
                );
                let (def, rep) = null_levels(descr, 500, seed as u64);
                let (ours, close) = pages.encode(descr, &props, &def, &rep).unwrap().unwrap();
                let index = close.offset_index.as_ref().unwrap();
                assert_eq!(index.page_locations.len(), 500usize.div_ceil(page_rows));
                let starts: Vec<i64> = index
                    .page_locations
                    .iter()
                    .map(|page| page.first_row_index)
                    .collect();
                let expected: Vec<i64> = (0..500).step_by(page_rows).map(|row| row as i64).collect();
                assert_eq!(starts, expected);
                let rep = if descr.max_rep_level() > 0 {
                    rep
                } else {
                    Vec::new()
                };
                assert_eq!(
                    read_back(descr, &ours, &close, 500),
                    (def, rep),
                    "{}",
                    descr.path()
                );
            }
        }
    }

    #[test]
    fn levels_are_run_length_or_bit_packed_by_eight() {
        let mut out = Vec::new();
        let mut packed = Vec::new();
        // Eight ones then a run of twelve twos, then three mixed levels padded to a group.
        let levels = [
            1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 1, 2,
        ];
        let mut counts = LevelCounts::new(2);
        put_levels(&mut out, &mut packed, &levels, 2, &mut counts);
        assert_eq!(counts.0, [1, 9, 13]);
        let expected = [
            0,
            0,
            0,
            0, // the length, set below
            8 << 1,
            1, // eight ones
            12 << 1,
            2,            // twelve twos
            (1 << 1) | 1, // one bit-packed group: 0, 1, 2 and five zeros at two bits each
            0b10_01_00,
            0,
        ];
        let mut expected = expected.to_vec();
        expected[0] = (expected.len() - 4) as u8;
        assert_eq!(out, expected);

        // Mixed levels for 125 groups: bit-packed runs of at most 63 groups (one header byte).
        let (mut out, mut counts) = (Vec::new(), LevelCounts::new(1));
        let alternating: Vec<i16> = (0..1000).map(|at| (at % 2) as i16).collect();
        put_levels(&mut out, &mut packed, &alternating, 1, &mut counts);
        assert_eq!(out.len(), 4 + 1 + 63 + 1 + 62);
        assert_eq!((out[4], out[4 + 1 + 63]), ((63 << 1) | 1, (62 << 1) | 1));
        assert!(out[5..68]
            .iter()
            .chain(&out[69..])
            .all(|byte| *byte == 0b1010_1010));
        assert_eq!(counts.0, [500, 500]);
    }
}
