//! The row builder of the lossless resource tables: a resource into Arrow arrays by the shape of
//! its type (docs/LOSSLESS.md, "Mapping"), straight from its text (`stream.rs`) or, for what the
//! text's way leaves (unmapped members, repeated keys, refusals), from its JSON tree (here). The
//! builders form a tree that mirrors the shape, built once per table and worker; a member the
//! resource lacks costs one null per column outside lists, and nothing below a missing list.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use arrow_array::types::{Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    ArrayRef, ArrowPrimitiveType, BooleanArray, ListArray, PrimitiveArray, RecordBatch, StringArray,
    StructArray,
};
use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, FieldRef, Fields, SchemaRef, TimeUnit};

use super::columns::{
    fitted, make_room, room_for_next, BoolColumn, DecimalColumn, InstantColumn, Int32Column, Int64Column,
    TextColumn, ValueColumn,
};
use super::numeric::scaled_decimal;
use super::place::{Place, PlaceBuilder};
use super::{shape_schema, NUMERIC_PRECISION, NUMERIC_SCALE, UNMAPPED};
use crate::diagnostics::Diagnostics;
use crate::fhir::datetime::instant_bounds;
use crate::fhir::definitions::{definitions, Member, ObjectShape, Shape, TreeOptions};
use crate::fhir::elements::{value_class, ValueClass};
use crate::fhir::key_hash::FastHash;
use crate::resource::tree::{Keep, Node, Object, Reader};
use crate::resource::{BundleEnvelope, Rejection, Resource};
use crate::source::describe_bytes;
use crate::table::{Streamed, Table, MAX_BATCH_BYTES, UTC};
use stream::EntryResources;

mod stream;

/// What the tables of one type share: the shape and the schema, derived once per run when
/// first needed (a row of the type, or its part file). A run with `--resources all` has 146
/// types, most of which the input lacks; their shapes and schemas came to 130 MB together.
struct Layout {
    resource_type: String,
    name: String,
    options: TreeOptions,
    derived: OnceLock<(ObjectShape, SchemaRef)>,
    /// Set once a thread starts deriving them (see [`Layout::derive_unless_busy`]).
    deriving: AtomicBool,
}

impl Layout {
    fn derived(&self) -> &(ObjectShape, SchemaRef) {
        self.derived.get_or_init(|| {
            self.deriving.store(true, Ordering::Relaxed);
            let shape = definitions()
                .resource_shape(&self.resource_type, self.options)
                .expect("checked to be an R4 resource type when the table was made");
            let schema = shape_schema(&self.resource_type, self.options, &shape);
            (shape, Arc::new(schema))
        })
    }

    fn schema(&self) -> SchemaRef {
        self.derived().1.clone()
    }

    /// Derives the shape and schema here unless they are, or another thread is deriving them
    /// (it is not waited for: [`Table::prepare`]). Two threads that both find them underived
    /// may both come to derive them; one then waits for the other, as without this.
    fn derive_unless_busy(&self) {
        if self.derived.get().is_none() && !self.deriving.load(Ordering::Relaxed) {
            self.derived();
        }
    }
}

/// The lossless table of one resource type.
pub struct ResourceTable {
    layout: Arc<Layout>,
    /// Built on the first row: a run with `--resources all` has 146 tables per worker, most of
    /// which never see a row.
    builder: Option<RowBuilder>,
    rows: usize,
    raw_bytes: usize,
    /// The rows of a batch once one reached [`BATCH_RAW_BYTES`] (see [`Table::is_full`]).
    batch_rows: Option<usize>,
    /// Rows read from a Bundle's entries as the walker read it ([`Table::stream_row`]) and not
    /// finished yet: each entry's text (its address, to match it when it comes back, and its
    /// length), in the Bundle's order; and whether they fill the batch.
    pending: VecDeque<(usize, usize)>,
    pending_bytes: usize,
    pending_full: bool,
}

/// The JSON text of the rows at which a resource table's batch is cut. A worker fills a batch of
/// every type it meets, and at the end of the run finishes them all at once: at 5 000 rows, the
/// batches of large resources (ExplanationOfBenefit, Claim) took tens of MB each.
const BATCH_RAW_BYTES: usize = 8 << 20;

impl ResourceTable {
    /// The table of `resource_type`, or `None` when R4 has no such type.
    pub fn new(resource_type: &str, options: TreeOptions, _batch_size: usize) -> Option<Self> {
        if !definitions().resource_types().contains(&resource_type) {
            return None;
        }
        let layout = Layout {
            resource_type: resource_type.to_owned(),
            name: super::table_name(resource_type),
            options,
            derived: OnceLock::new(),
            deriving: AtomicBool::new(false),
        };
        Some(ResourceTable::with_layout(Arc::new(layout)))
    }

    fn with_layout(layout: Arc<Layout>) -> Self {
        ResourceTable {
            layout,
            builder: None,
            rows: 0,
            raw_bytes: 0,
            batch_rows: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            pending_full: false,
        }
    }

    /// The typed depth the table's schema was derived with.
    pub fn options(&self) -> TreeOptions {
        self.layout.options
    }

    /// Appends a resource by its JSON tree: one whose tree views built, or one the text's way
    /// left (unmapped members, repeated keys, refusals; for a Bundle, also entries' resources
    /// not where the walker found them). `row_bytes`: the row's bytes of input text
    /// ([`row_bytes`]).
    fn append_tree(
        &mut self,
        resource: &Resource<'_>,
        entry_rows: &[u32],
        row_bytes: usize,
        place: &Place<'_>,
        diagnostics: &mut Diagnostics,
    ) -> Result<(), Rejection> {
        let envelope_tree;
        let tree = if entry_rows.is_empty() {
            resource.tree(&Keep::All)?
        } else {
            let envelope = resource.envelope.expect("entry rows come with an envelope");
            envelope_tree = envelope_of(resource, envelope, entry_rows)?;
            &envelope_tree
        };
        let Node::Object(object) = tree else {
            return Err(Rejection::from(format!(
                "invalid {}: not a JSON object",
                resource.resource_type
            )));
        };
        if row_bytes > MAX_BATCH_BYTES {
            // Its text columns could pass the 2 GiB Arrow's offsets address once the batch's
            // other rows are added (JSON text can also come out longer than it went in).
            let problem = format!(
                "invalid {}: {} is over the {} a resource table row may hold",
                resource.resource_type,
                describe_bytes(row_bytes as u64),
                describe_bytes(MAX_BATCH_BYTES as u64)
            );
            return Err(Rejection::from(problem));
        }
        let last_type = object.get("resourceType").and_then(Node::as_str);
        if last_type != Some(self.layout.resource_type.as_str()) {
            // `{"resourceType":"Patient", ..., "resourceType":"Observation"}`: the last key is
            // what the JSON means, and the walker read the first.
            return Err(Rejection::from(format!(
                "invalid {}: resourceType is repeated with another value",
                resource.resource_type
            )));
        }
        let layout = self.layout.clone();
        let builder = self.builder();
        let unmapped = builder.append(&layout.derived().0, object, place);
        for (path, _) in &builder.row_unmapped {
            diagnostics.unmapped(&layout.resource_type, path);
        }
        debug_assert_eq!(unmapped, builder.row_unmapped.len());
        Ok(())
    }

    /// Drops the rows read from the current Bundle's entries, a half-read one too.
    fn drop_streamed(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
        self.pending_full = false;
        self.builder().abandon_streaming();
    }

