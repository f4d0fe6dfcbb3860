//! The lossless round trip (docs/LOSSLESS.md, "The way back"): every fixture folder through
//! `convert --resources all`, then `export`, must give back every resource the conversion made a
//! row of, JSON-equal to its input. Resources are compared as `serde_json::Value` (this crate's
//! serde_json has `arbitrary_precision`, so numbers compare by their text: `1.50` is not `1.5`),
//! grouped by resource type, as multisets (row order is not kept). Also: `--format ndjson.gz`,
//! `--resources`, a Delta output, and what `export` refuses.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::{copy_tree, fhir2table, fixtures};
use serde_json::Value;

/// Every fixture folder of valid FHIR (`bad/` is the one left out).
const FOLDERS: &[&str] = &[
    "synthea/smart",
    "synthea/pathling-collection",
    "synthea/pathling-conditional",
    "ndjson",
    "fhir-examples",
    "handmade",
    "views",
    "lossless",
];

/// A finished command: exit code, stdout, stderr.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&std::ffi::OsStr]) -> Outcome {
    let output = fhir2table().args(args).output().unwrap();
    Outcome {
        code: output.status.code().expect("exited normally"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `convert --in <a copy of input> --out out --resources all --no-builtin-tables -q extra...`;
/// the conversion must succeed (exit 0, or 1 where a fixture has input the tool reports lost).
fn convert_resources(input: &Path, out: &Path, extra: &[&str]) {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(input, copy.path());
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "convert".as_ref(),
        "-q".as_ref(),
        "--in".as_ref(),
        copy.path().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--resources".as_ref(),
        "all".as_ref(),
        "--no-builtin-tables".as_ref(),
    ];
    args.extend(extra.iter().map(|arg| std::ffi::OsStr::new(*arg)));
    let outcome = run(&args);
    assert!(
        outcome.code == 0 || outcome.code == 1,
        "convert of {} exited {}: {}",
        input.display(),
        outcome.code,
        outcome.stderr
    );
}

/// `convert --in input --out out --resources types -q` (the built-in tables too).
fn convert_selected(input: &Path, out: &Path, types: &str) -> Outcome {
    run(&[
        "convert".as_ref(),
        "-q".as_ref(),
        "--in".as_ref(),
        input.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--resources".as_ref(),
        types.as_ref(),
    ])
}

/// `export out --to dir extra...`.
fn export(out: &Path, dir: &Path, extra: &[&str]) -> Outcome {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "export".as_ref(),
        out.as_os_str(),
        "--to".as_ref(),
        dir.as_os_str(),
    ];
    args.extend(extra.iter().map(|arg| std::ffi::OsStr::new(*arg)));
    run(&args)
}

/// The text of a file, gunzipped when its name ends in `.gz`.
fn read_text(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text
    } else {
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

fn parse(text: &str, what: &dyn std::fmt::Display) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

/// The resources `convert` makes rows of, as `src/resource/dispatch.rs` finds them: every
/// document (a `.json` file, an NDJSON line) that is not a Bundle, and in a Bundle every entry's
/// resource, a Bundle in an entry walked the same way (a Bundle itself is not a row).
fn input_resources(folder: &Path) -> Vec<Value> {
    let mut resources = Vec::new();
    for_each_document(folder, |document| collect_document(document, &mut resources));
    resources
}

/// Calls `each` with every document of `folder`, files in name order.
fn for_each_document(folder: &Path, mut each: impl FnMut(Value)) {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(folder)
        .into_iter()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.into_path())
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_ascii_lowercase();
        let stem = name.strip_suffix(".gz").unwrap_or(&name);
        if stem.ends_with(".json") {
            each(parse(&read_text(&file), &file.display()));
        } else if stem.ends_with(".ndjson") || stem.ends_with(".jsonl") {
            for (number, line) in read_text(&file).lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let what = format!("{} line {}", file.display(), number + 1);
                each(parse(line, &what));
            }
        }
    }
}

