//! A view as an output table: rows evaluated per resource, converted to the column types fixed by
//! the view, appended to Arrow builders.

use std::borrow::Cow;
use std::sync::Arc;

use crate::resource::tree::{Keep, Node};
use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};

use super::definition::{ColumnDef, TypedTime, View};
use super::fhirpath::{lexical, lexical_text, Item, Primitive};
use crate::diagnostics::{Diagnostics, WarningKind};
use crate::fhir::elements::{value_class, ValueClass};
use crate::fhir::reference::FullUrlLookup;
use crate::fhir::types::Str;
use crate::resource::{Rejection, Resource};
use crate::source::describe_bytes;
use crate::table::PENDING_MARKER;
use crate::table::{Cells, Table, MAX_BATCH_BYTES, UTC};

/// The Arrow type a FHIR type maps to in a view column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    Int32,
    Int64,
    Float64,
    Utf8,
    Timestamp,
    Date,
}

impl Kind {
    /// The kind of a column: typed time when its tag asks for it, else by its FHIR type.
    pub fn of_column(column: &ColumnDef) -> Kind {
        match column.typed_time {
            Some(TypedTime::Timestamp) => Kind::Timestamp,
            Some(TypedTime::Date) => Kind::Date,
            None => Kind::of(&column.type_name),
        }
    }

    /// The column kind of a FHIR type, by the FHIR rule in [`value_class`].
    pub fn of(type_name: &str) -> Kind {
        match value_class(type_name) {
            ValueClass::Boolean => Kind::Boolean,
            ValueClass::Integer32 => Kind::Int32,
            ValueClass::Integer64 => Kind::Int64,
            ValueClass::Decimal => Kind::Float64,
            ValueClass::Text => Kind::Utf8,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Boolean => DataType::Boolean,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float64 => DataType::Float64,
            Kind::Utf8 => DataType::Utf8,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            Kind::Date => DataType::Date32,
        }
    }
}

