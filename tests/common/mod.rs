//! Helpers shared by the integration tests: run the real binary, read its Parquet back with the
//! parquet crate, and look rows up by id.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use assert_cmd::Command;
use fhir2table::table::cell_text;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tempfile::TempDir;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn fhir2table() -> Command {
    Command::cargo_bin("fhir2table").expect("the binary is built for integration tests")
}

/// A finished run: its output folder, exit code and stderr.
pub struct Run {
    pub out: TempDir,
    pub code: i32,
    pub stderr: String,
}

impl Run {
    pub fn table(&self, name: &str) -> Table {
        read_table(&self.out.path().join(name))
    }

    pub fn report(&self) -> serde_json::Value {
        report_of(self.out.path())
    }
}

/// Runs `fhir2table convert --in input --out <temp> extra...`.
pub fn convert(input: &Path, extra: &[&str]) -> Run {
    let out = tempfile::tempdir().unwrap();
    let (code, stderr) = convert_into(input, out.path(), extra);
    Run { out, code, stderr }
}

/// Runs `fhir2table convert --in input --out out extra...` on a folder the test keeps (a second
/// run, an append); returns the exit code and stderr.
pub fn convert_into(input: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let output = fhir2table()
        .arg("convert")
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.code().expect("exited normally"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs a Python script (`python -c script args...`) and returns what it printed; a failing
/// script fails the test with its stderr.
pub fn python(interpreter: &Path, script: &str, args: &[&Path]) -> String {
    let output = std::process::Command::new(interpreter)
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        interpreter.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A table read back from its dataset folder; cells rendered as text (`None` for null): strings as
/// they are, dates `YYYY-MM-DD`, timestamps `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, numbers and booleans
/// as Rust prints them.
pub struct Table {
    pub schema: SchemaRef,
    pub rows: Vec<BTreeMap<String, Option<String>>>,
    pub files: usize,
}

impl Table {
    /// The one row whose `id` is `id`.
    pub fn row(&self, id: &str) -> &BTreeMap<String, Option<String>> {
        let matches: Vec<_> = self
            .rows
            .iter()
            .filter(|row| row["id"].as_deref() == Some(id))
            .collect();
        assert_eq!(matches.len(), 1, "expected exactly one row with id {id}");
        matches[0]
    }

    pub fn column(&self, name: &str) -> Vec<Option<String>> {
        self.rows.iter().map(|row| row[name].clone()).collect()
    }

    /// Rows sorted by every column, for comparing runs whose row order may differ.
    pub fn sorted_rows(&self) -> Vec<Vec<Option<String>>> {
        let mut rows: Vec<Vec<Option<String>>> = self
            .rows
            .iter()
            .map(|row| row.values().cloned().collect())
            .collect();
        rows.sort();
        rows
    }
}

pub fn read_table(dir: &Path) -> Table {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(
        paths.iter().all(|p| p
            .extension()
            .is_some_and(|e| e == "parquet" || e == "fhir2table-parquet")),
        "only Parquet files in {} (the tool's own tables end in .fhir2table-parquet): {paths:?}",
        dir.display()
    );
    read_files(&paths)
}

/// The rows of these Parquet files, in this order (a Delta table's files are those its log
/// lists, not every file of its folder).
pub fn read_files(paths: &[PathBuf]) -> Table {
    let mut schema = None;
    let mut rows = Vec::new();
    for path in paths {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        schema = Some(builder.schema().clone());
        for batch in builder.build().unwrap() {
            rows.extend(render_rows(&batch.unwrap()));
        }
    }
    Table {
        schema: schema.expect("the dataset has at least one file"),
        rows,
        files: paths.len(),
    }
}

fn render_rows(batch: &RecordBatch) -> Vec<BTreeMap<String, Option<String>>> {
    (0..batch.num_rows())
        .map(|row| {
            batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| (field.name().clone(), cell_text(column.as_ref(), row)))
                .collect()
        })
        .collect()
}

/// The table folders of an output, sorted: every folder whose name is not the tool's own (`_`,
/// `.`).
pub fn table_folders(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with(['_', '.']))
        .collect();
    names.sort();
    names
}

/// Shorthand for expected cells.
pub fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// Asserts a row's cells: every listed column must match; `None` means null.
pub fn assert_cells(row: &BTreeMap<String, Option<String>>, expected: &[(&str, Option<&str>)]) {
    for (column, value) in expected {
        let actual = row.get(*column).unwrap_or_else(|| panic!("no column {column}"));
        assert_eq!(
            actual.as_deref(),
            *value,
            "column {column} of row {:?}",
            row.get("id")
        );
    }
}

/// The Python of a virtual environment under the target folder holding exactly `packages`, made
/// once and remade when the list changes. `Err` says why it could not be made (no `python3 -m
/// venv`, no network to PyPI); see [`skip_or_fail`].
pub fn venv_python(name: &str, packages: &[&str]) -> Result<PathBuf, String> {
    // The tests of one binary run on parallel threads, and several may ask for the same venv:
    // one makes it while the others wait (two making it at once break each other's pip).
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _making = MAKING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let venv = target.join("tmp").join(name);
    let python = venv.join("bin/python");
    let ready = venv.join("ready");
    if std::fs::read_to_string(&ready).is_ok_and(|text| text == packages.join("\n")) {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let step = |command: &mut std::process::Command| -> Result<(), String> {
        let output = command.output().map_err(|e| e.to_string())?;
        match output.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        }
    };
    step(
        std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv),
    )?;
    step(
        std::process::Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(packages),
    )?;
    std::fs::write(&ready, packages.join("\n")).map_err(|e| e.to_string())?;
    Ok(python)
}

/// A test whose readers could not be installed: skipped on a developer's machine, a failure in
/// CI (which must be able to install them), with `what` and the reason.
pub fn skip_or_fail(what: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI must be able to install {what} into a venv: {why}");
    }
    eprintln!("skipped: {why}");
}

/// Copies the folder tree `from` into `to` (created), empty folders included: a test's own
/// copy of the fixtures to change, or of an output to try something on.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The run report an output holds (`OUT/.fhir2table/_run.json`).
pub fn report_of(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join(".fhir2table/_run.json")).expect("the run report exists");
    serde_json::from_str(&text).expect("the run report is JSON")
}

/// What two runs of the same input must agree on in their reports however their work was cut
/// (threads, shards, storage): counts, inputs, errors, rows; not the examples of warnings, which
/// depend on the order rows were met in.
pub fn report_essentials(report: &serde_json::Value) -> serde_json::Value {
    let counts = |key: &str, field: &str| -> BTreeMap<String, serde_json::Value> {
        let object = report[key].as_object().unwrap();
        object
            .iter()
            .map(|(name, entry)| (name.clone(), entry[field].clone()))
            .collect()
    };
    let mut errors: Vec<String> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect();
    errors.sort();
    serde_json::json!({
        "exit_code": report["exit_code"],
        "inputs": report["inputs"],
        "skipped_files": report["skipped_files"],
        "excluded_paths": report["excluded_paths"],
        "resources": report["resources"],
        "unmapped": report["unmapped"],
        "tables": counts("tables", "rows"),
        "warnings": counts("warnings", "count"),
        "error_count": report["error_count"],
        "errors": errors,
    })
}
