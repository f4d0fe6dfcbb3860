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

pub mod cmd;
pub mod config;
pub mod convert;
pub mod diagnostics;
pub mod fhir;
pub mod fsops;
mod logging;
pub mod report;
pub mod resource;
pub mod sink;
pub mod source;
pub mod state;
pub mod table;
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

/// Process exit codes, as documented in README and `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every input was read cleanly and the tables were written.
    Success = 0,
    /// The tables were written, but some input was lost (see the run report).
    InputLost = 1,
    /// Bad usage: flags, config, missing input, unwritable output. Nothing was written.
    Usage = 2,
    /// The run failed while writing output; the previous output is untouched.
    Failed = 3,
    /// Another fhir2table run holds the output folder's lock; nothing was done.
    Locked = 4,
}

impl Exit {
    /// The exit code for an error returned by a command.
    pub fn for_error(error: &anyhow::Error) -> Exit {
        if error.downcast_ref::<UsageError>().is_some() {
            Exit::Usage
        } else if error.downcast_ref::<sink::Locked>().is_some() {
            Exit::Locked
        } else {
            Exit::Failed
        }
    }
}