    /// [`Table::is_full`] at `held_rows` rows of `held_bytes` bytes of text.
    fn full_at(&self, held_rows: usize, held_bytes: usize, rows: usize, bytes: usize) -> bool {
        match self.batch_rows {
            None => held_rows >= rows || held_bytes >= bytes.min(BATCH_RAW_BYTES),
            Some(own) => held_rows >= own.min(rows) || held_bytes >= bytes.min(4 * BATCH_RAW_BYTES),
        }
    }

    fn builder(&mut self) -> &mut RowBuilder {
        let layout = &self.layout;
        self.builder.get_or_insert_with(|| {
            let (shape, schema) = layout.derived();
            RowBuilder::new(shape, schema)
        })
    }
}

impl Table for ResourceTable {
    fn name(&self) -> &str {
        &self.layout.name
    }

    fn resource_type(&self) -> &str {
        &self.layout.resource_type
    }

    fn schema(&self) -> SchemaRef {
        self.layout.schema()
    }

    fn fresh(&self, _batch_size: usize) -> Box<dyn Table> {
        Box::new(ResourceTable::with_layout(self.layout.clone()))
    }

    fn append(&mut self, resource: &Resource<'_>, diagnostics: &mut Diagnostics) -> Result<bool, Rejection> {
        let entry_rows = resource.envelope.map(|envelope| envelope.entry_rows());
        let entry_rows = entry_rows.as_deref().map_or(&[][..], Vec::as_slice);
        let place = Place {
            container: resource.container.map(|entry| (entry.bundle.key(), entry.entry)),
            envelope: resource.envelope.map(|envelope| (envelope.key(), entry_rows)),
        };
        // Read as the walker read its Bundle: the row only needs finishing.
        if resource.streamed && !self.pending.is_empty() {
            let (address, len) = self.pending.pop_front().expect("checked above");
            assert_eq!(
                (address, len),
                (resource.raw.as_ptr() as usize, resource.raw.len()),
                "pending rows are finished in the order they were read"
            );
            self.pending_bytes -= len;
            if self.pending.is_empty() {
                self.pending_full = false;
            }
            let layout = self.layout.clone();
            self.builder().finish_streamed_row(&layout.resource_type, &place);
            self.rows += 1;
            self.raw_bytes += len;
            if let Some(entry) = resource.container {
                entry.bundle.entry_became_row(entry.entry);
            }
            return Ok(false);
        }
        // Straight from the text (rows/stream.rs), a Bundle's envelope too, unless the tree is
        // there already (views of the type built it; an envelope's tree is parsed apart from
        // it all the same) or the row is too large (refused by the tree's way).
        let row_bytes = row_bytes(resource, entry_rows);
        let tree_built = resource.tree.get().is_some() && entry_rows.is_empty();
        let from_text = !tree_built && row_bytes <= MAX_BATCH_BYTES && {
            let entries = entry_resources(resource, entry_rows);
            let layout = self.layout.clone();
            self.builder().append_text(
                &layout.derived().0,
                resource.raw,
                &layout.resource_type,
                &place,
                EntryResources::new(&entries),
            )
        };
        if !from_text {
            self.append_tree(resource, entry_rows, row_bytes, &place, diagnostics)?;
        }
        self.rows += 1;
        self.raw_bytes += row_bytes;
        if let Some(entry) = resource.container {
            entry.bundle.entry_became_row(entry.entry);
        }
        Ok(false)
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn buffered_bytes(&self) -> usize {
        self.raw_bytes
    }

    /// Also full at [`BATCH_RAW_BYTES`] of JSON text. The rows of the first batch cut so are
    /// then the table's batch size, so that its batches have one length and share their
    /// all-null columns (see [`NullCache`]); a batch of larger rows than the first is still cut
    /// at four times the bytes.
    fn is_full(&self, rows: usize, bytes: usize) -> bool {
        self.full_at(self.rows, self.raw_bytes, rows, bytes)
    }

    fn streams(&self) -> bool {
        true
    }

    fn prepare(&self) {
        self.layout.derive_unless_busy();
    }

    fn stream_row(&mut self, reader: &mut Reader<'_>, rows: usize, bytes: usize) -> Streamed {
        if self.pending_full {
            return Streamed::NotTaken;
        }
        let start = reader.offset();
        let address = reader.rest().as_ptr() as usize;
        let layout = self.layout.clone();
        let first = self.pending.is_empty();
        let builder = self.builder();
        if first {
            builder.begin_streaming();
        }
        let read = builder.stream_members(&layout.derived().0, reader, &layout.resource_type);
        let len = reader.offset() - start;
        // A row over the limit is refused by the tree's way (see `append_tree`). Refused, the
        // Bundle's rows are dropped here and now: the one in progress is not pending.
        if !read || len > MAX_BATCH_BYTES {
            self.drop_streamed();
            return Streamed::Refused;
        }
        self.pending.push_back((address, len));
        self.pending_bytes += len;
        let rows_then = self.rows + self.pending.len();
        self.pending_full = self.full_at(rows_then, self.raw_bytes + self.pending_bytes, rows, bytes);
        Streamed::Taken
    }

    fn abandon_streamed(&mut self) {
        if !self.pending.is_empty() {
            self.drop_streamed();
        }
    }

    fn complete_streamed(&mut self) {
        let layout = self.layout.clone();
        let nowhere = Place {
            container: None,
            envelope: None,
        };
        while let Some((_, len)) = self.pending.pop_front() {
            self.builder()
                .finish_streamed_row(&layout.resource_type, &nowhere);
            self.rows += 1;
            self.raw_bytes += len;
        }
        self.pending_bytes = 0;
        self.pending_full = false;
    }

    fn has_streamed(&self) -> bool {
        !self.pending.is_empty()
    }

    fn finish(&mut self) -> RecordBatch {
        let rows = self.rows;
        self.finish_rows(rows)
    }

    fn finish_rows(&mut self, rows: usize) -> RecordBatch {
        if self.batch_rows.is_none() && self.raw_bytes >= BATCH_RAW_BYTES && rows == self.rows {
            self.batch_rows = Some(rows.max(1));
        }
        let schema = self.layout.schema();
        let batch = self.builder().finish(schema);
        self.rows = 0;
        self.raw_bytes = 0;
        if batch.num_rows() > rows {
            batch.slice(0, rows)
        } else {
            batch
        }
    }
}

/// The bytes of input text a resource's row holds: a Bundle's holds its envelope, the text less
/// the resources of `entry_rows`, which are rows elsewhere.
fn row_bytes(resource: &Resource<'_>, entry_rows: &[u32]) -> usize {
    let moved_bytes: usize = match resource.envelope {
        Some(envelope) => entry_rows
            .iter()
            .filter_map(|&entry| envelope.resources.get(entry as usize).copied().flatten())
            .map(str::len)
            .sum(),
        None => 0,
    };
    resource.raw.len().saturating_sub(moved_bytes)
}

/// A Bundle's entries' resources, each with whether it is in `entry_rows` (a row elsewhere), in
/// entry order, for reading the Bundle's row from its text (`EntryResources`); none for another
/// resource.
fn entry_resources<'a>(resource: &Resource<'a>, entry_rows: &[u32]) -> Vec<(&'a str, bool)> {
    let Some(envelope) = resource.envelope else {
        return Vec::new();
    };
    envelope
        .resources
        .iter()
        .zip(entry_row_flags(envelope.resources.len(), entry_rows))
        .filter_map(|(text, is_row)| Some(((*text)?, is_row)))
        .collect()
}

/// Per entry of a Bundle with `entries` entries, whether it is among `entry_rows` (its resource
/// a row elsewhere).
fn entry_row_flags(entries: usize, entry_rows: &[u32]) -> Vec<bool> {
    let mut is_row = vec![false; entries];
    for &entry in entry_rows {
        if let Some(flag) = is_row.get_mut(entry as usize) {
            *flag = true;
        }
    }
    is_row
}

