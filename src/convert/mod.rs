//! The conversion run, end to end: discover inputs, parse them on worker threads into per-worker
//! table batches, write the batches from one writer thread, resolve conditional references once
//! every identifier is known, then move the finished tables into place and write the report.
//! [`compact`] is the other run that changes an output folder, in the same steps.

mod bundles;
pub mod compact;
pub mod export;
pub mod shards;
mod worker;
mod writers;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow_schema::SchemaRef;
use std::time::SystemTime;

use anyhow::Result;
use tracing::info;

use crate::config::{Settings, WriteMode};
use crate::diagnostics::{Diagnostics, Origin, WarningKind};
use crate::report::{RunReport, TableReport};
use crate::resource::{IdentifierIndex, IndexedTarget};
use crate::sink::{
    RunInfo, StagedRun, Store, WriteOptions, CONTRACT_KEY, LOOKUP_INDEX_KEY, RESOURCE_TYPE_KEY, TABLE_KEY,
};
use crate::source::{discover, retire_input, Discovery, Quarantine};
use crate::state::{InputRecord, RunRecord, State, STATE_FILE};
use crate::table::deleted::{DeletedTable, DELETED_TABLE};
use crate::table::lossless::{self, ResourceTable};
use crate::table::PENDING_MARKER;
use crate::table::{builtin_tables, stop_flags, Table};
use crate::UsageError;
use worker::{run_workers, units, Work};
use writers::Writers;

/// The report file's name inside `--out`.
pub const REPORT_FILE: &str = ".fhir2table/_run.json";

/// Hooks for showing progress. The command line draws a bar on a terminal; library users and
/// tests pass `&()`, which shows nothing.
pub trait Progress: Sync {
    /// The run has `units` pieces of work (files, or parts of big NDJSON files) of `bytes` bytes.
    fn start(&self, _units: u64, _bytes: u64) {}
    /// One more piece is done (`bytes`: the part of its size not reported by `bytes_done`).
    fn file_done(&self, _bytes: u64) {}
    /// Part of a big file is done (NDJSON reports every few MB); `file_done` gets the rest.
    fn bytes_done(&self, _bytes: u64) {}
    /// All input is read; the tables are being finished.
    fn finish(&self) {}
}

impl Progress for () {}

/// Converts `settings.input` into tables under `settings.output` and returns the run report (also
/// written to `OUT/.fhir2table/_run.json`). Errors before any work are [`UsageError`]s; an `Err` of another
/// kind means the output could not be written, and the previous output is left as it was.
///
/// The run goes through the steps of the pipeline in README, each a function below: plan
/// (`output_tables`, `open_output`, `select_inputs`), convert (`convert_inputs`), resolve
/// (`resolve`), commit (`commit`) and after the commit (`after_commit`).
pub fn convert(settings: &Settings, progress: &dyn Progress) -> Result<RunReport> {
    let started = SystemTime::now();
    if !settings.resources.types().is_empty() {
        crate::allocator::prefer_mimalloc();
    }
    let mut templates = output_tables(settings)?;
    let outcome = convert_with(settings, progress, &mut templates, started);
    drop_apart(templates);
    outcome
}

/// Drops `tables` on a thread of its own. The resource tables' shapes and Arrow schemas are
/// thousands of small allocations per type, and freeing them took 1% of a `--resources all`
/// run on 500 MB of Bundles, at its very end, with nothing else left to run beside it. The
/// command line's process may exit before the thread is done, and that frees them all at once.
fn drop_apart(tables: Vec<Box<dyn Table>>) {
    let spawned = std::thread::Builder::new()
        .name("fhir2table-drop".to_owned())
        .spawn(move || drop(tables));
    // Without a thread, the tables went down with the closure, here.
    drop(spawned);
}

/// [`convert`] with the tables it plans, `templates`.
fn convert_with(
    settings: &Settings,
    progress: &dyn Progress,
    templates: &mut [Box<dyn Table>],
    started: SystemTime,
) -> Result<RunReport> {
    let output = match settings.shard {
        Some(shard) => shards::open_shard(settings, shard)?,
        None => open_output(settings, templates)?,
    };
    // From here on the run owns the folder: whatever ends it (an error, a panic on this thread)
    // leaves the previous tables in place and a report saying why.
    let committed = Cell::new(false);
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        convert_in(settings, progress, &*output, templates, started, &committed)
    }));
    let error = match run {
        Ok(Ok((report, plan))) => return finish(settings, output, report, plan),
        Ok(Err(error)) if error.downcast_ref::<UsageError>().is_some() => return Err(error),
        Ok(Err(error)) => error,
        Err(panic) => anyhow::anyhow!(
            "internal error (a bug; please report it): {}",
            worker::panic_message(panic.as_ref())
        ),
    };
    if committed.get() {
        // The tables, state and report of this run are in place; only what came after failed.
        return Err(error.context("the tables were committed, but the run failed after that"));
    }
    report_failure(settings, &*output, started, &error);
    Err(error)
}

