//! How a FHIR reference string becomes the logical id of its target: literal (`Type/id`, absolute
//! URLs, `_history`), Bundle-local (`urn:uuid:` and any other `fullUrl`), conditional
//! (`Type?identifier=system|value`, resolved against the whole run) and contained (`#id`).

use std::borrow::Cow;

/// The resource type and id of a Bundle entry, found through its `fullUrl`.
pub struct EntryTarget<'a> {
    pub resource_type: Cow<'a, str>,
    pub id: Option<Cow<'a, str>>,
}

/// Looks up Bundle entries by `fullUrl`; implemented by the resource layer's Bundle scope.
pub trait FullUrlLookup {
    fn entry(&self, full_url: &str) -> Option<EntryTarget<'_>>;
}

/// The outcome of resolving a reference as far as one resource's own context allows.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<'a> {
    /// The target's logical id.
    Id(Cow<'a, str>),
    /// A conditional reference; only the run-wide identifier index can resolve it.
    Conditional(Conditional<'a>),
    /// A reference to a contained resource (`#x`): no row of its own, so no id.
    Contained,
    /// Not resolvable (an unknown `urn:uuid:`, an unsupported search, garbage).
    Unresolved,
}

/// A resolved reference plus the target type it names or resolves to, when known.
pub struct ResolvedReference<'a> {
    pub resolution: Resolution<'a>,
    pub entry_type: Option<Cow<'a, str>>,
}

/// `Type?identifier=system|value`, already percent-decoded.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Conditional<'a> {
    pub resource_type: &'a str,
    /// `None` when the search gives no system (`identifier=value`): any system matches.
    pub system: Option<String>,
    pub value: String,
}

/// Resolves `reference` within its Bundle (if any). `Type/id` forms are taken at their word; the
/// Bundle is consulted first so that any value equal to an entry's `fullUrl` resolves to that entry.
pub fn resolve<'a>(reference: &'a str, bundle: Option<&'a dyn FullUrlLookup>) -> ResolvedReference<'a> {
    if reference.starts_with('#') {
        return unresolved_as(Resolution::Contained);
    }
    if let Some(entry) = bundle.and_then(|b| b.entry(reference)) {
        return ResolvedReference {
            resolution: entry.id.map_or(Resolution::Unresolved, Resolution::Id),
            entry_type: Some(entry.resource_type),
        };
    }
    if let Some(conditional) = parse_conditional(reference) {
        return unresolved_as(conditional.map_or(Resolution::Unresolved, Resolution::Conditional));
    }
    match literal_type_and_id(reference) {
        Some((_, id)) => unresolved_as(Resolution::Id(Cow::Borrowed(id))),
        None => unresolved_as(Resolution::Unresolved),
    }
}

fn unresolved_as(resolution: Resolution<'_>) -> ResolvedReference<'_> {
    ResolvedReference {
        resolution,
        entry_type: None,
    }
}

/// Whether a reference points to a resource of `resource_type`: by its declared `type`, by its text
/// (`Type/…`, `Type?…`, `…/Type/…`), or by the Bundle entry it resolves to.
pub fn refers_to_type(
    reference: &str,
    declared_type: Option<&str>,
    entry_type: Option<&str>,
    resource_type: &str,
) -> bool {
    if declared_type == Some(resource_type) || entry_type == Some(resource_type) {
        return true;
    }
    let after_type = reference.strip_prefix(resource_type);
    if matches!(after_type.and_then(|rest| rest.chars().next()), Some('/' | '?')) {
        return true;
    }
    reference.match_indices(resource_type).any(|(at, _)| {
        at > 0
            && reference.as_bytes()[at - 1] == b'/'
            && reference[at + resource_type.len()..].starts_with('/')
    })
}

/// The id a Bundle entry's `fullUrl` gives a resource that has none of its own (a POST in a
/// transaction): `urn:uuid:X` and `urn:oid:X` → `X`, `…/Type/X` → `X`.
pub fn id_from_full_url(full_url: &str) -> Option<&str> {
    let urn_tail = full_url
        .strip_prefix("urn:uuid:")
        .or_else(|| full_url.strip_prefix("urn:oid:"));
    match urn_tail {
        Some(tail) => is_logical_id(tail).then_some(tail),
        None => literal_type_and_id(full_url).map(|(_, id)| id),
    }
}

/// `Type/id`, `base/Type/id` or either with `/_history/n`: the type and id, if the text has that shape.
pub fn literal_type_and_id(reference: &str) -> Option<(&str, &str)> {
    let mut segments = reference.rsplit('/');
    let (mut id, mut resource_type) = (segments.next()?, segments.next()?);
    if resource_type == "_history" {
        (id, resource_type) = (segments.next()?, segments.next()?);
    }
    (is_resource_type_name(resource_type) && is_logical_id(id)).then_some((resource_type, id))
}

/// FHIR resource type names are capitalised ASCII letters (`Patient`, `MedicationRequest`).
fn is_resource_type_name(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_uppercase()) && text.chars().all(|c| c.is_ascii_alphabetic())
}

