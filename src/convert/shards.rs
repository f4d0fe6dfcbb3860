//! Sharded runs (`convert --shard I/N`): N processes convert one export into one output, each its
//! own share of the inputs (see `source::Shard`), and one commit makes all their rows visible at
//! once, exactly as one process converting everything would have written them.
//!
//! Each shard converts into a private output of its own, `OUT/.fhir2table/_shards/I-of-N/`,
//! through the same staging and journal as any run, so a killed shard leaves its folder as it
//! was and a retried one replaces it whole: no row twice. Its commit adds a manifest
//! (`.fhir2table/_shard.json` in that folder) holding what the final commit needs: the
//! identifiers it saw, its tables' row counts, its report. Conditional references are left
//! unresolved in the shards, since an identifier may be in another shard's inputs.
//!
//! The commit ([`commit_shards`], run by the last shard to finish or by `fhir2table commit OUT`)
//! takes `OUT`'s lock and every shard's, merges the identifiers, links each shard's part files
//! into one staging folder, resolves the conditional references there, and commits it with one
//! journal that also removes the shard folders: for `--format delta` that is one Delta commit per
//! table for all shards together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{check_folders, resolve_conditional_references, REPORT_FILE};
use crate::config::{Settings, WriteMode};
use crate::diagnostics::Diagnostics;
use crate::fhir::key_hash::KeyHasher;
use crate::report::{RunReport, TableReport};
use crate::resource::IdentifierIndex;
use crate::sink::{
    same_columns, shard_folder, shards_folder, Compression, Format, Locked, RunInfo, Store, WriteOptions,
    WrongFormat, TOOL_FOLDER,
};
use crate::source::{InputFile, Shard};
use crate::table::deleted::DELETED_TABLE;
use crate::table::Table;
use crate::UsageError;

/// The manifest of a finished shard, inside its folder.
pub(super) const MANIFEST_FILE: &str = ".fhir2table/_shard.json";

/// Version of the manifest's layout; a newer one is refused, not guessed at.
pub(super) const MANIFEST_FORMAT: u32 = 1;

/// What a finished shard tells the commit, committed with its tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ShardManifest {
    pub(super) format: u32,
    pub(super) shard: u32,
    pub(super) shards: u32,
    /// Equal for all shards of one run: the whole input listing, the tables and their schemas,
    /// the mode and the format (see [`plan_fingerprint`]). Shards of another run (another
    /// export, other views) are never committed together with these.
    pub(super) plan: String,
    pub(super) mode: WriteMode,
    pub(super) output_format: Format,
    pub(super) compression: Compression,
    /// The shard's start, in microseconds since 1970.
    pub(super) started: i64,
    pub(super) input: String,
    /// Inputs found under `--in`, by every shard (not only this one's share).
    pub(super) found: u64,
    pub(super) skipped: Vec<String>,
    pub(super) excluded: Vec<String>,
    /// The inputs (relative paths) this shard read all or part of, and whether cleanly.
    pub(super) outcomes: BTreeMap<String, bool>,
    /// Paths of this shard's share that could not be listed or read at all.
    pub(super) unreadable: u64,
    pub(super) tables: BTreeMap<String, ShardTable>,
    /// The tables in the order the run lists them (built-in tables, then views): the commit
    /// resolves references table by table in this order, as a single run does, so the merged
    /// report gives the same first examples.
    #[serde(default)]
    pub(super) table_order: Vec<String>,
    /// The tables written into the output only with rows, or to replace an older table of
    /// their name (the resource tables of `--resources all`): a shard keeps them all, with or
    /// without rows, and the commit decides as a single run does.
    #[serde(default)]
    pub(super) only_with_rows: Vec<String>,
    /// The identifier index of the shard's resources (see `IdentifierIndex::entries`).
    pub(super) identifiers: Vec<(u64, Option<String>)>,
    pub(super) diagnostics: Diagnostics,
}

/// One table of a finished shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ShardTable {
    pub(super) rows: u64,
    /// A data error stopped the table: the commit writes none of it, as a single run would not.
    pub(super) stopped: bool,
    /// Its part holds conditional references the commit resolves.
    pub(super) pending: bool,
}

