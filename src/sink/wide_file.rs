//! A wide table's Parquet file, its footer written by the tool.
//!
//! A resource table has thousands of leaf columns, and nearly every one is a chunk of nulls in
//! every row group, whose pages are shared by the leaves of a group (`absent.rs`). The parquet
//! crate's file writer takes each chunk as an owned metadata object: it checks it against the
//! schema, rebuilds it at its place in the file, clones each row group's, encodes them all at
//! the end and drops them. On 500 MB of Bundles with `--resources all`, 114,000 column chunks
//! in 28 row groups, that was a sixth of the run's CPU time. Here a null chunk is recorded as
//! its shared template and where its pages landed (16 bytes; the templates, one per kind of
//! null chunk and row group, are kept until the footer too), and encoded straight into the
//! footer (`thrift.rs`); the chunks rows reach are taken out of the crate's column writers
//! through its row group writer, into a buffer per top-level column, their pages compressed
//! there ([`encode_reached`]), and copied into the file in schema order.
//!
//! The file is the one the crate's writer makes from the same chunks, byte for byte (the tests
//! below compare them): the same page index, bloom filter and footer layout, and the footer's
//! parts that do not depend on the row groups (schema, key-value metadata, column orders, each
//! leaf's path) encoded once per table. A null chunk's entry from its statistics on is encoded
//! once per footer for each template and kind of column it stands for ([`NullChunkTails`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use parquet::arrow::arrow_writer::ArrowColumnChunk;
use parquet::basic::{Compression, Encoding, EncodingMask, Type as PhysicalType};
use parquet::bloom_filter::Sbbf;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::page_index::offset_index::OffsetIndexMetaData;
use parquet::file::properties::{BloomFilterPosition, WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter, TrackedWrite};
use parquet::schema::types::{SchemaDescPtr, TypePtr};

use super::footer;
use super::leaves::{LeafPath, Leaves};
use super::page_codec::{self, Zstd};
use super::thrift::{self, ChunkFacts, ChunkStatistics, Compact, GroupFacts, Histogram, UnencodedBytes};
use crate::fhir::key_hash::FastHash;
use crate::fsops;

/// What a wide table's files write before and after their row groups in the footer, and each
/// leaf's `path_in_schema` field that every row group's chunk of it repeats: encoded once per
/// table.
pub(super) struct FooterFrame {
    /// `FileMetaData` up to its `num_rows` field: version and schema.
    before_rows: Vec<u8>,
    /// `FileMetaData` after its `row_groups` field: key-value metadata, created by, column
    /// orders, the struct's end.
    after_groups: Vec<u8>,
    /// Each leaf's `path_in_schema` field ([`thrift::path_field`]), one after the other, when
    /// the files write it: every column chunk's entry has its column's, and encoding them for
    /// each was half the time an entry took.
    paths: Vec<u8>,
    /// Where each leaf's field in `paths` ends.
    path_ends: Vec<u32>,
}

impl FooterFrame {
    /// The frame of files of schema `root` (its leaves `leaves`) written with `props`, encoded
    /// by `thrift.rs`. Asking the crate for it (writing a file without row groups) cost as much
    /// as the rest of the footers: it makes the schema's column descriptors again, encodes the
    /// schema through a tree of owned elements and drops them, 27 M instructions per resource
    /// table. The crate's way stays for a schema whose logical types `thrift.rs` does not
    /// encode.
    pub(super) fn of(root: &TypePtr, leaves: &Leaves, props: &WriterPropertiesPtr) -> Result<Self> {
        let (mut before_rows, mut after_groups) = match thrift::file_metadata_frame(root, leaves, props) {
            Ok(frame) => frame,
            Err(_) => Self::by_crate(root.clone(), props)?,
        };
        // Kept by every table until the run ends: grown by doubling, they held up to twice
        // their size (9.6 MB at the peak of 4 GB of Bundles, for 16 tables).
        before_rows.shrink_to_fit();
        after_groups.shrink_to_fit();
        let (mut paths, mut path_ends) = (Vec::new(), Vec::new());
        if props.write_path_in_schema() {
            path_ends.reserve_exact(leaves.len());
            for leaf in 0..leaves.len() {
                thrift::path_field(&mut Compact(&mut paths), &leaves.path(leaf));
                path_ends.push(u32::try_from(paths.len()).context("a footer's column paths over 4 GiB")?);
            }
            paths.shrink_to_fit();
        }
        Ok(FooterFrame {
            before_rows,
            after_groups,
            paths,
            path_ends,
        })
    }

    /// The `path_in_schema` field of leaf `leaf`'s column chunks, or `None` when the files do
    /// not write it.
    fn path_field(&self, leaf: usize) -> Option<&[u8]> {
        let end = *self.path_ends.get(leaf)? as usize;
        let start = leaf
            .checked_sub(1)
            .map_or(0, |before| self.path_ends[before] as usize);
        Some(&self.paths[start..end])
    }

    /// The frame cut out of the footer the crate writes for a file without row groups.
    fn by_crate(root: TypePtr, props: &WriterPropertiesPtr) -> Result<(Vec<u8>, Vec<u8>)> {
        // `into_inner` writes the footer.
        let bytes = SerializedFileWriter::new(Vec::new(), root, props.clone())?.into_inner()?;
        ensure!(bytes.len() >= 12, "an empty Parquet file without a footer");
        footer::frame_around_row_groups(&bytes[4..bytes.len() - 8])
    }
}

/// A column chunk of a row group in progress, in schema order: encoded by the crate's column
/// writer for a leaf rows reach ([`encode_reached`]), or a null chunk's shared pages and their
/// template (`absent.rs`).
pub(super) enum ClosedChunk {
    Reached(Box<EncodedChunk>),
    Absent(Bytes, Arc<ColumnCloseResult>),
}

/// The chunk of a leaf rows reach, encoded: its bytes and the crate's account of them, whose
/// offsets count from `origin` (where `bytes` start).
pub(super) struct EncodedChunk {
    bytes: Bytes,
    origin: i64,
    rows: i64,
    metadata: ColumnChunkMetaData,
    bloom: Option<Sbbf>,
    column_index: Option<ColumnIndexMetaData>,
    offset_index: Option<OffsetIndexMetaData>,
}

