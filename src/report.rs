//! The run report (`OUT/.fhir2table/_run.json`): what was read, skipped and lost, what was written. Cron jobs
//! and schedulers read it instead of parsing log lines.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::diagnostics::{Diagnostics, InputError, UnmappedTally, WarningKind, WarningTally};

/// How many skipped (and how many excluded) paths the report lists.
const MAX_SKIPPED_LISTED: usize = 100;

/// The whole report, as serialised to `OUT/.fhir2table/_run.json`.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_at: String,
    pub duration_seconds: f64,
    pub input: String,
    pub output: String,
    /// The process exit code of this run (see README: exit codes).
    pub exit_code: i32,
    pub inputs: InputCounts,
    pub skipped_files: Vec<String>,
    /// Paths left out by `--include` / `--exclude`, relative to `--in`; a folder (ending in `/`)
    /// stands for everything in it.
    pub excluded_paths: Vec<String>,
    pub resources: BTreeMap<String, u64>,
    /// Per resource type, the members its resource table (`--resources`) kept in `__unmapped`
    /// (not R4 elements, or of the wrong JSON kind): count and the first paths. Nothing is lost,
    /// so it is not a warning and does not change the exit code. Absent when there are none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unmapped: BTreeMap<String, UnmappedTally>,
    pub tables: BTreeMap<String, TableReport>,
    pub warnings: BTreeMap<WarningKind, WarningTally>,
    pub error_count: u64,
    pub errors: Vec<InputError>,
    /// Why the run failed (exit code 3); the previous tables were left in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// A shard's run (`--shard`): whether it committed every shard's tables into the output, or
    /// what the commit still waits for. The output's own report is the merged one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<String>,
}

/// Input files by outcome.
#[derive(Debug, Default, Serialize)]
pub struct InputCounts {
    /// Files recognised as FHIR input (`.json`, `.ndjson`, `.jsonl`, optionally `.gz`).
    pub found: u64,
    /// Files converted without any error.
    pub read: u64,
    /// Files with at least one error (the rest of such a file is still converted).
    pub failed: u64,
    /// Files that are not FHIR input by their name, passed over.
    pub skipped: u64,
    /// Paths left out by `--include` / `--exclude`: files, and folders not entered (one each).
    pub excluded: u64,
    pub bytes: u64,
    /// Files moved to `--archive` or deleted (`--delete-processed`) after the commit.
    pub archived_or_deleted: u64,
    /// `--incremental`: files already converted by an earlier run and not changed since.
    pub unchanged: u64,
}

/// One output table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub rows: u64,
    pub path: String,
    /// The table met a data error and was not written (the previous one, if any, is kept).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl TableReport {
    /// A table written with `rows` rows; `path` is where the output keeps it, as the sink shows it.
    pub fn written(path: String, rows: u64) -> Self {
        TableReport {
            rows,
            path,
            stopped: false,
        }
    }

    /// A table a data error stopped; `path` as for [`TableReport::written`].
    pub fn stopped(path: String) -> Self {
        TableReport {
            rows: 0,
            path,
            stopped: true,
        }
    }
}

impl RunReport {
    /// Builds the report from the run's merged diagnostics.
    pub fn new(
        started: SystemTime,
        input: String,
        output: String,
        found: u64,
        skipped: Vec<String>,
        mut diagnostics: Diagnostics,
        tables: BTreeMap<String, TableReport>,
    ) -> RunReport {
        diagnostics.sort();
        let duration = started.elapsed().map_or(0.0, |d| d.as_secs_f64());
        RunReport {
            tool: "fhir2table",
            version: env!("CARGO_PKG_VERSION"),
            started_at: format_utc(started),
            duration_seconds: (duration * 1000.0).round() / 1000.0,
            input,
            output,
            exit_code: if diagnostics.lost_input() { 1 } else { 0 },
            inputs: InputCounts {
                found,
                read: diagnostics.files_read,
                failed: diagnostics.files_failed,
                skipped: skipped.len() as u64,
                excluded: 0,
                bytes: diagnostics.bytes_read,
                archived_or_deleted: diagnostics.files_retired,
                unchanged: 0,
            },
            skipped_files: skipped.into_iter().take(MAX_SKIPPED_LISTED).collect(),
            excluded_paths: Vec::new(),
            resources: diagnostics.resources,
            unmapped: diagnostics.unmapped,
            tables,
            warnings: diagnostics.warnings,
            error_count: diagnostics.error_count,
            errors: diagnostics.errors,
            failure: None,
            shards: None,
        }
    }

    /// Records the paths `--include` / `--exclude` left out: all counted, the first ones listed.
    pub fn set_excluded(&mut self, excluded: &[String]) {
        self.inputs.excluded = excluded.len() as u64;
        self.excluded_paths = excluded.iter().take(MAX_SKIPPED_LISTED).cloned().collect();
    }

    /// The report of a run that failed while writing (exit code 3): no tables changed.
    pub fn failed(started: SystemTime, input: String, output: String, failure: String) -> RunReport {
        let mut report = RunReport::new(
            started,
            input,
            output,
            0,
            Vec::new(),
            Diagnostics::default(),
            BTreeMap::new(),
        );
        report.exit_code = 3;
        report.failure = Some(failure);
        report
    }

    /// Total resources seen, Bundles excluded.
    pub fn resource_count(&self) -> u64 {
        self.resources
            .iter()
            .filter(|(resource_type, _)| *resource_type != "Bundle")
            .map(|(_, count)| count)
            .sum()
    }

    /// The one-line summary printed to stderr.
    pub fn summary(&self) -> String {
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|(name, table)| match table.stopped {
                true => format!("{name} STOPPED"),
                false => format!("{name} {} rows", table.rows),
            })
            .collect();
        let warnings: u64 = self.warnings.values().map(|t| t.count).sum();
        let unmapped: Vec<String> = self
            .unmapped
            .iter()
            .map(|(resource_type, tally)| format!("{resource_type} {}", tally.count))
            .collect();
        let unmapped = match unmapped.is_empty() {
            true => String::new(),
            false => format!("; kept in __unmapped: {}", unmapped.join(", ")),
        };
        format!(
            "fhir2table: {} files read, {} failed, {} skipped{}{}; {} resources; {}; {} errors, {} warnings{unmapped}; {:.1} s (report: {}/.fhir2table/_run.json)",
            self.inputs.read,
            self.inputs.failed,
            self.inputs.skipped,
            match self.inputs.excluded {
                0 => String::new(),
                n => format!(", {n} excluded"),
            },
            match self.inputs.unchanged {
                0 => String::new(),
                n => format!(", {n} unchanged"),
            },
            self.resource_count(),
            tables.join(", "),
            self.error_count,
            warnings,
            self.duration_seconds,
            self.output,
        )
    }
}

pub use crate::fhir::datetime::format_utc;
