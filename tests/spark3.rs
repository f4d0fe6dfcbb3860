//! Spark 3.x reads dates and timestamps before 1582-10-15 (real data holds `0001-01-01`) with no
//! session settings. Spark 3 decides from a file's metadata whether such values need rebasing
//! from the old hybrid calendar, and refuses the whole scan (`datetimeRebaseModeInRead` is
//! `EXCEPTION` by default) for a file that does not say; Spark 4 no longer asks. pyspark 3.5 runs
//! in a virtual environment of its own (pyspark 4, which the other readers' test uses, is in the
//! system Python), kept in this crate's target folder between runs. Without a venv or PyPI the
//! test is skipped with a note, and fails when `CI` is set.

mod common;

use std::path::Path;

use common::{convert, read_table};

const PYSPARK_3: &str = "pyspark==3.5.9";

const READ: &str = r#"
import sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]")
         .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
assert spark.version.startswith("3."), spark.version
assert spark.conf.get("spark.sql.parquet.datetimeRebaseModeInRead") == "EXCEPTION"
out = sys.argv[1]
for row in spark.read.parquet(out + "/patient").select("id", "birth_date").collect():
    print("patient", row.id, row.birth_date.isoformat())
for row in spark.read.parquet(out + "/encounter").select("id", "start", "end").collect():
    print("encounter", row.id, row.start.isoformat(), row.end.isoformat())
"#;

#[test]
fn spark_3_reads_dates_before_1582_as_written_without_settings() {
    let python = match common::venv_python("pyspark-3.5.9-venv", &[PYSPARK_3]) {
        Ok(python) => python,
        Err(why) => return common::skip_or_fail(&format!("{PYSPARK_3} (Java 17 is on the machine)"), &why),
    };
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/old-dates.ndjson");
    let run = convert(&input, &["-q"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // What the parquet crate reads: the values as the input wrote them.
    let patient = read_table(&run.out.path().join("patient"));
    assert_eq!(
        patient.row("ancient")["birth_date"].as_deref(),
        Some("0001-01-01")
    );
    let encounter = read_table(&run.out.path().join("encounter"));
    assert_eq!(
        encounter.row("e-1500")["start"].as_deref(),
        Some("1500-06-01T12:00:00Z")
    );

    let stdout = common::python(&python, READ, &[run.out.path()]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "patient ancient 0001-01-01",
            "encounter e-1500 1500-06-01T12:00:00 1582-10-04T23:59:59",
        ]
    );
}
