//! Typed tables: each turns resources of one type into typed rows, appends them to Arrow builders
//! and hands out a `RecordBatch` every `batch_size` rows. Adding a table means adding a module here
//! (its columns declared with `define_columns!`, its [`Table`] impl with `builtin_table!`, as in
//! patient.rs) and listing it in [`builtin_tables`].

mod builtin;
mod cells;
pub(crate) mod columns;
pub mod dedup;
pub mod deleted;
pub mod encounter;
pub mod lossless;
pub mod patient;
mod staged;
mod text;

pub(crate) use cells::Cells;
pub use cells::MAX_CELL_BYTES;
pub use columns::UTC;
pub use staged::{staged, PENDING_MARKER};
pub use text::cell_text;

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::diagnostics::Diagnostics;
use crate::fhir::key_hash::FastHash;
use crate::resource::tree::Reader;
use crate::resource::{Rejection, Resource, ResourceSink, StreamRefused};

/// One output table fed by one resource type: a built-in table or a view.
pub trait Table: Send + Sync {
    /// The dataset folder name under `--out`.
    fn name(&self) -> &str;
    /// The resource type whose resources become rows.
    fn resource_type(&self) -> &str;
    fn schema(&self) -> SchemaRef;
    /// An empty table of the same kind, for another worker thread.
    fn fresh(&self, batch_size: usize) -> Box<dyn Table>;
    /// Appends the resource's row. `Ok(true)` means a cell holds a staged conditional reference
    /// that the run-wide pass must resolve.
    fn append(&mut self, resource: &Resource<'_>, diagnostics: &mut Diagnostics) -> Result<bool, Rejection>;
    /// Rows appended since the last [`Table::finish`].
    fn len(&self) -> usize;
    /// Bytes of string data appended since the last [`Table::finish`] (see [`MAX_BATCH_BYTES`]).
    fn buffered_bytes(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether the buffered rows make a full batch: `rows` rows, or `bytes` bytes of strings.
    fn is_full(&self, rows: usize, bytes: usize) -> bool {
        self.len() >= rows || self.buffered_bytes() >= bytes
    }
    /// The buffered rows as a batch; the table starts a new one.
    fn finish(&mut self) -> RecordBatch;
    /// The first `rows` buffered rows as a batch, dropping the rest (a half-appended row too);
    /// the table starts a new one. Rolls back a document whose conversion panicked.
    fn finish_rows(&mut self, rows: usize) -> RecordBatch;
    /// Records a DELETE of `resource_type/id`; `true` if this table keeps such tombstones.
    fn record_deletion(&mut self, _resource_type: &str, _id: &str) -> bool {
        false
    }
    /// The FHIR resource type a table's rows come from, stored in its Parquet metadata so that
    /// `compact` can apply tombstones to it.
    fn source_resource_type(&self) -> &str {
        self.resource_type()
    }
    /// The version of the column contract (docs/tables.md) the table follows, recorded in each
    /// Parquet file; views follow their ViewDefinition instead and have none.
    fn contract_version(&self) -> Option<&'static str> {
        None
    }
    /// This table with the columns that `stored` (an existing table's schema) holds as text kept
    /// as text where the table now types them (a view's `ansi/type` tag added after the stored
    /// table was written), so that appending to it still works; `None` when there are none.
    fn keeping_stored_text(&self, _stored: &arrow_schema::Schema) -> Option<Box<dyn Table>> {
        None
    }
    /// Whether the table takes Bundle entries so ([`Table::stream_row`]).
    fn streams(&self) -> bool {
        false
    }
    /// Works out now, on this thread, what the table's rows will need and the tables of every
    /// worker share (a resource table's shape and schema), unless that is done or another
    /// thread is at it. Asked ahead of a worker's first Bundle ([`TableSet`]'s
    /// `preview_bundle`): workers that start on alike Bundles then work out different types
    /// side by side, where each waited for the other at every type.
    fn prepare(&self) {}
    /// Reads the resource at `reader`, an entry of a Bundle the walker reads once, into a row
    /// that [`Table::append`] finishes when it gets the resource with `streamed` set (after the
    /// Bundle is read: the rows streamed meanwhile are pending). A table takes no more of the
    /// Bundle's entries once its pending rows would fill its batch (`rows` rows, `bytes`
    /// bytes): the batch is then cut after the last of them, where the usual way cuts it.
    fn stream_row(&mut self, _reader: &mut Reader<'_>, _rows: usize, _bytes: usize) -> Streamed {
        Streamed::NotTaken
    }
    /// Drops the pending rows (the walker gave up reading the Bundle once).
    fn abandon_streamed(&mut self) {}
    /// Finishes the pending rows without their place in the Bundle, so that the builders hold
    /// whole rows (a document rolled back after a panic, or a table stopped, drops them).
    fn complete_streamed(&mut self) {}
    /// Whether rows are pending: the batch cannot be cut before they are finished.
    fn has_streamed(&self) -> bool {
        false
    }
}

/// What [`Table::stream_row`] did with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streamed {
    /// Nothing read: the table does not stream, or takes no more of this Bundle.
    NotTaken,
    /// The resource was read into a pending row.
    Taken,
    /// The resource cannot be read so (the reader is lost); the walker gives the Bundle up and
    /// every table drops its pending rows ([`Table::abandon_streamed`]).
    Refused,
}