/// A converted cell value.
#[derive(Debug, Clone, PartialEq)]
enum Cell<'a> {
    Null,
    Boolean(bool),
    /// A value of an Int32 column, range-checked when converted.
    Int32(i32),
    Integer(i64),
    Float(f64),
    /// Borrowed from the resource where the value is a string in it.
    Text(Cow<'a, str>),
    /// Microseconds since the epoch, UTC.
    Timestamp(i64),
    /// Days since 1970-01-01.
    Date(i32),
    List(Vec<Cell<'a>>),
}

/// The Arrow schema of a view: fixed by its definition alone.
pub fn schema(view: &View) -> SchemaRef {
    let fields: Vec<Field> = view
        .columns
        .iter()
        .map(|column| {
            let scalar = Kind::of_column(column).data_type();
            let data_type = if column.collection {
                DataType::List(list_element(scalar))
            } else {
                scalar
            };
            Field::new(&column.name, data_type, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The element field of a list column, named `element` as the Parquet spec's list layout
/// names it (so the Arrow schema and the Parquet file agree, and spec-strict readers such as
/// pyiceberg accept the file).
fn list_element(scalar: DataType) -> FieldRef {
    Arc::new(Field::new("element", scalar, true))
}

/// A view's batch under construction.
pub struct ViewTable {
    view: Arc<View>,
    /// What the views of this resource type read of a resource (the same for all of them: the
    /// tree is built once per resource for all).
    keep: Arc<Keep>,
    schema: SchemaRef,
    builders: Vec<Box<dyn ArrayBuilder>>,
    /// Each column's kind, decided once from its FHIR type (not per cell).
    kinds: Vec<Kind>,
    rows: usize,
    /// String bytes appended since the last batch.
    text_bytes: usize,
}

impl ViewTable {
    /// A table for `view`; `keep` covers every view of the run over the same resource type.
    pub fn new(view: Arc<View>, keep: Arc<Keep>, capacity: usize) -> Self {
        let kinds: Vec<Kind> = view.columns.iter().map(Kind::of_column).collect();
        let builders = view
            .columns
            .iter()
            .zip(&kinds)
            .map(|(column, &kind)| new_builder(kind, column.collection, capacity))
            .collect();
        ViewTable {
            schema: schema(&view),
            view,
            keep,
            builders,
            kinds,
            rows: 0,
            text_bytes: 0,
        }
    }
}

fn new_builder(kind: Kind, collection: bool, capacity: usize) -> Box<dyn ArrayBuilder> {
    match (kind, collection) {
        (Kind::Boolean, false) => Box::new(BooleanBuilder::with_capacity(capacity)),
        (Kind::Int32, false) => Box::new(Int32Builder::with_capacity(capacity)),
        (Kind::Int64, false) => Box::new(Int64Builder::with_capacity(capacity)),
        (Kind::Float64, false) => Box::new(Float64Builder::with_capacity(capacity)),
        (Kind::Utf8, false) => Box::new(StringBuilder::with_capacity(capacity, capacity * 16)),
        (Kind::Timestamp, false) => Box::new(timestamp_builder(capacity)),
        (Kind::Date, false) => Box::new(Date32Builder::with_capacity(capacity)),
        (Kind::Boolean, true) => Box::new(list_builder(BooleanBuilder::new(), kind)),
        (Kind::Int32, true) => Box::new(list_builder(Int32Builder::new(), kind)),
        (Kind::Int64, true) => Box::new(list_builder(Int64Builder::new(), kind)),
        (Kind::Float64, true) => Box::new(list_builder(Float64Builder::new(), kind)),
        (Kind::Utf8, true) => Box::new(list_builder(StringBuilder::new(), kind)),
        (Kind::Timestamp, true) => Box::new(list_builder(timestamp_builder(0), kind)),
        (Kind::Date, true) => Box::new(list_builder(Date32Builder::new(), kind)),
    }
}

fn timestamp_builder(capacity: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(UTC)
}

fn list_builder<T: ArrayBuilder>(values: T, kind: Kind) -> ListBuilder<T> {
    ListBuilder::new(values).with_field(list_element(kind.data_type()))
}

/// Appends one scalar to a (non-list) builder of the given kind.
fn append_scalar(builder: &mut dyn ArrayBuilder, kind: Kind, cell: &Cell) {
    let any = builder.as_any_mut();
    match kind {
        Kind::Boolean => {
            let b = any
                .downcast_mut::<BooleanBuilder>()
                .expect("builder matches kind");
            b.append_option(match cell {
                Cell::Boolean(v) => Some(*v),
                _ => None,
            });
        }
        Kind::Int32 => {
            let b = any.downcast_mut::<Int32Builder>().expect("builder matches kind");
            b.append_option(match cell {
                Cell::Int32(v) => Some(*v),
                _ => None,
            });
        }
        Kind::Int64 => {
            let b = any.downcast_mut::<Int64Builder>().expect("builder matches kind");
            b.append_option(match cell {
                Cell::Integer(v) => Some(*v),
                _ => None,
            });
        }
        Kind::Float64 => {
            let b = any
                .downcast_mut::<Float64Builder>()
                .expect("builder matches kind");
            b.append_option(match cell {
                Cell::Float(v) => Some(*v),
                _ => None,
            });
        }
        Kind::Utf8 => {
            let b = any.downcast_mut::<StringBuilder>().expect("builder matches kind");
            b.append_option(match cell {
                Cell::Text(v) => Some(v.as_ref()),
                _ => None,
            });
        }
        Kind::Timestamp => {
            let b = any
                .downcast_mut::<TimestampMicrosecondBuilder>()
                .expect("builder matches kind");
            b.append_option(match cell {
                Cell::Timestamp(v) => Some(*v),
                _ => None,
            });
        }
        Kind::Date => {
            let b = any.downcast_mut::<Date32Builder>().expect("builder matches kind");
            b.append_option(match cell {
                Cell::Date(v) => Some(*v),
                _ => None,
            });
        }
    }
}

fn append_cell(builder: &mut Box<dyn ArrayBuilder>, kind: Kind, collection: bool, cell: &Cell) {
    if !collection {
        append_scalar(builder.as_mut(), kind, cell);
        return;
    }
    let elements: &[Cell] = match cell {
        Cell::List(elements) => elements,
        _ => &[],
    };
    macro_rules! list {
        ($inner:ty) => {{
            let list = builder
                .as_any_mut()
                .downcast_mut::<ListBuilder<$inner>>()
                .expect("builder matches kind");
            for element in elements {
                append_scalar(list.values(), kind, element);
            }
            list.append(true);
        }};
    }
    match kind {
        Kind::Boolean => list!(BooleanBuilder),
        Kind::Int32 => list!(Int32Builder),
        Kind::Int64 => list!(Int64Builder),
        Kind::Float64 => list!(Float64Builder),
        Kind::Utf8 => list!(StringBuilder),
        Kind::Timestamp => list!(TimestampMicrosecondBuilder),
        Kind::Date => list!(Date32Builder),
    }
}

impl Cell<'_> {
    /// Bytes of string data the cell adds to a batch.
    fn text_bytes(&self) -> usize {
        match self {
            Cell::Text(text) => text.len(),
            Cell::List(cells) => cells.iter().map(Cell::text_bytes).sum(),
            _ => 0,
        }
    }
}

/// The cell as its column stores it, by the built-in tables' rules: a text cell over
/// [`crate::table::MAX_CELL_BYTES`] becomes null with an `oversized_value` warning, and a typed
/// time column parses its value (null plus a warning when it is not a valid FHIR date or time).
fn finished<'a>(cell: Cell<'a>, kind: Kind, column: &str, cells: &mut Cells<'_, '_>) -> Cell<'a> {
    match (kind, cell) {
        (Kind::Timestamp, Cell::Text(text)) => cells
            .datetime(column, Some(&Str(Cow::Borrowed(&text))))
            .map_or(Cell::Null, Cell::Timestamp),
        (Kind::Date, Cell::Text(text)) => cells.calendar_date(column, &text).map_or(Cell::Null, Cell::Date),
        (_, cell) => capped(cell, column, cells),
    }
}

fn capped<'a>(cell: Cell<'a>, column: &str, cells: &mut Cells<'_, '_>) -> Cell<'a> {
    match cell {
        // A staged reference (input text with a leading NUL looks the same: the resolution pass
        // then finds no such reference and nulls it, with a warning).
        staged if is_staged(&staged) => staged,
        Cell::Text(text) => match cells.text(column, Some(text)) {
            Some(text) => Cell::Text(text),
            None => Cell::Null,
        },
        other => other,
    }
}