/// Refuses what a shard cannot do: each shard sees only its share of the inputs, so the
/// incremental state and moving inputs away need the whole run, after its commit.
pub(super) fn check_shard_settings(settings: &Settings) -> Result<(), UsageError> {
    let refused = [
        ("--incremental", settings.incremental),
        ("--archive", settings.archive.is_some()),
        ("--delete-processed", settings.delete_processed),
    ];
    match refused.into_iter().find(|(_, set)| *set) {
        Some((flag, _)) => Err(UsageError(format!(
            "{flag} cannot be used with --shard: a shard converts only part of the input \
             (run the sharded conversion with --mode overwrite or append instead)"
        ))),
        None => Ok(()),
    }
}

/// Plan of a shard: checks the settings and folders, then opens (locks) the shard's own folder,
/// where it converts as if it were the output (`--mode overwrite`, Parquet). The output's own
/// tables are checked against `--mode` by the commit, which holds their lock.
pub(super) fn open_shard(settings: &Settings, shard: Shard) -> Result<Box<dyn Store>> {
    check_shard_settings(settings)?;
    check_folders(settings)?;
    super::check_input_and_create_output(settings)?;
    let folder = shard_folder(&settings.output, &shard.folder_name());
    if !crate::remote::is_url(&settings.output) {
        // Found before converting; the commit checks the rest (Parquet files where Delta tables
        // are asked for) under the output's lock.
        if settings.format == Format::Parquet && crate::sink::format_of(&settings.output) == Format::Delta {
            return Err(crate::sink::WrongFormat(format!(
                "{} holds Delta tables: use --format delta for this output, or another --out",
                settings.output.display()
            ))
            .into());
        }
        crate::fsops::create_dir_all(&folder)
            .map_err(|e| UsageError(format!("cannot create {}: {e}", folder.display())))?;
    }
    let output = crate::sink::open(&folder, Format::Parquet)?;
    if output.recovered() {
        tracing::info!("finished the commit of an interrupted run of shard {shard}");
    }
    Ok(output)
}

/// The fingerprint every shard of one run computes alike: the whole listing of `--in` (paths
/// and sizes, before the shard's share is taken), the tables with their schemas, and the mode,
/// format and number of shards.
pub(super) fn plan_fingerprint(
    settings: &Settings,
    shard: Shard,
    templates: &[Box<dyn Table>],
    files: &[InputFile],
) -> String {
    let mut hasher = KeyHasher::new();
    hasher.text(&shard.count.to_string());
    // Shards of another release may cut big files at other places or write other columns.
    hasher.text(env!("CARGO_PKG_VERSION"));
    hasher.text(&super::worker::PART_BYTES.to_string());
    hasher.text(&format!("{:?} {:?}", settings.effective_mode(), settings.format));
    for table in templates {
        hasher.text(table.name());
        hasher.text(&format!("{:?}", table.schema().fields()));
    }
    for file in files {
        hasher.text(&file.relative);
        hasher.text(&file.size.to_string());
    }
    format!("{:016x}", hasher.finish())
}

/// What a commit of the shards came to.
#[derive(Debug)]
pub enum ShardsCommit {
    /// Every shard's rows are committed into the output; the run's merged report.
    Committed(Box<RunReport>),
    /// Opening the output finished a commit of these shards that a killed process had begun.
    Recovered,
    /// The output holds no shards: nothing to do (they were committed already, say).
    Nothing,
    /// Nothing was committed, and why (shards missing or still running, another commit busy).
    Waiting(String),
}

/// Which shards a commit takes.
#[derive(Debug, Clone, Copy)]
pub enum Trigger<'p> {
    /// `fhir2table commit OUT`: the one complete set of shards in the output.
    Asked,
    /// The shard that just finished: its own run's set, if complete; a commit already under
    /// way (the lock is held) is left to finish it.
    Finished {
        shards: u32,
        plan: &'p str,
        /// The format the shard was asked for: the output's, while the set is incomplete.
        format: Format,
    },
}

/// A shard's folder and its manifest.
struct Finished {
    folder: PathBuf,
    name: String,
    manifest: ShardManifest,
}

