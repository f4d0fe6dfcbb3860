use std::borrow::Cow;
use std::cell::{OnceCell, Ref, RefCell};
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::tree::{is_json_whitespace, trim_start};

use crate::fhir::key_hash::FastHash;
use crate::fhir::reference::{id_from_full_url, EntryTarget, FullUrlLookup};
use crate::fhir::Str;

/// The shape of a Bundle as far as walking it needs: entries with their `fullUrl` and raw resource.
#[derive(Deserialize)]
pub(crate) struct BundleShape<'a> {
    #[serde(borrow, default)]
    pub entry: Vec<EntryShape<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct EntryShape<'a> {
    #[serde(borrow, rename = "fullUrl")]
    pub full_url: Option<Str<'a>>,
    /// The resource's text as it stands in the Bundle's.
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub resource: Option<&'a str>,
    #[serde(borrow)]
    pub request: Option<EntryRequest<'a>>,
    /// The resource's type where the Bundle's single pass (`one_pass.rs`) read it already, at
    /// the start of `resource`: read again by the walker, it was 0.4% of the instructions of
    /// `--resources all` on 500 MB of Bundles.
    #[serde(skip)]
    pub resource_type: Option<&'a str>,
}

/// A value's text, borrowed from the document (`None` for `null`).
fn raw_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<&'de str>, D::Error> {
    let raw: Option<&'de RawValue> = Deserialize::deserialize(deserializer)?;
    Ok(raw.map(RawValue::get))
}

/// `Bundle.entry.request`: a DELETE here (Bulk Data `deleted/` files) removes a resource.
#[derive(Deserialize)]
pub(crate) struct EntryRequest<'a> {
    #[serde(borrow)]
    pub method: Option<Str<'a>>,
    #[serde(borrow)]
    pub url: Option<Str<'a>>,
}

/// A Bundle being walked, as the resource tables see it (docs/LOSSLESS.md, "Bundles"): its key,
/// which every entry's row records, and the entries whose resource became a row of its own
/// type's table, which its own row (the envelope) then leaves out.
pub struct BundleEnvelope<'a> {
    /// Made on first use: only the resource tables read it, and hashing every Bundle's text
    /// would cost a run of the built-in tables alone a third of its time.
    key: OnceCell<String>,
    origin: KeyOrigin<'a>,
    /// Each entry's `resource` as text (`None`: the entry has none, or `null`).
    pub resources: Vec<Option<&'a str>>,
    entry_rows: RefCell<Vec<u32>>,
}

/// What a Bundle's key is made from.
enum KeyOrigin<'a> {
    Document { file: &'a str, line: u64, text: &'a str },
    Nested { parent: String, entry: u32 },
}

impl<'a> BundleEnvelope<'a> {
    /// The Bundle that is the whole document `text`, starting on `line` of `file`.
    pub(crate) fn document(file: &'a str, line: u64, text: &'a str, entries: &[EntryShape<'a>]) -> Self {
        BundleEnvelope::with_origin(KeyOrigin::Document { file, line, text }, entries)
    }

    /// The Bundle in entry `entry` of this one.
    pub(crate) fn nested(&self, entry: u32, entries: &[EntryShape<'a>]) -> Self {
        let parent = self.key().to_owned();
        BundleEnvelope::with_origin(KeyOrigin::Nested { parent, entry }, entries)
    }

    fn with_origin(origin: KeyOrigin<'a>, entries: &[EntryShape<'a>]) -> Self {
        BundleEnvelope {
            key: OnceCell::new(),
            origin,
            resources: entries.iter().map(|entry| entry.resource).collect(),
            entry_rows: RefCell::new(Vec::new()),
        }
    }

    /// The Bundle's key: 16 hex digits for a Bundle that is a whole document (a hash of its
    /// file, first line and text), `<parent key>/<entry index>` for one inside another's entry.
    pub fn key(&self) -> &str {
        self.key.get_or_init(|| match &self.origin {
            KeyOrigin::Document { file, line, text } => {
                let mut hasher = crate::fhir::key_hash::KeyHasher::new();
                hasher.text(file);
                hasher.bytes(&line.to_le_bytes());
                hasher.long_text(text);
                format!("{:016x}", hasher.finish())
            }
            KeyOrigin::Nested { parent, entry } => format!("{parent}/{entry}"),
        })
    }

    /// Records that entry `entry`'s resource is a row of its type's table.
    pub fn entry_became_row(&self, entry: u32) {
        self.entry_rows.borrow_mut().push(entry);
    }

    /// The entries recorded by [`BundleEnvelope::entry_became_row`], in walk order.
    pub fn entry_rows(&self) -> Ref<'_, Vec<u32>> {
        self.entry_rows.borrow()
    }
}

