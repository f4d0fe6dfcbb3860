//! A second, independent reader: DuckDB (from PyPI) reads the datasets the way the README tells
//! users to, and sees the same types and values. CI installs DuckDB (.ci/run); elsewhere the test
//! is skipped with a note when the `duckdb` Python package is missing.

mod common;

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
