//! Each table's staged part file, opened when the table's first batch arrives. A Parquet writer
//! holds megabytes for a wide table before its first row (the 146 tables of `--resources all`
//! measured 450 MB together, and their empty files 56 MB), and most tables of such a run get no
//! row; a table committed without rows gets its empty part at the end ([`Writers::write_empty`]).

use std::sync::Mutex;

use anyhow::Result;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::sink::{distinct_buffer_bytes, StagedRun, TableWriter};

/// The schema of a table's part (table metadata included), made when the part is opened: the
/// schemas of the 146 resource tables of `--resources all` are large, and most get no row.
pub(super) type PartSchema = Box<dyn Fn() -> SchemaRef>;

/// The run's part file of every table, by the table's position in the run's list.
#[derive(Default)]
pub(super) struct Writers {
    /// The name of this run's part file in each table.
    part_file: String,
    /// Each table's name and the schema of its part.
    tables: Vec<(String, PartSchema)>,
    /// The writers opened so far, in the order they were opened.
    opened: Vec<Box<dyn TableWriter>>,
    /// Per table, its writer's place in `opened`.
    slots: Vec<Option<usize>>,
    /// Per opened writer (by its place in `opened`), the batches held back for its completion.
    held_back: Vec<HeldBack>,
    /// The memory of the batches held back, up to `held_back_limit` ([`HELD_BACK_BYTES`]).
    held_back_bytes: usize,
    held_back_limit: usize,
}

/// The batches held back for one part, and their memory (counted once, as they came).
#[derive(Default)]
struct HeldBack {
    batches: Vec<RecordBatch>,
    bytes: usize,
}

/// The most memory the batches held back may take together. The last batches of two workers
/// took 15-16 MB (500 MB of Bundles, of NDJSON); those of eight took 152 MB on the Bundles,
/// and the peak went up by 36-67 MB without a bound.
const HELD_BACK_BYTES: usize = 32 << 20;

impl Writers {
    /// Writers (none open yet) of the part `part_file` of each of `tables` (name, schema).
    pub(super) fn new(part_file: String, tables: Vec<(String, PartSchema)>) -> Writers {
        let slots = vec![None; tables.len()];
        Writers {
            part_file,
            tables,
            opened: Vec::new(),
            slots,
            held_back: Vec::new(),
            held_back_bytes: 0,
            held_back_limit: HELD_BACK_BYTES,
        }
    }

    /// The name of this run's part file in each table.
    pub(super) fn part_file(&self) -> &str {
        &self.part_file
    }

    /// The writer of the table at `position`, opened in `staging` on first use.
    pub(super) fn writer(
        &mut self,
        staging: &dyn StagedRun,
        position: usize,
    ) -> Result<&mut Box<dyn TableWriter>> {
        let slot = match self.slots[position] {
            Some(slot) => slot,
            None => {
                let (name, schema) = &self.tables[position];
                self.opened.push(staging.create(name, &self.part_file, schema())?);
                self.held_back.push(HeldBack::default());
                self.slots[position] = Some(self.opened.len() - 1);
                self.opened.len() - 1
            }
        };
        Ok(&mut self.opened[slot])
    }

    /// Keeps `batch`, one of a worker's last, to be written by [`Writers::finish`] (the table's
    /// part is opened now). Written as they came, a run's last batches were written one table
    /// after another on the writer thread while the workers had nothing left to do: about 0.3
    /// of the 2.6 s of a profiled `--resources all` run on 500 MB of Bundles, on two cores, one
    /// of them idle. Written on the run's threads, they took about 1% off the time (paired
    /// rounds; bench/RESULTS.md, the thirteenth round).
    ///
    /// Once the batches held back would take more than [`HELD_BACK_BYTES`], `batch` is given
    /// back, to be written now as the others are, after the table's batches held back so far
    /// (given back with it, first): a table's rows stay in the order they came, which
    /// `compact` reads as the order of the input (the later of two equal rows wins).
    pub(super) fn hold_back(
        &mut self,
        staging: &dyn StagedRun,
        position: usize,
        batch: RecordBatch,
    ) -> Result<Vec<RecordBatch>> {
        self.writer(staging, position)?;
        let slot = self.slots[position].expect("the writer was just opened");
        let bytes = distinct_buffer_bytes(&batch);
        if self.held_back_bytes + bytes > self.held_back_limit {
            let HeldBack { mut batches, bytes } = std::mem::take(&mut self.held_back[slot]);
            self.held_back_bytes -= bytes;
            batches.push(batch);
            return Ok(batches);
        }
        let held = &mut self.held_back[slot];
        held.batches.push(batch);
        held.bytes += bytes;
        self.held_back_bytes += bytes;
        Ok(Vec::new())
    }