/// A Bundle entry: the Bundle and the entry's index in it.
#[derive(Clone, Copy)]
pub struct EntryPlace<'a> {
    pub bundle: &'a BundleEnvelope<'a>,
    pub entry: u32,
}

/// The `resourceType` and `id` of a resource, read without building anything else.
#[derive(Deserialize)]
pub(crate) struct Head<'a> {
    #[serde(borrow, rename = "resourceType")]
    pub resource_type: Option<Str<'a>>,
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
}

/// An entry's resource type and (own or fullUrl-derived) id. Owned, so that the scope stays
/// covariant in its lifetime (a cell of borrowed text would pin it).
type EntryHead = (Box<str>, Option<Box<str>>);

/// The entries of one Bundle by `fullUrl`, so references inside it (`urn:uuid:…`) can find their
/// target. An entry's type and id are read only when some reference asks for it, then kept.
pub struct BundleScope<'a> {
    by_full_url: HashMap<Cow<'a, str>, Target<'a>, FastHash>,
}

struct Target<'a> {
    raw: &'a str,
    head: OnceCell<Option<EntryHead>>,
}

impl<'a> BundleScope<'a> {
    pub(crate) fn new(entries: &[EntryShape<'a>]) -> Self {
        let by_full_url = entries
            .iter()
            .filter_map(|entry| {
                let target = Target {
                    raw: entry.resource?,
                    head: OnceCell::new(),
                };
                Some((entry.full_url.clone()?.0, target))
            })
            .collect();
        BundleScope { by_full_url }
    }
}

impl FullUrlLookup for BundleScope<'_> {
    fn entry(&self, full_url: &str) -> Option<EntryTarget<'_>> {
        let (key, target) = self.by_full_url.get_key_value(full_url)?;
        let (resource_type, id) = target.head.get_or_init(|| read_head(key, target.raw)).as_ref()?;
        Some(EntryTarget {
            resource_type: Cow::Borrowed(resource_type),
            id: id.as_deref().map(Cow::Borrowed),
        })
    }
}

/// The type and id of the entry at `full_url`.
fn read_head(full_url: &str, raw: &str) -> Option<EntryHead> {
    let (resource_type, id) = match leading_head(raw) {
        Some((resource_type, id)) => (Cow::Borrowed(resource_type), id.map(Cow::Borrowed)),
        None => {
            let head = serde_json::from_str::<Head>(raw).ok()?;
            (head.resource_type?.0, head.id.map(|id| id.0))
        }
    };
    let id = id.as_deref().or_else(|| id_from_full_url(full_url));
    Some((resource_type.into(), id.map(Box::from)))
}

/// `{"resourceType": "X", "id": "Y"` (or without the id member) at the start of a resource, as
/// Synthea and most servers write it: read without scanning the rest, which may be large. `None`
/// for anything else (other order, escapes), which the full read handles.
fn leading_head(text: &str) -> Option<(&str, Option<&str>)> {
    let rest = trim_start(text).strip_prefix('{')?;
    let (resource_type, rest) = leading_member(rest, "resourceType")?;
    if !resource_type.bytes().all(|b| b.is_ascii_alphanumeric()) || resource_type.is_empty() {
        return None;
    }
    let rest = trim_start(rest);
    if rest.starts_with('}') {
        return Some((resource_type, None));
    }
    let rest = rest.strip_prefix(',')?;
    // A second top-level `id` or `resourceType` further on (invalid for FHIR; the full read
    // refuses it and leaves references to the entry unresolved) is not looked for: references
    // resolve to the first. Finding it would mean reading the whole resource for every target.
    let (id, _) = leading_member(rest, "id")?;
    Some((resource_type, Some(id)))
}

/// The resource types of a Bundle's entries, each once, in the order `text` first names them:
/// each `"resource": {"resourceType": "X"` in it, the type as the resource's first key (as
/// Synthea and most servers write it). A guess from the text alone, for work a sink may do
/// ahead of the entries ([`super::ResourceSink::preview_bundle`]): an entry written otherwise
/// is missed, a `resource` member elsewhere (a Parameters' parameter) counted; a contained
/// resource (under `contained`) is not.
pub fn entry_resource_types(text: &str) -> Vec<&str> {
    const KEY: &str = "\"resourceType\"";
    let json_whitespace = |c: char| c.is_ascii() && is_json_whitespace(c as u8);
    let mut types: Vec<&str> = Vec::new();
    for at in memchr::memmem::find_iter(text.as_bytes(), KEY) {
        let opened_as_resource = text[..at]
            .trim_end_matches(json_whitespace)
            .strip_suffix('{')
            .and_then(|before| before.trim_end_matches(json_whitespace).strip_suffix(':'))
            .is_some_and(|before| before.trim_end_matches(json_whitespace).ends_with("\"resource\""));
        if !opened_as_resource {
            continue;
        }
        let Some((resource_type, _)) = leading_member(&text[at..], "resourceType") else {
            continue;
        };
        if !types.contains(&resource_type) {
            types.push(resource_type);
        }
    }
    types
}

