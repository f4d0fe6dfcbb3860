//! Parsing FHIR documents into resources: find each resource in a file or NDJSON line (walking
//! Bundles, nested ones too), learn its `resourceType` without building a JSON tree, and hand the raw
//! JSON text of each resource to a [`ResourceSink`]. Also feeds the run-wide identifier index that
//! conditional references are resolved against.

mod bundle;
mod dispatch;
pub mod identifiers;
mod one_pass;
pub mod tree;

pub use bundle::{entry_resource_types, BundleEnvelope, BundleScope, EntryPlace};
pub use dispatch::{DocumentError, Walker, MAX_BUNDLE_DEPTH};
pub use identifiers::{IdentifierIndex, IndexedTarget};

use crate::diagnostics::{Diagnostics, Origin};

/// One resource found in the input, still as raw JSON text borrowed from the file's buffer.
pub struct Resource<'a> {
    pub resource_type: &'a str,
    pub raw: &'a str,
    /// The Bundle the resource is an entry of, for `urn:uuid:` and other `fullUrl` references.
    pub bundle: Option<&'a BundleScope<'a>>,
    /// The entry's `fullUrl`, when the resource is a Bundle entry.
    pub full_url: Option<&'a str>,
    /// The Bundle entry the resource is, for the resource tables' `__bundle` column.
    pub container: Option<EntryPlace<'a>>,
    /// For a Bundle, handed over after its entries: its key and the entries that became rows.
    pub envelope: Option<&'a BundleEnvelope<'a>>,
    pub(crate) position: Position<'a>,
    /// The resource as a JSON tree, built on first use and shared by every view of its type.
    pub(crate) tree: std::cell::OnceCell<Result<tree::Node<'a>, String>>,
    /// The sink already read this Bundle entry into a row in progress as the walker read the
    /// Bundle ([`ResourceSink::stream_entry`]): the row is finished, not read again.
    pub streamed: bool,
}

/// Where a resource's text sits: enough to name its file and line in messages, computed only
/// when a message needs it.
#[derive(Clone, Copy)]
pub(crate) struct Position<'a> {
    pub file: &'a str,
    /// The whole document the resource is part of, and the line that document starts on.
    pub document: &'a str,
    pub first_line: u64,
    /// Newlines already counted in the document, shared by all its resources.
    pub lines: &'a LineCounter,
}

/// The last offset a line was asked for in a document and the newlines before it. Resources are
/// met in document order, so with it the lines of every resource of a Bundle cost one pass over
/// the document in all, not one pass each (a Bundle of 100,000 broken entries took minutes).
#[derive(Default)]
pub(crate) struct LineCounter {
    seen: std::cell::Cell<(usize, u64)>,
}

impl Position<'_> {
    /// The 1-based line of byte `offset` of the document.
    pub(crate) fn line_at(&self, offset: usize) -> u64 {
        let bytes = self.document.as_bytes();
        let offset = offset.min(bytes.len());
        let newlines = |part: &[u8]| part.iter().filter(|&&b| b == b'\n').count() as u64;
        let (from, before_from) = self.lines.seen.get();
        let before = if offset >= from {
            before_from + newlines(&bytes[from..offset])
        } else {
            before_from - newlines(&bytes[offset..from])
        };
        self.lines.seen.set((offset, before));
        self.first_line + before
    }

    /// The byte offset of `part` (a slice of the document) within the document.
    pub(crate) fn offset_of(&self, part: &str) -> usize {
        (part.as_ptr() as usize).saturating_sub(self.document.as_ptr() as usize)
    }
}

impl<'a> Resource<'a> {
    /// A resource found at `position`; see the fields for the rest.
    pub(crate) fn new(
        resource_type: &'a str,
        raw: &'a str,
        bundle: Option<&'a BundleScope<'a>>,
        full_url: Option<&'a str>,
        position: Position<'a>,
    ) -> Self {
        Resource {
            resource_type,
            raw,
            bundle,
            full_url,
            container: None,
            envelope: None,
            position,
            tree: std::cell::OnceCell::new(),
            streamed: false,
        }
    }

