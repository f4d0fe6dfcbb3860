//! The worker threads: each takes the next input file, finds its resources, fills its own tables
//! and sends full batches to the writer (the calling thread) over a bounded channel.

use std::collections::BTreeSet;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use arrow_array::RecordBatch;
use tracing::debug;

use super::writers::Writers;
use super::{origin_of, Progress};
use crate::config::Settings;
use crate::diagnostics::{Diagnostics, Origin};
use crate::resource::IdentifierIndex;
use crate::resource::{DocumentError, Walker};
use crate::sink::{StagedRun, TableWriter, WIDE_TABLE_LEAVES};
use crate::source::{
    describe_bytes, for_each_line, read_whole, split_lines, text_of, InputFile, InputFormat, Limits, Line,
    Part, Quarantine, Shard,
};
use crate::table::{Table, TableSet};

/// How often (in bytes) a big NDJSON file reports progress.
const PROGRESS_STEP: u64 = 8 << 20;

/// Stack of a worker thread: 8 times Rust's default, headroom for the deepest view expressions
/// and JSON the limits allow (only touched pages take memory).
const WORKER_STACK_BYTES: usize = 16 << 20;

/// What one worker thread learned, merged after all workers finish.
pub(super) struct WorkerResult {
    pub(super) diagnostics: Diagnostics,
    pub(super) index: IdentifierIndex,
    pub(super) pending: BTreeSet<String>,
    /// For each unit done: its file's position in the file list, and whether it was read cleanly.
    pub(super) outcomes: Vec<(usize, bool)>,
}

/// One piece of work: a whole file, or a part of a big uncompressed NDJSON file (so both cores
/// share a single large export file).
#[derive(Debug, Clone)]
pub(super) struct Unit {
    pub(super) file: usize,
    pub(super) part: Option<Part>,
}

/// NDJSON files larger than this are cut into parts of this size for the workers.
pub(super) const PART_BYTES: u64 = 32 << 20;

/// The units for a list of files: big uncompressed NDJSON files in parts when there are several
/// threads, everything else whole. A shard (`--shard`) keeps only its own units: whole files by
/// path, and big NDJSON files in parts (whatever the threads) spread over the shards by byte range.
///
/// A shard that cannot cut a big file fails (the shard is run again): the other shards read
/// their parts of it, so reading it whole or not at all would double or lose lines.
pub(super) fn units(files: &[InputFile], threads: usize, shard: Option<Shard>) -> anyhow::Result<Vec<Unit>> {
    let mut units = Vec::new();
    for (position, file) in files.iter().enumerate() {
        let splittable = (threads > 1 || shard.is_some()) && is_splittable(file);
        match splittable.then(|| split_lines(file, PART_BYTES)) {
            Some(Err(error)) if shard.is_some() => anyhow::bail!(
                "cannot cut {} into parts for the shards ({error}); nothing of this shard is \
                 committed: run it again",
                file.relative
            ),
            Some(Ok(parts)) if parts.len() > 1 => {
                let owned = parts
                    .into_iter()
                    .enumerate()
                    .filter(|(number, _)| shard.is_none_or(|s| s.owns_part(&file.relative, *number)));
                units.extend(owned.map(|(_, part)| Unit {
                    file: position,
                    part: Some(part),
                }));
            }
            // Unsplittable, or unreadable now: one unit, which reports the error if there is one.
            _ if shard.is_none_or(|s| s.owns_file(&file.relative)) => units.push(Unit {
                file: position,
                part: None,
            }),
            _ => {}
        }
    }
    units.shrink_to_fit();
    Ok(units)
}

/// Whether a file is big enough to cut into byte-range parts, and can be (uncompressed NDJSON).
pub(super) fn is_splittable(file: &InputFile) -> bool {
    file.format == InputFormat::Ndjson && !file.gzip && file.size > 2 * PART_BYTES
}

