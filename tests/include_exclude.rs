//! `--include` / `--exclude`: leaving files and folders out of a run, as fd and ripgrep users
//! expect, with every left-out path counted in the report; excluded inputs are never recorded,
//! archived or deleted.

mod common;

use std::path::Path;

use common::{convert, fhir2table, fixtures};

/// What a Bulk Data client (the SMART bulk-data-client, for one) writes next to the files it
/// downloaded: one JSON event per line, none of them a FHIR resource.
const CLIENT_LOG: &str = concat!(
    r#"{"eventId":"kickoff","exportId":1,"timestamp":1717207200000,"eventDetail":{"exportUrl":"https://fhir.example.org/$export","errorCode":null}}"#,
    "\n",
    r#"{"eventId":"status_complete","exportId":1,"timestamp":1717207260000,"eventDetail":{"transactionTime":"2024-06-01T02:00:00Z"}}"#,
    "\n",
    r#"{"eventId":"download_complete","exportId":1,"timestamp":1717207270000,"eventDetail":{"fileUrl":"https://fhir.example.org/files/Patient.ndjson","resourceCount":9}}"#,
    "\n",
    r#"{"eventId":"export_complete","exportId":1,"timestamp":1717207280000,"eventDetail":{"files":7,"resources":302,"duration":80000}}"#,
    "\n",
);

/// The files of the fixture Bulk Data export (fixtures/ndjson).
const EXPORT_FILES: [&str; 7] = [
    "AllergyIntolerance.ndjson",
    "Condition.ndjson.gz",
    "Encounter.ndjson",
    "ImagingStudy.ndjson",
    "Organization.ndjson",
    "Patient.ndjson",
    "Practitioner.ndjson",
];

/// A landing folder holding a real Bulk Data export in `folder`, with the client's `log.ndjson`
/// beside its files.
fn landing_with_export(folder: &str) -> tempfile::TempDir {
    let landing = tempfile::tempdir().unwrap();
    let export = landing.path().join(folder);
    std::fs::create_dir_all(&export).unwrap();
    for name in EXPORT_FILES {
        std::fs::copy(fixtures().join("ndjson").join(name), export.join(name)).unwrap();
    }
    std::fs::write(export.join("log.ndjson"), CLIENT_LOG).unwrap();
    landing
}

fn strings(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn a_bulk_clients_log_fails_every_run_until_it_is_excluded() {
    let landing = landing_with_export("2024-06-01");

    let unfiltered = convert(landing.path(), &[]);
    assert_eq!(unfiltered.code, 1, "{}", unfiltered.stderr);
    let report = unfiltered.report();
    assert!(
        report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["file"] == "2024-06-01/log.ndjson"),
        "{report:#}"
    );
    assert_eq!(report["error_count"], 4, "one error per log line");
    assert_eq!(report["inputs"]["excluded"], 0);

    // A name without a slash matches at any depth: the log inside the dated folder.
    let filtered = convert(landing.path(), &["--exclude", "log.ndjson"]);
    assert_eq!(filtered.code, 0, "{}", filtered.stderr);
    let report = filtered.report();
    assert_eq!(report["error_count"], 0);
    assert_eq!(report["inputs"]["found"], 7);
    assert_eq!(report["inputs"]["read"], 7);
    assert_eq!(report["inputs"]["excluded"], 1);
    assert_eq!(strings(&report["excluded_paths"]), ["2024-06-01/log.ndjson"]);
    assert!(
        filtered
            .stderr
            .contains("7 files read, 0 failed, 0 skipped, 1 excluded;"),
        "the summary counts what was left out: {}",
        filtered.stderr
    );
    // The rest of the export is converted exactly as without the log.
    assert_eq!(filtered.table("patient").rows.len(), 9);
    assert_eq!(filtered.table("encounter").rows.len(), 217);
    assert_eq!(
        filtered.table("encounter").sorted_rows(),
        unfiltered.table("encounter").sorted_rows()
    );
}

