//! The export run (`fhir2table export`): the lossless resource tables of an output folder back
//! to FHIR Bulk Data NDJSON (docs/LOSSLESS.md, "The way back"), in the steps of the other runs:
//! plan (check the target folder, open the output under its lock, find the `resource_*` tables
//! and their committed parts), write each type's file into a staging folder inside the target,
//! then publish (rename every file into place, remove the staging folder).
//!
//! Crash safety. Every change to the target goes through [`crate::fsops`], so each is a crash
//! point `tests/crash_points.rs` stops the process at. A file appears in the target only whole:
//! it is written and synced in `DIR/.fhir2table-export/` first, and renamed into place after
//! every file is written. The names about to be published are recorded in the staging folder
//! (`_files`) before the first rename, so an export killed while publishing is recognised by the
//! next export into the same folder: it removes exactly those files and the staging folder (the
//! state before), then writes everything anew. An export that fails (exit 3) does the same
//! before it returns. The export is complete when `DIR/.fhir2table-export/` is gone.
//!
//! The output folder is opened as `compact` opens it ([`crate::sink::open`]): under its lock, so
//! no run commits while the export reads, and with an interrupted commit finished first; only
//! the parts a table's commit made visible are read ([`Store::parts`]: a Delta table's live
//! files, never a staging folder's).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::RecordBatch;
use flate2::write::GzEncoder;
use serde::Serialize;

use super::bundles::BUNDLE_TYPE;
use crate::fhir::definitions::{definitions, TreeOptions};
use crate::fsops;
use crate::sink::{Part, Store};
use crate::table::lossless::{table_options, Exporter, TABLE_PREFIX};
use crate::threads::on_threads;
use crate::UsageError;

/// The staging folder inside the target: present while an export writes or publishes, gone
/// once it is complete.
pub const STAGING_FOLDER: &str = ".fhir2table-export";

/// The file in the staging folder naming the files being published, one a line: what an
/// interrupted export may have put into the target, and what the next one removes.
const PUBLISHING_LIST: &str = "_files";

/// How the exported files are written (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
pub enum ExportFormat {
    /// `<Type>.ndjson`: one resource per line, as FHIR Bulk Data servers write.
    #[default]
    #[value(name = "ndjson")]
    #[serde(rename = "ndjson")]
    Ndjson,
    /// `<Type>.ndjson.gz`: the same, gzip-compressed.
    #[value(name = "ndjson.gz")]
    #[serde(rename = "ndjson.gz")]
    NdjsonGz,
}

impl ExportFormat {
    /// The file name ending of this format.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => ".ndjson",
            ExportFormat::NdjsonGz => ".ndjson.gz",
        }
    }
}

/// What to export, and how.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    pub format: ExportFormat,
    /// The resource types to export (R4 names, `Patient`); empty: every resource table.
    pub resource_types: Vec<String>,
    /// Rebuild the Bundles (`--bundles`): `Bundle.ndjson` holds every Bundle that was a whole
    /// document, its entries back in place; the other files only resources that were not in a
    /// Bundle. Needs every table, so not with `resource_types`.
    pub bundles: bool,
    /// The most bytes of entries `--bundles` gathers in memory at a time (`--bundles-memory`).
    pub bundles_memory: usize,
    /// How many tables are written at once (`--threads`), each into its own file by one
    /// thread; at least one.
    pub threads: usize,
}

/// `--bundles-memory`'s default, in MB.
pub const DEFAULT_BUNDLES_MEMORY_MB: usize = 256;

/// What was exported of one resource type, for the summary and `--report json`.
#[derive(Debug, Clone, Serialize)]
pub struct TypeExport {
    /// The FHIR resource type (`Patient`).
    pub resource_type: String,
    /// The table it was read from (`resource_patient`).
    pub table: String,
    /// The file written, relative to the target folder; `None` when the table has no rows (no
    /// empty file is written, as Bulk Data servers leave out types without resources).
    pub file: Option<String>,
    /// Resources (lines) written.
    pub rows: u64,
    /// With `--bundles`: resources of this type written back into their Bundles instead.
    pub in_bundles: u64,
    /// For `Bundle.ndjson`: how many parts the Bundles were rebuilt in: 1 when their rows fitted
    /// `--bundles-memory`, else the spill buckets rebuilt one at a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    /// Size of the file on disk (compressed, for `ndjson.gz`).
    pub bytes: u64,
}