/// What every worker shares: the tables to fill, their stop flags, the files, progress.
pub(super) struct Work<'w> {
    pub(super) templates: &'w [Box<dyn Table>],
    pub(super) stopped: &'w Arc<[AtomicBool]>,
    pub(super) files: &'w [InputFile],
    pub(super) units: &'w [Unit],
    pub(super) progress: &'w dyn Progress,
    pub(super) quarantine: Option<&'w Quarantine>,
}

/// Batches that may wait in the channel for the writer besides one per worker. A batch of a
/// resource table holds up to 8-32 MB of JSON text (rows.rs, `BATCH_RAW_BYTES`), so the four
/// a worker could queue came to tens of MB while the writer was busy with a wide row group
/// (--resources all, 2 threads: 500 MB of Bundles 323 -> 311 MB peak RSS with one per worker,
/// of NDJSON about 400 -> 372 MB). With one per worker, though, the workers waited whenever
/// the writer closed a row group or wrote a footer. Two more (four on 2 threads) took 4-5% off
/// the time of 500 MB of Bundles and of NDJSON, for 8 and 16-22 MB more at the peak; four per
/// worker (eight) took another 4% off on Bundles but 50 MB more at the peak on NDJSON than
/// one per worker. A fixed number more, not one more per worker: with many workers the
/// writer is what they wait for, and the channel stays full (measured on 2 cores only).
const CHANNEL_EXTRA_BATCHES: usize = 2;

/// Runs the worker threads and, on this thread, the writer. Returns the workers' results and the
/// first write error, if any (after which workers stop at their next file).
pub(super) fn run_workers(
    settings: &Settings,
    work: &Work<'_>,
    staging: &dyn StagedRun,
    writers: &mut Writers,
) -> (Vec<WorkerResult>, Option<anyhow::Error>) {
    let next_file = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let (sender, receiver) = sync_channel::<Delivery>(settings.threads + CHANNEL_EXTRA_BATCHES);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..settings.threads.min(work.units.len()).max(1))
            .map(|_| {
                let sender = sender.clone();
                let (next_file, abort) = (&next_file, &abort);
                std::thread::Builder::new()
                    .stack_size(WORKER_STACK_BYTES)
                    .spawn_scoped(scope, move || worker(settings, work, next_file, abort, sender))
                    .expect("the system can start a worker thread")
            })
            .collect();
        drop(sender);
        let write_error = write_batches(receiver, staging, writers);
        if write_error.is_some() {
            abort.store(true, Ordering::Relaxed);
        }
        let mut write_error = write_error;
        let mut results = Vec::new();
        for joined in workers.into_iter().map(|w| w.join()) {
            match joined {
                Ok(result) => results.push(result),
                // Panics in conversion are caught per unit; one outside it leaves the worker's
                // results unknown, so the run fails (exit 3) rather than commit a guess.
                Err(panic) => {
                    let message = format!("a worker thread failed: {}", panic_message(&*panic));
                    write_error.get_or_insert(anyhow::anyhow!(message));
                }
            }
        }
        (results, write_error)
    })
}

/// The most the writers may hold in memory together before the fullest writes out its row
/// group. Each table's row groups are also cut at their own size (16 MiB encoded; a wide
/// table's at 32 MiB of held Arrow memory), but with thirty tables (`--view default`) that
/// alone would let memory grow with the input up to several hundred MB before every table had
/// filled one.
///
/// 32 MiB rather than 48: measured in interleaved pairs on 500 MB, the same wall time for
/// `--resources all` (1.000 on Bundles, 0.984 on NDJSON), `--view default` (1.000, 0.990) and the
/// built-in tables (1.000), and a lower peak for the lossless tables (Bundles 238 -> 234 MB,
/// NDJSON 227 -> 212 MB; 4 GB of Bundles 340 -> 331 MB, 1 GB of NDJSON 289 -> 278 MB). At 24 MiB
/// the lossless run took 1.5% longer on 500 MB and 5-7% longer on 4 GB.
const WRITE_BUFFER_BUDGET: usize = 32 << 20;

