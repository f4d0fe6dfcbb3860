"""Reads every table folder of a fhir2table output with DuckDB, pyarrow, Polars, Spark and
pyiceberg, and compares each with the cells the parquet crate read (tests/interop.rs).

    python3 tests/interop/read_all.py OUT EXPECTED_JSON WORK_DIR

EXPECTED_JSON is {"table": {"columns": [...], "rows": [[cell, ...], ...]}} with cells in the
normal form below. WORK_DIR holds the Iceberg catalog and warehouse. Prints on stdout
{"reader": {"table": {"rows": N or null, "problem": null or "text"}}} for every reader and
table; a reader that cannot start reports its error as the problem of every table.

Normal form of a cell: null -> None; strings, booleans, integers and floats as they are (a
float that is not finite as its text); dates `YYYY-MM-DD`; timestamps as the UTC instant
`YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (fraction only when not zero); lists as lists of normal cells.
Rows are compared sorted, so the readers' row order does not matter.
"""

import datetime
import glob
import json
import math
import os
import sys
import time
import traceback

# Naive timestamps (Spark hands out the session's local time) are read as UTC: set the process'
# zone before any reader starts.
os.environ["TZ"] = "UTC"
time.tzset()
# Spark talks to itself on loopback only.
os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"

READERS = ["duckdb", "pyarrow", "polars", "spark", "iceberg"]


def normal_cell(value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        text = (
            f"{value.year:04}-{value.month:02}-{value.day:02}"
            f"T{value.hour:02}:{value.minute:02}:{value.second:02}"
        )
        if value.microsecond:
            text += f".{value.microsecond:06}"
        return text + "Z"
    if isinstance(value, datetime.date):
        return f"{value.year:04}-{value.month:02}-{value.day:02}"
    if isinstance(value, (list, tuple)):
        return [normal_cell(item) for item in value]
    raise TypeError(f"no normal form for {type(value).__name__}: {value!r}")


def sort_key(row):
    return json.dumps(row)


def compare(expected, columns, rows):
    """None when `columns` and `rows` (raw reader values) match `expected`, else what differs."""
    if list(columns) != expected["columns"]:
        return f"columns {list(columns)}, expected {expected['columns']}"
    if len(rows) != len(expected["rows"]):
        return f"{len(rows)} rows, expected {len(expected['rows'])}"
    actual = sorted(([normal_cell(cell) for cell in row] for row in rows), key=sort_key)
    wanted = sorted(expected["rows"], key=sort_key)
    for got, want in zip(actual, wanted):
        if got != want:
            cells = [
                f"{name}: {g!r} != {w!r}"
                for name, g, w in zip(expected["columns"], got, want)
                if g != w
            ]
            return "first differing row (sorted): " + "; ".join(cells)
    return None


def parquet_files(out, table):
    return sorted(glob.glob(os.path.join(out, table, "*.parquet")))


def read_duckdb(out, table):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cursor = con.execute(
        "SELECT * FROM read_parquet(?)", [os.path.join(out, table, "*.parquet")]
    )
    columns = [column[0] for column in cursor.description]
    return columns, cursor.fetchall()


def read_pyarrow(out, table):
    import pyarrow.dataset as ds

    data = ds.dataset(os.path.join(out, table), format="parquet").to_table()
    check_double_statistics(out, table)
    return data.column_names, rows_of_arrow(data)


def check_double_statistics(out, table):
    """Every double column chunk that holds a value has min/max pyarrow can prune on."""
    import pyarrow.parquet as pq

    for path in parquet_files(out, table):
        metadata = pq.ParquetFile(path).metadata
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for i in range(row_group.num_columns):
                chunk = row_group.column(i)
                if chunk.physical_type != "DOUBLE" or chunk.statistics is None:
                    continue
                stats = chunk.statistics
                if stats.num_values > 0 and not stats.has_min_max:
                    raise Exception(f"no min/max pyarrow can use on {chunk.path_in_schema} in {path}")


def rows_of_arrow(data):
    columns = [data.column(name).to_pylist() for name in data.column_names]
    return [list(row) for row in zip(*columns)] if columns else []


def read_polars(out, table):
    import polars as pl

    frame = pl.scan_parquet(os.path.join(out, table) + "/").collect()
    return frame.columns, frame.rows()


class SparkReader:
    """One Spark session for all tables: starting one takes seconds."""

    def __init__(self):
        from pyspark.sql import SparkSession

        self.session = (
            SparkSession.builder.master("local[2]")
            .appName("fhir2table-interop")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        self.session.sparkContext.setLogLevel("ERROR")

    def read(self, out, table):
        frame = self.session.read.parquet(os.path.join(out, table))
        return frame.columns, [list(row) for row in frame.collect()]

    def stop(self):
        self.session.stop()


class IcebergReader:
    """Registers each table's Parquet files in a SQLite-catalog Iceberg table with add_files
    (no rewrite) and scans it back."""

    def __init__(self, work):
        from pyiceberg.catalog.sql import SqlCatalog

        warehouse = os.path.join(work, "warehouse")
        os.makedirs(warehouse, exist_ok=True)
        self.catalog = SqlCatalog(
            "interop",
            uri=f"sqlite:///{os.path.join(work, 'catalog.db')}",
            warehouse=f"file://{warehouse}",
        )
        self.catalog.create_namespace("fhir")

    def read(self, out, table):
        import pyarrow.parquet as pq

        files = parquet_files(out, table)
        iceberg_table = self.catalog.create_table(
            f"fhir.{table}", schema=pq.read_schema(files[0])
        )
        iceberg_table.add_files(file_paths=files)
        data = iceberg_table.scan().to_arrow()
        return data.column_names, rows_of_arrow(data)

    def stop(self):
        pass


def problem_text(error):
    lines = traceback.format_exception_only(type(error), error)
    return "".join(lines).strip().splitlines()[-1][:2000]


def main():
    out, expected_path, work = sys.argv[1:4]
    with open(expected_path, encoding="utf-8") as file:
        expected = json.load(file)
    results = {}
    plain = {"duckdb": read_duckdb, "pyarrow": read_pyarrow, "polars": read_polars}
    for reader in READERS:
        results[reader] = {}
        session = None
        try:
            if reader == "spark":
                session = SparkReader()
            elif reader == "iceberg":
                session = IcebergReader(work)
        except Exception as error:  # the reader cannot start: every table fails with why
            for table in expected:
                results[reader][table] = {"rows": None, "problem": problem_text(error)}
            continue
        read = session.read if session else plain[reader]
        for table in sorted(expected):
            try:
                columns, rows = read(out, table)
                problem = compare(expected[table], columns, rows)
                results[reader][table] = {"rows": len(rows), "problem": problem}
            except Exception as error:
                results[reader][table] = {"rows": None, "problem": problem_text(error)}
        if session:
            session.stop()
    json.dump(results, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
