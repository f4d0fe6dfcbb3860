//! Turning FHIR values into cells under the contract's shared rules: strings copied as they are
//! (within a size limit), dates and timestamps parsed with warnings for invalid values, references
//! resolved to ids (or staged for the run-wide conditional-reference pass).

use std::borrow::Cow;

use crate::diagnostics::{Diagnostics, WarningKind};
use crate::fhir::reference::{refers_to_type, resolve, FullUrlLookup, Resolution, ResolvedReference};
use crate::fhir::{parse_date, parse_datetime, Reference, Str};
use crate::resource::Resource;

/// Longest string a cell takes (1 MiB). Longer values become null and count as lost input: a
/// multi-megabyte "name" is a broken export, and analytics engines choke on such cells.
pub const MAX_CELL_BYTES: usize = 1 << 20;

/// The id a row is keyed by. `id` is a required column, so an id too big for a cell cannot
/// become null like other oversized values: the resource is rejected (and reported) instead.
pub fn row_id<'i>(resource_type: &str, id: &'i str) -> Result<&'i str, String> {
    if id.contains('\0') {
        return Err(format!("{resource_type} id contains NUL, which no FHIR id may"));
    }
    if id.len() > MAX_CELL_BYTES {
        return Err(format!(
            "{resource_type} id is {} bytes, over the {MAX_CELL_BYTES}-byte cell limit",
            id.len()
        ));
    }
    Ok(id)
}

/// Cell conversion for one resource: knows where the resource came from, for warnings.
pub struct Cells<'c, 'a> {
    resource: &'c Resource<'a>,
    id: &'c str,
    diagnostics: &'c mut Diagnostics,
    /// Set when a cell holds a staged conditional reference.
    pub has_pending: bool,
}

/// A reference resolved within its resource's context, with its text kept for type checks.
pub struct Lookup<'r> {
    pub text: &'r str,
    pub declared_type: Option<&'r str>,
    pub resolved: ResolvedReference<'r>,
}

impl Lookup<'_> {
    /// Whether nothing could be found for the reference (it gets counted as unresolved).
    pub fn is_unresolved(&self) -> bool {
        self.resolved.resolution == Resolution::Unresolved
    }

    /// Whether the reference points to a resource of `resource_type` (see the contract).
    pub fn refers_to(&self, resource_type: &str) -> bool {
        refers_to_type(
            self.text,
            self.declared_type,
            self.resolved.entry_type.as_deref(),
            resource_type,
        )
    }
}

impl<'c, 'a> Cells<'c, 'a> {
    pub fn new(resource: &'c Resource<'a>, id: &'c str, diagnostics: &'c mut Diagnostics) -> Self {
        Cells {
            resource,
            id,
            diagnostics,
            has_pending: false,
        }
    }

    fn warn(&mut self, kind: WarningKind, column: &str, value: &str) {
        let (resource, id) = (self.resource, self.id);
        self.diagnostics
            .warn(kind, column, value, || resource.origin(Some(id)));
    }

    /// A string cell, unless it exceeds [`MAX_CELL_BYTES`] or starts with NUL (never valid FHIR
    /// text, and the mark of a staged conditional reference, which it must not pass for).
    pub fn text<'v>(&mut self, column: &str, value: Option<Cow<'v, str>>) -> Option<Cow<'v, str>> {
        let value = value?;
        if value.len() > MAX_CELL_BYTES {
            self.warn(WarningKind::OversizedValue, column, &value);
            return None;
        }
        if value.starts_with(super::PENDING_MARKER) {
            self.warn(WarningKind::InvalidText, column, &value);
            return None;
        }
        Some(value)
    }

    /// A string cell from an optional FHIR string, borrowing where possible.
    pub fn string<'v>(&mut self, column: &str, value: Option<&'v Str<'_>>) -> Option<Cow<'v, str>> {
        self.text(column, value.map(|s| Cow::Borrowed(&**s)))
    }

    /// A `Date32` cell from a FHIR `date`.
    pub fn date(&mut self, column: &str, value: Option<&Str<'_>>) -> Option<i32> {
        let text = value?;
        let parsed = parse_date(text);
        if parsed.is_none() {
            self.warn(WarningKind::InvalidDate, column, text);
        }
        parsed
    }

    /// A `Date32` cell from the calendar date a FHIR `date`, `dateTime` or `instant` is written
    /// on (see [`crate::fhir::datetime::calendar_date`]).
    pub fn calendar_date(&mut self, column: &str, text: &str) -> Option<i32> {
        let parsed = crate::fhir::datetime::calendar_date(text);
        if parsed.is_none() {
            let kind = if text.contains('T') {
                WarningKind::InvalidDatetime
            } else {
                WarningKind::InvalidDate
            };
            self.warn(kind, column, text);
        }
        parsed
    }

    /// A `Timestamp(µs, UTC)` cell from a FHIR `dateTime` or `instant`.
    pub fn datetime(&mut self, column: &str, value: Option<&Str<'_>>) -> Option<i64> {
        let text = value?;
        let parsed = parse_datetime(text);
        if parsed.is_none() {
            self.warn(WarningKind::InvalidDatetime, column, text);
        }
        parsed
    }

    /// Resolves a reference as far as this resource's Bundle allows; `None` when it has no text.
    pub fn lookup<'r>(&self, reference: &'r Reference<'_>) -> Option<Lookup<'r>>
    where
        'a: 'r,
    {
        let text: &'r str = reference.reference.as_deref()?;
        let bundle: Option<&'r dyn FullUrlLookup> = match self.resource.bundle {
            Some(scope) => Some(scope),
            None => None,
        };
        Some(Lookup {
            text,
            declared_type: reference.kind.as_deref(),
            resolved: resolve(text, bundle),
        })
    }

    /// The `*_id` cell of a resolved reference. Unresolvable references are counted; conditional
    /// ones are staged (marked) for the run-wide pass that has seen every identifier.
    pub fn reference_id<'r>(&mut self, column: &str, lookup: Lookup<'r>) -> Option<Cow<'r, str>> {
        match lookup.resolved.resolution {
            Resolution::Id(id) => self.text(column, Some(id)),
            Resolution::Conditional(_) => {
                self.has_pending = true;
                Some(Cow::Owned(super::staged(lookup.text)))
            }
            Resolution::Contained => None,
            Resolution::Unresolved => {
                self.warn(WarningKind::UnresolvedReference, column, lookup.text);
                None
            }
        }
    }

    /// The `source_file` cell.
    pub fn source_file(&self) -> Cow<'a, str> {
        Cow::Borrowed(self.resource.position.file)
    }
}