/// The run proper, once the output folder is locked and checked: the steps after planning the
/// tables, in order. `committed` is set as soon as the commit is done, so that a failure after it
/// does not report the run as failed.
fn convert_in(
    settings: &Settings,
    progress: &dyn Progress,
    output: &dyn Store,
    templates: &[Box<dyn Table>],
    started: SystemTime,
    committed: &Cell<bool>,
) -> Result<(RunReport, String)> {
    let options = WriteOptions {
        compression: settings.compression,
        threads: settings.threads,
    };
    let staging = output.stage(options).map_err(|e| UsageError(format!("{e:#}")))?;
    let mut inputs = select_inputs(settings, templates, started)?;
    let mut converted = convert_inputs(settings, progress, templates, &*staging, &inputs)?;
    let tables = resolve(settings, output, &*staging, templates, &mut converted)?;
    let report = commit(settings, staging, &mut inputs, &mut converted, &tables)?;
    committed.set(true);
    let plan = inputs.plan.clone();
    Ok((
        after_commit(settings, output, &inputs, converted, &tables, report)?,
        plan,
    ))
}

/// After a run: a shard that finished tries to commit its run's shards (it may be the last one);
/// the shard's own report is the run's outcome either way.
fn finish(
    settings: &Settings,
    output: Box<dyn Store>,
    mut report: RunReport,
    plan: String,
) -> Result<RunReport> {
    let Some(shard) = settings.shard else {
        return Ok(report);
    };
    // The shard's folder is done with; its lock must go before the commit takes it.
    drop(output);
    let trigger = shards::Trigger::Finished {
        shards: shard.count,
        plan: &plan,
        format: settings.format,
    };
    let outcome = match shards::commit_shards(&settings.output, trigger) {
        Ok(shards::ShardsCommit::Committed(merged)) => format!(
            "shard {shard} finished last and committed all {} shards into {}: {}",
            shard.count,
            settings.output.display(),
            merged.summary()
        ),
        Ok(shards::ShardsCommit::Recovered) => {
            format!("shard {shard} finished the commit of all shards that an interrupted process had begun")
        }
        Ok(shards::ShardsCommit::Nothing) => {
            format!("shard {shard} is converted; another process committed the shards")
        }
        Ok(shards::ShardsCommit::Waiting(why)) => {
            format!("shard {shard} is converted; the shards are not committed yet: {why}")
        }
        Err(error) => {
            return Err(error.context(format!(
                "shard {shard} is converted and kept, but committing the shards failed; \
                 run `fhir2table commit {}` to try again",
                settings.output.display()
            )))
        }
    };
    info!("{outcome}");
    report.shards = Some(outcome);
    Ok(report)
}

/// Plan: checks the folders and the existing tables against `--mode`, then opens (locks) the
/// output folder. Every failure here is a usage error or a lock held by another run: nothing is
/// written, not even a report.
fn open_output(settings: &Settings, templates: &mut [Box<dyn Table>]) -> Result<Box<dyn Store>> {
    check_folders(settings)?;
    check_object_storage(settings)?;
    check_input_and_create_output(settings)?;
    let output = crate::sink::open(&settings.output, settings.format)?;
    if output.recovered() {
        info!("finished the commit of an interrupted run");
    }
    check_existing_tables(settings, &*output, templates)?;
    Ok(output)
}

/// Plan: `--in` must exist; `--out` is created if it does not.
fn check_input_and_create_output(settings: &Settings) -> Result<(), UsageError> {
    crate::source::check_input(&settings.input)?;
    if crate::remote::is_url(&settings.output) {
        return Ok(());
    }
    std::fs::create_dir_all(&settings.output).map_err(|e| {
        UsageError(format!(
            "cannot create output folder {}: {e}",
            settings.output.display()
        ))
    })
}

/// The inputs a run converts and what it knows about them before reading any.
struct Inputs {
    discovery: Discovery,
    /// The incremental state (`--incremental` only), updated by the commit.
    state: Option<State>,
    /// The state's record of each file in `discovery.files` (`--incremental` only).
    records: Vec<InputRecord>,
    /// Inputs left alone because an earlier run converted them as they are.
    unchanged: u64,
    /// The run's start in compact form: names its part files and its state records.
    stamp: String,
    started: SystemTime,
    /// Inputs found under `--in` before a shard took its share (`--shard`), and the
    /// fingerprint all shards of the run share (see `shards::plan_fingerprint`); empty unsharded.
    found_by_all: u64,
    plan: String,
}