    /// The resource as a tree borrowing from its text (views evaluate FHIRPath over it), parsed
    /// once however many views read this resource type; so every caller passes the same `keep`,
    /// what all of them read.
    pub fn tree(&self, keep: &tree::Keep) -> Result<&tree::Node<'a>, Rejection> {
        let parsed = self
            .tree
            .get_or_init(|| tree::parse_keeping(self.raw, keep).map_err(|e| e.0));
        parsed.as_ref().map_err(
            |message| match serde_json::from_str::<serde::de::IgnoredAny>(self.raw) {
                Err(error) => self.rejection(&error),
                // Valid JSON that a tree cannot hold: nested deeper than serde_json's limit.
                Ok(_) => Rejection::from(format!("invalid {}: {message}", self.resource_type)),
            },
        )
    }

    /// The resource's logical id: its own `id`, else the one its entry's `fullUrl` gives (POSTs in
    /// transaction Bundles carry no id; references to them use the fullUrl).
    pub fn logical_id<'x>(&'x self, own_id: Option<&'x str>) -> Option<&'x str> {
        own_id.or_else(|| self.full_url.and_then(crate::fhir::reference::id_from_full_url))
    }

    /// File, line and `Type/id` of this resource, for errors and warnings.
    pub fn origin(&self, id: Option<&str>) -> Origin {
        Origin {
            file: self.position.file.to_owned(),
            line: Some(self.position.line_at(self.position.offset_of(self.raw))),
            resource: id.map(|id| format!("{}/{}", self.resource_type, id)),
        }
    }

    /// A parse error of this resource's text, placed on the line of the file where it occurred.
    pub fn rejection(&self, error: &serde_json::Error) -> Rejection {
        let first_line = self.position.line_at(self.position.offset_of(self.raw));
        Rejection {
            message: format!(
                "invalid {}: {}",
                self.resource_type,
                message_without_position(error)
            ),
            line: Some(first_line + error.line().saturating_sub(1) as u64),
            stops_table: false,
        }
    }
}

/// Why a sink could not turn a resource into rows; the resource is lost and reported.
#[derive(Debug)]
pub struct Rejection {
    pub message: String,
    /// The line of the problem when known; otherwise the resource's first line is reported.
    pub line: Option<u64>,
    /// The data broke the table's own rules (a view's single-valued column got several values):
    /// the table stops and is not written, rather than being written with rows missing.
    pub stops_table: bool,
}

impl From<String> for Rejection {
    fn from(message: String) -> Self {
        Rejection {
            message,
            line: None,
            stops_table: false,
        }
    }
}

/// serde_json's message without its " at line L column C" suffix (positions are relative to the
/// parsed slice, so callers put the absolute line in themselves).
pub(crate) fn message_without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// Consumes resources: in a run, the set of tables that feeds the built-in tables and the SQL on
/// FHIR views alike.
pub trait ResourceSink {
    /// Whether resources of this type are parsed by the sink; others are only validated.
    fn wants(&self, resource_type: &str) -> bool;

    /// Turns one resource into rows. An `Err` means the resource was lost; its message is recorded
    /// with the resource's file and line.
    fn accept(&mut self, resource: &Resource<'_>, diagnostics: &mut Diagnostics) -> Result<(), Rejection>;

    /// A Bundle asked to delete `resource_type/id` (Bulk Data `deleted/` files).
    fn deleted(&mut self, _resource_type: &str, _id: &str) {}

    /// A whole-document Bundle's text, before the walker reads it: for a sink that does work per
    /// resource type ahead of the entries (see [`entry_resource_types`]).
    fn preview_bundle(&mut self, _text: &str) {}

    /// Whether the sink reads a Bundle's entries as the walker finds them (the resource
    /// tables, see [`ResourceSink::stream_entry`]); the walker then reads the Bundle once, not
    /// once to find its entries and again to build their rows. Called at each Bundle that is
    /// a whole document.
    fn begin_bundle(&mut self) -> bool {
        false
    }

    /// The walker's reader is on an entry's resource of type `resource_type` (its first key
    /// says so): `Ok(true)` when the sink read the whole resource into a row in progress (the
    /// reader is then past it, and [`ResourceSink::accept`] later gets the resource with
    /// [`Resource::streamed`] set); `Ok(false)` when it read nothing. `Err`: the sink could
    /// not read it (the reader is lost) and the walker reads the Bundle the usual way, after
    /// [`ResourceSink::abandon_bundle`].
    fn stream_entry(
        &mut self,
        _resource_type: &str,
        _reader: &mut tree::Reader<'_>,
    ) -> Result<bool, StreamRefused> {
        Ok(false)
    }

    /// Drops the rows in progress of every entry streamed since [`ResourceSink::begin_bundle`].
    fn abandon_bundle(&mut self) {}
}

/// A sink could not read an entry as it streamed past: the Bundle is read the usual way.
#[derive(Debug)]
pub struct StreamRefused;

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn lines_are_right_in_any_order_of_asking() {
        let document = "a\nb\n\nc\nd";
        let lines = LineCounter::default();
        let position = Position {
            file: "f",
            document,
            first_line: 10,
            lines: &lines,
        };
        let expected = |offset: usize| 10 + document[..offset].matches('\n').count() as u64;
        for offset in [0, 3, 7, 2, 8, 8, 1, 100, 5, 0] {
            assert_eq!(
                position.line_at(offset),
                expected(offset.min(document.len())),
                "offset {offset}"
            );
        }
    }
}
