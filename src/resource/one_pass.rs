//! A Bundle read once: the walker finds the entries with the tree parser's reader and hands each
//! entry's resource to the sink as it reaches it ([`ResourceSink::stream_entry`]), so the
//! resource tables build their rows from that same reading. Finding the entries with
//! `serde_json` and then reading each resource again for its row was an eighth of a
//! `--resources all` run on Synthea Bundles.
//!
//! The reading gives up at anything the usual way (`BundleShape` through `serde_json`) would
//! read differently or the sink would not take as it streams past: a repeated member, a value of
//! another kind, a resource whose `resourceType` is not its first key, a Bundle inside the
//! Bundle, a DELETE entry, a row the sink refuses, text that is not JSON. The sink then drops
//! what it streamed and the Bundle goes the usual way, which gives the rows or the errors it
//! always gave. The reader checks the text as strictly as `serde_json` (see `tree.rs`), so a
//! Bundle read here is one the usual way reads too.

use super::bundle::{BundleShape, EntryRequest, EntryShape};
use super::tree::{Reader, Start};
use super::ResourceSink;
use crate::fhir::Str;

/// The entries of the Bundle that is the whole of `text`, read once, and per entry whether
/// `sink` streamed its resource. `None`: the Bundle is to be read the usual way (whatever the
/// sink streamed is the caller's to abandon).
pub(super) fn read_bundle<'a, S: ResourceSink>(
    text: &'a str,
    sink: &mut S,
) -> Option<(BundleShape<'a>, Vec<bool>)> {
    let mut reader = Reader::new(text);
    if reader.peek() != Some(Start::Object) {
        return None;
    }
    reader.open().ok()?;
    let mut entries = None;
    let mut streamed = Vec::new();
    while let Some(key) = reader.next_key().ok()? {
        if key != "entry" {
            reader.skip().ok()?;
            continue;
        }
        if entries.is_some() || reader.peek() != Some(Start::Array) {
            return None;
        }
        reader.open().ok()?;
        let mut found = Vec::new();
        while reader.next_item().ok()? {
            let (entry, was_streamed) = read_entry(text, &mut reader, sink)?;
            found.push(entry);
            streamed.push(was_streamed);
        }
        entries = Some(found);
    }
    reader.finish().ok()?;
    let entry = entries.unwrap_or_default();
    Some((BundleShape { entry }, streamed))
}

/// One entry: its `fullUrl`, `resource` (streamed to the sink where it takes it, read past
/// otherwise) and `request`; other members are read past.
fn read_entry<'a, S: ResourceSink>(
    text: &'a str,
    reader: &mut Reader<'a>,
    sink: &mut S,
) -> Option<(EntryShape<'a>, bool)> {
    if reader.peek() != Some(Start::Object) {
        return None;
    }
    reader.open().ok()?;
    let (mut full_url, mut resource, mut request) = (None, None, None);
    let (mut streamed, mut leading_type) = (false, None);
    let mut seen = [false; 3];
    while let Some(key) = reader.next_key().ok()? {
        let slot = match key.as_ref() {
            "fullUrl" => 0,
            "resource" => 1,
            "request" => 2,
            _ => {
                reader.skip().ok()?;
                continue;
            }
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        match (slot, reader.peek()?) {
            (_, Start::Null) => {
                reader.literal().ok()?;
            }
            (0, Start::String) => full_url = Some(Str(reader.string().ok()?)),
            (1, Start::Object) => {
                let start = reader.offset();
                let resource_type = super::dispatch::leading_resource_type(&text[start..])?;
                if resource_type == "Bundle" {
                    return None;
                }
                streamed = sink.stream_entry(resource_type, reader).ok()?;
                if !streamed {
                    reader.skip().ok()?;
                }
                let read = &text[start..reader.offset()];
                // The walker refuses such a resource before the sink gets it: the pending row
                // would wait for a finish that never comes.
                if streamed && !super::dispatch::identifiers_readable(resource_type, read) {
                    return None;
                }
                resource = Some(read);
                leading_type = Some(resource_type);
            }
            (2, Start::Object) => request = Some(read_request(reader)?),
            _ => return None,
        }
    }
    let deletes = request
        .as_ref()
        .is_some_and(|request: &EntryRequest<'_>| request.method.as_deref() == Some("DELETE"));
    if resource.is_none() && deletes {
        return None;
    }
    let entry = EntryShape {
        full_url,
        resource,
        request,
        resource_type: leading_type,
    };
    Some((entry, streamed))
}

/// An entry's `request`: its `method` and `url`, other members read past.
fn read_request<'a>(reader: &mut Reader<'a>) -> Option<EntryRequest<'a>> {
    reader.open().ok()?;
    let (mut method, mut url) = (None, None);
    let mut seen = [false; 2];
    while let Some(key) = reader.next_key().ok()? {
        let slot = match key.as_ref() {
            "method" => 0,
            "url" => 1,
            _ => {
                reader.skip().ok()?;
                continue;
            }
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        let value = match reader.peek()? {
            Start::Null => {
                reader.literal().ok()?;
                None
            }
            Start::String => Some(Str(reader.string().ok()?)),
            _ => return None,
        };
        if slot == 0 {
            method = value;
        } else {
            url = value;
        }
    }
    Some(EntryRequest { method, url })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Diagnostics;
    use crate::resource::{Rejection, Resource};

    /// A sink that streams nothing: the entries are found and read past.
    struct Nothing;

    impl ResourceSink for Nothing {
        fn wants(&self, _resource_type: &str) -> bool {
            false
        }
        fn accept(
            &mut self,
            _resource: &Resource<'_>,
            _diagnostics: &mut Diagnostics,
        ) -> Result<(), Rejection> {
            Ok(())
        }
    }

    /// An entry's type, read at the start of its resource on the way, is the type the walker
    /// reads from the resource's text (which it no longer reads again); an entry without a
    /// resource has none.
    #[test]
    fn an_entrys_type_is_the_one_its_resource_text_says() {
        let text = r#"{"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {
                "resourceType" : "Patient", "id": "1", "name": [{"family": "A"}]}},
            {"resource":{"resourceType":"Observation","status":"final"},"request":{"method":"POST","url":"Observation"}},
            {"fullUrl": "urn:uuid:2"},
            {"resource": {"resourceType": "Encounter"}, "fullUrl": "urn:uuid:3"}
        ]}"#;
        let (bundle, streamed) = read_bundle(text, &mut Nothing).expect("read once");
        assert_eq!(streamed, [false; 4]);
        let types: Vec<_> = bundle.entry.iter().map(|entry| entry.resource_type).collect();
        assert_eq!(
            types,
            [Some("Patient"), Some("Observation"), None, Some("Encounter")]
        );
        for entry in &bundle.entry {
            if let Some(resource) = entry.resource {
                let (read_again, _) = super::super::dispatch::resource_type_of(resource).unwrap();
                assert_eq!(entry.resource_type, Some(read_again.as_ref()));
            }
        }
    }
}