/// Commits a complete set of finished shards of `out` as one run (see the module doc).
pub fn commit_shards(out: &Path, trigger: Trigger<'_>) -> Result<ShardsCommit> {
    let started = SystemTime::now();
    let home = ShardsHome::of(out)?;
    // The output is opened (locked, and an interrupted commit finished) before the shards are
    // judged: a commit killed half way through removing the shard folders has taken them in,
    // and only its journal can finish it. The format is the shards' own when they are all done.
    let first_look = complete_set(&home, trigger)?;
    let mut format = match (&first_look, trigger) {
        (Ok(set), _) => set[0].manifest.output_format,
        (Err(_), Trigger::Finished { format, .. }) => format,
        (Err(_), Trigger::Asked) => home.format_found(),
    };
    let (output, set) = loop {
        let output = match open_output(out, format, trigger) {
            Ok(Some(output)) => output,
            // A set complete at the first look, and the lock still held after the wait: a lock
            // left behind (object storage) or a stuck process. Nothing is committed; say so.
            Ok(None) if first_look.is_ok() => {
                return Err(Locked(format!(
                    "{} stayed locked for {} s while every shard had finished; nothing is \
                     committed: run `fhir2table commit {}` once the lock is free",
                    out.display(),
                    LOCK_WAIT.as_secs(),
                    out.display()
                ))
                .into())
            }
            Ok(None) => {
                return Ok(ShardsCommit::Waiting(format!(
                    "another process is committing {}",
                    out.display()
                )))
            }
            // `commit` on object storage with shards missing: the format was a guess.
            Err(error)
                if error.is::<WrongFormat>() && first_look.is_err() && matches!(trigger, Trigger::Asked) =>
            {
                format = match format {
                    Format::Parquet => Format::Delta,
                    Format::Delta => return Err(error),
                };
                continue;
            }
            Err(error) => return Err(error),
        };
        match complete_set(&home, trigger)? {
            // Completed since the first look, by shards of the other format than the folder's.
            Ok(set) if set[0].manifest.output_format != format => format = set[0].manifest.output_format,
            Ok(set) => break (output, set),
            Err(_) if home.names()?.is_empty() => return Ok(ShardsCommit::Nothing),
            Err(_) if output.recovered() => return Ok(ShardsCommit::Recovered),
            Err(waiting) => return Ok(ShardsCommit::Waiting(waiting)),
        }
    };
    // Each shard's lock, held to the end: a retried shard cannot change its folder under the
    // commit. Opening also finishes a shard's own interrupted commit.
    let mut shards = Vec::new();
    for finished in &set {
        match crate::sink::open(&finished.folder, Format::Parquet) {
            Ok(shard) => shards.push(shard),
            Err(error) if error.is::<Locked>() => {
                return Ok(ShardsCommit::Waiting(format!(
                    "shard {} is running",
                    finished.name
                )))
            }
            Err(error) => return Err(error),
        }
    }
    // Read again under the shards' locks: one may have been retried in the meantime; the set
    // must still be the folders whose locks are held.
    let names = |set: &[Finished]| set.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    let set = match complete_set(&home, trigger)? {
        Ok(again) if names(&again) == names(&set) => again,
        Ok(_) => {
            return Ok(ShardsCommit::Waiting(
                "the shards changed while the commit began; run it again".into(),
            ))
        }
        Err(waiting) => return Ok(ShardsCommit::Waiting(waiting)),
    };
    let report = commit_set(out, &*output, &set, &shards, started)?;
    Ok(ShardsCommit::Committed(Box::new(report)))
}

/// Where the shard folders of an output are: `OUT/.fhir2table/_shards/`, on local disk or on
/// object storage.
enum ShardsHome {
    /// The output folder, whose `.fhir2table/_shards/` holds the shard folders.
    Local(PathBuf),
    Remote(crate::remote::Location),
}