/// Whether queries select rows of a table by this column's value (`WHERE patient_id = ?`, joins on
/// `id`): the logical id and every reference key column (`*_id`), when they hold text. Such
/// columns get a lookup index in the files, since rows are not sorted by them and min/max
/// statistics of random ids span the whole range.
pub fn is_lookup_column(field: &arrow_schema::Field) -> bool {
    let name = field.name();
    field.data_type() == &arrow_schema::DataType::Utf8 && (name == "id" || name.ends_with("_id"))
}

/// The version of the built-in tables' column contract in docs/tables.md, raised on every
/// change a query written against the old one could notice.
pub const CONTRACT_VERSION: &str = "1";

/// A batch is cut when its string data reaches this many bytes, whatever its row count. No cell
/// holds more than [`MAX_CELL_BYTES`], a built-in row a few dozen cells, and a view refuses a
/// resource whose rows hold more than this; so a string column of a batch stays far below the
/// 2 GiB that Arrow's 32-bit offsets can address (beyond which building the batch panics).
pub const MAX_BATCH_BYTES: usize = 256 << 20;

/// Names of the built-in tables (views may not take them).
pub const BUILTIN_TABLE_NAMES: &[&str] = &["patient", "encounter"];

/// Fresh builders for every built-in table, in output order.
pub fn builtin_tables(batch_size: usize) -> Vec<Box<dyn Table>> {
    vec![
        Box::new(patient::PatientTable::new(batch_size)),
        Box::new(encounter::EncounterTable::new(batch_size)),
    ]
}

/// A worker's tables: routes resources to them and collects full batches for the writer.
pub struct TableSet {
    tables: Vec<Box<dyn Table>>,
    /// Each resource type's tables by position: a resource visits only the tables of its type.
    /// Looked up two or three times per resource, so with [`FastHash`]: the standard SipHash
    /// was 0.6% of the instructions of `--resources all` on 500 MB of Bundles.
    by_type: HashMap<String, Vec<usize>, FastHash>,
    batch_size: usize,
    /// String bytes at which a batch is cut ([`MAX_BATCH_BYTES`]).
    batch_bytes: usize,
    /// Finished batches waiting to be sent, tagged with the table's position.
    ready: Vec<(usize, RecordBatch)>,
    /// Tables that hold staged conditional references.
    pending: BTreeSet<String>,
    /// Per table, shared by all workers: set when the table stopped on a data error.
    stopped: Arc<[AtomicBool]>,
    /// Where the current document started: its first line, and each table's buffered rows.
    document_line: u64,
    marks: Marks,
    /// What the tables hold, by their own measure ([`Table::buffered_bytes`]), kept up to date
    /// as rows come and batches go: past `budget` ([`WORKER_BUFFER_BYTES`]) the fullest table
    /// is cut.
    buffered: usize,
    budget: usize,
    /// Per table, whether it took a row since the last [`TableSet::end_unit`], and what an
    /// idle table must hold to be cut then ([`IDLE_CUT_BYTES`]).
    fed: Vec<bool>,
    idle_cut: usize,
    /// Whether any table reads Bundle entries as the walker finds them ([`Table::stream_row`]).
    streams: bool,
    /// After a Bundle that could not be read once, how many Bundles go the usual way before the
    /// next try, and how many will after the next one given up (see [`MAX_BUNDLES_SKIPPED`]).
    bundles_to_skip: u32,
    skip_after_refusal: u32,
    /// Whether the tables of the types of a first Bundle's entries were prepared
    /// ([`Table::prepare`]).
    previewed: bool,
}

