//! Incremental runs: only new or changed inputs are converted, duplicates are resolved by
//! `compact`, and a run killed at any moment is finished by the next one with no row lost or
//! duplicated.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{fixtures, read_table};

fn convert(input: &Path, out: &Path, extra: &[&str]) -> i32 {
    Command::new(env!("CARGO_BIN_EXE_fhir2table"))
        .args(["convert", "-q", "--in"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .status()
        .unwrap()
        .code()
        .unwrap()
}

fn compact(out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_fhir2table"))
        .args(["compact", "-q"])
        .arg(out)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Writes an NDJSON file of the given lines.
fn write_ndjson(dir: &Path, name: &str, lines: &[String]) {
    std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
}

fn patient(id: &str, family: &str, last_updated: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","meta":{{"lastUpdated":"{last_updated}"}},"name":[{{"family":"{family}"}}]}}"#
    )
}

#[test]
fn only_new_and_changed_inputs_are_converted() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_ndjson(
        input.path(),
        "a.ndjson",
        &[patient("a", "A", "2024-01-01T00:00:00Z")],
    );
    write_ndjson(
        input.path(),
        "b.ndjson",
        &[patient("b", "B", "2024-01-01T00:00:00Z")],
    );
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    let report = |out: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(".fhir2table/_run.json")).unwrap()).unwrap()
    };
    assert_eq!(report(out.path())["inputs"]["read"], 2);

    // Nothing new: nothing converted, nothing appended.
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    assert_eq!(report(out.path())["inputs"]["unchanged"], 2);
    assert_eq!(read_table(&out.path().join("patient")).files, 1);

    // A new file and a changed one are converted; the touched-but-identical one is not.
    write_ndjson(
        input.path(),
        "c.ndjson",
        &[patient("c", "C", "2024-01-01T00:00:00Z")],
    );
    write_ndjson(
        input.path(),
        "b.ndjson",
        &[patient("b", "B2", "2024-02-01T00:00:00Z")],
    );
    let a = input.path().join("a.ndjson");
    let text = std::fs::read(&a).unwrap();
    std::fs::write(&a, text).unwrap();
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    assert_eq!(report(out.path())["inputs"]["read"], 2);
    assert_eq!(report(out.path())["inputs"]["unchanged"], 1);
    let patients = read_table(&out.path().join("patient"));
    assert_eq!(
        patients.rows.len(),
        4,
        "b's old row is still there until compaction"
    );

    compact(out.path());
    let patients = read_table(&out.path().join("patient"));
    assert_eq!(patients.files, 1);
    let mut families: Vec<_> = patients.column("family_name").into_iter().flatten().collect();
    families.sort();
    assert_eq!(families, ["A", "B2", "C"]);
}

#[test]
fn compaction_keeps_the_newest_by_last_updated_as_instants() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // 10:00+02:00 is 08:00Z; 09:30Z is later; 12:00+05:00 is 07:00Z, the oldest, but arrives last.
    let versions = [
        ("1.ndjson", "first", "2024-01-01T10:00:00+02:00"),
        ("2.ndjson", "newest", "2024-01-01T09:30:00Z"),
        ("3.ndjson", "oldest-arrives-last", "2024-01-01T12:00:00+05:00"),
    ];
    for (file, family, last_updated) in versions {
        write_ndjson(input.path(), file, &[patient("p", family, last_updated)]);
        assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    }
    // Two versions with the same lastUpdated: the later input wins.
    write_ndjson(
        input.path(),
        "4.ndjson",
        &[patient("q", "q-early", "2024-01-01T00:00:00Z")],
    );
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    write_ndjson(
        input.path(),
        "5.ndjson",
        &[patient("q", "q-late", "2024-01-01T00:00:00Z")],
    );
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    assert_eq!(read_table(&out.path().join("patient")).rows.len(), 5);
    compact(out.path());
    let patients = read_table(&out.path().join("patient"));
    assert_eq!(patients.rows.len(), 2);
    assert_eq!(patients.row("p")["family_name"].as_deref(), Some("newest"));
    assert_eq!(patients.row("q")["family_name"].as_deref(), Some("q-late"));
}

