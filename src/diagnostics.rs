//! What went wrong with the input, gathered per worker and merged into the run report. Errors mean
//! input was lost (a file, a line, a resource); warnings mean a row was written with a value nulled.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// At most this many errors are kept with their details; the rest are only counted.
pub const MAX_ERRORS_KEPT: usize = 1000;
/// Examples kept per warning kind.
pub const MAX_EXAMPLES: usize = 5;
/// Longest value shown in an example.
const MAX_EXAMPLE_CHARS: usize = 200;

/// Kinds of per-value warnings. `Invalid*` and `OversizedValue` mean an input value was dropped,
/// so they make the run exit 1; reference warnings lose nothing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    InvalidDate,
    InvalidDatetime,
    /// Text with a leading NUL: never valid in FHIR, and the mark of a staged reference here.
    InvalidText,
    OversizedValue,
    UnresolvedReference,
    AmbiguousReference,
}

impl WarningKind {
    /// Whether the warning means a value from the input did not reach the output.
    pub fn loses_input(self) -> bool {
        matches!(
            self,
            WarningKind::InvalidDate
                | WarningKind::InvalidDatetime
                | WarningKind::InvalidText
                | WarningKind::OversizedValue
        )
    }
}

/// Where a value or resource came from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// One lost piece of input: the file (and line) and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputError {
    #[serde(flatten)]
    pub origin: Origin,
    pub message: String,
}

/// One example of a warning.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarningExample {
    #[serde(flatten)]
    pub origin: Origin,
    pub column: String,
    pub value: String,
}

/// Count and first few examples of one warning kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WarningTally {
    pub count: u64,
    pub examples: Vec<WarningExample>,
}

/// Count and first paths of the members kept in `__unmapped` for one resource type.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnmappedTally {
    pub count: u64,
    /// The [`MAX_UNMAPPED_PATHS`] smallest distinct JSON Pointers (`/name/0/nickname`), sorted.
    pub paths: Vec<String>,
}

impl UnmappedTally {
    /// Keeps `path` if it is among the [`MAX_UNMAPPED_PATHS`] smallest distinct paths seen, so
    /// the list does not depend on which worker met which resource first.
    fn keep_path(&mut self, path: &str) {
        if self.paths.len() >= MAX_UNMAPPED_PATHS
            && self.paths.last().is_some_and(|last| path >= last.as_str())
        {
            return;
        }
        if let Err(at) = self.paths.binary_search_by(|kept| kept.as_str().cmp(path)) {
            self.paths.insert(at, path.to_owned());
            self.paths.truncate(MAX_UNMAPPED_PATHS);
        }
    }
}

/// How many distinct unmapped paths a report lists per resource type.
pub const MAX_UNMAPPED_PATHS: usize = 100;

/// A worker's (or the whole run's, or a shard's) record of input problems and resource counts;
/// a shard keeps it in its manifest for the commit that merges all shards' reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Diagnostics {
    pub errors: Vec<InputError>,
    pub error_count: u64,
    pub warnings: BTreeMap<WarningKind, WarningTally>,
    pub resources: BTreeMap<String, u64>,
    /// Per resource type, the members a lossless resource table kept in `__unmapped` (not R4
    /// elements, or of the wrong JSON kind): nothing is lost, but the report says so.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unmapped: BTreeMap<String, UnmappedTally>,
    /// Input files whose every byte was read and every resource accepted.
    pub files_read: u64,
    /// Input files with at least one error.
    pub files_failed: u64,
    pub bytes_read: u64,
    /// Input files archived or deleted after the commit.
    pub files_retired: u64,
}

impl Diagnostics {
    /// Whether another error would still be kept with its details.
    pub fn keeps_more_errors(&self) -> bool {
        self.errors.len() < MAX_ERRORS_KEPT
    }