/// A row group smaller than this is not written out early: most of what its writer holds is then
/// allocated per row group anyway (bloom filters), so cutting it would free little and leave the
/// table in small row groups.
const SMALLEST_EARLY_ROW_GROUP: usize = 1 << 20;

/// The most column chunks whose accounts the writers' open files may keep together (see
/// [`TableWriter::footer_chunks`]): the file with the most is completed past it. Each wide
/// table completes its file at 16 000 chunks of its own. Set when the parquet crate's writer
/// kept about 850 bytes a chunk (twenty resource tables could have kept 270 MB together; at the
/// end of 1.5 GB of Bulk NDJSON they kept about 50 MB); `sink/wide_file.rs` keeps 24 bytes for
/// a null chunk, nearly all of them, and the budget now mostly bounds the footers being
/// encoded at once.
const FOOTER_CHUNKS_BUDGET: usize = 32_000;

/// A batch on its way from a worker to the writer, for the table at `table` in the run's list.
struct Delivery {
    table: usize,
    batch: RecordBatch,
    /// Sent once the worker had no input left (the last rows of its tables): the writer holds
    /// it back for the parts' completion ([`Writers::hold_back`]).
    last: bool,
}

/// Writes batches as they arrive, opening a table's part at its first batch, and holds back a
/// worker's last ones; after an error, drains the channel so workers can finish.
fn write_batches(
    receiver: Receiver<Delivery>,
    staging: &dyn StagedRun,
    writers: &mut Writers,
) -> Option<anyhow::Error> {
    let mut first_error = None;
    for Delivery { table, batch, last } in receiver {
        if first_error.is_none() {
            let to_write = if last {
                match writers.hold_back(staging, table, batch) {
                    Ok(given_back) => given_back,
                    Err(error) => {
                        first_error = Some(error);
                        continue;
                    }
                }
            } else {
                vec![batch]
            };
            for batch in to_write {
                let written = writers
                    .writer(staging, table)
                    .and_then(|writer| writer.write(&batch));
                if let Err(error) = written.and_then(|()| keep_within_budget(writers.opened())) {
                    first_error = Some(error);
                    break;
                }
            }
        }
    }
    first_error
}

/// Writes out row groups in progress while the writers together hold more than
/// [`WRITE_BUFFER_BUDGET`] (see [`keep_rows_within_budget`]); then completes the files with
/// the most column chunks while they keep more than [`FOOTER_CHUNKS_BUDGET`].
fn keep_within_budget(writers: &mut [Box<dyn TableWriter>]) -> anyhow::Result<()> {
    keep_rows_within_budget(writers)?;
    let mut total: usize = writers.iter().map(|writer| writer.footer_chunks()).sum();
    while total > FOOTER_CHUNKS_BUDGET {
        let fullest = writers
            .iter_mut()
            .max_by_key(|writer| writer.footer_chunks())
            .expect("a run writes at least one table");
        let chunks = fullest.footer_chunks();
        fullest.complete_file()?;
        if fullest.footer_chunks() == chunks {
            break; // A writer that cannot complete its file early.
        }
        total -= chunks - fullest.footer_chunks();
    }
    Ok(())
}

