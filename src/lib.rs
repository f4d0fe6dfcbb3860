//! fhir2table turns FHIR R4 JSON (Bundles, Bulk Data NDJSON, gzip) into typed Parquet tables.
//!
//! The pipeline, one module per stage: [`source`] finds and reads inputs, [`resource`] finds the
//! resources in them, [`table`] flattens resources into typed rows and Arrow batches (and
//! [`view`] does the same for SQL on FHIR ViewDefinitions), [`sink`] writes Parquet and commits
//! it crash-safely. [`fhir`] holds the FHIR rules (dates, references, codings, R4 element
//! definitions) they all share, and [`fsops`] every file-system call that changes a folder.
//! [`convert`] runs the stages; [`cmd`] is the command line on top. Layers import only downwards;
//! docs/ARCHITECTURE.md is the map: what each part owns, what it may import, and where a new
//! input format, table, view function or sink backend goes.

pub mod allocator;
pub mod cmd;
pub mod config;
pub mod convert;
pub mod diagnostics;
pub mod fhir;
pub mod fsops;
mod logging;
pub mod remote;
pub mod report;
pub mod resource;
pub mod sink;
pub mod source;
pub mod state;
pub mod table;
pub mod threads;
pub mod view;

use std::fmt;

/// An error in how the tool was called (bad flag, config, input or output path), found before
/// any work: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Process exit codes. What each means is written once, in [`Exit::meaning`]: `--help` prints
/// [`Exit::help_table`], and a test checks README's longer table against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: a clean run.
    Success = 0,
    /// 1: tables written, input lost.
    InputLost = 1,
    /// 2: bad usage, nothing written.
    Usage = 2,
    /// 3: writing failed, previous output kept.
    Failed = 3,
    /// 4: the output folder is locked.
    Locked = 4,
}

impl Exit {
    /// Every exit code, in order.
    pub const ALL: [Exit; 5] = [
        Exit::Success,
        Exit::InputLost,
        Exit::Usage,
        Exit::Failed,
        Exit::Locked,
    ];

    /// What the code tells the caller: the headline, which README's table also starts with, and
    /// the details `--help` adds after it.
    pub fn meaning(self) -> (&'static str, &'static str) {
        match self {
            Exit::Success => ("every input was read cleanly and the tables were written", ""),
            Exit::InputLost => (
                "the tables were written, but some input was lost",
                " (see OUT/.fhir2table/_run.json)",
            ),
            Exit::Usage => (
                "bad usage",
                ": flags, config file, missing --in, unwritable --out (nothing written)",
            ),
            Exit::Failed => (
                "the run failed while writing the output",
                " (previous output left untouched)",
            ),
            Exit::Locked => (
                "another fhir2table run holds the output folder",
                " (see OUT/.fhir2table.lock)",
            ),
        }
    }

    /// The `Exit codes:` section of `--help`.
    pub fn help_table() -> String {
        let mut table = String::from("Exit codes:");
        for exit in Exit::ALL {
            let (headline, details) = exit.meaning();
            table.push_str(&format!("\n  {}  {headline}{details}", exit as u8));
        }
        table
    }

    /// The exit code for an error returned by a command.
    pub fn for_error(error: &anyhow::Error) -> Exit {
        if error.downcast_ref::<UsageError>().is_some() || error.downcast_ref::<sink::WrongFormat>().is_some()
        {
            Exit::Usage
        } else if error.downcast_ref::<sink::Locked>().is_some() {
            Exit::Locked
        } else {
            Exit::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    /// The rows of README's `### Exit codes` table: code and meaning.
    fn readme_exit_codes() -> Vec<(String, String)> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let (_, section) = readme
            .split_once("\n### Exit codes\n")
            .expect("README has an exit-code section");
        section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2) // the header and its |---| line
            .map(|line| {
                let (code, meaning) = line.trim_matches('|').split_once('|').expect("two cells");
                (code.trim().to_owned(), meaning.trim().to_owned())
            })
            .collect()
    }

    #[test]
    fn the_readme_table_has_every_code_with_the_help_headline() {
        let rows = readme_exit_codes();
        let codes: Vec<String> = rows.iter().map(|(code, _)| code.clone()).collect();
        let expected: Vec<String> = Exit::ALL.iter().map(|&exit| (exit as u8).to_string()).collect();
        assert_eq!(codes, expected, "README's exit codes");
        for (exit, (_, meaning)) in Exit::ALL.iter().zip(&rows) {
            let (headline, _) = exit.meaning();
            assert!(
                meaning.starts_with(headline),
                "README's row for exit code {} starts {meaning:?}, --help says {headline:?}",
                *exit as u8
            );
        }
    }

    #[test]
    fn all_lists_the_codes_in_order() {
        for (position, exit) in Exit::ALL.iter().enumerate() {
            assert_eq!(*exit as usize, position);
        }
    }
}
