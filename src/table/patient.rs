//! The `patient` table: one row per Patient resource (columns and rules: docs/tables.md).

use serde::Deserialize;

use super::builtin::builtin_table;
use super::cells::Cells;
use super::columns::define_columns;
use crate::fhir::{
    find_extension, join_words, Address, CodeableConcept, ContactPoint, Extension, HumanName, Identifier,
    Meta, Str,
};

const RACE_URL: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";
const ETHNICITY_URL: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity";
const BIRTH_SEX_URL: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex";
const GEOLOCATION_URL: &str = "http://hl7.org/fhir/StructureDefinition/geolocation";

define_columns! {
    /// One `patient` row, borrowing from the input where it can.
    PatientRow => PatientColumns {
        id: Utf8 = required,
        mrn: Utf8,
        family_name: Utf8,
        given_names: Utf8,
        name_prefix: Utf8,
        name_suffix: Utf8,
        gender: Utf8,
        birth_date: Date32,
        deceased: Boolean,
        deceased_at: TimestampUtc,
        marital_status: Utf8,
        race: Utf8,
        ethnicity: Utf8,
        birth_sex: Utf8,
        language: Utf8,
        phone: Utf8,
        address_line: Utf8,
        city: Utf8,
        state: Utf8,
        postal_code: Utf8,
        country: Utf8,
        latitude: Float64,
        longitude: Float64,
        multiple_birth: Boolean,
        last_updated: TimestampUtc,
        source_file: Utf8 = required,
    }
}

/// The parts of a Patient the table reads; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Patient<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow, default)]
    identifier: Vec<Identifier<'a>>,
    #[serde(borrow, default)]
    name: Vec<HumanName<'a>>,
    #[serde(borrow)]
    gender: Option<Str<'a>>,
    #[serde(borrow, rename = "birthDate")]
    birth_date: Option<Str<'a>>,
    #[serde(rename = "deceasedBoolean")]
    deceased_boolean: Option<bool>,
    #[serde(borrow, rename = "deceasedDateTime")]
    deceased_date_time: Option<Str<'a>>,
    #[serde(borrow, rename = "maritalStatus")]
    marital_status: Option<CodeableConcept<'a>>,
    #[serde(borrow, default)]
    extension: Vec<Extension<'a>>,
    #[serde(borrow, default)]
    communication: Vec<Communication<'a>>,
    #[serde(borrow, default)]
    telecom: Vec<ContactPoint<'a>>,
    #[serde(borrow, default)]
    address: Vec<Address<'a>>,
    #[serde(rename = "multipleBirthBoolean")]
    multiple_birth_boolean: Option<bool>,
    #[serde(rename = "multipleBirthInteger")]
    multiple_birth_integer: Option<i64>,
    #[serde(borrow)]
    meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Communication<'a> {
    #[serde(borrow)]
    language: Option<CodeableConcept<'a>>,
}

builtin_table! {
    /// The `patient` table's batch under construction.
    PatientTable {
        name: "patient",
        resource_type: "Patient",
        parsed: Patient,
        columns: PatientColumns,
        row: patient_row,
    }
}