/// While the writers together hold more than [`WRITE_BUFFER_BUDGET`], writes out the row group
/// in progress that frees the most memory for the column chunks it costs: its bytes per leaf
/// column, every table weighed as having at least [`WIDE_TABLE_LEAVES`] (so that among the
/// built-in tables and views, the fullest goes first). A row group under
/// [`SMALLEST_EARLY_ROW_GROUP`] is not written out early.
///
/// Why per leaf: a wide table's row group costs a column chunk per leaf (the lossless
/// ExplanationOfBenefit table has 8,087), nearly all of them null chunks, and each costs its
/// pages, metadata and footer entry whatever its rows. Writing out the fullest table instead cut
/// the tables fed all along into small row groups while tables that had taken their last rows
/// sat on their share of the budget: on Bulk NDJSON (a file per type), the Observation table got
/// row groups of 15,000-25,000 rows. Weighed per leaf, 500 MB of NDJSON took 9-15% fewer column
/// chunks and 4.5% less CPU time, and 500 MB of Bundles 2% fewer chunks (bench/RESULTS.md, the
/// fifteenth round).
fn keep_rows_within_budget(writers: &mut [Box<dyn TableWriter>]) -> anyhow::Result<()> {
    for _ in 0..writers.len() {
        let total: usize = writers.iter().map(|writer| writer.buffered_bytes()).sum();
        if total <= WRITE_BUFFER_BUDGET {
            return Ok(());
        }
        let best = writers
            .iter_mut()
            .filter(|writer| writer.row_group_bytes() >= SMALLEST_EARLY_ROW_GROUP)
            .max_by_key(|writer| writer.row_group_bytes() / writer.leaf_columns().max(WIDE_TABLE_LEAVES));
        let Some(best) = best else {
            return Ok(());
        };
        best.flush()?;
    }
    Ok(())
}

fn worker(
    settings: &Settings,
    work: &Work<'_>,
    next_file: &AtomicUsize,
    abort: &AtomicBool,
    sender: SyncSender<Delivery>,
) -> WorkerResult {
    let fresh = work
        .templates
        .iter()
        .map(|table| table.fresh(settings.batch_size))
        .collect();
    let mut tables = TableSet::new(fresh, settings.batch_size, work.stopped.clone());
    let mut index = IdentifierIndex::default();
    let mut diagnostics = Diagnostics::default();
    let mut outcomes = Vec::new();
    let deliver = |table, batch, last| sender.send(Delivery { table, batch, last }).is_ok();
    let send = |batches: Vec<(usize, RecordBatch)>| {
        batches
            .into_iter()
            .all(|(table, batch)| deliver(table, batch, false))
    };
    while let Some(unit) = work.units.get(next_file.fetch_add(1, Ordering::Relaxed)) {
        let file = &work.files[unit.file];
        if abort.load(Ordering::Relaxed) {
            break;
        }
        debug!(file = %file.relative, "converting");
        let mut walker = Walker {
            sink: &mut tables,
            index: &mut index,
            diagnostics: &mut diagnostics,
        };
        let reported = std::cell::Cell::new(0u64);
        let on_bytes = |bytes: u64| {
            reported.set(reported.get() + bytes);
            work.progress.bytes_done(bytes);
        };
        // A panic (a bug) while converting loses only this unit's current document and the
        // rest of the unit: its rows are rolled back, the earlier documents' rows kept, and the
        // worker goes on with the next unit.
        let converted = catch_unwind(AssertUnwindSafe(|| {
            convert_file(
                file,
                unit.part.as_ref(),
                settings.input_limits(),
                &mut walker,
                work.quarantine,
                &on_bytes,
                &mut |walker| send(walker.sink.take_ready()),
            )
        }));
        let clean = match converted {
            Ok(clean) => clean,
            Err(panic) => {
                report_panic(file, &mut walker, work.quarantine, panic_message(&*panic));
                send(walker.sink.take_ready());
                false
            }
        };
        report_stopped(tables.end_unit(), &mut diagnostics);
        send(tables.take_ready());
        let bytes = unit.part.map_or(file.size, |part| part.end - part.start);
        diagnostics.bytes_read += bytes;
        work.progress.file_done(bytes.saturating_sub(reported.get()));
        outcomes.push((unit.file, clean));
    }
    let broken = tables.flush_each(|position, batch| deliver(position, batch, true));
    report_stopped(broken, &mut diagnostics);
    WorkerResult {
        diagnostics,
        index,
        pending: tables.pending_tables().clone(),
        outcomes,
    }
}