/// A Bundle's envelope, the tree's way (the text's way reads it as `EntryResources` says): its
/// tree without the `resource` of the entries in `entry_rows` (rows of their own types' tables
/// now). Parsed apart from the tree views share (which keeps every entry), jumping over every
/// entry's resource (the walker read them), so the entries are not read a second time; the few
/// that stay in the envelope (a type not selected, a refused row) are parsed back in.
fn envelope_of<'a>(
    resource: &Resource<'a>,
    envelope: &BundleEnvelope<'a>,
    entry_rows: &[u32],
) -> Result<Node<'a>, Rejection> {
    let invalid =
        |error: crate::resource::tree::TreeError| Rejection::from(format!("invalid Bundle: {}", error.0));
    let skip_resources = Keep::AllBut(vec![(
        "entry".to_owned(),
        Some(Keep::AllBut(vec![("resource".to_owned(), None)])),
    )]);
    let checked: Vec<&str> = envelope.resources.iter().flatten().copied().collect();
    let mut tree =
        crate::resource::tree::parse_skipping(resource.raw, &skip_resources, &checked).map_err(invalid)?;
    let Node::Object(bundle) = &mut tree else {
        return Ok(tree);
    };
    // The `entry` the walker read (it refuses a Bundle that repeats the key).
    let Some((_, Node::Array(entries))) = bundle.0.iter_mut().rev().find(|(key, _)| key == "entry") else {
        return Ok(tree);
    };
    let is_row = entry_row_flags(entries.len(), entry_rows);
    for ((entry, text), is_row) in entries.iter_mut().zip(&envelope.resources).zip(is_row) {
        let (Node::Object(entry), Some(text)) = (entry, text) else {
            continue;
        };
        if !is_row {
            // From the depth it has in the Bundle: the envelope's tree stays within the limit.
            let kept = crate::resource::tree::parse_nested(text, ENTRY_RESOURCE_DEPTH).map_err(invalid)?;
            entry.0.push((Cow::Borrowed("resource"), kept));
        }
    }
    Ok(tree)
}

/// How many arrays and objects hold a Bundle entry's resource: the Bundle, its `entry` array and
/// the entry.
const ENTRY_RESOURCE_DEPTH: usize = 3;

/// Builds whole rows: `resourceType`, the resource's members, `__unmapped`.
pub(super) struct RowBuilder {
    resource_type: TextColumn,
    members: ObjectBuilder,
    unmapped: UnmappedBuilder,
    places: PlaceBuilder,
    /// The members of the last appended row kept in `__unmapped` (pointer, JSON text).
    pub(super) row_unmapped: Vec<(String, String)>,
    /// Per nesting level, the (member, pair) positions of an object's present members (reused
    /// between rows).
    scratch: Vec<Vec<(u32, u32)>>,
    /// The all-null columns of members a batch does not reach, kept between batches.
    nulls: NullCache,
    /// Rows tried straight from the text so far, undone ones included (see `stream.rs`).
    generation: u64,
    /// The rows before the first of a Bundle's entries read as the walker read it (see
    /// [`RowBuilder::begin_streaming`]).
    streaming_from: usize,
}

impl RowBuilder {
    /// Builders for `shape`, whose columns `schema` (from [`resource_schema`]) describes.
    pub(super) fn new(shape: &ObjectShape, schema: &SchemaRef) -> Self {
        let fields = schema.fields();
        let unmapped_at = fields
            .iter()
            .position(|field| field.name() == UNMAPPED)
            .expect("every resource table has __unmapped");
        let member_fields: Fields = fields[1..unmapped_at].iter().cloned().collect();
        RowBuilder {
            resource_type: TextColumn::new(),
            members: ObjectBuilder::new(shape, &member_fields),
            unmapped: UnmappedBuilder::new(&fields[unmapped_at]),
            places: PlaceBuilder::new(&fields[unmapped_at + 1..]),
            row_unmapped: Vec::new(),
            scratch: Vec::new(),
            nulls: NullCache::default(),
            generation: 0,
            streaming_from: 0,
        }
    }

    /// Appends one resource found at `place`; returns how many of its members went to
    /// `__unmapped`. `shape` is the one the builder was made with.
    pub(super) fn append(&mut self, shape: &ObjectShape, resource: &Object<'_>, place: &Place<'_>) -> usize {
        self.row_unmapped.clear();
        // `resourceType` has a column of its own; the walker only hands over resources whose
        // `resourceType` is a string.
        let resource_type = resource.get("resourceType").and_then(Node::as_str);
        self.resource_type.append_value(resource_type.unwrap_or_default());
        let mut context = Context {
            unmapped: &mut self.row_unmapped,
            scratch: &mut self.scratch,
            depth: 0,
        };
        self.members
            .append_members(shape, resource, &Step::Root, &mut context);
        self.members.len += 1;
        self.unmapped.append(&self.row_unmapped);
        self.places.append(place);
        self.row_unmapped.len()
    }

    /// The rows so far as a batch of `schema`; the builders start again.
    pub(super) fn finish(&mut self, schema: SchemaRef) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.resource_type.finish())];
        self.nulls.next_batch();
        columns.extend(self.members.finish_columns(&mut self.nulls));
        columns.push(self.unmapped.finish());
        columns.extend(self.places.finish());
        RecordBatch::try_new(schema, columns).expect("the builders follow the schema")
    }
}

/// Where a value sits in the resource, as a chain built on the stack: the JSON Pointer is only
/// written out for a member that goes to `__unmapped`.
enum Step<'p> {
    Root,
    Key(&'p Step<'p>, &'p str),
    Index(&'p Step<'p>, usize),
}

impl Step<'_> {
    /// The RFC 6901 pointer (`/name/0/nickname`; `~` and `/` in keys escaped).
    fn pointer(&self) -> String {
        let mut text = String::new();
        self.write_pointer(&mut text);
        text
    }

    fn write_pointer(&self, text: &mut String) {
        match self {
            Step::Root => {}
            Step::Key(parent, key) => {
                parent.write_pointer(text);
                super::push_pointer_token(text, key);
            }
            Step::Index(parent, index) => {
                parent.write_pointer(text);
                let _ = write!(text, "/{index}");
            }
        }
    }
}

/// State of one row's append shared down the tree.
struct Context<'c> {
    unmapped: &'c mut Vec<(String, String)>,
    scratch: &'c mut Vec<Vec<(u32, u32)>>,
    depth: usize,
}

impl Context<'_> {
    fn keep_unmapped(&mut self, step: &Step<'_>, value: &Node<'_>) {
        self.unmapped.push((step.pointer(), value.to_string()));
    }
}

/// The builders of a JSON object's members: the columns of a struct, or of the table.
///
/// Nulls are filled in lazily: a member's builders are brought up to the object's row only when
/// the member has a value or the batch is finished, and a null object only counts itself. So a
/// row costs its present elements, not the thousands of columns of its type.
struct ObjectBuilder {
    /// Rows of this object (its struct's length), nulls included.
    len: usize,
    /// Each member's builders, made when the member first gets a value: most members of a
    /// resource type never do, and making them all up front (the thousands of builders of
    /// every nested object) took 88 MB over 15 types and 2 workers.
    members: Vec<Option<Box<MemberBuilder>>>,
    /// Where each member's columns start in `fields`, and (last) where the last one ends.
    starts: Vec<u32>,
    /// Member position by JSON key.
    index: HashMap<String, u32, FastHash>,
    /// Per member (and, first, the object's start): the member of the last key looked up after
    /// it in an object read from text (the top-level `resourceType` and unknown keys are not
    /// recorded), with its key (see `stream::Guess`), or `Guess::NONE`. Writers emit an
    /// object's keys in one order, so checking the key against this guess spares the hash
    /// lookup, whose probe of a cold table was a fifth of the member reading's own time.
    next_member: Vec<stream::Guess>,
    /// The struct's own validity (unused at the top level).
    validity: BooleanBufferBuilder,
    /// The struct's fields, for the finished `StructArray`.
    fields: Fields,
}

