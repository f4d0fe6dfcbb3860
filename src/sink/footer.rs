//! Making the min/max statistics of floating-point columns usable by today's readers.
//!
//! parquet-rs 60 declares the column order of every FLOAT and DOUBLE column as
//! `IEEE_754_TOTAL_ORDER`, a column order added to the Parquet format in 2025 (PARQUET-2249).
//! The format tells readers to ignore min/max statistics whose column order they do not know,
//! and pyarrow 26, parquet-java and DuckDB 2.0 do not know this one yet (arrow C++ adds it in
//! apache/arrow#50807), so no engine could prune row groups on latitude, totals or quantity
//! values. For values that hold no NaN the two orders agree on min and max (JSON cannot express
//! NaN or infinity), so after the footer is written each such column's order is rewritten in
//! place to `TYPE_DEFINED_ORDER`, which every reader knows. A column whose statistics saw a NaN
//! keeps the new order. The rewrite swaps one byte per column inside the Thrift footer (the
//! union's field id 2 becomes 1; both are empty structs, so nothing moves) and the footer is
//! parsed again before the file counts as written.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use parquet::basic::{ColumnOrder, Type as PhysicalType};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

/// Field id of `column_orders` in Thrift `FileMetaData`.
const COLUMN_ORDERS_FIELD: i16 = 7;
/// Field ids inside the Thrift `ColumnOrder` union.
const TYPE_ORDER_FIELD: i16 = 1;
const IEEE_754_TOTAL_ORDER_FIELD: i16 = 2;

/// Rewrites the footer of the finished Parquet file at `path` (written through `file`, whose
/// metadata the writer returned) so that NaN-free floating-point columns declare
/// `TYPE_DEFINED_ORDER`. Does nothing when no column qualifies.
pub(crate) fn declare_float_orders_for_all_readers(
    path: &Path,
    file: &mut File,
    metadata: &ParquetMetaData,
) -> Result<()> {
    let columns = metadata.file_metadata().schema_descr().columns();
    let to_rewrite = float_columns_to_rewrite(columns.iter().map(|column| column.self_type()), |leaf| {
        metadata
            .row_groups()
            .iter()
            .all(|group| free_of_nan(group.column(leaf).statistics()))
    });
    if !to_rewrite.contains(&true) {
        return Ok(());
    }
    let (footer_start, mut footer) = read_footer(&mut File::open(path)?)?;
    rewrite_float_orders(&mut footer, &to_rewrite)?;
    file.seek(SeekFrom::Start(footer_start))?;
    file.write_all(&footer)?;
    file.flush()?;
    check_float_orders(path, &to_rewrite)
}

/// The columns of a file whose order is rewritten: floating-point columns declared in IEEE 754
/// total order (as the writer declares every one) whose chunks all saw no NaN
/// (`free_of_nan(leaf)`).
pub(super) fn float_columns_to_rewrite<'a>(
    columns: impl IntoIterator<Item = &'a parquet::schema::types::Type>,
    free_of_nan: impl Fn(usize) -> bool,
) -> Vec<bool> {
    columns
        .into_iter()
        .enumerate()
        .map(|(leaf, column)| {
            let (physical, info) = (column.get_physical_type(), column.get_basic_info());
            matches!(physical, PhysicalType::FLOAT | PhysicalType::DOUBLE)
                && ColumnOrder::column_order_for_type(
                    info.logical_type_ref(),
                    info.converted_type(),
                    physical,
                ) == ColumnOrder::IEEE_754_TOTAL_ORDER
                && free_of_nan(leaf)
        })
        .collect()
}

/// Rewrites the chosen columns' orders (and zero extremes) in a serialized footer before it
/// is written: what [`declare_float_orders_for_all_readers`] does to a written file. The
/// caller checks the written file with [`check_float_orders`].
pub(super) fn rewrite_float_orders(footer: &mut [u8], chosen: &[bool]) -> Result<()> {
    if !chosen.contains(&true) {
        return Ok(());
    }
    rewrite_column_orders(footer, chosen).context("unexpected Parquet footer layout")?;
    sign_zero_extremes(footer, chosen).context("unexpected Parquet footer layout")
}