/// Every document of `folder` (a `.json` file, an NDJSON line) as it is: what `export
/// --bundles` writes back, Bundles whole.
fn input_documents(folder: &Path) -> Vec<Value> {
    let mut documents = Vec::new();
    for_each_document(folder, |document| documents.push(document));
    documents
}

fn collect_document(document: Value, into: &mut Vec<Value>) {
    if document["resourceType"] != "Bundle" {
        into.push(document);
        return;
    }
    let Value::Object(mut bundle) = document else {
        unreachable!("a Bundle is an object")
    };
    let Some(Value::Array(entries)) = bundle.remove("entry") else {
        return;
    };
    for entry in entries {
        if let Value::Object(mut entry) = entry {
            if let Some(resource) = entry.remove("resource") {
                collect_document(resource, into);
            }
        }
    }
}

/// Every line of every file `export` wrote into `dir`, checked to be of the type its file is
/// named after (`Patient.ndjson`, `Patient.ndjson.gz`).
fn exported_resources(dir: &Path) -> Vec<Value> {
    let mut resources = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let resource_type = name
            .strip_suffix(".ndjson")
            .or_else(|| name.strip_suffix(".ndjson.gz"))
            .unwrap_or_else(|| panic!("export wrote {name}, not <Type>.ndjson[.gz]"));
        let text = read_text(&file);
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{name}: the last line ends with a newline"
        );
        for (number, line) in text.lines().enumerate() {
            let what = format!("{name} line {}", number + 1);
            let resource = parse(line, &what);
            assert_eq!(resource["resourceType"], resource_type, "{what}");
            resources.push(resource);
        }
    }
    resources
}

/// A value as text with object keys sorted, whatever order the map type keeps them in; numbers
/// as written.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = members
                .into_iter()
                .map(|(key, value)| format!("{}:{}", Value::String(key.clone()), canonical(value)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The JSON Pointer of the first place where `a` and `b` differ, and what each has there.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|key| {
                let here = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (x.get(key), y.get(key)) {
                    (Some(a), Some(b)) => first_difference(a, b, &here),
                    (a, b) => Some(format!("{here}: input {}, exported {}", shown(a), shown(b))),
                }
            })
        }
        (Value::Array(x), Value::Array(y)) => (0..x.len().max(y.len())).find_map(|i| {
            let here = format!("{path}/{i}");
            match (x.get(i), y.get(i)) {
                (Some(a), Some(b)) => first_difference(a, b, &here),
                (a, b) => Some(format!("{here}: input {}, exported {}", shown(a), shown(b))),
            }
        }),
        _ if canonical(a) == canonical(b) => None,
        _ => Some(format!(
            "{}: input {}, exported {}",
            if path.is_empty() { "/" } else { path },
            shown(Some(a)),
            shown(Some(b))
        )),
    }
}

fn shown(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".to_owned(),
        Some(value) => truncated(&value.to_string(), 300),
    }
}

