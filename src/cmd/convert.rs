//! `fhir2table convert`: the main job.

const ABOUT: &str = "Convert a folder (or file) of FHIR R4 JSON into Parquet tables";

const LONG_ABOUT: &str = "\
Convert a folder (or file) of FHIR R4 JSON into Parquet tables.

Reads every *.json (a Bundle of any type, or one resource), *.ndjson / *.jsonl (one resource per
line, FHIR Bulk Data) and their .gz forms under --in, recursively, in sorted order. Other files are
skipped and counted; --include/--exclude globs leave out more (a Bulk Data client's log.ndjson,
a folder of old exports), counted as excluded. Every Patient and Encounter becomes a row of
OUT/patient/ and OUT/encounter/ (Parquet dataset folders; columns in docs/tables.md); --view adds
a table per SQL on FHIR ViewDefinition (--view default: one per Synthea resource type);
--resources adds a lossless table per resource type (OUT/resource_observation/, ...). Tables
are built in a hidden folder and moved into place when complete, replacing the previous ones
(--mode append and --incremental add files beside them instead). OUT/.fhir2table/_run.json
reports files read, skipped and failed, resources per type, rows per table, warnings and errors
with file and line; the tool keeps all its own files in OUT/.fhir2table/, so every other folder
of OUT is a table.

Settings come from flags, then the --config file, then defaults.";

const EXAMPLES: &str = "\
Examples:
  fhir2table convert --in fixtures/synthea --out /tmp/parquet
  fhir2table convert --in ./export --out ./warehouse --view default
  fhir2table convert --in ./export --out ./warehouse --resources Observation,Condition
  fhir2table convert --in ./export --out ./lake --format delta --mode append
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 fhir2table convert --in s3://landing/export --out s3://lake/fhir
  fhir2table convert --in ./export --out ./warehouse --exclude log.ndjson --exclude 'old-*/'
  fhir2table convert --in /data/landing --out /data/warehouse --incremental --errors-to /data/quarantine
  fhir2table convert --config /etc/fhir2table.toml --log-file /var/log/fhir2table.log -q
  fhir2table convert --in /mnt/export --out /mnt/lake --format delta --shard 2/4
  duckdb -c \"SELECT gender, count(*) FROM '/tmp/parquet/patient/*.parquet' GROUP BY 1\"";

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;

use crate::config::{ByteSize, LogLevel, Options, Settings, WriteMode};
use crate::convert::{convert, Progress};
use crate::sink::{Compression, Format};
use crate::source::Shard;
use crate::{logging, Exit};

/// Flags of `fhir2table convert`; each config key has one.
#[derive(Debug, clap::Args)]
#[command(about = ABOUT, long_about = LONG_ABOUT, after_help = super::examples_and_exit_codes(EXAMPLES))]
pub struct Args {
    /// Input folder (walked recursively) or single file, or an object storage URL
    /// (s3://bucket/prefix, gs://, az://, file://; credentials from AWS_*, GOOGLE_*, AZURE_*)
    /// [config: in]
    #[arg(long = "in", value_name = "PATH")]
    pub input: Option<PathBuf>,

    /// Output folder, or an object storage URL (s3://bucket/prefix, ...); gets one dataset folder
    /// per table, and .fhir2table/ for the run report and state [config: out]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// TOML config file (see config.example.toml); flags override its keys
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Read only the files this glob matches, or that lie in a folder it matches. Globs match the
    /// path relative to --in: without a `/` a name at any depth (`--include '*.ndjson'`), with a
    /// `/` from --in (`--include '2024-06/**'`). Repeatable; replaces the config's list
    /// [config: include]
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,

    /// Leave out the files and folders this glob matches (a folder is not entered):
    /// `--exclude log.ndjson` (a Bulk Data client's log, at any depth), `--exclude 'tmp/'` (folders
    /// named tmp), `--exclude '/old/*.json'` (from --in only). Repeatable; wins over --include;
    /// replaces the config's list. Counted as excluded in the report [config: exclude]
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Rows per Arrow record batch [config: batch_size] [default: 5000]
    #[arg(long, value_name = "ROWS")]
    pub batch_size: Option<usize>,

