//! The leaf columns of a wide table that no row of a row group reaches, written without working
//! out their levels one leaf at a time.
//!
//! Why: a lossless resource table has thousands of leaf columns, and on real data nearly all of
//! them are null under a null or empty parent (500 MB of Synthea Bundles: 99% of 920 million
//! levels). The Arrow writer works out and encodes every leaf's levels on its own, which was most
//! of the Parquet work of `--resources all`. Yet every leaf below the same deepest node that some
//! row reaches has that node's levels. So a [`Plan`] sorts the leaves of the rows held for a row
//! group: the leaves some row reaches go through the Arrow writer, cut down to those leaves
//! ([`Plan::reached_part`]); for the others, [`AbsentChunks`] works out each deepest reached
//! node's levels once, encodes one column chunk per kind of leaf below it (maximum levels, writer
//! settings, and physical type where the pages depend on it), and gives the other leaves of
//! that kind the same pages under their own column metadata. The file holds what the Arrow
//! writer would write: the same values, levels, value and null counts and level histograms in
//! every chunk, which the unit round trips check (`reached::through_parquet`, the tests of
//! `parquet.rs` and the tests below).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder};
use arrow_schema::{DataType, Field, FieldRef, Fields, SchemaRef};
use bytes::Bytes;
#[cfg(test)]
use parquet::basic::EncodingMask;
use parquet::basic::{Compression, Encoding, Type as PhysicalType};
use parquet::column::writer::{get_column_writer, ColumnCloseResult, ColumnWriter};
#[cfg(test)]
use parquet::file::metadata::{ColumnChunkMetaData, LevelHistogram};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr, WriterVersion};
#[cfg(test)]
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
#[cfg(test)]
use parquet::schema::types::ColumnDescriptor;
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

use super::leaves::Leaves;
use super::null_pages::{level_bits, NullPages};
use crate::fhir::key_hash::FastHash;

/// For the rows held for one or more row groups of a wide table: which leaves some row reaches
/// and, for the others, the deepest node their rows reach.
pub(super) struct Plan {
    fields: Vec<FieldPlan>,
}

/// [`Plan`] for one top-level column.
struct FieldPlan {
    /// Per leaf of the column, in schema order: `None` when some row reaches it, or else the
    /// index in `groups` of the deepest node its rows reach.
    leaves: Vec<Option<usize>>,
    /// The child positions from the top-level column down to each group's deepest reached node
    /// (a list's items are child 0); `None`: no row has the column at all.
    groups: Vec<Option<Vec<usize>>>,
}

impl FieldPlan {
    fn reached_leaves(&self) -> usize {
        self.leaves.iter().filter(|leaf| leaf.is_none()).count()
    }
}

impl Plan {
    /// Sorts the leaves of `schema` by what the rows of `held` reach. Leaves that `written`
    /// marks (by leaf index over all columns) go through the Arrow writer whatever the rows
    /// reach: those with a bloom filter, which the chunks made here would not have.
    pub(super) fn new(schema: &SchemaRef, held: &[RecordBatch], written: &[bool]) -> Plan {
        let mut first_leaf = 0;
        let fields = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(position, field)| {
                let mut present: Vec<bool> = Vec::new();
                for batch in held {
                    let mut here = Vec::with_capacity(present.len());
                    reach(field, batch.column(position).as_ref(), None, false, &mut here);
                    if present.is_empty() {
                        present = here;
                    } else {
                        present.iter_mut().zip(here).for_each(|(was, is)| *was |= is);
                    }
                }
                let leaves = leaf_count(field.data_type());
                // Without a flag per leaf, every leaf goes through the Arrow writer.
                let written = written.get(first_leaf..first_leaf + leaves);
                first_leaf += leaves;
                let mut plan = FieldPlan {
                    leaves: Vec::with_capacity(leaves),
                    groups: Vec::new(),
                };
                if present.is_empty() {
                    // No held batches: every leaf is written through the Arrow writer.
                    plan.leaves = vec![None; leaves];
                    return plan;
                }
                let mut frontier = Frontier {
                    path: None,
                    group: None,
                };
                let mut node = 0;
                assign(
                    field.data_type(),
                    &present,
                    &mut node,
                    &mut Vec::new(),
                    &mut frontier,
                    &mut plan,
                );
                for (index, leaf) in plan.leaves.iter_mut().enumerate() {
                    if written.is_none_or(|written| written[index]) {
                        *leaf = None;
                    }
                }
                plan
            })
            .collect();
        Plan { fields }
    }

    /// How many leaves of top-level column `position` some row reaches.
    pub(super) fn reached_leaves(&self, position: usize) -> usize {
        self.fields[position].reached_leaves()
    }

    /// How many top-level columns the plan covers.
    pub(super) fn columns(&self) -> usize {
        self.fields.len()
    }

    /// Per leaf of top-level column `position`, in schema order: whether it goes through the
    /// Arrow writer.
    pub(super) fn reached_in(&self, position: usize) -> impl Iterator<Item = bool> + '_ {
        self.fields[position].leaves.iter().map(Option::is_none)
    }

    /// Top-level column `position` of `column` cut down to the leaves some row reaches, for the
    /// Arrow writer; `None` when it reaches none. The levels of a leaf depend only on the nodes
    /// above it, so they are the same as in the whole column.
    pub(super) fn reached_part(
        &self,
        position: usize,
        field: &FieldRef,
        column: &ArrayRef,
    ) -> Result<Option<(FieldRef, ArrayRef)>> {
        let plan = &self.fields[position];
        let reached = plan.reached_leaves();
        if reached == plan.leaves.len() {
            return Ok(Some((field.clone(), column.clone())));
        }
        if reached == 0 {
            return Ok(None);
        }
        let mut keep = plan.leaves.iter().map(Option::is_none);
        prune(field, column, &mut keep)
    }
}