impl ShardsHome {
    fn of(out: &Path) -> Result<ShardsHome> {
        if crate::remote::is_url(out) {
            let location = crate::remote::Location::parse(&out.to_string_lossy())?;
            return Ok(ShardsHome::Remote(
                location.child(&format!("{TOOL_FOLDER}/{SHARDS}")),
            ));
        }
        if !out.is_dir() {
            return Err(UsageError(format!("{} is not a folder", out.display())).into());
        }
        Ok(ShardsHome::Local(out.to_path_buf()))
    }

    /// The shard folders' names (`I-of-N`), sorted; none when there is no shards folder.
    fn names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = match self {
            ShardsHome::Local(out) => match std::fs::read_dir(shards_folder(out)) {
                Ok(entries) => entries
                    .flatten()
                    .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
                    .collect(),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(error) => {
                    let folder = shards_folder(out);
                    return Err(
                        anyhow::Error::new(error).context(format!("cannot list {}", folder.display()))
                    );
                }
            },
            ShardsHome::Remote(location) => location.folders("")?,
        };
        names.retain(|name| parse_folder_name(name).is_some());
        names.sort();
        Ok(names)
    }

    /// Where the shard folder `name` is, as `sink::open` takes it.
    fn folder(&self, name: &str) -> PathBuf {
        match self {
            ShardsHome::Local(out) => shards_folder(out).join(name),
            ShardsHome::Remote(location) => PathBuf::from(location.display(name)),
        }
    }

    /// The manifest of shard folder `name`, or `None` while that shard has not finished.
    fn manifest(&self, name: &str) -> Result<Option<ShardManifest>> {
        let relative = format!("{name}/{MANIFEST_FILE}");
        let text = match self {
            ShardsHome::Local(out) => match std::fs::read(shards_folder(out).join(&relative)) {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(error) => {
                    let path = shards_folder(out).join(&relative);
                    return Err(anyhow::Error::new(error).context(format!("cannot read {}", path.display())));
                }
            },
            ShardsHome::Remote(location) => match location.get(&relative)? {
                Some(text) => text,
                None => return Ok(None),
            },
        };
        let where_ = self.folder(&relative);
        let manifest: ShardManifest = serde_json::from_slice(&text)
            .with_context(|| format!("the shard manifest {} is damaged", where_.display()))?;
        if manifest.format > MANIFEST_FORMAT {
            anyhow::bail!(
                "the shard manifest {} was written by a newer fhir2table (format {}); commit with that version",
                where_.display(),
                manifest.format
            );
        }
        Ok(Some(manifest))
    }

    /// The format of the output's tables when no complete set says which (object storage: the
    /// open finds out and refuses the wrong one).
    fn format_found(&self) -> Format {
        match self {
            ShardsHome::Local(out) => crate::sink::format_of(out),
            ShardsHome::Remote(_) => Format::Parquet,
        }
    }
}

/// The shards folder's name inside the tool's folder.
const SHARDS: &str = "_shards";

/// How long a finished shard waits for the output's lock: shards finishing together each hold it
/// for a moment to look at the set, and one of them must get to commit it.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Opens the output for the commit. Asked by `fhir2table commit`, a held lock is an error (exit
/// 4); a finished shard waits for it a while and then leaves the commit to the holder (`None`).
fn open_output(out: &Path, format: Format, trigger: Trigger<'_>) -> Result<Option<Box<dyn Store>>> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match crate::sink::open(out, format) {
            Err(error) if error.is::<Locked>() && matches!(trigger, Trigger::Finished { .. }) => {
                if std::time::Instant::now() >= deadline {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other.map(Some),
        }
    }
}

