use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::error::Category;

use super::bundle::{BundleShape, Head};
use super::identifiers::{IdentifierIndex, INDEXED_TYPES};
use super::tree::{is_json_whitespace, trim_start};
use super::{
    message_without_position, BundleEnvelope, BundleScope, EntryPlace, LineCounter, Position, Resource,
    ResourceSink,
};
use crate::diagnostics::{Diagnostics, Origin};
use crate::fhir::Str;

/// How deep Bundles may nest (a Bundle entry that is a Bundle is one level more). FHIR nests them
/// a level or two (a searchset inside a batch-response); each level re-reads its text, so the
/// limit also bounds the time one document can take, and keeps the walk's recursion shallow.
pub const MAX_BUNDLE_DEPTH: usize = 32;

/// A document that could not be read at all; the caller records it against the file.
#[derive(Debug)]
pub struct DocumentError {
    pub line: u64,
    pub message: String,
}

/// Walks documents, sending each resource to the sink and indexing identifiers of the resource
/// types that conditional references point to. One walker per worker thread.
pub struct Walker<'w, S: ResourceSink> {
    pub sink: &'w mut S,
    pub index: &'w mut IdentifierIndex,
    pub diagnostics: &'w mut Diagnostics,
}

/// The identifiers of a resource, for the conditional-reference index.
#[derive(Deserialize)]
struct Identified<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow, default)]
    identifier: Vec<crate::fhir::Identifier<'a>>,
}