/// The most Bundles read the usual way between two tries at reading one once. A Bundle given up
/// late (an element the shape lacks in its last entry) is read almost twice: where most Bundles
/// are like that (a newer FHIR version's elements, say), each refusal doubles the Bundles
/// skipped before the next try, up to this; one Bundle read once starts again from none.
const MAX_BUNDLES_SKIPPED: u32 = 64;

/// The most a worker's tables may hold together (by [`Table::buffered_bytes`]) before the
/// fullest one's batch is cut early. Each table is also cut at its own size, but a worker
/// keeps a batch in progress for every type it has met. Small budgets cost time: a patient
/// Bundle feeds twenty resource tables at once, and a 16 MB budget cut them into batches of a
/// few rows, which took a 500 MB run from 3.6 to 4.4 s.
const WORKER_BUFFER_BYTES: usize = 40 << 20;

/// A table that took no row from a whole input unit (a file, or a part of a big one) is cut
/// once it holds this much: on Bulk NDJSON (a file per type) a worker has moved on to another
/// type, and the rows it held for the last one would wait to the end of the run. With only
/// the budget above, by the end of 1.5 GB every type's table sat near its own limit. On patient
/// Bundles (a unit each) the rarer types are cut so too, into batches of their own lengths that
/// share no all-null columns with the table's other batches: part of the 2-10% this costs there.
const IDLE_CUT_BYTES: usize = 1 << 20;

/// A table holding less than this part of the budget is not cut early: its batch would be
/// small for little gain.
const SMALLEST_EARLY_BATCH_PART: usize = 16;

/// The environment variable of the test-only fault injection: converting the resource whose `id`
/// it names panics right after the first table of its type took it (a half-converted document),
/// so tests can show that a panic loses only its own document. Never set it otherwise.
pub const TEST_PANIC_VARIABLE: &str = "FHIR2TABLE_TEST_PANIC_ON";

fn injected_panic(resource: &Resource<'_>) {
    static TARGET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var(TEST_PANIC_VARIABLE).ok());
    if let Some(id) = target {
        if resource.raw.contains(&format!(r#""id":"{id}""#)) {
            panic!(
                "{TEST_PANIC_VARIABLE}: injected panic at {}/{id}",
                resource.resource_type
            );
        }
    }
}

/// Stops the table at `position` after a panic left its rows unknown: no worker writes it any
/// more, and an empty table takes its place here. Returns its name, for the run's errors.
fn stop(stopped: &[AtomicBool], position: usize, table: &mut Box<dyn Table>, batch_size: usize) -> String {
    stopped[position].store(true, Ordering::Relaxed);
    *table = table.fresh(batch_size);
    table.name().to_owned()
}

/// One flag per table, shared by every worker's [`TableSet`]: which tables stopped.
pub fn stop_flags(count: usize) -> Arc<[AtomicBool]> {
    (0..count).map(|_| AtomicBool::new(false)).collect()
}