/// The chunks the column writers of some reached leaves closed into (`chunks`, in the order of
/// `descr`, the schema cut down to those leaves; written with the settings `encoded_with`),
/// taken out of the writers through the crate's row group writer, with the pages of each chunk
/// the file's settings `props` compress with zstd, and `encoded_with` do not, compressed by
/// `zstd` (`page_codec.rs` says why). `ordinal`: the row group's.
pub(super) fn encode_reached(
    chunks: Vec<ArrowColumnChunk>,
    descr: SchemaDescPtr,
    encoded_with: &WriterPropertiesPtr,
    props: &WriterProperties,
    zstd: &mut Zstd,
    ordinal: usize,
) -> Result<Vec<EncodedChunk>> {
    if chunks.is_empty() {
        return Ok(Vec::new());
    }
    let mut buffer = TrackedWrite::new(Vec::new());
    let mut closed = None;
    {
        let on_close: parquet::file::writer::OnCloseRowGroup<'_, Vec<u8>> =
            Box::new(|_, metadata, blooms, column_indexes, offset_indexes| {
                closed = Some((metadata, blooms, column_indexes, offset_indexes));
                Ok(())
            });
        let ordinal = i32::try_from(ordinal).context("too many row groups")?;
        let mut group =
            SerializedRowGroupWriter::new(descr, encoded_with.clone(), &mut buffer, ordinal, Some(on_close));
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
    }
    let buffer = Bytes::from(buffer.into_inner()?);
    let (metadata, blooms, column_indexes, offset_indexes) = closed.context("a row group not closed")?;
    let rows = metadata.num_rows();
    let chunks = metadata
        .columns()
        .iter()
        .zip(blooms)
        .zip(column_indexes.into_iter().zip(offset_indexes));
    let recompressed = |metadata: &ColumnChunkMetaData| match props.compression(metadata.column_path()) {
        Compression::ZSTD(level) if metadata.compression_codec() == Compression::UNCOMPRESSED.into() => {
            Some(level)
        }
        _ => None,
    };
    // A chunk passed through is copied out when others of the buffer are compressed, so that the
    // buffer's uncompressed pages are not kept alive by it until the row group is written.
    let copy_through = metadata
        .columns()
        .iter()
        .any(|metadata| recompressed(metadata).is_some());
    let mut encoded = Vec::with_capacity(metadata.num_columns());
    for ((metadata, bloom), (column_index, mut offset_index)) in chunks {
        let start = chunk_start(metadata);
        let bytes = usize::try_from(start)
            .ok()
            .and_then(|start| {
                let end = start.checked_add(usize::try_from(metadata.compressed_size()).ok()?)?;
                (end <= buffer.len()).then(|| buffer.slice(start..end))
            })
            .context("a reached chunk beyond its buffer")?;
        let (bytes, origin, metadata) = match recompressed(metadata) {
            Some(level) => {
                let (compressed, metadata) =
                    page_codec::compress_chunk(&bytes, start, metadata, offset_index.as_mut(), level, zstd)?;
                (Bytes::from(compressed), 0, metadata)
            }
            None if copy_through => (Bytes::copy_from_slice(&bytes), start, metadata.clone()),
            None => (bytes, start, metadata.clone()),
        };
        encoded.push(EncodedChunk {
            bytes,
            origin,
            rows,
            metadata,
            bloom,
            column_index,
            offset_index,
        });
    }
    Ok(encoded)
}

/// A written column chunk, as the footer and the page index need it. (A file keeps one per
/// leaf and row group: a null chunk's is 16 bytes.)
enum ChunkRecord {
    Reached(Box<ReachedChunk>),
    Absent {
        template: Arc<ColumnCloseResult>,
        /// From where the template's pages start to where this chunk's copy of them is.
        shift: i64,
    },
}

/// A written chunk of a leaf rows reach.
struct ReachedChunk {
    metadata: ColumnChunkMetaData,
    /// From where the chunk's offsets in `metadata` start (its encoded chunk's `origin`) to
    /// where it is in the file.
    shift: i64,
    bloom: Bloom,
    column_index: Option<ColumnIndexMetaData>,
    offset_index: Option<OffsetIndexMetaData>,
}

/// A reached chunk's bloom filter: waiting for the end of the file, or where it was written.
enum Bloom {
    None,
    Waiting(Box<Sbbf>),
    Written(i64, i32),
}

/// A written row group.
struct GroupRecord {
    chunks: Vec<ChunkRecord>,
    num_rows: i64,
    file_offset: i64,
}

/// A wide table's open file: its row groups are appended whole, then [`WideFile::finish`]
/// writes the page index and footer.
pub(super) struct WideFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes written so far: the next byte's offset in the file.
    written: u64,
    /// The file's leaf columns, reached or not.
    leaves: Arc<Leaves>,
    props: WriterPropertiesPtr,
    frame: Arc<FooterFrame>,
    groups: Vec<GroupRecord>,
}

/// The output buffer: large writes (whole column chunks) go straight through, and the small
/// ones (null chunks' pages, page index entries) fill it. Every table of a long run has a file
/// open: at 1 MiB, 16 MB of resident buffers on Synthea Bundles. 64 KiB took 4 GB of Bundles
/// from 272-278 to 266-268 MB peak RSS, with the same wall time on 500 MB (0.990 Bundles, 1.000
/// NDJSON in interleaved pairs).
const OUTPUT_BUFFER: usize = 1 << 16;

impl WideFile {
    /// Starts the file `file`, created at `path`, for a schema of leaf columns `leaves` and
    /// settings `props`.
    pub(super) fn on(
        file: File,
        path: &Path,
        leaves: Arc<Leaves>,
        props: WriterPropertiesPtr,
        frame: Arc<FooterFrame>,
    ) -> Result<Self> {
        ensure!(
            props.sorting_columns().is_none(),
            "sorting columns in a wide table"
        );
        let paths = if props.write_path_in_schema() {
            leaves.len()
        } else {
            0
        };
        ensure!(
            frame.path_ends.len() == paths,
            "a footer frame made for other leaves or settings"
        );
        let mut wide = WideFile {
            path: path.to_owned(),
            out: BufWriter::with_capacity(OUTPUT_BUFFER, file),
            written: 0,
            leaves,
            props,
            frame,
            groups: Vec::new(),
        };
        wide.write(b"PAR1")?;
        Ok(wide)
    }