/// The finished shards the trigger asks for, all of one run and none missing, sorted by index;
/// or why there is no such set.
fn complete_set(home: &ShardsHome, trigger: Trigger<'_>) -> Result<Result<Vec<Finished>, String>> {
    let mut finished = Vec::new();
    let mut unfinished = Vec::new();
    for name in home.names()? {
        match home.manifest(&name)? {
            Some(manifest) if name != format!("{}-of-{}", manifest.shard, manifest.shards) => {
                anyhow::bail!(
                    "the shard folder {name} holds the manifest of shard {}/{}: it was copied or \
                     edited; remove {} and run that shard again",
                    manifest.shard,
                    manifest.shards,
                    home.folder(&name).display()
                )
            }
            Some(manifest) => finished.push(Finished {
                folder: home.folder(&name),
                name,
                manifest,
            }),
            None => unfinished.push(name),
        }
    }
    let wanted: Option<(u32, String)> = match trigger {
        Trigger::Finished { shards, plan, .. } => Some((shards, plan.to_owned())),
        Trigger::Asked => {
            // The run of the most recently started shard.
            let newest = finished.iter().max_by_key(|f| f.manifest.started);
            newest.map(|f| (f.manifest.shards, f.manifest.plan.clone()))
        }
    };
    let Some((count, plan)) = wanted else {
        return Ok(Err(match unfinished.is_empty() {
            true => "the output holds no shards to commit".to_owned(),
            false => format!("no shard has finished yet{}", describe_unfinished(&unfinished)),
        }));
    };
    finished.retain(|f| f.manifest.shards == count && f.manifest.plan == plan);
    // One folder per index: a manifest must match its folder's name (checked above).
    finished.sort_by_key(|f| f.manifest.shard);
    if finished.len() as u32 != count {
        let done: BTreeSet<u32> = finished.iter().map(|f| f.manifest.shard).collect();
        let missing: Vec<String> = (0..count)
            .filter(|i| !done.contains(i))
            .map(|i| format!("{i}/{count}"))
            .collect();
        return Ok(Err(format!(
            "{} of {count} shards have finished; waiting for shard {}",
            done.len(),
            missing.join(", ")
        )));
    }
    Ok(Ok(finished))
}

fn describe_unfinished(unfinished: &[String]) -> String {
    match unfinished.is_empty() {
        true => String::new(),
        false => format!(" (unfinished: {})", unfinished.join(", ")),
    }
}

/// `I-of-N` as a shard folder name.
fn parse_folder_name(name: &str) -> Option<Shard> {
    let (index, count) = name.split_once("-of-")?;
    format!("{index}/{count}").parse().ok()
}

/// Stages every shard's parts into the output and commits them with the merged report.
fn commit_set(
    out: &Path,
    output: &dyn Store,
    set: &[Finished],
    shards: &[Box<dyn Store>],
    started: SystemTime,
) -> Result<RunReport> {
    let first = &set[0].manifest;
    let mode = first.mode;
    // The run's table order, then any table only another shard has (none, for one run).
    let mut table_names: Vec<String> = first.table_order.clone();
    for finished in set {
        for name in finished.manifest.tables.keys() {
            if !table_names.contains(name) {
                table_names.push(name.clone());
            }
        }
    }
    check_existing(output, (mode, first.output_format), &table_names, shards)?;
    let mut staging = output.stage(WriteOptions {
        compression: first.compression,
        threads: 1,
    })?;
    let mut index = IdentifierIndex::default();
    for finished in set {
        index.merge(IdentifierIndex::from_entries(&finished.manifest.identifiers));
    }
    let mut diagnostics = Diagnostics::default();
    let mut reports = BTreeMap::new();
    let mut completed = Vec::new();
    for name in &table_names {
        let entries: Vec<&ShardTable> = set.iter().filter_map(|f| f.manifest.tables.get(name)).collect();
        if entries.iter().any(|table| table.stopped) {
            reports.insert(name.clone(), TableReport::stopped(output.location(name)));
            continue;
        }
        let rows: u64 = entries.iter().map(|table| table.rows).sum();
        let exists = output.exists(name);
        let only_with_rows = name == DELETED_TABLE || first.only_with_rows.contains(name);
        if rows == 0 && ((mode == WriteMode::Append && exists) || (only_with_rows && !exists)) {
            if !only_with_rows {
                reports.insert(name.clone(), TableReport::written(output.location(name), 0));
            }
            continue;
        }
        let pending = entries.iter().any(|table| table.pending);
        let mut taken = 0;
        for shard in shards {
            for part in shard.parts(name)? {
                // An empty table needs one empty part, not one per shard.
                if rows == 0 && taken == 1 {
                    break;
                }
                let file = part.file_name();
                staging.adopt(name, &file, &shard.local_file(&part)?)?;
                if pending {
                    resolve_conditional_references(&*staging, name, &file, &index, &mut diagnostics)?;
                }
                taken += 1;
            }
        }
        reports.insert(name.clone(), TableReport::written(output.location(name), rows));
        completed.push(name.as_str());
    }
    for finished in set {
        staging.remove_with_commit(
            &format!("{TOOL_FOLDER}/{SHARDS}/{}", finished.name),
            MANIFEST_FILE,
        )?;
    }
    let report = merged_report(out, set, reports, diagnostics);
    let files = vec![(REPORT_FILE, serde_json::to_string_pretty(&report)?)];
    let mut inputs: Vec<String> = set
        .iter()
        .flat_map(|f| f.manifest.outcomes.keys().cloned())
        .collect();
    inputs.sort();
    inputs.dedup();
    let run = RunInfo::new(started, "convert", inputs);
    staging.commit(&completed, mode == WriteMode::Overwrite, files, &run)?;
    Ok(report)
}

