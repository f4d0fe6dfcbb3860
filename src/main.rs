//! The `fhir2table` binary: parse arguments, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use fhir2table::cmd::Cli;
use fhir2table::Exit;

#[global_allocator]
static ALLOCATOR: fhir2table::allocator::RunAllocator = fhir2table::allocator::RunAllocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = match fhir2table::cmd::run(cli) {
        Ok(exit) => exit,
        Err(error) => {
            eprintln!("fhir2table: error: {error:#}");
            Exit::for_error(&error)
        }
    };
    fhir2table::allocator::exit_at_once_after_mimalloc(exit as u8);
    ExitCode::from(exit as u8)
}
