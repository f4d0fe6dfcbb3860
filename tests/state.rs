//! The incremental state (`OUT/.fhir2table/_state.json`): what it records and how it is read.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::read_table;

fn convert_incremental(input: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fhir2table"))
        .args(["convert", "-q", "--incremental", "--in"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn patient(id: &str) -> String {
    format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#)
}

#[test]
fn an_input_that_failed_is_converted_again_by_the_next_run() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = input.path().join("patients.ndjson");
    // The first read sees a damaged second line (a transient error: the file on disk keeps its
    // size and modification time when it reads cleanly again).
    let good = patient("second");
    let damaged = "x".repeat(good.len());
    std::fs::write(&file, format!("{}\n{damaged}\n", patient("first"))).unwrap();
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    assert_eq!(
        convert_incremental(input.path(), out.path()).status.code(),
        Some(1)
    );
    assert_eq!(read_table(&out.path().join("patient")).rows.len(), 1);

    std::fs::write(&file, format!("{}\n{good}\n", patient("first"))).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let run = convert_incremental(input.path(), out.path());
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut ids: Vec<_> = read_table(&out.path().join("patient"))
        .column("id")
        .into_iter()
        .flatten()
        .collect();
    ids.sort();
    assert_eq!(ids, ["first", "first", "second"], "converted again, in full");

    // Read cleanly now: recorded, so the run after it leaves it alone.
    assert_eq!(
        convert_incremental(input.path(), out.path()).status.code(),
        Some(0)
    );
    assert_eq!(read_table(&out.path().join("patient")).rows.len(), 3);
}

#[test]
fn a_state_that_cannot_be_read_is_an_error_naming_it() {
    let input = tempfile::tempdir().unwrap();
    std::fs::write(input.path().join("a.ndjson"), patient("a") + "\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    assert_eq!(
        convert_incremental(input.path(), out.path()).status.code(),
        Some(0)
    );
    std::fs::write(input.path().join("b.ndjson"), patient("b") + "\n").unwrap();
    let state = out.path().join(".fhir2table/_state.json");
    let patients_before = read_table(&out.path().join("patient")).sorted_rows();

    // Damaged JSON, and a state that exists but cannot be read (a folder in its place): never
    // taken for a first run, which would convert every input again.
    for what in ["damaged", "unreadable"] {
        std::fs::remove_file(&state).unwrap();
        if what == "damaged" {
            std::fs::write(&state, "{\"inputs\": {").unwrap();
        } else {
            std::fs::create_dir(&state).unwrap();
        }
        let run = convert_incremental(input.path(), out.path());
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(3), "{what}: {stderr}");
        assert!(stderr.contains(&state.display().to_string()), "{what}: {stderr}");
        assert_eq!(
            read_table(&out.path().join("patient")).sorted_rows(),
            patients_before,
            "{what}: the tables are untouched"
        );
        let compact = Command::new(env!("CARGO_BIN_EXE_fhir2table"))
            .args(["compact", "-q"])
            .arg(out.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&compact.stderr);
        assert_eq!(compact.status.code(), Some(3), "compact, {what}: {stderr}");
        assert!(stderr.contains(&state.display().to_string()), "{what}: {stderr}");
        if what == "unreadable" {
            std::fs::remove_dir(&state).unwrap();
        } else {
            std::fs::remove_file(&state).unwrap();
        }
        std::fs::write(&state, "{}").unwrap();
    }
}

#[test]
fn the_state_has_a_format_and_a_newer_one_is_refused() {
    let input = tempfile::tempdir().unwrap();
    std::fs::write(input.path().join("a.ndjson"), patient("a") + "\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    assert_eq!(
        convert_incremental(input.path(), out.path()).status.code(),
        Some(0)
    );
    let path = out.path().join(".fhir2table/_state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(state["format"], 1);

    state["format"] = 2.into();
    std::fs::write(&path, state.to_string()).unwrap();
    let run = convert_incremental(input.path(), out.path());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&path.display().to_string()) && stderr.contains("newer fhir2table"),
        "{stderr}"
    );
}

#[test]
fn a_state_written_by_the_first_versions_is_still_understood() {
    // As the first versions wrote it: no format, content hashes by std's DefaultHasher. The
    // modification time differs, so the content hash decides: the input is unchanged.
    let input = tempfile::tempdir().unwrap();
    let content = patient("a") + "\n";
    std::fs::write(input.path().join("a.ndjson"), &content).unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir(out.path().join(".fhir2table")).unwrap();
    let legacy = format!(
        r#"{{"inputs":{{"a.ndjson":{{"size":{},"modified":1,"hash":"adf6ad84f504abd4","run":"20240101T000000Z"}}}},"runs":[],"identifiers":[]}}"#,
        content.len()
    );
    std::fs::write(out.path().join(".fhir2table/_state.json"), legacy).unwrap();
    assert_eq!(
        convert_incremental(input.path(), out.path()).status.code(),
        Some(0)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join(".fhir2table/_run.json")).unwrap()).unwrap();
    assert_eq!(report["inputs"]["unchanged"], 1, "{report}");
}

/// A view that stops on a data error holds none of the run's rows: its inputs must be neither
/// recorded as done (they would never reach the view) nor archived (they would be gone).
#[test]
fn a_stopped_view_keeps_its_inputs_unrecorded_and_unarchived() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    let views = tempfile::tempdir().unwrap();
    // The view stops at a.ndjson; b.ndjson, read cleanly after it, never reaches the view.
    let two_given = r#"{"resourceType":"Patient","id":"p","name":[{"given":["A","B"]}]}"#;
    std::fs::write(input.path().join("a.ndjson"), format!("{two_given}\n")).unwrap();
    let file = input.path().join("b.ndjson");
    let one_given = r#"{"resourceType":"Patient","id":"q","name":[{"given":["C"]}]}"#;
    std::fs::write(&file, format!("{one_given}\n")).unwrap();
    let view = views.path().join("given.json");
    std::fs::write(
        &view,
        r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"},{"name":"given","path":"name.given"}]}]}"#,
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fhir2table"))
            .args(["convert", "-q", "--incremental", "--threads", "1", "--in"])
            .arg(input.path())
            .arg("--out")
            .arg(out.path())
            .arg("--view")
            .arg(&view)
            .args(extra)
            .output()
            .unwrap()
    };
    let archive_flag = ["--archive", archive.path().to_str().unwrap()];
    assert_eq!(run(&archive_flag).status.code(), Some(1));
    assert!(file.exists(), "not archived: the view has none of its rows");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join(".fhir2table/_state.json")).unwrap())
            .unwrap();
    assert_eq!(state["inputs"].as_object().unwrap().len(), 0, "{state}");

    // The view fixed: the next run converts the input again and the view gets its rows.
    std::fs::write(
        &view,
        r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"},{"name":"given","path":"name.given.first()"}]}]}"#,
    )
    .unwrap();
    assert_eq!(run(&archive_flag).status.code(), Some(0));
    assert_eq!(read_table(&out.path().join("given")).rows.len(), 2);
    assert!(!file.exists() && archive.path().join("b.ndjson").exists());
}
