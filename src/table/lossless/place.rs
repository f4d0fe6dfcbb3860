//! Where a row sits among the Bundles of the input (docs/LOSSLESS.md, "Bundles"): every
//! resource table ends with `__bundle`, the Bundle entry the resource came from; the Bundle table
//! also has `__key`, the Bundle's own key, and `__entry_rows`, the entries whose resource left
//! the envelope to be a row of its own type. With them `export --bundles` puts each Bundle back
//! together from its envelope and its entries' rows.

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Int32Array, StringArray, StructArray};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer};
use arrow_schema::{DataType, Field, FieldRef, Fields};

/// Every resource table's column: Struct {`key` of the containing Bundle, `entry` index}, null
/// for a resource that was not a Bundle entry (an NDJSON line, a lone JSON file).
pub const BUNDLE: &str = "__bundle";

/// The Bundle table's column: the Bundle's own key, which its entries' `__bundle.key` hold.
pub const KEY: &str = "__key";

/// The Bundle table's column: the indexes of the entries whose `resource` is a row of its own
/// type's table (left out of the envelope); the other entries keep their resource in place.
pub const ENTRY_ROWS: &str = "__entry_rows";

/// Where one row sits.
#[derive(Debug, Default, Clone, Copy)]
pub struct Place<'p> {
    /// The containing Bundle's key and the entry's index in it.
    pub container: Option<(&'p str, u32)>,
    /// For a Bundle's own row: its key and the entries that became rows.
    pub envelope: Option<(&'p str, &'p [u32])>,
}

/// The place columns of a table of `resource_type`, in order.
pub(super) fn place_fields(resource_type: &str) -> Vec<Field> {
    let container = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("entry", DataType::Int32, false),
    ]);
    let mut fields = vec![Field::new(BUNDLE, DataType::Struct(container), true)];
    if resource_type == "Bundle" {
        fields.push(Field::new(KEY, DataType::Utf8, true));
        fields.push(Field::new(ENTRY_ROWS, entry_rows_type(), true));
    }
    fields
}

fn entry_rows_type() -> DataType {
    DataType::List(element_field())
}

fn element_field() -> FieldRef {
    Arc::new(Field::new("element", DataType::Int32, true))
}

/// Builds the place columns row by row.
pub(super) struct PlaceBuilder {
    container_fields: Fields,
    keys: StringBuilder,
    entries: Int32Builder,
    contained: BooleanBufferBuilder,
    /// `__key` and `__entry_rows`, for the Bundle table.
    envelope: Option<(StringBuilder, ListBuilder<Int32Builder>)>,
}

impl PlaceBuilder {
    /// Builders for the place columns among `fields` (a table's schema fields).
    pub(super) fn new(fields: &[FieldRef]) -> Self {
        let container_fields = match fields
            .iter()
            .find(|field| field.name() == BUNDLE)
            .map(|f| f.data_type())
        {
            Some(DataType::Struct(fields)) => fields.clone(),
            _ => unreachable!("every resource table has {BUNDLE}"),
        };
        let envelope = fields.iter().any(|field| field.name() == KEY).then(|| {
            let rows =
                ListBuilder::with_capacity(Int32Builder::with_capacity(0), 0).with_field(element_field());
            (StringBuilder::with_capacity(0, 0), rows)
        });
        PlaceBuilder {
            container_fields,
            keys: StringBuilder::with_capacity(0, 0),
            entries: Int32Builder::with_capacity(0),
            contained: BooleanBufferBuilder::new(0),
            envelope,
        }
    }

    /// Appends one row's place.
    pub(super) fn append(&mut self, place: &Place<'_>) {
        let (key, entry) = place.container.unwrap_or_default();
        self.keys.append_value(key);
        self.entries.append_value(entry as i32);
        self.contained.append(place.container.is_some());
        if let Some((keys, rows)) = &mut self.envelope {
            match place.envelope {
                Some((key, entry_rows)) => {
                    keys.append_value(key);
                    for &entry in entry_rows {
                        rows.values().append_value(entry as i32);
                    }
                    rows.append(true);
                }
                None => {
                    keys.append_null();
                    rows.append(false);
                }
            }
        }
    }

    /// The place columns of the rows so far; the builders start again.
    pub(super) fn finish(&mut self) -> Vec<ArrayRef> {
        let keys: StringArray = self.keys.finish();
        let entries: Int32Array = self.entries.finish();
        let validity = NullBuffer::new(self.contained.finish());
        let nulls = (validity.null_count() > 0).then_some(validity);
        let container = StructArray::new(
            self.container_fields.clone(),
            vec![Arc::new(keys), Arc::new(entries)],
            nulls,
        );
        let mut columns: Vec<ArrayRef> = vec![Arc::new(container)];
        if let Some((keys, rows)) = &mut self.envelope {
            columns.push(Arc::new(keys.finish()));
            columns.push(Arc::new(rows.finish()));
        }
        columns
    }
}
