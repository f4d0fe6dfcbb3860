//! Column kinds (the Arrow type each contract type maps to) and the macro that turns one column
//! list into a typed row struct, an Arrow schema and the builders between them, so a table's
//! columns are declared once.

use std::borrow::Cow;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Date32Builder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_schema::{DataType, TimeUnit};

/// A contract column type: its Arrow type, the Rust value a row holds, and its Arrow builder.
pub trait Column {
    type Value<'a>;
    type Builder: ArrayBuilder;
    fn data_type() -> DataType;
    fn builder(capacity: usize) -> Self::Builder;
    fn append(builder: &mut Self::Builder, value: Option<Self::Value<'_>>);
    /// Bytes of variable-length data buffered (string bytes), for cutting batches by size.
    fn buffered_bytes(_builder: &Self::Builder) -> usize {
        0
    }
}

/// `Utf8`.
pub struct Utf8;
/// `Date32`: days since 1970-01-01.
pub struct Date32;
/// `Timestamp(Microsecond, "UTC")`.
pub struct TimestampUtc;
/// `Boolean`.
pub struct Boolean;
/// `Float64`.
pub struct Float64;

/// Typical bytes per string cell, to size string builders.
const STRING_BYTES_HINT: usize = 24;

impl Column for Utf8 {
    type Value<'a> = Cow<'a, str>;
    type Builder = StringBuilder;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(capacity: usize) -> StringBuilder {
        StringBuilder::with_capacity(capacity, capacity * STRING_BYTES_HINT)
    }
    fn append(builder: &mut StringBuilder, value: Option<Cow<'_, str>>) {
        builder.append_option(value);
    }
    fn buffered_bytes(builder: &StringBuilder) -> usize {
        builder.values_slice().len()
    }
}

impl Column for Date32 {
    type Value<'a> = i32;
    type Builder = Date32Builder;
    fn data_type() -> DataType {
        DataType::Date32
    }
    fn builder(capacity: usize) -> Date32Builder {
        Date32Builder::with_capacity(capacity)
    }
    fn append(builder: &mut Date32Builder, value: Option<i32>) {
        builder.append_option(value);
    }
}

impl Column for TimestampUtc {
    type Value<'a> = i64;
    type Builder = TimestampMicrosecondBuilder;
    fn data_type() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }
    fn builder(capacity: usize) -> TimestampMicrosecondBuilder {
        TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC")
    }
    fn append(builder: &mut TimestampMicrosecondBuilder, value: Option<i64>) {
        builder.append_option(value);
    }
}

impl Column for Boolean {
    type Value<'a> = bool;
    type Builder = BooleanBuilder;
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn builder(capacity: usize) -> BooleanBuilder {
        BooleanBuilder::with_capacity(capacity)
    }
    fn append(builder: &mut BooleanBuilder, value: Option<bool>) {
        builder.append_option(value);
    }
}

impl Column for Float64 {
    type Value<'a> = f64;
    type Builder = Float64Builder;
    fn data_type() -> DataType {
        DataType::Float64
    }
    fn builder(capacity: usize) -> Float64Builder {
        Float64Builder::with_capacity(capacity)
    }
    fn append(builder: &mut Float64Builder, value: Option<f64>) {
        builder.append_option(value);
    }
}

/// Declares a table's columns once: `name: Kind` (nullable) or `name: Kind = required`
/// (not null; the table must always set it). Generates the row struct `$row` and `$columns`, which
/// appends rows to Arrow builders and finishes them into a `RecordBatch`.
macro_rules! define_columns {
    ($(#[$meta:meta])* $row:ident => $columns:ident {
        $( $name:ident : $kind:ident $(= $required:ident)? ),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Default)]
        pub struct $row<'a> {
            $( pub $name: Option<<$crate::table::columns::$kind as $crate::table::columns::Column>::Value<'a>>, )*
        }

        /// Arrow builders for the rows of one batch.
        pub struct $columns {
            rows: usize,
            schema: arrow_schema::SchemaRef,
            $( $name: <$crate::table::columns::$kind as $crate::table::columns::Column>::Builder, )*
        }

        impl $columns {
            /// The table's Arrow schema, fixed by the contract.
            pub fn schema() -> arrow_schema::SchemaRef {
                std::sync::Arc::new(arrow_schema::Schema::new(vec![
                    $( arrow_schema::Field::new(
                        stringify!($name),
                        <$crate::table::columns::$kind as $crate::table::columns::Column>::data_type(),
                        define_columns!(@nullable $($required)?),
                    ), )*
                ]))
            }

            pub fn with_capacity(capacity: usize) -> Self {
                $columns {
                    rows: 0,
                    schema: Self::schema(),
                    $( $name: <$crate::table::columns::$kind as $crate::table::columns::Column>::builder(capacity), )*
                }
            }

            pub fn append(&mut self, row: $row<'_>) {
                $( <$crate::table::columns::$kind as $crate::table::columns::Column>::append(&mut self.$name, row.$name); )*
                self.rows += 1;
            }

            pub fn len(&self) -> usize {
                self.rows
            }

            pub fn is_empty(&self) -> bool {
                self.rows == 0
            }

            /// String bytes buffered in this batch.
            pub fn buffered_bytes(&self) -> usize {
                0 $( + <$crate::table::columns::$kind as $crate::table::columns::Column>::buffered_bytes(&self.$name) )*
            }

            /// The first `rows` rows appended so far (a half-appended row after them is dropped);
            /// the builders start over empty.
            pub fn finish_rows(&mut self, rows: usize) -> arrow_array::RecordBatch {
                self.rows = 0;
                let columns: Vec<arrow_array::ArrayRef> = vec![ $( {
                    let array = arrow_array::builder::ArrayBuilder::finish(&mut self.$name);
                    array.slice(0, rows.min(array.len()))
                }, )* ];
                arrow_array::RecordBatch::try_new(self.schema.clone(), columns)
                    .expect("every column holds the rows appended whole")
            }

            /// The rows appended so far as one batch; the builders start over empty.
            pub fn finish(&mut self) -> arrow_array::RecordBatch {
                self.rows = 0;
                let columns: Vec<arrow_array::ArrayRef> =
                    vec![ $( arrow_array::builder::ArrayBuilder::finish(&mut self.$name), )* ];
                arrow_array::RecordBatch::try_new(self.schema.clone(), columns)
                    .expect("row structs always match their own schema")
            }
        }
    };
    (@nullable) => { true };
    (@nullable required) => { false };
}

pub(crate) use define_columns;
