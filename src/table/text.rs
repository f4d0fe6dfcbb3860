//! Table cells as text, the way people read them: dates `YYYY-MM-DD`, timestamps RFC 3339 in UTC,
//! lists `[a, b]`, structs `{key: value}` (null members left out), `None` for null. One rendering for the unit tests, the integration tests and
//! anyone comparing tables cell by cell.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::Array;
use arrow_schema::DataType;

use crate::fhir::{format_date, format_timestamp};

/// The text of cell `row` of `column`, `None` when null. Panics on Arrow types no fhir2table
/// table has.
pub fn cell_text(column: &dyn Array, row: usize) -> Option<String> {
    if column.is_null(row) {
        return None;
    }
    Some(match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().value(row).to_owned(),
        DataType::Boolean => column.as_boolean().value(row).to_string(),
        DataType::Float64 => column.as_primitive::<Float64Type>().value(row).to_string(),
        DataType::Int32 => column.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => column.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Date32 => format_date(column.as_primitive::<Date32Type>().value(row)),
        DataType::Timestamp(_, _) => {
            format_timestamp(column.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::List(_) => {
            let list = column.as_list::<i32>().value(row);
            let items: Vec<String> = (0..list.len())
                .map(|i| cell_text(list.as_ref(), i).unwrap_or_else(|| "null".into()))
                .collect();
            format!("[{}]", items.join(", "))
        }
        // The lossless tables' structs and decimal companions.
        DataType::Struct(fields) => {
            let structs = column.as_struct();
            let members: Vec<String> = fields
                .iter()
                .zip(structs.columns())
                .filter_map(|(field, child)| {
                    cell_text(child.as_ref(), row).map(|text| format!("{}: {text}", field.name()))
                })
                .collect();
            format!("{{{}}}", members.join(", "))
        }
        DataType::Decimal128(_, _) => {
            let decimals = column.as_primitive::<Decimal128Type>();
            decimals.value_as_string(row)
        }
        other => panic!("no text form for Arrow type {other}"),
    })
}
