//! `fhir2table compact`: deduplicate the tables of an output folder after appends.

const ABOUT: &str = "Deduplicate appended tables: keep each resource's newest row, one file per table";

const LONG_ABOUT: &str = "\
Deduplicate the tables of an output folder. Incremental and append runs add new Parquet files, so
a resource converted again (a re-export, an updated record) appears more than once. compact keeps,
per resource id, the newest: the greatest last_updated (compared as instants), then the latest
input (later runs, later rows). Built-in tables keep one row per id; a view keeps all the rows
its newest file has for that id. Rows are dropped when a later run deleted the resource (Bulk
Data deleted/ files, kept in OUT/.fhir2table/_deleted/) or converted their input file again
(incremental state). Each table is rewritten as one file and swapped in atomically, under the same lock and
journal as convert. A table without an id column (a view that has none) cannot be deduplicated:
it is left as it is, and the summary and --report json say so.";

const AFTER_HELP: &str = "\
Examples:
  fhir2table compact /data/warehouse
  fhir2table convert --incremental --in /data/landing --out /data/warehouse && fhir2table compact /data/warehouse";

use std::path::PathBuf;

use anyhow::Result;

use crate::convert::compact::compact;
use crate::sink::Compression;
use crate::Exit;

/// Arguments of `fhir2table compact`.
#[derive(Debug, clap::Args)]
#[command(about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Args {
    /// The output folder of earlier `convert` runs
    #[arg(value_name = "OUT")]
    pub out: PathBuf,

    /// Parquet compression of the rewritten files
    #[arg(long, value_name = "CODEC", default_value = "zstd")]
    pub compression: Compression,

    /// Print what was done to each table on stdout as JSON: `--report json`
    #[arg(long, value_name = "FORMAT", value_parser = ["json"])]
    pub report: Option<String>,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `compact`.
pub fn run(args: Args) -> Result<Exit> {
    let outcomes = compact(&args.out, args.compression)?;
    if args.report.is_some() {
        let report = serde_json::json!({ "tables": outcomes });
        super::print_out(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    if !args.quiet {
        for outcome in &outcomes {
            eprintln!("{}", outcome.summary());
        }
    }
    Ok(Exit::Success)
}