/// Plan: finds the inputs under `--in` and, with `--incremental`, keeps only the new or changed.
fn select_inputs(settings: &Settings, templates: &[Box<dyn Table>], started: SystemTime) -> Result<Inputs> {
    let mut discovery = discover(&settings.input, Some(&settings.output), &settings.input_filter);
    let found_by_all = (discovery.files.len() + discovery.unreadable.len()) as u64;
    let mut plan = String::new();
    if let Some(shard) = settings.shard {
        plan = shards::plan_fingerprint(settings, shard, templates, &discovery.files);
        // Big NDJSON files are kept by every shard, which reads its own parts of them.
        discovery
            .files
            .retain(|file| worker::is_splittable(file) || shard.owns_file(&file.relative));
        discovery.unreadable.retain(|(path, _)| shard.owns_file(path));
    }
    // Incremental: only new or changed inputs are converted.
    let mut state = None;
    let mut unchanged = 0;
    let mut records = Vec::new();
    if settings.incremental {
        let mut known = State::load(&settings.output)?;
        let (selected, left_alone) = known.select(std::mem::take(&mut discovery.files));
        unchanged = left_alone;
        (discovery.files, records) = selected.into_iter().unzip();
        state = Some(known);
    }
    info!(
        files = discovery.files.len(),
        skipped = discovery.skipped.len(),
        excluded = discovery.excluded.len(),
        "found input files under {}",
        settings.input.display()
    );
    // Files are named by the run's start, so they sort oldest first in an appended dataset.
    let stamp = crate::sink::run_stamp(started);
    Ok(Inputs {
        discovery,
        state,
        records,
        unchanged,
        stamp,
        started,
        found_by_all,
        plan,
    })
}

/// What converting the inputs left: each table's staged file (still open), and what the workers
/// learned.
struct Converted {
    /// Each table's part file (named alike in every table), opened at its first rows.
    writers: Writers,
    /// Set for each table a data error stopped.
    stopped: Arc<[AtomicBool]>,
    diagnostics: Diagnostics,
    /// Every identifier seen, this run's and (incremental) the earlier runs'.
    index: IdentifierIndex,
    /// Tables holding conditional references to resolve.
    pending: BTreeSet<String>,
    /// Whether each input (by position in the file list) was read cleanly, part by part.
    file_clean: BTreeMap<usize, bool>,
    /// The positions of the inputs read cleanly: the ones to archive or delete.
    clean_files: Vec<usize>,
}

/// Convert: parses the inputs on worker threads into each table's staged Parquet file, then
/// gathers what the workers found (and the inputs that could not even be listed).
fn convert_inputs(
    settings: &Settings,
    progress: &dyn Progress,
    templates: &[Box<dyn Table>],
    staging: &dyn StagedRun,
    inputs: &Inputs,
) -> Result<Converted> {
    // Shards on other machines may share a pid (1, in containers): theirs are told apart by index.
    let tag = match settings.shard {
        Some(shard) => format!("s{}of{}", shard.index, shard.count),
        None => std::process::id().to_string(),
    };
    let part_file = crate::sink::part_file_name(&inputs.stamp, &tag);
    let parts = templates
        .iter()
        .map(|table| {
            let template = table.fresh(0);
            let schema = move || {
                // Tombstones (no resource type of their own) record none.
                let resource_type = Some(template.source_resource_type()).filter(|t| !t.is_empty());
                with_table_metadata(
                    template.schema(),
                    template.name(),
                    resource_type,
                    template.contract_version(),
                )
            };
            (table.name().to_owned(), Box::new(schema) as writers::PartSchema)
        })
        .collect();
    let mut writers = Writers::new(part_file, parts);

    let discovery = &inputs.discovery;
    let stopped = stop_flags(templates.len());
    let total_bytes = discovery.files.iter().map(|f| f.size).sum();
    let units = units(&discovery.files, settings.threads, settings.shard)?;
    // Objects on object storage are fetched a few ahead of the workers, in their order.
    let whole = units.iter().filter(|unit| unit.part.is_none());
    let _read_ahead = crate::source::read_ahead(whole.map(|unit| &discovery.files[unit.file]));
    progress.start(units.len() as u64, total_bytes);
    let quarantine = settings
        .errors_to
        .as_deref()
        .map(Quarantine::new)
        .transpose()
        .map_err(|error| UsageError(format!("--errors-to: {error}")))?;
    let work = Work {
        templates,
        stopped: &stopped,
        files: &discovery.files,
        units: &units,
        progress,
        quarantine: quarantine.as_ref(),
    };
    let (results, write_error) = run_workers(settings, &work, staging, &mut writers);
    progress.finish();
    if let Some(error) = write_error {
        return Err(error);
    }
    let mut diagnostics = Diagnostics::default();
    let mut index = match &inputs.state {
        Some(state) => IdentifierIndex::from_entries(&state.identifiers),
        None => IdentifierIndex::default(),
    };
    let mut pending = BTreeSet::new();
    // A file is clean when every unit (part) of it was.
    let mut file_clean: BTreeMap<usize, bool> = BTreeMap::new();
    for result in results {
        diagnostics.merge(result.diagnostics);
        index.merge(result.index);
        pending.extend(result.pending);
        for (file, clean) in result.outcomes {
            *file_clean.entry(file).or_insert(true) &= clean;
        }
    }
    let mut clean_files = Vec::new();
    for (&file, &clean) in &file_clean {
        if clean {
            diagnostics.files_read += 1;
            clean_files.push(file);
        } else {
            diagnostics.files_failed += 1;
        }
    }
    for (path, message) in &discovery.unreadable {
        diagnostics.files_failed += 1;
        diagnostics.error(origin_of(path), format!("cannot read: {message}"));
        if let Some(Err(error)) = quarantine
            .as_ref()
            .map(|q| q.unreadable(path, &format!("cannot read: {message}")))
        {
            diagnostics.error(origin_of(path), format!("cannot write to --errors-to: {error}"));
        }
    }
    Ok(Converted {
        writers,
        stopped,
        diagnostics,
        index,
        pending,
        file_clean,
        clean_files,
    })
}