/// No member guessed yet (see `ObjectBuilder::next_member`, `Guess::NONE`).
const NO_MEMBER: u32 = u32::MAX;

/// The builders of one member: its value column and companions, behind list offsets when the
/// member repeats.
///
/// Laid out in this order (`repr(C)`), with the list state behind a pointer, so that what
/// reading a member from text touches first (`filled`, `touched`, the list's pointer) shares
/// the first cache line with the start of its value column. Left to the compiler, `filled`
/// came after the three columns of a date's value (448 bytes in) and its load, a cache miss
/// for most members read, was the hottest instruction of `read_members`.
#[repr(C)]
struct MemberBuilder {
    /// Rows appended to the builders so far; the object's rows beyond it are nulls still to add.
    filled: usize,
    /// The last row read from text that appended to the member, and `filled` and the values'
    /// length before it: what undoing that row puts back (see `stream.rs`).
    touched: u64,
    saved: (usize, usize),
    list: Option<Box<ListState>>,
    values: Values,
    /// The member's columns as the schema has them (value first, then companions).
    fields: Vec<FieldRef>,
}

/// Offsets and validity of a repeating member's lists (shared by its value and companion lists).
struct ListState {
    offsets: Vec<i32>,
    validity: BooleanBufferBuilder,
    /// The room to make in `offsets` at the batch's first row ([`room_for_next`]).
    room: usize,
}

/// How one member's values are checked and held.
enum Values {
    /// Any JSON value, as text.
    Json(TextColumn),
    Boolean(BoolColumn),
    Int32(Int32Column),
    Int64(Int64Column),
    /// A JSON string.
    Text(TextColumn),
    /// A JSON number as written, and its numeric companion.
    Decimal(TextColumn, DecimalColumn),
    /// A date or time as written, and the first and last instant it can mean.
    Instant {
        text: TextColumn,
        start: InstantColumn,
        end: InstantColumn,
        allow_time: bool,
    },
    Object(Box<ObjectBuilder>),
}

impl ObjectBuilder {
    /// Builders for the members of `shape`, whose columns are `fields` (each member's value
    /// column followed by its companions, as `object_fields` lays them out); each member's own
    /// builders are made on its first value.
    fn new(shape: &ObjectShape, fields: &Fields) -> Self {
        let mut starts = Vec::with_capacity(shape.members.len() + 1);
        let mut index = HashMap::with_capacity_and_hasher(shape.members.len(), FastHash::default());
        let mut at = 0;
        for (position, member) in shape.members.iter().enumerate() {
            debug_assert_eq!(fields[at].name(), &member.key);
            starts.push(at as u32);
            index.insert(member.key.clone(), position as u32);
            at += column_count(&member.shape);
        }
        starts.push(at as u32);
        debug_assert_eq!(at, fields.len());
        ObjectBuilder {
            len: 0,
            members: shape.members.iter().map(|_| None).collect(),
            starts,
            index,
            next_member: vec![stream::Guess::NONE; shape.members.len() + 1],
            validity: BooleanBufferBuilder::new(0),
            fields: fields.clone(),
        }
    }

    /// The builders of the member at `position` of `shape`, made on its first value. Inline,
    /// for every member read; the making apart.
    #[inline]
    fn member(&mut self, shape: &ObjectShape, position: usize) -> &mut MemberBuilder {
        if self.members[position].is_none() {
            self.make_member(shape, position);
        }
        self.members[position].as_mut().expect("made above")
    }

    #[cold]
    #[inline(never)]
    fn make_member(&mut self, shape: &ObjectShape, position: usize) {
        let member = MemberBuilder::new(&shape.members[position], self.member_fields(position));
        self.members[position] = Some(Box::new(member));
    }

    /// The columns of the member at `position`.
    fn member_fields(&self, position: usize) -> &[FieldRef] {
        &self.fields[self.starts[position] as usize..self.starts[position + 1] as usize]
    }

    /// Appends an object's members: each member that fits its builder goes there, the rest (keys
    /// not in the shape, values of the wrong kind) to `__unmapped`. A repeated key means its last
    /// value, as in `serde_json`.
    fn append_members(
        &mut self,
        shape: &ObjectShape,
        object: &Object<'_>,
        step: &Step<'_>,
        context: &mut Context<'_>,
    ) {
        let depth = context.depth;
        if context.scratch.len() <= depth {
            context.scratch.push(Vec::new());
        }
        let mut present = std::mem::take(&mut context.scratch[depth]);
        present.clear();
        let mut unknown: Vec<usize> = Vec::new();
        for (pair, (key, value)) in object.0.iter().enumerate() {
            if depth == 0 && key == "resourceType" && matches!(value, Node::String(_)) {
                continue;
            }
            match self.index.get(key.as_ref()) {
                Some(&position) => present.push((position, pair as u32)),
                None => {
                    // A repeated unknown key: its last value only.
                    unknown.retain(|&earlier| object.0[earlier].0 != *key);
                    unknown.push(pair);
                }
            }
        }
        if present.len() > 1 {
            // By member, a repeated key's pairs in document order: its last one is kept.
            present.sort_unstable();
            let mut kept = 0;
            for at in 0..present.len() {
                if present.get(at + 1).is_some_and(|next| next.0 == present[at].0) {
                    continue;
                }
                present[kept] = present[at];
                kept += 1;
            }
            present.truncate(kept);
        }
        context.depth += 1;
        let row = self.len;
        for &(position, pair) in &present {
            let member_shape = &shape.members[position as usize];
            let member = self.member(shape, position as usize);
            let (key, value) = &object.0[pair as usize];
            let here = Step::Key(step, key);
            member.fill_nulls_to(row);
            if !member.append(value, &member_shape.shape, &here, context) {
                context.keep_unmapped(&here, value);
            }
        }
        context.depth -= 1;
        context.scratch[depth] = present;
        for pair in unknown {
            let (key, value) = &object.0[pair];
            context.keep_unmapped(&Step::Key(step, key), value);
        }
    }

    /// Ends a present object's row (its members appended).
    fn close_object(&mut self) {
        self.validity.append(true);
        self.len += 1;
    }

    /// Appends `count` null objects: only the struct's validity; the members catch up later.
    fn append_nulls(&mut self, count: usize) {
        self.validity.append_n(count, false);
        self.len += count;
    }

    /// The columns of every member, in schema order; the builders start again.
    fn finish_columns(&mut self, nulls: &mut NullCache) -> Vec<ArrayRef> {
        let mut columns = Vec::with_capacity(self.fields.len());
        for position in 0..self.members.len() {
            match &mut self.members[position] {
                Some(member) if member.filled > 0 => {
                    member.fill_nulls_to(self.len);
                    member.finish_into(&mut columns, nulls);
                }
                // No value in this batch (its builders, if any, are empty): all-null columns
                // (see [`NullCache`]), where appending nulls would write offsets and validity
                // for each of the thousands of columns a resource lacks.
                _ => {
                    let start = self.starts[position] as usize;
                    let end = self.starts[position + 1] as usize;
                    for field in &self.fields[start..end] {
                        columns.push(nulls.column(field, self.len));
                    }
                }
            }
        }
        self.len = 0;
        columns
    }

