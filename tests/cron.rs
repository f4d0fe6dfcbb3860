//! Unattended runs: quarantine of failed input, archiving or deleting what was converted.

mod common;

use std::path::Path;

use common::{convert, fhir2table, fixtures};

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn failed_inputs_and_bad_lines_are_quarantined_with_reasons() {
    let quarantine = tempfile::tempdir().unwrap();
    let run = convert(
        &fixtures().join("bad"),
        &["--errors-to", quarantine.path().to_str().unwrap()],
    );
    assert_eq!(run.code, 1);
    let read =
        |name: &str| std::fs::read(quarantine.path().join(name)).unwrap_or_else(|_| panic!("no {name}"));
    // Whole files that failed: a byte-for-byte copy and the reasons.
    assert_eq!(
        read("truncated.json"),
        std::fs::read(fixtures().join("bad/truncated.json")).unwrap()
    );
    let reason = String::from_utf8(read("truncated.json.error.txt")).unwrap();
    assert_eq!(reason, "line 68: invalid Bundle: EOF while parsing a string\n");
    for name in [
        "invalid-utf8.json",
        "not-fhir.json",
        "empty.json",
        "cut.ndjson.gz",
    ] {
        read(name);
        read(&format!("{name}.error.txt"));
    }
    // Bad NDJSON lines one by one, with file and line; the good lines are not copied.
    let original = std::fs::read(fixtures().join("bad/lines.ndjson")).unwrap();
    let line_6 = original.split(|&b| b == b'\n').nth(5).unwrap();
    assert_eq!(read("lines.ndjson.line-6.ndjson"), [line_6, b"\n"].concat());
    let reason = String::from_utf8(read("lines.ndjson.line-6.ndjson.error.txt")).unwrap();
    assert!(
        reason.starts_with("lines.ndjson: line 6\n") && reason.contains("expected a string"),
        "{reason}"
    );
    assert_eq!(
        read("lines.ndjson.line-3.ndjson"),
        b"{\"resourceType\":\"Patient\",\"id\":\"ndjson-bad-utf8\",\"name\":[{\"family\":\"\xff\"}]}\n"
    );
    for line in [2, 4] {
        read(&format!("lines.ndjson.line-{line}.ndjson"));
    }
    assert!(!quarantine.path().join("lines.ndjson").exists());
    assert!(!quarantine.path().join("lines.ndjson.line-1.ndjson").exists());
    assert!(
        !quarantine.path().join("bad-date.json").exists(),
        "a file with only warnings did not fail"
    );
}

#[test]
fn converted_inputs_are_archived_after_the_commit_and_failed_ones_stay() {
    let input = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    std::fs::create_dir(input.path().join("sub")).unwrap();
    copy_dir(&fixtures().join("handmade"), &input.path().join("sub"));
    std::fs::copy(
        fixtures().join("bad/not-fhir.json"),
        input.path().join("not-fhir.json"),
    )
    .unwrap();

    // A run refused before any work (--mode error on a non-empty table) touches no input.
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir(out.path().join("patient")).unwrap();
    std::fs::write(out.path().join("patient/old.parquet"), "x").unwrap();
    let refused = fhir2table()
        .args(["convert", "--mode", "error", "--in"])
        .arg(input.path())
        .arg("--out")
        .arg(out.path())
        .arg("--archive")
        .arg(archive.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(input.path().join("sub/a-visit.json").exists());

    let run = convert(input.path(), &["--archive", archive.path().to_str().unwrap()]);
    assert_eq!(run.code, 1, "not-fhir.json fails");
    assert_eq!(run.table("patient").rows.len(), 2);
    assert_eq!(run.report()["inputs"]["archived_or_deleted"], 3);
    for name in [
        "sub/a-visit.json",
        "sub/z-practitionerInformation.json",
        "sub/z-hospitalInformation.ndjson",
    ] {
        assert!(
            archive.path().join(name).exists(),
            "{name} archived with its relative path"
        );
        assert!(!input.path().join(name).exists(), "{name} moved");
    }
    assert!(
        input.path().join("not-fhir.json").exists(),
        "a failed input stays"
    );
    assert!(input.path().join("sub/README.md").exists(), "skipped files stay");

    // The same file name arriving again (next night's export) never overwrites the archived one:
    // it stays in --in and the run says so.
    std::fs::write(
        input.path().join("sub/a-visit.json"),
        r#"{"resourceType":"Patient","id":"new"}"#,
    )
    .unwrap();
    let archived_before = std::fs::read(archive.path().join("sub/a-visit.json")).unwrap();
    let run = convert(input.path(), &["--archive", archive.path().to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("already archived"), "{}", run.stderr);
    assert!(input.path().join("sub/a-visit.json").exists());
    assert_eq!(
        std::fs::read(archive.path().join("sub/a-visit.json")).unwrap(),
        archived_before
    );

    // --delete-processed deletes instead.
    let again = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("handmade"), again.path());
    let run = convert(again.path(), &["--delete-processed"]);
    assert_eq!(run.code, 0);
    assert!(!again.path().join("a-visit.json").exists());
    assert!(again.path().join("README.md").exists());
}
