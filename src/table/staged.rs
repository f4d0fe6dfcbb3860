//! How a table cell waits for the run-wide resolution of a conditional reference
//! (`Practitioner?identifier=...`): the reference text behind a marker character, written into
//! the staged Parquet file and replaced once every identifier of the run is known. Built-in tables
//! and views stage such cells the same way, so one rewrite pass resolves both.

/// Marks a staged cell that still holds a conditional reference. Input text never starts with it:
/// a FHIR string cannot hold NUL, and cells that do are nulled (`invalid_text`) or their resource
/// rejected (an id) before they could pass for staged.
pub const PENDING_MARKER: char = '\0';

/// The cell text of a staged conditional reference.
pub fn staged(reference: &str) -> String {
    format!("{PENDING_MARKER}{reference}")
}
