//! The command line: one module per subcommand, each with its usage text at the top.

pub mod commit;
pub mod compact;
pub mod convert;
pub mod export;
pub mod inspect;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::Exit;

const ABOUT: &str = "Turn FHIR R4 JSON (Bundles, Bulk Data NDJSON, gzip) into typed Parquet tables.";

const EXAMPLES: &str = "\
Examples:
  fhir2table convert --in ./fhir --out ./parquet
  fhir2table convert --config fhir2table.toml --threads 2 -q
  fhir2table inspect ./parquet
  fhir2table compact ./parquet
  fhir2table export ./parquet --to ./ndjson
  fhir2table convert --in ./fhir --out ./lake --shard 0/2 & fhir2table convert --in ./fhir --out ./lake --shard 1/2";

/// The closing text of a `--help`: its examples, then the exit codes (written once, on [`Exit`]).
pub(crate) fn examples_and_exit_codes(examples: &str) -> String {
    format!("{examples}\n\n{}", Exit::help_table())
}

/// `fhir2table`'s arguments.
#[derive(Debug, Parser)]
#[command(name = "fhir2table", version, about = ABOUT, after_help = examples_and_exit_codes(EXAMPLES))]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    // Boxed: convert has many more flags than the other subcommands. (A plain comment: a doc
    // comment here would replace the command's own about text in --help.)
    Convert(Box<convert::Args>),
    Inspect(inspect::Args),
    Compact(compact::Args),
    Commit(commit::Args),
    Export(export::Args),
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
        Command::Commit(args) => commit::run(args),
        Command::Export(args) => export::run(args),
    }
}