fn truncated(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// How many resources of `input` are JSON-equal to one exported (as multisets per resource
/// type), and, when not all are, a readable account of the first difference.
fn compare(input: &[Value], exported: &[Value]) -> (usize, Option<String>) {
    let (wanted, got) = (by_type(input), by_type(exported));
    let mut equal = 0;
    let mut report = None;
    let mut types: Vec<&String> = wanted.keys().chain(got.keys()).collect();
    types.sort();
    types.dedup();
    let none = BTreeMap::new();
    for resource_type in types {
        let (wanted, got) = (
            wanted.get(resource_type).unwrap_or(&none),
            got.get(resource_type).unwrap_or(&none),
        );
        let mut missing = Vec::new();
        let mut extra = Vec::new();
        for (text, values) in wanted {
            let found = got.get(text).map_or(0, Vec::len);
            equal += values.len().min(found);
            missing.extend(values.iter().skip(found).copied());
        }
        for (text, values) in got {
            let expected = wanted.get(text).map_or(0, Vec::len);
            extra.extend(values.iter().skip(expected).copied());
        }
        if report.is_some() || (missing.is_empty() && extra.is_empty()) {
            continue;
        }
        report = Some(describe(resource_type, &missing, &extra));
    }
    (equal, report)
}

/// Values by resource type, then by canonical text.
type Groups<'v> = BTreeMap<String, BTreeMap<String, Vec<&'v Value>>>;

fn by_type(values: &[Value]) -> Groups<'_> {
    let mut groups: Groups = BTreeMap::new();
    for value in values {
        let resource_type = value["resourceType"].as_str().unwrap_or("(none)").to_owned();
        groups
            .entry(resource_type)
            .or_default()
            .entry(canonical(value))
            .or_default()
            .push(value);
    }
    groups
}

/// The first input resource without an exported twin beside its likeliest counterpart (same
/// id, else the first unmatched export), with the path of their first difference.
fn describe(resource_type: &str, missing: &[&Value], extra: &[&Value]) -> String {
    let mut text = format!(
        "{resource_type}: {} input resource(s) not exported as they were, {} exported that are not in the input\n",
        missing.len(),
        extra.len()
    );
    let Some(input) = missing.first() else {
        text += &format!("first extra: {}\n", truncated(&extra[0].to_string(), 2000));
        return text;
    };
    let twin = extra
        .iter()
        .find(|value| value["id"] == input["id"])
        .or(extra.first());
    text += &format!("input:    {}\n", truncated(&input.to_string(), 2000));
    match twin {
        Some(twin) => {
            text += &format!("exported: {}\n", truncated(&twin.to_string(), 2000));
            text += &format!(
                "first difference at {}\n",
                first_difference(input, twin, "").unwrap_or_else(|| "(none?)".to_owned())
            );
        }
        None => text += "exported: (nothing of this type left to compare with)\n",
    }
    text
}

/// Converts `folder` with `convert_extra`, exports with `export_extra`; returns the resources
/// JSON-equal, of how many, and the first difference.
fn round_trip(
    folder: &Path,
    convert_extra: &[&str],
    export_extra: &[&str],
) -> (usize, usize, Option<String>) {
    let root = tempfile::tempdir().unwrap();
    let (out, dir) = (root.path().join("out"), root.path().join("export"));
    convert_resources(folder, &out, convert_extra);
    let outcome = export(&out, &dir, export_extra);
    assert_eq!(
        outcome.code,
        0,
        "export of {}: {}",
        folder.display(),
        outcome.stderr
    );
    let input = match export_extra.contains(&"--bundles") {
        true => input_documents(folder),
        false => input_resources(folder),
    };
    let exported = exported_resources(&dir);
    let (equal, difference) = compare(&input, &exported);
    let difference = difference.or_else(|| {
        (exported.len() != input.len())
            .then(|| format!("{} exported, {} in the input", exported.len(), input.len()))
    });
    (equal, input.len(), difference)
}

#[test]
fn every_fixture_folder_round_trips_json_equal() {
    let mut per_folder = Vec::new();
    let mut failures = Vec::new();
    let (mut equal, mut total) = (0, 0);
    for folder in FOLDERS {
        let (same, of, difference) = round_trip(&fixtures().join(folder), &[], &[]);
        equal += same;
        total += of;
        per_folder.push(format!("{folder} {same}/{of}"));
        if let Some(difference) = difference {
            failures.push(format!("--- {folder}:\n{difference}"));
        }
    }
    eprintln!(
        "round trip: {equal} of {total} resources JSON-equal (per folder: {})",
        per_folder.join(", ")
    );
    assert!(total > 1000, "the fixtures hold {total} resources");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(equal, total);
}