/// The tables a run ends with: what the report says of each, and which the commit carries.
struct ResolvedTables<'t> {
    reports: BTreeMap<String, TableReport>,
    /// The tables to move into the output folder (stopped and needlessly empty ones are not).
    completed: Vec<&'t str>,
    /// The resource tables `--resources all` selects without a type list naming them: the
    /// commit of a sharded run writes them only with rows or to replace an older table.
    only_with_rows: Vec<&'t str>,
}

/// Resolve: closes each table's staged file and, now that every identifier of the run is known,
/// replaces its conditional references by ids; decides which tables the commit carries.
fn resolve<'t>(
    settings: &Settings,
    output: &dyn Store,
    staging: &dyn StagedRun,
    templates: &'t [Box<dyn Table>],
    converted: &mut Converted,
) -> Result<ResolvedTables<'t>> {
    let mut tables = BTreeMap::new();
    let mut completed = Vec::new();
    let only_with_rows = templates
        .iter()
        .filter(|table| only_when_selected_by_all(settings, table.as_ref()))
        .map(|table| table.name())
        .collect();
    let parts = converted.writers.finish(settings.threads)?;
    let stopped = converted.stopped.iter();
    for (position, ((table, part), stop)) in templates.iter().zip(parts).zip(stopped).enumerate() {
        let name = table.name();
        let rows = part.unwrap_or(0);
        let stopped = stop.load(Ordering::Relaxed);
        if stopped {
            // A view that met a data error is not written at all (see the errors in the report).
            tables.insert(name.to_string(), TableReport::stopped(output.location(name)));
            continue;
        }
        // A shard leaves them to the commit, which knows every shard's identifiers. (A table
        // whose rows were all rolled back after a panic has no part.)
        if converted.pending.contains(name) && settings.shard.is_none() && part.is_some() {
            let (index, diagnostics) = (&converted.index, &mut converted.diagnostics);
            let file = converted.writers.part_file();
            resolve_conditional_references(staging, name, file, index, diagnostics)?;
        }
        tables.insert(
            name.to_string(),
            TableReport::written(output.location(name), rows),
        );
        // Appending nothing to an existing table would only add an empty file; tombstones and
        // the resource tables of `--resources all` are only written when there are some rows (or
        // to replace an older table of their name, so no stale rows outlive an overwrite).
        let appending = mode_here(settings) == WriteMode::Append;
        let exists = output.exists(name);
        let only_with_rows = written_only_with_rows(settings, table.as_ref());
        if rows == 0 && ((appending && exists) || (only_with_rows && !exists)) {
            if only_with_rows {
                tables.remove(name);
            }
            continue;
        }
        if part.is_none() {
            converted.writers.write_empty(staging, position)?;
        }
        completed.push(name);
    }
    Ok(ResolvedTables {
        reports: tables,
        completed,
        only_with_rows,
    })
}

