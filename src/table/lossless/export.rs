//! The way back (docs/LOSSLESS.md, "The way back: export"): rows of a resource table as FHIR
//! JSON. It walks the same shape as the row builder: a null field is an absent key, a valid
//! struct an object (`{}` when all its fields are null), a list an array whose null items are
//! `null`, JSON-text members go in verbatim, decimals unquoted as written; companions are skipped;
//! then each `__unmapped` member is set back at its pointer.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context as _, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, ListArray, PrimitiveArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::NullBuffer;

use super::{BUNDLE, ENTRY_ROWS, KEY, RESOURCE_TYPE, UNMAPPED};
use crate::fhir::definitions::{definitions, ObjectShape, Shape, TreeOptions};
use crate::fhir::elements::{value_class, ValueClass};

/// Writes the rows of one resource type's table as NDJSON lines.
pub struct Exporter {
    shape: ObjectShape,
}

impl Exporter {
    /// An exporter for tables of `resource_type` written with `options`; `None` when R4 has no
    /// such type.
    pub fn new(resource_type: &str, options: TreeOptions) -> Option<Exporter> {
        let shape = definitions().resource_shape(resource_type, options)?;
        Some(Exporter { shape })
    }

    /// Appends each row of `batch` to `out` as one line of JSON; returns the rows written. Fails
    /// when the batch does not have the table's columns, or an `__unmapped` member has no place
    /// to go back to (which would lose it).
    pub fn write_batch(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<usize> {
        let rows = self.rows(batch)?;
        for row in 0..batch.num_rows() {
            rows.write(row, Vec::new(), out)?;
            out.push(b'\n');
        }
        Ok(batch.num_rows())
    }

    /// The rows of `batch`, to be written one at a time ([`BatchRows::write`]). Every column
    /// of the table must be there.
    pub fn rows<'b>(&'b self, batch: &'b RecordBatch) -> Result<BatchRows<'b>> {
        self.rows_of(batch, Columns::All)
    }

    /// [`Exporter::rows`] of a batch read with only the columns that hold something
    /// (`Store::read_reached`): a member without a column is absent from every row.
    pub fn rows_reached<'b>(&'b self, batch: &'b RecordBatch) -> Result<BatchRows<'b>> {
        self.rows_of(batch, Columns::Reached)
    }

    fn rows_of<'b>(&'b self, batch: &'b RecordBatch, read: Columns) -> Result<BatchRows<'b>> {
        let resource_types = batch
            .column_by_name(RESOURCE_TYPE)
            .and_then(|column| column.as_string_opt::<i32>())
            .ok_or_else(|| anyhow!("no {RESOURCE_TYPE} text column: not a resource table"))?;
        let columns: Vec<(&str, &ArrayRef)> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|field| field.name().as_str())
            .zip(batch.columns())
            .collect();
        let members = ObjectReader::new(&self.shape, &columns, read)?;
        let list = |name: &str| match batch.column_by_name(name) {
            Some(column) => column
                .as_list_opt::<i32>()
                .map(Some)
                .ok_or_else(|| anyhow!("{name} is not a list")),
            None => Ok(None),
        };
        let container = match batch.column_by_name(BUNDLE) {
            Some(column) => {
                let structs = column
                    .as_struct_opt()
                    .ok_or_else(|| anyhow!("{BUNDLE} is not a struct"))?;
                let keys = structs.column(0).as_string_opt::<i32>();
                let entries = structs.column(1).as_primitive_opt::<Int32Type>();
                let (Some(keys), Some(entries)) = (keys, entries) else {
                    bail!("{BUNDLE} is not (key, entry)");
                };
                Some((structs.nulls(), keys, entries))
            }
            None => None,
        };
        let key = match batch.column_by_name(KEY) {
            Some(column) => Some(
                column
                    .as_string_opt::<i32>()
                    .ok_or_else(|| anyhow!("{KEY} is not text"))?,
            ),
            None => None,
        };
        Ok(BatchRows {
            resource_types,
            members,
            unmapped: list(UNMAPPED)?,
            container,
            key,
            entry_rows: list(ENTRY_ROWS)?,
        })
    }
}

