use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::Deserialize;
use serde_json::value::RawValue;

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
    #[serde(borrow)]
    pub resource: Option<&'a RawValue>,
    #[serde(borrow)]
    pub request: Option<EntryRequest<'a>>,
}

/// `Bundle.entry.request`: a DELETE here (Bulk Data `deleted/` files) removes a resource.
#[derive(Deserialize)]
pub(crate) struct EntryRequest<'a> {
    #[serde(borrow)]
    pub method: Option<Str<'a>>,
    #[serde(borrow)]
    pub url: Option<Str<'a>>,
}

/// The `resourceType` and `id` of a resource, read without building anything else.
#[derive(Deserialize)]
pub(crate) struct Head<'a> {
    #[serde(borrow, rename = "resourceType")]
    pub resource_type: Option<Str<'a>>,
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
}

/// An entry's resource type and (own or fullUrl-derived) id.
type EntryHead = (String, Option<String>);

/// The entries of one Bundle by `fullUrl`, so references inside it (`urn:uuid:…`) can find their
/// target. An entry's type and id are read only when some reference asks for it, then cached.
pub struct BundleScope<'a> {
    by_full_url: HashMap<Cow<'a, str>, &'a RawValue, FastHash>,
    heads: RefCell<HashMap<String, Option<EntryHead>, FastHash>>,
}

/// A word-at-a-time multiplicative hash for fullUrls (SipHash showed up at 12% of a run on one
/// big Bundle). Keys come from the input file being read, so flooding resistance buys nothing.
type FastHash = BuildHasherDefault<WordHasher>;

#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl<'a> BundleScope<'a> {
    pub(crate) fn new(entries: &[EntryShape<'a>]) -> Self {
        let by_full_url = entries
            .iter()
            .filter_map(|entry| Some((entry.full_url.clone()?.0, entry.resource?)))
            .collect();
        BundleScope {
            by_full_url,
            heads: RefCell::default(),
        }
    }
}

impl FullUrlLookup for BundleScope<'_> {
    fn entry(&self, full_url: &str) -> Option<EntryTarget<'_>> {
        let raw = self.by_full_url.get(full_url)?;
        let mut heads = self.heads.borrow_mut();
        // Looked up first: most references point to an entry already read, and the key is only
        // copied when it is new.
        if !heads.contains_key(full_url) {
            let head = serde_json::from_str::<Head>(raw.get()).ok().and_then(|head| {
                let id = head.id.as_deref().or_else(|| id_from_full_url(full_url));
                Some((head.resource_type?.0.into_owned(), id.map(str::to_owned)))
            });
            heads.insert(full_url.to_owned(), head);
        }
        let head = heads.get(full_url).expect("inserted above");
        let (resource_type, id) = head.as_ref()?;
        Some(EntryTarget {
            resource_type: Cow::Owned(resource_type.clone()),
            id: id.clone().map(Cow::Owned),
        })
    }
}