/// Whether a table is written only when it got rows, or to replace an older table of its name:
/// the tombstones, and the resource tables that only `--resources all` selects (so `all` makes
/// folders for the types the input has, not 146 folders, most of them empty). In a sharded run
/// the commit of all shards decides this, as it knows the output (see
/// `ShardManifest::only_with_rows`).
fn written_only_with_rows(settings: &Settings, table: &dyn Table) -> bool {
    if table.name() == DELETED_TABLE {
        return true;
    }
    match settings.shard {
        None => only_when_selected_by_all(settings, table),
        // Shard 0 keeps an empty part for that commit; the others need none.
        Some(shard) => shard.index != 0 && only_when_selected_by_all(settings, table),
    }
}

/// Whether the table is a resource table that `--resources all` selects and no type list names.
fn only_when_selected_by_all(settings: &Settings, table: &dyn Table) -> bool {
    let resource_type = table.resource_type();
    settings.resources.all
        && !settings.resources.written_when_empty(resource_type)
        && table.name() == lossless::table_name(resource_type)
        && crate::fhir::definitions::definitions()
            .resource_types()
            .contains(&resource_type)
}

/// Commit: moves the completed tables into place and writes the incremental state and the run
/// report, all in one [`StagedRun::commit`], so the three always agree. Returns the committed
/// report.
fn commit(
    settings: &Settings,
    staging: Box<dyn StagedRun>,
    inputs: &mut Inputs,
    converted: &mut Converted,
    tables: &ResolvedTables<'_>,
) -> Result<RunReport> {
    let replace = mode_here(settings) == WriteMode::Overwrite;
    // The files committed with the tables.
    let mut files = Vec::new();
    // A table stopped by a data error holds none of this run's rows, so no input is done with:
    // none is recorded as converted or retired, and a later run converts them all again
    // (compact then drops their earlier rows from the other tables).
    let all_tables_written = !tables.reports.values().any(|table| table.stopped);
    if !all_tables_written {
        converted.clean_files.clear();
    }
    if let Some(state) = inputs.state.as_mut() {
        // Only inputs read cleanly are done; one that failed (even for a passing reason) is
        // converted again by the next run.
        let records = std::mem::take(&mut inputs.records);
        for (position, (file, mut record)) in inputs.discovery.files.iter().zip(records).enumerate() {
            if all_tables_written && converted.file_clean.get(&position) == Some(&true) {
                record.run = inputs.stamp.clone();
                state.inputs.insert(file.relative.clone(), record);
            }
        }
        state.identifiers = converted.index.entries();
        state.add_run(RunRecord {
            run: inputs.stamp.clone(),
            started_at: crate::report::format_utc(inputs.started),
            converted: inputs.discovery.files.len() as u64,
            unchanged: inputs.unchanged,
            exit_code: i32::from(converted.diagnostics.lost_input()),
        });
        files.push((STATE_FILE, serde_json::to_string_pretty(state)?));
    }
    // The report is committed with the tables it describes, so the two always agree.
    let report = run_report(settings, inputs, &tables.reports, converted.diagnostics.clone());
    files.push((REPORT_FILE, serde_json::to_string_pretty(&report)?));
    if let Some(shard) = settings.shard {
        let manifest = shard_manifest(settings, shard, inputs, converted, tables);
        files.push((shards::MANIFEST_FILE, serde_json::to_string_pretty(&manifest)?));
    }
    let converted_inputs = inputs
        .discovery
        .files
        .iter()
        .map(|file| file.relative.clone())
        .collect();
    let run = RunInfo::new(inputs.started, "convert", converted_inputs);
    staging.commit(&tables.completed, replace, files, &run)?;
    Ok(report)
}

/// The write mode of the output this process commits to: a shard replaces its own folder whole
/// (the mode asked for applies when the shards are committed into `--out`).
fn mode_here(settings: &Settings) -> WriteMode {
    match settings.shard {
        Some(_) => WriteMode::Overwrite,
        None => settings.effective_mode(),
    }
}