/// The rows of one batch of a resource table, readable one at a time.
pub struct BatchRows<'b> {
    resource_types: &'b StringArray,
    members: ObjectReader<'b>,
    unmapped: Option<&'b ListArray>,
    container: Option<(
        Option<&'b NullBuffer>,
        &'b StringArray,
        &'b PrimitiveArray<Int32Type>,
    )>,
    key: Option<&'b StringArray>,
    entry_rows: Option<&'b ListArray>,
}

impl BatchRows<'_> {
    /// The Bundle entry row `row` came from (`__bundle`: the Bundle's key, the entry's index).
    pub fn container(&self, row: usize) -> Option<(&str, u32)> {
        let (nulls, keys, entries) = self.container?;
        if nulls.is_some_and(|nulls| nulls.is_null(row)) {
            return None;
        }
        Some((keys.value(row), entries.value(row) as u32))
    }

    /// For a Bundle's row: its key and the entries whose resource is a row of its own type.
    pub fn envelope(&self, row: usize) -> Option<(&str, Vec<u32>)> {
        let key = self.key.filter(|keys| keys.is_valid(row))?;
        let entries = match self.entry_rows.filter(|lists| lists.is_valid(row)) {
            Some(lists) => {
                let list = lists.value(row);
                let list = list.as_primitive_opt::<Int32Type>()?;
                list.values().iter().map(|&entry| entry as u32).collect()
            }
            None => Vec::new(),
        };
        Some((key.value(row), entries))
    }

    /// Writes row `row` as one JSON object (no line end), with `inserted` members added: each
    /// (pointer of an object in the row, key, JSON text), as a Bundle's envelope gets its
    /// entries' resources back. Fails when an unmapped or inserted member has no object to go
    /// to.
    pub fn write(
        &self,
        row: usize,
        inserted: Vec<(String, String, String)>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let mut pending = Pending::of_row(self.unmapped, row)?;
        for (parent, key, text) in inserted {
            pending.by_parent.entry(parent).or_default().push((key, text));
        }
        let mut writer = Writer {
            out,
            pending: &mut pending,
            pointer: String::new(),
        };
        writer.out.extend_from_slice(b"{\"resourceType\":");
        write_string(writer.out, self.resource_types.value(row));
        self.members.write_members(row, &mut writer, true)?;
        writer.out.push(b'}');
        if let Some((pointer, _)) = pending.left_over() {
            bail!("row {row}: the member at {pointer} has no object to go back to");
        }
        Ok(())
    }
}

/// The `__unmapped` members of one row, by the pointer of the object they belong in.
#[derive(Default)]
struct Pending {
    /// Parent pointer -> (key, JSON text), in document order.
    by_parent: HashMap<String, Vec<(String, String)>>,
}

impl Pending {
    fn of_row(unmapped: Option<&ListArray>, row: usize) -> Result<Pending> {
        let mut pending = Pending::default();
        let Some(list) = unmapped.filter(|list| list.is_valid(row)) else {
            return Ok(pending);
        };
        let pairs = list.value(row);
        let pairs = pairs
            .as_struct_opt()
            .ok_or_else(|| anyhow!("{UNMAPPED} items are not structs"))?;
        let text_column = |index: usize| {
            pairs
                .column(index)
                .as_string_opt::<i32>()
                .ok_or_else(|| anyhow!("{UNMAPPED} has no text columns"))
        };
        let (paths, texts) = (text_column(0)?, text_column(1)?);
        for item in 0..pairs.len() {
            let path = paths.value(item);
            let (parent, key) = path
                .rsplit_once('/')
                .ok_or_else(|| anyhow!("row {row}: {UNMAPPED} path {path:?} is not a JSON Pointer"))?;
            let key = key.replace("~1", "/").replace("~0", "~");
            pending
                .by_parent
                .entry(parent.to_owned())
                .or_default()
                .push((key, texts.value(item).to_owned()));
        }
        Ok(pending)
    }

