//! A second, independent reader: DuckDB (from PyPI) reads the datasets the way the README tells
//! users to, and sees the same types and values. CI installs DuckDB (.ci/run); elsewhere the test
//! is skipped with a note when the `duckdb` Python package is missing.

mod common;

use std::path::Path;
use std::process::Command;

use common::{convert, fixtures};

fn duckdb_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("CI must install the duckdb Python package (see .ci/run)");
    }
    found
}

#[test]
fn duckdb_reads_the_tables_with_their_types_and_values() {
    if !duckdb_available() {
        eprintln!("skipped: python3 -c 'import duckdb' failed");
        return;
    }
    let run = convert(&fixtures().join("handmade"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let script = r#"
import duckdb, sys
out = sys.argv[1]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
types = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{out}/patient/*.parquet') WHERE column_name IN ('birth_date', 'deceased_at', 'latitude', 'multiple_birth')").fetchall()
print(sorted(types))
row = con.execute(f"""
    SELECT p.family_name, strftime(p.birth_date, '%Y-%m-%d'), strftime(e.start, '%Y-%m-%d %H:%M:%S'), e.practitioner_id, p.latitude
    FROM '{out}/encounter/*.parquet' e JOIN '{out}/patient/*.parquet' p ON p.id = e.patient_id
    WHERE e.id = 'hm-encounter-1'""").fetchone()
print(list(row))
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(run.out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "[('birth_date', 'DATE'), ('deceased_at', 'TIMESTAMP WITH TIME ZONE'), ('latitude', 'DOUBLE'), ('multiple_birth', 'BOOLEAN')]"
    );
    assert_eq!(
        lines[1],
        "['O\"Brien-Łukasz', '1950-01-01', '2019-02-16 06:27:01', 'hm-practitioner-who', 42.36248]"
    );
}

/// Copies the named Synthea bundles into a fresh input folder.
fn bundles(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        let from = fixtures().join("synthea/smart").join(name);
        std::fs::copy(&from, dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn duckdb_skips_row_groups_without_the_patient_asked_for() {
    if !duckdb_available() {
        eprintln!("skipped: python3 -c 'import duckdb' failed");
        return;
    }
    // Patients 9ceb… and d78a… in the first file, d070… (between them) appended in a second:
    // min/max of patient_id cannot rule the first file out, its lookup index can.
    let first = bundles(&[
        "Bernardo_Ordóñez_ee5ce8e4-160e-4265-88ea-a2ebf4e2dfa9.json",
        "Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json",
    ]);
    let second = bundles(&["Enda_Schaefer_dd760206-6c4e-4e25-a799-f5c563e489a1.json"]);
    let run = convert(first.path(), &["-q"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (code, stderr) = common::convert_into(second.path(), run.out.path(), &["-q", "--mode", "append"]);
    assert_eq!(code, 0, "{stderr}");
    let script = r#"
import duckdb, json, os, sys, tempfile
out = sys.argv[1]
con = duckdb.connect()
profile = os.path.join(tempfile.mkdtemp(), "profile.json")
con.execute("PRAGMA enable_profiling='json'")
con.execute(f"PRAGMA profiling_output='{profile}'")
con.execute("SET profiling_mode='detailed'")
rows = con.execute(f"SELECT id FROM '{out}/encounter/*.parquet' WHERE patient_id = 'd070e7dd-4d25-4c52-9fb2-78d232e1cf2c'").fetchall()
con.execute("PRAGMA disable_profiling")
query = json.load(open(profile))["query"]
print(len(rows), query["total_row_groups_scanned"])
"#;
    let stdout = common::python(Path::new("python3"), script, &[run.out.path()]);
    let encounters = run_encounters_of(run.out.path(), "d070e7dd-4d25-4c52-9fb2-78d232e1cf2c");
    assert!(encounters > 0);
    assert_eq!(
        stdout.trim(),
        format!("{encounters} 1"),
        "rows found, row groups read"
    );
}

fn run_encounters_of(out: &Path, patient: &str) -> usize {
    let table = common::read_table(&out.join("encounter"));
    assert_eq!(table.files, 2);
    table
        .rows
        .iter()
        .filter(|row| row["patient_id"].as_deref() == Some(patient))
        .count()
}
