//! Deduplication rules: which rows of a table survive `fhir2table compact` after appended runs
//! put the same resource in several files. Per resource `id` the newest row wins: the greatest
//! `last_updated` (an instant, so offsets compare correctly), then the latest input (files are
//! given oldest first; later rows in a file are later input). Rows are dropped outright when a
//! later run deleted the resource or converted their input file again. The sink only reads the
//! files and writes the rows these rules keep.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, BooleanArray, PrimitiveArray, RecordBatch, StringArray};
use arrow_schema::{DataType, SchemaRef};

use super::BUILTIN_TABLE_NAMES;

/// The column naming each row's resource; rows are deduplicated by it.
pub const ID_COLUMN: &str = "id";
/// The column whose greatest value marks a resource's newest row.
pub const LAST_UPDATED_COLUMN: &str = "last_updated";
/// The column naming each row's input file, to drop rows of inputs converted again.
pub const SOURCE_FILE_COLUMN: &str = "source_file";

/// How a table's rows are deduplicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deduplication {
    /// Keep a single row per id (built-in tables); otherwise every row of the id from its newest
    /// file is kept (a view may give several rows per resource).
    pub one_row_per_id: bool,
}

impl Deduplication {
    /// The rule for the table `name` whose files have `schema`; `None` when it has no `id` column
    /// of strings and so cannot be deduplicated.
    pub fn of(name: &str, schema: &SchemaRef) -> Option<Deduplication> {
        let has_id = schema
            .field_with_name(ID_COLUMN)
            .is_ok_and(|f| f.data_type() == &DataType::Utf8);
        has_id.then(|| Deduplication {
            one_row_per_id: BUILTIN_TABLE_NAMES.contains(&name),
        })
    }
}

/// What makes an older row obsolete besides a newer row for the same id: a DELETE of the
/// resource in a later run, or its input file converted again by a later run. Runs are compared
/// by their stamps (which sort in time order).
/// It borrows both maps: they are read once for the whole output folder and shared by its tables.
#[derive(Debug, Clone, Copy)]
pub struct Superseded<'m> {
    /// Latest run stamp of a DELETE of the table's resource type, by id hash.
    pub deleted: &'m HashMap<u64, String>,
    /// Latest run stamp that converted each input (`source_file`).
    pub reconverted: &'m HashMap<String, String>,
}

/// Latest run stamp of a DELETE, by resource type and id hash.
pub type Tombstones = HashMap<String, HashMap<u64, String>>;

impl Superseded<'_> {
    /// Whether the row of the id keyed `key` from `source_file`, written by the run `file_stamp`,
    /// is obsolete. A DELETE in the same run as the row wins over it (the row may be from an
    /// earlier line).
    fn drops(&self, key: u64, source_file: Option<&str>, file_stamp: &str) -> bool {
        let deleted = self
            .deleted
            .get(&key)
            .is_some_and(|stamp| stamp.as_str() >= file_stamp);
        let reconverted = source_file
            .and_then(|file| self.reconverted.get(file))
            .is_some_and(|stamp| stamp.as_str() > file_stamp);
        deleted || reconverted
    }
}

/// Adds to `deleted` the resources that a batch of the tombstone table (`_deleted`: resource
/// type, id) written by the run `stamp` deletes, keeping the latest run stamp of each deletion.
pub fn add_tombstones(deleted: &mut Tombstones, batch: &RecordBatch, stamp: &str) {
    let types = batch.column(0).as_string::<i32>();
    let ids = batch.column(1).as_string::<i32>();
    for i in 0..batch.num_rows() {
        let of_type = deleted.entry(types.value(i).to_owned()).or_default();
        let slot = of_type.entry(id_key(ids.value(i))).or_default();
        if stamp > slot.as_str() {
            *slot = stamp.to_owned();
        }
    }
}

/// Where a resource's newest row is: its `last_updated`, file and row (the order they compare in).
type Newest = (i64, u32, u32);

/// The newest row of each resource, found in a first pass over a table's files (oldest first);
/// the second pass asks [`NewestRows::keep`] which rows to write. Memory: one entry per distinct
/// id (about 40 bytes).
pub struct NewestRows<'s> {
    rule: Deduplication,
    superseded: Superseded<'s>,
    newest: HashMap<u64, Newest>,
}

impl<'s> NewestRows<'s> {
    /// An empty search under `rule`, dropping the rows `superseded` makes obsolete.
    pub fn new(rule: Deduplication, superseded: Superseded<'s>) -> Self {
        NewestRows {
            rule,
            superseded,
            newest: HashMap::new(),
        }
    }

