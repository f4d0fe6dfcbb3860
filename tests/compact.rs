//! `compact` on real Synthea output: every rewrite keeps the Parquet metadata compaction relies
//! on, deletions reach every table, and views are deduplicated (or said not to be).

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fixtures, read_table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The metadata key naming the resource type of a table's rows.
const RESOURCE_TYPE_KEY: &str = "fhir2table.resource_type";

fn fhir2table(args: &[&str], paths: &[&Path]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fhir2table"));
    command.args(args).args(paths);
    command.output().unwrap()
}

fn convert(input: &Path, out: &Path, extra: &[&str]) -> i32 {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fhir2table"));
    command
        .args(["convert", "-q", "--in"])
        .arg(input)
        .arg("--out")
        .arg(out);
    let output = command.args(extra).output().unwrap();
    output.status.code().unwrap()
}

fn compact(out: &Path) -> String {
    let output = fhir2table(&["compact"], &[out]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    stderr
}

/// Copies every file of the Synthea fixtures into one flat folder.
fn synthea_input() -> tempfile::TempDir {
    let input = tempfile::tempdir().unwrap();
    for folder in ["smart", "pathling-collection", "pathling-conditional"] {
        for entry in std::fs::read_dir(fixtures().join("synthea").join(folder)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, input.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    input
}

/// The resource type each table's rows come from: the built-in tables and the shipped views.
fn expected_resource_types() -> BTreeMap<String, String> {
    let mut types = BTreeMap::from([
        ("patient".to_owned(), "Patient".to_owned()),
        ("encounter".to_owned(), "Encounter".to_owned()),
    ]);
    let views = Path::new(env!("CARGO_MANIFEST_DIR")).join("views");
    for entry in std::fs::read_dir(views).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let view: serde_json::Value = serde_json::from_str(&text).unwrap();
        types.insert(
            view["name"].as_str().unwrap().to_owned(),
            view["resource"].as_str().unwrap().to_owned(),
        );
    }
    types
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

/// Asserts that every part file of every table in `out` records its rows' resource type, and
/// that every table expected is there.
fn assert_every_file_has_its_resource_type(out: &Path, moment: &str) {
    let expected = expected_resource_types();
    for (table, resource_type) in &expected {
        let files = parquet_files(&out.join(table));
        assert!(!files.is_empty(), "{moment}: table {table} has no file");
        for file in files {
            let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap()).unwrap();
            assert_eq!(
                builder.schema().metadata().get(RESOURCE_TYPE_KEY),
                Some(resource_type),
                "{moment}: {} lost its metadata",
                file.display()
            );
        }
    }
}

#[test]
fn every_part_file_keeps_its_metadata_and_deletions_reach_rewritten_tables() {
    let input = synthea_input();
    let out = tempfile::tempdir().unwrap();
    let flags = ["--incremental", "--view", "default"];
    assert_eq!(convert(input.path(), out.path(), &flags), 0);
    assert_every_file_has_its_resource_type(out.path(), "after convert");
    // This encounter's service provider is a conditional reference (`Organization?identifier=`),
    // so the encounter table is rewritten by the pass that resolves them.
    let encounter = "0760add8-0681-174a-93e5-eb289b31bb42";
    read_table(&out.path().join("encounter")).row(encounter);

    // The next Bulk Data export deletes it.
    std::fs::create_dir(input.path().join("deleted")).unwrap();
    let delete = format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"request":{{"method":"DELETE","url":"Encounter/{encounter}"}}}}]}}"#
    );
    std::fs::write(input.path().join("deleted/Encounter.ndjson"), delete + "\n").unwrap();
    // and brings new resources with conditional references, appended to the rewritten tables.
    std::fs::write(input.path().join("later.ndjson"), later_resources()).unwrap();
    assert_eq!(convert(input.path(), out.path(), &flags), 0);
    assert_every_file_has_its_resource_type(out.path(), "after append");
    for table in [
        "encounter",
        "claim",
        "explanation_of_benefit",
        "medication_request",
    ] {
        assert_eq!(
            read_table(&out.path().join(table)).files,
            2,
            "{table} appended to"
        );
    }

    compact(out.path());
    assert_every_file_has_its_resource_type(out.path(), "after compact");
    let encounters = read_table(&out.path().join("encounter"));
    assert_eq!(encounters.files, 1);
    assert!(
        encounters
            .column("id")
            .iter()
            .all(|id| id.as_deref() != Some(encounter)),
        "the deleted encounter is gone"
    );
    assert_eq!(encounters.rows.len(), expected_encounters() - 1 + 1);

    // Compacted files keep it too: a second compaction still applies the tombstone.
    compact(out.path());
    assert_every_file_has_its_resource_type(out.path(), "after a second compact");
    assert_eq!(
        read_table(&out.path().join("encounter")).rows.len(),
        expected_encounters()
    );
}

/// Encounters in the Synthea fixtures.
fn expected_encounters() -> usize {
    let input = synthea_input();
    let one_shot = tempfile::tempdir().unwrap();
    assert_eq!(convert(input.path(), one_shot.path(), &[]), 0);
    read_table(&one_shot.path().join("encounter")).rows.len()
}

