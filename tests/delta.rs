//! `--format delta` read back by two Delta readers that share no code with fhir2table or with
//! each other's Parquet reading: the `deltalake` Python package (delta-rs) and DuckDB 1.4.4's
//! delta extension (delta-kernel, loaded from the `duckdb-ext-delta` wheel, as DuckDB cannot
//! download extensions here). Every table of the bundled fixtures must hold, cell for cell, what
//! `--format parquet` writes (read by pyarrow), at the newest version after an append and, by
//! time travel, at the version before it. Both readers run in a venv of their own kept in this
//! crate's target folder between runs. Without a venv or PyPI the test is skipped with a note,
//! and fails when `CI` is set.

mod common;

use std::path::Path;

use common::{convert_into, copy_tree, fixtures};

/// The readers, pinned: the versions the Delta decision (docs/DELTA.md) was checked with.
const READERS: [&str; 4] = [
    "deltalake==1.6.6",
    "pyarrow==26.0.1",
    "duckdb==1.4.4",
    "duckdb-ext-delta==1.4.4.20260205",
];

/// Compares every table of a Parquet output (or only the one named by a fourth argument) with the
/// Delta table of the same name, read by both readers at the newest version (`latest`) or the
/// one before it (`previous`); prints one line
/// per table and exits non-zero at the first difference, naming the reader and the first row
/// that differs.
const COMPARE: &str = r#"
import datetime, decimal, glob, json, os, sys
import duckdb, pyarrow.dataset
from deltalake import DeltaTable

parquet_out, delta_out, which = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
only = sys.argv[4] if len(sys.argv) > 4 else None

