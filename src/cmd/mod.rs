//! The command line: one module per subcommand, each with its usage text at the top.

pub mod compact;
pub mod convert;
pub mod inspect;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::Exit;

const ABOUT: &str = "Turn FHIR R4 JSON (Bundles, Bulk Data NDJSON, gzip) into typed Parquet tables.";

const AFTER_HELP: &str = "\
Examples:
  fhir2table convert --in ./fhir --out ./parquet
  fhir2table convert --config fhir2table.toml --threads 2 -q
  fhir2table inspect ./parquet
  fhir2table compact ./parquet

Exit codes:
  0  every input was read cleanly and the tables were written
  1  the tables were written, but some input was lost (see OUT/_run.json)
  2  bad usage: flags, config file, missing --in, unwritable --out (nothing written)
  3  the run failed while writing output (previous output left untouched)
  4  another fhir2table run is writing to the same --out (see OUT/.fhir2table.lock)";

/// `fhir2table`'s arguments.
#[derive(Debug, Parser)]
#[command(name = "fhir2table", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boxed: convert has many more flags than the other subcommands.
    Convert(Box<convert::Args>),
    Inspect(inspect::Args),
    Compact(compact::Args),
}

/// Writes to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
pub fn print_out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<Exit> {
    match cli.command {
        Command::Convert(args) => convert::run(*args),
        Command::Inspect(args) => inspect::run(args),
        Command::Compact(args) => compact::run(args),
    }
}
