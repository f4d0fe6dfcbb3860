//! The Thrift compact encoding of a Parquet footer as `wide_file.rs` writes it: the file's
//! metadata around its row groups (version, schema, key-value metadata, column orders), column
//! chunks, row groups, column and offset indexes.
//!
//! Why by hand: the parquet crate's file writer keeps an owned metadata object for every column
//! chunk until the footer is written, and a resource table has thousands of leaves per row
//! group, nearly all of them null chunks that share their pages. Making, cloning, encoding and
//! dropping those objects was a sixth of the CPU time of `--resources all`. Encoding each
//! chunk from what it shares costs about 100 bytes of output and no allocation (a column
//! index, of the few reached chunks, allocates); a null chunk's entry is put together from a
//! head written for it and an end (`metadata_tail`) that `wide_file.rs` keeps per template and
//! kind of column. The bytes are the crate's, field for field (tests in `wide_file.rs` compare
//! whole files and frames).

use anyhow::{bail, Result};
use parquet::basic::{
    ColumnOrder, Compression, ConvertedType, EncodingMask, LogicalType, TimeUnit, Type as PhysicalType,
};
use parquet::data_type::AsBytes;
use parquet::file::metadata::PageEncodingStats;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;
use parquet::schema::types::Type as SchemaType;

use super::leaves::{LeafPath, Leaves};

const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
/// The element type of a list of booleans (each a byte, 1 or 2).
const BOOL_ELEMENT: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const STRUCT: u8 = 12;

/// Thrift compact output into a byte vector: each `*_field` writes a field after the one whose
/// id is `last` and returns its own id, as the next field's `last`.
pub(super) struct Compact<'a>(pub(super) &'a mut Vec<u8>);

impl Compact<'_> {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn zigzag(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    fn header(&mut self, kind: u8, id: i16, last: i16) {
        let delta = id.wrapping_sub(last);
        if delta > 0 && delta <= 15 {
            self.0.push(((delta as u8) << 4) | kind);
        } else {
            self.0.push(kind);
            self.zigzag(id.into());
        }
    }

    pub(super) fn i64_field(&mut self, id: i16, last: i16, value: i64) -> i16 {
        self.header(I64, id, last);
        self.zigzag(value);
        id
    }

    fn i32_field(&mut self, id: i16, last: i16, value: i32) -> i16 {
        self.header(I32, id, last);
        self.zigzag(value.into());
        id
    }

    fn i16_field(&mut self, id: i16, last: i16, value: i16) -> i16 {
        self.header(I16, id, last);
        self.zigzag(value.into());
        id
    }

    fn bool_field(&mut self, id: i16, last: i16, value: bool) -> i16 {
        self.header(if value { BOOL_TRUE } else { BOOL_FALSE }, id, last);
        id
    }

    fn binary(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn binary_field(&mut self, id: i16, last: i16, bytes: &[u8]) -> i16 {
        self.header(BINARY, id, last);
        self.binary(bytes);
        id
    }

    /// A list's header: its element type and length.
    pub(super) fn list(&mut self, element: u8, len: usize) {
        if len < 15 {
            self.0.push(((len as u8) << 4) | element);
        } else {
            self.0.push(0xf0 | element);
            self.varint(len as u64);
        }
    }

    /// Starts a list field of `len` structs.
    pub(super) fn struct_list_field(&mut self, id: i16, last: i16, len: usize) -> i16 {
        self.header(LIST, id, last);
        self.list(STRUCT, len);
        id
    }

    fn i64_list_field(&mut self, id: i16, last: i16, values: impl ExactSizeIterator<Item = i64>) -> i16 {
        self.header(LIST, id, last);
        self.list(I64, values.len());
        for value in values {
            self.zigzag(value);
        }
        id
    }

    fn struct_field(&mut self, id: i16, last: i16) -> i16 {
        self.header(STRUCT, id, last);
        id
    }

    /// A union member without fields (as most of `LogicalType`'s and `ColumnOrder`'s are),
    /// with the union's end.
    fn empty_member(&mut self, id: i16) {
        self.header(STRUCT, id, 0);
        self.end();
        self.end();
    }

    pub(super) fn end(&mut self) {
        self.0.push(0);
    }
}