impl<S: ResourceSink> Walker<'_, S> {
    /// Walks one JSON document: a whole `.json` file (`first_line` 1) or one NDJSON line. Problems
    /// with single resources are recorded in the diagnostics and the walk goes on; returns whether
    /// every resource was accepted, or the error that made the whole document unreadable.
    pub fn document(&mut self, file: &str, text: &str, first_line: u64) -> Result<bool, DocumentError> {
        let lines = LineCounter::default();
        let position = Position {
            file,
            document: text,
            first_line,
            lines: &lines,
        };
        let (resource_type, validated) =
            resource_type_of(text).map_err(|(error_line, message)| DocumentError {
                line: first_line + error_line.saturating_sub(1),
                message,
            })?;
        if resource_type == "Bundle" {
            self.diagnostics.count_resource("Bundle");
            self.sink.preview_bundle(text);
            let read_once = match self.sink.begin_bundle() {
                true => {
                    let read = super::one_pass::read_bundle(text, self.sink);
                    if read.is_none() {
                        self.sink.abandon_bundle();
                    }
                    read
                }
                false => None,
            };
            let (bundle, streamed) = match read_once {
                Some(read) => read,
                None => {
                    let bundle: BundleShape = serde_json::from_str(text).map_err(|error| DocumentError {
                        line: first_line + error.line().saturating_sub(1) as u64,
                        message: format!("invalid Bundle: {}", message_without_position(&error)),
                    })?;
                    (bundle, Vec::new())
                }
            };
            let envelope = BundleEnvelope::document(file, first_line, text, &bundle.entry);
            let entries_clean = self.bundle_entries(position, &bundle, &streamed, &envelope, 1);
            return Ok(self.envelope(position, text, None, None, &envelope) && entries_clean);
        }
        let resource = Resource::new(&resource_type, text, None, None, position);
        match self.resource(&resource, validated) {
            Ok(()) => Ok(true),
            // A lone resource that fails is the whole document: report it as such.
            Err(rejection) => Err(DocumentError {
                line: rejection.line.unwrap_or(first_line),
                message: rejection.message,
            }),
        }
    }

    /// The entries of a Bundle at nesting `depth` (1: the document itself); `streamed`, where
    /// the Bundle was read once, says which entries the sink streamed.
    fn bundle_entries(
        &mut self,
        position: Position<'_>,
        bundle: &BundleShape<'_>,
        streamed: &[bool],
        envelope: &BundleEnvelope<'_>,
        depth: usize,
    ) -> bool {
        let scope = BundleScope::new(&bundle.entry);
        let mut clean = true;
        for (index, entry) in bundle.entry.iter().enumerate() {
            let place = EntryPlace {
                bundle: envelope,
                entry: index as u32,
            };
            let Some(text) = entry.resource else {
                self.deletion(entry);
                continue;
            };
            let read = entry.resource_type.map(|known| Ok((Cow::Borrowed(known), false)));
            let resource_type = match read.unwrap_or_else(|| resource_type_of(text)) {
                Ok((resource_type, _)) => resource_type,
                Err((_, message)) => {
                    self.reject(&position, text, None, message);
                    clean = false;
                    continue;
                }
            };
            if resource_type == "Bundle" {
                self.diagnostics.count_resource("Bundle");
                if depth >= MAX_BUNDLE_DEPTH {
                    let message =
                        format!("Bundle nested more than {MAX_BUNDLE_DEPTH} deep: its entries are not read");
                    self.reject(&position, text, None, message);
                    clean = false;
                    continue;
                }
                match serde_json::from_str::<BundleShape>(text) {
                    Ok(nested) => {
                        let inner = envelope.nested(place.entry, &nested.entry);
                        clean &= self.bundle_entries(position, &nested, &[], &inner, depth + 1);
                        let full_url = entry.full_url.as_deref();
                        clean &= self.envelope(position, text, Some(place), full_url, &inner);
                    }
                    Err(error) => {
                        let message = format!("invalid Bundle: {}", message_without_position(&error));
                        self.reject(&position, text, None, message);
                        clean = false;
                    }
                }
                continue;
            }
            let mut resource = Resource::new(
                &resource_type,
                text,
                Some(&scope),
                entry.full_url.as_deref(),
                position,
            );
            resource.container = Some(place);
            resource.streamed = streamed.get(index).copied().unwrap_or(false);
            if let Err(rejection) = self.resource(&resource, true) {
                self.reject(&position, text, rejection.line, rejection.message);
                clean = false;
            }
        }
        clean
    }

    /// Hands a Bundle itself to the sink after its entries (the resource tables keep its
    /// envelope: what is left once the entries that became rows are taken out), when the sink
    /// wants Bundles. Returns whether it was accepted; a rejection is recorded.
    fn envelope(
        &mut self,
        position: Position<'_>,
        text: &str,
        container: Option<EntryPlace<'_>>,
        full_url: Option<&str>,
        envelope: &BundleEnvelope<'_>,
    ) -> bool {
        if !self.sink.wants("Bundle") {
            return true;
        }
        let mut resource = Resource::new("Bundle", text, None, full_url, position);
        resource.container = container;
        resource.envelope = Some(envelope);
        match self.sink.accept(&resource, self.diagnostics) {
            Ok(()) => true,
            Err(rejection) => {
                self.reject(&position, text, rejection.line, rejection.message);
                false
            }
        }
    }

    /// Indexes, hands over or validates one non-Bundle resource.
    fn resource(&mut self, resource: &Resource<'_>, already_valid: bool) -> Result<(), super::Rejection> {
        self.diagnostics.count_resource(resource.resource_type);
        let indexed = INDEXED_TYPES.contains(&resource.resource_type);
        if indexed {
            let identified: Identified =
                serde_json::from_str(resource.raw).map_err(|error| resource.rejection(&error))?;
            if let Some(id) = identified.id.as_deref() {
                for identifier in &identified.identifier {
                    if let Some(value) = identifier.value.as_deref() {
                        let system = identifier.system.as_deref();
                        self.index.insert(resource.resource_type, system, value, id);
                    }
                }
            }
        }
        if self.sink.wants(resource.resource_type) {
            return self.sink.accept(resource, self.diagnostics);
        }
        if !already_valid && !indexed {
            serde_json::from_str::<IgnoredAny>(resource.raw).map_err(|error| resource.rejection(&error))?;
        }
        Ok(())
    }

    /// A DELETE request entry (`DELETE Patient/123`) tells the sink the resource is gone.
    fn deletion(&mut self, entry: &super::bundle::EntryShape<'_>) {
        let Some(request) = &entry.request else { return };
        if request.method.as_deref() != Some("DELETE") {
            return;
        }
        let url = request.url.as_deref().unwrap_or_default();
        if let Some((resource_type, id)) = crate::fhir::reference::literal_type_and_id(url) {
            self.diagnostics.count_resource("(deleted)");
            self.sink.deleted(resource_type, id);
        }
    }

    fn reject(&mut self, position: &Position<'_>, text: &str, line: Option<u64>, message: String) {
        // Counting lines costs a pass over the document: only for errors the report keeps.
        let line = match line {
            Some(line) => Some(line),
            None if self.diagnostics.keeps_more_errors() => Some(position.line_at(position.offset_of(text))),
            None => None,
        };
        let origin = Origin {
            file: position.file.to_owned(),
            line,
            resource: None,
        };
        self.diagnostics.error(origin, message);
    }
}

