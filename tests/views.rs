//! The shipped views (`--view default`) over every fixture, chosen values per view, joins with the
//! built-in tables, and how bad views and bad data are reported.

mod common;

use std::path::Path;

use arrow_schema::{DataType, TimeUnit};

use common::{assert_cells, convert, fhir2table, fixtures, read_table};

fn default_views_run() -> common::Run {
    // fixtures/lossless holds values of the wrong JSON kind on purpose (for the resource tables'
    // `__unmapped`), which views report as errors: it is left out here.
    let run = convert(&fixtures(), &["--view", "default", "--exclude", "/lossless/"]);
    // fixtures/bad is part of the input: the run reports it (exit 1) and converts the rest.
    assert_eq!(run.code, 1, "{}", run.stderr);
    run
}

#[test]
fn default_views_cover_every_resource_type_with_rows() {
    let run = default_views_run();
    let report = run.report();
    let tables = report["tables"].as_object().unwrap();
    for view in [
        "allergy_intolerance",
        "care_plan",
        "care_team",
        "claim",
        "condition",
        "device",
        "diagnostic_report",
        "document_reference",
        "explanation_of_benefit",
        "goal",
        "imaging_study",
        "immunization",
        "location",
        "media",
        "medication",
        "medication_administration",
        "medication_request",
        "observation",
        "observation_component",
        "organization",
        "practitioner",
        "practitioner_role",
        "procedure",
        "provenance",
        "supply_delivery",
    ] {
        let rows = tables.get(view).unwrap_or_else(|| panic!("no table {view}"))["rows"]
            .as_u64()
            .unwrap();
        assert!(rows > 0, "view {view} has no rows on the fixtures");
    }
    // Every data error in this run comes from fixtures/bad, none from a view.
    for error in report["errors"].as_array().unwrap() {
        assert!(error["file"].as_str().unwrap().starts_with("bad/"), "{error}");
    }
    // Every resource type the fixtures hold, except Patient/Encounter (built-in tables) and
    // non-clinical ones, has a view.
    let covered = [
        "AllergyIntolerance",
        "CarePlan",
        "CareTeam",
        "Claim",
        "Condition",
        "Device",
        "DiagnosticReport",
        "DocumentReference",
        "ExplanationOfBenefit",
        "Goal",
        "ImagingStudy",
        "Immunization",
        "Location",
        "Media",
        "Medication",
        "MedicationAdministration",
        "MedicationRequest",
        "Observation",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "SupplyDelivery",
        "QuestionnaireResponse",
    ];
    for resource_type in report["resources"].as_object().unwrap().keys() {
        let other = [
            "Patient",
            "Encounter",
            "(deleted)",
            "Bundle",
            "Parameters",
            "MessageHeader",
            "Questionnaire",
        ];
        assert!(
            covered.contains(&resource_type.as_str()) || other.contains(&resource_type.as_str()),
            "no default view for {resource_type}"
        );
    }
}

/// Every resource type Synthea's FHIR R4 exporter writes as a resource of its own: the patient
/// Bundle (`FhirR4.convertToFHIR`: Media where an Observation's value is an attachment,
/// DocumentReference and Provenance with the US Core option), the hospital Bundle
/// (`HospitalExporterR4`) and the practitioner Bundle (`FhirPractitionerExporterR4`, a
/// PractitionerRole beside each Practitioner). Coverage and ServiceRequest are only contained in
/// ExplanationOfBenefit, so no view can read them.
const SYNTHEA_R4_RESOURCE_TYPES: [&str; 27] = [
    "AllergyIntolerance",
    "CarePlan",
    "CareTeam",
    "Claim",
    "Condition",
    "Device",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "ExplanationOfBenefit",
    "Goal",
    "ImagingStudy",
    "Immunization",
    "Location",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationRequest",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "SupplyDelivery",
    "Bundle",
];

#[test]
fn every_resource_type_synthea_writes_has_a_default_view_or_a_built_in_table() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("views");
    let mut covered: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let view: serde_json::Value = serde_json::from_str(&text).unwrap();
            view["resource"].as_str().unwrap().to_owned()
        })
        .collect();
    // The built-in tables, and the Bundles that carry everything (walked, never a table).
    covered.extend(["Patient", "Encounter", "Bundle"].map(String::from));
    for resource_type in SYNTHEA_R4_RESOURCE_TYPES {
        assert!(
            covered.iter().any(|c| c == resource_type),
            "Synthea writes {resource_type}, but no default view reads it"
        );
    }
}