/// A chunk's statistics as the footer gives them.
pub(super) enum ChunkStatistics<'a> {
    None,
    /// A reached chunk's own.
    Of(&'a Statistics),
    /// A chunk of nulls only: its null count (no minimum, maximum or distinct count; neither
    /// bound exact), whatever the column's type.
    Nulls(u64),
}

/// A level histogram of a chunk: the counts, then zeros up to `len` (a null chunk's template
/// may have a lower maximum level than the column it stands for).
#[derive(Clone, Copy)]
pub(super) struct Histogram<'a> {
    pub(super) counts: &'a [i64],
    pub(super) len: usize,
}

impl<'a> Histogram<'a> {
    fn values(self) -> impl ExactSizeIterator<Item = i64> + use<'a> {
        (0..self.len).map(move |level| self.counts.get(level).copied().unwrap_or(0))
    }
}

/// What the footer says of one column chunk (Thrift `ColumnChunk` and its `ColumnMetaData`),
/// every offset already the chunk's place in the file.
pub(super) struct ChunkFacts<'a> {
    pub(super) file_offset: i64,
    pub(super) physical_type: PhysicalType,
    pub(super) encodings: &'a EncodingMask,
    /// The column's `path_in_schema` field as [`path_field`] writes it, when the file writes
    /// it (`write_path_in_schema`).
    pub(super) path: Option<&'a [u8]>,
    pub(super) codec: Compression,
    pub(super) num_values: i64,
    pub(super) uncompressed_size: i64,
    pub(super) compressed_size: i64,
    pub(super) data_page_offset: i64,
    pub(super) index_page_offset: Option<i64>,
    pub(super) dictionary_page_offset: Option<i64>,
    pub(super) statistics: ChunkStatistics<'a>,
    pub(super) page_encoding_stats: Option<&'a [PageEncodingStats]>,
    pub(super) bloom_filter: Option<(i64, i32)>,
    pub(super) unencoded_byte_array_data_bytes: Option<i64>,
    pub(super) repetition_histogram: Option<Histogram<'a>>,
    pub(super) definition_histogram: Option<Histogram<'a>>,
    pub(super) offset_index: Option<(i64, i32)>,
    pub(super) column_index: Option<(i64, i32)>,
}

/// Thrift's number for a codec.
fn codec_number(codec: Compression) -> i32 {
    match codec {
        Compression::UNCOMPRESSED => 0,
        Compression::SNAPPY => 1,
        Compression::GZIP(_) => 2,
        Compression::LZO => 3,
        Compression::BROTLI(_) => 4,
        Compression::LZ4 => 5,
        Compression::ZSTD(_) => 6,
        Compression::LZ4_RAW => 7,
    }
}

/// Writes Thrift `ColumnChunk` for `facts`.
pub(super) fn column_chunk(out: &mut Compact<'_>, facts: &ChunkFacts<'_>) {
    let last = column_chunk_head(out, facts);
    metadata_tail(out, facts, last);
    column_chunk_end(out, facts);
}

/// Writes Thrift `ColumnChunk` for `facts` whose `ColumnMetaData` ends in `tail`: what
/// [`metadata_tail`] wrote after field `after` for facts of the same statistics, encoding
/// counts and level histograms (a null chunk's template and column kind). Why: those are most
/// of a null chunk's entry, and the same for every leaf of a kind that shares a template
/// (`wide_file.rs` keeps them). Fails, writing nothing more, when the head of `facts` ends at
/// another field than `after`: the tail's first field would be misnumbered.
pub(super) fn column_chunk_ending_in(
    out: &mut Compact<'_>,
    facts: &ChunkFacts<'_>,
    (tail, after): (&[u8], i16),
) -> Result<()> {
    let last = column_chunk_head(out, facts);
    if last != after {
        bail!("a column chunk's metadata tail written after field {after}, not {last}");
    }
    out.0.extend_from_slice(tail);
    column_chunk_end(out, facts);
    Ok(())
}

/// The id of the last field of `facts`' `ColumnMetaData` before its statistics: where
/// [`metadata_tail`] goes on.
pub(super) fn last_head_field(facts: &ChunkFacts<'_>) -> i16 {
    match (facts.index_page_offset, facts.dictionary_page_offset) {
        (_, Some(_)) => 11,
        (Some(_), None) => 10,
        (None, None) => 9,
    }
}