    /// The file's leaf columns.
    pub(super) fn leaves(&self) -> &Arc<Leaves> {
        &self.leaves
    }

    /// Row groups written so far.
    pub(super) fn row_groups(&self) -> usize {
        self.groups.len()
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes `bytes` (a bloom filter, a page index entry) and says where: offset and length.
    fn write_located(&mut self, bytes: &[u8]) -> Result<(i64, i32)> {
        let offset = self.written as i64;
        self.write(bytes)?;
        Ok((offset, i32::try_from(bytes.len())?))
    }

    /// Appends a row group of `rows` rows: `chunks`, one per leaf in schema order.
    pub(super) fn append_row_group(&mut self, chunks: Vec<ClosedChunk>, rows: usize) -> Result<()> {
        let leaves = self.leaves.len();
        ensure!(
            chunks.len() == leaves,
            "{} chunks for {leaves} leaves",
            chunks.len()
        );
        ensure!(i32::try_from(self.groups.len()).is_ok(), "too many row groups");
        let file_offset = self.written as i64;
        let mut records = Vec::with_capacity(leaves);
        for (leaf, chunk) in chunks.into_iter().enumerate() {
            let record = match chunk {
                ClosedChunk::Reached(chunk) => {
                    let EncodedChunk {
                        bytes,
                        origin,
                        rows: written_rows,
                        metadata,
                        bloom,
                        column_index,
                        offset_index,
                    } = *chunk;
                    // The chunk was encoded for a schema cut down to the reached leaves; the
                    // footer says what the file's own leaf is.
                    let (own, written) = (self.leaves.path(leaf), metadata.column_descr());
                    ensure!(
                        own.is(written.path())
                            && self.leaves.physical_type(leaf) == written.physical_type()
                            && self.leaves.max_def_level(leaf) == written.max_def_level()
                            && self.leaves.max_rep_level(leaf) == written.max_rep_level(),
                        "{own}: a reached chunk of another column ({})",
                        written.path()
                    );
                    ensure!(
                        metadata.geo_statistics().is_none(),
                        "{own}: geospatial statistics in a wide table"
                    );
                    ensure!(
                        written_rows == rows as i64,
                        "{own}: {written_rows} rows written for a row group of {rows}"
                    );
                    ensure!(
                        bytes.len() as i64 == metadata.compressed_size() && chunk_start(&metadata) == origin,
                        "{own}: a reached chunk and its account differ"
                    );
                    let shift = self.written as i64 - origin;
                    self.write(&bytes)?;
                    ChunkRecord::Reached(Box::new(ReachedChunk {
                        metadata,
                        shift,
                        bloom: bloom.map_or(Bloom::None, |bloom| Bloom::Waiting(Box::new(bloom))),
                        column_index,
                        offset_index,
                    }))
                }
                ClosedChunk::Absent(pages, template) => {
                    let metadata = &template.metadata;
                    ensure!(
                        pages.len() as i64 == metadata.compressed_size(),
                        "a null chunk's pages and size differ"
                    );
                    ensure!(
                        template.rows_written == rows as u64,
                        "a null chunk of {} rows in a row group of {rows}",
                        template.rows_written
                    );
                    let shift = self.written as i64 - chunk_start(metadata);
                    self.write(&pages)?;
                    ChunkRecord::Absent { template, shift }
                }
            };
            records.push(record);
        }
        if self.props.bloom_filter_position() == BloomFilterPosition::AfterRowGroup {
            self.write_blooms(&mut records)?;
        }
        self.groups.push(GroupRecord {
            chunks: records,
            num_rows: rows as i64,
            file_offset,
        });
        Ok(())
    }

    /// Writes the waiting bloom filters of a row group's chunks, in column order.
    fn write_blooms(&mut self, records: &mut [ChunkRecord]) -> Result<()> {
        for record in records {
            let ChunkRecord::Reached(reached) = record else {
                continue;
            };
            let bloom = &mut reached.bloom;
            if matches!(bloom, Bloom::Waiting(_)) {
                let Bloom::Waiting(filter) = std::mem::replace(bloom, Bloom::None) else {
                    unreachable!("matched above")
                };
                let mut bytes = Vec::new();
                filter.write(&mut bytes)?;
                let (offset, length) = self.write_located(&bytes)?;
                *bloom = Bloom::Written(offset, length);
            }
        }
        Ok(())
    }

    /// Writes the remaining bloom filters, the page index and the footer, makes the
    /// floating-point columns' orders readable by every engine (`footer.rs`) and syncs the
    /// file.
    pub(super) fn finish(mut self) -> Result<()> {
        let mut groups = std::mem::take(&mut self.groups);
        for group in &mut groups {
            self.write_blooms(&mut group.chunks)?;
        }
        // The leaves are shared: held apart from `self`, which the writes below borrow.
        let leaves = self.leaves.clone();
        let frame = self.frame.clone();
        let columns: Vec<Leaf<'_>> = (0..leaves.len())
            .map(|leaf| Leaf::of(&leaves, leaf, frame.path_field(leaf)))
            .collect();
        let mut column_index_at = Vec::with_capacity(groups.len());
        let mut scratch = Vec::new();
        for group in &groups {
            let mut at = Vec::with_capacity(group.chunks.len());
            for record in &group.chunks {
                let index = match record {
                    ChunkRecord::Reached(reached) => reached.column_index.as_ref(),
                    ChunkRecord::Absent { template, .. } => template.column_index.as_ref(),
                };
                at.push(match index {
                    Some(index) => {
                        scratch.clear();
                        thrift::column_index(&mut Compact(&mut scratch), index);
                        Some(self.write_located(&scratch)?)
                    }
                    None => None,
                });
            }
            column_index_at.push(at);
        }
        let mut offset_index_at = Vec::with_capacity(groups.len());
        let offset_indexes = !self.props.offset_index_disabled();
        for group in &groups {
            let mut at = Vec::with_capacity(group.chunks.len());
            for (record, column) in group.chunks.iter().zip(&columns) {
                scratch.clear();
                let written = match record {
                    ChunkRecord::Reached(reached) if offset_indexes && reached.offset_index.is_some() => {
                        let (index, shift) =
                            (reached.offset_index.as_ref().expect("checked"), &reached.shift);
                        let unencoded = index
                            .unencoded_byte_array_data_bytes()
                            .map(|b| UnencodedBytes::Of(b));
                        thrift::offset_index(
                            &mut Compact(&mut scratch),
                            index.page_locations(),
                            *shift,
                            unencoded,
                        );
                        true
                    }
                    ChunkRecord::Absent { template, shift } if offset_indexes => match &template.offset_index
                    {
                        Some(index) => {
                            let unencoded = match same_type(template, column) {
                                true => index
                                    .unencoded_byte_array_data_bytes()
                                    .map(|b| UnencodedBytes::Of(b)),
                                false => (column.physical_type == PhysicalType::BYTE_ARRAY)
                                    .then_some(UnencodedBytes::Zeros),
                            };
                            thrift::offset_index(
                                &mut Compact(&mut scratch),
                                index.page_locations(),
                                *shift,
                                unencoded,
                            );
                            true
                        }
                        None => false,
                    },
                    _ => false,
                };
                at.push(match written {
                    true => Some(self.write_located(&scratch)?),
                    false => None,
                });
            }
            offset_index_at.push(at);
        }
        let mut metadata = self.serialize_footer(&groups, &columns, &column_index_at, &offset_index_at)?;
        let types = (0..leaves.len()).map(|leaf| leaves.primitive_type(leaf));
        let chosen = footer::float_columns_to_rewrite(types, |leaf| {
            groups.iter().all(|group| match &group.chunks[leaf] {
                ChunkRecord::Reached(reached) => footer::free_of_nan(reached.metadata.statistics()),
                ChunkRecord::Absent { .. } => true,
            })
        });
        footer::rewrite_float_orders(&mut metadata, &chosen)?;
        self.write(&metadata)?;
        self.write(&u32::try_from(metadata.len())?.to_le_bytes())?;
        self.write(b"PAR1")?;
        let file = self
            .out
            .into_inner()
            .map_err(|error| error.into_error())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        footer::check_float_orders(&self.path, &chosen)
            .with_context(|| format!("cannot finish {}", self.path.display()))?;
        fsops::sync_file(&file).with_context(|| format!("cannot sync {}", self.path.display()))
    }

    /// Thrift `FileMetaData` of the file: the frame around its row groups.
    fn serialize_footer(
        &self,
        groups: &[GroupRecord],
        columns: &[Leaf<'_>],
        column_index_at: &[Vec<Location>],
        offset_index_at: &[Vec<Location>],
    ) -> Result<Vec<u8>> {
        // About 100 bytes a column chunk.
        let mut bytes = Vec::with_capacity(self.frame.before_rows.len() + groups.len() * columns.len() * 128);
        bytes.extend_from_slice(&self.frame.before_rows);
        let mut out = Compact(&mut bytes);
        let rows = groups.iter().map(|group| group.num_rows).sum();
        let last = out.i64_field(3, 2, rows);
        out.struct_list_field(4, last, groups.len());
        let ordinals = i16::try_from(groups.len()).is_ok();
        let mut tails = NullChunkTails::default();
        for (ordinal, group) in groups.iter().enumerate() {
            out.struct_list_field(1, 0, group.chunks.len());
            let (mut uncompressed, mut compressed) = (0i64, 0i64);
            for (leaf, (record, column)) in group.chunks.iter().zip(columns).enumerate() {
                let at = (column_index_at[ordinal][leaf], offset_index_at[ordinal][leaf]);
                let facts = match record {
                    ChunkRecord::Absent { template, shift } => {
                        let tail = tails.of(template, column, || chunk_facts(record, column, at))?;
                        let facts = null_chunk_head(&template.metadata, *shift, column, at);
                        thrift::column_chunk_ending_in(&mut out, &facts, tail)?;
                        facts
                    }
                    ChunkRecord::Reached(_) => {
                        let facts = chunk_facts(record, column, at)?;
                        thrift::column_chunk(&mut out, &facts);
                        facts
                    }
                };
                uncompressed += facts.uncompressed_size;
                compressed += facts.compressed_size;
            }
            thrift::row_group_tail(
                &mut out,
                &GroupFacts {
                    total_byte_size: uncompressed,
                    num_rows: group.num_rows,
                    file_offset: group.file_offset,
                    total_compressed_size: compressed,
                    ordinal: ordinals.then(|| i16::try_from(ordinal).ok()).flatten(),
                },
            );
        }
        bytes.extend_from_slice(&self.frame.after_groups);
        Ok(bytes)
    }
}

/// Where a chunk's page index entry was written (offset, length), if it has one.
type Location = Option<(i64, i32)>;

/// Where a chunk's pages start: its dictionary page, if it has one.
fn chunk_start(metadata: &ColumnChunkMetaData) -> i64 {
    metadata
        .dictionary_page_offset()
        .unwrap_or_else(|| metadata.data_page_offset())
}

/// Whether a null chunk's template is of the column's own physical type.
fn same_type(template: &ColumnCloseResult, column: &Leaf<'_>) -> bool {
    template.metadata.column_type() == column.physical_type
}

/// What the footer needs of a leaf column, gathered once per file into one place (read from
/// the crate's descriptors for every chunk, each behind two pointers, it was a quarter of the
/// time the footer took; `Leaves` keeps them apart).
struct Leaf<'a> {
    physical_type: PhysicalType,
    max_def_level: i16,
    max_rep_level: i16,
    path: LeafPath<'a>,
    /// Its `path_in_schema` field, encoded once per table ([`FooterFrame`]); `None` when the
    /// file's settings leave paths out (`WideFile::on` holds the frame to them).
    path_field: Option<&'a [u8]>,
}

impl<'a> Leaf<'a> {
    fn of(leaves: &'a Leaves, leaf: usize, path_field: Option<&'a [u8]>) -> Self {
        Leaf {
            physical_type: leaves.physical_type(leaf),
            max_def_level: leaves.max_def_level(leaf),
            max_rep_level: leaves.max_rep_level(leaf),
            path: leaves.path(leaf),
            path_field,
        }
    }
}

/// What the footer says of a chunk. A null chunk says what its template says, for its own
/// column: its type and path, statistics of its type (the null count), level histograms up to
/// its own maximum levels, and byte array sizes only where it is a byte array column.
fn chunk_facts<'a>(
    record: &'a ChunkRecord,
    column: &'a Leaf<'a>,
    at: (Location, Location),
) -> Result<ChunkFacts<'a>> {
    let histogram = |values: Option<&'a [i64]>, max_level: i16| -> Result<Option<Histogram<'a>>> {
        let (Some(counts), true) = (values, max_level > 0) else {
            return Ok(None);
        };
        let len = max_level as usize + 1;
        ensure!(
            counts.iter().skip(len).all(|count| *count == 0),
            "{}: a null chunk's level above {max_level}",
            column.path
        );
        Ok(Some(Histogram { counts, len }))
    };
    let (metadata, shift) = match record {
        ChunkRecord::Reached(reached) => (&reached.metadata, reached.shift),
        ChunkRecord::Absent { template, shift } => (&template.metadata, *shift),
    };
    let mut facts = ChunkFacts {
        statistics: metadata
            .statistics()
            .map_or(ChunkStatistics::None, ChunkStatistics::Of),
        page_encoding_stats: metadata.page_encoding_stats().map(Vec::as_slice),
        unencoded_byte_array_data_bytes: metadata.unencoded_byte_array_data_bytes(),
        repetition_histogram: metadata.repetition_level_histogram().map(|histogram| Histogram {
            counts: histogram.values(),
            len: histogram.values().len(),
        }),
        definition_histogram: metadata.definition_level_histogram().map(|histogram| Histogram {
            counts: histogram.values(),
            len: histogram.values().len(),
        }),
        ..match record {
            ChunkRecord::Reached(_) => head_facts(metadata, shift, column, at),
            ChunkRecord::Absent { .. } => null_chunk_head(metadata, shift, column, at),
        }
    };
    match record {
        ChunkRecord::Reached(reached) => {
            if let Bloom::Written(offset, length) = reached.bloom {
                facts.bloom_filter = Some((offset, length));
            }
        }
        ChunkRecord::Absent { template, .. } => {
            let same = same_type(template, column);
            ensure!(
                same || *metadata.encodings_mask() == levels_only(),
                "{}: null pages of another type in other encodings than PLAIN and RLE",
                column.path
            );
            if !same {
                facts.unencoded_byte_array_data_bytes =
                    (column.physical_type == PhysicalType::BYTE_ARRAY).then_some(0);
            }
            if let Some(statistics) = metadata.statistics() {
                ensure!(
                    statistics.min_bytes_opt().is_none()
                        && statistics.max_bytes_opt().is_none()
                        && statistics.distinct_count_opt().is_none(),
                    "{}: a null chunk's statistics have a minimum, maximum or distinct count",
                    column.path
                );
                let nulls = statistics
                    .null_count_opt()
                    .with_context(|| format!("{}: a null chunk's statistics count no nulls", column.path))?;
                facts.statistics = ChunkStatistics::Nulls(nulls);
            }
            facts.repetition_histogram = histogram(
                metadata.repetition_level_histogram().map(|h| h.values()),
                column.max_rep_level,
            )?;
            facts.definition_histogram = histogram(
                metadata.definition_level_histogram().map(|h| h.values()),
                column.max_def_level,
            )?;
        }
    }
    Ok(facts)
}