/// Whether the walker can index `text`'s identifiers, as it does for the types conditional
/// references point to ([`Walker::resource`] refuses a resource whose identifiers it cannot
/// read, before the sink sees it).
pub(super) fn identifiers_readable(resource_type: &str, text: &str) -> bool {
    !INDEXED_TYPES.contains(&resource_type) || serde_json::from_str::<Identified>(text).is_ok()
}

/// The `resourceType` of a JSON document. Reads it straight from the text when it is the first key
/// (as Synthea and most servers write it); otherwise parses the whole object, which also proves
/// it valid JSON (the `bool`: no need to check it again). The error carries the line (relative
/// to `text`) and a message.
pub(super) fn resource_type_of(text: &str) -> Result<(Cow<'_, str>, bool), (u64, String)> {
    if let Some(name) = leading_resource_type(text) {
        return Ok((Cow::Borrowed(name), false));
    }
    match serde_json::from_str::<Head>(text) {
        Ok(Head {
            resource_type: Some(name),
            ..
        }) if !name.is_empty() => Ok((name.0, true)),
        Ok(_) => Err((
            1,
            "not a FHIR resource: the JSON object has no resourceType".to_owned(),
        )),
        Err(error) => {
            let message = match error.classify() {
                Category::Data => {
                    "not a FHIR resource: expected a JSON object with a resourceType".to_owned()
                }
                Category::Eof if text.trim().is_empty() => "empty document".to_owned(),
                _ => format!("invalid JSON: {}", message_without_position(&error)),
            };
            Err((error.line() as u64, message))
        }
    }
}

/// `{"resourceType":"X"` at the start of the text (whitespace allowed), without parsing further.
/// Read for every resource (an NDJSON line, a document, each Bundle entry, once: the Bundle's
/// single pass keeps what it read), so the usual layouts (JSON
/// whitespace only around the tokens) are read a byte at a time in one pass; anything else
/// takes [`leading_resource_type_by_parts`], which says the same of them (a test compares the
/// two). It was 1.25% of the instructions of `--resources all` on 500 MB of Bundles.
pub(super) fn leading_resource_type(text: &str) -> Option<&str> {
    const KEY: &[u8] = b"\"resourceType\"";
    let bytes = text.as_bytes();
    let skip = |mut at: usize| {
        while bytes.get(at).is_some_and(|&byte| is_json_whitespace(byte)) {
            at += 1;
        }
        at
    };
    let found = (|| {
        let mut at = skip(0);
        (bytes.get(at) == Some(&b'{')).then_some(())?;
        at = skip(at + 1);
        bytes[at..].starts_with(KEY).then_some(())?;
        at = skip(at + KEY.len());
        (bytes.get(at) == Some(&b':')).then_some(())?;
        at = skip(at + 1);
        (bytes.get(at) == Some(&b'"')).then_some(())?;
        let start = at + 1;
        let len = bytes[start..]
            .iter()
            .take_while(|byte| byte.is_ascii_alphanumeric())
            .count();
        (len > 0 && bytes.get(start + len) == Some(&b'"')).then(|| &text[start..start + len])
    })();
    found.or_else(|| leading_resource_type_by_parts(text))
}