/// Writes a `ColumnChunk`'s fields up to its `ColumnMetaData`'s dictionary page offset
/// (fields 1-11 of the latter) and returns the last field's id, where [`metadata_tail`]
/// goes on.
fn column_chunk_head(out: &mut Compact<'_>, facts: &ChunkFacts<'_>) -> i16 {
    let last = out.i64_field(2, 0, facts.file_offset);
    out.struct_field(3, last);
    metadata_head(out, facts)
}

/// A `ColumnChunk`'s page index locations and end, after its `ColumnMetaData`.
fn column_chunk_end(out: &mut Compact<'_>, facts: &ChunkFacts<'_>) {
    let mut last = 3;
    if let Some((offset, length)) = facts.offset_index {
        last = out.i64_field(4, last, offset);
        last = out.i32_field(5, last, length);
    }
    if let Some((offset, length)) = facts.column_index {
        last = out.i64_field(6, last, offset);
        out.i32_field(7, last, length);
    }
    out.end();
}

/// Writes `ColumnMetaData`'s `path_in_schema` field (after its encodings, field 2) for the
/// column at `path`.
pub(super) fn path_field(out: &mut Compact<'_>, path: &LeafPath<'_>) {
    let names = path.names();
    out.header(LIST, 3, 2);
    out.list(BINARY, names.len());
    for name in names {
        out.binary(name.as_bytes());
    }
}

/// `ColumnMetaData` from its type to its dictionary page offset; returns the last field's id.
fn metadata_head(out: &mut Compact<'_>, facts: &ChunkFacts<'_>) -> i16 {
    let last = out.i32_field(1, 0, facts.physical_type as i32);
    out.header(LIST, 2, last);
    // A mask's bits are its encodings' Thrift numbers (`EncodingMask`): listed from the lowest,
    // as the crate lists them, straight from the bits.
    let mut mask = facts.encodings.as_i32() as u32;
    out.list(I32, mask.count_ones() as usize);
    while mask != 0 {
        out.zigzag(mask.trailing_zeros().into());
        mask &= mask - 1;
    }
    let mut last = 2;
    if let Some(path) = facts.path {
        out.0.extend_from_slice(path);
        last = 3;
    }
    let last = out.i32_field(4, last, codec_number(facts.codec));
    let last = out.i64_field(5, last, facts.num_values);
    let last = out.i64_field(6, last, facts.uncompressed_size);
    let last = out.i64_field(7, last, facts.compressed_size);
    let mut last = out.i64_field(9, last, facts.data_page_offset);
    if let Some(offset) = facts.index_page_offset {
        last = out.i64_field(10, last, offset);
    }
    if let Some(offset) = facts.dictionary_page_offset {
        last = out.i64_field(11, last, offset);
    }
    last
}

/// `ColumnMetaData` from its statistics to its end, after field `last`: statistics, encoding
/// counts, bloom filter, size statistics.
pub(super) fn metadata_tail(out: &mut Compact<'_>, facts: &ChunkFacts<'_>, mut last: i16) {
    match facts.statistics {
        ChunkStatistics::None => {}
        ChunkStatistics::Of(statistics) => {
            last = out.struct_field(12, last);
            statistics_struct(out, statistics);
        }
        ChunkStatistics::Nulls(nulls) => {
            last = out.struct_field(12, last);
            if let Ok(nulls) = i64::try_from(nulls) {
                out.i64_field(3, 0, nulls);
                out.bool_field(7, 3, false);
            } else {
                out.bool_field(7, 0, false);
            }
            out.bool_field(8, 7, false);
            out.end();
        }
    }
    if let Some(stats) = facts.page_encoding_stats {
        last = out.struct_list_field(13, last, stats.len());
        for stat in stats {
            let field = out.i32_field(1, 0, stat.page_type as i32);
            let field = out.i32_field(2, field, stat.encoding as i32);
            out.i32_field(3, field, stat.count);
            out.end();
        }
    }
    if let Some((offset, length)) = facts.bloom_filter {
        last = out.i64_field(14, last, offset);
        last = out.i32_field(15, last, length);
    }
    let (unencoded, rep, def) = (
        facts.unencoded_byte_array_data_bytes,
        facts.repetition_histogram,
        facts.definition_histogram,
    );
    if unencoded.is_some() || rep.is_some() || def.is_some() {
        out.struct_field(16, last);
        let mut field = 0;
        if let Some(bytes) = unencoded {
            field = out.i64_field(1, field, bytes);
        }
        if let Some(histogram) = rep {
            field = out.i64_list_field(2, field, histogram.values());
        }
        if let Some(histogram) = def {
            out.i64_list_field(3, field, histogram.values());
        }
        out.end();
    }
    out.end();
}