impl TypeExport {
    /// One line for stderr saying what was written.
    pub fn summary(&self) -> String {
        match &self.file {
            Some(file) => format!(
                "{}: {} rows, {} bytes -> {file}{}",
                self.resource_type,
                self.rows,
                self.bytes,
                self.bundled()
            ),
            None => format!(
                "{}: 0 rows in {}, no file written{}",
                self.resource_type,
                self.table,
                self.bundled()
            ),
        }
    }
}

impl TypeExport {
    fn bundled(&self) -> String {
        match (self.in_bundles, self.shares) {
            (0, Some(shares)) if shares > 1 => format!(" (rebuilt in {shares} spilled buckets)"),
            (0, _) => String::new(),
            (rows, _) => format!(" ({rows} more back in their Bundles)"),
        }
    }
}

/// What an export did: the files per type, and whether it first removed what an interrupted
/// export had left in the target.
#[derive(Debug, Clone, Serialize)]
pub struct ExportOutcome {
    pub files: Vec<TypeExport>,
    pub removed_interrupted_export: bool,
}

/// Exports the resource tables of the output folder `out` into the folder `to` (which must not
/// exist or be empty) as `<Type>.ndjson[.gz]`, one per resource type that has rows. Usage errors
/// ([`UsageError`]) are found before anything is written; after another error the target is
/// left as it was found.
pub fn export(out: &Path, to: &Path, options: &ExportOptions) -> Result<ExportOutcome> {
    // Plan: the types asked for, the target, the output and its resource tables.
    let wanted = wanted_types(&options.resource_types)?;
    let target = Target::check(to, out)?;
    crate::sink::check_is_output(out)?;
    let output = crate::sink::open(out, crate::sink::format_of(out))?;
    let tables = resource_tables(&*output, &wanted)?;
    check_bundles(&wanted, options.bundles)?;
    if tables.is_empty() {
        let which = match wanted.is_empty() {
            true => String::new(),
            false => format!(" of {}", wanted.iter().cloned().collect::<Vec<_>>().join(", ")),
        };
        return Err(UsageError(format!(
            "{} holds no resource table{which}: convert with --resources to write them",
            out.display()
        ))
        .into());
    }
    let removed_interrupted_export = target.remove_interrupted_export()?;

    // Write, then publish; a failure on the way leaves the target as it was.
    let mut staging = target.begin()?;
    let bundles = options.bundles.then_some(options.bundles_memory);
    let written = write_tables(&*output, &tables, &mut staging, options, bundles)
        .and_then(|files| staging.publish().map(|()| files));
    match written {
        Ok(files) => Ok(ExportOutcome {
            files,
            removed_interrupted_export,
        }),
        Err(error) => {
            staging.abandon();
            Err(error)
        }
    }
}

/// A Bundle row is an envelope (its entries that became rows are left out): it is only written
/// rebuilt, by `--bundles`.
fn check_bundles(wanted: &BTreeSet<String>, bundles: bool) -> Result<()> {
    if !bundles && wanted.contains(BUNDLE_TYPE) {
        return Err(UsageError(
            "--resources Bundle: Bundles are written rebuilt, with their entries, by --bundles".into(),
        )
        .into());
    }
    Ok(())
}

/// The resource types of `--resources`, checked against R4 (`all` or nothing: every type).
fn wanted_types(names: &[String]) -> Result<BTreeSet<String>> {
    let known = definitions().resource_types();
    let mut wanted = BTreeSet::new();
    for name in names
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
    {
        if name == "all" {
            return Ok(BTreeSet::new());
        }
        if !known.contains(&name) {
            return Err(UsageError(format!(
                "--resources {name}: not an R4 resource type (names are case-sensitive: Patient, \
                 MedicationRequest)"
            ))
            .into());
        }
        wanted.insert(name.to_owned());
    }
    Ok(wanted)
}

/// One resource table to export: its type and committed parts, oldest first.
pub(super) struct ResourceTableParts {
    pub(super) resource_type: String,
    pub(super) table: String,
    pub(super) parts: Vec<Part>,
}

