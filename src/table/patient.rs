//! The `patient` table: one row per Patient resource (columns and rules: docs/tables.md).

use serde::Deserialize;

use super::cells::Cells;
use super::columns::define_columns;
use super::Table;
use crate::diagnostics::Diagnostics;
use crate::fhir::{
    find_extension, join_words, Address, CodeableConcept, ContactPoint, Extension, HumanName,
    Identifier, Meta, Str,
};
use crate::resource::{Rejection, Resource};

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

/// The `patient` table's batch under construction.
pub struct PatientTable {
    columns: PatientColumns,
}

impl PatientTable {
    pub fn new(batch_size: usize) -> Self {
        PatientTable {
            columns: PatientColumns::with_capacity(batch_size),
        }
    }
}

impl Table for PatientTable {
    fn name(&self) -> &'static str {
        "patient"
    }

    fn resource_type(&self) -> &'static str {
        "Patient"
    }

    fn schema(&self) -> arrow_schema::SchemaRef {
        PatientColumns::schema()
    }

    fn append(
        &mut self,
        resource: &Resource<'_>,
        diagnostics: &mut Diagnostics,
    ) -> Result<bool, Rejection> {
        let patient: Patient =
            serde_json::from_str(resource.raw).map_err(|e| resource.rejection(&e))?;
        let id = resource
            .logical_id(patient.id.as_deref())
            .ok_or_else(|| "Patient without an id (and no fullUrl to take one from)".to_owned())?;
        let mut cells = Cells::new(resource, id, diagnostics);
        let row = patient_row(&patient, id, &mut cells);
        self.columns.append(row);
        Ok(cells.has_pending)
    }

    fn len(&self) -> usize {
        self.columns.len()
    }

    fn finish(&mut self) -> arrow_array::RecordBatch {
        self.columns.finish()
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
        .find(|identifier| {
            identifier
                .kind
                .as_ref()
                .is_some_and(|kind| kind.has_code("MR"))
        })
        .and_then(|identifier| identifier.value.as_ref());
    let name = patient
        .name
        .iter()
        .find(|name| name.name_use.as_deref() == Some("official"))
        .or(patient.name.first());
    let address = patient.address.first();
    let geolocation = address.and_then(|a| find_extension(&a.extension, GEOLOCATION_URL));
    let coordinate = |part: &str| -> Option<f64> {
        find_extension(&geolocation?.extension, part)?.value_decimal
    };
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
        ethnicity: cells.string(
            "ethnicity",
            category_extension(&patient.extension, ETHNICITY_URL),
        ),
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