    /// Takes in a batch of the file at `file_index` (written by the run `stamp`) whose first row
    /// is row `first_row` of that file.
    pub fn observe(&mut self, file_index: usize, stamp: &str, first_row: u32, batch: &RecordBatch) {
        let ids = id_column(batch);
        let sources = source_files(batch);
        let updated = last_updated(batch);
        for i in 0..batch.num_rows() {
            let key = id_key(ids.value(i));
            if self.superseded.drops(key, sources.map(|s| s.value(i)), stamp) {
                continue;
            }
            let last_updated = updated.filter(|u| u.is_valid(i)).map_or(i64::MIN, |u| u.value(i));
            let candidate = (last_updated, file_index as u32, first_row + i as u32);
            let slot = self.newest.entry(key).or_insert(candidate);
            if candidate > *slot {
                *slot = candidate;
            }
        }
    }

    /// Which rows of a batch (of the file at `file_index`, starting at row `first_row`) survive.
    pub fn keep(&self, file_index: usize, first_row: u32, batch: &RecordBatch) -> BooleanArray {
        let ids = id_column(batch);
        (0..batch.num_rows())
            .map(|i| {
                let Some(&(_, winner_file, winner_row)) = self.newest.get(&id_key(ids.value(i))) else {
                    return Some(false);
                };
                let this_row = first_row + i as u32;
                Some(
                    winner_file == file_index as u32 && (!self.rule.one_row_per_id || winner_row == this_row),
                )
            })
            .collect()
    }
}

fn id_key(id: &str) -> u64 {
    crate::fhir::key_hash::text_key(id)
}

/// The `id` column (its presence is checked by [`Deduplication::of`]).
fn id_column(batch: &RecordBatch) -> &StringArray {
    batch
        .column_by_name(ID_COLUMN)
        .expect("checked by Deduplication::of")
        .as_string::<i32>()
}

fn last_updated(batch: &RecordBatch) -> Option<&PrimitiveArray<TimestampMicrosecondType>> {
    let column = batch.column_by_name(LAST_UPDATED_COLUMN)?;
    match column.data_type() {
        DataType::Timestamp(_, _) => Some(column.as_primitive::<TimestampMicrosecondType>()),
        _ => None,
    }
}

fn source_files(batch: &RecordBatch) -> Option<&StringArray> {
    let column = batch.column_by_name(SOURCE_FILE_COLUMN)?;
    (column.data_type() == &DataType::Utf8).then(|| column.as_string::<i32>())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch(ids: &[&str], updated: &[Option<i64>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new(
                LAST_UPDATED_COLUMN,
                DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids.to_vec())),
            Arc::new(TimestampMicrosecondArray::from(updated.to_vec()).with_timezone("UTC")),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn kept(array: &BooleanArray) -> Vec<bool> {
        array.iter().map(|keep| keep.unwrap()).collect()
    }

    #[test]
    fn only_tables_with_a_string_id_column_are_deduplicated() {
        let rows = batch(&["a"], &[None]);
        let rule = Deduplication::of("patient", &rows.schema());
        assert_eq!(rule, Some(Deduplication { one_row_per_id: true }));
        let view = Deduplication::of("condition", &rows.schema());
        assert_eq!(
            view,
            Some(Deduplication {
                one_row_per_id: false
            })
        );
        let no_id = Arc::new(Schema::new(vec![Field::new("code", DataType::Utf8, true)]));
        assert_eq!(Deduplication::of("condition", &no_id), None);
    }

    #[test]
    fn the_greatest_last_updated_wins_then_the_latest_file_and_row() {
        let nothing = (HashMap::new(), HashMap::new());
        let superseded = Superseded {
            deleted: &nothing.0,
            reconverted: &nothing.1,
        };
        let mut newest = NewestRows::new(Deduplication { one_row_per_id: true }, superseded);
        let old = batch(&["a", "b", "b"], &[Some(20), Some(5), Some(5)]);
        let new = batch(&["a", "b"], &[Some(10), Some(5)]);
        newest.observe(0, "1", 0, &old);
        newest.observe(1, "2", 0, &new);
        assert_eq!(kept(&newest.keep(0, 0, &old)), [true, false, false]);
        assert_eq!(kept(&newest.keep(1, 0, &new)), [false, true]);
    }

    #[test]
    fn a_view_keeps_every_row_of_the_newest_file_and_deletions_drop_rows() {
        let mut tombstones = Tombstones::new();
        add_tombstones(
            &mut tombstones,
            &RecordBatch::try_new(
                crate::table::deleted::DeletedTable::table_schema(),
                vec![
                    Arc::new(StringArray::from(vec!["Condition"])) as ArrayRef,
                    Arc::new(StringArray::from(vec!["gone"])),
                ],
            )
            .unwrap(),
            "2",
        );
        let reconverted = HashMap::new();
        let superseded = Superseded {
            deleted: &tombstones["Condition"],
            reconverted: &reconverted,
        };
        let mut newest = NewestRows::new(
            Deduplication {
                one_row_per_id: false,
            },
            superseded,
        );
        let rows = batch(&["a", "a", "gone"], &[None, None, None]);
        newest.observe(0, "2", 0, &rows);
        assert_eq!(kept(&newest.keep(0, 0, &rows)), [true, true, false]);
    }
}