/// The FHIR `id` datatype: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_logical_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `Some(Some(_))` for a supported conditional reference, `Some(None)` for a search this tool
/// cannot resolve (other parameters), `None` when the text is not a conditional reference at all.
pub fn parse_conditional(reference: &str) -> Option<Option<Conditional<'_>>> {
    let (resource_type, query) = reference.split_once('?')?;
    if !is_resource_type_name(resource_type) {
        return None;
    }
    let Some(encoded) = query.strip_prefix("identifier=") else {
        return Some(None);
    };
    if encoded.contains('&') {
        return Some(None);
    }
    let decoded = percent_decode(encoded);
    let (system, value) = match decoded.split_once('|') {
        Some((system, value)) => (Some(system.to_owned()), value.to_owned()),
        None => (None, decoded.into_owned()),
    };
    Some(Some(Conditional {
        resource_type,
        system,
        value,
    }))
}

/// Decodes `%XX` escapes (URL query encoding); malformed escapes are kept as they are.
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&decoded).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneEntry;
    impl FullUrlLookup for OneEntry {
        fn entry(&self, full_url: &str) -> Option<EntryTarget<'_>> {
            (full_url == "urn:uuid:1234").then_some(EntryTarget {
                resource_type: Cow::Borrowed("Patient"),
                id: Some(Cow::Borrowed("pat-1")),
            })
        }
    }

    fn id_of(reference: &str) -> Resolution<'_> {
        resolve(reference, Some(&OneEntry)).resolution
    }

    #[test]
    fn literal_references_give_their_id() {
        assert_eq!(id_of("Patient/abc"), Resolution::Id("abc".into()));
        assert_eq!(
            id_of("http://x.org/fhir/Patient/abc"),
            Resolution::Id("abc".into())
        );
        assert_eq!(
            id_of("https://x.org/Patient/abc/_history/3"),
            Resolution::Id("abc".into())
        );
        assert_eq!(id_of("Patient/abc/_history/3"), Resolution::Id("abc".into()));
    }

    #[test]
    fn bundle_full_urls_resolve_to_the_entry_id() {
        let resolved = resolve("urn:uuid:1234", Some(&OneEntry));
        assert_eq!(resolved.resolution, Resolution::Id("pat-1".into()));
        assert_eq!(resolved.entry_type.as_deref(), Some("Patient"));
        assert_eq!(id_of("urn:uuid:9999"), Resolution::Unresolved);
        assert_eq!(resolve("urn:uuid:1234", None).resolution, Resolution::Unresolved);
    }

    #[test]
    fn full_urls_give_ids_to_resources_without_one() {
        assert_eq!(
            id_from_full_url("urn:uuid:61ebe359-bfdc-4613"),
            Some("61ebe359-bfdc-4613")
        );
        assert_eq!(id_from_full_url("urn:oid:1.2.3"), Some("1.2.3"));
        assert_eq!(id_from_full_url("http://example.org/fhir/Patient/23"), Some("23"));
        assert_eq!(id_from_full_url("urn:uuid:"), None);
        assert_eq!(id_from_full_url("not a url"), None);
    }

    #[test]
    fn contained_and_garbage_references_do_not_resolve() {
        assert_eq!(id_of("#med1"), Resolution::Contained);
        assert_eq!(id_of("just text"), Resolution::Unresolved);
        assert_eq!(id_of("patient/abc"), Resolution::Unresolved);
        assert_eq!(id_of(""), Resolution::Unresolved);
    }

    #[test]
    fn conditional_references_are_parsed_and_decoded() {
        let Resolution::Conditional(c) =
            id_of("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi%7C9999994892")
        else {
            panic!("expected a conditional reference");
        };
        assert_eq!(c.resource_type, "Practitioner");
        assert_eq!(c.system.as_deref(), Some("http://hl7.org/fhir/sid/us-npi"));
        assert_eq!(c.value, "9999994892");
        assert_eq!(id_of("Organization?name=Acme"), Resolution::Unresolved);
    }

    #[test]
    fn type_is_read_from_declared_type_text_or_entry() {
        assert!(refers_to_type("Practitioner/1", None, None, "Practitioner"));
        assert!(refers_to_type(
            "Practitioner?identifier=a|b",
            None,
            None,
            "Practitioner"
        ));
        assert!(refers_to_type(
            "http://x/fhir/Practitioner/1",
            None,
            None,
            "Practitioner"
        ));
        assert!(refers_to_type(
            "urn:uuid:1",
            Some("Practitioner"),
            None,
            "Practitioner"
        ));
        assert!(refers_to_type(
            "urn:uuid:1",
            None,
            Some("Practitioner"),
            "Practitioner"
        ));
        assert!(!refers_to_type("PractitionerRole/1", None, None, "Practitioner"));
        assert!(!refers_to_type(
            "http://x/PractitionerRole/1",
            None,
            None,
            "Practitioner"
        ));
        assert!(!refers_to_type(
            "urn:uuid:1",
            None,
            Some("Patient"),
            "Practitioner"
        ));
    }
}
