//! A table's Arrow schema as the `ARROW:schema` entry of its Parquet footer: an Arrow IPC
//! `Schema` message (a flatbuffer), behind the IPC continuation marker and its length, in
//! base64, as the parquet crate's `add_encoded_arrow_schema_to_metadata` writes it and its
//! readers (arrow-rs, pyarrow) read it back. The crate builds the flatbuffer with arrow-ipc,
//! field by field through the flatbuffers builder: for a resource table's thousands of fields
//! that was 212 M instructions over the 16 tables of the Synthea set, once per run whatever
//! its size (a fifth of `--resources all` on the 3 MB fixture, 1.5% on 500 MB of Bundles).
//!
//! Here the buffer is written front to back: each field's table, then what it points to
//! (name, children); the objects many fields point to alike (the empty children list of a
//! leaf, the type tables `Utf8`, `Bool`, `Int(32, signed)`, ...) are written once, after the
//! fields, where every offset to them points forward, as flatbuffers' offsets must; and each
//! table layout (vtable) once, last, shared by every table laid out alike. Readers get the same
//! schema (a test decodes it with arrow-ipc for every R4 resource table); the bytes are not
//! arrow-ipc's. A type this writer does not know leaves the schema to the crate (`None`).

use arrow_schema::{DataType, Field, FieldRef, Metadata, Schema, TimeUnit};
use base64::Engine;

/// The `ARROW:schema` value for `schema`, `None` when a type is not one the tables use.
pub(super) fn encoded_arrow_schema(schema: &Schema) -> Option<String> {
    let message = ipc_schema_message(schema)?;
    let mut framed = Vec::with_capacity(message.len() + 8);
    // The IPC continuation marker and the message's length, as the crate frames it.
    framed.extend_from_slice(&[0xff; 4]);
    framed.extend_from_slice(&u32::try_from(message.len()).ok()?.to_le_bytes());
    framed.extend_from_slice(&message);
    Some(base64::engine::general_purpose::STANDARD.encode(framed))
}

/// The flatbuffer of an IPC `Message` whose header is `schema`.
fn ipc_schema_message(schema: &Schema) -> Option<Vec<u8>> {
    // About 40 bytes a field (its table, name, children's list), sized once.
    let mut out = Writer::with_capacity(64 + 40 * field_count(schema.fields()));
    // The root: an offset to the message's table.
    out.bytes.extend_from_slice(&[0; 4]);
    // Message { version: V5, header_type: Schema, header } (bodyLength 0, the default).
    let message = out.table(11, &[(2, 4), (0, 8), (1, 10)]);
    out.put_u16(message + 8, METADATA_V5);
    out.bytes[message + 10] = HEADER_SCHEMA;
    out.point(0, message);
    // Schema { fields, custom_metadata } (endianness Little, the default).
    let has_metadata = !schema.metadata().is_empty();
    let schema_table = match has_metadata {
        true => out.table(12, &[(1, 4), (2, 8)]),
        false => out.table(8, &[(1, 4)]),
    };
    out.point(message + 4, schema_table);
    out.fields(schema_table + 4, schema.fields())?;
    if has_metadata {
        out.key_values(schema_table + 8, schema.metadata());
    }
    out.finish()
}

/// How many fields `fields` are, those inside them included.
fn field_count(fields: &[FieldRef]) -> usize {
    fields
        .iter()
        .map(|field| {
            1 + match field.data_type() {
                DataType::Struct(members) => field_count(members),
                DataType::List(item) => field_count(std::slice::from_ref(item)),
                _ => 0,
            }
        })
        .sum()
}

/// `MetadataVersion.V5` and `MessageHeader.Schema` (Arrow's Message.fbs).
const METADATA_V5: u16 = 4;
const HEADER_SCHEMA: u8 = 1;

/// The `Type` union's members the tables use (Arrow's Schema.fbs).
const TYPE_INT: u8 = 2;
const TYPE_UTF8: u8 = 5;
const TYPE_BOOL: u8 = 6;
const TYPE_DECIMAL: u8 = 7;
const TYPE_TIMESTAMP: u8 = 10;
const TYPE_LIST: u8 = 12;
const TYPE_STRUCT: u8 = 13;

