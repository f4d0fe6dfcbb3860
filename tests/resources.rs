//! Lossless resource tables in `convert` (`--resources`, docs/LOSSLESS.md): the flags and config
//! keys, what is refused before anything is written, which tables a run leaves, the unmapped
//! members in the report, and the tables with views, append, shards, Delta and incremental runs.
//! Rows are read back from the Parquet files and turned into JSON again by the crate's exporter,
//! so every check is on the resources themselves.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use common::{convert, convert_into, report_of, table_folders};
use fhir2table::fhir::definitions::TreeOptions;
use fhir2table::table::lossless::{resource_schema, table_options, Exporter};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};

const PATIENT: &str = r#"{"resourceType":"Patient","id":"p1","active":true,"name":[{"family":"Chalmers","given":["Peter","James"],"nickname":"Jim"}],"birthDate":"1974-12","foo":1}"#;
const PATIENT_2: &str = r#"{"resourceType":"Patient","id":"p2","gender":"female","_gender":{"extension":[{"url":"http://example.org/x","valueString":"y"}]}}"#;
const OBSERVATION: &str = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}],"text":"weight"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2020-01-02T03:04:05+01:00","valueQuantity":{"value":72.50,"unit":"kg"}}"#;
const CONDITION: &str =
    r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"code":{"text":"flu"}}"#;

/// A folder of NDJSON files, one per (name, lines).
fn input(files: &[(&str, &[&str])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, lines) in files {
        std::fs::write(dir.path().join(name), lines.join("\n") + "\n").unwrap();
    }
    dir
}

/// Patients and an Observation, with unknown members on the first Patient.
fn patients_and_observation() -> tempfile::TempDir {
    input(&[
        ("Patient.ndjson", &[PATIENT, PATIENT_2]),
        ("Observation.ndjson", &[OBSERVATION]),
    ])
}

/// The Parquet files of a table: every one in a plain folder, the live ones of a Delta table.
fn files_of(table: &Path) -> Vec<PathBuf> {
    fhir2table::sink::table_files(table).unwrap()
}

/// A resource table's rows as the resources they hold (JSON, exported by the crate), sorted.
fn resources_in(table: &Path) -> Vec<Value> {
    let mut resources = Vec::new();
    for path in files_of(table) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        let (resource_type, options) = table_options(builder.schema()).expect("a resource table");
        let exporter = Exporter::new(&resource_type, options).unwrap();
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            let rows = exporter.rows(&batch).unwrap();
            for row in 0..batch.num_rows() {
                let mut text = Vec::new();
                rows.write(row, Vec::new(), &mut text).unwrap();
                let mut resource: Value = serde_json::from_slice(&text).unwrap();
                // Where the row sat among Bundles, when it was in one.
                if let Some((key, entry)) = rows.container(row) {
                    resource["__bundle"] = serde_json::json!([key, entry]);
                }
                if let Some((key, entry_rows)) = rows.envelope(row) {
                    resource["__key"] = serde_json::json!([key, entry_rows]);
                }
                resources.push(resource);
            }
        }
    }
    resources.sort_by_key(|resource| resource.to_string());
    resources
}

fn parsed(lines: &[&str]) -> Vec<Value> {
    let mut resources: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    resources.sort_by_key(|resource| resource.to_string());
    resources
}

/// The number of rows a table's files hold.
fn row_count(table: &Path) -> usize {
    files_of(table)
        .iter()
        .map(|path| {
            let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
            builder.metadata().file_metadata().num_rows() as usize
        })
        .sum()
}

fn assert_code(code: i32, expected: i32, stderr: &str) {
    assert_eq!(code, expected, "{stderr}");
}

/// Nothing was written: no table folder and no report.
fn assert_nothing_written(out: &Path) {
    assert!(table_folders(out).is_empty(), "{:?}", table_folders(out));
    assert!(!out.join(".fhir2table/_run.json").exists());
}

#[test]
fn resource_tables_hold_every_resource_whole_with_the_schema_of_the_definitions() {
    let input = patients_and_observation();
    let run = convert(input.path(), &["--resources", "Patient,Observation"]);
    assert_code(run.code, 0, &run.stderr);
    assert_eq!(
        table_folders(run.out.path()),
        ["encounter", "patient", "resource_observation", "resource_patient"]
    );
    let patients = run.out.path().join("resource_patient");
    assert_eq!(resources_in(&patients), parsed(&[PATIENT, PATIENT_2]));
    let observations = run.out.path().join("resource_observation");
    assert_eq!(resources_in(&observations), parsed(&[OBSERVATION]));
    for (table, resource_type) in [(&patients, "Patient"), (&observations, "Observation")] {
        let file = File::open(&files_of(table)[0]).unwrap();
        let found = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .schema()
            .clone();
        let wanted = resource_schema(resource_type, TreeOptions::default()).unwrap();
        assert!(
            fhir2table::sink::same_columns(found.fields(), wanted.fields()),
            "{resource_type}: the schema read back is the definitions'"
        );
    }
}