#[test]
fn practitioner_roles_and_media_have_default_views_with_the_right_values() {
    let run = default_views_run();
    let roles = run.table("practitioner_role");
    assert_eq!(roles.rows.len(), 2);
    // Synthea's shape: the practitioner by its Bundle entry, organization and location by
    // conditional references resolved against other files of the run.
    assert_cells(
        roles.row("pr-role-doc"),
        &[
            ("active", None),
            ("practitioner_id", Some("pr-doc")),
            ("practitioner_npi", None),
            ("practitioner_name", Some("Dr. Ardella43 Hartmann983")),
            ("organization_id", Some("03347b4d-994e-302b-848b-58019a4e274d")),
            ("organization_name", Some("EMERSON HOSPITAL -")),
            ("location_id", Some("vx-location")),
            ("location_name", Some("Main Clinic")),
            ("code_code", Some("208D00000X")),
            ("code_system", Some("http://nucc.org/provider-taxonomy")),
            ("code_display", Some("General Practice")),
            ("specialty_code", Some("208D00000X")),
            ("specialty_display", Some("General Practice")),
            ("phone", Some("9783697000")),
            ("email", Some("Ardella43.Hartmann983@example.com")),
            ("period_start", None),
            ("period_end", None),
        ],
    );
    // References by identifier alone have no id to resolve; the NPI still joins to practitioner.
    assert_cells(
        roles.row("pr-role-by-identifier"),
        &[
            ("practitioner_id", None),
            ("practitioner_npi", Some("80")),
            ("organization_id", None),
            ("organization_name", Some("EMERSON HOSPITAL -")),
            ("location_id", None),
            ("specialty_code", None),
            ("specialty_display", Some("General Practice")),
            ("period_start", Some("2019-05-31T00:00:00Z")),
        ],
    );
    let practitioners = run.table("practitioner");
    assert_cells(
        practitioners.row("pr-doc"),
        &[("npi", Some("9999967695")), ("family_name", Some("Hartmann983"))],
    );
    assert!(practitioners.column("npi").contains(&Some("80".to_owned())));

    assert_cells(
        run.table("media").row("vx-media"),
        &[
            ("patient_id", Some("vx-patient")),
            ("encounter_id", Some("vx-encounter")),
            ("status", Some("completed")),
            ("type_code", Some("image")),
            ("modality_code", None),
            ("reason_code", Some("29303009")),
            ("reason_display", Some("Electrocardiographic procedure")),
            ("created", Some("2020-01-01T09:15:00Z")),
            ("issued", Some("2020-01-01T09:20:00Z")),
            ("height", Some("400")),
            ("width", Some("1200")),
            ("frames", Some("1")),
            ("duration", None),
            ("content_type", Some("image/png")),
            ("content_title", Some("ECG tracing")),
            ("content_url", None),
            ("content_size", Some("8")),
        ],
    );
}