    /// The members as one struct column.
    fn finish_struct(&mut self, nulls: &mut NullCache) -> ArrayRef {
        let columns = self.finish_columns(nulls);
        let validity = NullBuffer::new(self.validity.finish());
        let nulls = (validity.null_count() > 0).then_some(validity);
        Arc::new(StructArray::new(self.fields.clone(), columns, nulls))
    }
}

impl MemberBuilder {
    /// The builders of `member`, whose columns are `fields`.
    fn new(member: &Member, fields: &[FieldRef]) -> Self {
        let (values, columns) = match &member.shape {
            Shape::Json => (Values::Json(TextColumn::new()), 1),
            Shape::Primitive(type_code) => primitive_values(type_code),
            Shape::Object(inner) => {
                let item = item_type(fields[0].data_type(), member.repeats);
                let DataType::Struct(inner_fields) = item else {
                    unreachable!("an object member is a struct column");
                };
                (
                    Values::Object(Box::new(ObjectBuilder::new(inner, inner_fields))),
                    1,
                )
            }
        };
        debug_assert_eq!(columns, fields.len());
        let list =
            (member.repeats && !matches!(member.shape, Shape::Json)).then(|| Box::new(ListState::new()));
        MemberBuilder {
            filled: 0,
            list,
            values,
            fields: fields.to_vec(),
            touched: 0,
            saved: (0, 0),
        }
    }

    /// Appends a present member; `false` (nothing appended) when the value does not fit: the
    /// wrong JSON kind, or an array with an item of the wrong kind, or `null` where a value
    /// belongs. The caller then keeps it whole in `__unmapped`.
    fn append(
        &mut self,
        value: &Node<'_>,
        shape: &Shape,
        step: &Step<'_>,
        context: &mut Context<'_>,
    ) -> bool {
        let Some(list) = &mut self.list else {
            if !self.values.fits(value) {
                return false;
            }
            self.values.append(value, shape, step, context);
            self.filled += 1;
            return true;
        };
        let Node::Array(items) = value else {
            return false;
        };
        if !items.iter().all(|item| item.is_null() || self.values.fits(item)) {
            return false;
        }
        for (index, item) in items.iter().enumerate() {
            if item.is_null() {
                self.values.append_nulls(1);
            } else {
                self.values
                    .append(item, shape, &Step::Index(step, index), context);
            }
        }
        list.close_row(items.len());
        self.filled += 1;
        true
    }

    /// Appends the nulls that bring the member up to `row` rows. Inline, for every member read
    /// (most have no rows to catch up); the appending apart.
    #[inline]
    fn fill_nulls_to(&mut self, row: usize) {
        if row > self.filled {
            self.append_nulls_to(row);
        }
    }

    #[inline(never)]
    fn append_nulls_to(&mut self, row: usize) {
        let count = row - self.filled;
        match &mut self.list {
            Some(list) => {
                let end = list.offsets.last().copied().unwrap_or(0);
                list.offsets.extend(std::iter::repeat_n(end, count));
                list.validity.append_n(count, false);
            }
            None => self.values.append_nulls(count),
        }
        self.filled = row;
    }

    /// Pushes the member's columns (value, then companions).
    fn finish_into(&mut self, columns: &mut Vec<ArrayRef>, nulls: &mut NullCache) {
        self.filled = 0;
        let values = self.values.finish(nulls);
        let Some(list) = &mut self.list else {
            columns.extend(values);
            return;
        };
        // Room for as many rows, made at the next batch's first (see `room_for_next`).
        list.room = room_for_next(list.offsets.len());
        let offsets = OffsetBuffer::new(ScalarBuffer::from(fitted(std::mem::replace(
            &mut list.offsets,
            vec![0],
        ))));
        let validity = NullBuffer::new(list.validity.finish());
        let nulls = (validity.null_count() > 0).then_some(validity);
        for (array, field) in values.into_iter().zip(&self.fields) {
            let DataType::List(item) = field.data_type() else {
                unreachable!("a repeating member's columns are lists");
            };
            let list = ListArray::new(item.clone(), offsets.clone(), array, nulls.clone());
            columns.push(Arc::new(list));
        }
    }
}

/// The all-null columns of the members a batch does not reach. A column of a given field and
/// length is made once and reused by the next batches of that length (a table's full batches
/// all have one length): the batches a wide table holds for its row group then share the
/// thousands of columns their rows lack, where each batch had arrays of its own (100 MB at the
/// peak on 500 MB of Bundles).
#[derive(Default)]
struct NullCache {
    /// The columns of this batch and of the one before, by field address and length (the
    /// fields are the schema's own, which the builders hold, so an address names one field).
    current: HashMap<(usize, usize), ArrayRef, FastHash>,
    previous: HashMap<(usize, usize), ArrayRef, FastHash>,
    /// The zeroed buffer of each length this batch made columns of.
    zeros: HashMap<usize, NullColumns, FastHash>,
    empty_items: EmptyItems,
}

impl NullCache {
    /// Called before a batch is finished: the columns of the batch before it are kept for
    /// reuse, older ones dropped.
    fn next_batch(&mut self) {
        self.previous = std::mem::take(&mut self.current);
        self.zeros.clear();
    }

    /// A column of `field`'s type with `len` nulls.
    fn column(&mut self, field: &FieldRef, len: usize) -> ArrayRef {
        let key = (Arc::as_ptr(field) as usize, len);
        if let Some(column) = self.current.get(&key) {
            return column.clone();
        }
        let column = match self.previous.remove(&key) {
            Some(column) => column,
            None => {
                let zeros = self.zeros.entry(len).or_insert_with(|| NullColumns::new(len));
                zeros.column(field.data_type(), &mut self.empty_items)
            }
        };
        self.current.insert(key, column.clone());
        column
    }
}

/// All-null columns of one length whose buffers (offsets, values, validity) are slices of one
/// zeroed buffer. The leaf columns of one type are one array, shared by every field of that
/// type: making each anew (checking its offsets and validity) was a twentieth of a run.
struct NullColumns {
    len: usize,
    /// 16 bytes per row and one more row: the widest values (decimals) and any offsets.
    zeros: Buffer,
    offsets: OffsetBuffer<i32>,
    /// The all-null leaf columns made so far, at most one per leaf type.
    leaves: Vec<ArrayRef>,
}

impl NullColumns {
    fn new(len: usize) -> Self {
        let zeros = Buffer::from_vec(vec![0u128; len + 1]);
        NullColumns {
            len,
            offsets: OffsetBuffer::new(ScalarBuffer::new(zeros.clone(), 0, len + 1)),
            zeros,
            leaves: Vec::new(),
        }
    }

    fn nulls(&self) -> Option<NullBuffer> {
        Some(NullBuffer::new(BooleanBuffer::new(
            self.zeros.clone(),
            0,
            self.len,
        )))
    }

    fn primitive<T: ArrowPrimitiveType>(&self, data_type: &DataType) -> ArrayRef {
        let values = ScalarBuffer::new(self.zeros.clone(), 0, self.len);
        Arc::new(PrimitiveArray::<T>::new(values, self.nulls()).with_data_type(data_type.clone()))
    }

    /// A column of `data_type` (one the row builder makes) with only nulls.
    fn column(&mut self, data_type: &DataType, empty_items: &mut EmptyItems) -> ArrayRef {
        match data_type {
            DataType::List(item) => Arc::new(ListArray::new(
                item.clone(),
                self.offsets.clone(),
                empty_items.of(item),
                self.nulls(),
            )),
            DataType::Struct(fields) => {
                let columns = fields
                    .iter()
                    .map(|field| self.column(field.data_type(), empty_items))
                    .collect();
                Arc::new(StructArray::new(fields.clone(), columns, self.nulls()))
            }
            leaf => {
                if let Some(made) = self.leaves.iter().find(|made| made.data_type() == leaf) {
                    return made.clone();
                }
                let made = self.leaf(leaf);
                self.leaves.push(made.clone());
                made
            }
        }
    }