/// The deepest node reached on the way down: its path and, once a leaf needs it, its group.
struct Frontier {
    path: Option<Vec<usize>>,
    group: Option<usize>,
}

/// Gives every leaf below the node at `present[*node]` (of type `data_type`, at `path`) its
/// place in `plan`.
fn assign(
    data_type: &DataType,
    present: &[bool],
    node: &mut usize,
    path: &mut Vec<usize>,
    frontier: &mut Frontier,
    plan: &mut FieldPlan,
) {
    let here = present[*node];
    *node += 1;
    let mut deeper;
    let frontier = if here {
        deeper = Frontier {
            path: Some(path.clone()),
            group: None,
        };
        &mut deeper
    } else {
        frontier
    };
    match data_type {
        DataType::Struct(children) => {
            for (index, child) in children.iter().enumerate() {
                path.push(index);
                assign(child.data_type(), present, node, path, frontier, plan);
                path.pop();
            }
        }
        DataType::List(item) => {
            path.push(0);
            assign(item.data_type(), present, node, path, frontier, plan);
            path.pop();
        }
        _ if here => plan.leaves.push(None),
        _ => {
            let group = *frontier.group.get_or_insert_with(|| {
                plan.groups.push(frontier.path.clone());
                plan.groups.len() - 1
            });
            plan.leaves.push(Some(group));
        }
    }
}

/// Pushes onto `present`, in pre-order, whether each node of `field` is reached by a slot of
/// `array` in `scope` (`None`: every slot). A node is reached when an in-scope slot holds it;
/// a list's items also when an in-scope slot holds a null item, which has a level of its own.
/// (`parquet.rs` `filled_leaves` answers a looser question, for writer settings only.)
fn reach(
    field: &Field,
    array: &dyn Array,
    scope: Option<BooleanBuffer>,
    item: bool,
    present: &mut Vec<bool>,
) {
    let valid = and(&scope, array);
    let here = if item {
        count(&scope, array.len()) > 0
    } else {
        count(&valid, array.len()) > 0
    };
    present.push(here);
    if !here {
        present.resize(present.len() + nodes_below(field.data_type()), false);
        return;
    }
    match field.data_type() {
        DataType::Struct(children) => {
            for (child, column) in children.iter().zip(array.as_struct().columns()) {
                reach(child, column.as_ref(), valid.clone(), false, present);
            }
        }
        DataType::List(item) => {
            let list = array.as_list::<i32>();
            let scope = item_scope(list, &valid);
            reach(item, list.values().as_ref(), scope, true, present);
        }
        _ => {}
    }
}

/// The slots of `scope` where `array` is not null.
fn and(scope: &Option<BooleanBuffer>, array: &dyn Array) -> Option<BooleanBuffer> {
    match (scope, array.nulls()) {
        (None, None) => None,
        (Some(scope), None) => Some(scope.clone()),
        (None, Some(nulls)) => Some(nulls.inner().clone()),
        (Some(scope), Some(nulls)) => Some(scope & nulls.inner()),
    }
}

fn count(scope: &Option<BooleanBuffer>, len: usize) -> usize {
    scope.as_ref().map_or(len, BooleanBuffer::count_set_bits)
}

/// The items of `list` that belong to its slots in `valid`.
fn item_scope(list: &ListArray, valid: &Option<BooleanBuffer>) -> Option<BooleanBuffer> {
    let offsets = list.value_offsets();
    let items = list.values().len();
    let first = offsets[0] as usize;
    let last = offsets[offsets.len() - 1] as usize;
    if valid.is_none() && first == 0 && last == items {
        return None;
    }
    let mut scope = BooleanBufferBuilder::new(items);
    let mut at = 0;
    for slot in 0..list.len() {
        if valid.as_ref().is_some_and(|valid| !valid.value(slot)) {
            continue;
        }
        let (start, end) = (offsets[slot] as usize, offsets[slot + 1] as usize);
        scope.append_n(start - at, false);
        scope.append_n(end - start, true);
        at = end;
    }
    scope.append_n(items - at, false);
    Some(scope.finish())
}

/// How many nodes are below a node of type `data_type`.
fn nodes_below(data_type: &DataType) -> usize {
    match data_type {
        DataType::Struct(children) => children
            .iter()
            .map(|child| 1 + nodes_below(child.data_type()))
            .sum(),
        DataType::List(item) => 1 + nodes_below(item.data_type()),
        _ => 0,
    }
}

/// How many leaf (Parquet) columns a column of type `data_type` makes.
pub(super) fn leaf_count(data_type: &DataType) -> usize {
    match data_type {
        DataType::Struct(children) => children.iter().map(|child| leaf_count(child.data_type())).sum(),
        DataType::List(item) => leaf_count(item.data_type()),
        _ => 1,
    }
}

/// `field` and `array` cut down to the leaves `keep` marks (one entry per leaf, in schema
/// order); `None` when it marks none.
fn prune(
    field: &FieldRef,
    array: &ArrayRef,
    keep: &mut impl Iterator<Item = bool>,
) -> Result<Option<(FieldRef, ArrayRef)>> {
    match field.data_type() {
        DataType::Struct(children) => {
            let structs = array.as_struct();
            let (mut fields, mut columns, mut whole) = (Vec::new(), Vec::new(), true);
            for (child, column) in children.iter().zip(structs.columns()) {
                match prune(child, column, keep)? {
                    Some((kept, column)) => {
                        whole &= Arc::ptr_eq(&kept, child);
                        fields.push(kept);
                        columns.push(column);
                    }
                    None => whole = false,
                }
            }
            if fields.is_empty() {
                return Ok(None);
            }
            if whole {
                return Ok(Some((field.clone(), array.clone())));
            }
            let fields = Fields::from(fields);
            let pruned = StructArray::try_new(fields.clone(), columns, structs.nulls().cloned())
                .with_context(|| format!("cannot cut down column {}", field.name()))?;
            let field = field.as_ref().clone().with_data_type(DataType::Struct(fields));
            Ok(Some((Arc::new(field), Arc::new(pruned))))
        }
        DataType::List(item) => {
            let list = array.as_list::<i32>();
            let Some((kept, values)) = prune(item, list.values(), keep)? else {
                return Ok(None);
            };
            if Arc::ptr_eq(&kept, item) {
                return Ok(Some((field.clone(), array.clone())));
            }
            let pruned = ListArray::try_new(
                kept.clone(),
                list.offsets().clone(),
                values,
                list.nulls().cloned(),
            )
            .with_context(|| format!("cannot cut down column {}", field.name()))?;
            let field = field.as_ref().clone().with_data_type(DataType::List(kept));
            Ok(Some((Arc::new(field), Arc::new(pruned))))
        }
        _ => Ok(keep
            .next()
            .unwrap_or(false)
            .then(|| (field.clone(), array.clone()))),
    }
}