#[test]
fn default_views_hold_the_right_values() {
    let run = default_views_run();
    let row = |table: &str, id_column: &str, id: &str| {
        let table = run.table(table);
        let found: Vec<_> = table
            .rows
            .iter()
            .filter(|r| r[id_column].as_deref() == Some(id))
            .cloned()
            .collect();
        assert!(
            !found.is_empty(),
            "no row {id} in {table:?}",
            table = table.rows.len()
        );
        found
    };
    assert_cells(
        &row("condition", "id", "01fac610-c309-46f8-9a0f-6b0f55c9915a")[0],
        &[
            ("patient_id", Some("bbd33563-70d9-4f6d-a79a-dd1fc55f5ad9")),
            ("encounter_id", Some("a1228f20-7c50-4d3a-b88c-2d277ca79d79")),
            ("clinical_status", Some("active")),
            ("code_code", Some("53741008")),
            ("code_display", Some("Coronary Heart Disease")),
            ("onset", Some("1966-06-09T08:27:40Z")),
            ("abatement", None),
        ],
    );
    assert_cells(
        &row("observation", "id", "00d9ca11-8cc1-f9c5-2f1c-40f74240f56c")[0],
        &[
            ("patient_id", Some("3fc4d5b0-9e46-4307-8c05-e4cef7602e7f")),
            ("category", Some("survey")),
            ("code_code", Some("72166-2")),
            ("issued", Some("2021-03-23T14:25:00.329000Z")),
            ("value_quantity", None),
            ("value_code", Some("266919005")),
            ("value_display", Some("Never smoker")),
            ("component_count", Some("0")),
        ],
    );
    let components = row(
        "observation_component",
        "id",
        "0960edf6-fe74-407b-9a13-c72d4ed8f43b",
    );
    assert_eq!(components.len(), 2, "a blood pressure has two components");
    assert_cells(
        &components[0],
        &[
            ("component_index", Some("0")),
            ("code_display", Some("Diastolic Blood Pressure")),
            ("value_quantity", Some("74.29301526748881")),
            ("value_unit", Some("mm[Hg]")),
        ],
    );
    assert_cells(
        &row("diagnostic_report", "id", "01efc605-ff2a-4c0c-88f0-b24373f04f77")[0],
        &[
            ("patient_id", Some("cdf500b9-7cc4-424d-a86c-a18e6620d6e7")),
            ("encounter_id", Some("ec7efc22-6186-4407-8992-e1656e4752a5")),
            ("code_display", Some("Lipid Panel")),
            ("result_count", Some("4")),
        ],
    );
    assert_cells(
        &row(
            "explanation_of_benefit",
            "id",
            "00153726-0414-be17-7ca6-c194fb201ffa",
        )[0],
        &[
            ("claim_id", Some("b405f1da-030d-5639-97d9-082b7bfb1e62")),
            ("encounter_id", Some("4fd6d042-4136-6a61-4eb6-77a41745b776")),
            ("total", Some("146.18")),
            ("payment", Some("0")),
            ("currency", Some("USD")),
        ],
    );
    assert_cells(
        &row("claim", "id", "04344681-16de-f3f0-33a9-9983c3b36081")[0],
        &[
            ("type", Some("institutional")),
            ("total", Some("85.55")),
            ("item_count", Some("2")),
        ],
    );
    assert_cells(
        &row("medication_request", "id", "1b0c630b-cfc7-42f8-9624-5ce93a3fea94")[0],
        &[
            ("status", Some("stopped")),
            ("medication_code", Some("562251")),
            ("requester_id", Some("ec06fc71-7541-44d0-80cf-6b0eec00ab3b")),
            ("authored_on", Some("2015-07-10T22:48:50Z")),
        ],
    );
    assert_cells(
        &row("immunization", "id", "050581a1-1505-4956-bea7-234909fe4c7f")[0],
        &[("vaccine_code", Some("140")), ("primary_source", Some("true"))],
    );
    assert_cells(
        &row("procedure", "id", "0e4d11de-6aa8-75c0-cfd3-cf67ef69445e")[0],
        &[
            ("performed_start", Some("2015-02-19T01:46:25Z")),
            ("performed_end", Some("2015-02-19T02:12:50Z")),
        ],
    );
    assert_cells(
        &row("imaging_study", "id", "453753e1-e665-4e02-84bd-b92af15c473a")[0],
        &[
            ("number_of_series", Some("1")),
            ("modality", Some("DX")),
            ("body_site_display", Some("Chest")),
        ],
    );
    assert_cells(
        &row(
            "allergy_intolerance",
            "id",
            "080c31a5-39e1-467b-8823-1b7559152973",
        )[0],
        &[
            ("category", Some("food")),
            ("criticality", Some("low")),
            ("code_code", Some("419263009")),
        ],
    );
    assert_cells(
        &row("organization", "id", "03347b4d-994e-302b-848b-58019a4e274d")[0],
        &[
            ("name", Some("EMERSON HOSPITAL -")),
            ("postal_code", Some("01742")),
            ("type", Some("prov")),
        ],
    );
    assert_cells(
        &row("care_plan", "id", "3c72d375-5c92-b4f6-e841-77e40ebe04e5")[0],
        &[("status", Some("completed"))],
    );
    assert_cells(
        &row("device", "id", "vx-device")[0],
        &[
            ("patient_id", Some("vx-patient")),
            ("udi_device_identifier", Some("09999")),
            ("type_code", Some("72506001")),
        ],
    );
    assert_cells(
        &row("document_reference", "id", "vx-note")[0],
        &[
            ("encounter_id", Some("vx-encounter")),
            ("type_code", Some("34117-2")),
            ("content_base64", Some("aGVsbG8=")),
        ],
    );
    assert_cells(
        &row("location", "id", "vx-location")[0],
        &[("organization_id", Some("vx-org")), ("latitude", Some("42.35"))],
    );
    assert_cells(
        &row("supply_delivery", "id", "vx-supply")[0],
        &[("quantity", Some("2")), ("item_code", Some("337388004"))],
    );
    assert_cells(
        &row("medication_administration", "id", "vx-admin")[0],
        &[("encounter_id", Some("vx-encounter")), ("dose", Some("10"))],
    );
    assert_cells(
        &row("goal", "id", "vx-goal")[0],
        &[("description", Some("Lower HbA1c"))],
    );
    assert_cells(
        &row("provenance", "id", "vx-provenance")[0],
        &[("agent_who_id", Some("vx-doc"))],
    );
    assert_cells(
        &row("medication", "id", "vx-med")[0],
        &[("manufacturer_id", Some("vx-maker"))],
    );
    assert_cells(
        &row("care_team", "id", "vx-team")[0],
        &[("reason_code", Some("44054006"))],
    );
    assert_cells(
        &row("practitioner", "id", "0000016c-ffcb-bcdf-0000-000000000050")[0],
        &[("npi", Some("80")), ("prefix", Some("Dr."))],
    );
}

