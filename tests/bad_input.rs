//! Bad input: every case is named in the report with its file (and line), everything else is
//! converted, and the exit code says input was lost.

mod common;

use std::path::Path;

use common::{assert_cells, convert, fhir2table, fixtures};
use serde_json::Value;

/// The (file, line, message) of every error in a report.
fn errors(report: &Value) -> Vec<(String, Option<u64>, String)> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["file"].as_str().unwrap().to_owned(),
                e["line"].as_u64(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has_error(report: &Value, file: &str, line: Option<u64>, message_part: &str) -> bool {
    errors(report)
        .iter()
        .any(|(f, l, m)| f == file && *l == line && m.contains(message_part))
}

#[test]
fn the_bad_corpus_is_reported_file_by_file_and_the_rest_converts() {
    let run = convert(&fixtures().join("bad"), &["--threads", "2"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    let expected = [
        ("truncated.json", Some(68), "invalid Bundle: EOF while parsing"),
        ("invalid-utf8.json", Some(2), "invalid UTF-8"),
        (
            "not-fhir.json",
            Some(1),
            "not a FHIR resource: the JSON object has no resourceType",
        ),
        ("empty.json", None, "empty file"),
        (
            "lines.ndjson",
            Some(2),
            "invalid Patient: EOF while parsing a string",
        ),
        ("lines.ndjson", Some(3), "invalid UTF-8"),
        ("lines.ndjson", Some(4), "not a FHIR resource"),
        (
            "lines.ndjson",
            Some(6),
            "invalid Patient: invalid type: integer `5`, expected a string",
        ),
        ("cut.ndjson.gz", Some(752), "cannot read past line 751"),
    ];
    for (file, line, message) in expected {
        assert!(
            has_error(&report, file, line, message),
            "missing {file}:{line:?} {message}: {:#?}",
            errors(&report)
        );
    }
    assert_eq!(report["error_count"], expected.len());
    assert_eq!(report["inputs"]["found"], 7);
    assert_eq!(report["inputs"]["failed"], 6);
    assert_eq!(report["inputs"]["read"], 1);
    // Errors reach the terminal too, with file and line.
    assert!(
        run.stderr.contains("lines.ndjson line 2: invalid Patient"),
        "{}",
        run.stderr
    );

    // Everything that was readable was converted: the good NDJSON lines around the bad ones, the
    // lines of the cut gzip before the cut, and the patient with invalid dates.
    let patients = run.table("patient");
    assert_eq!(patients.rows.len(), 1 + 751 + 1);
    assert_cells(patients.row("ndjson-good-1"), &[("gender", Some("female"))]);
    assert_cells(
        patients.row("bad-dates"),
        &[
            ("birth_date", None),
            ("deceased_at", None),
            ("deceased", Some("true")),
            ("gender", Some("male")),
        ],
    );
    let encounters = run.table("encounter");
    assert_cells(
        encounters.row("ndjson-good-2"),
        &[
            ("patient_id", Some("ndjson-good-1")),
            ("source_file", Some("lines.ndjson")),
        ],
    );
    let invalid_date = &report["warnings"]["invalid_date"];
    assert_eq!(invalid_date["count"], 1);
    assert_eq!(invalid_date["examples"][0]["file"], "bad-date.json");
    assert_eq!(invalid_date["examples"][0]["resource"], "Patient/bad-dates");
    assert_eq!(invalid_date["examples"][0]["column"], "birth_date");
    assert_eq!(invalid_date["examples"][0]["value"], "2019-13-45");
    assert_eq!(
        report["warnings"]["invalid_datetime"]["examples"][0]["value"],
        "yesterday"
    );
}

#[test]
fn an_invalid_date_alone_still_exits_1_with_the_row_written() {
    let run = convert(&fixtures().join("bad/bad-date.json"), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.table("patient").rows.len(), 1);
    assert_eq!(run.report()["error_count"], 0);
}

#[test]
fn an_unreadable_file_is_reported_and_the_rest_converts() {
    let input = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("fhir-examples/Patient-f001.json"),
        input.path().join("good.json"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        input.path().join("missing-target.json"),
        input.path().join("dangling.json"),
    )
    .unwrap();
    let run = convert(input.path(), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    assert!(
        has_error(&report, "dangling.json", None, "cannot read"),
        "{:#?}",
        errors(&report)
    );
    assert_eq!(run.table("patient").rows.len(), 1);
}

#[test]
fn a_50_megabyte_string_is_nulled_and_reported() {
    let input = tempfile::tempdir().unwrap();
    let huge = "x".repeat(50 << 20);
    let patient =
        format!(r#"{{"resourceType":"Patient","id":"huge","name":[{{"family":"{huge}","given":["Ok"]}}]}}"#);
    std::fs::write(input.path().join("huge.ndjson"), format!("{patient}\n")).unwrap();
    let run = convert(input.path(), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let patients = run.table("patient");
    assert_cells(
        patients.row("huge"),
        &[("family_name", None), ("given_names", Some("Ok"))],
    );
    let oversized = &run.report()["warnings"]["oversized_value"];
    assert_eq!(oversized["count"], 1);
    assert_eq!(oversized["examples"][0]["column"], "family_name");
    assert_eq!(oversized["examples"][0]["line"], 1);
    assert!(oversized["examples"][0]["value"]
        .as_str()
        .unwrap()
        .ends_with("(52428800 bytes)"));
}

/// Found by the fuzzer: an id over the cell limit became a null in the non-nullable `id`
/// column, and building the batch panicked (exit 101, or exit 3 with nothing written when the
/// row shared a batch with others).
#[test]
fn an_id_too_big_for_a_cell_loses_that_resource_only() {
    let input = tempfile::tempdir().unwrap();
    let huge_id = "1".repeat((1 << 20) + 1);
    let lines = [
        format!(r#"{{"resourceType":"Patient","id":"{huge_id}"}}"#),
        r#"{"resourceType":"Patient","id":"small"}"#.to_owned(),
        format!(r#"{{"resourceType":"Encounter","id":"{huge_id}","status":"finished"}}"#),
        r#"{"resourceType":"Encounter","id":"e1","status":"finished"}"#.to_owned(),
    ];
    std::fs::write(input.path().join("ids.ndjson"), lines.join("\n") + "\n").unwrap();
    let run = convert(input.path(), &["--view", "default"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let report = run.report();
    assert!(
        has_error(&report, "ids.ndjson", Some(1), "id is 1048577 bytes"),
        "{:?}",
        errors(&report)
    );
    assert!(
        has_error(&report, "ids.ndjson", Some(3), "id is 1048577 bytes"),
        "{:?}",
        errors(&report)
    );
    assert_eq!(run.table("patient").column("id"), vec![Some("small".to_owned())]);
    assert_eq!(run.table("encounter").column("id"), vec![Some("e1".to_owned())]);
}

#[test]
fn text_starting_with_nul_is_not_taken_for_a_staged_reference() {
    // A leading NUL marks a conditional reference staged for the resolution pass; input text
    // like it (never valid FHIR) once failed the whole run (exit 3) in a required id column and
    // nulled other cells as "unresolved references".
    let input = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"resourceType":"Encounter","id":"\u0000x","status":"finished"}"#,
        r#"{"resourceType":"Encounter","id":"e2","status":"finished","serviceProvider":{"reference":"Organization?identifier=https://github.com/synthetichealth/synthea|x"}}"#,
        r#"{"resourceType":"Patient","id":"p","name":[{"family":"\u0000Smith"}]}"#,
    ];
    std::fs::write(input.path().join("nul.ndjson"), lines.join("\n") + "\n").unwrap();
    let run = convert(input.path(), &["--view", "default"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    assert!(
        has_error(&report, "nul.ndjson", Some(1), "id contains NUL"),
        "{:?}",
        errors(&report)
    );
    assert_eq!(run.table("encounter").column("id"), vec![Some("e2".to_owned())]);
    let patient = run.table("patient");
    assert_cells(patient.row("p"), &[("family_name", None)]);
    assert_eq!(report["warnings"]["invalid_text"]["count"], 1, "{report}");
}

#[test]
fn a_missing_input_exits_2_before_any_work() {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("never-created");
    let output = fhir2table()
        .args(["convert", "--in", "/no/such/folder", "--out"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such/folder does not exist"));
    assert!(!target.exists());
}

#[test]
fn an_unwritable_output_exits_2_before_any_work() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let output = fhir2table()
        .args(["convert", "--in"])
        .arg(fixtures().join("handmade"))
        .arg("--out")
        .arg(file.join("out"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot create output folder"), "{stderr}");
}

#[test]
fn output_inside_the_input_is_not_read_back() {
    let input = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("fhir-examples/Patient-f001.json"),
        input.path().join("p.json"),
    )
    .unwrap();
    let out = input.path().join("out");
    for _ in 0..2 {
        let status = fhir2table()
            .args(["convert", "-q", "--in"])
            .arg(input.path())
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
            .status;
        assert_eq!(
            status.code(),
            Some(0),
            "the second run must not read out/_run.json as input"
        );
    }
    assert!(Path::new(&out.join("patient")).is_dir());
}

#[test]
fn a_big_ndjson_file_is_shared_by_the_workers_and_errors_keep_their_line() {
    // About 80 MB: more than two 32 MB parts, so both threads work on the one file.
    let input = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let mut line = 0u64;
    let mut bad_line = 0;
    while text.len() < 80 << 20 {
        line += 1;
        if line == 150_000 {
            text.push_str("{\"resourceType\":\"Patient\",\"id\":\"broken\"\n");
            bad_line = line;
            continue;
        }
        let padding = "x".repeat(200);
        text.push_str(&format!(
            "{{\"resourceType\":\"Patient\",\"id\":\"p{line}\",\"gender\":\"other\",\"name\":[{{\"text\":\"{padding}\"}}]}}\n"
        ));
    }
    std::fs::write(input.path().join("Patient.ndjson"), &text).unwrap();
    let run = convert(input.path(), &["--threads", "2"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    assert_eq!(report["error_count"], 1);
    assert_eq!(report["errors"][0]["line"], bad_line);
    assert_eq!(report["inputs"]["failed"], 1);
    assert_eq!(report["inputs"]["found"], 1);
    let patients = run.table("patient");
    assert_eq!(patients.rows.len() as u64, line - 1, "every good line, once");
    assert_cells(patients.row(&format!("p{line}")), &[("gender", Some("other"))]);
}

/// `{"resourceType":"Bundle","type":"collection","entry":[{"resource":` `depth` times around
/// `inner`, each level also holding `beside` as a second entry when given.
fn nested_bundles(depth: usize, inner: &str, beside: Option<&str>) -> String {
    let mut text = inner.to_owned();
    for _ in 0..depth {
        let extra = beside
            .map(|b| format!(r#",{{"resource":{b}}}"#))
            .unwrap_or_default();
        text = format!(
            r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"resource":{text}}}{extra}]}}"#
        );
    }
    text
}

#[test]
fn deeply_nested_input_is_reported_not_a_crash() {
    let input = tempfile::tempdir().unwrap();
    // About 5,000 nested Bundles (345 KB) once overflowed the stack: exit 134, no report.
    let bottom = r#"{"resourceType":"Patient","id":"at-the-bottom"}"#;
    let mut deep = nested_bundles(5_000, bottom, None);
    deep = format!(
        r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"resource":{deep}}},{{"resource":{{"resourceType":"Patient","id":"beside-the-deep"}}}}]}}"#
    );
    std::fs::write(input.path().join("deep.json"), &deep).unwrap();
    // A few levels are normal FHIR (a searchset in a batch-response) and convert.
    let shallow = nested_bundles(3, r#"{"resourceType":"Patient","id":"three-down"}"#, None);
    std::fs::write(input.path().join("shallow.json"), shallow).unwrap();
    // JSON nested deeper than serde_json's 128 levels inside one resource: a known element (the
    // patient table parses extensions) and an unknown one (only the view's tree parses it).
    let deep_extension = format!(
        r#"{{"resourceType":"Patient","id":"deep-extension","extension":{}{}}}"#,
        r#"[{"url":"x","extension":"#.repeat(3_000),
        "[]}]".repeat(3_000)
    );
    let deep_unknown = format!(
        r#"{{"resourceType":"Patient","id":"deep-unknown","x":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let lines = [
        r#"{"resourceType":"Patient","id":"first-line"}"#,
        &deep_extension,
        &deep_unknown,
        &deep_array,
    ];
    std::fs::write(input.path().join("deep.ndjson"), lines.join("\n") + "\n").unwrap();
    let views = tempfile::tempdir().unwrap();
    let view = views.path().join("patient_ids.json");
    std::fs::write(
        &view,
        r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]}]}"#,
    )
    .unwrap();
    let run = convert(input.path(), &["--view", view.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    assert!(
        has_error(&report, "deep.json", Some(1), "Bundle nested more than 32 deep"),
        "{:#?}",
        errors(&report)
    );
    assert!(has_error(
        &report,
        "deep.ndjson",
        Some(2),
        "recursion limit exceeded"
    ));
    assert!(
        has_error(&report, "deep.ndjson", Some(3), "recursion limit exceeded"),
        "{:#?}",
        errors(&report)
    );
    assert!(has_error(&report, "deep.ndjson", Some(4), "not a FHIR resource"));
    assert_eq!(report["error_count"], 4, "{:#?}", errors(&report));
    let mut patients: Vec<String> = run
        .table("patient")
        .column("id")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    patients.sort();
    // The patient table skips the unknown element unparsed; the view needs the whole tree.
    assert_eq!(
        patients,
        ["beside-the-deep", "deep-unknown", "first-line", "three-down"]
    );
    let mut in_view: Vec<String> = run
        .table("patient_ids")
        .column("id")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    in_view.sort();
    assert_eq!(in_view, ["beside-the-deep", "first-line", "three-down"]);
}

#[test]
fn a_repeat_that_never_reaches_children_stops_its_view() {
    let views = tempfile::tempdir().unwrap();
    let view = views.path().join("forever.json");
    std::fs::write(
        &view,
        r#"{"resource":"Patient","select":[{"repeat":["$this"],"column":[{"name":"id","path":"id"}]}]}"#,
    )
    .unwrap();
    let run = convert(
        &fixtures().join("fhir-examples/Patient-f001.json"),
        &["--view", view.to_str().unwrap()],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    assert_eq!(report["tables"]["forever"]["stopped"], true);
    let message = report["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("repeat went more than 128 levels deep"),
        "{message}"
    );
}

#[test]
fn input_over_the_size_limits_is_reported_and_the_rest_converts() {
    let input = tempfile::tempdir().unwrap();
    let patient = |id: &str, padding: usize| {
        format!(
            r#"{{"resourceType":"Patient","id":"{id}","name":[{{"text":"{}"}}]}}"#,
            "x".repeat(padding)
        )
    };
    // NDJSON: the long line is skipped unread, the lines after it are read.
    let lines = [
        patient("short-1", 10),
        patient("too-long", 2000),
        patient("short-2", 900),
    ];
    std::fs::write(input.path().join("lines.ndjson"), lines.join("\r\n") + "\n").unwrap();
    // JSON: plain and gzipped documents over the limit are not read at all.
    std::fs::write(input.path().join("big.json"), patient("big", 5000)).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut encoder, patient("big-gz", 50_000).as_bytes()).unwrap();
    let gzipped = encoder.finish().unwrap();
    assert!(gzipped.len() < 1024, "small on disk, large decompressed");
    std::fs::write(input.path().join("big.json.gz"), gzipped).unwrap();
    std::fs::write(input.path().join("small.json"), patient("small", 10)).unwrap();
    let quarantine = tempfile::tempdir().unwrap();
    let run = convert(
        input.path(),
        &[
            "--max-line-bytes",
            "1KiB",
            "--max-json-bytes",
            "2048",
            "--errors-to",
            quarantine.path().to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.report();
    let expected = [
        (
            "lines.ndjson",
            Some(2),
            "line longer than 1 KiB (max_line_bytes, --max-line-bytes): skipped",
        ),
        (
            "big.json",
            None,
            "the JSON document is more than 2 KiB (max_json_bytes, --max-json-bytes): not read",
        ),
        (
            "big.json.gz",
            None,
            "the JSON document decompresses to more than 2 KiB",
        ),
    ];
    for (file, line, message) in expected {
        assert!(
            has_error(&report, file, line, message),
            "missing {file}:{line:?} {message}: {:#?}",
            errors(&report)
        );
    }
    assert_eq!(report["error_count"], 3, "{:#?}", errors(&report));
    let mut ids: Vec<String> = run
        .table("patient")
        .column("id")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    ids.sort();
    assert_eq!(ids, ["short-1", "short-2", "small"]);
    // The quarantine says why; the over-long line itself was never held, so it is not copied.
    let reason =
        std::fs::read_to_string(quarantine.path().join("lines.ndjson.line-2.ndjson.error.txt")).unwrap();
    assert!(reason.contains("longer than 1 KiB"), "{reason}");
    assert!(!quarantine.path().join("lines.ndjson.line-2.ndjson").exists());
    assert!(quarantine.path().join("big.json.gz.error.txt").exists());

    // The defaults are far above real data: the same input converts whole without the flags.
    let run = convert(input.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.table("patient").rows.len(), 6);
}

#[test]
fn a_panic_loses_only_its_document_and_the_rest_of_its_file() {
    let input = tempfile::tempdir().unwrap();
    let patient = |id: &str| format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#);
    std::fs::write(
        input.path().join("a.ndjson"),
        [patient("p1"), patient("p2")].join("\n"),
    )
    .unwrap();
    // p4 panics half-way: the patient table has taken it, the view not yet.
    let b = [patient("p3"), patient("p4"), patient("p5")].join("\n");
    std::fs::write(input.path().join("b.ndjson"), b).unwrap();
    std::fs::write(
        input.path().join("c.json"),
        format!(
            r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"resource":{}}}]}}"#,
            patient("p6")
        ),
    )
    .unwrap();
    let views = tempfile::tempdir().unwrap();
    let view = views.path().join("ids.json");
    std::fs::write(
        &view,
        r#"{"resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]}]}"#,
    )
    .unwrap();
    // Whole batches held in memory, and a batch cut at every row (cut during the document).
    for batch_size in ["5000", "1"] {
        let view = view.to_str().unwrap();
        let (out, report) =
            convert_panicking_at(input.path(), "p4", &["--batch-size", batch_size, "--view", view]);
        assert!(
            has_error(&report, "b.ndjson", Some(2), "internal error (please report it)")
                && has_error(&report, "b.ndjson", Some(2), "injected panic at Patient/p4"),
            "{:#?}",
            errors(&report)
        );
        assert_eq!(report["error_count"], 1, "{:#?}", errors(&report));
        assert_eq!(report["inputs"]["failed"], 1);
        assert_eq!(report["inputs"]["read"], 2);
        for table in ["patient", "ids"] {
            let ids = sorted_ids(&out.path().join(table));
            // No half-written p4 in patient, nothing after it in b, and the next file converts.
            assert_eq!(
                ids,
                ["p1", "p2", "p3", "p6"],
                "table {table}, batch size {batch_size}"
            );
        }
    }
}

/// The resource tables read a Bundle's entries as the walker reads the Bundle, and finish the
/// rows afterwards: a panic between the two still loses only its document, whole.
#[test]
fn a_panic_in_a_bundle_read_once_loses_only_that_bundle() {
    let input = tempfile::tempdir().unwrap();
    let patient = |id: &str| format!(r#"{{"resourceType":"Patient","id":"{id}"}}"#);
    let observation = |id: &str| format!(r#"{{"resourceType":"Observation","id":"{id}","status":"final"}}"#);
    let bundle = |resources: &[String]| {
        let entries: Vec<String> = resources
            .iter()
            .map(|resource| format!(r#"{{"resource":{resource}}}"#))
            .collect();
        format!(
            r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#,
            entries.join(",")
        )
    };
    std::fs::write(
        input.path().join("a.json"),
        bundle(&[patient("p1"), observation("o1")]),
    )
    .unwrap();
    // p3 panics once the first table of its type took it; the entries after it were read too.
    let b = bundle(&[patient("p2"), observation("o2"), patient("p3"), observation("o3")]);
    std::fs::write(input.path().join("b.json"), b).unwrap();
    std::fs::write(
        input.path().join("c.json"),
        bundle(&[patient("p4"), observation("o4")]),
    )
    .unwrap();
    for batch_size in ["5000", "1"] {
        let (out, report) = convert_panicking_at(
            input.path(),
            "p3",
            &["--resources", "all", "--batch-size", batch_size],
        );
        assert!(
            has_error(&report, "b.json", Some(1), "injected panic at Patient/p3"),
            "{:#?}",
            errors(&report)
        );
        assert_eq!(report["inputs"]["failed"], 1);
        for (table, expected) in [
            ("patient", ["p1", "p4"]),
            ("resource_patient", ["p1", "p4"]),
            ("resource_observation", ["o1", "o4"]),
        ] {
            let ids = sorted_ids(&out.path().join(table));
            assert_eq!(ids, expected, "table {table}, batch size {batch_size}");
        }
    }
}

/// Converts `input` on one thread with `args`, the resource whose id is `id` panicking once the
/// first table of its type took it; the run exits 1. Returns the output folder and its report.
fn convert_panicking_at(input: &Path, id: &str, args: &[&str]) -> (tempfile::TempDir, Value) {
    let out = tempfile::tempdir().unwrap();
    let output = fhir2table()
        .args(["convert", "-q", "--threads", "1", "--in"])
        .arg(input)
        .arg("--out")
        .arg(out.path())
        .args(args)
        .env(fhir2table::table::TEST_PANIC_VARIABLE, id)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let report = std::fs::read_to_string(out.path().join(".fhir2table/_run.json")).unwrap();
    (out, serde_json::from_str(&report).unwrap())
}

/// The `id` column of the table in `dir`, sorted.
fn sorted_ids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = common::read_table(dir)
        .column("id")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    ids.sort();
    ids
}