fn patient_row<'p, 'a: 'p>(
    patient: &'p Patient<'_>,
    id: &'p str,
    cells: &mut Cells<'_, 'a>,
) -> PatientRow<'p> {
    let mrn = patient
        .identifier
        .iter()
        .find(|identifier| identifier.kind.as_ref().is_some_and(|kind| kind.has_code("MR")))
        .and_then(|identifier| identifier.value.as_ref());
    let name = patient
        .name
        .iter()
        .find(|name| name.name_use.as_deref() == Some("official"))
        .or(patient.name.first());
    let address = patient.address.first();
    let geolocation = address.and_then(|a| find_extension(&a.extension, GEOLOCATION_URL));
    let coordinate =
        |part: &str| -> Option<f64> { find_extension(&geolocation?.extension, part)?.value_decimal };
    let deceased = patient
        .deceased_boolean
        .or(patient.deceased_date_time.as_ref().map(|_| true));
    let multiple_birth = patient
        .multiple_birth_boolean
        .or(patient.multiple_birth_integer.map(|_| true));
    PatientRow {
        id: cells.text("id", Some(id.into())),
        mrn: cells.string("mrn", mrn),
        family_name: cells.string("family_name", name.and_then(|n| n.family.as_ref())),
        given_names: cells.text(
            "given_names",
            name.and_then(|n| join_words(&n.given)).map(Into::into),
        ),
        name_prefix: cells.text(
            "name_prefix",
            name.and_then(|n| join_words(&n.prefix)).map(Into::into),
        ),
        name_suffix: cells.text(
            "name_suffix",
            name.and_then(|n| join_words(&n.suffix)).map(Into::into),
        ),
        gender: cells.string("gender", patient.gender.as_ref()),
        birth_date: cells.date("birth_date", patient.birth_date.as_ref()),
        deceased,
        deceased_at: cells.datetime("deceased_at", patient.deceased_date_time.as_ref()),
        marital_status: cells.string(
            "marital_status",
            patient.marital_status.as_ref().and_then(|m| m.first_code()),
        ),
        race: cells.string("race", category_extension(&patient.extension, RACE_URL)),
        ethnicity: cells.string("ethnicity", category_extension(&patient.extension, ETHNICITY_URL)),
        birth_sex: cells.string(
            "birth_sex",
            find_extension(&patient.extension, BIRTH_SEX_URL).and_then(|e| e.value_code.as_ref()),
        ),
        language: cells.string(
            "language",
            patient
                .communication
                .first()
                .and_then(|c| c.language.as_ref())
                .and_then(|l| l.first_code()),
        ),
        phone: cells.string(
            "phone",
            patient
                .telecom
                .iter()
                .find(|t| t.system.as_deref() == Some("phone"))
                .and_then(|t| t.value.as_ref()),
        ),
        address_line: cells.text(
            "address_line",
            address.and_then(|a| join_words(&a.line)).map(Into::into),
        ),
        city: cells.string("city", address.and_then(|a| a.city.as_ref())),
        state: cells.string("state", address.and_then(|a| a.state.as_ref())),
        postal_code: cells.string("postal_code", address.and_then(|a| a.postal_code.as_ref())),
        country: cells.string("country", address.and_then(|a| a.country.as_ref())),
        latitude: coordinate("latitude"),
        longitude: coordinate("longitude"),
        multiple_birth,
        last_updated: cells.datetime(
            "last_updated",
            patient.meta.as_ref().and_then(|m| m.last_updated.as_ref()),
        ),
        source_file: Some(cells.source_file()),
    }
}