#[test]
fn reference_keys_in_bundles_join_to_the_built_in_tables() {
    let run = convert(&fixtures().join("synthea"), &["--view", "default"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let patient_ids = run.table("patient").column("id");
    let encounter_ids = run.table("encounter").column("id");
    for view in [
        "condition",
        "observation",
        "procedure",
        "immunization",
        "diagnostic_report",
        "medication_request",
    ] {
        let table = run.table(view);
        assert!(!table.rows.is_empty());
        for (patient, encounter) in table
            .column("patient_id")
            .iter()
            .zip(table.column("encounter_id"))
        {
            assert!(
                patient_ids.contains(patient),
                "{view}: patient {patient:?} is not in the patient table"
            );
            assert!(
                encounter_ids.contains(&encounter),
                "{view}: encounter {encounter:?} is not in the encounter table"
            );
        }
    }
}

#[test]
fn a_view_has_the_same_schema_on_any_input() {
    let empty = tempfile::tempdir().unwrap();
    let on_nothing = convert(empty.path(), &["--view", "default", "--no-builtin-tables"]);
    assert_eq!(on_nothing.code, 0, "{}", on_nothing.stderr);
    assert!(
        !on_nothing.out.path().join("patient").exists(),
        "--no-builtin-tables"
    );
    let on_fixtures = convert(&fixtures().join("synthea"), &["--view", "default"]);
    for view in ["observation", "diagnostic_report", "care_team"] {
        let a = read_table(&on_nothing.out.path().join(view));
        let b = read_table(&on_fixtures.out.path().join(view));
        assert!(a.rows.is_empty());
        assert_eq!(a.schema, b.schema, "{view}");
    }
}

/// Runs `convert` on the hand-made fixture into `out` with one view file.
fn convert_handmade_with_view(out: &Path, view: &Path) -> std::process::Output {
    fhir2table()
        .args(["convert", "--in"])
        .arg(fixtures().join("handmade"))
        .arg("--out")
        .arg(out)
        .arg("--view")
        .arg(view)
        .output()
        .unwrap()
}

fn write_view(dir: &Path, name: &str, json: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn bad_views_are_rejected_before_reading_with_the_view_path_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"}],"colum":[]}]}"#,
            "select[0].colum: unknown key",
        ),
        (
            r#"{"resource":"Patient","select":[{"forEach":"name","forEachOrNull":"name","column":[{"name":"f","path":"family"}]}]}"#,
            "select[0]: forEach and forEachOrNull cannot both be given",
        ),
        (
            r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id.where("}]}]}"#,
            "select[0].column[0].path: invalid FHIRPath 'id.where(': unexpected end of expression",
        ),
        (
            r#"{"resource":"Patient","select":[{"unionAll":[{"column":[{"name":"a","path":"id"}]},{"column":[{"name":"b","path":"id"}]}]}]}"#,
            "unionAll branches must have the same columns",
        ),
        (
            r#"{"resource":"Patient","select":[{"unionAll":[{"column":[{"name":"d","path":"birthDate","type":"date","tag":[{"name":"ansi/type","value":"DATE"}]}]},{"column":[{"name":"d","path":"birthDate","type":"date"}]}]}]}"#,
            "select[0].unionAll[1].column[0]: unionAll branches must give a column the same ansi/type tag",
        ),
        (
            r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"name.where(use = %missing)"}]}]}"#,
            "unknown constant %missing",
        ),
        (
            r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"name.frobnicate()"}]}]}"#,
            "unknown function frobnicate()",
        ),
        (
            r#"{"select":[{"column":[{"name":"id","path":"id"}]}]}"#,
            "resource: missing",
        ),
        // An empty column list once panicked (exit 101) when the view's first batch was finished.
        (
            r#"{"resource":"Patient","select":[{"column":[]}]}"#,
            "select[0].column: must be a non-empty array",
        ),
        (
            r#"{"resource":"Patient","select":[{"forEach":"name","select":[{"unionAll":[]}]}]}"#,
            "select[0].select[0].unionAll: must be a non-empty array",
        ),
        (
            r#"{"resource":"Patient","select":[{"forEach":"name"}]}"#,
            "select: no columns: a view needs at least one column",
        ),
        (
            r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"},{"name":"id","path":"gender"}]}]}"#,
            "column name 'id' is used twice",
        ),
        (
            r#"{"resource":"Patient","name":"patient","select":[{"column":[{"name":"id","path":"id"}]}]}"#,
            "view \"patient\": name is the name of a built-in table (patient)",
        ),
        (
            r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]}]"#,
            "invalid JSON",
        ),
    ];
    let out = dir.path().join("out");
    for (json, expected) in cases {
        let view = write_view(dir.path(), "bad_view.json", json);
        let output = convert_handmade_with_view(&out, &view);
        assert_eq!(output.status.code(), Some(2), "{json}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected),
            "{json}\nexpected '{expected}' in: {stderr}"
        );
        assert!(
            stderr.contains("bad_view"),
            "the message names the view: {stderr}"
        );
        assert!(!out.exists(), "nothing is written for a rejected view");
    }
    let view = write_view(
        dir.path(),
        "twice.json",
        r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]}]}"#,
    );
    let output = fhir2table()
        .args(["convert", "--in", "x", "--out"])
        .arg(&out)
        .arg("--view")
        .arg(&view)
        .arg("--view")
        .arg(&view)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("two views are named twice"));
}

