//! `fhir2table commit`: commit the finished shards of a sharded run into the output at once.

const ABOUT: &str = "Commit the finished shards of a sharded run (convert --shard) into the output";

const LONG_ABOUT: &str = "\
Commit the finished shards of a sharded run into the output, all at once.

Each process of `fhir2table convert --shard I/N` converts its share of the inputs into
OUT/.fhir2table/_shards/I-of-N/, and the last one to finish commits every shard's rows into OUT
by itself. Run this when that commit did not happen: the last shard failed after finishing, or
was killed during the commit. It takes OUT's lock, checks that all N shards of the most recently
started run have finished (shards of another run or export are left alone), resolves
conditional references across the shards, and commits every table in one step (with
--format delta, one Delta commit per table), with the merged run report in
OUT/.fhir2table/_run.json. The shard folders go with the same commit, so a second commit finds
nothing to do (exit 0). Exits 2 when shards are missing or still running, saying which.";

const AFTER_HELP: &str = "\
Examples:
  fhir2table commit /mnt/lake
  for i in 0 1 2 3; do fhir2table convert --in ./export --out ./lake --shard $i/4 & done; wait
  fhir2table commit ./lake --report json";

use std::path::PathBuf;

use anyhow::Result;

use crate::convert::shards::{commit_shards, ShardsCommit, Trigger};
use crate::{Exit, UsageError};

/// Arguments of `fhir2table commit`.
#[derive(Debug, clap::Args)]
#[command(about = ABOUT, long_about = LONG_ABOUT, after_help = super::examples_and_exit_codes(AFTER_HELP))]
pub struct Args {
    /// The output folder the shards converted into (their --out)
    #[arg(value_name = "OUT")]
    pub out: PathBuf,

    /// Print the merged run report (as in OUT/.fhir2table/_run.json) on stdout: `--report json`
    #[arg(long, value_name = "FORMAT", value_parser = ["json"])]
    pub report: Option<String>,

    /// Print nothing on stderr but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `commit`.
pub fn run(args: Args) -> Result<Exit> {
    let report = match commit_shards(&args.out, Trigger::Asked)? {
        ShardsCommit::Committed(report) => report,
        ShardsCommit::Nothing => {
            if !args.quiet {
                eprintln!("nothing to commit: {} holds no shards", args.out.display());
            }
            return Ok(Exit::Success);
        }
        ShardsCommit::Recovered => {
            if !args.quiet {
                eprintln!(
                    "finished the commit of the shards that an interrupted process had begun (report: {}/.fhir2table/_run.json)",
                    args.out.display()
                );
            }
            return Ok(Exit::Success);
        }
        ShardsCommit::Waiting(why) => return Err(UsageError(format!("nothing committed: {why}")).into()),
    };
    if args.report.is_some() {
        super::print_out(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    if !args.quiet {
        eprintln!("{}", report.summary());
    }
    Ok(match report.exit_code {
        0 => Exit::Success,
        _ => Exit::InputLost,
    })
}