    /// Parquet compression [config: compression] [default: zstd]
    #[arg(long, value_name = "CODEC")]
    pub compression: Option<Compression>,

    /// How each table is kept: `parquet` (a folder of Parquet files) or `delta` (a Delta Lake
    /// table: the same files and a transaction log, one Delta commit per table and run)
    /// [config: format] [default: parquet]
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Worker threads parsing files in parallel [config: threads] [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Append log lines to this file [config: log_file]
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Level of the log file [config: log_level] [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    /// A SQL on FHIR ViewDefinition file, a folder of them, or `default` (the shipped views); each
    /// view becomes OUT/<view name>/. Repeatable [config: views]
    #[arg(long = "view", value_name = "PATH")]
    pub views: Vec<PathBuf>,

    /// Write only the views (and resource tables), not the built-in patient and encounter tables
    /// [config: builtin_tables = false]
    #[arg(long)]
    pub no_builtin_tables: bool,

    /// Write a lossless table of every resource of these types, every element kept:
    /// OUT/resource_<type>/ (`--resources Observation,Condition`), or `all` for every R4
    /// resource type (only the types the input has get a table). Comma-separated or repeated;
    /// replaces the config's list [config: resources]
    #[arg(long = "resources", value_name = "LIST", value_delimiter = ',')]
    pub resources: Vec<String>,

    /// How many times one complex type may nest in a resource table's typed columns before the
    /// rest is kept as JSON text (1 to 3); changes the tables' schema [config: resources_typed_depth]
    /// [default: 2]
    #[arg(long, value_name = "N")]
    pub resources_typed_depth: Option<usize>,

    /// What to do with existing tables [config: mode] [default: overwrite]
    #[arg(long, value_name = "MODE")]
    pub mode: Option<WriteMode>,

    /// Copy each failed input, and each bad NDJSON line, here (a folder or a URL) with a
    /// .error.txt saying why [config: errors_to]
    #[arg(long, value_name = "DIR")]
    pub errors_to: Option<PathBuf>,

    /// After the tables are committed, move the cleanly converted inputs here, keeping their
    /// paths relative to --in (a URL only with an --in URL on the same bucket) [config: archive]
    #[arg(long, value_name = "DIR", conflicts_with = "delete_processed")]
    pub archive: Option<PathBuf>,

    /// After the tables are committed, delete the cleanly converted inputs [config: delete_processed]
    #[arg(long)]
    pub delete_processed: bool,

    /// Convert only inputs that are new, changed or failed since the last run
    /// (OUT/.fhir2table/_state.json) and append their rows [config: incremental]
    #[arg(long)]
    pub incremental: bool,

    /// Largest JSON document (.json file, after gzip decompression) read into memory; a larger
    /// one is reported and skipped. Bytes or KiB/MiB/GiB [config: max_json_bytes] [default: 2GiB]
    #[arg(long, value_name = "SIZE")]
    pub max_json_bytes: Option<ByteSize>,

    /// Longest NDJSON line; a longer one is reported and skipped, the rest of the file is read.
    /// Bytes or KiB/MiB/GiB [config: max_line_bytes] [default: 256MiB]
    #[arg(long, value_name = "SIZE")]
    pub max_line_bytes: Option<ByteSize>,

    /// Convert only shard I of N (I from 0) of the inputs, so N processes (on one machine or many)
    /// convert one export together: inputs are shared out by path, big NDJSON files by byte
    /// range. Each shard keeps its tables in OUT/.fhir2table/_shards/ until the last one to
    /// finish commits them all into OUT at once (or `fhir2table commit OUT` does); a failed shard
    /// is simply run again. Unset, JOB_COMPLETION_INDEX (a Kubernetes Indexed Job sets it) and
    /// JOB_COMPLETIONS (set it to the Job's completions) give it. Not with --incremental,
    /// --archive or --delete-processed
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,

    /// Print the run report (as in OUT/.fhir2table/_run.json) on stdout: `--report json`
    #[arg(long, value_name = "FORMAT", value_parser = ["json"])]
    pub report: Option<String>,

    /// Print nothing on stderr but errors (no summary line, no progress bar)
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// A progress bar on stderr (MB and files done, rate, ETA), only when stderr is a terminal and
/// the run is not `--quiet`: cron logs and pipes get no control characters.
struct ProgressBar {
    bar: indicatif::ProgressBar,
    files_done: AtomicU64,
    files_total: AtomicU64,
}

impl ProgressBar {
    fn for_terminal(quiet: bool) -> Self {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            let bar = indicatif::ProgressBar::new(0);
            let template =
                "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}";
            bar.set_style(indicatif::ProgressStyle::with_template(template).expect("the template is valid"));
            bar
        };
        ProgressBar {
            bar,
            files_done: AtomicU64::new(0),
            files_total: AtomicU64::new(0),
        }
    }
}

impl Progress for ProgressBar {
    fn start(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.bar.set_length(bytes);
        self.bar.set_message(format!("0/{files}"));
    }

    fn file_done(&self, bytes: u64) {
        let done = self.files_done.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.files_total.load(Ordering::Relaxed);
        self.bar.inc(bytes);
        self.bar.set_message(format!("{done}/{total}"));
    }

    fn bytes_done(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Most errors to list on stderr after the summary; the report has them all.
const ERRORS_SHOWN: usize = 10;

/// Runs `convert` with these flags.
pub fn run(args: Args) -> Result<Exit> {
    let (options, source) = match &args.config {
        Some(path) => (
            Options::from_file(path)?,
            format!("config file {}", path.display()),
        ),
        None => (Options::default(), "a config file (--config)".to_owned()),
    };
    let flags = Options {
        input: args.input,
        out: args.out,
        batch_size: args.batch_size,
        compression: args.compression,
        format: args.format,
        threads: args.threads,
        log_file: args.log_file,
        log_level: args.log_level,
        views: (!args.views.is_empty()).then_some(args.views),
        builtin_tables: args.no_builtin_tables.then_some(false),
        mode: args.mode,
        errors_to: args.errors_to,
        archive: args.archive,
        delete_processed: args.delete_processed.then_some(true),
        incremental: args.incremental.then_some(true),
        max_json_bytes: args.max_json_bytes,
        max_line_bytes: args.max_line_bytes,
        include: (!args.include.is_empty()).then_some(args.include),
        exclude: (!args.exclude.is_empty()).then_some(args.exclude),
        resources: (!args.resources.is_empty()).then_some(args.resources),
        resources_typed_depth: args.resources_typed_depth,
    };
    let mut settings = Settings::from_options(options.overridden_by(flags), &source)?;
    settings.shard = match args.shard {
        Some(shard) => Some(shard),
        None => Shard::from_environment().map_err(crate::UsageError)?,
    };
    let stderr_level = logging::stderr_level(args.quiet, args.verbose);
    logging::init(stderr_level, settings.log_file.as_deref(), settings.log_level)
        .map_err(|e| crate::UsageError(format!("{e:#}")))?;

    let bar = ProgressBar::for_terminal(args.quiet);
    let report = convert(&settings, &bar)?;
    if args.report.is_some() {
        super::print_out(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    tracing::info!("{}", report.summary());
    if !args.quiet {
        eprintln!("{}", report.summary());
        if let Some(shards) = &report.shards {
            eprintln!("{shards}");
        }
        for error in report.errors.iter().take(ERRORS_SHOWN) {
            let line = error
                .origin
                .line
                .map(|l| format!(" line {l}"))
                .unwrap_or_default();
            eprintln!("  error: {}{line}: {}", error.origin.file, error.message);
        }
        if report.error_count > ERRORS_SHOWN as u64 {
            eprintln!(
                "  ... {} more errors in the report",
                report.error_count - ERRORS_SHOWN as u64
            );
        }
    }
    Ok(if report.exit_code == 0 {
        Exit::Success
    } else {
        Exit::InputLost
    })
}