/// Whether a cell holds a conditional reference staged for the run-wide resolution pass.
fn is_staged(cell: &Cell) -> bool {
    matches!(cell, Cell::Text(text) if text.starts_with(PENDING_MARKER))
}

/// Converts one value to a column's kind; `Err` explains a value the column cannot hold.
fn convert<'a>(item: &'a Item<'_>, kind: Kind) -> Result<Cell<'a>, String> {
    let primitive = item.primitive();
    let mismatch = || {
        let shown = lexical(item).unwrap_or_default();
        Err(format!("value '{shown}' is not a {kind:?}"))
    };
    let out_of_range = || {
        let shown = lexical(item).unwrap_or_default();
        Err(format!(
            "value {shown} does not fit the column's 32-bit integer (for larger values give the \
             column \"type\": \"integer64\")"
        ))
    };
    Ok(match (kind, primitive) {
        (Kind::Boolean, Some(Primitive::Boolean(b))) => Cell::Boolean(b),
        (Kind::Int32, Some(Primitive::Integer(i))) => match i32::try_from(i) {
            Ok(i) => Cell::Int32(i),
            Err(_) => return out_of_range(),
        },
        (Kind::Int32, Some(Primitive::Decimal(d, _))) if d.fract() == 0.0 => {
            if d < f64::from(i32::MIN) || d > f64::from(i32::MAX) {
                return out_of_range();
            }
            Cell::Int32(d as i32)
        }
        (Kind::Int64, Some(Primitive::Integer(i))) => Cell::Integer(i),
        (Kind::Int64, Some(Primitive::Decimal(d, _))) if d.fract() == 0.0 && d.abs() < 9.0e15 => {
            Cell::Integer(d as i64)
        }
        (Kind::Float64, Some(Primitive::Integer(i))) => Cell::Float(i as f64),
        (Kind::Float64, Some(Primitive::Decimal(d, _))) => Cell::Float(d),
        (Kind::Utf8 | Kind::Timestamp | Kind::Date, _) => match lexical_text(item) {
            Some(text) => Cell::Text(text),
            None => return mismatch(),
        },
        _ => return mismatch(),
    })
}

impl Table for ViewTable {
    fn name(&self) -> &str {
        &self.view.name
    }