#[test]
fn runs_killed_at_random_moments_lose_and_duplicate_nothing() {
    let input = tempfile::tempdir().unwrap();
    for folder in ["synthea/smart", "synthea/pathling-collection", "ndjson"] {
        for entry in std::fs::read_dir(fixtures().join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let name = format!(
                "{}-{}",
                folder.replace('/', "-"),
                path.file_name().unwrap().to_string_lossy()
            );
            std::fs::copy(&path, input.path().join(name)).unwrap();
        }
    }
    let one_shot = tempfile::tempdir().unwrap();
    let flags = ["--threads", "1", "--batch-size", "50"];
    assert_eq!(convert(input.path(), one_shot.path(), &flags), 0);
    // Kill moments spread over a whole run's duration (the fastest of three warm runs, plus a
    // quarter to also hit the commit at the end).
    let fastest = (0..3)
        .map(|_| {
            let out = tempfile::tempdir().unwrap();
            let started = std::time::Instant::now();
            assert_eq!(
                convert(
                    input.path(),
                    out.path(),
                    &["--incremental", "--threads", "1", "--batch-size", "50"]
                ),
                0
            );
            started.elapsed().as_micros() as u64
        })
        .min()
        .unwrap();
    let mut run_micros = (fastest * 5 / 4).max(1);
    let mut killed = 0;

    let expected: Vec<_> = ["patient", "encounter"]
        .iter()
        .map(|table| read_table(&one_shot.path().join(table)).sorted_rows())
        .collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    // Until 24 runs were killed mid-way; a run that ended before its kill narrows the window.
    let mut iteration = 0;
    while killed < 24 && iteration < 100 {
        iteration += 1;
        // Each iteration: a run killed at a random moment, then a clean run on the same output.
        let out = tempfile::tempdir().unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = Command::new(env!("CARGO_BIN_EXE_fhir2table"))
            .args([
                "convert",
                "-q",
                "--incremental",
                "--threads",
                "1",
                "--batch-size",
                "50",
                "--in",
            ])
            .arg(input.path())
            .arg("--out")
            .arg(out.path())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(seed % run_micros));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed += 1;
        } else {
            run_micros = (run_micros * 3 / 4).max(1);
        }
        assert_eq!(
            convert(input.path(), out.path(), &["--incremental"]),
            0,
            "iteration {iteration}"
        );
        for (table, expected) in ["patient", "encounter"].iter().zip(&expected) {
            let actual = read_table(&out.path().join(table)).sorted_rows();
            assert_eq!(
                actual.len(),
                expected.len(),
                "iteration {iteration}, {table}: no row lost or duplicated"
            );
            assert_eq!(&actual, expected, "iteration {iteration}, {table}: cell for cell");
        }
        let leftovers: Vec<String> = std::fs::read_dir(out.path().join(".fhir2table"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !["_lock", "_run.json", "_state.json", "_deleted"].contains(&name.as_str()))
            .collect();
        assert!(
            leftovers.is_empty(),
            "no staging folder or journal left: {leftovers:?}"
        );
    }
    eprintln!("{killed} runs killed mid-way in {iteration} iterations");
    assert!(
        killed >= 24,
        "only {killed} of {iteration} runs were killed before they ended"
    );
}

#[test]
fn deletions_and_changed_inputs_supersede_earlier_rows() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_ndjson(
        input.path(),
        "x.ndjson",
        &[
            patient("p3", "P3", "2024-01-01T00:00:00Z"),
            patient("p4", "P4", "2024-01-01T00:00:00Z"),
        ],
    );
    write_ndjson(
        input.path(),
        "y.ndjson",
        &[patient("p1", "P1", "2024-01-01T00:00:00Z")],
    );
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);

    // The next export: x no longer has p4, and a Bulk Data deleted/ file removes p1.
    write_ndjson(
        input.path(),
        "x.ndjson",
        &[patient("p3", "P3", "2024-01-01T00:00:00Z")],
    );
    std::fs::create_dir(input.path().join("deleted")).unwrap();
    let delete = r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/p1"}}]}"#;
    write_ndjson(input.path(), "deleted/Patient.ndjson", &[delete.to_owned()]);
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    assert_eq!(read_table(&out.path().join(".fhir2table/_deleted")).rows.len(), 1);

    compact(out.path());
    let patients = read_table(&out.path().join("patient"));
    let mut ids: Vec<_> = patients.column("id").into_iter().flatten().collect();
    ids.sort();
    assert_eq!(
        ids,
        ["p3"],
        "p1 deleted, p4 gone from its re-converted input, p3 once"
    );

    // A resource created again after its deletion comes back.
    write_ndjson(
        input.path(),
        "z.ndjson",
        &[patient("p1", "P1-again", "2024-03-01T00:00:00Z")],
    );
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    compact(out.path());
    let patients = read_table(&out.path().join("patient"));
    assert_eq!(patients.row("p1")["family_name"].as_deref(), Some("P1-again"));
    assert_eq!(patients.rows.len(), 2);
}

#[test]
fn inspect_lists_the_incremental_runs() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_ndjson(
        input.path(),
        "a.ndjson",
        &[patient("a", "A", "2024-01-01T00:00:00Z")],
    );
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    assert_eq!(convert(input.path(), out.path(), &["--incremental"]), 0);
    let output = Command::new(env!("CARGO_BIN_EXE_fhir2table"))
        .args(["inspect", "--json"])
        .arg(out.path())
        .output()
        .unwrap();
    let inspection: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspection["inputs_tracked"], 1);
    let runs = inspection["incremental_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["converted"], 0, "newest first");
    assert_eq!(runs[0]["unchanged"], 1);
    assert_eq!(runs[1]["converted"], 1);
}

#[test]
fn two_runs_started_at_once_do_not_corrupt_the_output() {
    let input = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join("synthea/smart")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, input.path().join(path.file_name().unwrap())).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_fhir2table"))
            .args(["convert", "-q", "--threads", "1", "--in"])
            .arg(input.path())
            .arg("--out")
            .arg(out.path())
            .spawn()
            .unwrap()
    };
    let (mut first, mut second) = (start(), start());
    let codes = [first.wait().unwrap().code(), second.wait().unwrap().code()];
    assert!(codes.iter().all(|c| matches!(c, Some(0) | Some(4))), "{codes:?}");
    assert!(codes.contains(&Some(0)));
    let one_shot = tempfile::tempdir().unwrap();
    assert_eq!(convert(input.path(), one_shot.path(), &[]), 0);
    for table in ["patient", "encounter"] {
        assert_eq!(
            read_table(&out.path().join(table)).sorted_rows(),
            read_table(&one_shot.path().join(table)).sorted_rows()
        );
    }
}
