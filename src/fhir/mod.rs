//! The one place FHIR rules live: how dates, references, codings and identifiers are read. The
//! typed tables (src/table) and the SQL on FHIR views (src/view) stand on these helpers, so a rule
//! changes in one spot.
//! [`key_hash`] is how resource ids, identifiers and inputs are hashed into the keys kept between
//! runs (and the fast hash of maps that live within one run).

pub mod datetime;
pub mod definitions;
pub mod elements;
pub mod key_hash;
pub mod reference;
pub mod types;

pub use datetime::{format_date, format_timestamp, parse_date, parse_datetime};
pub use reference::Resolution;
pub use types::{
    find_extension, join_words, Address, CodeableConcept, Coding, ContactPoint, Extension, HumanName,
    Identifier, Meta, Period, Reference, Str,
};