    fn resource_type(&self) -> &str {
        &self.view.resource
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn fresh(&self, batch_size: usize) -> Box<dyn Table> {
        Box::new(ViewTable::new(self.view.clone(), self.keep.clone(), batch_size))
    }

    fn keeping_stored_text(&self, stored: &arrow_schema::Schema) -> Option<Box<dyn Table>> {
        let is_text = |data_type: &DataType| match data_type {
            DataType::List(element) => element.data_type() == &DataType::Utf8,
            other => other == &DataType::Utf8,
        };
        let mut view = self.view.as_ref().clone();
        let mut changed = false;
        for column in &mut view.columns {
            let stored_as_text = stored
                .field_with_name(&column.name)
                .is_ok_and(|f| is_text(f.data_type()));
            if column.typed_time.is_some() && stored_as_text {
                column.typed_time = None;
                changed = true;
            }
        }
        changed.then(|| Box::new(ViewTable::new(Arc::new(view), self.keep.clone(), 0)) as Box<dyn Table>)
    }

    fn append(&mut self, resource: &Resource<'_>, diagnostics: &mut Diagnostics) -> Result<bool, Rejection> {
        let value = resource.tree(&self.keep)?;
        let id = value.get("id").and_then(Node::as_str).unwrap_or("(no id)");
        let failure = |column: Option<&str>, problem: String| {
            let column = column.map(|c| format!(" column {c}:")).unwrap_or_default();
            let message = format!(
                "view {}:{column} {}/{id}: {problem}",
                self.view.name, resource.resource_type
            );
            Rejection {
                stops_table: true,
                ..Rejection::from(message)
            }
        };
        let bundle = resource.bundle.map(|scope| scope as &dyn FullUrlLookup);
        let rows = self.view.rows(value, bundle).map_err(|e| failure(None, e.0))?;
        let width = self.view.columns.len();
        // Every row's cells, row after row: all are converted before any is appended, so a
        // resource the view cannot take leaves the builders as they were.
        let mut cells = Vec::with_capacity(rows.rows.len() * width);
        let mut has_pending = false;
        let mut text_bytes = 0;
        for row in &rows.rows {
            for ((column, span), &kind) in self.view.columns.iter().zip(row).zip(&self.kinds) {
                let values = rows.values(*span);
                let cell = if column.collection {
                    let list: Vec<Cell> = values
                        .iter()
                        .map(|item| convert(item, kind))
                        .map(|cell| {
                            Ok(finished(
                                cell?,
                                kind,
                                &column.name,
                                &mut Cells::new(resource, id, diagnostics),
                            ))
                        })
                        .collect::<Result<_, _>>()
                        .map_err(|problem| failure(Some(&column.name), problem))?;
                    // Staged conditional references are resolved in single-valued columns only.
                    let (staged, list): (Vec<Cell>, Vec<Cell>) = list.into_iter().partition(is_staged);
                    for cell in staged {
                        let Cell::Text(text) = cell else { continue };
                        let reference = text.trim_start_matches(PENDING_MARKER);
                        let origin = || resource.origin(Some(id));
                        diagnostics.warn(WarningKind::UnresolvedReference, &column.name, reference, origin);
                    }
                    Cell::List(list)
                } else {
                    match values {
                        [] => Cell::Null,
                        [item] => {
                            let cell = convert(item, kind)
                                .map_err(|problem| failure(Some(&column.name), problem))?;
                            finished(
                                cell,
                                kind,
                                &column.name,
                                &mut Cells::new(resource, id, diagnostics),
                            )
                        }
                        _ => {
                            let problem = format!(
                                "{} values where one is allowed (set \"collection\": true)",
                                values.len()
                            );
                            return Err(failure(Some(&column.name), problem));
                        }
                    }
                };
                has_pending |= is_staged(&cell);
                text_bytes += cell.text_bytes();
                cells.push(cell);
            }
            if text_bytes > MAX_BATCH_BYTES {
                // Resource and view together would make a batch Arrow cannot address: this
                // resource is lost (reported), the view goes on.
                let problem = format!(
                    "its rows hold more than {} of text: left out",
                    describe_bytes(MAX_BATCH_BYTES as u64)
                );
                return Err(Rejection {
                    stops_table: false,
                    ..failure(None, problem)
                });
            }
        }
        self.text_bytes += text_bytes;
        for row in cells.chunks(width.max(1)) {
            let columns = self.view.columns.iter().zip(&self.kinds);
            for ((builder, (column, &kind)), cell) in self.builders.iter_mut().zip(columns).zip(row) {
                append_cell(builder, kind, column.collection, cell);
            }
            self.rows += 1;
        }
        Ok(has_pending)
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn buffered_bytes(&self) -> usize {
        self.text_bytes
    }

    fn finish(&mut self) -> RecordBatch {
        let rows = self.rows;
        self.finish_rows(rows)
    }

    fn finish_rows(&mut self, rows: usize) -> RecordBatch {
        self.rows = 0;
        self.text_bytes = 0;
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|builder| {
                let array = builder.finish();
                array.slice(0, rows.min(array.len()))
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), columns).expect("view columns match the view schema")
    }
}
