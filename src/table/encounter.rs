//! The `encounter` table: one row per Encounter resource (columns and rules: docs/tables.md).

use serde::Deserialize;

use super::builtin::builtin_table;
use super::cells::Cells;
use super::columns::define_columns;
use crate::fhir::{CodeableConcept, Coding, Meta, Period, Reference, Str};

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

builtin_table! {
    /// The `encounter` table's batch under construction.
    EncounterTable {
        name: "encounter",
        resource_type: "Encounter",
        parsed: Encounter,
        columns: EncounterColumns,
        row: encounter_row,
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
            lookup.refers_to("Practitioner").then_some((individual, lookup))
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
        type_display: cells.string("type_display", first_type.and_then(|t| t.first_display_or_text())),
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
            encounter.meta.as_ref().and_then(|m| m.last_updated.as_ref()),
        ),
        source_file: Some(cells.source_file()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::{Diagnostics, WarningKind};
    use crate::table::testing::{cell, rows, Row};

    fn encounter(fields: &str) -> (Vec<Row>, Diagnostics) {
        let document = format!(r#"{{"resourceType":"Encounter","id":"e1"{fields}}}"#);
        rows(Box::new(EncounterTable::new(10)), &document)
    }

    /// An Encounter inside a Bundle whose other entries are `entries` (JSON entry objects).
    fn in_bundle(fields: &str, entries: &str) -> Vec<Row> {
        let document = format!(
            r#"{{"resourceType":"Bundle","entry":[{{"fullUrl":"urn:uuid:e","resource":{{"resourceType":"Encounter","id":"e1"{fields}}}}}{entries}]}}"#
        );
        rows(Box::new(EncounterTable::new(10)), &document).0
    }

    #[test]
    fn subject_must_point_to_a_patient() {
        let patient = |reference: &str| {
            cell(
                &encounter(&format!(r#","subject":{{"reference":"{reference}"}}"#)).0,
                "patient_id",
            )
        };
        assert_eq!(patient("Patient/p9").as_deref(), Some("p9"));
        assert_eq!(
            patient("https://x.org/fhir/Patient/p9/_history/2").as_deref(),
            Some("p9")
        );
        assert_eq!(patient("Group/g1"), None);
        let typed = cell(
            &encounter(r#","subject":{"reference":"urn:uuid:x","type":"Patient"}"#).0,
            "patient_id",
        );
        assert_eq!(typed, None, "an urn:uuid outside any Bundle cannot resolve");
        let (_, diagnostics) = encounter(r#","subject":{"reference":"urn:uuid:x"}"#);
        assert_eq!(diagnostics.warnings[&WarningKind::UnresolvedReference].count, 1);
    }

    #[test]
    fn bundle_entries_resolve_by_full_url_and_give_the_type() {
        let entries = r#",{"fullUrl":"urn:uuid:p","resource":{"resourceType":"Patient","id":"pat"}},{"fullUrl":"http://x/Practitioner/a","resource":{"resourceType":"Practitioner","id":"doc"}},{"fullUrl":"urn:uuid:rp","resource":{"resourceType":"RelatedPerson","id":"rel"}}"#;
        let fields = r#","subject":{"reference":"urn:uuid:p"},"participant":[{"individual":{"reference":"urn:uuid:rp","display":"Relative"}},{"individual":{"reference":"http://x/Practitioner/a","display":"Doc"}}]"#;
        let rows = in_bundle(fields, entries);
        assert_eq!(cell(&rows, "patient_id").as_deref(), Some("pat"));
        assert_eq!(cell(&rows, "practitioner_id").as_deref(), Some("doc"));
        assert_eq!(cell(&rows, "practitioner_name").as_deref(), Some("Doc"));
    }

    #[test]
    fn the_first_practitioner_participant_is_chosen_by_type_text_or_declared_type() {
        let fields = r#","participant":[{"type":[]},{"individual":{"reference":"PractitionerRole/r1"}},{"individual":{"reference":"x","type":"Practitioner","display":"Typed"}},{"individual":{"reference":"Practitioner/p2","display":"Second"}}]"#;
        let (rows, diagnostics) = encounter(fields);
        assert_eq!(
            cell(&rows, "practitioner_id"),
            None,
            "the chosen participant's reference is unresolvable"
        );
        assert_eq!(cell(&rows, "practitioner_name").as_deref(), Some("Typed"));
        assert_eq!(diagnostics.warnings[&WarningKind::UnresolvedReference].count, 1);
    }

    #[test]
    fn codes_and_displays_fall_back_to_text() {
        let fields = r#","class":{"code":"EMER"},"type":[{"coding":[{"code":"t1"}],"text":"Type text"},{"coding":[{"code":"t2","display":"T2"}]}],"reasonCode":[{"coding":[{"code":"r1","display":"R1"}],"text":"ignored"}],"hospitalization":{"dischargeDisposition":{"coding":[{"code":"hosp"}]}}"#;
        let (rows, _) = encounter(fields);
        assert_eq!(cell(&rows, "class_code").as_deref(), Some("EMER"));
        assert_eq!(cell(&rows, "type_code").as_deref(), Some("t1"));
        assert_eq!(cell(&rows, "type_display").as_deref(), Some("Type text"));
        assert_eq!(cell(&rows, "reason_code").as_deref(), Some("r1"));
        assert_eq!(cell(&rows, "reason_display").as_deref(), Some("R1"));
        assert_eq!(cell(&rows, "discharge_disposition").as_deref(), Some("hosp"));
    }

    #[test]
    fn locations_and_service_provider_are_resolved_and_displayed() {
        let fields = r##","location":[{"location":{"reference":"Location/l1","display":"Ward"}},{"location":{"reference":"Location/l2"}}],"serviceProvider":{"reference":"#org","display":"Contained org"}"##;
        let (rows, diagnostics) = encounter(fields);
        assert_eq!(cell(&rows, "location_id").as_deref(), Some("l1"));
        assert_eq!(cell(&rows, "location_name").as_deref(), Some("Ward"));
        assert_eq!(
            cell(&rows, "service_provider_id"),
            None,
            "contained references give null"
        );
        assert_eq!(
            cell(&rows, "service_provider_name").as_deref(),
            Some("Contained org")
        );
        assert!(
            diagnostics.warnings.is_empty(),
            "contained references are not warnings"
        );
    }

    #[test]
    fn conditional_references_are_staged_for_the_run_wide_pass() {
        let fields = r#","serviceProvider":{"reference":"Organization?identifier=s|v"}"#;
        let (rows, _) = encounter(fields);
        assert_eq!(
            cell(&rows, "service_provider_id").as_deref(),
            Some("\0Organization?identifier=s|v")
        );
    }

    #[test]
    fn period_offsets_and_partial_dates() {
        let (rows, _) = encounter(r#","period":{"start":"2019-02-16T23:30:00-02:00","end":"2019"}"#);
        assert_eq!(cell(&rows, "start").as_deref(), Some("2019-02-17T01:30:00Z"));
        assert_eq!(cell(&rows, "end").as_deref(), Some("2019-01-01T00:00:00Z"));
    }
}