#[test]
fn bundles_come_back_whole_from_every_fixture_folder() {
    let mut failures = Vec::new();
    let (mut equal, mut total, mut bundles) = (0, 0, 0);
    for folder in FOLDERS {
        let folder = fixtures().join(folder);
        let (same, of, difference) = round_trip(&folder, &[], &["--bundles"]);
        equal += same;
        total += of;
        bundles += input_documents(&folder)
            .iter()
            .filter(|document| document["resourceType"] == "Bundle")
            .count();
        if let Some(difference) = difference {
            failures.push(format!("--- {}:\n{difference}", folder.display()));
        }
    }
    eprintln!("round trip (--bundles): {equal} of {total} documents JSON-equal, {bundles} of them Bundles");
    assert!(bundles >= 10, "the fixtures hold {bundles} Bundles");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(equal, total);
}

#[test]
fn bundled_rows_need_the_bundle_table_and_the_bundle_table_needs_bundles() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let synthea = fixtures().join("synthea");
    let converted = convert_selected(&synthea, &out, "Patient");
    assert_eq!(converted.code, 0, "{}", converted.stderr);
    let outcome = export(&out, &root.path().join("a"), &["--bundles"]);
    assert_eq!(outcome.code, 3, "{}", outcome.stderr);
    assert!(
        outcome
            .stderr
            .contains("resource_patient has 7 rows from Bundles, and there is no Bundle table"),
        "{}",
        outcome.stderr
    );
    assert!(!root.path().join("a").exists());

    let out = root.path().join("all");
    convert_resources(&fixtures().join("synthea"), &out, &[]);
    let outcome = export(&out, &root.path().join("b"), &["--resources", "Bundle"]);
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    assert!(outcome.stderr.contains("--bundles"), "{}", outcome.stderr);
    // Without --bundles the envelopes are not written: every entry is a line of its type.
    let outcome = export(&out, &root.path().join("c"), &[]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(!root.path().join("c/Bundle.ndjson").exists());
    assert!(root.path().join("c/Patient.ndjson").exists());
}