/// Records the tables a panic stopped while their batch was finished (see `table::stop`).
fn report_stopped(tables: Vec<String>, diagnostics: &mut Diagnostics) {
    for table in tables {
        let message = format!("table {table}: internal error while finishing a batch: not written");
        diagnostics.error(Origin::default(), message);
    }
}

/// The text of a panic's payload.
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

/// Records a panic while converting `file` as an error at the document it hit, rolls the
/// document's rows back and quarantines the file.
fn report_panic(
    file: &InputFile,
    walker: &mut Walker<'_, TableSet>,
    quarantine: Option<&Quarantine>,
    message: &str,
) {
    let line = walker.sink.document_line();
    let message = format!(
        "internal error (please report it): {message}; the rows of this document are dropped and \
         the rest of the file was not read"
    );
    let origin = Origin {
        line: (line > 0).then_some(line),
        ..origin_of(&file.relative)
    };
    walker.diagnostics.error(origin.clone(), message.clone());
    for table in walker.sink.roll_back_document() {
        let problem = format!("table {table} cannot be restored after the internal error: not written");
        walker.diagnostics.error(origin.clone(), problem);
    }
    if let Some(quarantine) = quarantine {
        if let Err(error) = quarantine.file(file, &[message], 0) {
            let message = format!("cannot copy to --errors-to: {error}");
            walker.diagnostics.error(origin_of(&file.relative), message);
        }
    }
}

/// Converts one file; returns whether it was read without any error. `deliver` is called after
/// each document so full batches leave the worker promptly.
fn convert_file(
    file: &InputFile,
    part: Option<&Part>,
    limits: Limits,
    walker: &mut Walker<'_, TableSet>,
    quarantine: Option<&Quarantine>,
    on_bytes: &dyn Fn(u64),
    deliver: &mut dyn FnMut(&mut Walker<'_, TableSet>) -> bool,
) -> bool {
    let errors_before = ErrorMark::of(walker.diagnostics);
    let outcome = convert_file_content(file, part, limits, walker, quarantine, on_bytes, deliver);
    if let (FileOutcome::Failed, Some(quarantine)) = (outcome, quarantine) {
        let (reasons, more) = errors_before.since(walker.diagnostics);
        if let Err(error) = quarantine.file(file, &reasons, more) {
            let message = format!("cannot copy to --errors-to: {error}");
            walker.diagnostics.error(origin_of(&file.relative), message);
        }
    }
    outcome == FileOutcome::Clean
}

/// How reading one input file went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileOutcome {
    Clean,
    /// Some NDJSON lines failed (each quarantined on its own); the rest of the file was read.
    SomeLinesFailed,
    /// The file failed as a whole (or a JSON document had errors): quarantine the whole file.
    Failed,
}

/// Where a worker's error list stood before some input, to tell which errors that input caused.
#[derive(Clone, Copy)]
struct ErrorMark {
    count: u64,
    kept: usize,
}

impl ErrorMark {
    fn of(diagnostics: &Diagnostics) -> Self {
        ErrorMark {
            count: diagnostics.error_count,
            kept: diagnostics.errors.len(),
        }
    }

    /// The messages of the errors since the mark (with their lines), and how many more were only
    /// counted.
    fn since(self, diagnostics: &Diagnostics) -> (Vec<String>, u64) {
        let reasons: Vec<String> = diagnostics.errors[self.kept.min(diagnostics.errors.len())..]
            .iter()
            .map(|e| match e.origin.line {
                Some(line) => format!("line {line}: {}", e.message),
                None => e.message.clone(),
            })
            .collect();
        let more = (diagnostics.error_count - self.count).saturating_sub(reasons.len() as u64);
        (reasons, more)
    }
}

