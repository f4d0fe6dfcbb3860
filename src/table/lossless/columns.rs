//! The value builders of the resource tables' columns. Arrow's own builders cannot drop values
//! once appended; these can ([`ValueColumn::truncate`]), so that a row built straight from
//! the JSON text (`rows/stream.rs`) can be undone when it turns out to need the tree's way.

use std::fmt;

use arrow_array::types::{Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{ArrowPrimitiveType, BooleanArray, PrimitiveArray, StringArray};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::DataType;

/// What each column of a member's values does alike, whatever its type: a primitive member's
/// value column and its companions take their nulls, and lose an undone row's values, together.
pub(super) trait ValueColumn {
    fn append_nulls(&mut self, count: usize);
    /// Keeps the first `len` values.
    fn truncate(&mut self, len: usize);
}

/// `values` without the room left over from its growth, for a finished column's buffer. Why:
/// a held batch's memory is counted by its buffers' capacity (`distinct_buffer_bytes`), and
/// the writer cuts a wide table's row groups by that count, so room a buffer grew into and
/// never filled (up to half of it, as a `Vec` doubles) cut them after fewer rows: more row
/// groups, each a column chunk per leaf. Shrinking gives the room back to the allocator (with
/// glibc, in place, without copying).
pub(super) fn fitted<T>(mut values: Vec<T>) -> Vec<T> {
    values.shrink_to_fit();
    values
}

/// The room to make in a column's buffer for its next batch, its last batch having filled
/// `last` elements: that many and an eighth more. Why: a table's batches are cut at one row
/// count, so a column's next batch takes about what its last one took; a buffer grown from
/// empty instead doubled its way there, copying what it held at each step (2.8% of the
/// instructions of `--resources all` on Bulk NDJSON went to those copies). The room is made
/// when the next batch's first value comes ([`make_room`]), so a table that gets no more rows
/// (tables are cut when idle or over the worker's budget) holds none.
pub(super) fn room_for_next(last: usize) -> usize {
    last + last / 8
}

/// Makes `room` elements of room in `buffer`, once per batch: a buffer with that much does
/// nothing.
#[inline]
pub(super) fn make_room<T>(buffer: &mut Vec<T>, room: usize) {
    if buffer.capacity() < room {
        buffer.reserve(room - buffer.len());
    }
}

/// A Utf8 column in the making. Written to as a `fmt::Write` (JSON text), a value is then
/// closed with [`TextColumn::close_value`].
pub(super) struct TextColumn {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    nulls: NullBufferBuilder,
    /// The room to make for values and bytes at the batch's first value ([`room_for_next`]).
    room: (usize, usize),
}

impl TextColumn {
    /// Allocates nothing until a value comes: a resource table has thousands of text columns,
    /// most of which never get one.
    pub(super) fn new() -> Self {
        TextColumn {
            offsets: vec![0],
            bytes: Vec::new(),
            nulls: NullBufferBuilder::new(0),
            room: (0, 0),
        }
    }

    /// Values so far, nulls included (each companion column of a member has as many).
    pub(super) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Appends one value (a string unescaped, a number as the tree keeps it).
    pub(super) fn append_value(&mut self, text: &str) {
        self.bytes.extend_from_slice(text.as_bytes());
        self.close_value();
    }

    /// The last value's text (a null's is empty), or `None` before the first value.
    pub(super) fn last(&self) -> Option<&[u8]> {
        let [.., start, end] = self.offsets[..] else {
            return None;
        };
        Some(&self.bytes[start as usize..end as usize])
    }

    /// Ends the value written so far (through `fmt::Write`) as the next one.
    pub(super) fn close_value(&mut self) {
        if self.offsets.capacity() < self.room.0 {
            make_room(&mut self.offsets, self.room.0);
            make_room(&mut self.bytes, self.room.1);
        }
        let end =
            i32::try_from(self.bytes.len()).expect("a batch's text stays under 2 GiB (MAX_BATCH_BYTES)");
        self.offsets.push(end);
        self.nulls.append_non_null();
    }

    /// The values so far as an array; the column starts again, to make room for as many
    /// values and bytes at its next value ([`room_for_next`]) when it had a value.
    pub(super) fn finish(&mut self) -> StringArray {
        self.room = match self.bytes.is_empty() {
            true => (0, 0),
            false => (room_for_next(self.offsets.len()), room_for_next(self.bytes.len())),
        };
        let offsets = OffsetBuffer::new(ScalarBuffer::from(fitted(std::mem::replace(
            &mut self.offsets,
            vec![0],
        ))));
        let bytes = Buffer::from_vec(fitted(std::mem::take(&mut self.bytes)));
        let nulls = self.nulls.finish();
        // Checked where tests run (debug builds): the proptests of the row builder go through it.
        if cfg!(debug_assertions) {
            return StringArray::new(offsets, bytes, nulls);
        }
        // SAFETY: the bytes are whole `&str`s one after the other (appended or written through
        // `fmt::Write`, truncated only at a value's end), and each offset is where one ends:
        // valid UTF-8, cut at character boundaries, offsets rising within the buffer. Checking
        // it again would read every text of the batch once more.
        unsafe { StringArray::new_unchecked(offsets, bytes, nulls) }
    }
}

impl ValueColumn for TextColumn {
    fn append_nulls(&mut self, count: usize) {
        let end = *self.offsets.last().expect("offsets start with 0");
        self.offsets.extend(std::iter::repeat_n(end, count));
        self.nulls.append_n_nulls(count);
    }

    fn truncate(&mut self, len: usize) {
        self.offsets.truncate(len + 1);
        self.bytes.truncate(self.offsets[len] as usize);
        self.nulls.truncate(len);
    }
}

impl fmt::Write for TextColumn {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.bytes.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// A column of fixed-width values in the making.
pub(super) struct PrimitiveColumn<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    nulls: NullBufferBuilder,
    data_type: DataType,
    /// The room to make at the batch's first value ([`room_for_next`]).
    room: usize,
}

/// The columns of FHIR's integers, decimals' numeric companions and instants' bounds.
pub(super) type Int32Column = PrimitiveColumn<Int32Type>;
pub(super) type Int64Column = PrimitiveColumn<Int64Type>;
pub(super) type DecimalColumn = PrimitiveColumn<Decimal128Type>;
pub(super) type InstantColumn = PrimitiveColumn<TimestampMicrosecondType>;

impl<T: ArrowPrimitiveType> PrimitiveColumn<T> {
    /// A column of `data_type` (one of `T`'s: a decimal's precision, a timestamp's zone).
    pub(super) fn new(data_type: DataType) -> Self {
        PrimitiveColumn {
            values: Vec::new(),
            nulls: NullBufferBuilder::new(0),
            data_type,
            room: 0,
        }
    }

    /// Values so far, nulls included.
    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    /// Appends one present value.
    pub(super) fn append_value(&mut self, value: T::Native) {
        make_room(&mut self.values, self.room);
        self.values.push(value);
        self.nulls.append_non_null();
    }

    /// The last value, or `None` where it is null or there is none yet.
    pub(super) fn last(&self) -> Option<T::Native> {
        let last = self.values.len().checked_sub(1)?;
        self.nulls.is_valid(last).then(|| self.values[last])
    }

    /// Appends a value, or a null where a companion has none (a decimal beyond its range, a
    /// date that is not one).
    pub(super) fn append_option(&mut self, value: Option<T::Native>) {
        match value {
            Some(value) => self.append_value(value),
            None => self.append_nulls(1),
        }
    }

    /// The values so far as an array of the column's type; the column starts again, to make
    /// room for as many values at its next value ([`room_for_next`]).
    pub(super) fn finish(&mut self) -> PrimitiveArray<T> {
        self.room = room_for_next(self.values.len());
        let values = ScalarBuffer::from(fitted(std::mem::take(&mut self.values)));
        PrimitiveArray::<T>::new(values, self.nulls.finish()).with_data_type(self.data_type.clone())
    }
}

impl<T: ArrowPrimitiveType> ValueColumn for PrimitiveColumn<T> {
    fn append_nulls(&mut self, count: usize) {
        self.values
            .extend(std::iter::repeat_n(T::Native::default(), count));
        self.nulls.append_n_nulls(count);
    }

    fn truncate(&mut self, len: usize) {
        self.values.truncate(len);
        self.nulls.truncate(len);
    }
}

/// A boolean column in the making.
pub(super) struct BoolColumn {
    values: BooleanBufferBuilder,
    nulls: NullBufferBuilder,
}

impl BoolColumn {
    /// Allocates nothing until a value comes.
    pub(super) fn new() -> Self {
        BoolColumn {
            values: BooleanBufferBuilder::new(0),
            nulls: NullBufferBuilder::new(0),
        }
    }

    /// Values so far, nulls included.
    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    /// Appends one present value.
    pub(super) fn append_value(&mut self, value: bool) {
        self.values.append(value);
        self.nulls.append_non_null();
    }

    /// The values so far as an array; the column starts again.
    pub(super) fn finish(&mut self) -> BooleanArray {
        BooleanArray::new(self.values.finish(), self.nulls.finish())
    }
}

impl ValueColumn for BoolColumn {
    fn append_nulls(&mut self, count: usize) {
        self.values.append_n(count, false);
        self.nulls.append_n_nulls(count);
    }

    fn truncate(&mut self, len: usize) {
        self.values.truncate(len);
        self.nulls.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use std::fmt::Write as _;

    #[test]
    fn truncated_columns_are_those_built_without_the_dropped_values() {
        let mut text = TextColumn::new();
        text.append_value("a");
        text.append_nulls(2);
        let part = "b";
        write!(text, "{part}-{}", 1).unwrap();
        text.close_value();
        text.truncate(2);
        text.append_value("é");
        let built = text.finish();
        assert_eq!(built.len(), 3);
        assert_eq!(built.value(0), "a");
        assert!(built.is_null(1) && !built.is_null(2));
        assert_eq!(built.value(2), "é");
        assert_eq!(text.finish().len(), 0, "a finished column starts again");

        let mut numbers = Int32Column::new(DataType::Int32);
        numbers.append_value(1);
        numbers.append_option(None);
        numbers.append_value(3);
        numbers.truncate(1);
        numbers.append_value(4);
        let built = numbers.finish();
        assert_eq!(built.values().as_ref(), &[1, 4]);
        assert_eq!(built.null_count(), 0);

        let mut flags = BoolColumn::new();
        flags.append_value(true);
        flags.append_nulls(1);
        flags.truncate(1);
        flags.append_value(false);
        let built = flags.finish();
        assert_eq!(
            (built.value(0), built.value(1), built.null_count()),
            (true, false, 0)
        );
    }

    #[test]
    fn a_columns_next_batch_has_room_for_what_its_last_one_held() {
        let mut text = TextColumn::new();
        let mut numbers = Int32Column::new(DataType::Int32);
        let mut nulls = Int32Column::new(DataType::Int32);
        let fill = |text: &mut TextColumn, numbers: &mut Int32Column, nulls: &mut Int32Column| {
            for value in 0..1000 {
                text.append_value(&format!("value {value}"));
                text.append_nulls(1);
                numbers.append_option((value % 3 != 0).then_some(value));
                nulls.append_nulls(1);
            }
        };
        fill(&mut text, &mut numbers, &mut nulls);
        let first = (text.finish(), numbers.finish());
        assert_eq!(nulls.finish().null_count(), 1000);
        // No room is held until a value comes (a table may get no more rows).
        let held = (
            text.bytes.capacity(),
            text.offsets.capacity(),
            numbers.values.capacity(),
        );
        assert_eq!(held, (0, 1, 0));
        text.append_nulls(1);
        nulls.append_nulls(1);
        numbers.append_nulls(1);
        assert_eq!(text.bytes.capacity(), 0, "nulls make no room");
        text.append_value("first");
        numbers.append_value(1);
        let room = (
            text.bytes.capacity(),
            text.offsets.capacity(),
            numbers.values.capacity(),
        );
        assert!(room.0 >= first.0.value_data().len(), "{room:?}");
        assert!(room.1 > first.0.len() && room.2 >= first.1.len(), "{room:?}");
        assert!(nulls.values.capacity() < 1000, "a column of nulls makes no room");
        text.truncate(0);
        numbers.truncate(0);
        nulls.truncate(0);
        let empty = TextColumn::new().finish();
        assert_eq!(empty.len(), 0);

        // The same batch again grows nothing: no copy of what the buffers hold.
        let places = (
            text.bytes.as_ptr(),
            text.offsets.as_ptr(),
            numbers.values.as_ptr(),
        );
        fill(&mut text, &mut numbers, &mut nulls);
        assert_eq!(
            (
                text.bytes.capacity(),
                text.offsets.capacity(),
                numbers.values.capacity()
            ),
            room
        );
        assert_eq!(
            (
                text.bytes.as_ptr(),
                text.offsets.as_ptr(),
                numbers.values.as_ptr()
            ),
            places
        );
        let second = (text.finish(), numbers.finish());
        assert_eq!(second.0, first.0);
        assert_eq!(second.1, first.1);
        assert_eq!(
            second.0.value_data().len(),
            second.0.values().capacity(),
            "finished batches keep no room"
        );
    }

    #[test]
    fn decimal_and_instant_columns_keep_their_types() {
        let decimal = DataType::Decimal128(32, 6);
        let mut numeric = DecimalColumn::new(decimal.clone());
        numeric.append_value(1_500_000);
        assert_eq!(numeric.finish().data_type(), &decimal);
        let instant = DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()));
        let mut start = InstantColumn::new(instant.clone());
        start.append_nulls(2);
        let built = start.finish();
        assert_eq!((built.data_type(), built.null_count()), (&instant, 2));
    }
}