/// Each table's buffered rows at the start of the current document, the point a panic rolls
/// it back to. A table's mark is taken when the document first changes it ([`Marks::take`],
/// before a row is appended or a batch cut): `marks[i]` holds for the document numbered
/// `marked_in[i]`, and a table the current document (`document`) has not changed still has
/// the rows it had. Why not take every mark at the start: a line of Bulk NDJSON is a document,
/// which changes one table, and asking each of the 150 tables of `--resources all` for its
/// length at every line was 1.6% of the instructions.
struct Marks {
    document: u64,
    marks: Vec<usize>,
    marked_in: Vec<u64>,
}

impl Marks {
    fn new(tables: usize) -> Self {
        Marks {
            document: 0,
            marks: vec![0; tables],
            marked_in: vec![u64::MAX; tables],
        }
    }

    /// Starts the next document: the rows every table holds now are its mark.
    fn next_document(&mut self) {
        self.document += 1;
    }

    /// Takes table `position`'s mark, `table` being that table, unless the document took it.
    fn take(&mut self, position: usize, table: &dyn Table) {
        if self.marked_in[position] != self.document {
            self.marked_in[position] = self.document;
            self.marks[position] = table.len();
        }
    }

    /// Table `position`'s mark (`table` being that table).
    fn of(&self, position: usize, table: &dyn Table) -> usize {
        match self.marked_in[position] == self.document {
            true => self.marks[position],
            false => table.len(),
        }
    }
}

impl TableSet {
    pub fn new(tables: Vec<Box<dyn Table>>, batch_size: usize, stopped: Arc<[AtomicBool]>) -> Self {
        let count = tables.len();
        let streams = tables.iter().any(|table| table.streams());
        let mut by_type: HashMap<String, Vec<usize>, FastHash> = HashMap::default();
        for (position, table) in tables.iter().enumerate() {
            by_type
                .entry(table.resource_type().to_owned())
                .or_default()
                .push(position);
        }
        TableSet {
            tables,
            by_type,
            batch_size: batch_size.max(1),
            batch_bytes: MAX_BATCH_BYTES,
            ready: Vec::new(),
            pending: BTreeSet::new(),
            stopped,
            document_line: 0,
            marks: Marks::new(count),
            buffered: 0,
            budget: WORKER_BUFFER_BYTES,
            fed: vec![false; count],
            idle_cut: IDLE_CUT_BYTES,
            streams,
            bundles_to_skip: 0,
            skip_after_refusal: 1,
            previewed: false,
        }
    }

    /// Cuts the fullest tables' batches while the tables together hold more than
    /// [`WORKER_BUFFER_BYTES`] (see there).
    fn keep_within_budget(&mut self) {
        while self.buffered > self.budget {
            // A table with pending rows (a Bundle read once, being finished) cannot be cut
            // before they are: the next fullest is.
            let Some((position, bytes)) = self
                .tables
                .iter()
                .enumerate()
                .filter(|(_, table)| !table.has_streamed())
                .map(|(position, table)| (position, table.buffered_bytes()))
                .max_by_key(|&(_, bytes)| bytes)
            else {
                return;
            };
            if bytes < self.budget / SMALLEST_EARLY_BATCH_PART {
                return;
            }
            self.marks.take(position, &*self.tables[position]);
            self.ready.push((position, self.tables[position].finish()));
            self.buffered = self.buffered.saturating_sub(bytes);
        }
    }