/// Reads the written file at `path` back and checks the orders [`rewrite_float_orders`] chose.
pub(super) fn check_float_orders(path: &Path, chosen: &[bool]) -> Result<()> {
    if !chosen.contains(&true) {
        return Ok(());
    }
    check_orders(&File::open(path)?, chosen)
}

/// The serialized `FileMetaData` of a file without row groups (`metadata`), cut around its
/// `num_rows` and `row_groups` fields: what a file of the same schema and settings writes
/// before and after them. `wide_file.rs` puts its row groups between the two.
pub(super) fn frame_around_row_groups(metadata: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    const EMPTY_ROWS_AND_GROUPS: [u8; 4] = [0x16, 0x00, 0x19, 0x0C];
    let mut cursor = Cursor::new(metadata);
    let mut last = 0i16;
    let start = loop {
        let at = cursor.at;
        let (field, kind) = cursor
            .field_header(&mut last)?
            .context("FileMetaData has no num_rows")?;
        if field == NUM_ROWS_FIELD {
            break at;
        }
        ensure!(field < NUM_ROWS_FIELD, "FileMetaData fields out of order");
        cursor.skip(kind)?;
    };
    ensure!(
        metadata.get(start..start + 4) == Some(&EMPTY_ROWS_AND_GROUPS[..]),
        "an empty file's footer with rows or row groups"
    );
    Ok((metadata[..start].to_vec(), metadata[start + 4..].to_vec()))
}

/// Whether a chunk's statistics allow the type-defined order (no NaN seen).
pub(super) fn free_of_nan(statistics: Option<&Statistics>) -> bool {
    let free = |min: Option<f64>, max: Option<f64>, nans: Option<u64>| {
        nans.unwrap_or(0) == 0 && !min.is_some_and(f64::is_nan) && !max.is_some_and(f64::is_nan)
    };
    match statistics {
        None => true,
        Some(Statistics::Double(s)) => free(s.min_opt().copied(), s.max_opt().copied(), s.nan_count_opt()),
        Some(Statistics::Float(s)) => free(
            s.min_opt().map(|&v| v as f64),
            s.max_opt().map(|&v| v as f64),
            s.nan_count_opt(),
        ),
        Some(_) => false,
    }
}

/// The Thrift footer's offset in the file and its bytes (without length and magic).
fn read_footer(file: &mut File) -> Result<(u64, Vec<u8>)> {
    let end = file.seek(SeekFrom::End(0))?;
    ensure!(end >= 12, "file too short for a Parquet footer");
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::Start(end - 8))?;
    file.read_exact(&mut tail)?;
    ensure!(&tail[4..] == b"PAR1", "no Parquet magic at the end of the file");
    let length = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("four bytes")));
    ensure!(length + 12 <= end, "footer length beyond the file");
    let start = end - 8 - length;
    let mut footer = vec![0u8; length as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut footer)?;
    Ok((start, footer))
}

/// Reads the footer back as readers will and checks that the chosen columns now declare the
/// type-defined order.
fn check_orders(file: &File, rewritten: &[bool]) -> Result<()> {
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(file)
        .context("the rewritten Parquet footer does not parse")?;
    for (i, &was_rewritten) in rewritten.iter().enumerate() {
        let order = metadata.file_metadata().column_order(i);
        if was_rewritten && !matches!(order, ColumnOrder::TYPE_DEFINED_ORDER(_)) {
            bail!("column {i} still declares {order:?} after the footer rewrite");
        }
    }
    Ok(())
}