/// The resource tables of the output (every `resource_*` table whose files say which resource
/// type they hold), of the `wanted` types (all when empty), sorted by table name.
fn resource_tables(output: &dyn Store, wanted: &BTreeSet<String>) -> Result<Vec<ResourceTableParts>> {
    let mut tables = Vec::new();
    for table in output.tables()? {
        if !table.starts_with(TABLE_PREFIX) {
            continue;
        }
        let parts = output.parts(&table)?;
        let Some(newest) = parts.last() else { continue };
        // A view the user named `resource_x` has no such metadata: not a resource table.
        let Some((resource_type, _)) = table_options(&*output.schema(newest)?) else {
            continue;
        };
        if wanted.is_empty() || wanted.contains(&resource_type) {
            tables.push(ResourceTableParts {
                resource_type,
                table,
                parts,
            });
        }
    }
    Ok(tables)
}

/// Writes every table's rows into its staged file. The tables other than the Bundle table are
/// written on `options.threads` threads, each taking the next table in order and writing its
/// file alone, so every file holds the same lines in the same order whatever the threads: the
/// tables of 500 MB of Bundles were exported in 0.53-0.60 s on two threads against 0.86-1.21 s
/// on one (bench/RESULTS.md, the twenty-first round). `--bundles` rebuilds the Bundles after
/// them, reading every table again, and leaves the other files only the rows that were not
/// in a Bundle: it works on one thread, as a second one, for these files or for gathering the
/// entries, took no time off and 14-40 MB more memory.
fn write_tables(
    output: &dyn Store,
    tables: &[ResourceTableParts],
    staging: &mut Staging,
    options: &ExportOptions,
    bundles: Option<usize>,
) -> Result<Vec<TypeExport>> {
    let envelopes = tables.iter().any(|table| table.resource_type == BUNDLE_TYPE);
    let threads = match bundles {
        Some(_) => 1,
        None => options.threads,
    };
    let shared: &Staging = staging;
    let written = on_threads(
        threads,
        tables.iter().collect(),
        || (),
        |(), table| match table.resource_type == BUNDLE_TYPE {
            true => Ok(None),
            false => write_table(output, table, shared, options.format, bundles.is_some()).map(Some),
        },
    )?;
    let mut files = Vec::with_capacity(tables.len());
    for (table, written) in tables.iter().zip(written) {
        let Some(file) = written else {
            if let Some(budget) = bundles {
                files.push(super::bundles::write_bundles(
                    output,
                    tables,
                    staging,
                    options.format,
                    budget,
                )?);
            }
            continue;
        };
        if let Some(name) = &file.file {
            staging.staged(name);
        }
        if file.in_bundles > 0 && !envelopes {
            anyhow::bail!(
                "--bundles: {} has {} rows from Bundles, and there is no Bundle table \
                 (resource_bundle) to put them back into: convert with --resources all or a \
                 list that names Bundle",
                output.location(&table.table),
                file.in_bundles
            );
        }
        files.push(file);
    }
    Ok(files)
}

/// Streams one table's parts, batch by batch, into `<Type>.ndjson[.gz]` in the staging folder;
/// the file is created with the first row, so a table without rows gets none. With
/// `unbundled_only`, rows that were Bundle entries are left for the Bundles they go back into.
fn write_table(
    output: &dyn Store,
    table: &ResourceTableParts,
    staging: &Staging,
    format: ExportFormat,
    unbundled_only: bool,
) -> Result<TypeExport> {
    let name = format!("{}{}", table.resource_type, format.extension());
    let mut file: Option<ExportFile> = None;
    let mut lines = Vec::new();
    let (mut rows, mut in_bundles) = (0u64, 0u64);
    each_batch(output, table, |exporter, batch| {
        lines.clear();
        let batch_rows = exporter.rows_reached(batch)?;
        for row in 0..batch.num_rows() {
            if unbundled_only && batch_rows.container(row).is_some() {
                in_bundles += 1;
                continue;
            }
            batch_rows.write(row, Vec::new(), &mut lines)?;
            lines.push(b'\n');
            rows += 1;
        }
        if lines.is_empty() {
            return Ok(());
        }
        let file = match &mut file {
            Some(file) => file,
            None => file.insert(ExportFile::create(&staging.path_of(&name), format)?),
        };
        file.write(&lines)
    })?;
    let bytes = match file {
        Some(file) => file.finish()?,
        None => 0,
    };
    Ok(TypeExport {
        resource_type: table.resource_type.clone(),
        table: table.table.clone(),
        file: (rows > 0).then_some(name),
        rows,
        in_bundles,
        bytes,
        shares: None,
    })
}