#[test]
fn the_flag_list_replaces_the_config_list_and_the_depth_reaches_the_schema() {
    let input = input(&[("Patient.ndjson", &[PATIENT]), ("Condition.ndjson", &[CONDITION])]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fhir2table.toml");
    std::fs::write(
        &config,
        "resources = [\"Condition\"]\nresources_typed_depth = 1\nbuiltin_tables = false\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let from_config = convert(input.path(), &["--config", config]);
    assert_code(from_config.code, 0, &from_config.stderr);
    assert_eq!(table_folders(from_config.out.path()), ["resource_condition"]);
    let file = File::open(&files_of(&from_config.out.path().join("resource_condition"))[0]).unwrap();
    let schema = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .schema()
        .clone();
    assert_eq!(
        table_options(&schema),
        Some(("Condition".to_owned(), TreeOptions { typed_depth: 1 }))
    );
    // Repeated and comma-separated both add to the flag's list, which replaces the file's.
    let from_flags = convert(
        input.path(),
        &[
            "--config",
            config,
            "--resources",
            "Patient",
            "--resources",
            "Encounter,Condition",
        ],
    );
    assert_code(from_flags.code, 0, &from_flags.stderr);
    assert_eq!(
        table_folders(from_flags.out.path()),
        ["resource_condition", "resource_encounter", "resource_patient"]
    );
}

#[test]
fn unknown_types_and_a_depth_of_zero_are_usage_errors_that_write_nothing() {
    let input = patients_and_observation();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--resources", "Patient,observation"],
            "did you mean Observation?",
        ),
        (
            &["--resources", "MedicationRequests"],
            "\"MedicationRequests\" is not an R4 resource type",
        ),
        (
            &["--resources", "all", "--resources-typed-depth", "0"],
            "resources_typed_depth",
        ),
        (&["--resources", "Patient,"], "empty resource type"),
    ];
    for (flags, message) in cases {
        let run = convert(input.path(), flags);
        assert_code(run.code, 2, &run.stderr);
        assert!(run.stderr.contains(message), "{flags:?}: {}", run.stderr);
        assert_nothing_written(run.out.path());
    }
}

#[test]
fn a_view_named_like_a_selected_resource_table_is_a_usage_error() {
    let input = patients_and_observation();
    let views = tempfile::tempdir().unwrap();
    let view = views.path().join("clash.json");
    std::fs::write(
        &view,
        r#"{"resourceType": "ViewDefinition", "name": "Resource_Observation", "resource": "Observation",
            "select": [{"column": [{"name": "id", "path": "id"}]}]}"#,
    )
    .unwrap();
    let view = view.to_str().unwrap();
    for selection in ["Observation", "all"] {
        let run = convert(input.path(), &["--view", view, "--resources", selection]);
        assert_code(run.code, 2, &run.stderr);
        assert!(
            run.stderr.contains("Resource_Observation") && run.stderr.contains("--resources"),
            "{}",
            run.stderr
        );
        assert_nothing_written(run.out.path());
    }
    // Without its type selected the name is the view's to take.
    let run = convert(input.path(), &["--view", view, "--resources", "Patient"]);
    assert_code(run.code, 0, &run.stderr);
    assert!(table_folders(run.out.path()).contains(&"Resource_Observation".to_owned()));
}

#[test]
fn a_view_of_the_same_type_does_not_prune_what_the_resource_table_reads() {
    let input = patients_and_observation();
    let views = tempfile::tempdir().unwrap();
    let view = views.path().join("obs_ids.json");
    // Reads only `id`: alone, its tree would hold nothing else.
    std::fs::write(
        &view,
        r#"{"resourceType": "ViewDefinition", "name": "obs_ids", "resource": "Observation",
            "select": [{"column": [{"name": "id", "path": "id"}]}]}"#,
    )
    .unwrap();
    let run = convert(
        input.path(),
        &[
            "--view",
            view.to_str().unwrap(),
            "--resources",
            "Observation",
            "--threads",
            "1",
        ],
    );
    assert_code(run.code, 0, &run.stderr);
    assert_eq!(
        resources_in(&run.out.path().join("resource_observation")),
        parsed(&[OBSERVATION])
    );
    assert_eq!(row_count(&run.out.path().join("obs_ids")), 1);
}