    /// Ends an input unit (see [`IDLE_CUT_BYTES`]): the tables that took no row from it and hold
    /// at least that much are cut. Call it between documents; the batches are then ready. A
    /// table whose batch cannot be finished (a panic) is stopped, as in
    /// [`TableSet::flush_each`]; returns the names of such tables.
    pub fn end_unit(&mut self) -> Vec<String> {
        let mut broken = Vec::new();
        for (position, table) in self.tables.iter_mut().enumerate() {
            if self.fed[position] || table.buffered_bytes() < self.idle_cut {
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| table.finish())) {
                Ok(batch) => self.ready.push((position, batch)),
                Err(_) => broken.push(stop(&self.stopped, position, table, self.batch_size)),
            }
        }
        self.fed.iter_mut().for_each(|fed| *fed = false);
        // A panic before the next unit's first document rolls back to here, not to the start
        // of this unit's last document (whose rows may have been cut just now).
        self.marks.next_document();
        self.recount_buffered();
        broken
    }

    /// Counts what the tables hold again, after rows were dropped or batches cut in bulk.
    fn recount_buffered(&mut self) {
        self.buffered = self.tables.iter().map(|table| table.buffered_bytes()).sum();
    }

    /// Marks the start of a document (at `line` of its file), the point
    /// [`TableSet::roll_back_document`] returns to. Call it when no batch is waiting.
    pub fn begin_document(&mut self, line: u64) {
        debug_assert!(self.ready.is_empty(), "batches are taken between documents");
        self.document_line = line;
        self.marks.next_document();
    }

    /// The first line of the current document, for messages.
    pub fn document_line(&self) -> u64 {
        self.document_line
    }

    /// After a panic while converting the current document: drops every row it added, even a
    /// half-appended one, and keeps the rows of earlier documents as ready batches. A table that
    /// cannot be restored is stopped (not written); returns the names of such tables.
    pub fn roll_back_document(&mut self) -> Vec<String> {
        let cut_during_document = std::mem::take(&mut self.ready);
        let mut broken = Vec::new();
        for (position, table) in self.tables.iter_mut().enumerate() {
            let mark = self.marks.of(position, &**table);
            // Rows a Bundle read once left pending come after the mark: whole, they are
            // dropped with the rest of the document.
            let completed = catch_unwind(AssertUnwindSafe(|| table.complete_streamed()));
            if completed.is_err() {
                broken.push(stop(&self.stopped, position, table, self.batch_size));
                continue;
            }
            // A batch cut during the document starts with the `mark` rows from before it.
            let first_cut = cut_during_document.iter().find(|(p, _)| *p == position);
            let kept = catch_unwind(AssertUnwindSafe(|| match first_cut {
                Some((_, batch)) => {
                    table.finish_rows(0);
                    batch.slice(0, mark.min(batch.num_rows()))
                }
                None => table.finish_rows(mark),
            }));
            match kept {
                Ok(batch) if batch.num_rows() == mark => {
                    if mark > 0 {
                        self.ready.push((position, batch));
                    }
                }
                _ => broken.push(stop(&self.stopped, position, table, self.batch_size)),
            }
        }
        self.recount_buffered();
        broken
    }

    /// Batches completed since the last call.
    pub fn take_ready(&mut self) -> Vec<(usize, RecordBatch)> {
        std::mem::take(&mut self.ready)
    }

    /// Finishes every partly filled batch (end of the worker's input). A table whose batch
    /// cannot be finished (a panic) is stopped; the names of such tables come second.
    pub fn flush(&mut self) -> (Vec<(usize, RecordBatch)>, Vec<String>) {
        let mut batches = Vec::new();
        let broken = self.flush_each(|position, batch| {
            batches.push((position, batch));
            true
        });
        (batches, broken)
    }

    /// [`TableSet::flush`] handing each batch to `deliver` as soon as it is finished, so that
    /// each table's builders are freed as its batch is made (Arrow arrays and builders of all
    /// the tables at once came to about 60 MB with `--resources all`). The batches themselves
    /// are then held by the writer until the parts complete (`Writers::hold_back` in
    /// `convert`). Stops finishing batches once `deliver` returns false (the writer is gone);
    /// returns the names of the broken tables.
    pub fn flush_each(&mut self, mut deliver: impl FnMut(usize, RecordBatch) -> bool) -> Vec<String> {
        let mut broken = Vec::new();
        let mut delivering = true;
        for (position, batch) in std::mem::take(&mut self.ready) {
            delivering = delivering && deliver(position, batch);
        }
        for (position, table) in self.tables.iter_mut().enumerate() {
            if !delivering {
                break;
            }
            if !table.is_empty() {
                match catch_unwind(AssertUnwindSafe(|| table.finish())) {
                    Ok(batch) => delivering = deliver(position, batch),
                    Err(_) => broken.push(stop(&self.stopped, position, table, self.batch_size)),
                }
            }
        }
        self.recount_buffered();
        broken
    }

    /// Names of tables that need the conditional-reference pass.
    pub fn pending_tables(&self) -> &BTreeSet<String> {
        &self.pending
    }
}

