//! The row builder of the lossless resource tables: a resource's JSON tree into Arrow arrays by
//! the shape of its type (docs/LOSSLESS.md, "Mapping").

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::diagnostics::Diagnostics;
use crate::fhir::definitions::TreeOptions;
use crate::resource::{Rejection, Resource};
use crate::table::Table;

/// The lossless table of one resource type.
pub struct ResourceTable {
    name: String,
    resource_type: String,
    options: TreeOptions,
    schema: SchemaRef,
}

impl ResourceTable {
    /// The table of `resource_type`, or `None` when R4 has no such type.
    pub fn new(resource_type: &str, options: TreeOptions, batch_size: usize) -> Option<Self> {
        let _ = (resource_type, options, batch_size);
        todo!()
    }
}

impl Table for ResourceTable {
    fn name(&self) -> &str {
        &self.name
    }
    fn resource_type(&self) -> &str {
        &self.resource_type
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn fresh(&self, batch_size: usize) -> Box<dyn Table> {
        Box::new(ResourceTable::new(&self.resource_type, self.options, batch_size).expect("known type"))
    }
    fn append(
        &mut self,
        _resource: &Resource<'_>,
        _diagnostics: &mut Diagnostics,
    ) -> Result<bool, Rejection> {
        todo!()
    }
    fn len(&self) -> usize {
        todo!()
    }
    fn buffered_bytes(&self) -> usize {
        todo!()
    }
    fn finish(&mut self) -> RecordBatch {
        todo!()
    }
    fn finish_rows(&mut self, _rows: usize) -> RecordBatch {
        todo!()
    }
}