/// What `--mode` requires of the output's tables, as a single run checks it in its plan: `error`
/// wants them empty; `append`, and an overwrite of Delta tables (which keep their schema), want
/// the stored schema to be the shards' exactly.
fn check_existing(
    output: &dyn Store,
    (mode, format): (WriteMode, Format),
    tables: &[String],
    shards: &[Box<dyn Store>],
) -> Result<()> {
    for name in tables {
        let same_schema_needed = match mode {
            WriteMode::Error if !output.is_empty(name) => {
                let message = format!("{} exists and is not empty (--mode error)", output.location(name));
                return Err(UsageError(message).into());
            }
            WriteMode::Error => false,
            WriteMode::Overwrite => format == Format::Delta,
            WriteMode::Append => true,
        };
        let Some(oldest) = output
            .parts(name)?
            .into_iter()
            .next()
            .filter(|_| same_schema_needed)
        else {
            continue;
        };
        let found = output.schema(&oldest)?;
        for shard in shards {
            for part in shard.parts(name)? {
                if !same_columns(found.fields(), shard.schema(&part)?.fields()) {
                    let message = format!(
                        "cannot {} {}: its schema differs from the shards' rows; use another --out{}",
                        if mode == WriteMode::Append {
                            "append to"
                        } else {
                            "overwrite the Delta table"
                        },
                        output.location(name),
                        if mode == WriteMode::Append {
                            " or --mode overwrite"
                        } else {
                            ""
                        },
                    );
                    return Err(UsageError(message).into());
                }
            }
        }
    }
    Ok(())
}

/// The run report of the whole sharded run: every shard's report merged, with each input counted
/// once (read cleanly only if every shard that read part of it did) and the warnings of the
/// references resolved at the commit.
fn merged_report(
    out: &Path,
    set: &[Finished],
    tables: BTreeMap<String, TableReport>,
    resolution: Diagnostics,
) -> RunReport {
    let first = &set[0].manifest;
    let mut diagnostics = Diagnostics::default();
    let mut outcomes: BTreeMap<&str, bool> = BTreeMap::new();
    let mut unreadable = 0;
    for finished in set {
        let mut shard = finished.manifest.diagnostics.clone();
        (shard.files_read, shard.files_failed) = (0, 0);
        diagnostics.merge(shard);
        for (input, clean) in &finished.manifest.outcomes {
            *outcomes.entry(input).or_insert(true) &= clean;
        }
        unreadable += finished.manifest.unreadable;
    }
    diagnostics.files_read = outcomes.values().filter(|clean| **clean).count() as u64;
    diagnostics.files_failed = outcomes.values().filter(|clean| !**clean).count() as u64 + unreadable;
    diagnostics.merge(resolution);
    let earliest = set.iter().map(|f| f.manifest.started).min().unwrap_or_default();
    let started = UNIX_EPOCH + Duration::from_micros(u64::try_from(earliest).unwrap_or_default());
    let mut report = RunReport::new(
        started,
        first.input.clone(),
        out.display().to_string(),
        first.found,
        first.skipped.clone(),
        diagnostics,
        tables,
    );
    report.set_excluded(&first.excluded);
    report
}