    fn is_empty(&self) -> bool {
        self.by_parent.is_empty()
    }

    fn take(&mut self, pointer: &str) -> Option<Vec<(String, String)>> {
        self.by_parent.remove(pointer)
    }

    fn left_over(&self) -> Option<(&String, &Vec<(String, String)>)> {
        self.by_parent.iter().next()
    }
}

/// The output of one row and where in it the writer is.
struct Writer<'w> {
    out: &'w mut Vec<u8>,
    pending: &'w mut Pending,
    /// The JSON Pointer of the value being written, kept only while the row has unmapped
    /// members left to place.
    pointer: String,
}

impl Writer<'_> {
    fn tracking(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes `"key":` after a comma unless it is the object's first member.
    fn key(&mut self, key: &str, first: &mut bool) {
        if !std::mem::take(first) {
            self.out.push(b',');
        }
        write_string(self.out, key);
        self.out.push(b':');
    }

    /// Runs `write` with the pointer extended by one step.
    fn below<T>(&mut self, step: &str, write: impl FnOnce(&mut Self) -> T) -> T {
        if !self.tracking() {
            return write(self);
        }
        let length = self.pointer.len();
        super::push_pointer_token(&mut self.pointer, step);
        let result = write(self);
        self.pointer.truncate(length);
        result
    }

    /// Writes the unmapped members that belong in the object at the current pointer.
    fn unmapped_members(&mut self, first: &mut bool) {
        if !self.tracking() {
            return;
        }
        let pointer = self.pointer.clone();
        for (key, text) in self.pending.take(&pointer).unwrap_or_default() {
            self.key(&key, first);
            self.out.extend_from_slice(text.as_bytes());
        }
    }
}

/// Which columns a batch was read with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// Every column of the table: one missing is an error.
    All,
    /// Only those holding something: one missing is null in every row.
    Reached,
}

/// The columns of an object's members, matched to the shape by name.
struct ObjectReader<'a> {
    members: Vec<MemberReader<'a>>,
}

struct MemberReader<'a> {
    key: &'a str,
    /// The list around the values, for a repeating member.
    list: Option<&'a ListArray>,
    values: ValueReader<'a>,
}