/// What the footer says of a chunk before its statistics, with none of what comes after
/// (statistics, encoding counts, bloom filter, size statistics): offsets moved by `shift` to the
/// chunk's place in the file.
fn head_facts<'a>(
    metadata: &'a ColumnChunkMetaData,
    shift: i64,
    column: &Leaf<'a>,
    (column_index, offset_index): (Location, Location),
) -> ChunkFacts<'a> {
    ChunkFacts {
        file_offset: metadata.file_offset(),
        physical_type: column.physical_type,
        encodings: metadata.encodings_mask(),
        path: column.path_field,
        codec: metadata.compression(),
        num_values: metadata.num_values(),
        uncompressed_size: metadata.uncompressed_size(),
        compressed_size: metadata.compressed_size(),
        data_page_offset: metadata.data_page_offset() + shift,
        index_page_offset: metadata.index_page_offset().map(|offset| offset + shift),
        dictionary_page_offset: metadata.dictionary_page_offset().map(|offset| offset + shift),
        statistics: ChunkStatistics::None,
        page_encoding_stats: None,
        bloom_filter: None,
        unencoded_byte_array_data_bytes: None,
        repetition_histogram: None,
        definition_histogram: None,
        offset_index,
        column_index,
    }
}

/// [`head_facts`] of a null chunk whose template's metadata is `metadata`: it says no file
/// offset (0, as the crate writes) and no index page.
fn null_chunk_head<'a>(
    metadata: &'a ColumnChunkMetaData,
    shift: i64,
    column: &Leaf<'a>,
    at: (Location, Location),
) -> ChunkFacts<'a> {
    ChunkFacts {
        file_offset: 0,
        index_page_offset: None,
        ..head_facts(metadata, shift, column, at)
    }
}