#[test]
fn include_globs_read_only_the_files_they_match() {
    let landing = landing_with_export("export");
    let run = convert(
        landing.path(),
        &["--include", "Patient.*", "--include", "Encounter.*"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report();
    assert_eq!(report["inputs"]["read"], 2);
    assert_eq!(
        strings(&report["excluded_paths"]),
        [
            "export/AllergyIntolerance.ndjson",
            "export/Condition.ndjson.gz",
            "export/ImagingStudy.ndjson",
            "export/Organization.ndjson",
            "export/Practitioner.ndjson",
            "export/log.ndjson",
        ]
    );
    assert_eq!(report["inputs"]["excluded"], 6);
    let resources: Vec<&String> = report["resources"].as_object().unwrap().keys().collect();
    assert_eq!(resources, ["Encounter", "Patient"]);
    assert_eq!(run.table("patient").rows.len(), 9);

    // An include glob naming a folder takes everything in it; exclude still wins.
    std::fs::create_dir(landing.path().join("other")).unwrap();
    std::fs::copy(
        fixtures().join("fhir-examples/Patient-f001.json"),
        landing.path().join("other/Patient-f001.json"),
    )
    .unwrap();
    let run = convert(
        landing.path(),
        &["--include", "export", "--exclude", "log.ndjson"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report();
    assert_eq!(report["inputs"]["read"], 7);
    assert_eq!(
        strings(&report["excluded_paths"]),
        ["export/log.ndjson", "other/Patient-f001.json"]
    );
}

#[test]
fn an_excluded_folder_is_not_entered() {
    let landing = landing_with_export("export");
    std::fs::remove_file(landing.path().join("export/log.ndjson")).unwrap();
    // Last month's export, moved aside with a broken file in it.
    let old = landing.path().join("old/2024-05");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(fixtures().join("bad/truncated.json"), old.join("Bundle.json")).unwrap();
    std::fs::copy(
        fixtures().join("ndjson/Patient.ndjson"),
        old.join("Patient.ndjson"),
    )
    .unwrap();
    let unfiltered = convert(landing.path(), &[]);
    assert_eq!(unfiltered.code, 1);

    for glob in ["old", "old/", "/old"] {
        let run = convert(landing.path(), &["--exclude", glob]);
        assert_eq!(run.code, 0, "--exclude {glob}: {}", run.stderr);
        let report = run.report();
        // The folder is listed once, as a folder: its files were never looked at.
        assert_eq!(strings(&report["excluded_paths"]), ["old/"], "--exclude {glob}");
        assert_eq!(report["inputs"]["excluded"], 1);
        assert_eq!(report["inputs"]["read"], 7);
        assert_eq!(run.table("patient").rows.len(), 9, "old/ Patients are not read");
    }
    // A glob with a slash is matched from --in: a deeper folder of the same name is not it.
    let run = convert(landing.path(), &["--exclude", "/2024-05"]);
    assert_eq!(run.code, 1, "old/2024-05 is not the top-level 2024-05");
    let run = convert(landing.path(), &["--exclude", "old/2024-*/"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(strings(&run.report()["excluded_paths"]), ["old/2024-05/"]);
}

#[test]
fn config_keys_select_inputs_and_flags_replace_them() {
    let landing = landing_with_export("export");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fhir2table.toml");
    std::fs::write(&config, "exclude = [\"log.ndjson\"]\ninclude = [\"*.ndjson\"]\n").unwrap();
    let run = convert(landing.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.report();
    assert_eq!(
        strings(&report["excluded_paths"]),
        ["export/Condition.ndjson.gz", "export/log.ndjson"],
        "the config's include and exclude both apply"
    );

    // --exclude replaces the config's exclude list (like --view replaces `views`); its include
    // list stays.
    let run = convert(
        landing.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--exclude",
            "Organization.ndjson",
        ],
    );
    assert_eq!(run.code, 1, "log.ndjson is read again");
    assert_eq!(
        strings(&run.report()["excluded_paths"]),
        ["export/Condition.ndjson.gz", "export/Organization.ndjson"]
    );
}

#[test]
fn a_bad_glob_is_a_usage_error_and_nothing_is_written() {
    let landing = landing_with_export("export");
    let out = tempfile::tempdir().unwrap();
    let output = fhir2table()
        .args(["convert", "--in"])
        .arg(landing.path())
        .arg("--out")
        .arg(out.path())
        .args(["--exclude", "log.ndjson", "--exclude", "[abc"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("exclude glob '[abc' is not valid"), "{stderr}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

fn state_inputs(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join(".fhir2table/_state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    state["inputs"].as_object().unwrap().keys().cloned().collect()
}

fn convert_into(input: &Path, out: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let output = fhir2table()
        .args(["convert", "-q", "--in"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(out.join(".fhir2table/_run.json")).unwrap();
    (
        output.status.code().unwrap(),
        serde_json::from_str(&report).unwrap(),
    )
}

#[test]
fn incremental_runs_never_record_excluded_inputs() {
    let landing = landing_with_export("export");
    let out = tempfile::tempdir().unwrap();
    let flags = ["--incremental", "--exclude", "log.ndjson"];

    let (code, report) = convert_into(landing.path(), out.path(), &flags);
    assert_eq!(code, 0);
    assert_eq!(report["inputs"]["read"], 7);
    let recorded = state_inputs(out.path());
    assert_eq!(recorded.len(), 7);
    assert!(!recorded.iter().any(|path| path.ends_with("log.ndjson")));

    // The next night: nothing new; the log is still left out, and still said to be.
    let (code, report) = convert_into(landing.path(), out.path(), &flags);
    assert_eq!(code, 0);
    assert_eq!(report["inputs"]["unchanged"], 7);
    assert_eq!(report["inputs"]["read"], 0);
    assert_eq!(report["inputs"]["excluded"], 1);

    // Without the flag the log was never converted, so it is the one new input.
    let (code, report) = convert_into(landing.path(), out.path(), &["--incremental"]);
    assert_eq!(code, 1);
    assert_eq!(report["inputs"]["unchanged"], 7);
    assert_eq!(report["inputs"]["failed"], 1);
    assert_eq!(report["errors"][0]["file"], "export/log.ndjson");
}

#[test]
fn excluded_inputs_are_never_archived_or_deleted() {
    let landing = landing_with_export("export");
    let archive = tempfile::tempdir().unwrap();
    let run = convert(
        landing.path(),
        &[
            "--archive",
            archive.path().to_str().unwrap(),
            "--exclude",
            "log.ndjson",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report()["inputs"]["archived_or_deleted"], 7);
    for name in EXPORT_FILES {
        assert!(
            archive.path().join("export").join(name).exists(),
            "{name} archived"
        );
        assert!(!landing.path().join("export").join(name).exists(), "{name} moved");
    }
    assert_eq!(
        std::fs::read_to_string(landing.path().join("export/log.ndjson")).unwrap(),
        CLIENT_LOG,
        "the excluded log stays where it was, untouched"
    );
    assert!(!archive.path().join("export/log.ndjson").exists());

    // With --delete-processed, an excluded file or folder keeps everything in it too.
    let landing = landing_with_export("export");
    let held = landing.path().join("held");
    std::fs::create_dir(&held).unwrap();
    std::fs::copy(
        fixtures().join("ndjson/Patient.ndjson"),
        held.join("Patient.ndjson"),
    )
    .unwrap();
    let run = convert(
        landing.path(),
        &[
            "--delete-processed",
            "--exclude",
            "log.ndjson",
            "--exclude",
            "held/",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report()["inputs"]["archived_or_deleted"], 7);
    let left: Vec<_> = std::fs::read_dir(landing.path().join("export"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, ["log.ndjson"]);
    assert!(held.join("Patient.ndjson").exists());
}