impl ResourceSink for TableSet {
    fn wants(&self, resource_type: &str) -> bool {
        self.by_type.contains_key(resource_type)
    }

    /// Prepares the tables of the Bundle's own type and of its entries' types, once per worker:
    /// its first Bundle names most types of a run of alike Bundles (a Synthea patient's names
    /// sixteen, 146 lossless tables of which only these get rows).
    fn preview_bundle(&mut self, text: &str) {
        if self.previewed || !self.streams {
            return;
        }
        self.previewed = true;
        for resource_type in std::iter::once("Bundle").chain(crate::resource::entry_resource_types(text)) {
            for &position in self.by_type.get(resource_type).into_iter().flatten() {
                self.tables[position].prepare();
            }
        }
    }

    /// Gives the resource to every table of its type; one table's rejection does not keep the
    /// resource from the others. The first rejection is returned (one lost resource, one error).
    fn accept(&mut self, resource: &Resource<'_>, diagnostics: &mut Diagnostics) -> Result<(), Rejection> {
        if resource.streamed {
            // A Bundle was read once: the next one given up skips one Bundle again.
            self.skip_after_refusal = 1;
        }
        let mut first_rejection = None;
        let positions = self
            .by_type
            .get(resource.resource_type)
            .map_or(&[][..], Vec::as_slice);
        for &position in positions {
            self.marks.take(position, &*self.tables[position]);
            let table = &mut self.tables[position];
            if self.stopped[position].load(Ordering::Relaxed) {
                // Stopped by another worker since the Bundle was read: its rows are not
                // written, but the builders must stay whole.
                if resource.streamed {
                    table.complete_streamed();
                }
                continue;
            }
            let before = table.buffered_bytes();
            self.fed[position] = true;
            let appended = table.append(resource, diagnostics);
            self.buffered = (self.buffered + table.buffered_bytes()).saturating_sub(before);
            injected_panic(resource);
            match appended {
                Ok(true) => {
                    self.pending.insert(table.name().to_owned());
                }
                Ok(false) => {}
                Err(rejection) => {
                    if rejection.stops_table {
                        self.stopped[position].store(true, Ordering::Relaxed);
                    }
                    first_rejection.get_or_insert(rejection);
                }
            }
            if table.is_full(self.batch_size, self.batch_bytes) {
                self.buffered = self.buffered.saturating_sub(table.buffered_bytes());
                self.ready.push((position, table.finish()));
            }
        }
        self.keep_within_budget();
        first_rejection.map_or(Ok(()), Err)
    }

    fn begin_bundle(&mut self) -> bool {
        if self.bundles_to_skip > 0 {
            self.bundles_to_skip -= 1;
            return false;
        }
        self.streams
    }

    fn stream_entry(&mut self, resource_type: &str, reader: &mut Reader<'_>) -> Result<bool, StreamRefused> {
        let Some(positions) = self.by_type.get(resource_type) else {
            return Ok(false);
        };
        // Only the first table of the type that streams ever does: the resource carries no
        // table with its `streamed` flag, so two tables of one type with pending rows could
        // finish each other's.
        let Some(&position) = positions
            .iter()
            .find(|&&position| self.tables[position].streams())
        else {
            return Ok(false);
        };
        if self.stopped[position].load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.marks.take(position, &*self.tables[position]);
        match self.tables[position].stream_row(reader, self.batch_size, self.batch_bytes) {
            Streamed::NotTaken => Ok(false),
            Streamed::Taken => Ok(true),
            Streamed::Refused => Err(StreamRefused),
        }
    }

    fn abandon_bundle(&mut self) {
        for table in &mut self.tables {
            table.abandon_streamed();
        }
        self.bundles_to_skip = self.skip_after_refusal;
        self.skip_after_refusal = (self.skip_after_refusal * 2).min(MAX_BUNDLES_SKIPPED);
    }