def canon(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return "ts:" + value.isoformat()
    if isinstance(value, datetime.date):
        return "date:" + value.isoformat()
    if isinstance(value, float):
        return "float:" + repr(value)
    if isinstance(value, decimal.Decimal):
        return "decimal:" + str(value)
    if isinstance(value, list):
        return [canon(v) for v in value]
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    return value

def rows(table):
    names = table.column_names
    return names, sorted(json.dumps([canon(r[n]) for n in names]) for r in table.to_pylist())

site = glob.glob(os.path.join(sys.prefix, "lib/python*/site-packages"))[0]
extension = glob.glob(os.path.join(site, "**/delta.duckdb_extension"), recursive=True)[0]
con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
con.execute(f"LOAD '{extension}'")
con.execute("SET TimeZone = 'UTC'")

tables = sorted(t for t in os.listdir(parquet_out) if not t.startswith((".", "_")))
found = sorted(t for t in os.listdir(delta_out) if not t.startswith((".", "_")))
if which == "latest" and only is None and tables != found:
    sys.exit(f"tables differ: parquet {tables}, delta {found}")
for name in (t for t in tables if only in (None, t)):
    expected = rows(pyarrow.dataset.dataset(os.path.join(parquet_out, name), format="parquet").to_table())
    path = os.path.join(delta_out, name)
    latest = DeltaTable(path).version()
    version = latest if which == "latest" else max(latest - 1, 0)
    url = "file://" + path
    if version == latest:
        scanned = con.execute(f"SELECT * FROM delta_scan('{url}')").fetch_arrow_table()
    else:
        con.execute(f"ATTACH '{url}' AS v{version}_{name} (TYPE delta, VERSION {version})")
        scanned = con.execute(f"SELECT * FROM v{version}_{name}").fetch_arrow_table()
    readers = {
        "deltalake": rows(DeltaTable(path, version=version).to_pyarrow_table()),
        "duckdb": rows(scanned),
    }
    for reader, (names, got) in readers.items():
        if names != expected[0]:
            sys.exit(f"{name} v{version} {reader}: columns {names}, parquet has {expected[0]}")
        if got != expected[1]:
            first = next((g, e) for g, e in zip(got + [None] * len(expected[1]), expected[1] + [None] * len(got)) if g != e)
            sys.exit(f"{name} v{version} {reader}: {len(got)} rows, parquet {len(expected[1])}; first difference {first}")
    print(name, version, len(expected[1]))
# Closed before exit: the delta extension aborts the interpreter's exit otherwise (after ATTACH).
con.close()
# Straight out, without the interpreter's teardown, where deltalake's native threads can abort it.
sys.stdout.flush()
os._exit(0)
"#;

/// The commit history of a Delta table as delta-rs reads it: one line per version, oldest
/// first, with the operation and fhir2table's commit-info fields.
const HISTORY: &str = r#"
import json, sys
from deltalake import DeltaTable
for entry in sorted(DeltaTable(sys.argv[1]).history(), key=lambda h: h["version"]):
    print(json.dumps({k: entry.get(k) for k in ("version", "operation", "command", "runId", "inputs")}))
"#;

/// The Python of the readers' venv, or `None` when it cannot be made (the test is then skipped,
/// and fails in CI: see `common::skip_or_fail`).
fn readers() -> Option<std::path::PathBuf> {
    common::venv_python("delta-readers-venv", &READERS)
        .map_err(|why| common::skip_or_fail(&format!("{READERS:?}"), &why))
        .ok()
}

/// Runs `fhir2table compact OUT`, which must succeed.
fn compact(out: &Path) {
    let compacted = common::fhir2table()
        .arg("compact")
        .arg(out)
        .arg("-q")
        .output()
        .unwrap();
    assert!(
        compacted.status.success(),
        "{}",
        String::from_utf8_lossy(&compacted.stderr)
    );
}

/// The table lines `COMPARE` printed: (table, version, rows).
fn compared(stdout: &str) -> Vec<(String, u64, u64)> {
    stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (
                fields[0].to_owned(),
                fields[1].parse().unwrap(),
                fields[2].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn delta_tables_read_back_by_delta_rs_and_duckdb_equal_the_parquet_output_and_travel_back() {
    let Some(python) = readers() else {
        return;
    };
    let first = fixtures().join("synthea");
    let second = fixtures().join("ndjson");
    let work = tempfile::tempdir().unwrap();
    let (parquet_before, parquet_after, delta) = (
        work.path().join("parquet-before"),
        work.path().join("parquet-after"),
        work.path().join("delta"),
    );
    let views = ["--view", "default", "-q"];
    for (out, input, extra) in [
        (&parquet_before, &first, &[][..]),
        (&parquet_after, &first, &[]),
        (&parquet_after, &second, &["--mode", "append"]),
        (&delta, &first, &["--format", "delta"]),
    ] {
        let (code, stderr) = convert_into(input, out, &[&views[..], extra].concat());
        assert!(code <= 1, "{stderr}");
    }

    // Version 0 of every table: the first run's rows.
    let stdout = common::python(&python, COMPARE, &[&parquet_before, &delta, Path::new("latest")]);
    let tables = compared(&stdout);
    assert!(tables.len() > 10, "{stdout}");
    assert!(tables.iter().all(|(_, version, _)| *version == 0), "{stdout}");
    assert!(
        tables
            .iter()
            .any(|(name, _, rows)| name == "patient" && *rows > 0),
        "{stdout}"
    );

    // An append is a new version holding both runs' rows; the version before it, the first's.
    let (code, stderr) = convert_into(
        &second,
        &delta,
        &[&views[..], &["--format", "delta", "--mode", "append"]].concat(),
    );
    assert!(code <= 1, "{stderr}");
    let stdout = common::python(&python, COMPARE, &[&parquet_after, &delta, Path::new("latest")]);
    let appended: Vec<_> = compared(&stdout)
        .into_iter()
        .filter(|(_, version, _)| *version == 1)
        .collect();
    assert!(appended.iter().any(|(name, _, _)| name == "patient"), "{stdout}");
    let stdout = common::python(
        &python,
        COMPARE,
        &[&parquet_before, &delta, Path::new("previous")],
    );
    assert_eq!(compared(&stdout).len(), tables.len(), "{stdout}");

    // Each version's commit info names its run and inputs.
    let history = common::python(&python, HISTORY, &[&delta.join("patient")]);
    let versions: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(versions.len(), 2, "{history}");
    assert_eq!(versions[0]["operation"], "CREATE TABLE", "{history}");
    assert_eq!(versions[1]["operation"], "WRITE", "{history}");
    for version in &versions {
        assert_eq!(version["command"], "convert", "{history}");
        assert!(
            version["runId"].as_str().is_some_and(|id| id.ends_with('Z')),
            "{history}"
        );
    }
    let inputs = |version: &serde_json::Value| version["inputs"].as_array().cloned().unwrap_or_default();
    assert!(
        inputs(&versions[1]).contains(&"Patient.ndjson".into()),
        "{history}"
    );
    assert!(
        !inputs(&versions[0]).contains(&"Patient.ndjson".into()),
        "{history}"
    );

    // compact: one transaction per table whose rows equal the compacted Parquet output; the
    // version before it still holds the appended rows.
    for out in [&parquet_after, &delta] {
        compact(out);
    }
    let stdout = common::python(&python, COMPARE, &[&parquet_after, &delta, Path::new("latest")]);
    assert_eq!(compared(&stdout).len(), tables.len(), "{stdout}");
    let appended_out = work.path().join("parquet-appended");
    for (input, mode) in [(&first, "overwrite"), (&second, "append")] {
        let (code, stderr) = convert_into(input, &appended_out, &[&views[..], &["--mode", mode]].concat());
        assert!(code <= 1, "{stderr}");
    }
    let previous = [&appended_out, &delta, Path::new("previous"), Path::new("patient")];
    let stdout = common::python(&python, COMPARE, &previous);
    assert_eq!(compared(&stdout), [("patient".to_owned(), 1, 16)], "{stdout}");
    let history = common::python(&python, HISTORY, &[&delta.join("patient")]);
    let last: serde_json::Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["version"], &last["operation"]),
        (&2.into(), &"COMPACT".into()),
        "{history}"
    );
    assert_eq!(last["command"], "compact", "{history}");
}

/// An output keeps one format: Parquet files added beside a Delta table would be invisible to
/// Delta readers, and a Delta log over a Parquet folder would hide its files.
#[test]
fn an_output_of_one_format_refuses_the_other_before_writing() {
    let input = fixtures().join("ndjson");
    for (first, second, message) in [
        ("delta", "parquet", "is a Delta table: use --format delta"),
        (
            "parquet",
            "delta",
            "is a folder of Parquet files: use --format parquet",
        ),
    ] {
        let out = tempfile::tempdir().unwrap();
        let (code, stderr) = convert_into(&input, out.path(), &["-q", "--format", first]);
        assert_eq!(code, 0, "{stderr}");
        let before = common::table_folders(out.path());
        let (code, stderr) = convert_into(&input, out.path(), &["-q", "--format", second]);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
        assert_eq!(common::table_folders(out.path()), before);
        let delta_log = out.path().join("patient/_delta_log");
        assert_eq!(delta_log.exists(), first == "delta");
    }
}

/// `inspect` counts a Delta table's rows in its newest version: the files an overwrite removed
/// stay in the folder for time travel but are not rows.
#[test]
fn inspect_counts_the_newest_version_of_a_delta_table() {
    let input = fixtures().join("ndjson");
    let out = tempfile::tempdir().unwrap();
    for mode in ["overwrite", "overwrite"] {
        let (code, stderr) = convert_into(&input, out.path(), &["-q", "--format", "delta", "--mode", mode]);
        assert_eq!(code, 0, "{stderr}");
    }
    let parquet_files = std::fs::read_dir(out.path().join("patient"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .count();
    assert_eq!(parquet_files, 2, "both versions' files are kept");
    let output = common::fhir2table()
        .args(["inspect", "--json"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let inspection: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let patient = &inspection["tables"]["patient"];
    let expected_rows = std::fs::read_to_string(input.join("Patient.ndjson"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(patient["rows"], expected_rows as u64, "{patient}");
    assert_eq!(patient["files"].as_array().unwrap().len(), 1, "{patient}");
}

#[test]
fn four_concurrent_shards_are_one_delta_commit_per_table_equal_to_a_single_run() {
    let Some(python) = readers() else {
        return;
    };
    let input = fixtures();
    let work = tempfile::tempdir().unwrap();
    let (parquet, delta) = (work.path().join("parquet"), work.path().join("delta"));
    let (code, stderr) = convert_into(&input, &parquet, &["--view", "default", "-q"]);
    assert!(code <= 1, "{stderr}");
    let shards: Vec<_> = (0..4)
        .map(|index| {
            std::process::Command::new(env!("CARGO_BIN_EXE_fhir2table"))
                .args(["convert", "--view", "default", "--format", "delta", "-q", "--in"])
                .arg(&input)
                .arg("--out")
                .arg(&delta)
                .args(["--shard", &format!("{index}/4")])
                .env_remove("JOB_COMPLETION_INDEX")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut shard in shards {
        assert!(matches!(shard.wait().unwrap().code(), Some(0 | 1)));
    }
    // Both Delta readers see, at version 0, every row a single process writes.
    let stdout = common::python(&python, COMPARE, &[&parquet, &delta, Path::new("latest")]);
    let tables = compared(&stdout);
    assert!(tables.len() > 10, "{stdout}");
    assert!(tables.iter().all(|(_, version, _)| *version == 0), "{stdout}");
    // One commit holds all four shards' files, and names every input once.
    let history = common::python(&python, HISTORY, &[&delta.join("patient")]);
    let versions: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(versions.len(), 1, "{history}");
    let inputs = versions[0]["inputs"].as_array().cloned().unwrap_or_default();
    assert!(inputs.contains(&"ndjson/Patient.ndjson".into()), "{history}");
    let mut unique = inputs.clone();
    unique.dedup();
    assert_eq!(unique.len(), inputs.len(), "{history}");
    let files: Vec<String> = std::fs::read_dir(delta.join("patient"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".parquet"))
        .collect();
    assert_eq!(files.len(), 4, "one part per shard: {files:?}");
}

#[test]
fn incremental_runs_deletions_and_compact_read_back_by_both_readers_at_every_version() {
    let Some(python) = readers() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    copy_tree(&fixtures().join("ndjson"), &input);
    let (parquet, delta) = (work.path().join("parquet"), work.path().join("delta"));
    let run = |extra: &[&str]| {
        for (out, format) in [(&parquet, "parquet"), (&delta, "delta")] {
            let flags = [
                &["--incremental", "--view", "default", "-q", "--format", format][..],
                extra,
            ]
            .concat();
            let (code, stderr) = convert_into(&input, out, &flags);
            assert!(code <= 1, "{stderr}");
        }
    };
    let compare = |parquet: &Path, which: &str| {
        let stdout = common::python(&python, COMPARE, &[parquet, &delta, Path::new(which)]);
        compared(&stdout)
    };
    run(&[]);
    assert!(compare(&parquet, "latest")
        .iter()
        .all(|(_, version, _)| *version == 0));
    // The next export deletes an encounter and brings a changed patient file: an incremental run
    // appends the new rows and records the tombstone.
    let encounter = std::fs::read_to_string(input.join("Encounter.ndjson")).unwrap();
    let first: serde_json::Value = serde_json::from_str(encounter.lines().next().unwrap()).unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    std::fs::create_dir(input.join("deleted")).unwrap();
    let delete = format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"request":{{"method":"DELETE","url":"Encounter/{id}"}}}}]}}"#
    );
    std::fs::write(input.join("deleted/Encounter.ndjson"), delete + "\n").unwrap();
    let patients = std::fs::read_to_string(input.join("Patient.ndjson")).unwrap();
    // Re-exported: the same patients again, so compact keeps one row of each.
    std::fs::write(input.join("Patient.ndjson"), patients + "\n").unwrap();
    run(&[]);
    let appended = compare(&parquet, "latest");
    let patient_rows =
        |tables: &[(String, u64, u64)]| tables.iter().find(|t| t.0 == "patient").cloned().unwrap();
    assert_eq!(
        patient_rows(&appended).1,
        1,
        "the incremental run is version 1: {appended:?}"
    );
    // compact drops the deleted encounter and the superseded patients in one new version; the
    // version before it still holds what the incremental runs appended.
    let before_compact = work.path().join("parquet-before-compact");
    copy_tree(&parquet, &before_compact);
    for out in [&parquet, &delta] {
        compact(out);
    }
    let compacted = compare(&parquet, "latest");
    assert_eq!(patient_rows(&compacted).1, 2, "{compacted:?}");
    assert!(
        patient_rows(&compacted).2 < patient_rows(&appended).2,
        "{compacted:?}"
    );
    let encounters = common::read_table(&parquet.join("encounter"));
    assert!(
        !encounters.column("id").contains(&Some(id.clone())),
        "the deleted encounter is gone"
    );
    let previous = compare(&before_compact, "previous");
    assert_eq!(previous.len(), compacted.len(), "{previous:?}");
}

#[test]
fn an_overwrite_that_changes_a_delta_tables_columns_is_refused_before_reading_input() {
    let input = fixtures().join("ndjson");
    let work = tempfile::tempdir().unwrap();
    let (view, out) = (work.path().join("view.json"), work.path().join("lake"));
    let write_view = |columns: &str| {
        let definition = format!(
            r#"{{"resourceType":"ViewDefinition","name":"patient_names","resource":"Patient","status":"active",
                "select":[{{"column":[{columns}]}}]}}"#
        );
        std::fs::write(&view, definition).unwrap();
    };
    let convert = || {
        let view = view.display().to_string();
        convert_into(&input, &out, &["-q", "--format", "delta", "--view", &view])
    };
    write_view(r#"{"name":"id","path":"id"}"#);
    assert_eq!(convert().0, 0);
    // The same columns overwrite as a new version; another column is refused with exit 2.
    assert_eq!(convert().0, 0);
    write_view(r#"{"name":"id","path":"id"},{"name":"gender","path":"gender"}"#);
    let (code, stderr) = convert();
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot overwrite the Delta table") && stderr.contains("gender"),
        "{stderr}"
    );
    // Shards are refused alike by the commit of the last one, which keeps them for a retry.
    let view_flag = view.display().to_string();
    for shard in ["0/2", "1/2"] {
        let flags = ["-q", "--format", "delta", "--view", &view_flag, "--shard", shard];
        let (code, stderr) = convert_into(&input, &out, &flags);
        match shard {
            "0/2" => assert_eq!(code, 0, "{stderr}"),
            _ => {
                assert_eq!(code, 2, "{stderr}");
                assert!(stderr.contains("cannot overwrite the Delta table"), "{stderr}");
            }
        }
    }
    assert_eq!(
        std::fs::read_dir(out.join(".fhir2table/_shards"))
            .unwrap()
            .count(),
        2
    );
    let log: Vec<_> = std::fs::read_dir(out.join("patient_names/_delta_log"))
        .unwrap()
        .collect();
    assert_eq!(log.len(), 2, "versions 0 and 1 only");
}

#[test]
fn a_log_write_a_killed_commit_left_is_removed_by_the_next_run() {
    // object_store writes a commit as `N.json#<k>` and links it to `N.json`: a kill in between
    // leaves the temporary file, which the next run (holding the lock) removes.
    let input = fixtures().join("ndjson");
    let out = tempfile::tempdir().unwrap();
    let flags = ["-q", "--format", "delta", "--mode", "append"];
    assert_eq!(convert_into(&input, out.path(), &flags).0, 0);
    let log = out.path().join("patient/_delta_log");
    let stray = log.join("00000000000000000001.json#4");
    std::fs::write(&stray, "{}").unwrap();
    assert_eq!(convert_into(&input, out.path(), &flags).0, 0);
    assert!(!stray.exists());
    let mut names: Vec<String> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["00000000000000000000.json", "00000000000000000001.json"]);
}

#[test]
fn every_tenth_commit_writes_a_checkpoint_that_both_readers_use() {
    let Some(python) = readers() else {
        return;
    };
    let input = fixtures().join("ndjson/Patient.ndjson");
    let work = tempfile::tempdir().unwrap();
    let (parquet, delta) = (work.path().join("parquet"), work.path().join("delta"));
    let log = delta.join("patient/_delta_log");
    // Versions 0 to 11 of a nightly append.
    for run in 0..12 {
        for (out, format) in [(&parquet, "parquet"), (&delta, "delta")] {
            let flags = ["-q", "--mode", "append", "--format", format];
            let (code, stderr) = convert_into(&input, out, &flags);
            assert_eq!(code, 0, "{stderr}");
        }
        let checkpoint = log.join("00000000000000000010.checkpoint.parquet");
        assert_eq!(checkpoint.exists(), run >= 10, "after version {run}");
    }
    assert!(log.join("_last_checkpoint").exists());
    // Readers start from the checkpoint even with the commits before it gone, as after a
    // log clean-up: the checkpoint alone holds versions 0 to 10.
    for version in 0..10 {
        std::fs::remove_file(log.join(format!("{version:020}.json"))).unwrap();
    }
    let stdout = common::python(
        &python,
        COMPARE,
        &[&parquet, &delta, Path::new("latest"), Path::new("patient")],
    );
    assert_eq!(
        compared(&stdout),
        [("patient".to_owned(), 11, 12 * 9)],
        "{stdout}"
    );
}