/// Walks the Thrift compact encoding of `FileMetaData` to its `column_orders` list and turns
/// each chosen `IEEE754TotalOrder` element into `TypeDefinedOrder`.
fn rewrite_column_orders(footer: &mut [u8], chosen: &[bool]) -> Result<()> {
    let mut found = false;
    Cursor::new(footer).fields(&mut |cursor, field, kind| {
        if field != COLUMN_ORDERS_FIELD {
            return cursor.skip(kind);
        }
        found = true;
        for &rewrite in cursor.list_of_structs(kind, chosen)? {
            let header_at = cursor.at;
            let mut union_field = 0i16;
            let (id, kind) = cursor
                .field_header(&mut union_field)?
                .context("empty ColumnOrder")?;
            ensure!(kind == STRUCT, "ColumnOrder member is not a struct");
            cursor.skip(STRUCT)?;
            ensure!(
                cursor.field_header(&mut union_field)?.is_none(),
                "ColumnOrder has two members"
            );
            if rewrite {
                ensure!(
                    id == IEEE_754_TOTAL_ORDER_FIELD,
                    "column order is not IEEE 754 total order"
                );
                ensure!(cursor.bytes[header_at] >> 4 == 2, "long-form field header");
                cursor.bytes[header_at] = ((TYPE_ORDER_FIELD as u8) << 4) | STRUCT;
            }
        }
        Ok(())
    })?;
    ensure!(found, "FileMetaData has no column_orders");
    Ok(())
}

/// Field ids on the way from `FileMetaData` to a column chunk's statistics.
const NUM_ROWS_FIELD: i16 = 3;
const ROW_GROUPS_FIELD: i16 = 4;
const COLUMNS_FIELD: i16 = 1;
const META_DATA_FIELD: i16 = 3;
const STATISTICS_FIELD: i16 = 12;
const MAX_VALUE_FIELD: i16 = 5;
const MIN_VALUE_FIELD: i16 = 6;