/// What a finished shard records for the commit of all shards (see `shards.rs`).
fn shard_manifest(
    settings: &Settings,
    shard: crate::source::Shard,
    inputs: &Inputs,
    converted: &Converted,
    tables: &ResolvedTables<'_>,
) -> shards::ShardManifest {
    let files = &inputs.discovery.files;
    let outcomes = converted
        .file_clean
        .iter()
        .map(|(&position, &clean)| (files[position].relative.clone(), clean))
        .collect();
    let tables_in_order = tables.completed.iter().map(|name| name.to_string()).collect();
    let reports = tables
        .reports
        .iter()
        .filter(|(name, table)| table.stopped || tables.completed.contains(&name.as_str()))
        .map(|(name, table)| {
            let table = shards::ShardTable {
                rows: table.rows,
                stopped: table.stopped,
                pending: converted.pending.contains(name),
            };
            (name.clone(), table)
        })
        .collect();
    let since_epoch = inputs
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    shards::ShardManifest {
        format: shards::MANIFEST_FORMAT,
        shard: shard.index,
        shards: shard.count,
        plan: inputs.plan.clone(),
        mode: settings.effective_mode(),
        output_format: settings.format,
        compression: settings.compression,
        started: i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX),
        input: settings.input.display().to_string(),
        found: inputs.found_by_all,
        skipped: inputs.discovery.skipped.clone(),
        excluded: inputs.discovery.excluded.clone(),
        outcomes,
        unreadable: inputs.discovery.unreadable.len() as u64,
        table_order: tables_in_order,
        only_with_rows: tables
            .only_with_rows
            .iter()
            .map(|name| name.to_string())
            .collect(),
        tables: reports,
        identifiers: converted.index.entries(),
        diagnostics: converted.diagnostics.clone(),
    }
}

/// After the commit: only now are the inputs' rows committed, so the cleanly read ones are
/// archived or deleted (`--archive`, `--delete-processed`), and the report is written again
/// saying how that went. Returns the final report (the committed one when there is nothing to do).
fn after_commit(
    settings: &Settings,
    output: &dyn Store,
    inputs: &Inputs,
    mut converted: Converted,
    tables: &ResolvedTables<'_>,
    committed_report: RunReport,
) -> Result<RunReport> {
    if settings.archive.is_none() && !settings.delete_processed {
        return Ok(committed_report);
    }
    let mut diagnostics = converted.diagnostics;
    converted.clean_files.sort_unstable();
    for &position in &converted.clean_files {
        let file = &inputs.discovery.files[position];
        match retire_input(file, settings.archive.as_deref()) {
            Ok(()) => diagnostics.files_retired += 1,
            Err(error) => {
                let message = format!("converted, but cannot archive or delete: {error}");
                diagnostics.error(origin_of(&file.relative), message);
            }
        }
    }
    let report = run_report(settings, inputs, &tables.reports, diagnostics);
    // The committed report stays if this one cannot be written; the run itself succeeded.
    write_report(output, &report);
    Ok(report)
}

/// The report of a run that got as far as the commit.
fn run_report(
    settings: &Settings,
    inputs: &Inputs,
    tables: &BTreeMap<String, TableReport>,
    diagnostics: Diagnostics,
) -> RunReport {
    let discovery = &inputs.discovery;
    let found = discovery.files.len() as u64 + discovery.unreadable.len() as u64;
    let mut report = RunReport::new(
        inputs.started,
        settings.input.display().to_string(),
        settings.output.display().to_string(),
        found,
        discovery.skipped.clone(),
        diagnostics,
        tables.clone(),
    );
    report.inputs.unchanged = inputs.unchanged;
    report.set_excluded(&discovery.excluded);
    report
}

/// Writes the report of a run that failed before its commit, so the run report says why (the
/// previous tables are still in place). A report that cannot be written is only logged: the
/// run's own error is the one to return.
fn report_failure(settings: &Settings, output: &dyn Store, started: SystemTime, error: &anyhow::Error) {
    let report = RunReport::failed(
        started,
        settings.input.display().to_string(),
        settings.output.display().to_string(),
        format!("{error:#}"),
    );
    write_report(output, &report);
}

/// Writes the run report outside a commit; a failure is only logged, as the run's outcome stands.
fn write_report(output: &dyn Store, report: &RunReport) {
    let written = serde_json::to_vec_pretty(report)
        .map_err(anyhow::Error::from)
        .and_then(|json| output.write_file(REPORT_FILE, &json));
    if let Err(error) = written {
        tracing::error!("cannot write {}: {error:#}", output.location(REPORT_FILE));
    }
}

/// The schema with the table's name, the resource type of its rows and its contract version in
/// its metadata: `compact` applies deletions by the resource type (and a compacted file keeps
/// recording all three), and the sink writes them as Parquet key-value metadata for readers.
fn with_table_metadata(
    schema: SchemaRef,
    table: &str,
    resource_type: Option<&str>,
    contract: Option<&str>,
) -> SchemaRef {
    let mut metadata = schema.metadata().clone();
    metadata.insert(TABLE_KEY.to_owned(), table.to_owned());
    if let Some(resource_type) = resource_type {
        metadata.insert(RESOURCE_TYPE_KEY.to_owned(), resource_type.to_owned());
    }
    if let Some(contract) = contract {
        metadata.insert(CONTRACT_KEY.to_owned(), contract.to_owned());
    }
    let fields: Vec<arrow_schema::FieldRef> = schema
        .fields()
        .iter()
        .map(|field| match crate::table::is_lookup_column(field) {
            true => {
                let mut marked = field.metadata().clone();
                marked.insert(LOOKUP_INDEX_KEY.to_owned(), "true".to_owned());
                Arc::new(field.as_ref().clone().with_metadata(marked))
            }
            false => field.clone(),
        })
        .collect();
    Arc::new(arrow_schema::Schema::new_with_metadata(fields, metadata))
}