#[test]
fn the_report_counts_unmapped_members_per_type_without_a_warning() {
    let input = patients_and_observation();
    let run = convert(input.path(), &["--resources", "Patient,Observation"]);
    assert_code(run.code, 0, &run.stderr);
    let report = run.report();
    assert_eq!(
        report["unmapped"],
        json!({"Patient": {"count": 2, "paths": ["/foo", "/name/0/nickname"]}})
    );
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["warnings"], json!({}));
    assert!(
        run.stderr.contains("kept in __unmapped: Patient 2"),
        "the summary line says so: {}",
        run.stderr
    );
    // And the rows keep them, so the resource comes back whole.
    let patients = resources_in(&run.out.path().join("resource_patient"));
    let first = patients.iter().find(|patient| patient["id"] == "p1").unwrap();
    assert_eq!(first["name"][0]["nickname"], "Jim");
    assert_eq!(first["foo"], 1);
    // Without resource tables nothing is unmapped, and the report has no such entry.
    let run = convert(input.path(), &[]);
    assert!(run.report().get("unmapped").is_none());
}

#[test]
fn all_writes_the_types_that_have_rows_and_named_types_always() {
    let input = patients_and_observation();
    let run = convert(input.path(), &["--resources", "all", "--no-builtin-tables"]);
    assert_code(run.code, 0, &run.stderr);
    assert_eq!(
        table_folders(run.out.path()),
        ["resource_observation", "resource_patient"]
    );
    let tables = run.report()["tables"].clone();
    let names: Vec<&String> = tables.as_object().unwrap().keys().collect();
    assert_eq!(names, ["resource_observation", "resource_patient"]);

    // A type named is written empty; `all` beside it selects every other type.
    let run = convert(
        input.path(),
        &["--resources", "all,Condition", "--no-builtin-tables"],
    );
    assert_code(run.code, 0, &run.stderr);
    assert_eq!(
        table_folders(run.out.path()),
        ["resource_condition", "resource_observation", "resource_patient"]
    );
    assert_eq!(row_count(&run.out.path().join("resource_condition")), 0);
    assert_eq!(run.report()["tables"]["resource_condition"]["rows"], 0);
}

#[test]
fn an_overwrite_with_all_empties_the_tables_of_types_the_input_no_longer_has() {
    let first = input(&[("Patient.ndjson", &[PATIENT]), ("Condition.ndjson", &[CONDITION])]);
    let second = input(&[("Patient.ndjson", &[PATIENT_2])]);
    let out = tempfile::tempdir().unwrap();
    let flags = ["--resources", "all", "--no-builtin-tables"];
    let (code, stderr) = convert_into(first.path(), out.path(), &flags);
    assert_code(code, 0, &stderr);
    assert_eq!(row_count(&out.path().join("resource_condition")), 1);
    let (code, stderr) = convert_into(second.path(), out.path(), &flags);
    assert_code(code, 0, &stderr);
    assert_eq!(
        table_folders(out.path()),
        ["resource_condition", "resource_patient"]
    );
    assert_eq!(
        resources_in(&out.path().join("resource_patient")),
        parsed(&[PATIENT_2])
    );
    assert_eq!(
        row_count(&out.path().join("resource_condition")),
        0,
        "no stale rows after an overwrite"
    );
    assert_eq!(report_of(out.path())["tables"]["resource_condition"]["rows"], 0);

    // Appending leaves the table alone: no empty file, no entry in the report.
    let (code, stderr) = convert_into(first.path(), out.path(), &flags);
    assert_code(code, 0, &stderr);
    let appending = [&flags[..], &["--mode", "append"]].concat();
    let (code, stderr) = convert_into(second.path(), out.path(), &appending);
    assert_code(code, 0, &stderr);
    assert_eq!(files_of(&out.path().join("resource_condition")).len(), 1);
    assert_eq!(row_count(&out.path().join("resource_condition")), 1);
    assert_eq!(row_count(&out.path().join("resource_patient")), 2);
    assert!(report_of(out.path())["tables"]
        .get("resource_condition")
        .is_none());
}

#[test]
fn an_append_with_another_typed_depth_is_refused() {
    let input = patients_and_observation();
    let out = tempfile::tempdir().unwrap();
    let (code, stderr) = convert_into(input.path(), out.path(), &["--resources", "Patient"]);
    assert_code(code, 0, &stderr);
    let report = out.path().join(".fhir2table/_run.json");
    let before = std::fs::read(&report).unwrap();
    let deeper = [
        "--resources",
        "Patient",
        "--mode",
        "append",
        "--resources-typed-depth",
        "3",
    ];
    let (code, stderr) = convert_into(input.path(), out.path(), &deeper);
    assert_code(code, 2, &stderr);
    assert!(
        stderr.contains("cannot append to") && stderr.contains("resource_patient"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&report).unwrap(), before, "nothing written");
    assert_eq!(files_of(&out.path().join("resource_patient")).len(), 1);
    // The same depth appends.
    let (code, stderr) = convert_into(
        input.path(),
        out.path(),
        &["--resources", "Patient", "--mode", "append"],
    );
    assert_code(code, 0, &stderr);
    assert_eq!(row_count(&out.path().join("resource_patient")), 4);
}