/// Which leaves share encoded pages: the same levels (group), level widths ([`level_bits`])
/// and writer settings, and the same physical type unless both kinds are
/// [`Kind::across_types`]. The settings are those the file's null chunk settings set per
/// column (`null_chunk_properties` of `WriteOptions::properties_for`: dictionary, statistics,
/// the codec; bloom filters, whose leaves never come here); the others are the same for every
/// column of a file.
#[derive(PartialEq, Clone)]
pub(super) struct Kind {
    physical: PhysicalType,
    max_def: i16,
    max_rep: i16,
    /// The codec a null chunk is first encoded in; the chunk kept may be uncompressed
    /// ([`NullChunkProperties`]), which its metadata says, and which leaves sharing its pages
    /// take with them (`wide_file.rs`).
    compression: Compression,
    dictionary: bool,
    statistics: EnabledStatistics,
    encoding: Option<Encoding>,
    /// Whether a null chunk's pages are the same bytes for every physical type: with no
    /// dictionary page, no page statistics (a column index is typed) and the PLAIN values of
    /// writer version 1, a page of nulls holds its levels only. (Version 2 picks an encoding
    /// per type, some of which write a header even for no values.)
    across_types: bool,
}

impl Kind {
    /// Whether a null chunk of this kind has the pages of one of `other` kind: those of another
    /// physical type too when both are [`Kind::across_types`], the column chunk statistics then
    /// remade for the leaf's type (`wide_file.rs`). A third of the null chunks of a row group
    /// differ from one already made only by their type (counted on 500 MB of NDJSON).
    ///
    /// Kinds of different maximum levels share pages when their levels have the same width
    /// and no column index is written: a column index keeps a level histogram per page as
    /// long as the column's maximum level, which the footer cannot remake (the chunk's own
    /// histograms it does). Below one reached node, leaves of several depths sharing pages
    /// cut the null chunks encoded by 46% (500 MB of Bundles: 4,415 -> 2,381).
    fn shares_pages_with(&self, other: &Kind) -> bool {
        let levels =
            if self.statistics == EnabledStatistics::Page || other.statistics == EnabledStatistics::Page {
                self.max_def == other.max_def && self.max_rep == other.max_rep
            } else {
                level_bits(self.max_def) == level_bits(other.max_def)
                    && level_bits(self.max_rep) == level_bits(other.max_rep)
            };
        (self.physical == other.physical || (self.across_types && other.across_types))
            && levels
            && self.compression == other.compression
            && self.dictionary == other.dictionary
            && self.statistics == other.statistics
            && self.encoding == other.encoding
    }
}

/// A column path no leaf has: looked up in a file's properties, it gives what a leaf without
/// settings of its own gets.
pub(super) fn path_of_no_leaf() -> ColumnPath {
    ColumnPath::new(Vec::new())
}

/// Each leaf's path where `own` (when given) marks it as one `props` may set something for by
/// path, `None` for the others (they have the defaults). Made once per file's settings: the
/// codecs, bloom filters and [`Kind`]s of the leaves all look these paths up.
pub(super) fn own_paths(leaves: &Leaves, own: Option<&[bool]>) -> Vec<Option<ColumnPath>> {
    (0..leaves.len())
        .map(|leaf| own.is_none_or(|own| own[leaf]).then(|| leaves.column_path(leaf)))
        .collect()
}

/// The [`Kind`] of every leaf column of a file with `leaves` and `props`, in schema order.
/// Worked out once per file's settings: looking the settings up by column path for each chunk
/// hashed the path four times over, for thousands of chunks per row group. A leaf without a
/// path in `paths` ([`own_paths`]) has `props`' defaults, looked up once.
pub(super) fn leaf_kinds(
    leaves: &Leaves,
    props: &WriterProperties,
    paths: &[Option<ColumnPath>],
) -> Arc<[Kind]> {
    let settings = |path: &ColumnPath| {
        let dictionary = props.dictionary_enabled(path);
        let statistics = props.statistics_enabled(path);
        let encoding = props.encoding(path);
        let across_types = !dictionary
            && statistics == EnabledStatistics::Chunk
            && matches!(encoding, None | Some(Encoding::PLAIN))
            && props.writer_version() == WriterVersion::PARQUET_1_0;
        (
            props.compression(path),
            dictionary,
            statistics,
            encoding,
            across_types,
        )
    };
    let defaults = settings(&path_of_no_leaf());
    (0..leaves.len())
        .map(|leaf| {
            let (compression, dictionary, statistics, encoding, across_types) = match &paths[leaf] {
                None => defaults,
                Some(path) => settings(path),
            };
            Kind {
                physical: leaves.physical_type(leaf),
                max_def: leaves.max_def_level(leaf),
                max_rep: leaves.max_rep_level(leaf),
                compression,
                dictionary,
                statistics,
                encoding,
                across_types,
            }
        })
        .collect()
}

