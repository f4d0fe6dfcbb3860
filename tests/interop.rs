//! The readers users point at the output: DuckDB, pyarrow (dataset), Polars and Spark read every
//! table folder of a run over the Synthea fixtures (built-in tables and every default view) and
//! must see the cells the parquet crate reads here; pyiceberg registers each table's files with
//! `add_files` in a SQLite-catalog table and scans them back. The readers run in one Python
//! process (`tests/interop/read_all.py`, one Spark session for all tables). CI installs them
//! (.ci/run); elsewhere the test is skipped with a note when one of them is missing, and fails
//! when `CI` is set.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::Array;
use arrow_schema::DataType;
use fhir2table::table::cell_text;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};

use common::{convert, fixtures, table_folders};

const PYTHON_MODULES: &str =
    "import duckdb, pyarrow.dataset, polars, pyspark, pyiceberg.catalog.sql, sqlalchemy";
const READERS: [&str; 5] = ["duckdb", "pyarrow", "polars", "spark", "iceberg"];

/// Whether the Python readers and Java (for Spark) are here; under CI their absence is a failure.
fn readers_available() -> bool {
    let python = Command::new("python3")
        .args(["-c", PYTHON_MODULES])
        .output()
        .is_ok_and(|o| o.status.success());
    let java = Command::new("java")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(python && java) && std::env::var_os("CI").is_some() {
        panic!("CI must install Java 17 and the Python readers (see .ci/run): python3 -c '{PYTHON_MODULES}' ok: {python}, java ok: {java}");
    }
    if !python {
        eprintln!("skipped: python3 -c '{PYTHON_MODULES}' failed");
    } else if !java {
        eprintln!("skipped: `java -version` failed (Spark needs Java 17)");
    }
    python && java
}

/// A cell in the normal form `read_all.py` compares: JSON null, string, boolean or number;
/// dates and timestamps as `cell_text` writes them; lists as arrays.
fn normal_cell(column: &dyn Array, row: usize) -> Value {
    if column.is_null(row) {
        return Value::Null;
    }
    match column.data_type() {
        DataType::Utf8 => json!(column.as_string::<i32>().value(row)),
        DataType::Boolean => json!(column.as_boolean().value(row)),
        DataType::Int32 => json!(column.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => json!(column.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => {
            let value = column.as_primitive::<Float64Type>().value(row);
            serde_json::Number::from_f64(value).map_or_else(
                // Python's repr of the same value: nan, inf, -inf.
                || json!(format!("{value}").to_lowercase()),
                Value::Number,
            )
        }
        DataType::Date32 | DataType::Timestamp(_, _) => json!(cell_text(column, row)),
        DataType::List(_) => {
            let items = column.as_list::<i32>().value(row);
            Value::Array((0..items.len()).map(|i| normal_cell(&items, i)).collect())
        }
        other => panic!("no normal form for Arrow type {other}: extend the test and read_all.py"),
    }
}

/// A table folder read with the parquet crate: `{"columns": [...], "rows": [[cell, ...], ...]}`.
fn expected_table(dir: &Path) -> Value {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty()
            && files
                .iter()
                .all(|p| p.extension().is_some_and(|e| e == "parquet")),
        "only Parquet files, at least one, in {}: {files:?}",
        dir.display()
    );
    let mut columns = None;
    let mut rows = Vec::new();
    for path in &files {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let names: Vec<String> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert!(
            columns.get_or_insert_with(|| names.clone()) == &names,
            "the files of {} have different columns",
            dir.display()
        );
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            for row in 0..batch.num_rows() {
                let cells = batch
                    .columns()
                    .iter()
                    .map(|column| normal_cell(column.as_ref(), row))
                    .collect();
                rows.push(Value::Array(cells));
            }
        }
    }
    json!({ "columns": columns, "rows": rows })
}

/// The tables `--view default` must write: the built-in ones and one per shipped view.
fn expected_table_names() -> Vec<String> {
    let views = Path::new(env!("CARGO_MANIFEST_DIR")).join("views");
    let mut names: Vec<String> = std::fs::read_dir(views)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let view: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            view["name"].as_str().map_or_else(
                || path.file_stem().unwrap().to_string_lossy().into_owned(),
                str::to_owned,
            )
        })
        .chain(["patient".to_owned(), "encounter".to_owned()])
        .collect();
    names.sort();
    names
}