#[test]
fn view_names_that_are_not_plain_names_are_refused_before_any_input_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // `../sibling` once replaced the folder next to --out; a NUL failed only after all input.
    let sibling = dir.path().join("sibling");
    std::fs::create_dir(&sibling).unwrap();
    std::fs::write(sibling.join("keep.txt"), "precious").unwrap();
    let cases = [
        (
            r#""../sibling""#,
            "view \"../sibling\": name is not a valid view name",
        ),
        (
            r#""bad\u0000name""#,
            "view \"bad\\0name\": name is not a valid view name",
        ),
        (r#""_state""#, "name is not a valid view name"),
        (
            r#""Encounter""#,
            "name is the name of a built-in table (encounter)",
        ),
        (r#""""#, "name is empty"),
    ];
    let out = dir.path().join("out");
    for (name, expected) in cases {
        let json = format!(
            r#"{{"resource":"Patient","name":{name},"select":[{{"column":[{{"name":"id","path":"id"}}]}}]}}"#
        );
        let view = write_view(dir.path(), "named.json", &json);
        let output = convert_handmade_with_view(&out, &view);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: expected '{expected}' in {stderr}"
        );
        assert!(stderr.contains("named.json"), "the view file is named: {stderr}");
        assert!(!out.exists(), "nothing is written, no input is read");
    }
    assert_eq!(
        std::fs::read_to_string(sibling.join("keep.txt")).unwrap(),
        "precious"
    );
    assert_eq!(std::fs::read_dir(&sibling).unwrap().count(), 1);

    // Without `name` the file name names the view, under the same rule.
    let view = write_view(
        dir.path(),
        "my-view.json",
        r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]}]}"#,
    );
    let output = convert_handmade_with_view(&out, &view);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("view file name \"my-view\" is not a valid view name")
            && stderr.contains("give the view a `name` or rename the file")
            && stderr.contains("my-view.json"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn several_values_in_a_single_column_stop_the_view_with_view_column_and_resource() {
    let dir = tempfile::tempdir().unwrap();
    let view = write_view(
        dir.path(),
        "given.json",
        r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"},{"name":"given","path":"name.given"}]}]}"#,
    );
    let run = convert(&fixtures().join("handmade"), &["--view", view.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    let message = report["errors"][0]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "view given: column given: Patient/hm-patient-1: 3 values where one is allowed (set \"collection\": true)"
    );
    // The view stops: it is not written, so no one reads it with rows missing; the other tables are.
    assert_eq!(report["tables"]["given"]["stopped"], true);
    assert!(!run.out.path().join("given").exists());
    assert_eq!(run.table("patient").rows.len(), 2);
    assert!(run.stderr.contains("given STOPPED"), "{}", run.stderr);
}

#[test]
fn the_readme_example_view_runs() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("```json\n").expect("README has a JSON view example") + 8;
    let end = start + readme[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let view = write_view(dir.path(), "bp.json", &readme[start..end]);
    let run = convert(&fixtures().join("synthea"), &["--view", view.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = run.table("blood_pressure");
    assert!(!table.rows.is_empty());
    assert!(table
        .column("part")
        .iter()
        .all(|p| matches!(p.as_deref(), Some("8462-4" | "8480-6"))));
}

#[test]
fn conditional_references_in_views_resolve_across_files_like_the_built_in_tables() {
    let dir = tempfile::tempdir().unwrap();
    let view = write_view(
        dir.path(),
        "encounter_refs.json",
        r#"{"resource":"Encounter","select":[{"column":[
            {"name":"id","path":"id"},
            {"name":"provider_id","path":"serviceProvider.getReferenceKey(Organization)"},
            {"name":"location_id","path":"location.location.getReferenceKey(Location).first()"},
            {"name":"practitioner_ids","path":"participant.individual.getReferenceKey(Practitioner)","collection":true}]}]}"#,
    );
    let run = convert(
        &fixtures().join("handmade"),
        &["--view", view.to_str().unwrap(), "--threads", "1"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = run.table("encounter_refs");
    assert_cells(
        table.row("hm-encounter-1"),
        &[
            ("provider_id", Some("hm-org-3")),
            ("location_id", Some("hm-location-7")),
            ("practitioner_ids", Some("[other]")),
        ],
    );
    assert_cells(
        table.row("hm-encounter-2"),
        &[
            ("provider_id", None),
            ("practitioner_ids", Some("[hm-local-practitioner]")),
        ],
    );
    let report = run.report();
    // no-such-org (the same as the built-in table) plus the conditional reference in a collection.
    let unresolved = &report["warnings"]["unresolved_reference"];
    let values: Vec<&str> = unresolved["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert!(
        values.contains(&"Organization?identifier=https://example.org/orgs|no-such-org"),
        "{values:?}"
    );
    assert!(
        values.contains(&"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9990001"),
        "{values:?}"
    );
}

#[test]
fn view_text_cells_are_capped_like_the_built_in_tables() {
    let input = tempfile::tempdir().unwrap();
    let huge = "x".repeat((1 << 20) + 1);
    let patient = format!(
        r#"{{"resourceType":"Patient","id":"p1","name":[{{"family":"{huge}","given":["Ann","{huge}"]}}]}}"#
    );
    std::fs::write(input.path().join("p.ndjson"), patient + "\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let view = write_view(
        dir.path(),
        "names.json",
        r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"},{"name":"family","path":"name.family"},{"name":"given","path":"name.given","collection":true}]}]}"#,
    );
    let run = convert(
        input.path(),
        &["--view", view.to_str().unwrap(), "--no-builtin-tables"],
    );
    assert_eq!(run.code, 1, "an oversized value is lost input: {}", run.stderr);
    assert_cells(
        run.table("names").row("p1"),
        &[("family", None), ("given", Some("[Ann, null]"))],
    );
    let oversized = &run.report()["warnings"]["oversized_value"];
    assert_eq!(oversized["count"], 2);
    assert_eq!(oversized["examples"][0]["column"], "family");
    assert_eq!(oversized["examples"][0]["resource"], "Patient/p1");
    assert_eq!(oversized["examples"][0]["line"], 1);
}

#[test]
fn an_integer_column_refuses_values_beyond_32_bits_instead_of_wrapping() {
    let input = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"resourceType":"Observation","id":"fits","status":"final","code":{},"valueQuantity":{"value":2147483647.0}}"#,
        r#"{"resourceType":"Observation","id":"too-big","status":"final","code":{},"valueQuantity":{"value":3000000000.0}}"#,
    ];
    std::fs::write(input.path().join("o.ndjson"), lines.join("\n") + "\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let view = write_view(
        dir.path(),
        "counts.json",
        r#"{"resource":"Observation","select":[{"column":[{"name":"id","path":"id"},{"name":"n","path":"value.ofType(Quantity).value","type":"integer"}]}]}"#,
    );
    let run = convert(input.path(), &["--view", view.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    assert_eq!(report["tables"]["counts"]["stopped"], true);
    let message = report["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("view counts: column n: Observation/too-big: value 3000000000.0 does not fit"),
        "{message}"
    );
    assert_eq!(report["errors"][0]["line"], 2);
    // Without the value too big for Int32 the same view is written.
    std::fs::write(input.path().join("o.ndjson"), lines[0].to_owned() + "\n").unwrap();
    let run = convert(input.path(), &["--view", view.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_cells(run.table("counts").row("fits"), &[("n", Some("2147483647"))]);
}

#[test]
fn an_ansi_type_tag_gives_typed_time_columns_by_the_built_in_tables_rules() {
    let input = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"resourceType":"Encounter","id":"e1","period":{"start":"2019-02-16T23:30:00-05:00","end":"2019"},"meta":{"lastUpdated":"2019-02-17T04:30:00.123456789Z"}}"#,
        r#"{"resourceType":"Encounter","id":"e2","period":{"start":"2019-13-01T00:00:00Z"}}"#,
        r#"{"resourceType":"Encounter","id":"e3"}"#,
    ];
    std::fs::write(input.path().join("e.ndjson"), lines.join("\n") + "\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let timestamp = r#"[{"name":"ansi/type","value":"TIMESTAMP WITH TIME ZONE"}]"#;
    let date = r#"[{"name":"note","value":"kept"},{"name":"ansi/type","value":"date"}]"#;
    let view = write_view(
        dir.path(),
        "times.json",
        &format!(
            r#"{{"resource":"Encounter","select":[{{"column":[
                {{"name":"id","path":"id"}},
                {{"name":"start","path":"period.start","type":"dateTime","tag":{timestamp}}},
                {{"name":"start_day","path":"period.start","type":"dateTime","tag":{date}}},
                {{"name":"start_text","path":"period.start","type":"dateTime"}},
                {{"name":"end","path":"period.end","type":"dateTime","tag":{timestamp}}},
                {{"name":"updated","path":"meta.lastUpdated","type":"instant","tag":{timestamp}}},
                {{"name":"both","path":"period.start | period.end","type":"dateTime","collection":true,"tag":{timestamp}}}
            ]}}]}}"#
        ),
    );
    let run = convert(
        input.path(),
        &["--view", view.to_str().unwrap(), "--no-builtin-tables"],
    );
    assert_eq!(
        run.code, 1,
        "an invalid dateTime is lost input, as in the built-in tables: {}",
        run.stderr
    );
    let table = run.table("times");
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    for (column, expected) in [
        ("start", &utc),
        ("start_day", &DataType::Date32),
        ("start_text", &DataType::Utf8),
        ("end", &utc),
        ("updated", &utc),
    ] {
        assert_eq!(
            table.schema.field_with_name(column).unwrap().data_type(),
            expected,
            "{column}"
        );
    }
    assert_cells(
        table.row("e1"),
        &[
            ("start", Some("2019-02-17T04:30:00Z")),
            ("start_day", Some("2019-02-16")),
            ("start_text", Some("2019-02-16T23:30:00-05:00")),
            ("end", Some("2019-01-01T00:00:00Z")),
            ("updated", Some("2019-02-17T04:30:00.123456Z")),
            ("both", Some("[2019-02-17T04:30:00Z, 2019-01-01T00:00:00Z]")),
        ],
    );
    assert_cells(
        table.row("e2"),
        &[
            ("start", None),
            ("start_day", None),
            ("start_text", Some("2019-13-01T00:00:00Z")),
        ],
    );
    assert_cells(table.row("e3"), &[("start", None), ("both", Some("[]"))]);
    let invalid = &run.report()["warnings"]["invalid_datetime"];
    assert_eq!(invalid["count"], 3, "start, start_day and both on e2: {invalid}");
    assert_eq!(invalid["examples"][0]["resource"], "Encounter/e2");
}