fn convert_file_content(
    file: &InputFile,
    part: Option<&Part>,
    limits: Limits,
    walker: &mut Walker<'_, TableSet>,
    quarantine: Option<&Quarantine>,
    on_bytes: &dyn Fn(u64),
    deliver: &mut dyn FnMut(&mut Walker<'_, TableSet>) -> bool,
) -> FileOutcome {
    let fail = |walker: &mut Walker<'_, TableSet>, line: Option<u64>, message: String| {
        let origin = Origin {
            line,
            ..origin_of(&file.relative)
        };
        walker.diagnostics.error(origin, message);
        FileOutcome::Failed
    };
    match file.format {
        InputFormat::Json => {
            let content = match read_whole(file, limits.max_json_bytes) {
                Ok(content) => content,
                Err(error) if error.kind() == io::ErrorKind::FileTooLarge => {
                    return fail(walker, None, error.to_string())
                }
                Err(error) => return fail(walker, None, format!("cannot read: {error}")),
            };
            if content.iter().all(u8::is_ascii_whitespace) {
                return fail(walker, None, "empty file".to_owned());
            }
            let text = match text_of(&content) {
                Ok(text) => text,
                Err(valid_up_to) => {
                    let line = line_of_offset(&content, valid_up_to);
                    return fail(walker, Some(line), "invalid UTF-8".to_owned());
                }
            };
            walker.sink.begin_document(1);
            let outcome = walker.document(&file.relative, text, 1);
            deliver(walker);
            match outcome {
                Ok(true) => FileOutcome::Clean,
                Ok(false) => FileOutcome::Failed,
                Err(DocumentError { line, message }) => fail(walker, Some(line), message),
            }
        }
        InputFormat::Ndjson => {
            let mut clean = true;
            let mut documents = 0u64;
            let mut last_line = 0;
            // Progress on a big file every few MB (uncompressed files: line bytes are file bytes).
            let mut unreported = 0u64;
            let read = for_each_line(file, part, limits.max_line_bytes, |number, line| {
                last_line = number;
                let length = match line {
                    Line::Text(bytes) => bytes.len() as u64 + 1,
                    Line::TooLong(length) => length,
                };
                if !file.gzip {
                    unreported += length;
                    if unreported >= PROGRESS_STEP {
                        on_bytes(std::mem::take(&mut unreported));
                    }
                }
                let bytes = match line {
                    Line::Text(bytes) => bytes,
                    Line::TooLong(_) => {
                        documents += 1;
                        clean = false;
                        let message = format!(
                            "line longer than {} (max_line_bytes, --max-line-bytes): skipped",
                            describe_bytes(limits.max_line_bytes)
                        );
                        fail(walker, Some(number), message.clone());
                        if let Some(quarantine) = quarantine {
                            if let Err(error) = quarantine.line(file, number, None, &[message]) {
                                let message = format!("cannot write line {number} to --errors-to: {error}");
                                walker.diagnostics.error(origin_of(&file.relative), message);
                            }
                        }
                        return;
                    }
                };
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return;
                }
                documents += 1;
                let mark = ErrorMark::of(walker.diagnostics);
                walker.sink.begin_document(number);
                let outcome = match text_of(bytes) {
                    Ok(text) => walker.document(&file.relative, text, number),
                    Err(_) => Err(DocumentError {
                        line: number,
                        message: "invalid UTF-8".to_owned(),
                    }),
                };
                let line_clean = match outcome {
                    Ok(line_clean) => line_clean,
                    Err(DocumentError { line, message }) => {
                        fail(walker, Some(line), message);
                        false
                    }
                };
                clean &= line_clean;
                if let (false, Some(quarantine)) = (line_clean, quarantine) {
                    let (reasons, _) = mark.since(walker.diagnostics);
                    if let Err(error) = quarantine.line(file, number, Some(bytes), &reasons) {
                        let message = format!("cannot copy line {number} to --errors-to: {error}");
                        walker.diagnostics.error(origin_of(&file.relative), message);
                    }
                }
                deliver(walker);
            });
            if let Err(error) = read {
                let message = format!("cannot read past line {last_line}: {error}");
                fail(walker, Some(last_line + 1), message)
            } else if documents == 0 && part.is_none() {
                fail(walker, None, "empty file: no resources".to_owned())
            } else if clean {
                FileOutcome::Clean
            } else {
                FileOutcome::SomeLinesFailed
            }
        }
    }
}