#[test]
fn entries_of_types_not_selected_stay_in_the_bundle_and_come_back_with_it() {
    let root = tempfile::tempdir().unwrap();
    let (out, dir) = (root.path().join("out"), root.path().join("export"));
    let synthea = fixtures().join("synthea");
    let converted = convert_selected(&synthea, &out, "Bundle,Patient");
    assert_eq!(converted.code, 0, "{}", converted.stderr);
    let outcome = export(&out, &dir, &["--bundles"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let bundles: Vec<Value> = input_documents(&synthea)
        .into_iter()
        .filter(|document| document["resourceType"] == "Bundle")
        .collect();
    let exported = exported_resources(&dir);
    assert_eq!(exported.len(), bundles.len());
    let (equal, difference) = compare(&bundles, &exported);
    assert_eq!(difference, None);
    assert_eq!(equal, bundles.len());
}

#[test]
fn bundles_over_the_memory_budget_are_spilled_and_rebuilt_all_the_same() {
    let synthea = fixtures().join("synthea");
    let (equal, total, difference) = round_trip(&synthea, &[], &["--bundles", "--bundles-memory", "1"]);
    assert_eq!(difference, None);
    assert_eq!(equal, total);
    // With no memory at all, buckets are split until each holds one document (nested Bundles
    // with theirs).
    for folder in ["synthea", "lossless"] {
        let (equal, total, difference) = round_trip(
            &fixtures().join(folder),
            &[],
            &["--bundles", "--bundles-memory", "0"],
        );
        assert_eq!(difference, None, "{folder}");
        assert_eq!(equal, total, "{folder}");
    }
    // The same export, asked for its report: the entries (1.4 MB) and envelopes went over 1 MB,
    // so they were spilled and rebuilt bucket by bucket.
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    convert_resources(&synthea, &out, &[]);
    let outcome = export(
        &out,
        &root.path().join("export"),
        &["--bundles", "--bundles-memory", "1", "--report", "json"],
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let report: Value = serde_json::from_str(&outcome.stdout).unwrap();
    let bundle = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|file| file["resource_type"] == "Bundle")
        .unwrap();
    assert!(bundle["shares"].as_u64().unwrap() > 1, "{bundle}");
    assert_eq!(bundle["rows"], 9, "{bundle}");
}

#[test]
fn a_nested_bundle_refused_at_convert_stays_whole_in_the_bundle_around_it() {
    // The nested Bundle's last resourceType says Patient: its envelope is refused (the walker
    // read Bundle), so the document's envelope keeps that entry as it was, while the entry's
    // own Patient is a row with no Bundle row to go back into. --bundles leaves that row out
    // (the text around it has it) and gives the document back as it came.
    let document = r#"{"resourceType":"Bundle","type":"collection","entry":[
        {"resource":{"resourceType":"Patient","id":"a"}},
        {"resource":{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"b"}}],"resourceType":"Patient"}}
    ]}"#;
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("odd.json"), document).unwrap();
    let out = root.path().join("out");
    let converted = convert_selected(&input, &out, "all");
    assert_eq!(converted.code, 1, "one envelope is refused: {}", converted.stderr);
    let dir = root.path().join("export");
    let outcome = export(&out, &dir, &["--bundles"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let exported = exported_resources(&dir);
    let (equal, difference) = compare(&input_documents(&input), &exported);
    assert_eq!(difference, None);
    assert_eq!((equal, exported.len()), (1, 1));
}

#[test]
fn gzip_export_round_trips_and_names_files_ndjson_gz() {
    let (equal, total, difference) =
        round_trip(&fixtures().join("lossless"), &[], &["--format", "ndjson.gz"]);
    eprintln!("round trip (ndjson.gz): {equal} of {total} resources JSON-equal");
    assert_eq!(difference, None);
    assert_eq!(equal, total);
}

#[test]
fn a_delta_output_round_trips() {
    let (equal, total, difference) = round_trip(&fixtures().join("lossless"), &["--format", "delta"], &[]);
    eprintln!("round trip (Delta tables): {equal} of {total} resources JSON-equal");
    assert_eq!(difference, None);
    assert_eq!(equal, total);
}

#[test]
fn resources_selects_the_types_exported_and_report_json_counts_them() {
    let root = tempfile::tempdir().unwrap();
    let (out, dir) = (root.path().join("out"), root.path().join("export"));
    let folder = fixtures().join("lossless");
    convert_resources(&folder, &out, &[]);
    let outcome = export(&out, &dir, &["--resources", "Patient", "--report", "json", "-q"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_eq!(outcome.stderr, "", "-q prints nothing");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["Patient.ndjson"]);
    let patients: Vec<Value> = input_resources(&folder)
        .into_iter()
        .filter(|resource| resource["resourceType"] == "Patient")
        .collect();
    let (equal, difference) = compare(&patients, &exported_resources(&dir));
    assert_eq!(difference, None);
    assert_eq!(equal, patients.len());
    let report: Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(report["files"][0]["resource_type"], "Patient");
    assert_eq!(report["files"][0]["file"], "Patient.ndjson");
    assert_eq!(report["files"][0]["rows"], patients.len() as u64);
    assert_eq!(
        report["files"][0]["bytes"],
        std::fs::metadata(dir.join("Patient.ndjson")).unwrap().len()
    );

    // A summary line per type without -q.
    let again = root.path().join("again");
    let outcome = export(&out, &again, &["--resources", "Patient,Observation"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(
        outcome
            .stderr
            .contains(&format!("Patient: {} rows", patients.len()))
            && outcome.stderr.contains("Observation: "),
        "{}",
        outcome.stderr
    );
}

#[test]
fn export_refuses_a_target_that_is_not_empty_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dir = root.path().join("export");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let outcome = export(&out, &dir, &[]);
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    assert!(outcome.stderr.contains("not empty"), "{}", outcome.stderr);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"], "nothing added");

    // A file where the folder should be, and the output folder itself.
    let outcome = export(&out, &dir.join("notes.txt"), &[]);
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    std::fs::write(out.join("x"), "").unwrap();
    assert_eq!(export(&out, &out, &[]).code, 2);
}

#[test]
fn export_refuses_a_target_inside_the_output_and_a_folder_that_is_no_output() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let converted = common::convert_into(&fixtures().join("handmade"), &out, &["-q", "--resources", "all"]);
    assert_eq!(converted.0, 0, "{}", converted.1);
    let before = listing(&out);

    // Into OUT, also through `..` of a folder that exists, and through a symbolic link.
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&out, &link).unwrap();
    for inside in [
        out.join("exported"),
        out.join("patient").join("..").join("exported"),
        link.join("exported"),
    ] {
        let outcome = export(&out, &inside, &[]);
        assert_eq!(outcome.code, 2, "{}", outcome.stderr);
        assert!(
            outcome.stderr.contains("inside the output folder"),
            "{}",
            outcome.stderr
        );
    }
    // A `..` after a folder that does not exist cannot be placed until it is made: refused.
    let outcome = export(&out, &out.join("new").join("..").join("exported"), &[]);
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    assert!(outcome.stderr.contains("cannot tell where"), "{}", outcome.stderr);
    assert_eq!(listing(&out), before, "OUT unchanged");

    // A folder no run wrote: refused before a lock or tool folder is made in it.
    let plain = root.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("notes.txt"), "mine").unwrap();
    let target = root.path().join("x");
    for outcome in [
        export(&plain, &target, &[]),
        run(&["compact".as_ref(), plain.as_os_str()]),
    ] {
        assert_eq!(outcome.code, 2, "{}", outcome.stderr);
        assert!(
            outcome.stderr.contains("is not an output folder"),
            "{}",
            outcome.stderr
        );
    }
    assert_eq!(
        listing(&plain),
        ["notes.txt"],
        "nothing made in a folder that is no output"
    );
    assert!(!target.exists());
}

