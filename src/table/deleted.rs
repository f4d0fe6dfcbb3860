//! `_deleted`: the resources DELETE requests removed (Bulk Data `deleted/` files), kept as
//! tombstones. `fhir2table compact` drops the rows they remove; readers can anti-join them.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::Table;
use crate::diagnostics::Diagnostics;
use crate::resource::{Rejection, Resource};

/// The tombstone table's folder name (hidden from `inspect`). No view can take it: view names
/// must start with a letter ([`crate::view::definition::check_table_name`]).
pub const DELETED_TABLE: &str = "_deleted";

/// Tombstones under construction.
pub struct DeletedTable {
    resource_types: StringBuilder,
    ids: StringBuilder,
    rows: usize,
}

impl DeletedTable {
    pub fn new() -> Self {
        DeletedTable {
            resource_types: StringBuilder::new(),
            ids: StringBuilder::new(),
            rows: 0,
        }
    }

    pub fn table_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("resource_type", DataType::Utf8, false),
            Field::new("id", DataType::Utf8, false),
        ]))
    }
}

impl Default for DeletedTable {
    fn default() -> Self {
        Self::new()
    }
}

impl Table for DeletedTable {
    fn name(&self) -> &str {
        DELETED_TABLE
    }

    /// No resource type: tombstones come from DELETE requests, not from resources.
    fn resource_type(&self) -> &str {
        ""
    }

    fn schema(&self) -> SchemaRef {
        Self::table_schema()
    }

    fn fresh(&self, _batch_size: usize) -> Box<dyn Table> {
        Box::new(DeletedTable::new())
    }

    fn append(
        &mut self,
        _resource: &Resource<'_>,
        _diagnostics: &mut Diagnostics,
    ) -> Result<bool, Rejection> {
        Ok(false)
    }

    fn record_deletion(&mut self, resource_type: &str, id: &str) -> bool {
        self.resource_types.append_value(resource_type);
        self.ids.append_value(id);
        self.rows += 1;
        true
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn buffered_bytes(&self) -> usize {
        self.resource_types.values_slice().len() + self.ids.values_slice().len()
    }

    fn finish(&mut self) -> RecordBatch {
        let rows = self.rows;
        self.finish_rows(rows)
    }

    fn finish_rows(&mut self, rows: usize) -> RecordBatch {
        self.rows = 0;
        let columns: Vec<ArrayRef> = [self.resource_types.finish(), self.ids.finish()]
            .into_iter()
            .map(|array| Arc::new(array.slice(0, rows.min(array.len()))) as ArrayRef)
            .collect();
        RecordBatch::try_new(Self::table_schema(), columns).expect("tombstones match their schema")
    }
}