/// Whose levels a group of leaves has: a node of top-level column `.0` (its group `.1`), or no
/// node at all (the column is null in every row: one zero level per row, whatever the column).
#[derive(PartialEq, Eq, Hash, Clone, Copy)]
enum Levels {
    Node(usize, usize),
    NullColumn,
}

/// An encoded column chunk of null values and the writer's account of it.
pub(super) struct Chunk {
    pub(super) pages: Bytes,
    pub(super) close: ColumnCloseResult,
}

/// The settings null chunks are encoded with (made by `parquet::null_chunk_properties`).
///
/// Why two: a null chunk is compressed only where that makes it smaller. Most hold levels that
/// are one run each (every row stops at the same level: the whole column is null, or every
/// row reaches the group's node and no further), a page of a few bytes that a codec only makes
/// longer (its frame header), and so do many with a few runs. An uncompressed chunk also
/// spares its readers a codec: the parquet crate makes a compressor and a decompressor context
/// for each compressed column chunk it reads, and a row group has thousands. The bit-packed
/// levels below a node some rows reach (one per row or list item) are what the run's codec
/// makes smaller.
#[derive(Clone)]
pub(super) struct NullChunkProperties {
    /// The run's codec on every column (the leaves with settings of their own have it too:
    /// `WriteOptions::properties_with_own_leaves`).
    pub(super) compressed: WriterPropertiesPtr,
    /// The same settings, uncompressed on every column.
    pub(super) uncompressed: WriterPropertiesPtr,
}

/// A null chunk encoded for one kind of leaf: its pages and the writer's account of them.
type EncodedNulls = (Kind, Bytes, Arc<ColumnCloseResult>);

/// Makes the column chunks of one row group's unreached leaves.
pub(super) struct AbsentChunks<'a> {
    plan: &'a Plan,
    schema: &'a SchemaRef,
    held: &'a [RecordBatch],
    /// The row group's rows: ranges of rows of `held` batches, in order.
    rows: &'a [HeldRange],
    props: NullChunkProperties,
    /// Every leaf's [`Kind`] ([`leaf_kinds`] of the file's columns and `props.compressed`).
    kinds: &'a [Kind],
    /// The levels of the groups of the top-level column in progress (and of null columns).
    levels: HashMap<Levels, Arc<GroupLevels>, FastHash>,
    levels_of_column: Option<usize>,
    /// The null chunks encoded for each group's levels so far, one per kind of leaf.
    chunks: HashMap<Levels, Vec<EncodedNulls>, FastHash>,
    /// Encodes the chunks whose settings the column writer is not needed for (`null_pages.rs`).
    null_pages: NullPages,
}

impl<'a> AbsentChunks<'a> {
    pub(super) fn new(
        plan: &'a Plan,
        schema: &'a SchemaRef,
        held: &'a [RecordBatch],
        rows: &'a [HeldRange],
        props: NullChunkProperties,
        kinds: &'a [Kind],
    ) -> Self {
        AbsentChunks {
            plan,
            schema,
            held,
            rows,
            props,
            kinds,
            levels: HashMap::default(),
            levels_of_column: None,
            chunks: HashMap::default(),
            null_pages: NullPages::default(),
        }
    }

    /// The encoded chunk of unreached leaf `leaf` (the leaf's index within top-level column
    /// `position`; `column`, its index among all the file's `leaves`): its pages and the
    /// writer's account of them, which may be of another leaf sharing the pages
    /// (`wide_file.rs` writes the chunk's metadata for its own leaf, as `copy_for` makes it).
    pub(super) fn chunk(
        &mut self,
        position: usize,
        leaf: usize,
        column: usize,
        leaves: &Leaves,
    ) -> Result<(Bytes, Arc<ColumnCloseResult>)> {
        let field_plan = &self.plan.fields[position];
        let group = field_plan.leaves[leaf].context("a reached leaf has no absent chunk")?;
        let levels = match field_plan.groups[group] {
            None => Levels::NullColumn,
            Some(_) => Levels::Node(position, group),
        };
        let kind = self
            .kinds
            .get(column)
            .context("a leaf beyond the file's columns")?;
        let known = self
            .chunks
            .get(&levels)
            .and_then(|chunks| chunks.iter().find(|(seen, _, _)| seen.shares_pages_with(kind)));
        if let Some((_, pages, template)) = known {
            return Ok((pages.clone(), template.clone()));
        }
        let values = self.levels(levels)?;
        anyhow::ensure!(column < leaves.len(), "a leaf beyond the file's schema");
        let descr = &leaves.descriptor(column);
        let null_pages = &mut self.null_pages;
        let mut encode =
            |props: &WriterPropertiesPtr| match null_pages.encode(descr, props, &values.def, &values.rep)? {
                Some((pages, close)) => Ok(Chunk { pages, close }),
                None => encode_nulls(descr.clone(), props.clone(), &values.def, &values.rep),
            };
        // Levels of one run each make a page of a few bytes, which no codec makes smaller:
        // encoded uncompressed straight away, as the rule below would end with anyway.
        let chunk = match values.one_run {
            true => encode(&self.props.uncompressed)?,
            false => {
                let chunk = encode(&self.props.compressed)?;
                // Both sizes count the same page headers.
                let metadata = &chunk.close.metadata;
                match metadata.compressed_size() < metadata.uncompressed_size()
                    || metadata.compression() == Compression::UNCOMPRESSED
                {
                    true => chunk,
                    false => encode(&self.props.uncompressed)?,
                }
            }
        };
        let made = (chunk.pages, Arc::new(chunk.close));
        self.chunks
            .entry(levels)
            .or_default()
            .push((kind.clone(), made.0.clone(), made.1.clone()));
        Ok(made)
    }

