//! The SQL on FHIR v2 conformance suite (tests/sof/*.json, 144 cases), run through the real
//! binary: resources written as NDJSON, `convert --view FILE --no-builtin-tables`, the Parquet read
//! back and compared the way the official runner does (row order ignored, absent = null).
//! Writes `sof-test-report.json` in the official test_report format into the target folder's
//! `tmp/` (`target/tmp/`, or under `CARGO_TARGET_DIR` when that is set).

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use common::fhir2table;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Map, Value};

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sof")
}

/// A JSON value for one Parquet cell.
fn cell_json(column: &dyn Array, row: usize) -> Value {
    if column.is_null(row) {
        return Value::Null;
    }
    match column.data_type() {
        DataType::Utf8 => json!(column.as_string::<i32>().value(row)),
        DataType::Boolean => json!(column.as_boolean().value(row)),
        DataType::Int32 => json!(column.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => json!(column.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => json!(column.as_primitive::<Float64Type>().value(row)),
        DataType::List(_) => {
            let list = column.as_list::<i32>().value(row);
            Value::Array((0..list.len()).map(|i| cell_json(list.as_ref(), i)).collect())
        }
        other => panic!("unexpected column type {other}"),
    }
}

/// Rows of a dataset folder as JSON objects, and its column names in order.
fn read_rows(dir: &Path) -> (Vec<String>, Vec<Map<String, Value>>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut names = Vec::new();
    let mut rows = Vec::new();
    for file in files {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap()).unwrap();
        names = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for batch in builder.build().unwrap() {
            let batch: RecordBatch = batch.unwrap();
            for row in 0..batch.num_rows() {
                let object = names
                    .iter()
                    .zip(batch.columns())
                    .map(|(name, column)| (name.clone(), cell_json(column.as_ref(), row)))
                    .collect();
                rows.push(object);
            }
        }
    }
    (names, rows)
}

/// Equality as the official runner sees it: numbers by value, arrays element-wise.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        _ => a == b,
    }
}

fn same_row(expected: &Map<String, Value>, actual: &Map<String, Value>) -> bool {
    let keys: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    keys.into_iter().all(|key| {
        same(
            expected.get(key).unwrap_or(&Value::Null),
            actual.get(key).unwrap_or(&Value::Null),
        )
    })
}

/// Runs one case; `Err` says why it failed.
fn run_case(case: &Value, input: &Path) -> Result<(), String> {
    let work = tempfile::tempdir().unwrap();
    let view_file = work.path().join("view.json");
    std::fs::write(&view_file, serde_json::to_string(&case["view"]).unwrap()).unwrap();
    let out = work.path().join("out");
    let output = fhir2table()
        .args(["convert", "-q", "--threads", "1", "--no-builtin-tables", "--in"])
        .arg(input)
        .arg("--out")
        .arg(&out)
        .arg("--view")
        .arg(&view_file)
        .output()
        .unwrap();
    let code = output.status.code();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if case.get("expectError").and_then(Value::as_bool) == Some(true) {
        return match code {
            Some(0) => Err("expected an error, the run succeeded".into()),
            _ => Ok(()),
        };
    }
    if code != Some(0) {
        return Err(format!("exit {code:?}: {stderr}"));
    }
    let name = case["view"]["name"].as_str().unwrap_or("view");
    let (columns, rows) = read_rows(&out.join(name));
    if let Some(expected) = case.get("expectColumns").and_then(Value::as_array) {
        let expected: Vec<String> = expected.iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        if expected != columns {
            return Err(format!("columns {columns:?}, expected {expected:?}"));
        }
    }
    if let Some(count) = case.get("expectCount").and_then(Value::as_u64) {
        return match rows.len() as u64 == count {
            true => Ok(()),
            false => Err(format!("{} rows, expected {count}", rows.len())),
        };
    }
    let expected: Vec<Map<String, Value>> = case["expect"]
        .as_array()
        .expect("a case has expect, expectCount or expectError")
        .iter()
        .map(|row| row.as_object().unwrap().clone())
        .collect();
    let mut unmatched: Vec<&Map<String, Value>> = rows.iter().collect();
    for row in &expected {
        match unmatched.iter().position(|actual| same_row(row, actual)) {
            Some(found) => {
                unmatched.remove(found);
            }
            None => return Err(format!("expected row {row:?} not found in {rows:?}")),
        }
    }
    if !unmatched.is_empty() {
        return Err(format!("unexpected rows {unmatched:?}"));
    }
    Ok(())
}

#[test]
fn every_conformance_case_passes_through_the_binary() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut report = BTreeMap::new();
    let mut failures = Vec::new();
    let mut total = 0;
    for file in files {
        let suite: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let input = tempfile::tempdir().unwrap();
        let lines: Vec<String> = suite["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        std::fs::write(input.path().join("resources.ndjson"), lines.join("\n") + "\n").unwrap();
        let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut results = Vec::new();
        for case in suite["tests"].as_array().unwrap() {
            total += 1;
            let title = case["title"].as_str().unwrap().to_owned();
            let outcome = run_case(case, input.path());
            if let Err(reason) = &outcome {
                failures.push(format!("{file_name} / {title}: {reason}"));
            }
            let mut result = json!({ "passed": outcome.is_ok() });
            if let Err(reason) = outcome {
                result["error"] = json!(reason);
            }
            results.push(json!({ "name": title, "result": result }));
        }
        report.insert(file_name, json!({ "tests": results }));
    }
    // Cargo's folder for integration tests' files, inside whatever target folder is in use.
    let report_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(report_dir).unwrap();
    let report_path = report_dir.join("sof-test-report.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    assert_eq!(total, 144, "the suite has 144 cases");
    assert!(
        failures.is_empty(),
        "{} of {total} conformance cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
