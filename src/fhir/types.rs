//! Borrowed serde shapes of the FHIR R4 datatypes the tables read. Fields a table does not need are
//! skipped by serde without being built, which keeps typed parsing several times faster than
//! `serde_json::Value`.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;

/// A JSON string that borrows from the input when it has no escapes, and owns a copy otherwise.
/// (`Option<Cow<str>>` fields always copy under serde's derive; this newtype does not.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(value)))
            }
            fn visit_str<E>(self, value: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(value.to_owned())))
            }
            fn visit_string<E>(self, value: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// Elements of a repeating primitive joined with one space, or `None` when there are none. Nulls
/// (placeholders for primitive extensions, as in `"given": ["Pat", null]`) are left out.
pub fn join_words(values: &[Option<Str<'_>>]) -> Option<String> {
    let mut words = values.iter().flatten().map(|word| &**word).peekable();
    words.peek()?;
    Some(words.collect::<Vec<_>>().join(" "))
}

/// `Coding`: a code from a code system.
#[derive(Debug, Default, Deserialize)]
pub struct Coding<'a> {
    #[serde(borrow)]
    pub system: Option<Str<'a>>,
    #[serde(borrow)]
    pub code: Option<Str<'a>>,
    #[serde(borrow)]
    pub display: Option<Str<'a>>,
}

/// `CodeableConcept`: codings plus free text.
#[derive(Debug, Default, Deserialize)]
pub struct CodeableConcept<'a> {
    #[serde(borrow, default)]
    pub coding: Vec<Coding<'a>>,
    #[serde(borrow)]
    pub text: Option<Str<'a>>,
}

impl<'a> CodeableConcept<'a> {
    /// The first coding's `code` (the contract's "first coding code").
    pub fn first_code(&self) -> Option<&Str<'a>> {
        self.coding.first()?.code.as_ref()
    }

    /// The first coding's `display`, else the concept's `text`.
    pub fn first_display_or_text(&self) -> Option<&Str<'a>> {
        self.coding
            .first()
            .and_then(|coding| coding.display.as_ref())
            .or(self.text.as_ref())
    }

    /// Whether any coding carries this code (system not considered).
    pub fn has_code(&self, code: &str) -> bool {
        self.coding.iter().any(|c| c.code.as_deref() == Some(code))
    }
}

/// `Identifier`: a business identifier such as an MRN or NPI.
#[derive(Debug, Default, Deserialize)]
pub struct Identifier<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Option<CodeableConcept<'a>>,
    #[serde(borrow)]
    pub system: Option<Str<'a>>,
    #[serde(borrow)]
    pub value: Option<Str<'a>>,
}

/// `Reference`: a pointer to another resource, literal or conditional.
#[derive(Debug, Default, Deserialize)]
pub struct Reference<'a> {
    #[serde(borrow)]
    pub reference: Option<Str<'a>>,
    #[serde(borrow, rename = "type")]
    pub kind: Option<Str<'a>>,
    #[serde(borrow)]
    pub display: Option<Str<'a>>,
}

/// `Period`: a start and end dateTime.
#[derive(Debug, Default, Deserialize)]
pub struct Period<'a> {
    #[serde(borrow)]
    pub start: Option<Str<'a>>,
    #[serde(borrow)]
    pub end: Option<Str<'a>>,
}

/// `Meta`: resource metadata; the tables keep `lastUpdated`.
#[derive(Debug, Default, Deserialize)]
pub struct Meta<'a> {
    #[serde(borrow, rename = "lastUpdated")]
    pub last_updated: Option<Str<'a>>,
}

/// `Extension`, with the value types the tables read; other `value[x]` are skipped.
#[derive(Debug, Default, Deserialize)]
pub struct Extension<'a> {
    #[serde(borrow)]
    pub url: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub extension: Vec<Extension<'a>>,
    #[serde(borrow, rename = "valueString")]
    pub value_string: Option<Str<'a>>,
    #[serde(borrow, rename = "valueCode")]
    pub value_code: Option<Str<'a>>,
    #[serde(borrow, rename = "valueCoding")]
    pub value_coding: Option<Coding<'a>>,
    #[serde(rename = "valueDecimal")]
    pub value_decimal: Option<f64>,
}

/// `HumanName`: one of a person's names.
#[derive(Debug, Default, Deserialize)]
pub struct HumanName<'a> {
    #[serde(borrow, rename = "use")]
    pub name_use: Option<Str<'a>>,
    #[serde(borrow)]
    pub family: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub given: Vec<Option<Str<'a>>>,
    #[serde(borrow, default)]
    pub prefix: Vec<Option<Str<'a>>>,
    #[serde(borrow, default)]
    pub suffix: Vec<Option<Str<'a>>>,
}

/// `ContactPoint`: a phone number, email address, ...
#[derive(Debug, Default, Deserialize)]
pub struct ContactPoint<'a> {
    #[serde(borrow)]
    pub system: Option<Str<'a>>,
    #[serde(borrow)]
    pub value: Option<Str<'a>>,
}

/// `Address`: a postal address, with extensions (geolocation).
#[derive(Debug, Default, Deserialize)]
pub struct Address<'a> {
    #[serde(borrow, default)]
    pub line: Vec<Option<Str<'a>>>,
    #[serde(borrow)]
    pub city: Option<Str<'a>>,
    #[serde(borrow)]
    pub state: Option<Str<'a>>,
    #[serde(borrow, rename = "postalCode")]
    pub postal_code: Option<Str<'a>>,
    #[serde(borrow)]
    pub country: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub extension: Vec<Extension<'a>>,
}

/// The first extension with exactly this `url` (the contract matches extensions by exact url).
pub fn find_extension<'e, 'a>(extensions: &'e [Extension<'a>], url: &str) -> Option<&'e Extension<'a>> {
    extensions.iter().find(|e| e.url.as_deref() == Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_borrows_plain_strings_and_owns_escaped_ones() {
        let plain: Str = serde_json::from_str(r#""abc""#).unwrap();
        assert!(matches!(plain.0, Cow::Borrowed("abc")));
        let escaped: Str = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(&*escaped, "a\"b");
    }

    #[test]
    fn join_words_skips_null_placeholders() {
        let words: Vec<Option<Str>> = serde_json::from_str(r#"["Peter", null, "James"]"#).unwrap();
        assert_eq!(join_words(&words).as_deref(), Some("Peter James"));
        assert_eq!(join_words(&[]), None);
        assert_eq!(join_words(&[None]), None);
    }

    #[test]
    fn codeable_concept_prefers_display_then_text() {
        let with_display: CodeableConcept =
            serde_json::from_str(r#"{"coding":[{"code":"a","display":"A"}],"text":"T"}"#).unwrap();
        assert_eq!(with_display.first_display_or_text().map(|s| &**s), Some("A"));
        assert_eq!(with_display.first_code().map(|s| &**s), Some("a"));
        let text_only: CodeableConcept =
            serde_json::from_str(r#"{"coding":[{"code":"a"}],"text":"T"}"#).unwrap();
        assert_eq!(text_only.first_display_or_text().map(|s| &**s), Some("T"));
        let empty: CodeableConcept = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.first_code(), None);
    }
}