    /// The definition and repetition levels of a group over the row group's rows.
    fn levels(&mut self, levels: Levels) -> Result<Arc<GroupLevels>> {
        if let Levels::Node(position, _) = levels {
            if self.levels_of_column != Some(position) {
                // A column's groups are not needed once the next column's leaves come.
                self.levels.retain(|key, _| *key == Levels::NullColumn);
                self.chunks.retain(|key, _| *key == Levels::NullColumn);
                self.levels_of_column = Some(position);
            }
        }
        if let Some(known) = self.levels.get(&levels) {
            return Ok(known.clone());
        }
        let rows: usize = self.rows.iter().map(|(_, range)| range.len()).sum();
        let (mut def, mut rep) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        match levels {
            Levels::NullColumn => {
                def.resize(rows, 0);
                rep.resize(rows, 0);
            }
            Levels::Node(position, group) => {
                let path = self.plan.fields[position].groups[group]
                    .as_deref()
                    .context("a null column's group has no node")?;
                let field = &self.schema.fields()[position];
                let (mut places, mut below) = (Vec::new(), Vec::new());
                for (batch, range) in self.rows {
                    let column = self.held[*batch].column(position);
                    let rows = range.clone();
                    walk(field, column.as_ref(), path, rows, &mut places, &mut below)?;
                    def.extend(places.iter().map(|place| place.def));
                    rep.extend(places.iter().map(|place| place.rep));
                }
            }
        }
        let one_run = is_one_run(&def) && is_one_run(&rep);
        let made = Arc::new(GroupLevels { def, rep, one_run });
        self.levels.insert(levels, made.clone());
        Ok(made)
    }
}

/// A group's definition and repetition levels over a row group's rows.
struct GroupLevels {
    def: Vec<i16>,
    rep: Vec<i16>,
    /// Whether `def` and `rep` are each one value repeated: pages of one run per level kind.
    one_run: bool,
}

/// Whether `levels` are one value repeated (or none).
fn is_one_run(levels: &[i16]) -> bool {
    levels
        .first()
        .is_none_or(|first| levels.iter().all(|level| level == first))
}

/// Rows of a held batch: its index among the held batches and the range of its rows.
pub(super) type HeldRange = (usize, Range<usize>);

/// Where a leaf's level comes from, while [`walk`] goes down a path: a slot of the array at
/// the depth reached, or ([`SETTLED`]) a level already settled there. Eight bytes: there is
/// one for every level of the range walked.
#[derive(Clone, Copy)]
struct Place {
    def: i16,
    rep: i16,
    slot: u32,
}

/// The slot of a [`Place`] whose level is settled. Arrow arrays with `i32` offsets have fewer
/// slots than this.
const SETTLED: u32 = u32::MAX;

/// Puts in `places` the levels that rows `rows` of `array` (of `field`) give a leaf below the
/// node at `path`, when nothing below that node is ever present: Parquet's levels, as the
/// Arrow writer works them out. Goes down the path a step at a time for all the rows at once
/// (a list's items taking their list's place, in order), so that each step's array is cast
/// and its nulls looked up once, not once per row (walking each row down the path on its own
/// was 3% of the instructions of `--resources all` on NDJSON). `below` is room for the next
/// step's places, kept by the caller from one call to the next.
fn walk(
    field: &Field,
    array: &dyn Array,
    path: &[usize],
    rows: Range<usize>,
    places: &mut Vec<Place>,
    below: &mut Vec<Place>,
) -> Result<()> {
    places.clear();
    for row in rows {
        let slot = u32::try_from(row)
            .ok()
            .filter(|slot| *slot != SETTLED)
            .context("more rows than an array with i32 offsets has")?;
        places.push(Place { def: 0, rep: 0, slot });
    }
    let (mut field, mut array, mut path) = (field, array, path);
    let mut lists = 0;
    loop {
        let nullable = field.is_nullable();
        let nulls = array.nulls();
        for place in places.iter_mut().filter(|place| place.slot != SETTLED) {
            if nullable && nulls.is_some_and(|nulls| nulls.is_null(place.slot as usize)) {
                place.slot = SETTLED;
            } else {
                place.def += i16::from(nullable);
            }
        }
        let Some((&child, rest)) = path.split_first() else {
            return Ok(());
        };
        path = rest;
        match field.data_type() {
            DataType::Struct(children) => {
                field = &children[child];
                array = array.as_struct().column(child).as_ref();
            }
            DataType::List(item) => {
                let offsets = array.as_list::<i32>().value_offsets();
                below.clear();
                for place in places.drain(..) {
                    if place.slot == SETTLED {
                        below.push(place);
                        continue;
                    }
                    let slot = place.slot as usize;
                    // Offsets of a valid array are from 0 to i32::MAX: every item's slot fits a
                    // u32 below SETTLED.
                    let (start, end) = (offsets[slot] as u32, offsets[slot + 1] as u32);
                    if start == end {
                        below.push(Place {
                            slot: SETTLED,
                            ..place
                        });
                    }
                    for index in start..end {
                        let rep = if index == start { place.rep } else { lists + 1 };
                        below.push(Place {
                            def: place.def + 1,
                            rep,
                            slot: index,
                        });
                    }
                }
                std::mem::swap(places, below);
                lists += 1;
                field = item;
                array = array.as_list::<i32>().values().as_ref();
            }
            _ => unreachable!("a path goes through structs and lists"),
        }
    }
}