    fn leaf(&self, data_type: &DataType) -> ArrayRef {
        match data_type {
            DataType::Utf8 => Arc::new(StringArray::new(
                self.offsets.clone(),
                self.zeros.slice_with_length(0, 0),
                self.nulls(),
            )),
            DataType::Boolean => Arc::new(BooleanArray::new(
                BooleanBuffer::new(self.zeros.clone(), 0, self.len),
                self.nulls(),
            )),
            DataType::Int32 => self.primitive::<Int32Type>(data_type),
            DataType::Int64 => self.primitive::<Int64Type>(data_type),
            DataType::Decimal128(..) => self.primitive::<Decimal128Type>(data_type),
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                self.primitive::<TimestampMicrosecondType>(data_type)
            }
            other => unreachable!("the row builder makes no {other} column"),
        }
    }
}

/// Empty arrays by the address of the list item field they are for (the schema's own fields,
/// which the builders hold): an empty array of a nested item type is an array per column below
/// it, so each is made once per table and worker. They are made as [`NullColumns`] of no rows,
/// whose leaves of one type are one array: Arrow's `new_empty_array` allocated every leaf's
/// buffers, and for each list inside the item again, 3.5% of the workers' samples of
/// `--resources all` on 500 MB of Bundles.
#[derive(Default)]
struct EmptyItems {
    made: HashMap<usize, ArrayRef, FastHash>,
    /// The columns of no rows the items are made of (taken out while an item is made).
    no_rows: Option<NullColumns>,
}

impl EmptyItems {
    fn of(&mut self, item: &FieldRef) -> ArrayRef {
        let key = Arc::as_ptr(item) as usize;
        if let Some(made) = self.made.get(&key) {
            return made.clone();
        }
        let mut no_rows = self.no_rows.take().unwrap_or_else(|| NullColumns::new(0));
        let made = no_rows.column(item.data_type(), self);
        self.no_rows.get_or_insert(no_rows);
        self.made.insert(key, made.clone());
        made
    }
}

impl ListState {
    fn new() -> Self {
        ListState {
            offsets: vec![0],
            validity: BooleanBufferBuilder::new(0),
            room: 0,
        }
    }

    /// Ends a present row's list, of `items` values.
    fn close_row(&mut self, items: usize) {
        make_room(&mut self.offsets, self.room);
        let end = self.offsets.last().copied().unwrap_or(0) + items as i32;
        self.offsets.push(end);
        self.validity.append(true);
    }
}

/// How many columns a member of `shape` has: its value column and companions (as
/// [`primitive_values`] makes them).
fn column_count(shape: &Shape) -> usize {
    match shape {
        Shape::Json | Shape::Object(_) => 1,
        Shape::Primitive(type_code) => match (value_class(type_code), *type_code) {
            (ValueClass::Decimal, _) => 2,
            (ValueClass::Text, "date" | "dateTime" | "instant") => 3,
            _ => 1,
        },
    }
}

/// The builders of a primitive member and how many columns it has.
fn primitive_values(type_code: &str) -> (Values, usize) {
    let instant = || InstantColumn::new(DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())));
    match (value_class(type_code), type_code) {
        (ValueClass::Boolean, _) => (Values::Boolean(BoolColumn::new()), 1),
        (ValueClass::Integer32, _) => (Values::Int32(Int32Column::new(DataType::Int32)), 1),
        (ValueClass::Integer64, _) => (Values::Int64(Int64Column::new(DataType::Int64)), 1),
        (ValueClass::Decimal, _) => {
            let numeric = DecimalColumn::new(DataType::Decimal128(NUMERIC_PRECISION, NUMERIC_SCALE));
            (Values::Decimal(TextColumn::new(), numeric), 2)
        }
        (ValueClass::Text, "date" | "dateTime" | "instant") => (
            Values::Instant {
                text: TextColumn::new(),
                start: instant(),
                end: instant(),
                allow_time: type_code != "date",
            },
            3,
        ),
        (ValueClass::Text, _) => (Values::Text(TextColumn::new()), 1),
    }
}

/// The item type of a member's column: the list's items when it repeats.
fn item_type(data_type: &DataType, repeats: bool) -> &DataType {
    match (repeats, data_type) {
        (true, DataType::List(item)) => item.data_type(),
        _ => data_type,
    }
}

/// Whether `text` is an integer written the way `i64`/`i32` print it, so that storing the number
/// and writing it back gives the same text: digits without a leading zero (but `0` itself),
/// after an optional `-` (but not `-0`), in the type's range. Checked on the text, as printing
/// the value again allocated a string for every integer read.
fn canonical_integer<T: std::str::FromStr>(text: &str) -> Option<T> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = match digits.as_bytes() {
        [b'0'] => digits.len() == text.len(),
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    canonical.then(|| text.parse().ok()).flatten()
}

impl Values {
    /// Whether one (non-null, for all but JSON) value has the JSON kind this member holds.
    fn fits(&self, value: &Node<'_>) -> bool {
        match (self, value) {
            (Values::Json(_), _) => true,
            (Values::Boolean(_), Node::Bool(_)) => true,
            (Values::Int32(_), Node::Number(text)) => canonical_integer::<i32>(text).is_some(),
            (Values::Int64(_), Node::Number(text)) => canonical_integer::<i64>(text).is_some(),
            (Values::Text(_) | Values::Instant { .. }, Node::String(_)) => true,
            (Values::Decimal(..), Node::Number(_)) => true,
            (Values::Object(_), Node::Object(_)) => true,
            _ => false,
        }
    }

    /// Appends a value that [`Values::fits`].
    fn append(&mut self, value: &Node<'_>, shape: &Shape, step: &Step<'_>, context: &mut Context<'_>) {
        let appended = match value {
            _ if matches!(self, Values::Json(_)) => self.append_json(value),
            Node::Bool(flag) => self.append_bool(*flag),
            Node::Number(text) => self.append_number(text),
            Node::String(text) => self.append_string(text),
            Node::Object(members) => match (self, shape) {
                (Values::Object(object), Shape::Object(shape)) => {
                    object.append_members(shape, members, step, context);
                    object.close_object();
                    true
                }
                _ => false,
            },
            _ => false,
        };
        // A value appended nowhere would shift this member's later rows onto the wrong ones:
        // the unit fails instead (its panic is caught and reported), as before the appends
        // were shared with the text's way.
        assert!(appended, "append is called only with values that fit");
    }

    /// Appends any JSON value as text: `false` (nothing appended) unless the member holds JSON
    /// text. This and the next three take a value from the tree (`append`) or straight from
    /// the text (`stream.rs`).
    fn append_json(&mut self, value: &Node<'_>) -> bool {
        let Values::Json(column) = self else {
            return false;
        };
        // Written straight into the column's value buffer, then closed as one value.
        let _ = value.write_json(column);
        column.close_value();
        true
    }

    /// Appends a JSON boolean: `false` (nothing appended) unless the member holds booleans.
    fn append_bool(&mut self, flag: bool) -> bool {
        let Values::Boolean(column) = self else {
            return false;
        };
        column.append_value(flag);
        true
    }