/// Calls `each` with every batch of the table's parts (only their columns that hold something:
/// read them with [`Exporter::rows_reached`]), oldest first, and the exporter of the
/// shape the batch's part was written by (shared, for rows kept past the call).
pub(super) fn each_batch(
    output: &dyn Store,
    table: &ResourceTableParts,
    mut each: impl FnMut(&Arc<Exporter>, &RecordBatch) -> Result<()>,
) -> Result<()> {
    let mut exporter: Option<(TreeOptions, Arc<Exporter>)> = None;
    for part in &table.parts {
        // Every part of a table has the same options (an append with others is refused); read
        // them per part all the same, so a part is always rebuilt by the shape it was written by.
        let schema = output.schema(part)?;
        let Some((resource_type, options)) = table_options(&schema) else {
            anyhow::bail!(
                "{}: part {} does not say which resource type it holds",
                output.location(&table.table),
                part.file_name()
            );
        };
        anyhow::ensure!(
            resource_type == table.resource_type,
            "{}: part {} holds {resource_type}, the table {}",
            output.location(&table.table),
            part.file_name(),
            table.resource_type
        );
        if exporter.as_ref().is_none_or(|(known, _)| *known != options) {
            let fresh = Exporter::new(&resource_type, options)
                .with_context(|| format!("{resource_type} is not an R4 resource type"))?;
            exporter = Some((options, Arc::new(fresh)));
        }
        let (_, exporter) = exporter.as_ref().expect("made above");
        for batch in output.read_reached(part)? {
            each(exporter, &batch?)
                .with_context(|| format!("{}: part {}", output.location(&table.table), part.file_name()))?;
        }
    }
    Ok(())
}

/// A file being written in the staging folder.
pub(super) struct ExportFile {
    path: PathBuf,
    writer: Encoder,
}

enum Encoder {
    Plain(BufWriter<File>),
    // Boxed: the encoder's state is large beside a plain writer.
    Gzip(Box<GzEncoder<BufWriter<File>>>),
}