#[test]
fn every_reader_sees_the_same_cells_in_every_table() {
    if !readers_available() {
        return;
    }
    let run = convert(&fixtures().join("synthea"), &["--view", "default"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tables = table_folders(run.out.path());
    assert_eq!(tables, expected_table_names());

    let expected: BTreeMap<&str, Value> = tables
        .iter()
        .map(|name| (name.as_str(), expected_table(&run.out.path().join(name))))
        .collect();
    let rows: usize = expected
        .values()
        .map(|t| t["rows"].as_array().unwrap().len())
        .sum();
    assert!(rows > 1000, "the fixtures give rows to compare: {rows}");
    let work = tempfile::tempdir().unwrap();
    let expected_path = work.path().join("expected.json");
    serde_json::to_writer(File::create(&expected_path).unwrap(), &expected).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/read_all.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(run.out.path())
        .arg(&expected_path)
        .arg(work.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "read_all.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "read_all.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });

    let mut problems = Vec::new();
    for reader in READERS {
        for table in &tables {
            let result = &results[reader][table];
            let want = expected[table.as_str()]["rows"].as_array().unwrap().len();
            if result.is_null() {
                problems.push(format!("{reader} {table}: not read"));
            } else if !result["problem"].is_null() {
                problems.push(format!(
                    "{reader} {table}: {}",
                    result["problem"].as_str().unwrap()
                ));
            } else {
                assert_eq!(result["rows"], json!(want), "{reader} {table}");
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} table reads differ from the parquet crate:\n{}",
        problems.len(),
        READERS.len() * tables.len(),
        problems.join("\n")
    );
}

const READ_ROOT: &str = r#"
import sys, duckdb, polars as pl
from pyspark.sql import SparkSession
out = sys.argv[1]
print("duckdb_star", duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/*/*.parquet', union_by_name=true)").fetchall()[0][0])
print("duckdb_globstar", duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet', union_by_name=true)").fetchall()[0][0])
print("polars_star", pl.scan_parquet(f"{out}/*/*.parquet", missing_columns="insert", extra_columns="ignore").select(pl.len()).collect().item())
spark = (SparkSession.builder.master("local[1]").config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1").config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
print("spark_star", spark.read.option("mergeSchema", "true").parquet(f"{out}/*/").count())
"#;

#[test]
fn globs_over_the_output_root_meet_only_table_files() {
    if !readers_available() {
        return;
    }
    // Tables, plus every file of the tool's own: a report, tombstones (a DELETE), the lock and,
    // with --incremental, the state.
    let input = tempfile::tempdir().unwrap();
    let bundle = fixtures().join("synthea/smart/Enda_Schaefer_dd760206-6c4e-4e25-a799-f5c563e489a1.json");
    std::fs::copy(&bundle, input.path().join("enda.json")).unwrap();
    let delete = r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/gone"}}]}"#;
    std::fs::write(input.path().join("deleted.ndjson"), format!("{delete}\n")).unwrap();
    let run = convert(input.path(), &["-q", "--incremental"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tools = run.out.path().join(".fhir2table");
    for file in ["_run.json", "_state.json", "_lock", "_deleted"] {
        assert!(tools.join(file).exists(), "{file} is in the tool folder");
    }
    let rows: usize = ["patient", "encounter"]
        .iter()
        .map(|table| common::read_table(&run.out.path().join(table)).rows.len())
        .sum();
    let stdout = common::python(Path::new("python3"), READ_ROOT, &[run.out.path()]);
    let counts: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        counts,
        [
            format!("duckdb_star {rows}"),
            format!("duckdb_globstar {rows}"),
            format!("polars_star {rows}"),
            format!("spark_star {rows}"),
        ]
    );
}

const READ_RESOURCES: &str = r#"
import sys, json, duckdb, pyarrow.dataset as ds, polars as pl
from pyspark.sql import SparkSession
out, patient = sys.argv[1], sys.argv[2]
tables = json.loads(sys.argv[3])
race = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
result = {}
def files(table):
    return f"{out}/{table}/*.parquet"
con = duckdb.connect()
result["duckdb"] = {
    "rows": {t: con.sql(f"SELECT count(*) FROM read_parquet('{files(t)}')").fetchall()[0][0] for t in tables},
    "family": con.execute(f"SELECT name[1].family FROM read_parquet('{files('resource_patient')}') WHERE id = ?", [patient]).fetchall()[0][0],
    "race": con.execute(f"SELECT count(*) FROM (SELECT unnest(extension) AS e FROM read_parquet('{files('resource_patient')}')) WHERE e.url = ?", [race]).fetchall()[0][0],
    "quantities": con.sql(f"SELECT count(valueQuantity.value), count(valueQuantity.__value_numeric) FROM read_parquet('{files('resource_observation')}')").fetchall()[0],
    # README's queries ("Resource tables (lossless)"), on this output.
    "readme": [len(con.sql(q.replace("parquet/", f"{out}/")).fetchall()) for q in [
        """SELECT id, name[1].family, year(__birthDate_start) AS born,
       list_filter(extension, lambda e: e.url LIKE '%us-core-race')[1]
           .extension[1].valueCoding.display AS race
FROM read_parquet('parquet/resource_patient/*.parquet')""",
        """SELECT o.id, c.code.coding[1].code, c.valueQuantity.value, c.valueQuantity.__value_numeric,
       o.__effectiveDateTime_start
FROM read_parquet('parquet/resource_observation/*.parquet') o, unnest(o.component) AS u(c)
WHERE o.code.coding[1].code = '85354-9'"""]],
}
patients = ds.dataset(f"{out}/resource_patient", format="parquet").to_table()
rows = [r for r in patients.select(["id", "name"]).to_pylist() if r["id"] == patient]
result["pyarrow"] = {
    "rows": {t: ds.dataset(f"{out}/{t}", format="parquet").count_rows() for t in tables},
    "family": rows[0]["name"][0]["family"],
}
result["polars"] = {
    "rows": {t: pl.scan_parquet(files(t)).select(pl.len()).collect().item() for t in tables},
    "family": pl.scan_parquet(files("resource_patient")).filter(pl.col("id") == patient)
        .select(pl.col("name").list.get(0).struct.field("family")).collect().item(),
}
spark = (SparkSession.builder.master("local[1]").config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1").config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
spark_patients = spark.read.parquet(f"{out}/resource_patient")
result["spark"] = {
    "rows": {t: spark.read.parquet(f"{out}/{t}").count() for t in tables},
    "family": spark_patients.filter(spark_patients.id == patient).selectExpr("name[0].family").first()[0],
}
print(json.dumps(result))
"#;

/// Rows of a table folder's Parquet files, from their footers.
fn parquet_rows(dir: &Path) -> i64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "parquet"))
        .map(|path| {
            let file = File::open(&path).unwrap();
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
            builder.metadata().file_metadata().num_rows()
        })
        .sum()
}

/// Every resource of the Synthea fixtures' Bundles (they nest no Bundles).
fn synthea_resources() -> Vec<Value> {
    let mut resources = Vec::new();
    for folder in ["smart", "pathling-collection", "pathling-conditional"] {
        for entry in std::fs::read_dir(fixtures().join("synthea").join(folder)).unwrap() {
            let bundle: Value =
                serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
            for entry in bundle["entry"].as_array().unwrap() {
                resources.push(entry["resource"].clone());
            }
        }
    }
    resources
}

#[test]
fn every_reader_reads_the_nested_resource_tables() {
    if !readers_available() {
        return;
    }
    let run = convert(
        &fixtures().join("synthea"),
        &["-q", "--resources", "all", "--no-builtin-tables"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let resources = synthea_resources();
    let of_type = |name: &'static str| resources.iter().filter(move |r| r["resourceType"] == name);
    let patient = of_type("Patient")
        .find(|p| p["name"][0]["family"].is_string())
        .unwrap();
    let race = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";
    let races = of_type("Patient")
        .flat_map(|p| p["extension"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["url"] == race)
        .count();
    assert!(races > 0, "the fixtures have US Core race extensions");
    let quantities = of_type("Observation")
        .filter(|o| o["valueQuantity"]["value"].is_number())
        .count();
    let tables: Vec<String> = table_folders(run.out.path())
        .into_iter()
        .filter(|name| name.starts_with("resource_"))
        .collect();
    let mut want_rows = serde_json::Map::new();
    for table in &tables {
        want_rows.insert(table.clone(), json!(parquet_rows(&run.out.path().join(table))));
    }
    assert!(want_rows.len() >= 10, "{want_rows:?}");
    let stdout = common::python(
        Path::new("python3"),
        READ_RESOURCES,
        &[
            run.out.path(),
            Path::new(patient["id"].as_str().unwrap()),
            Path::new(&serde_json::to_string(&tables).unwrap()),
        ],
    );
    let results: Value = serde_json::from_str(&stdout).unwrap();
    let family = &patient["name"][0]["family"];
    for reader in ["duckdb", "pyarrow", "polars", "spark"] {
        assert_eq!(
            results[reader]["rows"],
            Value::Object(want_rows.clone()),
            "{reader}"
        );
        assert_eq!(&results[reader]["family"], family, "{reader}");
    }
    assert_eq!(results["duckdb"]["race"], json!(races));
    assert_eq!(results["duckdb"]["quantities"], json!([quantities, quantities]));
    let patients = of_type("Patient").count();
    let pressures = of_type("Observation")
        .filter(|o| o["code"]["coding"][0]["code"] == "85354-9")
        .map(|o| o["component"].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    assert!(pressures > 0, "the fixtures have blood pressures");
    assert_eq!(results["duckdb"]["readme"], json!([patients, pressures]));
}
