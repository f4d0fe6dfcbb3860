//! `fhir2table inspect`: what an output folder holds.

const ABOUT: &str = "Show the tables in an output folder: rows, files, schema, last run";

const AFTER_HELP: &str = "\
Examples:
  fhir2table inspect /data/warehouse
  fhir2table inspect /data/warehouse --json | jq '.tables.patient.rows'";

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::Serialize;

use crate::convert::REPORT_FILE;
use crate::{Exit, UsageError};

/// Arguments of `fhir2table inspect`.
#[derive(Debug, clap::Args)]
#[command(about = ABOUT, after_help = AFTER_HELP)]
pub struct Args {
    /// The output folder of earlier `convert` runs
    #[arg(value_name = "OUT")]
    pub out: PathBuf,

    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// One table folder.
#[derive(Debug, Serialize)]
pub struct TableSummary {
    pub rows: u64,
    pub files: Vec<String>,
    pub bytes: u64,
    /// `name: type` per column, from the newest file.
    pub schema: Vec<String>,
}

/// Everything `inspect` reports.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub tables: BTreeMap<String, TableSummary>,
    /// The last run's report (`.fhir2table/_run.json`), when there is one.
    pub last_run: Option<serde_json::Value>,
    /// Incremental runs from the state file, newest first (at most 10), and inputs tracked.
    pub incremental_runs: Vec<crate::state::RunRecord>,
    pub inputs_tracked: usize,
}

/// Reads what `out` holds: every folder with Parquet files is a table.
pub fn inspect(out: &Path) -> Result<Inspection> {
    let entries =
        std::fs::read_dir(out).map_err(|e| UsageError(format!("cannot read {}: {e}", out.display())))?;
    let mut tables = BTreeMap::new();
    for entry in entries.flatten() {
        let folder = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !folder.is_dir() || name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let files = crate::sink::table_files(&folder)?;
        if files.is_empty() {
            continue;
        }
        let mut summary = TableSummary {
            rows: 0,
            files: Vec::new(),
            bytes: 0,
            schema: Vec::new(),
        };
        for file in &files {
            let reader = SerializedFileReader::new(File::open(file)?)
                .with_context(|| format!("{} is not a readable Parquet file", file.display()))?;
            let metadata = reader.metadata();
            summary.rows += metadata.file_metadata().num_rows() as u64;
            summary.bytes += std::fs::metadata(file)?.len();
            summary.files.push(
                file.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        let newest = files.last().expect("not empty");
        summary.schema = crate::sink::schema_of(newest)?
            .fields()
            .iter()
            .map(|f| {
                format!(
                    "{}: {}{}",
                    f.name(),
                    f.data_type(),
                    if f.is_nullable() { "" } else { " not null" }
                )
            })
            .collect();
        tables.insert(name, summary);
    }
    // An older release's output keeps these at the top until a writing run migrates it;
    // inspecting it changes nothing, so it reads them where they are.
    let newest_of = |current: &str, legacy: &str| match out.join(current).exists() {
        true => out.join(current),
        false => out.join(legacy),
    };
    let last_run = std::fs::read_to_string(newest_of(REPORT_FILE, "_run.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let state = crate::state::State::load_file(&newest_of(crate::state::STATE_FILE, "_state/state.json"))?;
    let incremental_runs = state.runs.iter().rev().take(10).cloned().collect();
    Ok(Inspection {
        tables,
        last_run,
        incremental_runs,
        inputs_tracked: state.inputs.len(),
    })
}

/// Runs `inspect`.
pub fn run(args: Args) -> Result<Exit> {
    use std::fmt::Write;
    let inspection = inspect(&args.out)?;
    if args.json {
        super::print_out(&(serde_json::to_string_pretty(&inspection)? + "\n"))?;
        return Ok(Exit::Success);
    }
    let mut text = String::new();
    if inspection.tables.is_empty() {
        writeln!(text, "{}: no tables", args.out.display())?;
    }
    for (name, table) in &inspection.tables {
        writeln!(
            text,
            "{name}: {} rows in {} file(s), {:.1} MB",
            table.rows,
            table.files.len(),
            table.bytes as f64 / 1e6
        )?;
        for column in &table.schema {
            writeln!(text, "    {column}")?;
        }
    }
    if let Some(run) = &inspection.last_run {
        writeln!(
            text,
            "last run: {} (exit {}), {} files read, {} failed, {} errors",
            run["started_at"].as_str().unwrap_or("?"),
            run["exit_code"],
            run["inputs"]["read"],
            run["inputs"]["failed"],
            run["error_count"]
        )?;
    }
    if !inspection.incremental_runs.is_empty() {
        writeln!(
            text,
            "incremental state: {} inputs converted; latest runs:",
            inspection.inputs_tracked
        )?;
        for run in &inspection.incremental_runs {
            writeln!(
                text,
                "    {} (exit {}): {} converted, {} unchanged",
                run.started_at, run.exit_code, run.converted, run.unchanged
            )?;
        }
    }
    super::print_out(&text)?;
    Ok(Exit::Success)
}