    pub fn error(&mut self, origin: Origin, message: impl Into<String>) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(InputError {
                origin,
                message: message.into(),
            });
        }
    }

    /// Counts a warning; `origin` is only worked out (it may have to count lines) for the few
    /// warnings kept as examples.
    pub fn warn(&mut self, kind: WarningKind, column: &str, value: &str, origin: impl FnOnce() -> Origin) {
        let tally = self.warnings.entry(kind).or_default();
        tally.count += 1;
        if tally.examples.len() < MAX_EXAMPLES {
            tally.examples.push(WarningExample {
                origin: origin(),
                column: column.to_owned(),
                value: shorten(value),
            });
        }
    }

    pub fn count_resource(&mut self, resource_type: &str) {
        match self.resources.get_mut(resource_type) {
            Some(count) => *count += 1,
            None => {
                self.resources.insert(resource_type.to_owned(), 1);
            }
        }
    }

    /// Records a member a resource table kept in `__unmapped`, at `path` (a JSON Pointer).
    pub fn unmapped(&mut self, resource_type: &str, path: &str) {
        if !self.unmapped.contains_key(resource_type) {
            self.unmapped
                .insert(resource_type.to_owned(), UnmappedTally::default());
        }
        let tally = self.unmapped.get_mut(resource_type).expect("inserted above");
        tally.count += 1;
        tally.keep_path(path);
    }

    /// Whether anything from the input was lost (decides exit code 1).
    pub fn lost_input(&self) -> bool {
        self.error_count > 0 || self.warnings.keys().any(|kind| kind.loses_input())
    }

    /// Adds another worker's record to this one.
    pub fn merge(&mut self, other: Diagnostics) {
        self.error_count += other.error_count;
        let room = MAX_ERRORS_KEPT.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
        for (kind, tally) in other.warnings {
            let mine = self.warnings.entry(kind).or_default();
            mine.count += tally.count;
            let room = MAX_EXAMPLES.saturating_sub(mine.examples.len());
            mine.examples.extend(tally.examples.into_iter().take(room));
        }
        for (resource_type, count) in other.resources {
            *self.resources.entry(resource_type).or_default() += count;
        }
        for (resource_type, tally) in other.unmapped {
            let mine = self.unmapped.entry(resource_type).or_default();
            mine.count += tally.count;
            for path in &tally.paths {
                mine.keep_path(path);
            }
        }
        self.files_read += other.files_read;
        self.files_failed += other.files_failed;
        self.bytes_read += other.bytes_read;
        self.files_retired += other.files_retired;
    }

    /// Puts errors and examples in file/line order so reports do not depend on thread timing.
    pub fn sort(&mut self) {
        let key = |o: &Origin| (o.file.clone(), o.line, o.resource.clone());
        self.errors.sort_by_key(|e| key(&e.origin));
        for tally in self.warnings.values_mut() {
            tally.examples.sort_by_key(|e| key(&e.origin));
        }
        for tally in self.unmapped.values_mut() {
            tally.paths.sort();
        }
    }
}

fn shorten(value: &str) -> String {
    match value.char_indices().nth(MAX_EXAMPLE_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes)", &value[..cut], value.len()),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_keeps_few_examples() {
        let origin = Origin {
            file: "a.json".into(),
            ..Origin::default()
        };
        let mut first = Diagnostics::default();
        let mut second = Diagnostics::default();
        for _ in 0..4 {
            first.warn(WarningKind::InvalidDate, "birth_date", "2019-13-45", || {
                origin.clone()
            });
            second.warn(WarningKind::InvalidDate, "birth_date", "2019-13-45", || {
                origin.clone()
            });
        }
        second.count_resource("Patient");
        first.merge(second);
        let tally = &first.warnings[&WarningKind::InvalidDate];
        assert_eq!(tally.count, 8);
        assert_eq!(tally.examples.len(), MAX_EXAMPLES);
        assert_eq!(first.resources["Patient"], 1);
        assert!(first.lost_input());
    }

    #[test]
    fn reference_warnings_do_not_count_as_lost_input() {
        let mut diagnostics = Diagnostics::default();
        diagnostics.warn(
            WarningKind::UnresolvedReference,
            "patient_id",
            "x",
            Origin::default,
        );
        assert!(!diagnostics.lost_input());
    }

    #[test]
    fn long_values_are_shortened_in_examples() {
        let long = "x".repeat(1000);
        let shown = shorten(&long);
        assert!(shown.starts_with(&"x".repeat(200)));
        assert!(shown.ends_with("(1000 bytes)"));
    }
}
