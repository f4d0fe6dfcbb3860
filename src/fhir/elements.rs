//! The FHIR R4 element definitions: every element path with its type codes and whether it
//! repeats (compacted from the specification's elements table). Views use them to type columns
//! whose ViewDefinition gives no type, so a schema is fixed before any data is read.

use std::collections::HashMap;
use std::sync::OnceLock;

/// One element's definition: its type codes (comma-separated, as in the table) and whether it
/// repeats (`max = *`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    pub types: &'static str,
    pub repeats: bool,
}

/// The compacted R4 element table (path, type codes, max cardinality; `#` lines are comments),
/// embedded once and read both here and by [`super::definitions`].
pub(crate) const R4_ELEMENTS: &str = include_str!("r4_elements.tsv");

/// The definition of the element at `path` (`Patient.name`, `HumanName.given`), if FHIR R4 has
/// one.
pub fn element(path: &str) -> Option<Element> {
    static ELEMENTS: OnceLock<HashMap<&'static str, Element>> = OnceLock::new();
    let elements = ELEMENTS.get_or_init(|| {
        R4_ELEMENTS
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let (path, types, max) = (fields.next()?, fields.next()?, fields.next()?);
                Some((
                    path,
                    Element {
                        types,
                        repeats: max == "*",
                    },
                ))
            })
            .collect()
    });
    elements.get(path).copied()
}

/// How the values of a FHIR primitive type are held in a table column: the FHIR side of the
/// type mapping (the Arrow side is the table's). `integer`, `positiveInt` and `unsignedInt` are
/// 32-bit in FHIR R4; every primitive not listed keeps its lexical form as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueClass {
    Boolean,
    Integer32,
    Integer64,
    Decimal,
    Text,
}

/// The value class of a FHIR primitive type name (`boolean`, `integer`, `dateTime`, ...).
pub fn value_class(type_name: &str) -> ValueClass {
    match type_name {
        "boolean" => ValueClass::Boolean,
        "integer" | "positiveInt" | "unsignedInt" => ValueClass::Integer32,
        "integer64" => ValueClass::Integer64,
        "decimal" => ValueClass::Decimal,
        _ => ValueClass::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_have_their_types_and_cardinality() {
        let name = element("Patient.name").unwrap();
        assert_eq!(
            name,
            Element {
                types: "HumanName",
                repeats: true
            }
        );
        assert!(!element("Patient.birthDate").unwrap().repeats);
        assert_eq!(element("Patient.noSuchThing"), None);
    }
}