/// Encodes a column chunk of `descr` holding only nulls, at these levels.
pub(super) fn encode_nulls(
    descr: ColumnDescPtr,
    props: WriterPropertiesPtr,
    def: &[i16],
    rep: &[i16],
) -> Result<Chunk> {
    let rep = (descr.max_rep_level() > 0).then_some(rep);
    let mut sink = TrackedWrite::new(Vec::new());
    let close = {
        let pages = Box::new(SerializedPageWriter::new(&mut sink));
        macro_rules! nulls {
            ($writer:expr) => {{
                let mut writer = $writer;
                writer.write_batch(&[], Some(def), rep)?;
                writer.close()?
            }};
        }
        match get_column_writer(descr, props, pages) {
            ColumnWriter::BoolColumnWriter(writer) => nulls!(writer),
            ColumnWriter::Int32ColumnWriter(writer) => nulls!(writer),
            ColumnWriter::Int64ColumnWriter(writer) => nulls!(writer),
            ColumnWriter::Int96ColumnWriter(writer) => nulls!(writer),
            ColumnWriter::FloatColumnWriter(writer) => nulls!(writer),
            ColumnWriter::DoubleColumnWriter(writer) => nulls!(writer),
            ColumnWriter::ByteArrayColumnWriter(writer) => nulls!(writer),
            ColumnWriter::FixedLenByteArrayColumnWriter(writer) => nulls!(writer),
        }
    };
    let pages = Bytes::from(sink.into_inner()?);
    Ok(Chunk { pages, close })
}

/// `template`'s account of its chunk, for the same pages under column `descr`. The statistics
/// are made as the writer makes them for `descr` (its type and sort order), and so are the byte
/// array counts of a template of another physical type (see [`Kind::shares_pages_with`]).
/// The run writes this account straight into the footer (`wide_file.rs`); tests check the two
/// agree byte for byte.
#[cfg(test)]
pub(super) fn copy_for(descr: ColumnDescPtr, template: &ColumnCloseResult) -> Result<ColumnCloseResult> {
    let from = &template.metadata;
    let same_type = from.column_type() == descr.physical_type();
    // Pages of nulls in PLAIN values and RLE levels only: what `Kind::across_types` allows.
    let levels_only = EncodingMask::new_from_encodings([Encoding::PLAIN, Encoding::RLE].iter());
    anyhow::ensure!(
        same_type || *from.encodings_mask() == levels_only,
        "{}: null pages of another type in other encodings than PLAIN and RLE",
        descr.path()
    );
    let unencoded_bytes = match (same_type, descr.physical_type()) {
        (true, _) => from.unencoded_byte_array_data_bytes(),
        (false, PhysicalType::BYTE_ARRAY) => Some(0),
        (false, _) => None,
    };
    let statistics = match from.statistics() {
        Some(statistics) => Some(null_statistics(statistics, &descr)?),
        None => None,
    };
    let rep_histogram = histogram_to(from.repetition_level_histogram(), descr.max_rep_level())?;
    let def_histogram = histogram_to(from.definition_level_histogram(), descr.max_def_level())?;
    let mut metadata = ColumnChunkMetaData::builder(descr)
        .set_compression_codec(from.compression_codec())
        .set_encodings_mask(*from.encodings_mask())
        .set_total_compressed_size(from.compressed_size())
        .set_total_uncompressed_size(from.uncompressed_size())
        .set_num_values(from.num_values())
        .set_data_page_offset(from.data_page_offset())
        .set_dictionary_page_offset(from.dictionary_page_offset())
        .set_unencoded_byte_array_data_bytes(unencoded_bytes)
        .set_repetition_level_histogram(rep_histogram)
        .set_definition_level_histogram(def_histogram);
    if let Some(statistics) = statistics {
        metadata = metadata.set_statistics(statistics);
    }
    if let Some(stats) = from.page_encoding_stats() {
        metadata = metadata.set_page_encoding_stats(stats.clone());
    }
    if let Some(mask) = from.page_encoding_stats_mask() {
        metadata = metadata.set_page_encoding_stats_mask(*mask);
    }
    Ok(ColumnCloseResult {
        bytes_written: template.bytes_written,
        rows_written: template.rows_written,
        metadata: metadata.build()?,
        bloom_filter: None,
        column_index: template.column_index.clone(),
        offset_index: template.offset_index.clone().map(|mut index| {
            if !same_type {
                // Per page, and only for byte arrays, as in the chunk's metadata.
                index.unencoded_byte_array_data_bytes =
                    unencoded_bytes.map(|_| vec![0; index.page_locations.len()]);
            }
            index
        }),
    })
}

/// A chunk's level histogram `from` (of a template whose maximum level may differ) for a
/// column whose maximum level is `max_level`: one count per level up to it. A null's
/// definition level lies below both maxima and its repetition level at or below the smaller
/// one, so the counts past the shorter histogram are zeros (and are checked to be).
#[cfg(test)]
fn histogram_to(from: Option<&LevelHistogram>, max_level: i16) -> Result<Option<LevelHistogram>> {
    if from.is_some_and(|from| from.len() == max_level as usize + 1) {
        return Ok(from.cloned());
    }
    let (Some(mut histogram), Some(from)) = (LevelHistogram::try_new(max_level), from) else {
        return Ok(None);
    };
    for (level, &count) in from.values().iter().enumerate() {
        if count != 0 {
            anyhow::ensure!(
                level <= max_level as usize,
                "a null chunk's level {level} above {max_level}"
            );
            histogram.increment_by(level as i16, count);
        }
    }
    Ok(Some(histogram))
}

