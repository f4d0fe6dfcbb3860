//! `fhir2table export`: the resource tables of an output folder back to FHIR Bulk Data NDJSON.

const ABOUT: &str = "Write the resource tables (convert --resources) back out as FHIR Bulk Data NDJSON";

const LONG_ABOUT: &str = "\
Write the resource tables of an output folder back out as FHIR Bulk Data NDJSON.

`convert --resources` keeps every resource whole in a table per type (OUT/resource_patient/, ...;
docs/LOSSLESS.md). export reads those tables (Parquet folders or Delta tables, only the files a
commit made visible) and writes one file per resource type into DIR: DIR/Patient.ndjson,
DIR/Observation.ndjson, ... (`--format ndjson.gz`: DIR/Patient.ndjson.gz), one resource per line,
each JSON-equal to the resource that was converted (object key order aside). A type whose table
has no rows gets no file. Without --bundles, the resources of Bundle entries are exported like
any other (a Bundle nested in an entry included) and the Bundles themselves are not written.

--bundles puts the Bundles back together: DIR/Bundle.ndjson holds every Bundle that was a whole
document (a file or an NDJSON line), JSON-equal to the input, its entries' resources taken back
from their tables (Bundles nested in entries included); the other files hold only the resources
that were not in a Bundle. It needs the Bundle table (convert --resources all, or a list naming
Bundle). Each table is read once; the entries and envelopes are gathered in memory, at most
--bundles-memory MB of them (256 by default): with more, they go to spill files in
DIR/.fhir2table-export/, bucketed by Bundle, and each bucket is rebuilt on its own (the summary
says how many).

DIR must not exist or be empty, and must not be inside OUT; OUT must be a folder convert wrote
(nothing is created in a folder that is not). The files are written into DIR/.fhir2table-export/ and moved
into DIR when all are complete; the export is finished when that folder is gone. An export killed
half way leaves it (and perhaps some whole files): export into the same DIR again and it removes
them first. The output folder is held (like convert and compact hold it) while it is read.

Without --bundles, tables are written on --threads threads (all cores by default), each file by
one thread: the files are the same whatever the number. --bundles works on one thread.";

const AFTER_HELP: &str = "\
Examples:
  fhir2table export /data/warehouse --to /data/export
  fhir2table export /data/warehouse --to /data/export-obs --resources Observation,Condition --format ndjson.gz
  fhir2table export /data/warehouse --to /data/documents --bundles
  fhir2table export /data/warehouse --to /data/export -q --report json | jq '.files[].rows'";

use std::path::PathBuf;

use anyhow::Result;

use crate::convert::export::{export, ExportFormat, ExportOptions, DEFAULT_BUNDLES_MEMORY_MB};
use crate::Exit;

/// Arguments of `fhir2table export`.
#[derive(Debug, clap::Args)]
#[command(about = ABOUT, long_about = LONG_ABOUT, after_help = super::examples_and_exit_codes(AFTER_HELP))]
pub struct Args {
    /// The output folder of an earlier `convert --resources` run
    #[arg(value_name = "OUT")]
    pub out: PathBuf,

    /// The folder to write the NDJSON files into; must not exist or be empty, and not be in OUT
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,

    /// The files' format: `ndjson` (<Type>.ndjson) or `ndjson.gz` (<Type>.ndjson.gz, gzip)
    #[arg(long, value_name = "FORMAT", default_value = "ndjson")]
    pub format: ExportFormat,

    /// Only these resource types, comma-separated (`Patient,Observation`); `all` (the default)
    /// exports every resource table
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub resources: Vec<String>,

    /// Rebuild the Bundles the resources came in: Bundle.ndjson with each whole-document Bundle,
    /// entries in place; the other files get only resources that were not in a Bundle
    #[arg(long, conflicts_with = "resources")]
    pub bundles: bool,

    /// With --bundles: the most MB of rendered entries held in memory; with more, they are
    /// spilled to disk in buckets and the Bundles rebuilt a bucket at a time
    #[arg(long, value_name = "MB", requires = "bundles", default_value_t = DEFAULT_BUNDLES_MEMORY_MB)]
    pub bundles_memory: usize,

    /// Print what was written per type on stdout as JSON: `--report json`
    #[arg(long, value_name = "FORMAT", value_parser = ["json"])]
    pub report: Option<String>,

    /// Tables written at once, each into its own file by one thread (not with --bundles)
    /// [default: all cores]
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub threads: Option<usize>,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `export`.
pub fn run(args: Args) -> Result<Exit> {
    let options = ExportOptions {
        format: args.format,
        resource_types: args.resources,
        bundles: args.bundles,
        bundles_memory: args.bundles_memory.saturating_mul(1 << 20),
        threads: args.threads.unwrap_or_else(crate::config::default_threads),
    };
    let outcome = export(&args.out, &args.to, &options)?;
    if args.report.is_some() {
        let report = serde_json::json!({
            "to": args.to.display().to_string(),
            "format": options.format,
            "files": outcome.files,
            "removed_interrupted_export": outcome.removed_interrupted_export,
        });
        super::print_out(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    if !args.quiet {
        if outcome.removed_interrupted_export {
            eprintln!(
                "{}: removed what an interrupted export had left there",
                args.to.display()
            );
        }
        for file in &outcome.files {
            eprintln!("{}", file.summary());
        }
    }
    Ok(Exit::Success)
}