/// An object many tables may point to alike, written once at the end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shared<'s> {
    /// A field's children when it has none: an empty list (readers expect a list).
    NoChildren,
    /// A type table without fields (`Utf8`, `Bool`, `List`, `Struct_`).
    EmptyTable,
    Int {
        bit_width: i32,
        signed: bool,
    },
    Decimal {
        precision: i32,
        scale: i32,
        bit_width: i32,
    },
    Timestamp {
        unit: u16,
        zone: Option<&'s str>,
    },
}

/// The most fields a table of this writer has (`Field`'s seven slots).
const MOST_SLOTS: usize = 7;

/// A table layout (flatbuffers' vtable): how many slots it lists, the table's size in bytes,
/// each slot's offset in the table (0: absent).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Layout {
    slots: usize,
    table_size: u16,
    places: [u16; MOST_SLOTS],
}

/// One message's flatbuffer in the making, borrowing names and zones from the schema (`'s`).
#[derive(Default)]
struct Writer<'s> {
    bytes: Vec<u8>,
    /// The distinct layouts of the tables written (a handful: tables are laid out a few ways).
    layouts: Vec<Layout>,
    /// Every table written and its layout's index in `layouts`: its vtable offset is set once
    /// the layouts are written, at the end.
    laid_out: Vec<(usize, usize)>,
    /// The distinct shared objects met, in order (written at the end).
    shared: Vec<Shared<'s>>,
    /// Offsets still to point at a shared object: where each offset is, and the object's index
    /// in `shared`.
    to_shared: Vec<(usize, usize)>,
}

impl<'s> Writer<'s> {
    fn with_capacity(bytes: usize) -> Self {
        Writer {
            bytes: Vec::with_capacity(bytes),
            ..Writer::default()
        }
    }

    fn align(&mut self, to: usize) {
        let padded = self.bytes.len().next_multiple_of(to);
        self.bytes.resize(padded, 0);
    }

