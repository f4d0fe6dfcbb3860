"""One patient's rows from a fhir2table output, as an analyst's DuckDB query reads them.

    python3 bench/selective_query.py OUT [--table observation] [--runs 5]

Picks the patient in the middle of OUT/patient (by id), then runs
`SELECT * FROM OUT/<table>/*.parquet WHERE patient_id = ?` several times and prints, as one JSON
line, the median wall time and what DuckDB's profiler says it read: row groups scanned out of
row groups in the files, rows scanned and bytes read. The row-group and byte counts do not
depend on the machine's load, so before/after comparisons hold on a busy machine too.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import duckdb


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--table", default="observation")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    files = os.path.join(args.out, args.table, "*.parquet")
    con = duckdb.connect()
    patients = os.path.join(args.out, "patient", "*.parquet")
    (count,) = con.execute(f"SELECT count(*) FROM read_parquet('{patients}')").fetchone()
    (patient,) = con.execute(
        f"SELECT id FROM read_parquet('{patients}') ORDER BY id LIMIT 1 OFFSET {count // 2}"
    ).fetchone()

    query = f"SELECT * FROM read_parquet('{files}') WHERE patient_id = ?"
    times = []
    rows = None
    for _ in range(args.runs):
        start = time.perf_counter()
        rows = len(con.execute(query, [patient]).fetchall())
        times.append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as scratch:
        profile = os.path.join(scratch, "profile.json")
        con.execute("PRAGMA enable_profiling='json'")
        con.execute(f"PRAGMA profiling_output='{profile}'")
        con.execute("SET profiling_mode='detailed'")
        con.execute(query, [patient]).fetchall()
        con.execute("PRAGMA disable_profiling")
        with open(profile) as f:
            report = json.load(f)

    print(
        json.dumps(
            {
                "table": args.table,
                "patient_id": patient,
                "rows": rows,
                "median_seconds": round(statistics.median(times), 4),
                "row_groups_scanned": report["query"]["total_row_groups_scanned"],
                "row_groups_in_files": report["query"]["total_row_groups_to_scan"],
                "rows_scanned": report["query"]["total_rows_scanned"],
                "bytes_read": report["io"]["total_bytes_read"],
                "duckdb": duckdb.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