impl ExportFile {
    pub(super) fn create(path: &Path, format: ExportFormat) -> Result<ExportFile> {
        let file = fsops::create_file(path).with_context(|| format!("cannot create {}", path.display()))?;
        let buffered = BufWriter::with_capacity(1 << 20, file);
        let writer = match format {
            ExportFormat::Ndjson => Encoder::Plain(buffered),
            ExportFormat::NdjsonGz => {
                Encoder::Gzip(Box::new(GzEncoder::new(buffered, flate2::Compression::default())))
            }
        };
        Ok(ExportFile {
            path: path.to_owned(),
            writer,
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let written = match &mut self.writer {
            Encoder::Plain(writer) => writer.write_all(bytes),
            Encoder::Gzip(writer) => writer.write_all(bytes),
        };
        written.with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Ends the gzip stream, flushes and syncs the file; returns its size.
    pub(super) fn finish(self) -> Result<u64> {
        let buffered = match self.writer {
            Encoder::Plain(writer) => writer,
            Encoder::Gzip(writer) => (*writer).finish()?,
        };
        let file = buffered
            .into_inner()
            .map_err(|error| error.into_error())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        fsops::sync_file(&file).with_context(|| format!("cannot sync {}", self.path.display()))?;
        Ok(file.metadata()?.len())
    }
}

/// `path` with symbolic links and `..` resolved, also when its last components do not exist
/// yet: the longest existing ancestor is canonicalized and the rest appended.
fn resolved(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(found) = existing.canonicalize() {
            return Some(
                rest.iter()
                    .rev()
                    .fold(found, |path: PathBuf, part| path.join(part)),
            );
        }
        rest.push(existing.file_name()?.to_owned());
        existing = existing.parent()?;
    }
}

/// The target folder, checked: it does not exist, is empty, or holds only what an interrupted
/// export left.
struct Target {
    dir: PathBuf,
    /// The files an interrupted export was publishing when it died (its staging folder is
    /// there too): removed before this export writes.
    interrupted: Option<Vec<String>>,
}

impl Target {
    /// Checks `dir` without changing it.
    fn check(dir: &Path, out: &Path) -> Result<Target> {
        let not_empty = || {
            UsageError(format!(
                "--to {} is not empty: export writes into a new or empty folder",
                dir.display()
            ))
        };
        if dir.exists() && !dir.is_dir() {
            return Err(UsageError(format!("--to {} is not a folder", dir.display())).into());
        }
        let Some(dir_resolved) = resolved(dir) else {
            return Err(UsageError(format!(
                "--to {}: cannot tell where it is (a `..` after a folder that does not exist)",
                dir.display()
            ))
            .into());
        };
        if let Ok(out) = out.canonicalize() {
            if dir_resolved == out {
                return Err(not_empty().into());
            }
            // Files inside OUT would be foreign to its tables (and a later `compact` or
            // `convert` of OUT would meet a folder of NDJSON as a table).
            if dir_resolved.starts_with(&out) {
                return Err(UsageError(format!(
                    "--to {} is inside the output folder {}: export next to it instead",
                    dir.display(),
                    out.display()
                ))
                .into());
            }
        }
        let entries: Vec<String> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|entry| entry.map(|entry| entry.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("cannot list {}", dir.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => {
                return Err(UsageError(format!("cannot read --to {}: {error}", dir.display())).into())
            }
        };
        if entries.is_empty() {
            return Ok(Target {
                dir: dir.to_owned(),
                interrupted: None,
            });
        }
        // What a killed export leaves: its staging folder, and some of the files it named there
        // before publishing them.
        if !entries.iter().any(|entry| entry == STAGING_FOLDER) {
            return Err(not_empty().into());
        }
        let listed = match std::fs::read_to_string(dir.join(STAGING_FOLDER).join(PUBLISHING_LIST)) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        };
        // Only names of this folder's own entries count: a list naming `../x` or `/x` (written
        // by anything but an export) must never make the next export remove outside DIR.
        let mut listed: Vec<String> = listed;
        listed.retain(|name| name != STAGING_FOLDER && entries.contains(name));
        let foreign = entries
            .iter()
            .any(|entry| entry != STAGING_FOLDER && !listed.contains(entry));
        if foreign {
            return Err(not_empty().into());
        }
        Ok(Target {
            dir: dir.to_owned(),
            interrupted: Some(listed),
        })
    }

    /// Removes what an interrupted export left (the files it published, then its staging
    /// folder); returns whether there was any.
    fn remove_interrupted_export(&self) -> Result<bool> {
        let Some(listed) = &self.interrupted else {
            return Ok(false);
        };
        for name in listed {
            let path = self.dir.join(name);
            if path.exists() {
                fsops::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        let staging = self.dir.join(STAGING_FOLDER);
        fsops::remove_dir_all(&staging).with_context(|| format!("cannot remove {}", staging.display()))?;
        Ok(true)
    }

    /// Creates the target (when missing) and its staging folder.
    fn begin(self) -> Result<Staging> {
        let created_dir = !self.dir.exists();
        let staging = self.dir.join(STAGING_FOLDER);
        let made = fsops::create_dir_all(&self.dir).and_then(|()| fsops::create_new_dir(&staging));
        if let Err(error) = made {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                // Not there when the target was checked: another export is writing into it.
                let message = format!("another export is writing into {}", self.dir.display());
                return Err(UsageError(message).into());
            }
            // Made but not synced, say: leave the target as it was found.
            let _ = std::fs::remove_dir(&staging);
            if created_dir {
                let _ = std::fs::remove_dir(&self.dir);
            }
            return Err(error).with_context(|| format!("cannot create {}", staging.display()));
        }
        Ok(Staging {
            dir: self.dir,
            staging,
            created_dir,
            staged: Vec::new(),
            publishing: false,
        })
    }
}

/// The staging folder of an export in progress.
pub(super) struct Staging {
    dir: PathBuf,
    staging: PathBuf,
    /// Whether this export created the target (an abandoned export removes it again).
    created_dir: bool,
    /// The files written into the staging folder, by name.
    staged: Vec<String>,
    /// Whether renames into the target may have begun.
    publishing: bool,
}

impl Staging {
    /// Where the file `name` is written before it is published.
    pub(super) fn stage_file(&mut self, name: &str) -> PathBuf {
        self.staged(name);
        self.path_of(name)
    }

    /// Where the file `name` is written before it is published, to be recorded with
    /// [`Staging::staged`] once it is written (tables written on several threads).
    fn path_of(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// Records the file `name`, written in the staging folder, for publishing.
    fn staged(&mut self, name: &str) {
        self.staged.push(name.to_owned());
    }

    /// A folder in the staging folder for files the export needs on the way and does not
    /// publish (removed with the staging folder); made by the caller when needed.
    pub(super) fn scratch_folder(&self, name: &str) -> PathBuf {
        self.staging.join(format!("_scratch-{name}"))
    }

    /// Records the names, moves every staged file into the target and removes the staging
    /// folder.
    fn publish(&mut self) -> Result<()> {
        let mut list = self.staged.join("\n");
        list.push('\n');
        fsops::write_atomically(&self.staging.join(PUBLISHING_LIST), list.as_bytes())
            .with_context(|| format!("cannot write {}", self.staging.display()))?;
        self.publishing = true;
        for name in &self.staged {
            let (from, to) = (self.staging.join(name), self.dir.join(name));
            fsops::rename(&from, &to).with_context(|| format!("cannot move {} into place", to.display()))?;
        }
        fsops::remove_dir_all(&self.staging)
            .with_context(|| format!("cannot remove {}", self.staging.display()))?;
        Ok(())
    }

    /// Puts the target back as it was found, as far as it can (best effort, like a failed
    /// convert's staging folder: what is left, the next export into the folder removes).
    fn abandon(self) {
        if self.publishing {
            for name in &self.staged {
                let _ = std::fs::remove_file(self.dir.join(name));
            }
        }
        let _ = std::fs::remove_dir_all(&self.staging);
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_are_checked_against_r4() {
        assert!(wanted_types(&[]).unwrap().is_empty());
        assert!(wanted_types(&["all".into()]).unwrap().is_empty());
        let wanted = wanted_types(&["Patient".into(), " Observation".into()]).unwrap();
        assert_eq!(wanted.into_iter().collect::<Vec<_>>(), ["Observation", "Patient"]);
        let error = wanted_types(&["patient".into()]).unwrap_err();
        assert!(error.downcast_ref::<UsageError>().is_some(), "{error}");
    }

    #[test]
    fn a_target_with_foreign_files_is_refused_and_an_interrupted_export_is_recognised() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let dir = root.path().join("export");
        assert!(Target::check(&dir, &out).unwrap().interrupted.is_none());
        std::fs::create_dir(&dir).unwrap();
        assert!(Target::check(&dir, &out).unwrap().interrupted.is_none());
        assert!(Target::check(&out, &out).is_err(), "the output folder itself");

        // Killed while publishing: a listed file published, the staging folder left.
        std::fs::create_dir(dir.join(STAGING_FOLDER)).unwrap();
        std::fs::write(
            dir.join(STAGING_FOLDER).join(PUBLISHING_LIST),
            "Patient.ndjson\nObservation.ndjson\n",
        )
        .unwrap();
        std::fs::write(dir.join(STAGING_FOLDER).join("Observation.ndjson"), "{}\n").unwrap();
        std::fs::write(dir.join("Patient.ndjson"), "{}\n").unwrap();
        let target = Target::check(&dir, &out).unwrap();
        assert!(target.remove_interrupted_export().unwrap());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "emptied");

        // A file no export named is the user's: refused, nothing removed.
        std::fs::create_dir(dir.join(STAGING_FOLDER)).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let error = Target::check(&dir, &out).err().unwrap();
        assert!(error.downcast_ref::<UsageError>().is_some(), "{error}");
        assert!(dir.join("notes.txt").exists());
    }
}