enum ValueReader<'a> {
    /// JSON text, written as it is (also decimals: a number's text).
    Raw(&'a StringArray),
    Text(&'a StringArray),
    Boolean(&'a BooleanArray),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    Object(&'a StructArray, ObjectReader<'a>),
}

impl<'a> ObjectReader<'a> {
    fn new(shape: &'a ObjectShape, columns: &[(&'a str, &'a ArrayRef)], read: Columns) -> Result<Self> {
        let mut members = Vec::with_capacity(shape.members.len());
        for member in &shape.members {
            let column = columns
                .iter()
                .find(|(name, _)| *name == member.key)
                .map(|(_, column)| *column);
            let column = match (column, read) {
                (Some(column), _) => column,
                (None, Columns::Reached) => continue,
                (None, Columns::All) => bail!("no column {}", member.key),
            };
            let json = matches!(member.shape, Shape::Json);
            let (list, values) = if member.repeats && !json {
                let list = column
                    .as_list_opt::<i32>()
                    .ok_or_else(|| anyhow!("{} is not a list", member.key))?;
                (Some(list), list.values())
            } else {
                (None, column)
            };
            let values = ValueReader::new(&member.shape, values, read)
                .with_context(|| format!("column {}", member.key))?;
            members.push(MemberReader {
                key: &member.key,
                list,
                values,
            });
        }
        Ok(ObjectReader { members })
    }

    /// Writes the members of row `row` (without braces when `bare`, for the resource itself,
    /// whose `resourceType` is already written).
    fn write_members(&self, row: usize, writer: &mut Writer<'_>, bare: bool) -> Result<()> {
        let mut first = !bare;
        if !bare {
            writer.out.push(b'{');
        }
        for member in &self.members {
            writer.below(member.key, |writer| member.write(row, writer, &mut first))?;
        }
        writer.unmapped_members(&mut first);
        if !bare {
            writer.out.push(b'}');
        }
        Ok(())
    }
}

impl MemberReader<'_> {
    /// Writes `"key":value` when the member is present in `row`.
    fn write(&self, row: usize, writer: &mut Writer<'_>, first: &mut bool) -> Result<()> {
        let Some(list) = self.list else {
            if self.values.is_valid(row) {
                writer.key(self.key, first);
                self.values.write(row, writer)?;
            }
            return Ok(());
        };
        if !list.is_valid(row) {
            return Ok(());
        }
        writer.key(self.key, first);
        writer.out.push(b'[');
        let offsets = list.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        for (index, item) in (start..end).enumerate() {
            if index > 0 {
                writer.out.push(b',');
            }
            if self.values.is_valid(item) {
                writer.below(&index.to_string(), |writer| self.values.write(item, writer))?;
            } else {
                writer.out.extend_from_slice(b"null");
            }
        }
        writer.out.push(b']');
        Ok(())
    }
}

impl<'a> ValueReader<'a> {
    fn new(shape: &'a Shape, column: &'a ArrayRef, read: Columns) -> Result<Self> {
        let text = || {
            column
                .as_string_opt::<i32>()
                .ok_or_else(|| anyhow!("not a text column"))
        };
        Ok(match shape {
            Shape::Json => ValueReader::Raw(text()?),
            Shape::Primitive(type_code) => match value_class(type_code) {
                ValueClass::Boolean => ValueReader::Boolean(
                    column
                        .as_boolean_opt()
                        .ok_or_else(|| anyhow!("not a boolean column"))?,
                ),
                ValueClass::Integer32 => ValueReader::Int32(
                    column
                        .as_primitive_opt::<Int32Type>()
                        .ok_or_else(|| anyhow!("not an Int32 column"))?,
                ),
                ValueClass::Integer64 => ValueReader::Int64(
                    column
                        .as_primitive_opt::<Int64Type>()
                        .ok_or_else(|| anyhow!("not an Int64 column"))?,
                ),
                ValueClass::Decimal => ValueReader::Raw(text()?),
                ValueClass::Text => ValueReader::Text(text()?),
            },
            Shape::Object(object) => {
                let structs = column
                    .as_struct_opt()
                    .ok_or_else(|| anyhow!("not a struct column"))?;
                let columns: Vec<(&str, &ArrayRef)> = structs
                    .fields()
                    .iter()
                    .map(|field| field.name().as_str())
                    .zip(structs.columns())
                    .collect();
                ValueReader::Object(structs, ObjectReader::new(object, &columns, read)?)
            }
        })
    }

    fn is_valid(&self, index: usize) -> bool {
        match self {
            ValueReader::Raw(array) | ValueReader::Text(array) => array.is_valid(index),
            ValueReader::Boolean(array) => array.is_valid(index),
            ValueReader::Int32(array) => array.is_valid(index),
            ValueReader::Int64(array) => array.is_valid(index),
            ValueReader::Object(array, _) => array.is_valid(index),
        }
    }

    /// Writes the (valid) value at `index`.
    fn write(&self, index: usize, writer: &mut Writer<'_>) -> Result<()> {
        match self {
            ValueReader::Raw(array) => writer.out.extend_from_slice(array.value(index).as_bytes()),
            ValueReader::Text(array) => write_string(writer.out, array.value(index)),
            ValueReader::Boolean(array) => {
                let text: &[u8] = if array.value(index) { b"true" } else { b"false" };
                writer.out.extend_from_slice(text);
            }
            ValueReader::Int32(array) => writer
                .out
                .extend_from_slice(array.value(index).to_string().as_bytes()),
            ValueReader::Int64(array) => writer
                .out
                .extend_from_slice(array.value(index).to_string().as_bytes()),
            ValueReader::Object(_, object) => object.write_members(index, writer, false)?,
        }
        Ok(())
    }
}

/// A JSON string literal, escaped as `serde_json` escapes.
fn write_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}