/// The statistics of a chunk of nulls (`template`'s counts) for a column of `descr`'s type, as
/// the column writer makes them (see [`super::null_pages::null_statistics`]).
#[cfg(test)]
fn null_statistics(template: &Statistics, descr: &ColumnDescriptor) -> Result<Statistics> {
    anyhow::ensure!(
        template.min_bytes_opt().is_none()
            && template.max_bytes_opt().is_none()
            && template.distinct_count_opt().is_none(),
        "{}: a null chunk's statistics have a minimum, maximum or distinct count",
        descr.path()
    );
    let nulls = template
        .null_count_opt()
        .with_context(|| format!("{}: a null chunk's statistics count no nulls", descr.path()))?;
    Ok(super::null_pages::null_statistics(descr, nulls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::parquet::{null_chunk_properties, Compression as Codec, WriteOptions};
    use arrow_schema::{Schema, TimeUnit};
    use parquet::arrow::ArrowSchemaConverter;

    /// The kinds of `leaves` where `props` may set anything for every leaf by path.
    fn kinds_of(leaves: &Leaves, props: &WriterProperties) -> Arc<[Kind]> {
        leaf_kinds(leaves, props, &own_paths(leaves, None))
    }

    /// The types of the leaves a resource table has (and a float), as the members of one struct.
    fn typed_members() -> Fields {
        let instant = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Fields::from(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("count", DataType::Int32, true),
            Field::new("big", DataType::Int64, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("decimal", DataType::Decimal128(32, 6), true),
            Field::new("instant", instant, true),
            Field::new("day", DataType::Date32, true),
            Field::new("real", DataType::Float64, true),
            Field::new("single", DataType::Float32, true),
        ])
    }

    /// A wide table: a struct of every type, a list of such structs, and 600 text members.
    fn wide_schema() -> Schema {
        let members = typed_members();
        let item = Field::new("element", DataType::Struct(members.clone()), true);
        let many: Vec<Field> = (0..600)
            .map(|i| Field::new(format!("m{i}"), DataType::Utf8, true))
            .collect();
        Schema::new(vec![
            Field::new("group", DataType::Struct(members), true),
            Field::new("items", DataType::List(Arc::new(item)), true),
            Field::new("many", DataType::Struct(Fields::from(many)), true),
            Field::new("nested", nested_struct(3), true),
            Field::new(
                "lists",
                DataType::Struct(Fields::from(vec![
                    // Two structs above two lists: as many definition levels as three lists.
                    Field::new(
                        "two",
                        DataType::Struct(Fields::from(vec![Field::new(
                            "wrapped",
                            DataType::Struct(Fields::from(vec![Field::new("lists", nested_lists(2), true)])),
                            true,
                        )])),
                        true,
                    ),
                    Field::new("three", nested_lists(3), true),
                ])),
                true,
            ),
        ])
    }

    /// `{text, count, inner: {text, count, inner: ...}}`, `depth` structs deep: leaves of
    /// several maximum definition levels and two types below one node.
    fn nested_struct(depth: usize) -> DataType {
        let mut members = vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("count", DataType::Int32, true),
        ];
        if depth > 1 {
            members.push(Field::new("inner", nested_struct(depth - 1), true));
        }
        DataType::Struct(Fields::from(members))
    }

    /// `lists` nested `depth` deep around a text: maximum repetition level `depth`.
    fn nested_lists(depth: usize) -> DataType {
        let mut data_type = DataType::Utf8;
        for _ in 0..depth {
            data_type = DataType::List(Arc::new(Field::new("element", data_type, true)));
        }
        data_type
    }

    /// The settings of a wide table's file whose first batch reaches none of its columns, as
    /// the tool writes them (`WriteOptions::properties_for`), and its leaves.
    fn wide_file() -> (WriterPropertiesPtr, Vec<ColumnDescPtr>) {
        let schema = Arc::new(wide_schema());
        let options = WriteOptions {
            compression: Codec::Zstd,
            threads: 1,
        };
        let first = RecordBatch::new_empty(schema.clone());
        // As null chunks of more than one run of levels are first encoded: in the run's codec
        // (the first batch reaches no leaf, so none has a codec of its own).
        let props = null_chunk_properties(
            &options.properties_for(&schema, Some(&first)),
            options.codec(),
            [],
        )
        .compressed;
        let parquet_schema = ArrowSchemaConverter::new().convert(&schema).unwrap();
        (props, parquet_schema.columns().to_vec())
    }

    /// A way to encode a null chunk of a column, with settings, definition and repetition levels.
    type Encoder = fn(&ColumnDescPtr, &WriterPropertiesPtr, &[i16], &[i16]) -> Chunk;

    /// Both ways null chunks are encoded: by the tool (`null_pages.rs`), as the run does where
    /// the settings allow, and by the column writer, as it does elsewhere. Pages are shared and
    /// their metadata remade (`copy_for`) from either.
    fn encoders() -> [Encoder; 2] {
        [
            |descr, props, def, rep| {
                let (pages, close) = NullPages::default()
                    .encode(descr, props, def, rep)
                    .unwrap()
                    .expect("settings the tool encodes");
                Chunk { pages, close }
            },
            |descr, props, def, rep| encode_nulls(descr.clone(), props.clone(), def, rep).unwrap(),
        ]
    }

    #[test]
    fn null_chunks_of_every_type_at_the_same_levels_share_their_pages() {
        encoders().into_iter().for_each(every_type_shares_pages);
    }

    fn every_type_shares_pages(encode: Encoder) {
        let (props, leaves) = wide_file();
        let kinds = kinds_of(&Leaves::of_columns(&leaves), &props);
        let typed = typed_members().len();
        assert!(
            kinds.iter().all(|kind| kind.across_types),
            "the tool's wide settings"
        );
        let struct_levels = (vec![0, 1, 1, 0, 1], vec![0; 5]);
        let list_levels = (vec![0, 1, 2, 2, 1, 0], vec![0, 0, 0, 1, 0, 0]);
        // Past 20 000 rows a chunk has several pages (each with its own byte array count).
        let paged_levels = ((0..45_000).map(|i| (i % 2) as i16).collect(), vec![0; 45_000]);
        let cases = [
            (&leaves[..typed], struct_levels.clone()),
            (&leaves[typed..2 * typed], list_levels),
            (&leaves[..typed], paged_levels),
        ];
        for (same_levels, (def, rep)) in cases {
            let direct: Vec<Chunk> = same_levels
                .iter()
                .map(|descr| encode(descr, &props, &def, &rep))
                .collect();
            let pages = direct[0]
                .close
                .offset_index
                .as_ref()
                .unwrap()
                .page_locations
                .len();
            assert_eq!(
                pages > 1,
                def.len() > 20_000,
                "{} levels in {pages} pages",
                def.len()
            );
            for (from, template) in same_levels.iter().zip(&direct) {
                for (to, wanted) in same_levels.iter().zip(&direct) {
                    let names = format!("{} -> {}", from.path(), to.path());
                    assert_eq!(template.pages, wanted.pages, "{names}: pages");
                    let copied = copy_for(to.clone(), &template.close).unwrap();
                    assert_eq!(copied.metadata, wanted.close.metadata, "{names}: metadata");
                    assert_eq!(copied.offset_index, wanted.close.offset_index, "{names}");
                    assert!(copied.column_index.is_none() && wanted.close.column_index.is_none());
                }
            }
        }
    }

    /// The leaf of the wide file whose path starts with `prefix`.
    fn leaf_at(leaves: &[ColumnDescPtr], prefix: &str) -> ColumnDescPtr {
        let mut found = leaves
            .iter()
            .filter(|descr| descr.path().string().starts_with(prefix));
        let leaf = found.next().unwrap_or_else(|| panic!("no leaf at {prefix}"));
        assert!(found.next().is_none(), "more than one leaf at {prefix}");
        leaf.clone()
    }

    #[test]
    fn null_chunks_of_leaves_with_levels_of_one_width_share_their_pages() {
        encoders().into_iter().for_each(one_width_shares_pages);
    }

    fn one_width_shares_pages(encode: Encoder) {
        let (props, leaves) = wide_file();
        let at = |prefix: &str| leaf_at(&leaves, prefix);
        let levels = |group: &[ColumnDescPtr]| -> Vec<(i16, i16)> {
            group
                .iter()
                .map(|descr| (descr.max_def_level(), descr.max_rep_level()))
                .collect()
        };
        // Maximum definition levels 2 and 3 take two bits each, of a text and an integer.
        let structs = [
            at("nested.text"),
            at("nested.count"),
            at("nested.inner.text"),
            at("nested.inner.count"),
        ];
        assert_eq!(levels(&structs), [(2, 0), (2, 0), (3, 0), (3, 0)]);
        // `nested` null in some rows and present in others: levels 0 and 1 only.
        let struct_levels = (vec![0, 1, 1, 0, 1, 1, 1], vec![0; 7]);
        // Maximum repetition levels 2 and 3 take two bits each (definition levels 8: four).
        let lists = [at("lists.two"), at("lists.three")];
        assert_eq!(levels(&lists), [(8, 2), (8, 3)]);
        // Made-up levels within both leaves' maxima (the bytes depend on the widths only).
        let list_levels = (vec![0, 2, 3, 3, 2], vec![0, 0, 0, 1, 0]);
        for (group, (def, rep)) in [(&structs[..], struct_levels), (&lists[..], list_levels)] {
            let kinds = kinds_of(&Leaves::of_columns(group), &props);
            let direct: Vec<Chunk> = group
                .iter()
                .map(|descr| encode(descr, &props, &def, &rep))
                .collect();
            for (from, (template, from_kind)) in group.iter().zip(direct.iter().zip(kinds.iter())) {
                for (to, (wanted, to_kind)) in group.iter().zip(direct.iter().zip(kinds.iter())) {
                    let names = format!("{} -> {}", from.path(), to.path());
                    assert!(from_kind.shares_pages_with(to_kind), "{names}");
                    assert_eq!(template.pages, wanted.pages, "{names}: the same bytes");
                    let copied = copy_for(to.clone(), &template.close).unwrap();
                    assert_eq!(copied.metadata, wanted.close.metadata, "{names}: metadata");
                    assert_eq!(copied.offset_index, wanted.close.offset_index, "{names}");
                    assert_eq!(copied.rows_written, wanted.close.rows_written, "{names}");
                }
            }
        }
        // Up to 4, three bits: other bytes, not shared.
        let (def, rep) = (vec![0, 1, 1, 0, 1], vec![0; 5]);
        let wider = at("nested.inner.inner.text");
        let kinds = kinds_of(&Leaves::of_columns(&[structs[0].clone(), wider.clone()]), &props);
        assert!(!kinds[0].shares_pages_with(&kinds[1]));
        let two_bits = encode(&structs[0], &props, &def, &rep);
        let three_bits = encode(&wider, &props, &def, &rep);
        assert_ne!(three_bits.pages, two_bits.pages, "a wider level is other bytes");
        // A column index keeps per-page histograms as long as the maximum level: not shared.
        let paged = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::Page)
            .build();
        let kinds = kinds_of(
            &Leaves::of_columns(&[structs[0].clone(), structs[2].clone()]),
            &paged,
        );
        assert!(!kinds[0].shares_pages_with(&kinds[1]));
    }

    /// Where the pages of nulls depend on the type, kinds of different types do not share them.
    #[test]
    fn null_chunks_share_pages_across_types_only_where_they_are_the_same_bytes() {
        let (_, leaves) = wide_file();
        let base = || {
            WriterProperties::builder()
                .set_dictionary_enabled(false)
                .set_statistics_enabled(EnabledStatistics::Chunk)
        };
        let shares = |props: WriterProperties| {
            let kinds = kinds_of(&Leaves::of_columns(&leaves[..2]), &props);
            kinds[0].shares_pages_with(&kinds[1])
        };
        assert!(shares(base().build()));
        assert!(!shares(
            base().set_writer_version(WriterVersion::PARQUET_2_0).build()
        ));
        assert!(!shares(base().set_dictionary_enabled(true).build()));
        assert!(!shares(
            base().set_statistics_enabled(EnabledStatistics::Page).build()
        ));
        assert!(!shares(
            base().set_encoding(Encoding::DELTA_BINARY_PACKED).build()
        ));
    }
}