/// Under the type-defined order the format asks writers for a zero minimum as `-0.0` and a zero
/// maximum as `+0.0` (readers may then skip a chunk for `x = 0` safely); the total order lets
/// parquet-rs write whichever zero it met. Sets the sign bit of each chosen column's `min_value`
/// and clears that of its `max_value` when they are zero, in every row group, in place.
fn sign_zero_extremes(footer: &mut [u8], chosen: &[bool]) -> Result<()> {
    Cursor::new(footer).fields(&mut |cursor, field, kind| {
        if field != ROW_GROUPS_FIELD {
            return cursor.skip(kind);
        }
        ensure!(kind == LIST, "row_groups is not a list");
        let (groups, element) = cursor.list_header()?;
        ensure!(element == STRUCT, "a row group is not a struct");
        for _ in 0..groups {
            cursor.fields(&mut |cursor, field, kind| {
                if field != COLUMNS_FIELD {
                    return cursor.skip(kind);
                }
                for &fix in cursor.list_of_structs(kind, chosen)? {
                    cursor.fields(&mut |cursor, field, kind| match (field, kind) {
                        (META_DATA_FIELD, STRUCT) => {
                            cursor.fields(&mut |cursor, field, kind| match (field, kind) {
                                (STATISTICS_FIELD, STRUCT) => {
                                    cursor.fields(&mut |cursor, field, kind| match (field, kind) {
                                        (MIN_VALUE_FIELD, BINARY) if fix => cursor.sign_zero(true),
                                        (MAX_VALUE_FIELD, BINARY) if fix => cursor.sign_zero(false),
                                        _ => cursor.skip(kind),
                                    })
                                }
                                _ => cursor.skip(kind),
                            })
                        }
                        _ => cursor.skip(kind),
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(())
    })
}

/// A field visitor: it must read or skip the field's value.
type OnField<'v> = dyn FnMut(&mut Cursor<&mut [u8]>, i16, u8) -> Result<()> + 'v;

// Thrift compact protocol type codes.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
/// The Thrift compact type of an `i32`.
pub(super) const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

/// Nesting deeper than this is not a footer or a page header parquet-rs wrote.
const MAX_DEPTH: usize = 64;

/// A reader of Thrift compact bytes (a footer, a page header): over `&mut [u8]` where a field
/// is rewritten in place.
pub(super) struct Cursor<B> {
    bytes: B,
    at: usize,
}

impl<B: AsRef<[u8]>> Cursor<B> {
    /// A cursor at the start of `bytes`.
    pub(super) fn new(bytes: B) -> Self {
        Cursor { bytes, at: 0 }
    }

    /// Bytes read so far.
    pub(super) fn at(&self) -> usize {
        self.at
    }

    fn byte(&mut self) -> Result<u8> {
        let byte = *self
            .bytes
            .as_ref()
            .get(self.at)
            .context("Thrift bytes end early")?;
        self.at += 1;
        Ok(byte)
    }

    pub(super) fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("varint too long")
    }

    fn advance(&mut self, count: u64) -> Result<()> {
        let end = (self.at as u64).checked_add(count).context("length overflow")?;
        ensure!(end <= self.bytes.as_ref().len() as u64, "Thrift bytes end early");
        self.at = end as usize;
        Ok(())
    }

    /// The next field's id and type, or `None` at the struct's end.
    pub(super) fn field_header(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>> {
        let byte = self.byte()?;
        if byte == 0 {
            return Ok(None);
        }
        let delta = (byte >> 4) as i16;
        let id = if delta == 0 {
            let zigzag = self.varint()? as i64;
            ((zigzag >> 1) ^ -(zigzag & 1)) as i16
        } else {
            *last + delta
        };
        *last = id;
        Ok(Some((id, byte & 0x0f)))
    }

    fn list_header(&mut self) -> Result<(usize, u8)> {
        let byte = self.byte()?;
        let short = (byte >> 4) as u64;
        let count = if short == 15 { self.varint()? } else { short };
        Ok((usize::try_from(count)?, byte & 0x0f))
    }

    /// Steps over a value of Thrift type `kind`.
    pub(super) fn skip(&mut self, kind: u8) -> Result<()> {
        self.skip_at(kind, 0)
    }

    /// Skips a list, set or map element: there a boolean takes a byte of its own.
    fn skip_element(&mut self, kind: u8, depth: usize) -> Result<()> {
        match kind {
            BOOL_TRUE | BOOL_FALSE => self.advance(1),
            _ => self.skip_at(kind, depth),
        }
    }

    fn skip_at(&mut self, kind: u8, depth: usize) -> Result<()> {
        ensure!(depth < MAX_DEPTH, "Thrift bytes nest too deep");
        match kind {
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            BYTE => self.advance(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.advance(8),
            BINARY => {
                let length = self.varint()?;
                self.advance(length)
            }
            LIST | SET => {
                let (count, element) = self.list_header()?;
                for _ in 0..count {
                    self.skip_element(element, depth + 1)?;
                }
                Ok(())
            }
            MAP => {
                let count = self.varint()?;
                if count == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                for _ in 0..count {
                    self.skip_element(types >> 4, depth + 1)?;
                    self.skip_element(types & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            STRUCT => {
                let mut last = 0i16;
                while let Some((_, kind)) = self.field_header(&mut last)? {
                    self.skip_at(kind, depth + 1)?;
                }
                Ok(())
            }
            other => bail!("unknown Thrift type {other}"),
        }
    }
}

impl Cursor<&mut [u8]> {
    /// Hands each field of the struct at the cursor to `on`, up to the struct's end.
    fn fields(&mut self, on: &mut OnField<'_>) -> Result<()> {
        let mut last = 0i16;
        while let Some((field, kind)) = self.field_header(&mut last)? {
            on(self, field, kind)?;
        }
        Ok(())
    }

    /// Reads the header of a list of structs with one element per leaf column, as `per_column`
    /// gives them; the elements follow.
    fn list_of_structs<'c>(&mut self, kind: u8, per_column: &'c [bool]) -> Result<&'c [bool]> {
        ensure!(kind == LIST, "not a list");
        let (count, element) = self.list_header()?;
        ensure!(
            element == STRUCT && count == per_column.len(),
            "a list that does not match the schema"
        );
        Ok(per_column)
    }

    /// Gives the 8-byte double of a binary field at the cursor, when it is zero, the sign a
    /// minimum (`-0.0`) or maximum (`+0.0`) has under the type-defined order.
    fn sign_zero(&mut self, minimum: bool) -> Result<()> {
        let length = self.varint()?;
        let start = self.at;
        self.advance(length)?;
        if length == 8 {
            let value = &mut self.bytes[start..start + 8];
            if value[..7].iter().all(|b| *b == 0) && value[7] & 0x7f == 0 {
                value[7] = if minimum { 0x80 } else { 0x00 };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::sink::parquet::DatasetWriter;
    use crate::sink::{Compression, TableWriter, WriteOptions};

    #[test]
    fn only_columns_without_nan_change_order_and_every_value_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("clean", DataType::Float64, true),
            Field::new("with_nan", DataType::Float64, true),
            Field::new("all_null", DataType::Float64, true),
        ]));
        let clean = Float64Array::from(vec![Some(-0.0), Some(2.5), None]);
        let with_nan = Float64Array::from(vec![Some(1.0), Some(f64::NAN), Some(-3.0)]);
        let all_null = Float64Array::from(vec![None, None, None]);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(clean), Arc::new(with_nan), Arc::new(all_null)],
        )
        .unwrap();
        let options = WriteOptions {
            compression: Compression::Zstd,
            threads: 1,
        };
        let mut writer =
            Box::new(DatasetWriter::create(dir.path(), "part.parquet", schema, &options).unwrap());
        writer.write(&batch).unwrap();
        assert_eq!(writer.finish().unwrap(), 3);
        let path = dir.path().join("part.parquet");

        let file = File::open(&path).unwrap();
        let metadata = ParquetMetaDataReader::new().parse_and_finish(&file).unwrap();
        let orders: Vec<ColumnOrder> = (0..3).map(|i| metadata.file_metadata().column_order(i)).collect();
        assert!(
            matches!(orders[0], ColumnOrder::TYPE_DEFINED_ORDER(_)),
            "{orders:?}"
        );
        assert_eq!(
            orders[1],
            ColumnOrder::IEEE_754_TOTAL_ORDER,
            "a NaN keeps the total order"
        );
        assert!(
            matches!(orders[2], ColumnOrder::TYPE_DEFINED_ORDER(_)),
            "{orders:?}"
        );
        let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(read.len(), 1);
        for i in 0..3 {
            let (written, back) = (batch.column(i), read[0].column(i));
            assert_eq!(format!("{written:?}"), format!("{back:?}"), "column {i}");
        }
    }

    #[test]
    fn a_zero_minimum_is_written_negative_and_a_zero_maximum_positive() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("from_zero", DataType::Float64, true),
            Field::new("to_zero", DataType::Float64, true),
        ]));
        let from_zero = Float64Array::from(vec![0.0, 2.5]);
        let to_zero = Float64Array::from(vec![-3.0, -0.0]);
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(from_zero), Arc::new(to_zero)]).unwrap();
        let options = WriteOptions {
            compression: Compression::Zstd,
            threads: 1,
        };
        let mut writer =
            Box::new(DatasetWriter::create(dir.path(), "part.parquet", schema, &options).unwrap());
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let file = File::open(dir.path().join("part.parquet")).unwrap();
        let metadata = ParquetMetaDataReader::new().parse_and_finish(&file).unwrap();
        let statistics = |i: usize| match metadata.row_group(0).column(i).statistics() {
            Some(Statistics::Double(s)) => (*s.min_opt().unwrap(), *s.max_opt().unwrap()),
            other => panic!("{other:?}"),
        };
        let (min, max) = statistics(0);
        assert_eq!((min, max), (0.0, 2.5));
        assert!(min.is_sign_negative(), "a zero minimum is -0.0");
        let (min, max) = statistics(1);
        assert_eq!((min, max), (-3.0, 0.0));
        assert!(max.is_sign_positive(), "a zero maximum is +0.0");
        let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            format!("{:?}", read[0].column(1)),
            format!("{:?}", batch.column(1)),
            "values untouched"
        );
    }

    #[test]
    fn a_footer_that_does_not_match_the_schema_is_refused_untouched() {
        // FileMetaData { 7: column_orders = [IEEE754TotalOrder] } against a two-column schema.
        let mut footer = vec![0x79, 0x1c, 0x2c, 0x00, 0x00, 0x00];
        let original = footer.clone();
        assert!(rewrite_column_orders(&mut footer, &[true, true]).is_err());
        assert_eq!(footer, original);
        assert!(rewrite_column_orders(&mut footer, &[true]).is_ok());
        assert_eq!(footer, vec![0x79, 0x1c, 0x1c, 0x00, 0x00, 0x00]);
    }
}
