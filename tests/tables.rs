//! The patient and encounter tables on real and hand-made fixtures, read back with the parquet
//! crate and checked cell by cell against docs/tables.md.

mod common;

use arrow_schema::{DataType, TimeUnit};
use common::{assert_cells, convert, fixtures};

const PATIENT_COLUMNS: &[(&str, &str, bool)] = &[
    ("id", "Utf8", false),
    ("mrn", "Utf8", true),
    ("family_name", "Utf8", true),
    ("given_names", "Utf8", true),
    ("name_prefix", "Utf8", true),
    ("name_suffix", "Utf8", true),
    ("gender", "Utf8", true),
    ("birth_date", "Date32", true),
    ("deceased", "Boolean", true),
    ("deceased_at", "Timestamp", true),
    ("marital_status", "Utf8", true),
    ("race", "Utf8", true),
    ("ethnicity", "Utf8", true),
    ("birth_sex", "Utf8", true),
    ("language", "Utf8", true),
    ("phone", "Utf8", true),
    ("address_line", "Utf8", true),
    ("city", "Utf8", true),
    ("state", "Utf8", true),
    ("postal_code", "Utf8", true),
    ("country", "Utf8", true),
    ("latitude", "Float64", true),
    ("longitude", "Float64", true),
    ("multiple_birth", "Boolean", true),
    ("last_updated", "Timestamp", true),
    ("source_file", "Utf8", false),
];

const ENCOUNTER_COLUMNS: &[(&str, &str, bool)] = &[
    ("id", "Utf8", false),
    ("patient_id", "Utf8", true),
    ("status", "Utf8", true),
    ("class_code", "Utf8", true),
    ("type_code", "Utf8", true),
    ("type_display", "Utf8", true),
    ("start", "Timestamp", true),
    ("end", "Timestamp", true),
    ("reason_code", "Utf8", true),
    ("reason_display", "Utf8", true),
    ("practitioner_id", "Utf8", true),
    ("practitioner_name", "Utf8", true),
    ("location_id", "Utf8", true),
    ("location_name", "Utf8", true),
    ("service_provider_id", "Utf8", true),
    ("service_provider_name", "Utf8", true),
    ("discharge_disposition", "Utf8", true),
    ("last_updated", "Timestamp", true),
    ("source_file", "Utf8", false),
];

fn assert_schema(table: &common::Table, expected: &[(&str, &str, bool)]) {
    let actual: Vec<(String, String, bool)> = table
        .schema
        .fields()
        .iter()
        .map(|field| {
            let kind = match field.data_type() {
                DataType::Utf8 => "Utf8",
                DataType::Date32 => "Date32",
                DataType::Boolean => "Boolean",
                DataType::Float64 => "Float64",
                DataType::Timestamp(TimeUnit::Microsecond, Some(zone)) if &**zone == "UTC" => "Timestamp",
                other => panic!("column {} has unexpected type {other}", field.name()),
            };
            (field.name().clone(), kind.to_owned(), field.is_nullable())
        })
        .collect();
    let expected: Vec<(String, String, bool)> = expected
        .iter()
        .map(|(name, kind, nullable)| (name.to_string(), kind.to_string(), *nullable))
        .collect();
    assert_eq!(actual, expected);
}

