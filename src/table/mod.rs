//! Typed tables: each turns resources of one type into typed rows, appends them to Arrow builders
//! and hands out a `RecordBatch` every `batch_size` rows. Adding a table means adding a module here
//! and listing it in [`builtin_tables`].

mod cells;
pub(crate) mod columns;
pub mod deleted;
pub mod encounter;
pub mod patient;
mod text;

pub(crate) use cells::Cells;
pub use cells::MAX_CELL_BYTES;
pub use text::cell_text;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::diagnostics::Diagnostics;
use crate::resource::{Rejection, Resource, ResourceSink};

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
    /// The buffered rows as a batch; the table starts a new one.
    fn finish(&mut self) -> RecordBatch;
    /// Records a DELETE of `resource_type/id`; `true` if this table keeps such tombstones.
    fn record_deletion(&mut self, _resource_type: &str, _id: &str) -> bool {
        false
    }
    /// The FHIR resource type a table's rows come from, stored in its Parquet metadata so that
    /// `compact` can apply tombstones to it.
    fn source_resource_type(&self) -> &str {
        self.resource_type()
    }
}

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
    batch_size: usize,
    /// String bytes at which a batch is cut ([`MAX_BATCH_BYTES`]).
    batch_bytes: usize,
    /// Finished batches waiting to be sent, tagged with the table's position.
    ready: Vec<(usize, RecordBatch)>,
    /// Tables that hold staged conditional references.
    pending: BTreeSet<String>,
    /// Per table, shared by all workers: set when the table stopped on a data error.
    stopped: Arc<[AtomicBool]>,
}

/// Whether a table's batch is full: `rows` rows or `bytes` bytes of strings.
fn is_full(table: &dyn Table, rows: usize, bytes: usize) -> bool {
    table.len() >= rows || table.buffered_bytes() >= bytes
}

/// One flag per table, shared by every worker's [`TableSet`]: which tables stopped.
pub fn stop_flags(count: usize) -> Arc<[AtomicBool]> {
    (0..count).map(|_| AtomicBool::new(false)).collect()
}

impl TableSet {
    pub fn new(tables: Vec<Box<dyn Table>>, batch_size: usize, stopped: Arc<[AtomicBool]>) -> Self {
        TableSet {
            tables,
            batch_size: batch_size.max(1),
            batch_bytes: MAX_BATCH_BYTES,
            ready: Vec::new(),
            pending: BTreeSet::new(),
            stopped,
        }
    }

    /// Batches completed since the last call.
    pub fn take_ready(&mut self) -> Vec<(usize, RecordBatch)> {
        std::mem::take(&mut self.ready)
    }

    /// Finishes every partly filled batch (end of the worker's input).
    pub fn flush(&mut self) -> Vec<(usize, RecordBatch)> {
        for (position, table) in self.tables.iter_mut().enumerate() {
            if !table.is_empty() {
                self.ready.push((position, table.finish()));
            }
        }
        self.take_ready()
    }

    /// Names of tables that need the conditional-reference pass.
    pub fn pending_tables(&self) -> &BTreeSet<String> {
        &self.pending
    }
}

impl ResourceSink for TableSet {
    fn wants(&self, resource_type: &str) -> bool {
        self.tables.iter().any(|t| t.resource_type() == resource_type)
    }

    /// Gives the resource to every table of its type; one table's rejection does not keep the
    /// resource from the others. The first rejection is returned (one lost resource, one error).
    fn accept(&mut self, resource: &Resource<'_>, diagnostics: &mut Diagnostics) -> Result<(), Rejection> {
        let mut first_rejection = None;
        for (position, table) in self.tables.iter_mut().enumerate() {
            if table.resource_type() != resource.resource_type
                || self.stopped[position].load(Ordering::Relaxed)
            {
                continue;
            }
            match table.append(resource, diagnostics) {
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
            if is_full(table.as_ref(), self.batch_size, self.batch_bytes) {
                self.ready.push((position, table.finish()));
            }
        }
        first_rejection.map_or(Ok(()), Err)
    }

    fn deleted(&mut self, resource_type: &str, id: &str) {
        for (position, table) in self.tables.iter_mut().enumerate() {
            if table.record_deletion(resource_type, id)
                && is_full(table.as_ref(), self.batch_size, self.batch_bytes)
            {
                self.ready.push((position, table.finish()));
            }
        }
    }
}

/// Runs FHIR JSON documents through the real walker into one table, for the tables' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;

    use super::{Table, TableSet};
    use crate::diagnostics::Diagnostics;
    use crate::fhir::IdentifierIndex;
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
        for (_, batch) in tables.flush() {
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
    use super::*;
    use crate::fhir::IdentifierIndex;
    use crate::resource::Walker;

    #[test]
    fn batches_are_cut_by_string_bytes_as_well_as_rows() {
        let mut tables = TableSet::new(builtin_tables(1000), 1000, stop_flags(2));
        tables.batch_bytes = 2000;
        let (mut index, mut diagnostics) = (IdentifierIndex::default(), Diagnostics::default());
        let mut walker = Walker {
            sink: &mut tables,
            index: &mut index,
            diagnostics: &mut diagnostics,
        };
        let name = "n".repeat(600);
        for i in 0..10 {
            let patient =
                format!(r#"{{"resourceType":"Patient","id":"p{i}","name":[{{"family":"{name}"}}]}}"#);
            walker.document("test.ndjson", &patient, i + 1).unwrap();
        }
        let batches = tables.flush();
        let rows: Vec<usize> = batches.iter().map(|(_, batch)| batch.num_rows()).collect();
        // About 613 string bytes a row (name, id, source file): the fourth row passes 2000 bytes.
        assert_eq!(rows, [4, 4, 2]);
    }
}