/// NDJSON of one resource of each type whose table has conditional references on Synthea data,
/// taken from a fixture Bundle under new ids.
fn later_resources() -> String {
    let bundle = fixtures()
        .join("synthea/pathling-conditional/Dino214_Parisian75_40d82b80-b682-cd8b-da6d-396809878641.json");
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    let mut lines = String::new();
    for wanted in ["Encounter", "Claim", "ExplanationOfBenefit", "MedicationRequest"] {
        let mut resource = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| &entry["resource"])
            .find(|resource| resource["resourceType"] == wanted)
            .unwrap()
            .clone();
        let id = format!("{}-later", resource["id"].as_str().unwrap());
        resource["id"] = id.into();
        lines += &(resource.to_string() + "\n");
    }
    lines
}

/// A folder holding one small Synthea Bundle.
fn one_patient_input() -> tempfile::TempDir {
    let input = tempfile::tempdir().unwrap();
    let name = "Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json";
    std::fs::copy(
        fixtures().join("synthea/smart").join(name),
        input.path().join(name),
    )
    .unwrap();
    input
}

#[test]
fn views_are_deduplicated_by_their_resource_key_or_named_as_not_deduplicated() {
    let input = one_patient_input();
    let views = tempfile::tempdir().unwrap();
    let no_id = r#"{"resourceType":"ViewDefinition","name":"codes_without_id","resource":"Observation",
        "select":[{"column":[{"name":"code","path":"code.coding.code.first()"}]}]}"#;
    std::fs::write(views.path().join("codes.json"), no_id).unwrap();
    let user_view = views.path().join("codes.json");
    let flags = ["--view", "default", "--view", user_view.to_str().unwrap()];
    let one_shot = tempfile::tempdir().unwrap();
    assert_eq!(convert(input.path(), one_shot.path(), &flags), 0);

    // The same input appended twice: every row twice.
    let out = tempfile::tempdir().unwrap();
    let appending = [&flags[..], &["--mode", "append"]].concat();
    for _ in 0..2 {
        assert_eq!(convert(input.path(), out.path(), &appending), 0);
    }
    let components = read_table(&out.path().join("observation_component"));
    let expected = read_table(&one_shot.path().join("observation_component")).sorted_rows();
    assert!(expected.len() >= 6, "the fixture has blood pressures");
    assert_eq!(components.rows.len(), 2 * expected.len());

    let output = fhir2table(&["compact", "--report", "json"], &[out.path()]);
    assert_eq!(output.status.code(), Some(0));
    for table in ["observation_component", "observation", "encounter"] {
        assert_eq!(
            read_table(&out.path().join(table)).sorted_rows(),
            read_table(&one_shot.path().join(table)).sorted_rows(),
            "{table}: each resource's rows once"
        );
    }
    // A view without an id column is left as it is, and compact says so.
    assert_eq!(read_table(&out.path().join("codes_without_id")).files, 2);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let outcome = |name: &str| {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap_or_else(|| panic!("{name} is in the report"))
            .clone()
    };
    let no_id = outcome("codes_without_id");
    assert_eq!(no_id["deduplicated"], false);
    assert!(
        no_id["note"].as_str().unwrap().contains("no id column"),
        "{no_id}"
    );
    let components = outcome("observation_component");
    assert_eq!(components["deduplicated"], true);
    assert_eq!(components["deletions_applied"], true);
    assert_eq!(components["rows_after"], expected.len());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("codes_without_id: 2 file(s) left as they are; not deduplicated"),
        "{stderr}"
    );
}

/// Rewrites a Parquet file without its schema metadata, as versions before the fix did.
fn strip_metadata(path: &Path) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let schema = std::sync::Arc::new(
        builder
            .schema()
            .as_ref()
            .clone()
            .with_metadata(std::collections::HashMap::new()),
    );
    let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), schema.clone(), None).unwrap();
    for batch in batches {
        writer.write(&batch.with_schema(schema.clone()).unwrap()).unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn compact_applies_deletions_to_built_in_tables_whose_files_lost_their_metadata() {
    let input = one_patient_input();
    let out = tempfile::tempdir().unwrap();
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    for file in parquet_files(&out.path().join("encounter")) {
        strip_metadata(&file);
    }
    let encounter = "afcee359-ffbb-4ae0-b54f-547eb3c58e68";
    std::fs::create_dir(input.path().join("deleted")).unwrap();
    let delete = format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"request":{{"method":"DELETE","url":"Encounter/{encounter}"}}}}]}}"#
    );
    std::fs::write(input.path().join("deleted/Encounter.ndjson"), delete + "\n").unwrap();
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    let before = read_table(&out.path().join("encounter")).rows.len();

    compact(out.path());
    let encounters = read_table(&out.path().join("encounter"));
    assert_eq!(encounters.rows.len(), before - 1);
    assert!(encounters
        .column("id")
        .iter()
        .all(|id| id.as_deref() != Some(encounter)));
    assert_eq!(
        encounters
            .schema
            .metadata()
            .get(RESOURCE_TYPE_KEY)
            .map(String::as_str),
        Some("Encounter"),
        "the compacted file records it again"
    );
}