/// [`leading_resource_type`] for any text: each part found after [`trim_start`], which also
/// steps over the whitespace JSON does not allow, as the rest of the walker does.
fn leading_resource_type_by_parts(text: &str) -> Option<&str> {
    let rest = trim_start(text).strip_prefix('{')?;
    let rest = trim_start(rest).strip_prefix("\"resourceType\"")?;
    let rest = trim_start(rest).strip_prefix(':')?;
    let rest = trim_start(rest).strip_prefix('"')?;
    let name = &rest[..rest.find('"')?];
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_type_is_read_from_the_first_key_or_found_later() {
        assert_eq!(
            resource_type_of(r#"{"resourceType":"Patient","id":"1"}"#)
                .unwrap()
                .0,
            "Patient"
        );
        assert_eq!(
            resource_type_of("{\n  \"resourceType\" : \"Bundle\"").unwrap().0,
            "Bundle"
        );
        assert_eq!(
            resource_type_of(r#"{"id":"1","resourceType":"Encounter"}"#)
                .unwrap()
                .0,
            "Encounter"
        );
    }

    #[test]
    fn the_leading_type_is_read_in_one_pass_as_by_parts() {
        let texts = [
            r#"{"resourceType":"Patient","id":"1"}"#,
            "{\n  \"resourceType\": \"Observation\",\n",
            " \r\n\t{ \"resourceType\" :\t\"Bundle\"}",
            "\u{a0}{\"resourceType\":\"Patient\"}",
            "{\u{a0}\"resourceType\":\"Patient\"}",
            "{\"resourceType\":\u{2003}\"Patient\"}",
            "{\u{b}\"resourceType\":\"Patient\"}",
            r#"{"resourceType":"Pat-ient"}"#,
            r#"{"resourceType":"Patient"#,
            r#"{"resourceType":"""#,
            r#"{"resourceType":"Patiént"}"#,
            r#"{"resourceType":3}"#,
            r#"{"resourceTypes":"Patient"}"#,
            r#"{"id":"1","resourceType":"Patient"}"#,
            r#"["resourceType","Patient"]"#,
            "",
            "{",
            r#"{"resourceType""#,
            r#"{"resourceType":"#,
        ];
        for text in texts {
            assert_eq!(
                leading_resource_type(text),
                leading_resource_type_by_parts(text),
                "{text:?}"
            );
        }
        assert_eq!(leading_resource_type(texts[1]), Some("Observation"));
        assert_eq!(leading_resource_type(texts[3]), Some("Patient"));
        assert_eq!(leading_resource_type(texts[7]), None);
    }

    proptest::proptest! {
        /// Texts laid out as a leading type is, each part drawn from variants (JSON's
        /// whitespace and other spaces between the tokens, near-miss tokens, names that are not
        /// one): both ways say the same, for texts with a type and texts a part away from one.
        #[test]
        fn the_leading_type_is_the_same_either_way(
            parts in proptest::collection::vec(0usize..64, 10),
        ) {
            const SPACE: [&str; 8] = ["", " ", "\n    ", "\r\n\t", "\u{b}", "\u{c}", "\u{a0}", " \u{2003}"];
            const OPEN: [&str; 3] = ["{", "[", ""];
            const KEY: [&str; 4] = ["\"resourceType\"", "\"resourceTypes\"", "\"resourceType", "\"id\""];
            const COLON: [&str; 3] = [":", ",", ""];
            const QUOTE: [&str; 3] = ["\"", "", "3"];
            const NAME: [&str; 6] = ["Patient", "P1", "", "Pat-ient", "Patiént", "Patient\\"];
            const END: [&str; 4] = ["\"", "\",\"id\":\"1\"}", "", "x\""];
            // The first variant (a well-formed part) three times in four.
            let pick = |options: &[&'static str], at: usize| {
                options.get(parts[at] % (4 * options.len())).copied().unwrap_or(options[0])
            };
            let text = [
                pick(&SPACE, 0), pick(&OPEN, 1), pick(&SPACE, 2), pick(&KEY, 3), pick(&SPACE, 4),
                pick(&COLON, 5), pick(&SPACE, 6), pick(&QUOTE, 7), pick(&NAME, 8), pick(&END, 9),
            ]
            .concat();
            proptest::prop_assert_eq!(
                leading_resource_type(&text),
                leading_resource_type_by_parts(&text)
            );
        }
    }

    #[test]
    fn non_fhir_json_is_named_as_such() {
        let (_, message) = resource_type_of(r#"{"name":"x"}"#).unwrap_err();
        assert!(message.contains("no resourceType"), "{message}");
        let (_, message) = resource_type_of("[1, 2]").unwrap_err();
        assert!(message.contains("expected a JSON object"), "{message}");
        let (line, message) = resource_type_of("{\n\"id\": \"1\",\n\"x\": tru").unwrap_err();
        assert!(message.starts_with("invalid JSON"), "{message}");
        assert_eq!(line, 3);
        let (_, message) = resource_type_of("  ").unwrap_err();
        assert_eq!(message, "empty document");
    }
}