#[test]
fn a_time_tag_on_a_column_that_holds_no_dates_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let view = write_view(
        dir.path(),
        "bad.json",
        r#"{"name":"bad","resource":"Patient","select":[{"column":[{"name":"gender","path":"gender","type":"code","tag":[{"name":"ansi/type","value":"TIMESTAMP"}]}]}]}"#,
    );
    let out = tempfile::tempdir().unwrap();
    let output = convert_handmade_with_view(out.path(), &view);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("view bad: select[0].column[0].tag[0]: ansi/type TIMESTAMP applies to date, dateTime and instant columns; this one is code"),
        "{stderr}"
    );
}

#[test]
fn every_date_and_time_column_of_the_default_views_is_typed() {
    let run = default_views_run();
    let mut typed = 0;
    for entry in std::fs::read_dir(common::fixtures().parent().unwrap().join("views")).unwrap() {
        let path = entry.unwrap().path();
        let definition: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = definition["name"].as_str().unwrap();
        let schema = run.table(name).schema;
        let mut columns = Vec::new();
        collect_columns(&definition, &mut columns);
        for column in columns {
            let field = schema.field_with_name(column["name"].as_str().unwrap()).unwrap();
            if matches!(column["type"].as_str(), Some("dateTime" | "instant")) {
                let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
                assert_eq!(field.data_type(), &utc, "{name}.{}", field.name());
                typed += 1;
            }
        }
    }
    assert!(typed >= 30, "{typed} typed columns");
}