#[test]
fn synthea_bundles_convert_with_the_contract_schema_and_exact_values() {
    let run = convert(&fixtures().join("synthea"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let patients = run.table("patient");
    let encounters = run.table("encounter");
    assert_schema(&patients, PATIENT_COLUMNS);
    assert_schema(&encounters, ENCOUNTER_COLUMNS);
    assert_eq!(patients.rows.len(), 7);
    assert_eq!(encounters.rows.len(), 62);

    assert_cells(
        patients.row("d78af07c-9cb9-4f31-9b11-c45a28f2eec8"),
        &[
            ("mrn", Some("1484a42d-0eaf-4654-9cbf-6b050a5cd73b")),
            ("family_name", Some("Kreiger")),
            ("given_names", Some("Clemente")),
            ("name_prefix", Some("Mr.")),
            ("name_suffix", None),
            ("gender", Some("male")),
            ("birth_date", Some("1984-07-02")),
            ("deceased", None),
            ("deceased_at", None),
            ("marital_status", Some("M")),
            ("race", Some("Asian")),
            ("ethnicity", Some("Not Hispanic or Latino")),
            ("birth_sex", Some("M")),
            ("language", Some("zh")),
            ("phone", Some("555-767-7476")),
            ("address_line", Some("931 Doyle Corner Apt 89")),
            ("city", Some("Wilmington")),
            ("state", Some("Massachusetts")),
            ("postal_code", Some("01887")),
            ("country", Some("US")),
            ("latitude", Some("42.564647")),
            ("longitude", Some("-71.164516")),
            ("multiple_birth", Some("true")),
            ("last_updated", None),
            (
                "source_file",
                Some("smart/Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json"),
            ),
        ],
    );
    // Synthea 3 collection bundle: no US Core extensions, multipleBirthBoolean false.
    assert_cells(
        patients.row("3fc4d5b0-9e46-4307-8c05-e4cef7602e7f"),
        &[
            ("family_name", Some("Boyle917")),
            ("race", None),
            ("ethnicity", None),
            ("birth_sex", None),
            ("marital_status", Some("S")),
            ("language", Some("en-US")),
            ("latitude", Some("42.21660227483235")),
            ("longitude", Some("-72.13996174896933")),
            ("multiple_birth", Some("false")),
        ],
    );

    // urn:uuid references resolve to the entries' ids within each Bundle.
    assert_cells(
        encounters.row("afcee359-ffbb-4ae0-b54f-547eb3c58e68"),
        &[
            ("patient_id", Some("d78af07c-9cb9-4f31-9b11-c45a28f2eec8")),
            ("status", Some("finished")),
            ("class_code", Some("AMB")),
            ("type_code", Some("185349003")),
            ("type_display", Some("Encounter for check up (procedure)")),
            ("start", Some("2012-09-10T15:29:24Z")),
            ("end", Some("2012-09-10T15:44:24Z")),
            ("reason_code", None),
            ("practitioner_id", Some("0e99785d-8f2a-45c7-848c-d6b31d1aa50e")),
            ("practitioner_name", None),
            ("location_id", None),
            (
                "service_provider_id",
                Some("6f122869-a856-3d65-8db9-099bf4f5bbb8"),
            ),
            ("discharge_disposition", None),
        ],
    );
    // Offsets are converted to UTC; displays are copied.
    assert_cells(
        encounters.row("8765deba-9091-549e-7ba0-1a441edec8f4"),
        &[
            ("patient_id", Some("3fc4d5b0-9e46-4307-8c05-e4cef7602e7f")),
            ("start", Some("2020-01-14T14:25:00Z")),
            ("end", Some("2020-01-14T14:40:00Z")),
            ("practitioner_id", Some("a309e79b-f764-310a-9bc0-ca304293de76")),
            ("practitioner_name", Some("Dr. Cyril535 Bernhard322")),
            (
                "service_provider_id",
                Some("f7d3a509-bca2-3b93-80b7-97ca6778a089"),
            ),
            ("service_provider_name", Some("WEST BROOKFIELD FAMILY PRACTICE")),
        ],
    );
    // Conditional references to Practitioners that no input defines stay null and are counted.
    assert_cells(
        encounters.row("0760add8-0681-174a-93e5-eb289b31bb42"),
        &[
            ("patient_id", Some("40d82b80-b682-cd8b-da6d-396809878641")),
            ("start", Some("1988-04-29T15:24:38Z")),
            ("practitioner_id", None),
            ("practitioner_name", Some("Dr. Douglass930 Windler79")),
            ("service_provider_name", Some("MERCY MEDICAL CTR")),
        ],
    );
    let report = run.report();
    assert!(
        report["warnings"]["unresolved_reference"]["count"]
            .as_u64()
            .unwrap()
            >= 16
    );
    assert_eq!(report["tables"]["patient"]["rows"], 7);
    assert_eq!(report["tables"]["encounter"]["rows"], 62);
    assert_eq!(report["resources"]["Observation"], 448);
    assert_eq!(report["inputs"]["read"], 9);
    assert_eq!(report["error_count"], 0);
    // Every encounter's patient is in the patient table.
    let patient_ids = patients.column("id");
    assert!(encounters
        .column("patient_id")
        .iter()
        .all(|id| patient_ids.contains(id)));
}

#[test]
fn every_column_rule_on_the_hand_made_fixture() {
    for threads in ["1", "2"] {
        let run = convert(&fixtures().join("handmade"), &["--threads", threads]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let patients = run.table("patient");
        let encounters = run.table("encounter");
        assert_eq!(patients.rows.len(), 2);
        assert_eq!(encounters.rows.len(), 3);
        assert_cells(
            patients.row("hm-patient-1"),
            &[
                ("mrn", Some("MRN-0042")),
                ("family_name", Some("O\"Brien-Łukasz")),
                ("given_names", Some("Mary Ann")),
                ("name_prefix", Some("Dr. Mrs.")),
                ("name_suffix", Some("PhD")),
                ("gender", Some("female")),
                ("birth_date", Some("1950-01-01")),
                ("deceased", Some("true")),
                ("deceased_at", Some("2020-02-16T06:27:01Z")),
                ("marital_status", Some("M")),
                ("race", Some("Asian")),
                ("ethnicity", Some("Hispanic")),
                ("birth_sex", Some("F")),
                ("language", Some("es")),
                ("phone", Some("555-0100")),
                ("address_line", Some("1 Main St Apt 2")),
                ("city", Some("Boston")),
                ("state", Some("MA")),
                ("postal_code", Some("02101")),
                ("country", Some("US")),
                ("latitude", Some("42.36248")),
                ("longitude", Some("-71.0899")),
                ("multiple_birth", Some("true")),
                ("last_updated", Some("2023-04-05T04:07:08.123456Z")),
                ("source_file", Some("a-visit.json")),
            ],
        );
        assert_cells(
            encounters.row("hm-encounter-1"),
            &[
                ("patient_id", Some("hm-patient-1")),
                ("status", Some("finished")),
                ("class_code", Some("IMP")),
                ("type_code", Some("183452005")),
                ("type_display", Some("Emergency hospital admission")),
                ("start", Some("2019-02-16T06:27:01Z")),
                ("end", Some("2019-02-17T00:00:00Z")),
                ("reason_code", Some("44054006")),
                ("reason_display", Some("Diabetes")),
                // Resolved across files: the Practitioner is in z-practitionerInformation.json,
                // the Location and Organization in z-hospitalInformation.ndjson.
                ("practitioner_id", Some("hm-practitioner-who")),
                ("practitioner_name", Some("Dr. Who")),
                ("location_id", Some("hm-location-7")),
                ("location_name", Some("Ward 7")),
                ("service_provider_id", Some("hm-org-3")),
                ("service_provider_name", Some("General Hospital")),
                ("discharge_disposition", Some("home")),
                ("last_updated", Some("2023-04-05T00:00:00Z")),
                ("source_file", Some("a-visit.json")),
            ],
        );
        assert_cells(
            encounters.row("hm-encounter-2"),
            &[
                ("patient_id", None),
                ("status", Some("in-progress")),
                ("class_code", None),
                ("type_code", Some("TYPE-ONLY-CODE")),
                ("type_display", Some("Fallback text")),
                ("start", Some("2019-02-01T00:00:00Z")),
                ("end", None),
                ("practitioner_id", Some("hm-local-practitioner")),
                ("practitioner_name", Some("Dr. Local")),
                ("location_id", None),
                ("service_provider_id", None),
                ("last_updated", None),
            ],
        );
        // Bundles nested in entries are walked, with their own fullUrl scope.
        assert_cells(
            encounters.row("hm-nested-encounter"),
            &[
                ("patient_id", Some("hm-nested-patient")),
                ("status", Some("planned")),
            ],
        );
        assert_cells(
            patients.row("hm-nested-patient"),
            &[
                ("family_name", Some("Nested")),
                ("given_names", None),
                ("deceased", None),
            ],
        );

        let report = run.report();
        assert_eq!(report["exit_code"], 0);
        assert_eq!(report["inputs"]["skipped"], 1);
        assert_eq!(report["skipped_files"][0], "README.md");
        assert_eq!(report["resources"]["Bundle"], 3);
        assert_eq!(report["resources"]["Practitioner"], 2);
        let unresolved = &report["warnings"]["unresolved_reference"];
        assert_eq!(unresolved["count"], 1);
        assert_eq!(unresolved["examples"][0]["column"], "service_provider_id");
        assert_eq!(
            unresolved["examples"][0]["value"],
            "Organization?identifier=https://example.org/orgs|no-such-org"
        );
    }
}

#[test]
fn bulk_ndjson_and_gzip_convert() {
    let run = convert(&fixtures().join("ndjson"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let patients = run.table("patient");
    let encounters = run.table("encounter");
    assert_eq!(patients.rows.len(), 9);
    assert_eq!(encounters.rows.len(), 217);
    let report = run.report();
    assert_eq!(
        report["resources"]["Condition"], 71,
        "the .ndjson.gz file is read"
    );
    assert_eq!(report["resources"]["Organization"], 23);
    assert_eq!(report["inputs"]["read"], 7);
    // Relative references (`Patient/<id>`) give the id; every encounter has a known patient.
    let patient_ids = patients.column("id");
    let subjects = encounters.column("patient_id");
    assert!(subjects.iter().all(|id| id.is_some() && patient_ids.contains(id)));
    assert!(encounters
        .column("source_file")
        .iter()
        .all(|f| f.as_deref() == Some("Encounter.ndjson")));
}

#[test]
fn official_examples_with_odd_shapes() {
    let run = convert(&fixtures().join("fhir-examples"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let patients = run.table("patient");
    assert_eq!(patients.rows.len(), 32);
    assert_eq!(run.table("encounter").rows.len(), 4);
    // Patient-example: three names, the official one is used; `_birthDate` is ignored.
    let example = patients
        .rows
        .iter()
        .find(|row| row["source_file"].as_deref() == Some("Patient-example.json"))
        .unwrap();
    assert_cells(
        example,
        &[
            ("id", Some("example")),
            ("family_name", Some("Chalmers")),
            ("given_names", Some("Peter James")),
            ("birth_date", Some("1974-12-25")),
            ("deceased", Some("false")),
            ("address_line", Some("534 Erewhon St")),
        ],
    );
    // Patient-newborn: no name at all, multipleBirthInteger.
    assert_cells(
        patients.row("newborn"),
        &[
            ("family_name", None),
            ("given_names", None),
            ("multiple_birth", Some("true")),
        ],
    );
}

#[test]
fn an_empty_input_folder_gives_empty_tables_with_the_full_schema() {
    let input = tempfile::tempdir().unwrap();
    let run = convert(input.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let patients = run.table("patient");
    assert!(patients.rows.is_empty());
    assert_schema(&patients, PATIENT_COLUMNS);
    assert_schema(&run.table("encounter"), ENCOUNTER_COLUMNS);
}

#[test]
fn a_single_file_can_be_the_input() {
    let file = fixtures().join("fhir-examples/Patient-f001.json");
    let run = convert(&file, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let patients = run.table("patient");
    assert_eq!(patients.rows.len(), 1);
    assert_cells(
        patients.row("f001"),
        &[
            ("source_file", Some("Patient-f001.json")),
            ("multiple_birth", Some("true")),
        ],
    );
}

#[test]
fn small_batches_and_every_codec_give_the_same_rows() {
    let input = fixtures().join("synthea");
    let reference = convert(&input, &[]);
    for codec in ["snappy", "none"] {
        let run = convert(
            &input,
            &["--batch-size", "7", "--compression", codec, "--threads", "1"],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        for table in ["patient", "encounter"] {
            assert_eq!(
                run.table(table).sorted_rows(),
                reference.table(table).sorted_rows()
            );
        }
    }
}