/// Thrift `Statistics` as the crate writes a chunk's: the deprecated `min`/`max` only where the
/// sort order allows, both exactness flags always.
fn statistics_struct(out: &mut Compact<'_>, statistics: &Statistics) {
    let (min, max) = (statistics.min_bytes_opt(), statistics.max_bytes_opt());
    let mut last = 0;
    if statistics.is_min_max_backwards_compatible() {
        if let Some(max) = max {
            last = out.binary_field(1, last, max);
        }
        if let Some(min) = min {
            last = out.binary_field(2, last, min);
        }
    }
    if let Some(nulls) = statistics.null_count_opt().and_then(|n| i64::try_from(n).ok()) {
        last = out.i64_field(3, last, nulls);
    }
    if let Some(distinct) = statistics
        .distinct_count_opt()
        .and_then(|n| i64::try_from(n).ok())
    {
        last = out.i64_field(4, last, distinct);
    }
    if !statistics.is_min_max_deprecated() {
        if let Some(max) = max {
            last = out.binary_field(5, last, max);
        }
        if let Some(min) = min {
            last = out.binary_field(6, last, min);
        }
    }
    last = out.bool_field(7, last, statistics.max_is_exact());
    last = out.bool_field(8, last, statistics.min_is_exact());
    if let Some(nans) = statistics.nan_count_opt().and_then(|n| i64::try_from(n).ok()) {
        out.i64_field(9, last, nans);
    }
    out.end();
}

/// Thrift `RowGroup` after its `columns` (which the caller writes first, as field 1).
pub(super) struct GroupFacts {
    pub(super) total_byte_size: i64,
    pub(super) num_rows: i64,
    pub(super) file_offset: i64,
    pub(super) total_compressed_size: i64,
    /// Written only where every row group's ordinal fits an i16, as the crate does.
    pub(super) ordinal: Option<i16>,
}

/// Writes the fields of Thrift `RowGroup` that follow its `columns`, and its end.
pub(super) fn row_group_tail(out: &mut Compact<'_>, facts: &GroupFacts) {
    let last = out.i64_field(2, 1, facts.total_byte_size);
    let last = out.i64_field(3, last, facts.num_rows);
    let last = out.i64_field(5, last, facts.file_offset);
    let last = out.i64_field(6, last, facts.total_compressed_size);
    if let Some(ordinal) = facts.ordinal {
        out.i16_field(7, last, ordinal);
    }
    out.end();
}

/// Thrift `OffsetIndex`: `locations` moved by `shift` bytes.
pub(super) fn offset_index(
    out: &mut Compact<'_>,
    locations: &[PageLocation],
    shift: i64,
    unencoded: Option<UnencodedBytes<'_>>,
) {
    let last = out.struct_list_field(1, 0, locations.len());
    for location in locations {
        let field = out.i64_field(1, 0, location.offset + shift);
        let field = out.i32_field(2, field, location.compressed_page_size);
        out.i64_field(3, field, location.first_row_index);
        out.end();
    }
    match unencoded {
        Some(UnencodedBytes::Of(bytes)) => {
            out.i64_list_field(2, last, bytes.iter().copied());
        }
        Some(UnencodedBytes::Zeros) => {
            out.i64_list_field(2, last, std::iter::repeat_n(0, locations.len()));
        }
        None => {}
    }
    out.end();
}

/// The unencoded byte array sizes of an offset index's pages.
#[derive(Clone, Copy)]
pub(super) enum UnencodedBytes<'a> {
    Of(&'a [i64]),
    /// Zero for every page: a chunk of nulls of a byte array column.
    Zeros,
}