fn collect_columns<'v>(node: &'v serde_json::Value, into: &mut Vec<&'v serde_json::Value>) {
    for column in node["column"].as_array().into_iter().flatten() {
        into.push(column);
    }
    for key in ["select", "unionAll"] {
        for child in node[key].as_array().into_iter().flatten() {
            collect_columns(child, into);
        }
    }
}

#[test]
fn appending_to_a_table_that_holds_times_as_text_keeps_them_text_until_an_overwrite() {
    let input = tempfile::tempdir().unwrap();
    let line = r#"{"resourceType":"Encounter","id":"e1","period":{"start":"2019-02-16T23:30:00-05:00"}}"#;
    std::fs::write(input.path().join("e.ndjson"), format!("{line}\n")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let view = |tag: &str| {
        format!(
            r#"{{"name":"times","resource":"Encounter","select":[{{"column":[{{"name":"id","path":"id"}},{{"name":"start","path":"period.start","type":"dateTime"{tag}}}]}}]}}"#
        )
    };
    // Written by a release whose view had no tag: text.
    let untagged = write_view(dir.path(), "untagged.json", &view(""));
    let tagged = write_view(
        dir.path(),
        "tagged.json",
        &view(r#","tag":[{"name":"ansi/type","value":"TIMESTAMP"}]"#),
    );
    let out = tempfile::tempdir().unwrap();
    let run = |view: &Path, mode: &str| {
        fhir2table()
            .args(["convert", "--no-builtin-tables", "--mode", mode, "--in"])
            .arg(input.path())
            .arg("--out")
            .arg(out.path())
            .arg("--view")
            .arg(view)
            .output()
            .unwrap()
    };
    assert_eq!(run(&untagged, "overwrite").status.code(), Some(0));
    let appended = run(&tagged, "append");
    let stderr = String::from_utf8_lossy(&appended.stderr);
    assert_eq!(appended.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stay text"), "the run says why: {stderr}");
    let table = read_table(&out.path().join("times"));
    assert_eq!(table.files, 2);
    assert_eq!(
        table.schema.field_with_name("start").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(
        table.column("start"),
        vec![common::some("2019-02-16T23:30:00-05:00"); 2]
    );

    assert_eq!(run(&tagged, "overwrite").status.code(), Some(0));
    let table = read_table(&out.path().join("times"));
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    assert_eq!(table.schema.field_with_name("start").unwrap().data_type(), &utc);
    assert_eq!(table.column("start"), vec![common::some("2019-02-17T04:30:00Z")]);
}

/// Views build only the elements they read, but a resource broken where no view looks is still
/// broken: reported with its line, the other lines converted.
#[test]
fn broken_json_where_no_view_reads_is_still_reported() {
    let input = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"resourceType":"ExplanationOfBenefit","id":"fine","status":"active","contained":[{"resourceType":"Coverage","id":"c"}]}"#,
        r#"{"resourceType":"ExplanationOfBenefit","id":"broken","status":"active","contained":[{"resourceType":"Coverage","id":tru}]}"#,
        r#"{"resourceType":"ExplanationOfBenefit","id":"after","status":"active","item":[{"sequence":1,"x":"\q"}]}"#,
        r#"{"resourceType":"ExplanationOfBenefit","id":"last","status":"cancelled"}"#,
    ];
    std::fs::write(input.path().join("eob.ndjson"), lines.join("\n") + "\n").unwrap();
    let run = convert(input.path(), &["--view", "default"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    let errors = report["errors"].as_array().unwrap();
    let lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 3], "{errors:?}");
    for error in errors {
        assert_eq!(error["file"], "eob.ndjson");
        assert!(error["message"].as_str().unwrap().contains("invalid"), "{error}");
    }
    let table = run.table("explanation_of_benefit");
    assert_eq!(
        table.column("id"),
        [Some("fine".to_owned()), Some("last".to_owned())]
    );
}