    /// The writers opened so far (for the memory budget).
    pub(super) fn opened(&mut self) -> &mut [Box<dyn TableWriter>] {
        &mut self.opened
    }

    /// Completes every opened part, on `threads` threads; per table, the rows its part holds,
    /// or `None` when no batch reached it (no part was written). Completing a part writes the
    /// batches held back for it after the rows its writer already has (for a wide table, up
    /// to a row group of batches held), then what its writer still holds and its footer: one
    /// part after the other, that was the last second of a 4-second `--resources all` run on
    /// one core. So up to `threads` wide row groups are encoded at once here, where during the
    /// run the one writer encodes one at a time; the parts with the most to write go first, so
    /// that no thread is left with a large one at the end. Every part is completed even after
    /// another failed (a part whose held-back batch fails to be written is not); the first
    /// error in the order the parts were opened is returned.
    pub(super) fn finish(&mut self, threads: usize) -> Result<Vec<Option<u64>>> {
        let opened = std::mem::take(&mut self.opened);
        let held_back = std::mem::take(&mut self.held_back);
        self.held_back_bytes = 0;
        let count = opened.len();
        let mut jobs: Vec<_> = opened.into_iter().zip(held_back).enumerate().collect();
        jobs.sort_by_key(|(_, (writer, held))| std::cmp::Reverse(writer.row_group_bytes() + held.bytes));
        let queue = Mutex::new(jobs.into_iter());
        let finished: Mutex<Vec<Option<Result<u64>>>> = Mutex::new((0..count).map(|_| None).collect());
        let finish = || loop {
            let next = queue.lock().expect("no writer panics holding the queue").next();
            let Some((slot, (mut writer, held))) = next else {
                return;
            };
            // Each batch is dropped once the writer has it.
            let written = held
                .batches
                .into_iter()
                .try_for_each(|batch| writer.write(&batch));
            let rows = written.and_then(|()| writer.finish());
            finished.lock().expect("no writer panics holding the results")[slot] = Some(rows);
        };
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads.min(count)).map(|_| scope.spawn(finish)).collect();
            finish();
            // A panic goes on with its own message (the run reports it), not the scope's.
            for helper in helpers {
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            }
        });
        let mut rows_by_slot = Vec::with_capacity(count);
        for rows in finished.into_inner().expect("no writer panicked") {
            rows_by_slot.push(rows.expect("every opened part was completed")?);
        }
        Ok(self
            .slots
            .iter()
            .map(|slot| slot.map(|slot| rows_by_slot[slot]))
            .collect())
    }

    /// Writes the empty part of the table at `position`, which got no rows but is committed.
    pub(super) fn write_empty(&self, staging: &dyn StagedRun, position: usize) -> Result<()> {
        let (name, schema) = &self.tables[position];
        staging.create(name, &self.part_file, schema())?.finish()?;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    /// A staged Parquet run in a fresh folder (kept while the folder lives).
    pub(in crate::convert) fn staged_run() -> (tempfile::TempDir, Box<dyn StagedRun>) {
        let dir = tempfile::tempdir().unwrap();
        let output = crate::sink::open(dir.path(), crate::sink::Format::Parquet).unwrap();
        let staging = output
            .stage(crate::sink::WriteOptions {
                compression: crate::sink::Compression::None,
                threads: 1,
            })
            .unwrap();
        (dir, staging)
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]))
    }

    /// Writers of the tables `first`, `second` and `third`, each of one column `id`.
    pub(in crate::convert) fn three_tables() -> Writers {
        let tables = ["first", "second", "third"]
            .iter()
            .map(|name| (name.to_string(), Box::new(schema) as PartSchema))
            .collect();
        Writers::new("part-20260101T000000.000000Z-1.parquet".into(), tables)
    }

    /// A batch of the tables' one column.
    pub(in crate::convert) fn batch(ids: &[&str]) -> RecordBatch {
        let ids = arrow_array::StringArray::from(ids.to_vec());
        RecordBatch::try_new(schema(), vec![Arc::new(ids)]).unwrap()
    }

    #[test]
    fn held_back_batches_are_written_after_the_others_when_the_parts_complete() {
        let (dir, staging) = staged_run();
        let mut writers = three_tables();
        assert!(writers.hold_back(&*staging, 0, batch(&["c"])).unwrap().is_empty());
        writers
            .writer(&*staging, 0)
            .unwrap()
            .write(&batch(&["a", "b"]))
            .unwrap();
        assert!(writers.hold_back(&*staging, 1, batch(&["d"])).unwrap().is_empty());
        let three = batch(&["e", "f", "g"]);
        assert!(writers.hold_back(&*staging, 1, three).unwrap().is_empty());
        assert_eq!(writers.opened().len(), 2, "holding a batch back opens its part");
        assert_eq!(writers.finish(2).unwrap(), [Some(3), Some(4), None]);
        let ids_of = |table: &str| -> Vec<String> {
            let staged = std::fs::read_dir(dir.path().join(".fhir2table"))
                .unwrap()
                .flatten()
                .find(|entry| entry.file_name().to_string_lossy().starts_with("_staging"))
                .unwrap()
                .path()
                .join(table)
                .join("part-20260101T000000.000000Z-1.parquet");
            let file = std::fs::File::open(staged).unwrap();
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 16).unwrap();
            reader
                .flat_map(|batch| {
                    let batch = batch.unwrap();
                    let ids = arrow_array::cast::AsArray::as_string::<i32>(batch.column(0)).clone();
                    ids.iter().map(|id| id.unwrap().to_owned()).collect::<Vec<_>>()
                })
                .collect()
        };
        assert_eq!(
            ids_of("first"),
            ["a", "b", "c"],
            "after the batches written before"
        );
        assert_eq!(ids_of("second"), ["d", "e", "f", "g"], "in the order they came");
    }

    #[test]
    fn batches_past_the_bound_of_those_held_back_are_given_back() {
        let (_dir, staging) = staged_run();
        let mut writers = three_tables();
        let (a, b, c) = (batch(&["a"]), batch(&["b"]), batch(&["c"]));
        writers.held_back_limit = 2 * distinct_buffer_bytes(&a);
        assert!(writers.hold_back(&*staging, 0, a.clone()).unwrap().is_empty());
        assert!(writers.hold_back(&*staging, 1, b.clone()).unwrap().is_empty());
        let given_back = writers.hold_back(&*staging, 1, c.clone()).unwrap();
        assert_eq!(
            given_back,
            [b, c],
            "past the bound: the table's held batches first"
        );
        let given_back = writers.hold_back(&*staging, 2, a.clone()).unwrap();
        assert!(given_back.is_empty(), "the batches given back no longer count");
        // The caller writes the batches given back: nothing else is left of the second part.
        assert_eq!(writers.finish(1).unwrap(), [Some(1), Some(0), Some(1)]);
    }

    #[test]
    fn parts_are_opened_on_first_use_and_only_then() {
        let (dir, staging) = staged_run();
        let mut writers = three_tables();
        let batch = batch(&["a", "b"]);
        writers.writer(&*staging, 2).unwrap().write(&batch).unwrap();
        writers.writer(&*staging, 2).unwrap().write(&batch).unwrap();
        assert_eq!(
            writers.opened().len(),
            1,
            "one writer for the one table written to"
        );
        assert_eq!(writers.finish(2).unwrap(), [None, None, Some(4)]);
        writers.write_empty(&*staging, 0).unwrap();
        let staged: Vec<String> = std::fs::read_dir(dir.path().join(".fhir2table"))
            .unwrap()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("_staging"))
            .flat_map(|entry| std::fs::read_dir(entry.path()).unwrap().flatten())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(staged, ["first", "third"], "no part for the table without rows");
    }
}