/// Refuses folders that overlap in ways that would lose or re-read data: an archive or
/// quarantine inside `--out` (a table replacement would take it along) or `--out` inside one, and
/// an archive or quarantine inside `--in` (the next run would read it again).
fn check_folders(settings: &Settings) -> Result<(), UsageError> {
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let (input, output) = (absolute(&settings.input), absolute(&settings.output));
    let others = [
        ("--archive", settings.archive.as_deref()),
        ("--errors-to", settings.errors_to.as_deref()),
    ];
    for (flag, folder) in others {
        let Some(folder) = folder.map(absolute) else {
            continue;
        };
        let problem = if folder.starts_with(&output) || output.starts_with(&folder) {
            "overlaps --out"
        } else if folder.starts_with(&input) {
            "is inside --in, so its files would be read again"
        } else {
            continue;
        };
        return Err(UsageError(format!(
            "{flag} {} {problem}; give it a folder of its own",
            folder.display()
        )));
    }
    Ok(())
}

/// Object storage URLs checked before anything is written: an `--errors-to` URL must name a
/// store, and an `--archive` URL is only for an `--in` URL on the same store (objects are
/// archived by a server-side copy; docs/OBJECT-STORAGE.md).
fn check_object_storage(settings: &Settings) -> Result<(), UsageError> {
    let url = |path: &Path| crate::remote::is_url(path);
    let refuse = |what: &str| {
        Err(UsageError(format!(
            "{what} is not supported yet; see docs/OBJECT-STORAGE.md"
        )))
    };
    if let Some(errors_to) = settings.errors_to.as_deref().filter(|path| url(path)) {
        crate::remote::Location::parse(&errors_to.to_string_lossy())
            .map_err(|error| UsageError(format!("--errors-to: {error:#}")))?;
    }
    let Some(archive) = settings.archive.as_deref().filter(|path| url(path)) else {
        return Ok(());
    };
    if !url(&settings.input) {
        return refuse("--archive to a URL with a local --in");
    }
    let location = |path: &Path| {
        crate::remote::Location::parse(&path.to_string_lossy())
            .map_err(|error| UsageError(format!("{error:#}")))
    };
    if !location(&settings.input)?.same_store(&location(archive)?) {
        return refuse("--archive to a URL on another store or bucket than --in");
    }
    Ok(())
}

/// The tables this run writes: the built-in ones (unless turned off), one per view and one per
/// resource type `--resources` selects. Views are read and checked here, before any input; bad
/// views and clashing names are usage errors.
fn output_tables(settings: &Settings) -> Result<Vec<Box<dyn Table>>, UsageError> {
    let mut tables = if settings.builtin_tables {
        builtin_tables(settings.batch_size)
    } else {
        Vec::new()
    };
    let resource_types = settings.resources.types();
    let resource_tables: Vec<String> = resource_types.iter().map(|t| lossless::table_name(t)).collect();
    let views = crate::view::load(&settings.views)?;
    let view_tables = crate::view::tables(&views, settings.batch_size, &resource_types);
    for (view, table) in views.iter().zip(view_tables) {
        // Ignoring case: on a case-insensitive file system the two would share one folder.
        if tables.iter().any(|t| t.name().eq_ignore_ascii_case(&view.name)) {
            let message = format!(
                "two views are named {}: each view needs its own table name (in {})",
                view.name, view.source
            );
            return Err(UsageError(message));
        }
        if resource_tables
            .iter()
            .any(|name| name.eq_ignore_ascii_case(&view.name))
        {
            let message = format!(
                "the view {} (in {}) has the name of the resource table --resources writes; \
                 rename the view or leave its type out of --resources",
                view.name, view.source
            );
            return Err(UsageError(message));
        }
        tables.push(Box::new(table));
    }
    for resource_type in resource_types {
        let table = ResourceTable::new(resource_type, settings.resource_options, settings.batch_size)
            .expect("the settings hold only R4 resource types");
        tables.push(Box::new(table));
    }
    if tables.is_empty() {
        return Err(UsageError(
            "nothing to write: --no-builtin-tables needs at least one --view or --resources".into(),
        ));
    }
    tables.push(Box::new(DeletedTable::new()));
    Ok(tables)
}