    /// Appends a JSON number, as the tree keeps it: `false` (nothing appended) unless the member
    /// holds numbers and this one fits (an integer written as `i32`/`i64` print it).
    fn append_number(&mut self, text: &str) -> bool {
        match self {
            Values::Int32(column) => canonical_integer::<i32>(text)
                .map(|n| column.append_value(n))
                .is_some(),
            Values::Int64(column) => canonical_integer::<i64>(text)
                .map(|n| column.append_value(n))
                .is_some(),
            Values::Decimal(text_column, numeric) => {
                text_column.append_value(text);
                numeric.append_option(scaled_decimal(text));
                true
            }
            _ => false,
        }
    }

    /// Appends a JSON string (unescaped): `false` (nothing appended) unless the member holds
    /// strings.
    fn append_string(&mut self, text: &str) -> bool {
        match self {
            Values::Text(column) => column.append_value(text),
            Values::Instant {
                text: text_column,
                start,
                end,
                allow_time,
            } => {
                // The value just before it, again: its bounds are the same. Half the dates of
                // Synthea Bundles repeat the one before them in their column (an encounter's
                // observations share its time), and reading a date was 2% of the run.
                let bounds = match text_column.last() == Some(text.as_bytes()) && !text.is_empty() {
                    true => start.last().zip(end.last()),
                    false => instant_bounds(text, *allow_time),
                };
                text_column.append_value(text);
                start.append_option(bounds.map(|(first, _)| first));
                end.append_option(bounds.map(|(_, last)| last));
            }
            _ => return false,
        }
        true
    }

    fn append_nulls(&mut self, count: usize) {
        if let Values::Object(object) = self {
            object.append_nulls(count);
        } else {
            self.for_each_column(|column| column.append_nulls(count));
        }
    }

    /// Does `work` on each column of a primitive or JSON-text member (its value column, then
    /// its companions), which take their rows together; an object's columns are its members'.
    fn for_each_column(&mut self, mut work: impl FnMut(&mut dyn ValueColumn)) {
        match self {
            Values::Json(column) | Values::Text(column) => work(column),
            Values::Boolean(column) => work(column),
            Values::Int32(column) => work(column),
            Values::Int64(column) => work(column),
            Values::Decimal(text, numeric) => {
                work(text);
                work(numeric);
            }
            Values::Instant { text, start, end, .. } => {
                work(text);
                work(start);
                work(end);
            }
            Values::Object(_) => {}
        }
    }

    /// The value column and its companions; the builders start again.
    fn finish(&mut self, nulls: &mut NullCache) -> Vec<ArrayRef> {
        match self {
            Values::Json(builder) | Values::Text(builder) => vec![Arc::new(builder.finish())],
            Values::Boolean(builder) => vec![Arc::new(builder.finish())],
            Values::Int32(builder) => vec![Arc::new(builder.finish())],
            Values::Int64(builder) => vec![Arc::new(builder.finish())],
            Values::Decimal(text, numeric) => vec![Arc::new(text.finish()), Arc::new(numeric.finish())],
            Values::Instant { text, start, end, .. } => vec![
                Arc::new(text.finish()),
                Arc::new(start.finish()),
                Arc::new(end.finish()),
            ],
            Values::Object(object) => vec![object.finish_struct(nulls)],
        }
    }
}

/// `__unmapped`: per row a list of (pointer, JSON text).
struct UnmappedBuilder {
    list: ListState,
    paths: TextColumn,
    texts: TextColumn,
    field: FieldRef,
}

impl UnmappedBuilder {
    fn new(field: &FieldRef) -> Self {
        UnmappedBuilder {
            list: ListState::new(),
            paths: TextColumn::new(),
            texts: TextColumn::new(),
            field: field.clone(),
        }
    }

    /// Appends the row's list (null when it has none).
    fn append(&mut self, members: &[(String, String)]) {
        for (path, text) in members {
            self.paths.append_value(path);
            self.texts.append_value(text);
        }
        let end = self.list.offsets.last().copied().unwrap_or(0) + members.len() as i32;
        self.list.offsets.push(end);
        self.list.validity.append(!members.is_empty());
    }

    fn finish(&mut self) -> ArrayRef {
        let DataType::List(item) = self.field.data_type() else {
            unreachable!("__unmapped is a list");
        };
        let DataType::Struct(pair_fields) = item.data_type() else {
            unreachable!("__unmapped items are structs");
        };
        let pairs = StructArray::new(
            pair_fields.clone(),
            vec![Arc::new(self.paths.finish()), Arc::new(self.texts.finish())],
            None,
        );
        let offsets = OffsetBuffer::new(ScalarBuffer::from(fitted(std::mem::replace(
            &mut self.list.offsets,
            vec![0],
        ))));
        let validity = NullBuffer::new(self.list.validity.finish());
        let nulls = (validity.null_count() > 0).then_some(validity);
        Arc::new(ListArray::new(item.clone(), offsets, Arc::new(pairs), nulls))
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int32Type, TimestampMicrosecondType};
    use arrow_array::Array;
    use arrow_buffer::Buffer;
    use arrow_schema::{DataType, FieldRef};

    use super::EmptyItems;
    use crate::fhir::definitions::TreeOptions;
    use crate::table::lossless::place;
    use crate::table::lossless::resource_schema;
    use crate::table::lossless::round_trip::build;

    /// Prepared ahead, a table works out its shape and schema, unless another thread is at
    /// them (it is not waited for).
    #[test]
    fn a_prepared_table_derives_its_layout_unless_another_thread_is_at_it() {
        use crate::table::Table;
        use std::sync::atomic::Ordering;
        let table = super::ResourceTable::new("Observation", TreeOptions::default(), 100).unwrap();
        table.layout.deriving.store(true, Ordering::Relaxed);
        table.prepare();
        assert!(table.layout.derived.get().is_none());
        table.layout.deriving.store(false, Ordering::Relaxed);
        table.prepare();
        assert!(table.layout.derived.get().is_some());
        assert!(table.layout.deriving.load(Ordering::Relaxed));
    }