    fn put_u16(&mut self, at: usize, value: u16) {
        self.bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn put_u32(&mut self, at: usize, value: u32) {
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Points the offset at `at` to the object at `target`, written after it.
    fn point(&mut self, at: usize, target: usize) {
        debug_assert!(target > at, "flatbuffers' offsets point forward");
        self.put_u32(at, (target - at) as u32);
    }

    /// A table of `size` bytes (its vtable offset included, the rest zeroed) whose present
    /// fields `(slot, offset)` sit at those offsets from its start, each aligned to its own
    /// size by the caller's choice of offsets (a table starts four-aligned). Its layout (vtable)
    /// is written at the end, once for all the tables laid out alike ([`Writer::finish`]).
    /// Returns where the table starts.
    fn table(&mut self, size: usize, places: &[(usize, usize)]) -> usize {
        let mut layout = Layout {
            slots: 0,
            table_size: size as u16,
            places: [0; MOST_SLOTS],
        };
        for &(slot, offset) in places {
            layout.places[slot] = offset as u16;
            layout.slots = layout.slots.max(slot + 1);
        }
        let index = match self.layouts.iter().position(|seen| *seen == layout) {
            Some(index) => index,
            None => {
                self.layouts.push(layout);
                self.layouts.len() - 1
            }
        };
        self.align(4);
        let table = self.bytes.len();
        self.bytes.resize(table + size, 0);
        self.laid_out.push((table, index));
        table
    }

    /// A string, pointed to from the offset at `at`.
    fn string(&mut self, at: usize, text: &str) {
        self.align(4);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(text.as_bytes());
        self.bytes.push(0);
        self.point(at, start);
    }

    /// A list of `len` offsets, pointed to from the offset at `at`; returns where its first
    /// element is.
    fn offset_list(&mut self, at: usize, len: usize) -> usize {
        self.align(4);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&(len as u32).to_le_bytes());
        self.bytes.resize(start + 4 + 4 * len, 0);
        self.point(at, start);
        start + 4
    }

    /// Points the offset at `at` to `shared`, once it is written ([`Writer::finish`]).
    fn point_to_shared(&mut self, at: usize, shared: Shared<'s>) {
        let index = match self.shared.iter().position(|seen| *seen == shared) {
            Some(index) => index,
            None => {
                self.shared.push(shared);
                self.shared.len() - 1
            }
        };
        self.to_shared.push((at, index));
    }

    /// `Field` tables for `fields`, in a list pointed to from the offset at `at`.
    fn fields(&mut self, at: usize, fields: &'s [FieldRef]) -> Option<()> {
        let first = self.offset_list(at, fields.len());
        for (index, field) in fields.iter().enumerate() {
            let table = self.field(field)?;
            self.point(first + 4 * index, table);
        }
        Some(())
    }

    /// A `Field` table, what it points to written after it; returns where it starts.
    fn field(&mut self, field: &'s Field) -> Option<usize> {
        let (type_code, shared, children): (u8, Shared<'s>, &'s [FieldRef]) = match field.data_type() {
            DataType::Utf8 => (TYPE_UTF8, Shared::EmptyTable, &[]),
            DataType::Boolean => (TYPE_BOOL, Shared::EmptyTable, &[]),
            DataType::Int32 => (
                TYPE_INT,
                Shared::Int {
                    bit_width: 32,
                    signed: true,
                },
                &[],
            ),
            DataType::Int64 => (
                TYPE_INT,
                Shared::Int {
                    bit_width: 64,
                    signed: true,
                },
                &[],
            ),
            DataType::Decimal128(precision, scale) => {
                let decimal = Shared::Decimal {
                    precision: i32::from(*precision),
                    scale: i32::from(*scale),
                    bit_width: 128,
                };
                (TYPE_DECIMAL, decimal, &[])
            }
            DataType::Timestamp(unit, zone) => {
                let unit = match unit {
                    TimeUnit::Second => 0,
                    TimeUnit::Millisecond => 1,
                    TimeUnit::Microsecond => 2,
                    TimeUnit::Nanosecond => 3,
                };
                // An empty zone is written as none, as arrow-ipc writes it.
                let zone = zone.as_deref().filter(|zone| !zone.is_empty());
                (TYPE_TIMESTAMP, Shared::Timestamp { unit, zone }, &[])
            }
            DataType::List(item) => (TYPE_LIST, Shared::EmptyTable, std::slice::from_ref(item)),
            DataType::Struct(members) => (TYPE_STRUCT, Shared::EmptyTable, &members[..]),
            _ => return None,
        };
        // Field { name, nullable, type_type, type, children, custom_metadata } (no dictionary):
        // four offsets (the last for metadata alone), then the type's code and `nullable`, a
        // byte each (`nullable` false is the default: left out).
        let nullable = field.is_nullable();
        let metadata = !field.metadata().is_empty();
        let offsets = if metadata { 20 } else { 16 };
        let mut places = [(0, 4), (3, 8), (5, 12), (2, offsets), (0, 0), (0, 0)];
        let mut present = 4;
        for (wanted, place) in [(metadata, (6, 16)), (nullable, (1, offsets + 1))] {
            if wanted {
                places[present] = place;
                present += 1;
            }
        }
        let table = self.table(offsets + 1 + usize::from(nullable), &places[..present]);
        self.bytes[table + offsets] = type_code;
        if nullable {
            self.bytes[table + offsets + 1] = 1;
        }
        self.string(table + 4, field.name());
        self.point_to_shared(table + 8, shared);
        if children.is_empty() {
            self.point_to_shared(table + 12, Shared::NoChildren);
        } else {
            self.fields(table + 12, children)?;
        }
        if metadata {
            self.key_values(table + 16, field.metadata());
        }
        Some(table)
    }

    /// `KeyValue` tables for `entries`, in a list pointed to from the offset at `at` (in the
    /// entries' order, by key).
    fn key_values(&mut self, at: usize, entries: &Metadata) {
        let first = self.offset_list(at, entries.len());
        for (index, (key, value)) in entries.iter().enumerate() {
            let table = self.table(12, &[(0, 4), (1, 8)]);
            self.point(first + 4 * index, table);
            self.string(table + 4, key);
            self.string(table + 8, value);
        }
    }

    /// Writes the shared objects and points every offset waiting for one at it, then the
    /// layouts (vtables), every table's vtable offset set; the buffer, padded to eight bytes
    /// as IPC messages are. Everything a table or list points to is after it, layouts last:
    /// some readers (polars') find a table's layout only after the place they read it from.
    fn finish(mut self) -> Option<Vec<u8>> {
        let shared = std::mem::take(&mut self.shared);
        let written: Vec<usize> = shared.iter().map(|object| self.shared(object)).collect();
        for (at, index) in std::mem::take(&mut self.to_shared) {
            self.point(at, written[index]);
        }
        let mut layout_at = Vec::with_capacity(self.layouts.len());
        for layout in std::mem::take(&mut self.layouts) {
            self.align(2);
            layout_at.push(self.bytes.len());
            self.bytes
                .extend_from_slice(&((4 + 2 * layout.slots) as u16).to_le_bytes());
            self.bytes.extend_from_slice(&layout.table_size.to_le_bytes());
            for place in &layout.places[..layout.slots] {
                self.bytes.extend_from_slice(&place.to_le_bytes());
            }
        }
        for (table, index) in std::mem::take(&mut self.laid_out) {
            // The vtable is at the table's start minus this (flatbuffers' `soffset`): here
            // after the table, so negative.
            let back = i32::try_from(table as i64 - layout_at[index] as i64).ok()?;
            self.bytes[table..table + 4].copy_from_slice(&back.to_le_bytes());
        }
        self.align(8);
        Some(self.bytes)
    }

    /// Writes a shared object; returns where it starts.
    fn shared(&mut self, shared: &Shared<'s>) -> usize {
        match *shared {
            Shared::NoChildren => {
                self.align(4);
                let start = self.bytes.len();
                self.bytes.extend_from_slice(&0u32.to_le_bytes());
                start
            }
            Shared::EmptyTable => self.table(4, &[]),
            Shared::Int { bit_width, signed } => {
                // Int { bitWidth, is_signed }
                let table = self.table(9, &[(0, 4), (1, 8)]);
                self.put_u32(table + 4, bit_width as u32);
                self.bytes[table + 8] = u8::from(signed);
                table
            }
            Shared::Decimal {
                precision,
                scale,
                bit_width,
            } => {
                // Decimal { precision, scale, bitWidth }
                let table = self.table(16, &[(0, 4), (1, 8), (2, 12)]);
                self.put_u32(table + 4, precision as u32);
                self.put_u32(table + 8, scale as u32);
                self.put_u32(table + 12, bit_width as u32);
                table
            }
            Shared::Timestamp { unit, zone } => {
                // Timestamp { unit, timezone }
                match zone {
                    Some(zone) => {
                        let table = self.table(10, &[(1, 4), (0, 8)]);
                        self.put_u16(table + 8, unit);
                        self.string(table + 4, zone);
                        table
                    }
                    None => {
                        let table = self.table(6, &[(0, 4)]);
                        self.put_u16(table + 4, unit);
                        table
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::definitions::{definitions, TreeOptions};
    use crate::table::lossless::resource_schema;
    use arrow_schema::Fields;
    use base64::Engine;
    use std::sync::Arc;

    /// What arrow-rs (the parquet crate's reader) reads back from `encoded`.
    fn read_back(encoded: &str) -> Schema {
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        assert_eq!(bytes[..4], [0xff; 4], "the continuation marker");
        let length = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(length, bytes.len() - 8, "the message's length");
        assert_eq!(length % 8, 0, "padded to eight bytes");
        layouts_after_their_tables(&bytes[8..]);
        // The verifying reader: alignment, bounds, offsets, strings and tables are checked.
        arrow_ipc::convert::try_schema_from_flatbuffer_bytes(&bytes[8..]).unwrap()
    }

    /// Every table of the message (found by following its offsets) has its layout after it:
    /// polars' reader finds a table's layout only after the place it reads the table from.
    fn layouts_after_their_tables(message: &[u8]) {
        let u32_at = |at: usize| u32::from_le_bytes(message[at..at + 4].try_into().unwrap()) as usize;
        let u16_at = |at: usize| u16::from_le_bytes(message[at..at + 2].try_into().unwrap()) as usize;
        // Where a table's layout is, checked to be after it.
        let layout_of = |table: usize| {
            let back = i32::from_le_bytes(message[table..table + 4].try_into().unwrap());
            assert!(back < 0, "the layout of the table at {table} is before it");
            (table as i64 - i64::from(back)) as usize
        };
        // A table's field `slot` (an offset), followed: where it points, if present.
        let follow = |table: usize, slot: usize| {
            let layout = layout_of(table);
            let place = match 4 + 2 * slot < u16_at(layout) {
                true => u16_at(layout + 4 + 2 * slot),
                false => 0,
            };
            (place != 0).then(|| table + place + u32_at(table + place))
        };
        let list =
            |at: usize| (0..u32_at(at)).map(move |index| at + 4 + 4 * index + u32_at(at + 4 + 4 * index));
        // Message.header (slot 2) -> Schema; Schema.fields (1) -> Fields; Field.type (3) -> a
        // type table (its timezone string aside, no offsets to follow), Field.children (5).
        let schema = follow(u32_at(0), 2).unwrap();
        let mut fields: Vec<usize> = follow(schema, 1).map(|at| list(at).collect()).unwrap();
        while let Some(field) = fields.pop() {
            layout_of(follow(field, 3).unwrap());
            fields.extend(follow(field, 5).into_iter().flat_map(list));
        }
    }

    /// Every R4 resource table's schema (at two typed depths) reads back as it is, field for
    /// field (names, types, nullability, metadata, list items' names), and takes fewer bytes
    /// than the crate's encoding.
    #[test]
    fn every_resource_tables_schema_reads_back_as_it_is() {
        for depth in [1, TreeOptions::default().typed_depth] {
            for resource_type in definitions().resource_types() {
                let options = TreeOptions { typed_depth: depth };
                let schema = resource_schema(resource_type, options).unwrap();
                let encoded = encoded_arrow_schema(&schema).expect("the tables' types");
                assert_eq!(read_back(&encoded), schema, "{resource_type} at depth {depth}");
                let crates = parquet::arrow::encode_arrow_schema(&schema);
                assert!(encoded.len() < crates.len(), "{resource_type}: not smaller");
            }
        }
    }

    /// Each type the tables use, with and without nulls, metadata on a field and on the
    /// schema, empty structs, lists of lists, and the same types in many places.
    #[test]
    fn every_type_and_setting_reads_back() {
        let tagged = |field: Field, key: &str| field.with_metadata(Metadata::from([(key, "v"), ("a", "é")]));
        let members = Fields::from(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("flag", DataType::Boolean, false),
            tagged(Field::new("count", DataType::Int32, true), "lookup"),
            Field::new("big", DataType::Int64, false),
            Field::new("exact", DataType::Decimal128(32, 6), true),
            Field::new("other", DataType::Decimal128(38, 0), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("local", DataType::Timestamp(TimeUnit::Millisecond, None), false),
            Field::new("empty", DataType::Struct(Fields::empty()), true),
        ]);
        let list = |item: DataType, nullable| DataType::List(Arc::new(Field::new("element", item, nullable)));
        let schema = Schema::new(vec![
            Field::new("resourceType", DataType::Utf8, false),
            Field::new("s", DataType::Struct(members.clone()), true),
            Field::new("l", list(DataType::Struct(members.clone()), true), true),
            Field::new("ll", list(list(DataType::Int32, false), true), false),
            Field::new("again", DataType::Struct(members), false),
        ]);
        for schema in [
            schema.clone(),
            schema.clone().with_metadata(Metadata::from([("k", "v")])),
        ] {
            assert_eq!(read_back(&encoded_arrow_schema(&schema).unwrap()), schema);
        }
        let no_fields = Schema::empty();
        assert_eq!(read_back(&encoded_arrow_schema(&no_fields).unwrap()), no_fields);
    }

    /// A type the writer does not know leaves the schema to the crate.
    #[test]
    fn another_type_is_left_to_the_crate() {
        let schema = Schema::new(vec![Field::new("x", DataType::Float64, true)]);
        assert_eq!(encoded_arrow_schema(&schema), None);
        let nested = Schema::new(vec![Field::new(
            "s",
            DataType::Struct(vec![Field::new("d", DataType::Date32, true)].into()),
            true,
        )]);
        assert_eq!(encoded_arrow_schema(&nested), None);
    }
}