/// What `--mode` requires of the tables already in the output folder, checked before any input is
/// read: `error` wants no table there, `append` wants each existing table's schema to be exactly
/// the new one's.
fn check_existing_tables(
    settings: &Settings,
    output: &dyn Store,
    tables: &mut [Box<dyn Table>],
) -> Result<(), UsageError> {
    let usage = |error: anyhow::Error| UsageError(format!("{error:#}"));
    for table in tables {
        let name = table.name().to_owned();
        let name = name.as_str();
        match settings.effective_mode() {
            // A Delta table keeps its schema from version to version (kernel 0.30 cannot
            // replace it), so an overwrite must bring the same columns.
            WriteMode::Overwrite if settings.format == crate::sink::Format::Delta => {
                let Some(oldest) = output.parts(name).map_err(usage)?.into_iter().next() else {
                    continue;
                };
                let found = output.schema(&oldest).map_err(usage)?;
                let wanted = table.schema();
                if !crate::sink::same_columns(found.fields(), wanted.fields()) {
                    let difference = describe_difference(found.fields(), wanted.fields());
                    let message = format!(
                        "cannot overwrite the Delta table {}: its schema differs from the new rows' \
                         ({difference}), and a Delta table keeps its schema across versions; move it \
                         away or use another --out",
                        output.location(name)
                    );
                    return Err(UsageError(message));
                }
            }
            WriteMode::Overwrite => {}
            WriteMode::Error if !output.is_empty(name) => {
                let message = format!("{} exists and is not empty (--mode error)", output.location(name));
                return Err(UsageError(message));
            }
            WriteMode::Error => {}
            WriteMode::Append => {
                let Some(oldest) = output.parts(name).map_err(usage)?.into_iter().next() else {
                    continue;
                };
                let found = output.schema(&oldest).map_err(usage)?;
                if let Some(adapted) = table.keeping_stored_text(&found) {
                    if crate::sink::same_columns(found.fields(), adapted.schema().fields()) {
                        tracing::warn!(
                            "{}: time columns the view now types stay text, as the table holds them; \
                             rewrite it with --mode overwrite to type them",
                            output.location(name)
                        );
                        *table = adapted;
                    }
                }
                let wanted = table.schema();
                if !crate::sink::same_columns(found.fields(), wanted.fields()) {
                    let difference = describe_difference(found.fields(), wanted.fields());
                    let message = format!(
                        "cannot append to {}: its schema differs from the new rows' ({difference}); \
                         use --mode overwrite or another --out",
                        output.location(name)
                    );
                    return Err(UsageError(message));
                }
            }
        }
    }
    Ok(())
}

/// The first column where two schemas differ, in words.
fn describe_difference(found: &arrow_schema::Fields, wanted: &arrow_schema::Fields) -> String {
    for (i, wanted_field) in wanted.iter().enumerate() {
        match found.get(i) {
            None => return format!("column {} is missing", wanted_field.name()),
            Some(field) if !crate::sink::same_column(field, wanted_field) => {
                return format!(
                    "column {}: found {} {}{}, expected {} {}{}",
                    i + 1,
                    field.name(),
                    field.data_type(),
                    if field.is_nullable() { "" } else { " not null" },
                    wanted_field.name(),
                    wanted_field.data_type(),
                    if wanted_field.is_nullable() {
                        ""
                    } else {
                        " not null"
                    },
                )
            }
            Some(_) => {}
        }
    }
    format!("{} columns, expected {}", found.len(), wanted.len())
}

/// Second pass over a staged table: replaces staged conditional references by the ids the
/// run-wide identifier index knows, counting those it cannot resolve.
fn resolve_conditional_references(
    staging: &dyn StagedRun,
    table: &str,
    file: &str,
    index: &IdentifierIndex,
    diagnostics: &mut Diagnostics,
) -> Result<()> {
    let mut replace = |column: &str, reference: &str| match index.resolve_pending(reference) {
        Some(IndexedTarget::Unique(id)) => Some(id.to_string()),
        Some(IndexedTarget::Ambiguous) => {
            diagnostics.warn(
                WarningKind::AmbiguousReference,
                column,
                reference,
                Origin::default,
            );
            None
        }
        None => {
            diagnostics.warn(
                WarningKind::UnresolvedReference,
                column,
                reference,
                Origin::default,
            );
            None
        }
    };
    staging.rewrite_marked_strings(table, file, PENDING_MARKER, &mut replace)
}

pub(crate) fn origin_of(file: &str) -> Origin {
    Origin {
        file: file.to_owned(),
        line: None,
        resource: None,
    }
}