/// Thrift `ColumnIndex` of `index`.
pub(super) fn column_index(out: &mut Compact<'_>, index: &ColumnIndexMetaData) {
    let pages = index.num_pages() as usize;
    out.header(LIST, 1, 0);
    out.list(BOOL_ELEMENT, pages);
    for page in 0..pages {
        out.0.push(if index.is_null_page(page) {
            BOOL_TRUE
        } else {
            BOOL_FALSE
        });
    }
    for (id, last, minimum) in [(2, 1, true), (3, 2, false)] {
        out.header(LIST, id, last);
        out.list(BINARY, pages);
        for page in 0..pages {
            out.binary(bound(index, page, minimum).unwrap_or_default());
        }
    }
    let order = index.get_boundary_order().map_or(0, |order| order as i32);
    let mut last = out.i32_field(4, 3, order);
    if let Some(nulls) = index.null_counts() {
        last = out.i64_list_field(5, last, nulls.iter().copied());
    }
    // Each page's histogram, one after the other, where every page has one.
    // (The crate's column index has no histograms before its first page.)
    let flattened = |histogram: fn(&ColumnIndexMetaData, usize) -> Option<&[i64]>| {
        (pages > 0).then_some(())?;
        (0..pages)
            .map(|page| histogram(index, page))
            .collect::<Option<Vec<_>>>()
            .map(|pages| pages.concat())
    };
    if let Some(values) = flattened(ColumnIndexMetaData::repetition_level_histogram) {
        last = out.i64_list_field(6, last, values.into_iter());
    }
    if let Some(values) = flattened(ColumnIndexMetaData::definition_level_histogram) {
        last = out.i64_list_field(7, last, values.into_iter());
    }
    if let Some(nans) = index.nan_counts() {
        out.i64_list_field(8, last, nans.iter().copied());
    }
    out.end();
}

/// A page's minimum or maximum in a column index, plain-encoded (`None` for a page of nulls,
/// written as no bytes).
fn bound(index: &ColumnIndexMetaData, page: usize, minimum: bool) -> Option<&[u8]> {
    macro_rules! of {
        ($typed:expr) => {{
            let value = if minimum {
                $typed.min_value(page)
            } else {
                $typed.max_value(page)
            };
            value.map(|value| value.as_bytes())
        }};
    }
    match index {
        ColumnIndexMetaData::BOOLEAN(typed) => of!(typed),
        ColumnIndexMetaData::INT32(typed) => of!(typed),
        ColumnIndexMetaData::INT64(typed) => of!(typed),
        ColumnIndexMetaData::INT96(typed) => of!(typed),
        ColumnIndexMetaData::FLOAT(typed) => of!(typed),
        ColumnIndexMetaData::DOUBLE(typed) => of!(typed),
        ColumnIndexMetaData::BYTE_ARRAY(typed) => of!(typed),
        ColumnIndexMetaData::FIXED_LEN_BYTE_ARRAY(typed) => of!(typed),
    }
}

/// Thrift `FileMetaData` of a file of schema `root` (its leaves `leaves`) written with `props`, cut around its
/// `num_rows` and `row_groups` fields (which `wide_file.rs` writes): version and schema before,
/// key-value metadata, created by and column orders after, as the crate's writer encodes them.
/// A logical type this encoder does not know is an error (the caller then asks the crate).
pub(super) fn file_metadata_frame(
    root: &SchemaType,
    leaves: &Leaves,
    props: &WriterProperties,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut before = Vec::new();
    let mut out = Compact(&mut before);
    out.i32_field(1, 0, props.writer_version().as_num());
    out.struct_list_field(2, 1, nodes(root));
    schema_elements(&mut out, root)?;
    let mut after = Vec::new();
    let mut out = Compact(&mut after);
    let mut last = 4;
    if let Some(entries) = props.key_value_metadata() {
        last = out.struct_list_field(5, last, entries.len());
        for entry in entries {
            let field = out.binary_field(1, 0, entry.key.as_bytes());
            if let Some(value) = &entry.value {
                out.binary_field(2, field, value.as_bytes());
            }
            out.end();
        }
    }
    last = out.binary_field(6, last, props.created_by().as_bytes());
    out.struct_list_field(7, last, leaves.len());
    for leaf in 0..leaves.len() {
        let info = leaves.primitive_type(leaf).get_basic_info();
        match ColumnOrder::column_order_for_type(
            info.logical_type_ref(),
            info.converted_type(),
            leaves.physical_type(leaf),
        ) {
            ColumnOrder::TYPE_DEFINED_ORDER(_) => out.empty_member(1),
            ColumnOrder::IEEE_754_TOTAL_ORDER => out.empty_member(2),
            ColumnOrder::INT96_TIMESTAMP_ORDER => out.empty_member(3),
            other => bail!("{}: column order {other:?}", leaves.path(leaf)),
        }
    }
    out.end();
    Ok((before, after))
}

