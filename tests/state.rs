//! The incremental state (`OUT/_state/state.json`): what it records and how it is read.

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
    let state = out.path().join("_state/state.json");
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