fn line_of_offset(bytes: &[u8], offset: usize) -> u64 {
    1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod delivery_tests {
    use super::super::writers::tests::{batch, staged_run, three_tables};
    use super::*;

    #[test]
    fn a_workers_last_batches_are_held_back_and_the_others_written_at_once() {
        let (_dir, staging) = staged_run();
        let mut writers = three_tables();
        let (sender, receiver) = sync_channel(4);
        let deliveries = [(0, &["a"][..], false), (1, &["b", "c"][..], true)];
        for (table, ids, last) in deliveries {
            let batch = batch(ids);
            sender.send(Delivery { table, batch, last }).unwrap();
        }
        drop(sender);
        assert!(write_batches(receiver, &*staging, &mut writers).is_none());
        let opened = writers.opened();
        assert_eq!(opened.len(), 2, "a batch held back opens its part");
        assert!(opened[0].buffered_bytes() > 0, "written at once");
        assert_eq!(opened[1].buffered_bytes(), 0, "held back");
        assert_eq!(writers.finish(1).unwrap(), [Some(1), Some(2), None]);
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    type Counter = Arc<std::sync::atomic::AtomicUsize>;

    /// A writer of a table of `leaves` leaf columns that holds the bytes it is told (all of them
    /// in its row group) until flushed, and whose open file keeps the metadata of the chunks it
    /// is told of until completed.
    struct Holding {
        bytes: Counter,
        chunks: Counter,
        leaves: usize,
    }

    impl TableWriter for Holding {
        fn write(&mut self, _batch: &RecordBatch) -> anyhow::Result<()> {
            Ok(())
        }
        fn buffered_bytes(&self) -> usize {
            self.bytes.load(Ordering::Relaxed)
        }
        fn row_group_bytes(&self) -> usize {
            self.bytes.load(Ordering::Relaxed)
        }
        fn flush(&mut self) -> anyhow::Result<()> {
            self.bytes.store(0, Ordering::Relaxed);
            Ok(())
        }
        fn leaf_columns(&self) -> usize {
            self.leaves
        }
        fn footer_chunks(&self) -> usize {
            self.chunks.load(Ordering::Relaxed)
        }
        fn complete_file(&mut self) -> anyhow::Result<()> {
            self.chunks.store(0, Ordering::Relaxed);
            Ok(())
        }
        fn finish(self: Box<Self>) -> anyhow::Result<u64> {
            Ok(0)
        }
    }

    /// Writers of tables of a few dozen leaves holding `bytes` and keeping `chunks`, pair by
    /// pair, and the counters of what each holds (bytes) or keeps (chunks).
    fn holding(bytes: &[usize], chunks: &[usize]) -> (Vec<Box<dyn TableWriter>>, Vec<Counter>, Vec<Counter>) {
        holding_leaves(bytes, chunks, &vec![30; bytes.len()])
    }

    /// [`holding`], the tables of `leaves` leaf columns each.
    fn holding_leaves(
        bytes: &[usize],
        chunks: &[usize],
        leaves: &[usize],
    ) -> (Vec<Box<dyn TableWriter>>, Vec<Counter>, Vec<Counter>) {
        let counters = |values: &[usize]| -> Vec<Counter> {
            values.iter().map(|&value| Arc::new(value.into())).collect()
        };
        let (bytes, chunks) = (counters(bytes), counters(chunks));
        let writers = bytes
            .iter()
            .zip(&chunks)
            .zip(leaves)
            .map(|((bytes, chunks), &leaves)| {
                Box::new(Holding {
                    bytes: bytes.clone(),
                    chunks: chunks.clone(),
                    leaves,
                }) as Box<dyn TableWriter>
            })
            .collect();
        (writers, bytes, chunks)
    }

    #[test]
    fn the_files_keeping_most_chunk_metadata_are_completed_until_all_fit_the_budget() {
        let (mut writers, _, kept) = holding(&[0; 5], &[16_000, 15_000, 12_000, 7_000, 10]);
        keep_within_budget(&mut writers).unwrap();
        let left: Vec<usize> = kept.iter().map(|k| k.load(Ordering::Relaxed)).collect();
        // 50 010 chunks: the two fullest files are completed (34 010 left after the first is
        // still over the budget), 19 010 are left.
        const { assert!(50_010 - 16_000 > FOOTER_CHUNKS_BUDGET && 50_010 - 31_000 <= FOOTER_CHUNKS_BUDGET) };
        assert_eq!(left, [0, 0, 12_000, 7_000, 10]);
    }

    #[test]
    fn the_fullest_writers_write_out_until_all_fit_the_budget() {
        let bytes = [
            WRITE_BUFFER_BUDGET / 2,
            WRITE_BUFFER_BUDGET / 3,
            WRITE_BUFFER_BUDGET / 4,
            10,
        ];
        let (mut writers, held, _) = holding(&bytes, &[0; 4]);
        keep_within_budget(&mut writers).unwrap();
        let left: Vec<usize> = held.iter().map(|h| h.load(Ordering::Relaxed)).collect();
        assert_eq!(
            left,
            [0, WRITE_BUFFER_BUDGET / 3, WRITE_BUFFER_BUDGET / 4, 10],
            "only the fullest"
        );
        keep_within_budget(&mut writers).unwrap();
        assert_eq!(
            held[1].load(Ordering::Relaxed),
            WRITE_BUFFER_BUDGET / 3,
            "under the budget: nothing written out"
        );
    }

    #[test]
    fn the_row_groups_freeing_most_bytes_per_leaf_are_written_out_first() {
        const MB: usize = 1 << 20;
        // An ExplanationOfBenefit-like table, the fullest; an Observation-like one; a narrower
        // resource table; a built-in table. 34 MB together, over the budget, and under it once
        // the narrower table's row group is written out.
        let bytes = [17 * MB, 8 * MB, 7 * MB, 2 * MB];
        const { assert!(34 * MB > WRITE_BUFFER_BUDGET && 27 * MB <= WRITE_BUFFER_BUDGET) };
        let leaves = [8_087, 4_743, 1_500, 40];
        let (mut writers, held, _) = holding_leaves(&bytes, &[0; 4], &leaves);
        keep_within_budget(&mut writers).unwrap();
        let left: Vec<usize> = held.iter().map(|h| h.load(Ordering::Relaxed)).collect();
        // Per leaf: 2.2 KB, 1.7 KB, 4.9 KB, and 4 KB for the built-in table weighed as 512
        // leaves (52 KB for its own 40).
        assert_eq!(left, [17 * MB, 8 * MB, 0, 2 * MB], "the most bytes per leaf");
    }

    #[test]
    fn row_groups_under_the_smallest_early_one_are_left_even_freeing_most_per_leaf() {
        let small = SMALLEST_EARLY_ROW_GROUP - 1;
        let bytes = [WRITE_BUFFER_BUDGET, small];
        let (mut writers, held, _) = holding_leaves(&bytes, &[0; 2], &[8_000_000, 20]);
        keep_within_budget(&mut writers).unwrap();
        let left: Vec<usize> = held.iter().map(|h| h.load(Ordering::Relaxed)).collect();
        assert_eq!(left, [0, small]);
    }
}
