//! The `encounter` table: one row per Encounter resource (columns and rules: docs/tables.md).

use serde::Deserialize;

use super::cells::Cells;
use super::columns::define_columns;
use super::Table;
use crate::diagnostics::Diagnostics;
use crate::fhir::{CodeableConcept, Coding, Meta, Period, Reference, Str};
use crate::resource::{Rejection, Resource};

define_columns! {
    /// One `encounter` row, borrowing from the input where it can.
    EncounterRow => EncounterColumns {
        id: Utf8 = required,
        patient_id: Utf8,
        status: Utf8,
        class_code: Utf8,
        type_code: Utf8,
        type_display: Utf8,
        start: TimestampUtc,
        end: TimestampUtc,
        reason_code: Utf8,
        reason_display: Utf8,
        practitioner_id: Utf8,
        practitioner_name: Utf8,
        location_id: Utf8,
        location_name: Utf8,
        service_provider_id: Utf8,
        service_provider_name: Utf8,
        discharge_disposition: Utf8,
        last_updated: TimestampUtc,
        source_file: Utf8 = required,
    }
}

/// The parts of an Encounter the table reads; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Encounter<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    subject: Option<Reference<'a>>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    class: Option<Coding<'a>>,
    #[serde(borrow, default, rename = "type")]
    kind: Vec<CodeableConcept<'a>>,
    #[serde(borrow)]
    period: Option<Period<'a>>,
    #[serde(borrow, default, rename = "reasonCode")]
    reason_code: Vec<CodeableConcept<'a>>,
    #[serde(borrow, default)]
    participant: Vec<Participant<'a>>,
    #[serde(borrow, default)]
    location: Vec<EncounterLocation<'a>>,
    #[serde(borrow, rename = "serviceProvider")]
    service_provider: Option<Reference<'a>>,
    #[serde(borrow)]
    hospitalization: Option<Hospitalization<'a>>,
    #[serde(borrow)]
    meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Participant<'a> {
    #[serde(borrow)]
    individual: Option<Reference<'a>>,
}

#[derive(Deserialize)]
struct EncounterLocation<'a> {
    #[serde(borrow)]
    location: Option<Reference<'a>>,
}

#[derive(Deserialize)]
struct Hospitalization<'a> {
    #[serde(borrow, rename = "dischargeDisposition")]
    discharge_disposition: Option<CodeableConcept<'a>>,
}

/// The `encounter` table's batch under construction.
pub struct EncounterTable {
    columns: EncounterColumns,
}

impl EncounterTable {
    pub fn new(batch_size: usize) -> Self {
        EncounterTable {
            columns: EncounterColumns::with_capacity(batch_size),
        }
    }
}

impl Table for EncounterTable {
    fn name(&self) -> &'static str {
        "encounter"
    }

    fn resource_type(&self) -> &'static str {
        "Encounter"
    }

    fn schema(&self) -> arrow_schema::SchemaRef {
        EncounterColumns::schema()
    }

    fn append(
        &mut self,
        resource: &Resource<'_>,
        diagnostics: &mut Diagnostics,
    ) -> Result<bool, Rejection> {
        let encounter: Encounter =
            serde_json::from_str(resource.raw).map_err(|e| resource.rejection(&e))?;
        let id = resource
            .logical_id(encounter.id.as_deref())
            .ok_or_else(|| {
                "Encounter without an id (and no fullUrl to take one from)".to_owned()
            })?;
        let mut cells = Cells::new(resource, id, diagnostics);
        let row = encounter_row(&encounter, id, &mut cells);
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

fn encounter_row<'e, 'a: 'e>(
    encounter: &'e Encounter<'_>,
    id: &'e str,
    cells: &mut Cells<'_, 'a>,
) -> EncounterRow<'e> {
    let patient_id = encounter
        .subject
        .as_ref()
        .and_then(|subject| cells.lookup(subject))
        .filter(|lookup| lookup.refers_to("Patient") || lookup.is_unresolved())
        .and_then(|lookup| cells.reference_id("patient_id", lookup));
    let practitioner = encounter
        .participant
        .iter()
        .filter_map(|participant| participant.individual.as_ref())
        .find_map(|individual| {
            let lookup = cells.lookup(individual)?;
            lookup
                .refers_to("Practitioner")
                .then_some((individual, lookup))
        });
    let (practitioner_id, practitioner_name) = match practitioner {
        Some((individual, lookup)) => (
            cells.reference_id("practitioner_id", lookup),
            cells.string("practitioner_name", individual.display.as_ref()),
        ),
        None => (None, None),
    };
    let location = encounter.location.first().and_then(|l| l.location.as_ref());
    let location_id = location
        .and_then(|reference| cells.lookup(reference))
        .and_then(|lookup| cells.reference_id("location_id", lookup));
    let service_provider = encounter.service_provider.as_ref();
    let service_provider_id = service_provider
        .and_then(|reference| cells.lookup(reference))
        .and_then(|lookup| cells.reference_id("service_provider_id", lookup));
    let first_type = encounter.kind.first();
    let first_reason = encounter.reason_code.first();
    let period = encounter.period.as_ref();
    EncounterRow {
        id: cells.text("id", Some(id.into())),
        patient_id,
        status: cells.string("status", encounter.status.as_ref()),
        class_code: cells.string(
            "class_code",
            encounter.class.as_ref().and_then(|c| c.code.as_ref()),
        ),
        type_code: cells.string("type_code", first_type.and_then(|t| t.first_code())),
        type_display: cells.string(
            "type_display",
            first_type.and_then(|t| t.first_display_or_text()),
        ),
        start: cells.datetime("start", period.and_then(|p| p.start.as_ref())),
        end: cells.datetime("end", period.and_then(|p| p.end.as_ref())),
        reason_code: cells.string("reason_code", first_reason.and_then(|r| r.first_code())),
        reason_display: cells.string(
            "reason_display",
            first_reason.and_then(|r| r.first_display_or_text()),
        ),
        practitioner_id,
        practitioner_name,
        location_id,
        location_name: cells.string("location_name", location.and_then(|l| l.display.as_ref())),
        service_provider_id,
        service_provider_name: cells.string(
            "service_provider_name",
            service_provider.and_then(|s| s.display.as_ref()),
        ),
        discharge_disposition: cells.string(
            "discharge_disposition",
            encounter
                .hospitalization
                .as_ref()
                .and_then(|h| h.discharge_disposition.as_ref())
                .and_then(|d| d.first_code()),
        ),
        last_updated: cells.datetime(
            "last_updated",
            encounter
                .meta
                .as_ref()
                .and_then(|m| m.last_updated.as_ref()),
        ),
        source_file: Some(cells.source_file()),
    }
}