/// The ends of null chunks' `ColumnMetaData` ([`thrift::metadata_tail`]: statistics, encoding
/// counts, size statistics) as one footer writes them, encoded once per template and kind of
/// column (physical type, maximum levels), which is all they depend on. A row group's leaves
/// below one reached node share a few templates, so most of the footer's null chunks take
/// their end from here instead of encoding it again with its level histograms.
#[derive(Default)]
struct NullChunkTails {
    bytes: Vec<u8>,
    /// Per template (its address: the footer's records hold every template alive) and kind:
    /// where its end is in `bytes`, and the field it was written after.
    ends: HashMap<TailKey, (Range<usize>, i16), FastHash>,
}

/// A null chunk's template (its address) and the kind of column it stands for: physical
/// type, maximum definition and repetition levels.
type TailKey = (usize, i32, i16, i16);

impl NullChunkTails {
    /// The end for a null chunk of `template` in `column`, encoded from `facts` (the chunk's
    /// whole facts, [`chunk_facts`], which also check the template fits the column) the first
    /// time.
    fn of<'a>(
        &mut self,
        template: &Arc<ColumnCloseResult>,
        column: &Leaf<'_>,
        facts: impl FnOnce() -> Result<ChunkFacts<'a>>,
    ) -> Result<(&[u8], i16)> {
        let key = (
            Arc::as_ptr(template) as usize,
            column.physical_type as i32,
            column.max_def_level,
            column.max_rep_level,
        );
        let (range, after) = match self.ends.get(&key) {
            Some(known) => known.clone(),
            None => {
                let facts = facts()?;
                let after = thrift::last_head_field(&facts);
                let start = self.bytes.len();
                thrift::metadata_tail(&mut Compact(&mut self.bytes), &facts, after);
                let made = (start..self.bytes.len(), after);
                self.ends.insert(key, made.clone());
                made
            }
        };
        Ok((&self.bytes[range], after))
    }
}

