//! The run-wide identifier index that conditional references (`Practitioner?identifier=s|v`,
//! as Synthea writes them) resolve against: fed by the resource walker from every provider and
//! place it meets, merged across workers, saved between incremental runs as plain entries. The
//! FHIR rules it applies (how a conditional reference reads) are in [`crate::fhir::reference`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::fhir::key_hash::KeyHasher;
use crate::fhir::reference::{parse_conditional, Conditional};

/// What the run knows about one identifier: the id of the one resource carrying it, or that
/// several different resources carry it (then a conditional reference to it cannot resolve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexedTarget {
    Unique(Arc<str>),
    Ambiguous,
}

/// Run-wide identifier index for conditional references: `(type, system, value) → id`. It holds
/// only resources of the types references point to (Practitioner, Organization, Location, ...),
/// so its size follows the number of providers and places, not of patients or encounters. Keys are kept as 64-bit hashes and ids are shared between an identifier's two
/// keys: about 100 bytes per identifier.
#[derive(Debug, Default)]
pub struct IdentifierIndex {
    targets: HashMap<u64, IndexedTarget>,
}

/// Resource types whose identifiers are indexed for conditional references: the providers,
/// places and groups references point to. Patients are left out: no exporter writes conditional
/// references to them, and indexing every patient's identifiers would make memory grow with the
/// population.
pub const INDEXED_TYPES: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "RelatedPerson",
    "Device",
    "HealthcareService",
    "Group",
];

impl IdentifierIndex {
    /// Records that the resource `resource_type/id` carries `system|value`.
    pub fn insert(&mut self, resource_type: &str, system: Option<&str>, value: &str, id: &str) {
        let target = IndexedTarget::Unique(Arc::from(id));
        self.record(
            index_key(resource_type, Some(system.unwrap_or("")), value),
            target.clone(),
        );
        self.record(index_key(resource_type, None, value), target);
    }

    fn record(&mut self, key: u64, target: IndexedTarget) {
        let slot = self.targets.entry(key).or_insert_with(|| target.clone());
        if *slot != target {
            *slot = IndexedTarget::Ambiguous;
        }
    }

    /// Folds another worker's index into this one; the result does not depend on the order.
    pub fn merge(&mut self, other: IdentifierIndex) {
        for (key, target) in other.targets {
            self.record(key, target);
        }
    }

    /// The resource a conditional reference points to.
    pub fn lookup(&self, conditional: &Conditional<'_>) -> Option<&IndexedTarget> {
        let key = index_key(
            conditional.resource_type,
            conditional.system.as_deref(),
            &conditional.value,
        );
        self.targets.get(&key)
    }

    /// Resolves the text of a conditional reference that a table staged until every identifier
    /// of the run was known.
    pub fn resolve_pending(&self, reference: &str) -> Option<&IndexedTarget> {
        match parse_conditional(reference)? {
            Some(conditional) => self.lookup(&conditional),
            None => None,
        }
    }

    /// The index as plain data (key hash, id or `None` when ambiguous), sorted, for saving it
    /// between incremental runs.
    pub fn entries(&self) -> Vec<(u64, Option<String>)> {
        let mut entries: Vec<(u64, Option<String>)> = self
            .targets
            .iter()
            .map(|(key, target)| match target {
                IndexedTarget::Unique(id) => (*key, Some(id.to_string())),
                IndexedTarget::Ambiguous => (*key, None),
            })
            .collect();
        entries.sort();
        entries
    }

    /// Rebuilds an index saved with [`IdentifierIndex::entries`].
    pub fn from_entries(entries: &[(u64, Option<String>)]) -> Self {
        let targets = entries
            .iter()
            .map(|(key, id)| {
                let target = match id {
                    Some(id) => IndexedTarget::Unique(Arc::from(id.as_str())),
                    None => IndexedTarget::Ambiguous,
                };
                (*key, target)
            })
            .collect();
        IdentifierIndex { targets }
    }
}

/// A 64-bit hash of the key (stable across workers, runs and Rust releases: it is saved in the
/// incremental state): with a million identifiers the chance of any collision is below one in
/// ten million.
fn index_key(resource_type: &str, system: Option<&str>, value: &str) -> u64 {
    let mut hasher = KeyHasher::new();
    hasher.text(resource_type);
    match system {
        Some(system) => {
            hasher.byte(1);
            hasher.text(system);
        }
        None => hasher.byte(0),
    }
    hasher.text(value);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Index keys are saved in the incremental state: these digests (those of the first state
    /// files) must never change.
    #[test]
    fn index_keys_are_pinned() {
        let synthea = "https://github.com/synthetichealth/synthea";
        assert_eq!(
            index_key(
                "Organization",
                Some(synthea),
                "fd328395-ab1d-35c6-a2d0-d05a9a79cf11"
            ),
            0x60d40b110194f952
        );
        assert_eq!(index_key("Practitioner", None, "9999997395"), 0xfadd49c67fd6252f);
    }

    #[test]
    fn index_resolves_with_or_without_system_and_flags_ambiguity() {
        let mut index = IdentifierIndex::default();
        index.insert("Practitioner", Some("npi"), "1", "p1");
        let mut other = IdentifierIndex::default();
        other.insert("Practitioner", Some("npi"), "1", "p1");
        other.insert("Organization", Some("synthea"), "o", "org-a");
        other.insert("Organization", Some("synthea"), "o", "org-b");
        index.merge(other);
        let unique = IndexedTarget::Unique("p1".into());
        assert_eq!(
            index.resolve_pending("Practitioner?identifier=npi|1"),
            Some(&unique)
        );
        assert_eq!(index.resolve_pending("Practitioner?identifier=1"), Some(&unique));
        assert_eq!(index.resolve_pending("Practitioner?identifier=other|1"), None);
        assert_eq!(index.resolve_pending("Location?identifier=npi|1"), None);
        assert_eq!(
            index.resolve_pending("Organization?identifier=synthea|o"),
            Some(&IndexedTarget::Ambiguous)
        );
    }
}