/// The schema's nodes, the root included.
fn nodes(node: &SchemaType) -> usize {
    1 + match node {
        SchemaType::GroupType { fields, .. } => fields.iter().map(|field| nodes(field)).sum(),
        SchemaType::PrimitiveType { .. } => 0,
    }
}

/// Thrift `SchemaElement`s of `node` and the nodes under it, depth first.
fn schema_elements(out: &mut Compact<'_>, node: &SchemaType) -> Result<()> {
    let info = node.get_basic_info();
    let mut last = 0;
    if let SchemaType::PrimitiveType {
        physical_type,
        type_length,
        ..
    } = node
    {
        last = out.i32_field(1, last, *physical_type as i32);
        if *type_length >= 0 {
            last = out.i32_field(2, last, *type_length);
        }
    }
    let repetition = match node {
        SchemaType::PrimitiveType { .. } => Some(info.repetition()),
        SchemaType::GroupType { .. } => info.has_repetition().then(|| info.repetition()),
    };
    if let Some(repetition) = repetition {
        last = out.i32_field(3, last, repetition as i32);
    }
    last = out.binary_field(4, last, info.name().as_bytes());
    if let SchemaType::GroupType { fields, .. } = node {
        last = out.i32_field(5, last, i32::try_from(fields.len())?);
    }
    if info.converted_type() != ConvertedType::NONE {
        last = out.i32_field(6, last, info.converted_type() as i32);
    }
    if let SchemaType::PrimitiveType { scale, precision, .. } = node {
        if *scale >= 0 {
            last = out.i32_field(7, last, *scale);
        }
        if *precision >= 0 {
            last = out.i32_field(8, last, *precision);
        }
    }
    if info.has_id() {
        last = out.i32_field(9, last, info.id());
    }
    if let Some(logical) = info.logical_type_ref() {
        out.struct_field(10, last);
        logical_type(out, logical)?;
    }
    out.end();
    if let SchemaType::GroupType { fields, .. } = node {
        for field in fields {
            schema_elements(out, field)?;
        }
    }
    Ok(())
}

/// Thrift `LogicalType` (a union): the types an Arrow schema converts to.
fn logical_type(out: &mut Compact<'_>, logical: &LogicalType) -> Result<()> {
    let time = |out: &mut Compact<'_>, id: i16, utc: bool, unit: &TimeUnit| {
        out.struct_field(id, 0);
        out.bool_field(1, 0, utc);
        out.struct_field(2, 1);
        match unit {
            TimeUnit::MILLIS => out.empty_member(1),
            TimeUnit::MICROS => out.empty_member(2),
            TimeUnit::NANOS => out.empty_member(3),
        }
        out.end();
        out.end();
    };
    match logical {
        LogicalType::String => out.empty_member(1),
        LogicalType::Map => out.empty_member(2),
        LogicalType::List => out.empty_member(3),
        LogicalType::Enum => out.empty_member(4),
        LogicalType::Decimal(decimal) => {
            out.struct_field(5, 0);
            out.i32_field(1, 0, decimal.scale);
            out.i32_field(2, 1, decimal.precision);
            out.end();
            out.end();
        }
        LogicalType::Date => out.empty_member(6),
        LogicalType::Time(time_type) => time(out, 7, time_type.is_adjusted_to_u_t_c, &time_type.unit),
        LogicalType::Timestamp(timestamp) => time(out, 8, timestamp.is_adjusted_to_u_t_c, &timestamp.unit),
        LogicalType::Integer(integer) => {
            out.struct_field(10, 0);
            out.header(BYTE, 1, 0);
            out.0.push(integer.bit_width as u8);
            out.bool_field(2, 1, integer.is_signed);
            out.end();
            out.end();
        }
        LogicalType::Unknown => out.empty_member(11),
        LogicalType::Json => out.empty_member(12),
        LogicalType::Bson => out.empty_member(13),
        LogicalType::Uuid => out.empty_member(14),
        LogicalType::Float16 => out.empty_member(15),
        other => bail!("a logical type the footer encoder does not know: {other:?}"),
    }
    Ok(())
}