/// Every path under `folder`, relative to it, sorted.
fn listing(folder: &Path) -> Vec<String> {
    let mut paths: Vec<String> = walkdir::WalkDir::new(folder)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            entry.path().strip_prefix(folder).unwrap().display().to_string()
        })
        .collect();
    paths.sort();
    paths
}

#[test]
fn export_of_an_output_without_resource_tables_is_a_usage_error() {
    // The built-in tables only: nothing to export, and no folder made.
    let root = tempfile::tempdir().unwrap();
    let (out, dir) = (root.path().join("out"), root.path().join("export"));
    let (code, stderr) = common::convert_into(&fixtures().join("handmade"), &out, &["-q"]);
    assert_eq!(code, 0, "{stderr}");
    let outcome = export(&out, &dir, &[]);
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    assert!(outcome.stderr.contains("no resource table"), "{}", outcome.stderr);
    assert!(!dir.exists(), "the target is not made");

    let outcome = export(&out, &dir, &["--resources", "patient"]);
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("not an R4 resource type"),
        "{}",
        outcome.stderr
    );
    assert_eq!(export(&root.path().join("missing"), &dir, &[]).code, 2);
    assert!(!dir.exists());
}

#[test]
fn the_comparison_finds_the_first_difference() {
    // The test's own judge: a dropped decimal zero, a lost null and a reordered key.
    let input: Vec<Value> = [
        r#"{"resourceType":"Observation","id":"a","valueQuantity":{"value":1.50}}"#,
        r#"{"resourceType":"Patient","id":"p","name":[{"given":["A",null]}]}"#,
    ]
    .iter()
    .map(|text| serde_json::from_str(text).unwrap())
    .collect();
    let same: Vec<Value> = [
        r#"{"id":"p","name":[{"given":["A",null]}],"resourceType":"Patient"}"#,
        r#"{"resourceType":"Observation","valueQuantity":{"value":1.50},"id":"a"}"#,
    ]
    .iter()
    .map(|text| serde_json::from_str(text).unwrap())
    .collect();
    assert_eq!(compare(&input, &same), (2, None));
    let changed: Vec<Value> = [
        r#"{"resourceType":"Observation","id":"a","valueQuantity":{"value":1.5}}"#,
        r#"{"resourceType":"Patient","id":"p","name":[{"given":["A"]}]}"#,
    ]
    .iter()
    .map(|text| serde_json::from_str(text).unwrap())
    .collect();
    let (equal, difference) = compare(&input, &changed);
    assert_eq!(equal, 0);
    let difference = difference.unwrap();
    assert!(
        difference.contains("first difference at /valueQuantity/value: input 1.50, exported 1.5"),
        "{difference}"
    );
    assert_eq!(
        first_difference(&input[1], &changed[1], "").as_deref(),
        Some("/name/0/given/1: input null, exported (absent)")
    );
}