    /// A worker's first Bundle prepares the tables of its own type and of its entries' types; a
    /// later one prepares none (the other types wait for a row, as before).
    #[test]
    fn a_first_bundle_prepares_the_tables_of_the_types_it_names() {
        use crate::resource::ResourceSink;
        use crate::table::{stop_flags, Table, TableSet};
        let made: Vec<_> = ["Patient", "Observation", "Condition", "Bundle"]
            .into_iter()
            .map(|name| super::ResourceTable::new(name, TreeOptions::default(), 100).unwrap())
            .collect();
        let layouts: Vec<_> = made.iter().map(|table| table.layout.clone()).collect();
        let derived = || -> Vec<bool> {
            layouts
                .iter()
                .map(|layout| layout.derived.get().is_some())
                .collect()
        };
        let boxed = made
            .into_iter()
            .map(|table| Box::new(table) as Box<dyn Table>)
            .collect();
        let mut tables = TableSet::new(boxed, 100, stop_flags(4));
        tables.preview_bundle(
            r#"{"resourceType": "Bundle", "entry": [
                {"resource": {"resourceType": "Patient", "id": "1"}},
                {"resource": {"resourceType": "Observation", "id": "2"}},
                {"resource": {"resourceType": "Patient", "id": "3"}}]}"#,
        );
        assert_eq!(derived(), [true, true, false, true]);
        tables.preview_bundle(
            r#"{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition"}}]}"#,
        );
        assert_eq!(derived(), [true, true, false, true]);
    }

    /// A date that repeats the one before it in its column takes that one's bounds, which are
    /// those it has itself: valid or not, after a null, after a value undone, in both types.
    #[test]
    fn repeated_dates_have_the_bounds_of_their_own_text() {
        use super::{primitive_values, Values};
        use arrow_array::{Array, TimestampMicrosecondArray};
        let texts = [
            Some("2019"),
            Some("2019"),
            Some("2019-02-30"),
            Some("2019-02-30"),
            None,
            Some(""),
            Some(""),
            Some("2019-01-02T10:00:00+01:00"),
            Some("2019-01-02T10:00:00+01:00"),
            Some("2019-01-02T10:00:00.5Z"),
            Some("2019-01-02"),
            Some("2019-01-02"),
        ];
        for (type_code, allow_time) in [("dateTime", true), ("date", false)] {
            let (mut values, _) = primitive_values(type_code);
            for text in texts {
                match text {
                    Some(text) => assert!(values.append_string(text)),
                    None => values.append_nulls(1),
                }
            }
            // Undone: the column's last value is again the one before.
            values.append_string("2020");
            values.for_each_column(|column| column.truncate(texts.len()));
            values.append_string("2019-01-02");
            let Values::Instant { start, end, .. } = &mut values else {
                panic!("{type_code}: not an instant's builders")
            };
            let (start, end) = (start.finish(), end.finish());
            let bound = |column: &TimestampMicrosecondArray, row: usize| {
                column.is_valid(row).then(|| column.value(row))
            };
            for (row, text) in texts.iter().chain([&Some("2019-01-02")]).enumerate() {
                let expected = text.and_then(|text| crate::fhir::datetime::instant_bounds(text, allow_time));
                let built = bound(&start, row).zip(bound(&end, row));
                assert_eq!(built, expected, "{type_code}, row {row}: {text:?}");
            }
        }
    }

    #[test]
    fn canonical_integers_are_those_that_print_back_the_same() {
        use super::canonical_integer;
        use proptest::prelude::*;
        fn printed_back<T: std::str::FromStr + ToString>(text: &str) -> Option<T> {
            let value: T = text.parse().ok()?;
            (value.to_string() == text).then_some(value)
        }
        let text = "[-+]?0*[0-9]{0,21}(\\.0)?";
        proptest!(ProptestConfig::with_cases(20_000), |(text in text)| {
            prop_assert_eq!(canonical_integer::<i32>(&text), printed_back::<i32>(&text), "{}", text);
            prop_assert_eq!(canonical_integer::<i64>(&text), printed_back::<i64>(&text), "{}", text);
        });
        let edges = [
            "0",
            "-0",
            "00",
            "+1",
            "2147483647",
            "2147483648",
            "-2147483648",
            "-2147483649",
        ];
        for text in edges
            .into_iter()
            .chain(["9223372036854775807", "9223372036854775808", "-", ""])
        {
            assert_eq!(
                canonical_integer::<i32>(text),
                printed_back::<i32>(text),
                "{text}"
            );
            assert_eq!(
                canonical_integer::<i64>(text),
                printed_back::<i64>(text),
                "{text}"
            );
        }
    }

    /// Checks that each offset and value buffer the row builder filled (below `array`, at
    /// `path`) is exactly as large as what it holds; arrays without a value are skipped (their
    /// buffers are the shared ones of all-null columns).
    fn assert_fitted(path: &str, array: &dyn Array, checked: &mut usize) {
        if array.null_count() == array.len() {
            return;
        }
        let mut exact = |what: &str, buffer: &Buffer, bytes: usize| {
            assert_eq!(buffer.capacity(), bytes, "{path}: {what} has room to spare");
            *checked += 1;
        };
        match array.data_type() {
            DataType::Struct(fields) => {
                for (field, column) in fields.iter().zip(array.as_struct().columns()) {
                    assert_fitted(&format!("{path}.{}", field.name()), column.as_ref(), checked);
                }
            }
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                exact("offsets", list.offsets().inner().inner(), (list.len() + 1) * 4);
                assert_fitted(path, list.values().as_ref(), checked);
            }
            DataType::Utf8 => {
                let text = array.as_string::<i32>();
                exact("offsets", text.offsets().inner().inner(), (text.len() + 1) * 4);
                exact("text", text.values(), text.values().len());
            }
            DataType::Int32 => exact(
                "values",
                array.as_primitive::<Int32Type>().values().inner(),
                array.len() * 4,
            ),
            DataType::Decimal128(_, _) => exact(
                "values",
                array.as_primitive::<Decimal128Type>().values().inner(),
                array.len() * 16,
            ),
            DataType::Timestamp(_, _) => exact(
                "values",
                array.as_primitive::<TimestampMicrosecondType>().values().inner(),
                array.len() * 8,
            ),
            _ => {}
        }
    }

    /// The writer counts a held batch by its buffers' capacity and cuts row groups by that, so
    /// a finished batch's text, number and list offset buffers keep none of the room they grew
    /// into (`columns::fitted`): texts, numbers, decimals with their companions, instants with
    /// their bounds, lists, `resourceType` and `__unmapped`.
    #[test]
    fn finished_batches_keep_no_room_their_buffers_grew_into() {
        // 333 rows: no power of two, so a buffer that doubled has room to spare.
        let texts: Vec<String> = (0..333)
            .map(|n| {
                format!(
                    r#"{{"resourceType":"Observation","id":"o{n}","status":"final","code":{{"text":"{}"}},
                    "effectiveDateTime":"2020-01-{:02}","valueQuantity":{{"value":{n}.5,"unit":"mg"}},
                    "component":[{{"valueInteger":{n}}},{{"valueString":"c{n}"}}],"zz{}":true}}"#,
                    "t".repeat(n % 7),
                    n % 28 + 1,
                    n % 3
                )
            })
            .collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (batch, _) = build(&texts, TreeOptions::default());
        assert_eq!(batch.num_rows(), 333);
        let mut checked = 0;
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            // The place columns come from Arrow's own builders (a few bytes per row).
            if [place::BUNDLE, place::KEY, place::ENTRY_ROWS].contains(&field.name().as_str()) {
                continue;
            }
            assert_fitted(field.name(), column.as_ref(), &mut checked);
        }
        // The texts (with their offsets) of resourceType, id, status, code.text, the instant,
        // the quantity's value and unit, the component's string and the two of __unmapped; the
        // instant's two bounds, the decimal companion and the component's integer; the offsets
        // of the component list and of __unmapped.
        assert!(checked >= 26, "only {checked} buffers checked");
    }

    /// Every list item field under `field`.
    fn items_below(field: &FieldRef, items: &mut Vec<FieldRef>) {
        match field.data_type() {
            DataType::List(item) => {
                items.push(item.clone());
                items_below(item, items);
            }
            DataType::Struct(children) => children.iter().for_each(|child| items_below(child, items)),
            _ => {}
        }
    }

    /// The empty items made from shared columns of no rows are what Arrow's `new_empty_array`
    /// makes: the same type, valid, no rows, equal; for every list of deeply nested tables,
    /// asked for in schema order and again.
    #[test]
    fn empty_items_are_arrows_empty_arrays() {
        for resource_type in ["ExplanationOfBenefit", "Questionnaire", "Patient"] {
            let schema = resource_schema(resource_type, TreeOptions { typed_depth: 3 }).unwrap();
            let mut items = Vec::new();
            schema
                .fields()
                .iter()
                .for_each(|field| items_below(field, &mut items));
            assert!(items.len() > 10, "{resource_type}: {} lists", items.len());
            let mut empty = EmptyItems::default();
            for item in items.iter().chain(&items) {
                let ours = empty.of(item);
                let theirs = arrow_array::new_empty_array(item.data_type());
                assert_eq!(ours.data_type(), theirs.data_type(), "{}", item.name());
                assert_eq!(ours.len(), 0);
                ours.to_data().validate_full().unwrap();
                assert_eq!(ours.to_data(), theirs.to_data(), "{}", item.name());
            }
        }
    }
}