    fn deleted(&mut self, resource_type: &str, id: &str) {
        for position in 0..self.tables.len() {
            self.marks.take(position, &*self.tables[position]);
            let table = &mut self.tables[position];
            if table.record_deletion(resource_type, id) && table.is_full(self.batch_size, self.batch_bytes) {
                self.ready.push((position, table.finish()));
            }
        }
        self.recount_buffered();
        self.keep_within_budget();
    }
}

/// Runs FHIR JSON documents through the real walker into one table, for the tables' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    use super::{Table, TableSet};
    use crate::diagnostics::Diagnostics;
    use crate::resource::IdentifierIndex;
    use crate::resource::Walker;

    /// One converted row, cells rendered as text (dates `YYYY-MM-DD`, timestamps RFC 3339 UTC).
    pub type Row = BTreeMap<String, Option<String>>;

    /// Converts `document` (one resource or a Bundle) and returns the table's rows.
    pub fn rows(table: Box<dyn Table>, document: &str) -> (Vec<Row>, Diagnostics) {
        let mut tables = TableSet::new(vec![table], 100, super::stop_flags(1));
        let mut index = IdentifierIndex::default();
        let mut diagnostics = Diagnostics::default();
        let mut walker = Walker {
            sink: &mut tables,
            index: &mut index,
            diagnostics: &mut diagnostics,
        };
        walker
            .document("test.json", document, 1)
            .expect("the document is readable");
        let mut rows = Vec::new();
        for (_, batch) in tables.flush().0 {
            for row in 0..batch.num_rows() {
                let cells = batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(|(field, column)| (field.name().clone(), super::cell_text(column.as_ref(), row)))
                    .collect();
                rows.push(cells);
            }
        }
        (rows, diagnostics)
    }

    /// The cell `column` of the only row.
    pub fn cell(rows: &[Row], column: &str) -> Option<String> {
        assert_eq!(rows.len(), 1, "expected one row");
        rows[0][column].clone()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::resource::IdentifierIndex;
    use crate::resource::Walker;

    /// A patient of about 613 string bytes (name, id, source file) in the built-in table.
    fn long_patient(i: usize) -> String {
        let name = "n".repeat(600);
        format!(r#"{{"resourceType":"Patient","id":"p{i}","name":[{{"family":"{name}"}}]}}"#)
    }

    /// Gives `documents` to `tables` as the lines of one NDJSON file.
    fn walk(tables: &mut TableSet, documents: &[String]) {
        let (mut index, mut diagnostics) = (IdentifierIndex::default(), Diagnostics::default());
        let mut walker = Walker {
            sink: tables,
            index: &mut index,
            diagnostics: &mut diagnostics,
        };
        for (line, document) in documents.iter().enumerate() {
            walker.document("test.ndjson", document, line as u64 + 1).unwrap();
        }
    }

    #[test]
    fn batches_are_cut_by_string_bytes_as_well_as_rows() {
        let mut tables = TableSet::new(builtin_tables(1000), 1000, stop_flags(2));
        tables.batch_bytes = 2000;
        walk(&mut tables, &(0..10).map(long_patient).collect::<Vec<_>>());
        let (batches, _) = tables.flush();
        let rows: Vec<usize> = batches.iter().map(|(_, batch)| batch.num_rows()).collect();
        // About 613 string bytes a row (name, id, source file): the fourth row passes 2000 bytes.
        assert_eq!(rows, [4, 4, 2]);
    }

    /// Patients of about 613 string bytes and small encounters, taken in turn by a worker whose
    /// tables may hold `budget` bytes together; returns each table's batches' rows.
    fn batches_within(budget: usize) -> BTreeMap<usize, Vec<usize>> {
        let mut tables = TableSet::new(builtin_tables(1000), 1000, stop_flags(2));
        tables.budget = budget;
        let documents: Vec<String> = (0..10)
            .flat_map(|i| {
                [
                    long_patient(i),
                    format!(r#"{{"resourceType":"Encounter","id":"e{i}"}}"#),
                ]
            })
            .collect();
        walk(&mut tables, &documents);
        let mut rows: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let (batches, _) = tables.flush();
        for (position, batch) in batches {
            rows.entry(position).or_default().push(batch.num_rows());
        }
        rows
    }

    /// A document's marks are taken as it changes each table: one it did not give a row to but
    /// whose batch the budget cut during it is rolled back to the rows it had, all of them.
    #[test]
    fn a_roll_back_keeps_the_rows_of_a_table_the_document_only_cut() {
        let mut tables = TableSet::new(builtin_tables(1000), 1000, stop_flags(2));
        let encounter = |i: u64| format!(r#"{{"resourceType":"Encounter","id":"e{i}"}}"#);
        walk(
            &mut tables,
            &[long_patient(0), encounter(0), long_patient(1), long_patient(2)],
        );
        assert!(tables.take_ready().is_empty());
        tables.budget = tables.buffered + 1;
        tables.begin_document(5);
        walk(&mut tables, &[encounter(1)]);
        let cut: Vec<(usize, usize)> = tables
            .ready
            .iter()
            .map(|(position, batch)| (*position, batch.num_rows()))
            .collect();
        assert_eq!(cut, [(0, 3)], "the patients, the fullest table, were cut");
        assert!(tables.roll_back_document().is_empty());
        let kept: Vec<(usize, usize)> = tables
            .take_ready()
            .iter()
            .map(|(position, batch)| (*position, batch.num_rows()))
            .collect();
        assert_eq!(
            kept,
            [(0, 3), (1, 1)],
            "every patient, and the encounter before the document"
        );
    }

    #[test]
    fn a_table_that_took_no_row_from_a_unit_is_cut_at_its_end() {
        let mut tables = TableSet::new(builtin_tables(1000), 1000, stop_flags(2));
        tables.idle_cut = 1000;
        let encounter = |i: u64| format!(r#"{{"resourceType":"Encounter","id":"e{i}"}}"#);
        let mut cut = Vec::new();
        // Units: two patients and an encounter; encounters; encounters; a patient.
        let units: [&[String]; 4] = [
            &[long_patient(1), long_patient(2), encounter(1)],
            &[encounter(2)],
            &[encounter(3)],
            &[long_patient(3)],
        ];
        for (unit, documents) in units.iter().enumerate() {
            walk(&mut tables, documents);
            assert!(tables.end_unit().is_empty());
            for (position, batch) in tables.take_ready() {
                cut.push((unit, position, batch.num_rows()));
            }
        }
        // The patients (over 1000 bytes) are cut after the first unit without one; the few
        // bytes of the encounters never are, nor is a table that took rows from the unit.
        assert_eq!(cut, [(1, 0, 2)]);
        let (last, _) = tables.flush();
        let last: Vec<(usize, usize)> = last
            .iter()
            .map(|(position, batch)| (*position, batch.num_rows()))
            .collect();
        assert_eq!(last, [(0, 1), (1, 3)]);
    }

    #[test]
    fn the_fullest_table_is_cut_once_a_workers_tables_together_pass_its_budget() {
        // Under the budget, a batch per table at the end.
        assert_eq!(
            batches_within(WORKER_BUFFER_BYTES),
            BTreeMap::from([(0, vec![10]), (1, vec![10])])
        );
        // Over 2000 bytes together: the patients (the fullest) are cut each time they pass it,
        // the encounters (under 1/16 of the budget) never; no row is lost.
        let cut = batches_within(2000);
        assert_eq!(cut[&1], vec![10], "{cut:?}");
        assert!(cut[&0].len() >= 3, "{cut:?}");
        assert_eq!(cut[&0].iter().sum::<usize>(), 10, "{cut:?}");
        assert!(
            cut[&0][..cut[&0].len() - 1]
                .iter()
                .all(|&rows| rows == cut[&0][0]),
            "{cut:?}"
        );
    }
}