#[test]
fn batches_of_a_few_rows_round_trip() {
    // Many batches per table and worker: the builders start over after every one.
    for folder in ["synthea/smart", "lossless"] {
        let (equal, total, difference) = round_trip(
            &fixtures().join(folder),
            &["--batch-size", "7", "--threads", "2"],
            &[],
        );
        eprintln!("round trip ({folder}, batches of 7 rows): {equal} of {total} resources JSON-equal");
        assert_eq!(difference, None, "{folder}");
        assert_eq!(equal, total, "{folder}");
    }
}

#[test]
fn real_data_fits_the_typed_columns() {
    // A round trip would also pass if every member went to `__unmapped` (a broken definition
    // tree): real exports must not need it, while the hand-made odd shapes must.
    let unmapped = |folder: &str| {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        convert_resources(&fixtures().join(folder), &out, &[]);
        let report: Value = parse(&read_text(&out.join(".fhir2table/_run.json")), &"the run report");
        report.get("unmapped").cloned().unwrap_or(Value::Null)
    };
    for folder in FOLDERS
        .iter()
        .filter(|folder| !["lossless", "handmade"].contains(folder))
    {
        let found = unmapped(folder);
        assert!(
            found.is_null() || found.as_object().is_some_and(|types| types.is_empty()),
            "{folder}: {found}"
        );
    }
    let odd = unmapped("lossless");
    assert!(odd["Patient"]["count"].as_u64().unwrap() > 0, "{odd}");
}

/// Every file of `folder`, by name, with its bytes.
fn file_bytes(folder: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    listing(folder)
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(folder.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

#[test]
fn exports_on_one_thread_and_on_several_write_the_same_bytes() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    convert_resources(&fixtures().join("synthea/smart"), &out, &[]);
    for extra in [&[][..], &["--bundles"][..]] {
        let mut exports = Vec::new();
        for threads in ["1", "4"] {
            let dir = root.path().join(format!("export-{threads}-{}", extra.len()));
            let mut args = vec!["--threads", threads];
            args.extend_from_slice(extra);
            let outcome = export(&out, &dir, &args);
            assert_eq!(outcome.code, 0, "export {args:?}: {}", outcome.stderr);
            exports.push(file_bytes(&dir));
        }
        // Without --bundles a file per type; with it, these Bundles' entries go back into
        // Bundle.ndjson and no other file is left.
        let files = if extra.is_empty() { 5 } else { 1 };
        assert!(exports[0].len() >= files, "{extra:?}: {:?}", exports[0].keys());
        assert!(
            exports[0] == exports[1],
            "{extra:?}: --threads 1 and 4 wrote other files"
        );
    }
    let refused = export(&out, &root.path().join("zero"), &["--threads", "0"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
}