/// The encodings of null pages that any column type can share: PLAIN values (none) and RLE
/// levels.
fn levels_only() -> EncodingMask {
    EncodingMask::new_from_encodings([Encoding::PLAIN, Encoding::RLE].iter())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::absent::{copy_for, encode_nulls};
    use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema, SchemaRef};
    use parquet::arrow::arrow_writer::{compute_leaves, ArrowRowGroupWriterFactory};
    use parquet::arrow::ArrowSchemaConverter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::metadata::{KeyValue, PageIndexPolicy, ParquetMetaDataReader};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use parquet::schema::types::SchemaDescriptor;

    /// Columns `a` (text), `b` (double) and `c` (integers) that rows reach, and a struct `s`
    /// that no row does: its leaves `x` (int), `y` (text), `z` (a list of ints), `w.v` (an int
    /// one level deeper than `x`), `u` (an int like `x`), `r2` and `r3` (ints in lists two and
    /// three deep, both at definition level 6: repetition levels of one width).
    fn full_schema() -> SchemaRef {
        let list_of = |item: DataType, nullable: bool| DataType::new_list(item, nullable);
        let members = vec![
            Field::new("x", DataType::Int32, true),
            Field::new("y", DataType::Utf8, true),
            Field::new("z", DataType::new_list(DataType::Int64, true), true),
            Field::new(
                "w",
                DataType::Struct(vec![Field::new("v", DataType::Int32, true)].into()),
                true,
            ),
            Field::new("u", DataType::Int32, true),
            Field::new("r2", list_of(list_of(DataType::Int32, true), true), true),
            Field::new(
                "r3",
                list_of(list_of(list_of(DataType::Int32, true), false), false),
                true,
            ),
        ];
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Float64, true),
            Field::new("c", DataType::Int64, true),
            Field::new("s", DataType::Struct(members.into()), true),
        ]))
    }

    fn reached_schema() -> SchemaRef {
        let full = full_schema();
        Arc::new(Schema::new(full.fields()[..3].to_vec()))
    }

    /// Settings that give the footer everything it can hold: page statistics, a column index
    /// and a dictionary on the reached columns, a bloom filter, several pages per chunk,
    /// key-value metadata; `others` statistics on the other columns. Two reached columns are
    /// compressed with zstd (at two levels), one with a dictionary page and one without.
    fn properties(
        position: BloomFilterPosition,
        path_in_schema: bool,
        others: EnabledStatistics,
        offset_index_disabled: bool,
    ) -> WriterPropertiesPtr {
        let page = EnabledStatistics::Page;
        Arc::new(
            WriterProperties::builder()
                .set_statistics_enabled(others)
                .set_offset_index_disabled(offset_index_disabled)
                .set_dictionary_enabled(false)
                .set_data_page_row_count_limit(2)
                .set_write_batch_size(2)
                .set_column_statistics_enabled("a".into(), page)
                .set_column_statistics_enabled("b".into(), page)
                .set_column_dictionary_enabled("a".into(), true)
                .set_column_bloom_filter_enabled("a".into(), true)
                .set_column_compression("a".into(), Compression::ZSTD(ZstdLevel::default()))
                .set_column_compression("c".into(), Compression::ZSTD(ZstdLevel::try_new(3).unwrap()))
                .set_bloom_filter_position(position)
                .set_write_path_in_schema(path_in_schema)
                .set_key_value_metadata(Some(vec![KeyValue::new("k".into(), "v".to_owned())]))
                .build(),
        )
    }

    fn batch(rows: usize, seed: usize) -> RecordBatch {
        let a: ArrayRef = Arc::new(StringArray::from_iter(
            (0..rows).map(|row| (row % 3 != 1).then(|| format!("id-{}", (row + seed) % 4))),
        ));
        let b: ArrayRef = Arc::new(Float64Array::from_iter(
            (0..rows).map(|row| (row != 2).then_some(row as f64 * 1.5 - 0.0 * seed as f64)),
        ));
        let c: ArrayRef = Arc::new(Int64Array::from_iter(
            (0..rows).map(|row| Some((row * seed) as i64)),
        ));
        RecordBatch::try_new(reached_schema(), vec![a, b, c]).unwrap()
    }

    /// The reached columns of `batch`, encoded.
    fn reached_chunks(
        factory: &ArrowRowGroupWriterFactory,
        batch: &RecordBatch,
        ordinal: usize,
    ) -> Vec<ArrowColumnChunk> {
        let mut writers = factory.create_column_writers(ordinal).unwrap();
        let schema = reached_schema();
        let leaves = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .flat_map(|(field, column)| compute_leaves(field, column).unwrap());
        for (writer, leaf) in writers.iter_mut().zip(leaves) {
            writer.write(&leaf).unwrap();
        }
        writers
            .into_iter()
            .map(|writer| writer.close().unwrap())
            .collect()
    }

    /// Null chunks of the unreached leaves (`x`, `y`, `z`, `w.v`, `u`, `r2`, `r3`). Where they
    /// `share` pages as `absent.rs` shares them (chunk statistics only), `y` has those of `x`
    /// (another type), so has `w.v` (a higher maximum level of the same width) and so has `u`
    /// (the same kind: the footer's end of `x`'s entry serves it again), and `r3` has those of
    /// `r2` (a higher maximum repetition level of the same width); else each its own.
    fn null_chunks(
        descr: &SchemaDescriptor,
        props: &WriterPropertiesPtr,
        rows: usize,
        share: bool,
    ) -> Vec<(Bytes, Arc<ColumnCloseResult>)> {
        let levels = vec![0i16; rows];
        // Made as the tool makes them: from its compact leaves' descriptors.
        let leaves = Leaves::of_root(descr.root_schema());
        let own = |leaf: usize| {
            let chunk = encode_nulls(leaves.descriptor(leaf), props.clone(), &levels, &levels).unwrap();
            (chunk.pages, Arc::new(chunk.close))
        };
        match share {
            true => {
                let (x, r2) = (own(3), own(8));
                vec![x.clone(), x.clone(), own(5), x.clone(), x, r2.clone(), r2]
            }
            false => (3..10).map(own).collect(),
        }
    }

    /// The same row groups through the parquet crate's file writer (`absent.rs`'s `copy_for`
    /// remaking each null chunk's metadata for its leaf) and through [`WideFile`].
    fn both_ways(props: &WriterPropertiesPtr, groups: &[(usize, usize)], share: bool) -> (Vec<u8>, Vec<u8>) {
        let folder = tempfile::tempdir().unwrap();
        let root = ArrowSchemaConverter::new()
            .convert(&full_schema())
            .unwrap()
            .root_schema_ptr();
        let descr = SchemaDescriptor::new(root.clone());
        let cut_root = ArrowSchemaConverter::new()
            .convert(&reached_schema())
            .unwrap()
            .root_schema_ptr();
        let cut = SerializedFileWriter::new(std::io::sink(), cut_root.clone(), props.clone()).unwrap();
        let factory = ArrowRowGroupWriterFactory::new(&cut, reached_schema());
        let reached_descr = Arc::new(SchemaDescriptor::new(cut_root.clone()));
        // The tool's column writers leave out zstd, whose pages `encode_reached` compresses.
        let encoded_with = Arc::new(
            props
                .as_ref()
                .clone()
                .into_builder()
                .set_column_compression("a".into(), Compression::UNCOMPRESSED)
                .set_column_compression("c".into(), Compression::UNCOMPRESSED)
                .build(),
        );
        let cut_by_tool = SerializedFileWriter::new(std::io::sink(), cut_root, encoded_with.clone()).unwrap();
        let factory_by_tool = ArrowRowGroupWriterFactory::new(&cut_by_tool, reached_schema());
        let mut zstd = Zstd::default();

        let by_crate = folder.path().join("crate.parquet");
        let mut writer =
            SerializedFileWriter::new(File::create(&by_crate).unwrap(), root.clone(), props.clone()).unwrap();
        for (ordinal, (rows, seed)) in groups.iter().enumerate() {
            let mut group = writer.next_row_group().unwrap();
            for chunk in reached_chunks(&factory, &batch(*rows, *seed), ordinal) {
                chunk.append_to_row_group(&mut group).unwrap();
            }
            for (leaf, (pages, template)) in null_chunks(&descr, props, *rows, share).into_iter().enumerate()
            {
                let close = copy_for(descr.column(3 + leaf), &template).unwrap();
                group.append_column(&pages, close).unwrap();
            }
            group.close().unwrap();
        }
        let metadata = writer.finish().unwrap();
        footer::declare_float_orders_for_all_readers(&by_crate, writer.inner_mut(), &metadata).unwrap();

        let by_tool = folder.path().join("tool.parquet");
        let leaves = Arc::new(Leaves::of_root(&root));
        let frame = Arc::new(FooterFrame::of(&root, &leaves, props).unwrap());
        let file = File::create(&by_tool).unwrap();
        let mut wide = WideFile::on(file, &by_tool, leaves, props.clone(), frame).unwrap();
        for (ordinal, (rows, seed)) in groups.iter().enumerate() {
            let encoded = encode_reached(
                reached_chunks(&factory_by_tool, &batch(*rows, *seed), ordinal),
                reached_descr.clone(),
                &encoded_with,
                props,
                &mut zstd,
                ordinal,
            )
            .unwrap();
            let mut chunks: Vec<ClosedChunk> = encoded
                .into_iter()
                .map(|chunk| ClosedChunk::Reached(Box::new(chunk)))
                .collect();
            let nulls = null_chunks(&descr, props, *rows, share);
            chunks.extend(
                nulls
                    .into_iter()
                    .map(|(pages, template)| ClosedChunk::Absent(pages, template)),
            );
            wide.append_row_group(chunks, *rows).unwrap();
        }
        wide.finish().unwrap();
        (std::fs::read(by_crate).unwrap(), std::fs::read(by_tool).unwrap())
    }

    #[test]
    fn a_wide_file_is_the_file_the_crates_writer_makes() {
        let (after, end) = (BloomFilterPosition::AfterRowGroup, BloomFilterPosition::End);
        let (chunk, page) = (EnabledStatistics::Chunk, EnabledStatistics::Page);
        // Bloom filters, paths in the schema, the others' statistics (page statistics give null
        // chunks a column index, and then no leaf shares another's pages), offset indexes.
        let variants = [
            (after, true, chunk, false),
            (end, true, chunk, false),
            (after, false, chunk, false),
            (after, true, page, false),
            (end, false, page, false),
            (after, true, chunk, true),
        ];
        for (position, path_in_schema, others, no_offset_index) in variants {
            let props = properties(position, path_in_schema, others, no_offset_index);
            let share = others == chunk;
            let (by_crate, by_tool) = both_ways(&props, &[(5, 1), (3, 2), (1, 3)], share);
            assert!(
                by_crate == by_tool,
                "{position:?}, path in schema: {path_in_schema}, {others:?}, {no_offset_index}"
            );
        }
    }

    /// Both zstd columns at one level, so one context compresses the pages of every chunk in
    /// turn, in pages of thousands of rows whose compressed sizes take fewer varint bytes than
    /// their uncompressed ones.
    #[test]
    fn a_wide_file_with_one_zstd_level_and_large_pages_is_the_crates_too() {
        let settings = properties(
            BloomFilterPosition::AfterRowGroup,
            true,
            EnabledStatistics::Chunk,
            false,
        );
        let props = Arc::new(
            settings
                .as_ref()
                .clone()
                .into_builder()
                .set_data_page_row_count_limit(3000)
                .set_write_batch_size(1024)
                .set_column_compression("c".into(), Compression::ZSTD(ZstdLevel::default()))
                .build(),
        );
        let (by_crate, by_tool) = both_ways(&props, &[(7000, 1), (5000, 2), (2, 3)], true);
        assert!(by_crate == by_tool);
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&Bytes::from(by_tool))
            .unwrap();
        let c = metadata.row_group(0).column(2);
        assert_eq!(c.compression(), Compression::ZSTD(ZstdLevel::default()));
        // 3,000 plain 8-byte values a page: a body of 24,000 bytes, whose size takes three
        // varint bytes, compressed to under 8,192, which takes two.
        let index = metadata.page_index_for_row_group(0);
        let pages = index.offset_index(2).unwrap().page_locations();
        assert!(pages.len() >= 3, "{pages:?}");
        assert!(
            pages[..2].iter().all(|page| page.compressed_page_size < 8_192),
            "{pages:?}"
        );
    }

    #[test]
    fn a_wide_file_reads_back() {
        let props = properties(
            BloomFilterPosition::AfterRowGroup,
            true,
            EnabledStatistics::Chunk,
            false,
        );
        let (_, by_tool) = both_ways(&props, &[(5, 1), (3, 2)], true);
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(by_tool))
                .unwrap()
                .build()
                .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 8);
        let s = batches[0].column_by_name("s").unwrap();
        assert_eq!(s.null_count(), s.len());
        let a = batches[0].column_by_name("a").unwrap();
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(a.value(0), "id-1");
        assert!(a.is_null(1));
    }

    #[test]
    fn a_file_without_row_groups_is_the_crates_too() {
        let props = properties(
            BloomFilterPosition::AfterRowGroup,
            true,
            EnabledStatistics::Chunk,
            false,
        );
        let (by_crate, by_tool) = both_ways(&props, &[], true);
        assert!(by_crate == by_tool);
    }

    /// A frame made for settings that write `path_in_schema` cannot serve a file whose settings
    /// do not, nor the other way round: its chunks' entries would say paths the settings leave
    /// out, or lack them.
    #[test]
    fn a_file_refuses_a_frame_made_for_other_path_settings() {
        let folder = tempfile::tempdir().unwrap();
        let root = ArrowSchemaConverter::new()
            .convert(&full_schema())
            .unwrap()
            .root_schema_ptr();
        let leaves = Arc::new(Leaves::of_root(&root));
        let settings =
            |paths: bool| properties(BloomFilterPosition::End, paths, EnabledStatistics::Chunk, false);
        for (frame_paths, file_paths) in [(true, false), (false, true), (true, true)] {
            let frame = Arc::new(FooterFrame::of(&root, &leaves, &settings(frame_paths)).unwrap());
            let path = folder.path().join(format!("{frame_paths}-{file_paths}.parquet"));
            let file = File::create(&path).unwrap();
            let opened = WideFile::on(file, &path, leaves.clone(), settings(file_paths), frame);
            assert_eq!(
                opened.is_ok(),
                frame_paths == file_paths,
                "{frame_paths} {file_paths}"
            );
        }
    }

    /// Every type an Arrow schema converts to, as `thrift.rs` encodes the footer's frame and as
    /// the crate does, with and without key-value metadata, in both writer versions.
    #[test]
    fn the_footer_frame_is_the_crates_for_every_arrow_type() {
        use arrow_schema::{Fields, TimeUnit};
        let with_id = |field: Field, id: &str| {
            field.with_metadata(std::collections::HashMap::from([(
                "PARQUET:field_id".to_owned(),
                id.to_owned(),
            )]))
        };
        let members = Fields::from(vec![
            Field::new("text", DataType::Utf8, true),
            with_id(Field::new("small", DataType::Int8, false), "7"),
            Field::new("unsigned", DataType::UInt16, true),
            Field::new("count", DataType::Int32, true),
            Field::new("big", DataType::UInt64, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("decimal", DataType::Decimal128(32, 6), true),
            Field::new("short decimal", DataType::Decimal128(5, 2), true),
            Field::new(
                "instant",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("local", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new(
                "nanos",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+01:00".into())),
                true,
            ),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "clock",
                DataType::Time32(arrow_schema::TimeUnit::Millisecond),
                true,
            ),
            Field::new(
                "fine clock",
                DataType::Time64(arrow_schema::TimeUnit::Nanosecond),
                true,
            ),
            Field::new("half", DataType::Float16, true),
            Field::new("single", DataType::Float32, true),
            Field::new("double", DataType::Float64, true),
            Field::new("bytes", DataType::Binary, true),
            Field::new("fixed", DataType::FixedSizeBinary(16), true),
            Field::new(
                "interval",
                DataType::Interval(arrow_schema::IntervalUnit::YearMonth),
                true,
            ),
        ]);
        let map = DataType::Map(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(
                    vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", DataType::Int64, true),
                    ]
                    .into(),
                ),
                false,
            )),
            false,
        );
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("s", DataType::Struct(members.clone()), true),
            Field::new("l", DataType::new_list(DataType::Struct(members), true), true),
            Field::new("m", map, true),
            Field::new(
                "ll",
                DataType::new_list(DataType::new_list(DataType::Int32, true), false),
                true,
            ),
        ]);
        for coerce in [true, false] {
            let descr = ArrowSchemaConverter::new()
                .with_coerce_types(coerce)
                .convert(&schema)
                .unwrap();
            for version in [
                parquet::file::properties::WriterVersion::PARQUET_1_0,
                parquet::file::properties::WriterVersion::PARQUET_2_0,
            ] {
                for metadata in [
                    None,
                    Some(vec![]),
                    Some(vec![
                        KeyValue::new("k".into(), "v".to_owned()),
                        KeyValue {
                            key: "no value".into(),
                            value: None,
                        },
                    ]),
                ] {
                    let props = Arc::new(
                        WriterProperties::builder()
                            .set_writer_version(version)
                            .set_key_value_metadata(metadata)
                            .build(),
                    );
                    let ours = thrift::file_metadata_frame(
                        descr.root_schema(),
                        &Leaves::of_root(descr.root_schema()),
                        &props,
                    )
                    .unwrap();
                    let crates = FooterFrame::by_crate(descr.root_schema_ptr(), &props).unwrap();
                    assert!(ours == crates, "coerce {coerce}, {version:?}");
                }
            }
        }
    }
}