/// `"name": "value"` at the start of `text` (whitespace allowed), the value free of escapes.
fn leading_member<'t>(text: &'t str, name: &str) -> Option<(&'t str, &'t str)> {
    let rest = trim_start(text)
        .strip_prefix('"')?
        .strip_prefix(name)?
        .strip_prefix('"')?;
    let rest = trim_start(trim_start(rest).strip_prefix(':')?).strip_prefix('"')?;
    let end = rest.find(['"', '\\'])?;
    (rest.as_bytes()[end] == b'"').then(|| (&rest[..end], &rest[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_types_are_the_resources_first_keys_in_the_order_first_met() {
        let text = r#"{
  "resourceType": "Bundle",
  "entry": [
    {"fullUrl": "urn:uuid:1", "resource" : {
        "resourceType" : "Patient", "id": "1"}},
    {"resource": {"resourceType": "ExplanationOfBenefit",
        "contained": [{"resourceType": "Coverage"}],
        "extension": [{"url": "x", "valueString": "\"resource\": {\"resourceType\": \"Y\""}]}},
    {"resource": {"id": "2", "resourceType": "Condition"}},
    {"resource": {"resourceType": "Patient", "id": "3"}},
    {"resource": {"resourceType": "Obs\u0065rvation"}},
    {"resource":
      {"resourceType":"Observation"}}
  ]
}"#;
        // Not the Bundle's own type (no `resource` key before it), a contained resource, a
        // resource whose type is not its first key, an escaped type, or such text inside a
        // string (its quotes are escaped).
        assert_eq!(
            entry_resource_types(text),
            ["Patient", "ExplanationOfBenefit", "Observation"]
        );
        assert!(entry_resource_types("").is_empty());
        assert!(entry_resource_types(r#"{"resource":{"resourceType":"#).is_empty());
    }

    /// Keys are kept in the resource tables and compared across runs and shards (an append of
    /// the same file twice is found by its keys): a change here changes every Bundle's key
    /// against the tables written before it, and must be written down (docs/LOSSLESS.md).
    #[test]
    fn bundle_keys_are_pinned() {
        let text = r#"{"resourceType":"Bundle","type":"collection","entry":[]}"#;
        let envelope = BundleEnvelope::document("in/a.json", 1, text, &[]);
        // SipHash-1-3 (keys 0) of the file name and 0xff, the line as 8 bytes and the text's
        // XXH3-64 as 8 bytes, worked out apart from this code (Python's `xxhash` package and a
        // SipHash written from its paper).
        assert_eq!(envelope.key(), "c12fe503879809ed");
        assert_eq!(envelope.nested(3, &[]).key(), "c12fe503879809ed/3");
        let other = BundleEnvelope::document("in/a.json", 2, text, &[]);
        assert_ne!(other.key(), envelope.key());
    }

    fn head(full_url: &str, text: &str) -> Option<(String, Option<String>)> {
        read_head(full_url, text).map(|(t, id)| (t.into(), id.map(Into::into)))
    }

    #[test]
    fn an_entry_head_is_read_from_its_first_members_or_from_the_whole_resource() {
        let pair = |t: &str, id: Option<&str>| Some((t.to_owned(), id.map(str::to_owned)));
        assert_eq!(
            leading_head(r#"{"resourceType": "Patient", "id": "p1", "x": [1]}"#),
            Some(("Patient", Some("p1")))
        );
        assert_eq!(
            leading_head(r#"{ "resourceType" : "Patient" }"#),
            Some(("Patient", None))
        );
        // Other orders and escapes go to the full read, which gives the same answer.
        assert_eq!(leading_head(r#"{"id": "p1", "resourceType": "Patient"}"#), None);
        assert_eq!(
            leading_head(r#"{"resourceType": "Patient", "id": "p\u0031"}"#),
            None
        );
        assert_eq!(
            head("urn:uuid:u", r#"{"id": "p1", "resourceType": "Patient"}"#),
            pair("Patient", Some("p1"))
        );
        assert_eq!(
            head("urn:uuid:u", r#"{"resourceType": "Patient", "id": "p\u0031"}"#),
            pair("Patient", Some("p1"))
        );
        // No id of its own: the fullUrl's.
        assert_eq!(
            head("urn:uuid:u-1", r#"{"resourceType": "Patient"}"#),
            pair("Patient", Some("u-1"))
        );
        assert_eq!(
            head("urn:uuid:u-1", r#"{"resourceType": "Patient", "active": true}"#),
            pair("Patient", Some("u-1"))
        );
        assert_eq!(head("urn:uuid:u-1", r#"{"active": true}"#), None);
    }
}
