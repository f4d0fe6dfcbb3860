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

/// The time zone of every timestamp column.
pub const UTC: &str = "UTC";

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

/// The fixed-width kinds differ only in their Rust value, builder and Arrow type:
/// `Kind: value => Builder [with_timezone ZONE], data type`.
macro_rules! fixed_width_column {
    ($kind:ident: $value:ty => $builder:ident $(with_timezone $zone:expr)?, $data_type:expr) => {
        impl Column for $kind {
            type Value<'a> = $value;
            type Builder = $builder;
            fn data_type() -> DataType {
                $data_type
            }
            fn builder(capacity: usize) -> $builder {
                $builder::with_capacity(capacity)$(.with_timezone($zone))?
            }
            fn append(builder: &mut $builder, value: Option<$value>) {
                builder.append_option(value);
            }
        }
    };
}

fixed_width_column!(Date32: i32 => Date32Builder, DataType::Date32);
fixed_width_column!(
    TimestampUtc: i64 => TimestampMicrosecondBuilder with_timezone UTC,
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
);
fixed_width_column!(Boolean: bool => BooleanBuilder, DataType::Boolean);
fixed_width_column!(Float64: f64 => Float64Builder, DataType::Float64);

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