/// US Core race/ethnicity: the `text` sub-extension, else the first `ombCategory` display.
fn category_extension<'e, 'a>(extensions: &'e [Extension<'a>], url: &str) -> Option<&'e Str<'a>> {
    let extension = find_extension(extensions, url)?;
    find_extension(&extension.extension, "text")
        .and_then(|text| text.value_string.as_ref())
        .or_else(|| {
            find_extension(&extension.extension, "ombCategory")?
                .value_coding
                .as_ref()?
                .display
                .as_ref()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Diagnostics;
    use crate::table::testing::{cell, rows};

    fn patient(fields: &str) -> Vec<crate::table::testing::Row> {
        let document = format!(r#"{{"resourceType":"Patient","id":"p1"{fields}}}"#);
        rows(Box::new(PatientTable::new(10)), &document).0
    }

    fn column(fields: &str, column: &str) -> Option<String> {
        cell(&patient(fields), column)
    }

    #[test]
    fn mrn_is_the_first_identifier_typed_mr() {
        let fields = r#","identifier":[{"value":"plain"},{"type":{"coding":[{"code":"SS"},{"code":"MR"}]},"value":"m1"},{"type":{"coding":[{"code":"MR"}]},"value":"m2"}]"#;
        assert_eq!(column(fields, "mrn").as_deref(), Some("m1"));
        assert_eq!(column(r#","identifier":[{"value":"plain"}]"#, "mrn"), None);
    }

    #[test]
    fn the_official_name_wins_else_the_first() {
        let names = r#","name":[{"family":"First","given":["A","B"]},{"use":"official","family":"Official","given":["C"],"prefix":["Dr."],"suffix":["Jr.","III"]}]"#;
        let rows = patient(names);
        assert_eq!(cell(&rows, "family_name").as_deref(), Some("Official"));
        assert_eq!(cell(&rows, "given_names").as_deref(), Some("C"));
        assert_eq!(cell(&rows, "name_prefix").as_deref(), Some("Dr."));
        assert_eq!(cell(&rows, "name_suffix").as_deref(), Some("Jr. III"));
        let unofficial =
            r#","name":[{"use":"usual","family":"First","given":["A","B"]},{"family":"Second"}]"#;
        assert_eq!(column(unofficial, "family_name").as_deref(), Some("First"));
        assert_eq!(column(unofficial, "given_names").as_deref(), Some("A B"));
        assert_eq!(column(unofficial, "name_prefix"), None);
        assert_eq!(
            column(r#","name":[{"use":"official","given":[]}]"#, "given_names"),
            None
        );
    }

    #[test]
    fn strings_are_copied_as_they_are() {
        assert_eq!(column(r##","gender":"""##, "gender").as_deref(), Some(""));
        assert_eq!(
            column(r##","gender":" Male ""##, "gender").as_deref(),
            Some(" Male ")
        );
        assert_eq!(
            column(r##","gender":"caf\u00e9\n""##, "gender").as_deref(),
            Some("café\n")
        );
    }

    #[test]
    fn deceased_and_multiple_birth_choices() {
        let rows = patient(r#","deceasedBoolean":false,"multipleBirthBoolean":false"#);
        assert_eq!(cell(&rows, "deceased").as_deref(), Some("false"));
        assert_eq!(cell(&rows, "deceased_at"), None);
        assert_eq!(cell(&rows, "multiple_birth").as_deref(), Some("false"));
        let rows = patient(r#","deceasedDateTime":"2001-02","multipleBirthInteger":3"#);
        assert_eq!(cell(&rows, "deceased").as_deref(), Some("true"));
        assert_eq!(
            cell(&rows, "deceased_at").as_deref(),
            Some("2001-02-01T00:00:00Z")
        );
        assert_eq!(cell(&rows, "multiple_birth").as_deref(), Some("true"));
        let rows = patient("");
        assert_eq!(cell(&rows, "deceased"), None);
        assert_eq!(cell(&rows, "multiple_birth"), None);
    }

    #[test]
    fn us_core_extensions_prefer_text_then_the_first_omb_category() {
        let race = |sub: &str| {
            let fields = format!(r#","extension":[{{"url":"{RACE_URL}","extension":[{sub}]}}]"#);
            column(&fields, "race")
        };
        let omb =
            |display: &str| format!(r#"{{"url":"ombCategory","valueCoding":{{"display":"{display}"}}}}"#);
        let text = r#"{"url":"text","valueString":"Mixed"}"#;
        assert_eq!(
            race(&format!("{},{}", omb("White"), text)).as_deref(),
            Some("Mixed")
        );
        assert_eq!(
            race(&format!("{},{}", omb("Asian"), omb("White"))).as_deref(),
            Some("Asian")
        );
        assert_eq!(race(r#"{"url":"detailed","valueCoding":{"display":"x"}}"#), None);
        // The url must match exactly.
        let near_miss = format!(r#","extension":[{{"url":"{RACE_URL}/","extension":[{text}]}}]"#);
        assert_eq!(column(&near_miss, "race"), None);
        let birth_sex = format!(r#","extension":[{{"url":"{BIRTH_SEX_URL}","valueCode":"UNK"}}]"#);
        assert_eq!(column(&birth_sex, "birth_sex").as_deref(), Some("UNK"));
    }

    #[test]
    fn the_first_address_telecom_phone_and_language() {
        let fields = r#","address":[{"line":["1 A St",null,"Unit 2"],"city":"X","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/geolocation","extension":[{"url":"longitude","valueDecimal":-1.5},{"url":"latitude","valueDecimal":2}]}]},{"city":"Y","postalCode":"9"}],"telecom":[{"system":"email","value":"e"},{"system":"phone","value":"p1"},{"system":"phone","value":"p2"}],"communication":[{"language":{"text":"no coding"}},{"language":{"coding":[{"code":"de"}]}}]"#;
        let rows = patient(fields);
        assert_eq!(cell(&rows, "address_line").as_deref(), Some("1 A St Unit 2"));
        assert_eq!(cell(&rows, "city").as_deref(), Some("X"));
        assert_eq!(cell(&rows, "postal_code"), None, "only the first address counts");
        assert_eq!(cell(&rows, "latitude").as_deref(), Some("2"));
        assert_eq!(cell(&rows, "longitude").as_deref(), Some("-1.5"));
        assert_eq!(cell(&rows, "phone").as_deref(), Some("p1"));
        assert_eq!(
            cell(&rows, "language"),
            None,
            "only the first communication counts"
        );
    }

    #[test]
    fn dates_and_timestamps_follow_the_shared_rules() {
        let rows = patient(r#","birthDate":"1950-05","meta":{"lastUpdated":"2019-02-16T01:27:01.5-05:00"}"#);
        assert_eq!(cell(&rows, "birth_date").as_deref(), Some("1950-05-01"));
        assert_eq!(
            cell(&rows, "last_updated").as_deref(),
            Some("2019-02-16T06:27:01.500000Z")
        );
        let (rows, diagnostics) = rows_with(r#","birthDate":"1950-02-30""#);
        assert_eq!(cell(&rows, "birth_date"), None);
        assert_eq!(
            diagnostics.warnings[&crate::diagnostics::WarningKind::InvalidDate].count,
            1
        );
    }

    fn rows_with(fields: &str) -> (Vec<crate::table::testing::Row>, Diagnostics) {
        let document = format!(r#"{{"resourceType":"Patient","id":"p1"{fields}}}"#);
        rows(Box::new(PatientTable::new(10)), &document)
    }
}