#[test]
fn incremental_runs_append_the_resources_of_new_inputs() {
    let input = patients_and_observation();
    let out = tempfile::tempdir().unwrap();
    let flags = ["--resources", "all", "--incremental"];
    let (code, stderr) = convert_into(input.path(), out.path(), &flags);
    assert_code(code, 0, &stderr);
    std::fs::write(input.path().join("Condition.ndjson"), format!("{CONDITION}\n")).unwrap();
    let (code, stderr) = convert_into(input.path(), out.path(), &flags);
    assert_code(code, 0, &stderr);
    assert_eq!(
        resources_in(&out.path().join("resource_condition")),
        parsed(&[CONDITION])
    );
    assert_eq!(
        resources_in(&out.path().join("resource_patient")),
        parsed(&[PATIENT, PATIENT_2]),
        "unchanged inputs are not converted again"
    );
}

#[test]
fn delta_tables_hold_the_resources() {
    let input = patients_and_observation();
    let out = tempfile::tempdir().unwrap();
    let flags = ["--resources", "Patient,Condition", "--format", "delta"];
    let (code, stderr) = convert_into(input.path(), out.path(), &flags);
    assert_code(code, 0, &stderr);
    let patients = out.path().join("resource_patient");
    assert!(patients.join("_delta_log").is_dir());
    assert_eq!(resources_in(&patients), parsed(&[PATIENT, PATIENT_2]));
    assert_eq!(row_count(&out.path().join("resource_condition")), 0);
    // An overwrite of a Delta table keeps its schema: another depth is refused.
    let deeper = [&flags[..], &["--resources-typed-depth", "3"]].concat();
    let (code, stderr) = convert_into(input.path(), out.path(), &deeper);
    assert_code(code, 2, &stderr);
    assert!(stderr.contains("cannot overwrite the Delta table"), "{stderr}");
}

/// Every resource table of an output as its resources, by table.
fn resource_tables(out: &Path) -> BTreeMap<String, Vec<Value>> {
    table_folders(out)
        .into_iter()
        .filter(|name| name.starts_with("resource_"))
        .map(|name| (name.clone(), resources_in(&out.join(&name))))
        .collect()
}

#[test]
fn sharded_runs_leave_what_one_run_leaves_and_replace_stale_tables() {
    let stale = input(&[("Condition.ndjson", &[CONDITION])]);
    // A Bundle with a Bundle inside: its rows' keys must not depend on the shard.
    let bundle = r#"{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:c1","resource":{"resourceType":"Condition","id":"c1"}},{"resource":{"resourceType":"Bundle","type":"searchset","total":1,"entry":[{"search":{"mode":"match"},"resource":{"resourceType":"Condition","id":"c2"}}]}}]}"#;
    let input = input(&[
        ("a.ndjson", &[PATIENT, OBSERVATION]),
        ("b.ndjson", &[PATIENT_2]),
        ("c.ndjson", &[bundle, bundle]),
    ]);
    let flags = ["--resources", "all", "--no-builtin-tables"];
    let single = tempfile::tempdir().unwrap();
    let sharded = tempfile::tempdir().unwrap();
    for out in [&single, &sharded] {
        let (code, stderr) = convert_into(stale.path(), out.path(), &flags);
        assert_code(code, 0, &stderr);
    }
    let (code, stderr) = convert_into(input.path(), single.path(), &flags);
    assert_code(code, 0, &stderr);
    for shard in ["0/3", "1/3", "2/3"] {
        let output = common::fhir2table()
            .arg("convert")
            .arg("--in")
            .arg(input.path())
            .arg("--out")
            .arg(sharded.path())
            .args(flags)
            .args(["--shard", shard])
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("JOB_COMPLETIONS")
            .output()
            .unwrap();
        assert_code(
            output.status.code().unwrap(),
            0,
            &String::from_utf8_lossy(&output.stderr),
        );
    }
    let expected = resource_tables(single.path());
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        [
            "resource_bundle",
            "resource_condition",
            "resource_observation",
            "resource_patient"
        ]
    );
    let conditions: Vec<&str> = expected["resource_condition"]
        .iter()
        .map(|row| row["id"].as_str().unwrap())
        .collect();
    assert_eq!(conditions.len(), 4, "the stale rows are gone: {conditions:?}");
    assert!(conditions.iter().all(|id| ["c1", "c2"].contains(id)));
    assert_eq!(expected["resource_bundle"].len(), 4);
    assert_eq!(resource_tables(sharded.path()), expected);
    assert_eq!(
        common::report_essentials(&report_of(sharded.path())),
        common::report_essentials(&report_of(single.path()))
    );
}
