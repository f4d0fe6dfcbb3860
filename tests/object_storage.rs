//! `--in` and `--out` on object storage, against a real S3-protocol server: moto's server
//! (`moto_server`, pinned) started by each test on 127.0.0.1 at a free port it picks itself, with a bucket. The
//! fhir2table binary reaches it through the standard AWS variables (`AWS_ENDPOINT_URL`, keys,
//! region, `AWS_ALLOW_HTTP`), as a user would. Objects are put and fetched with boto3, which
//! shares no code with fhir2table's object_store, and every table is compared cell for cell with
//! a run on local disk over the same files. Without a venv or PyPI the tests are skipped with a
//! note, and fail when `CI` is set.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{
    copy_tree, fhir2table, fixtures, read_table, report_essentials, report_of as report, skip_or_fail,
    table_folders,
};

/// The server and the readers, pinned.
const PACKAGES: [&str; 5] = [
    "moto[server]==5.2.5",
    "pyarrow==26.0.1",
    "deltalake==1.6.6",
    "duckdb==1.4.4",
    "duckdb-ext-delta==1.4.4.20260205",
];

/// The bucket every test works in (each test has a server of its own).
const BUCKET: &str = "fhir";

/// boto3 against the test's server: `bucket NAME`, `upload DIR PREFIX` (every file below DIR,
/// keys PREFIX/relative path), `download PREFIX DIR`, `keys PREFIX` (prints one key a line),
/// `put KEY TEXT`, `delete KEY`, `etag KEY`.
const S3_TOOL: &str = r#"
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
command = sys.argv[1]
if command == "bucket":
    s3.create_bucket(Bucket=sys.argv[2])
elif command == "upload":
    root, prefix = sys.argv[2], sys.argv[3]
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            key = prefix + "/" + os.path.relpath(path, root).replace(os.sep, "/")
            s3.upload_file(path, os.environ["BUCKET"], key)
elif command == "put":
    s3.put_object(Bucket=os.environ["BUCKET"], Key=sys.argv[2], Body=sys.argv[3].encode())
elif command == "etag":
    print(s3.head_object(Bucket=os.environ["BUCKET"], Key=sys.argv[2])["ETag"])
elif command == "delete":
    s3.delete_object(Bucket=os.environ["BUCKET"], Key=sys.argv[2])
elif command in ("download", "keys"):
    prefix = sys.argv[2]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["BUCKET"], Prefix=prefix + "/")
    for page in pages:
        for item in page.get("Contents", []):
            key = item["Key"]
            if command == "keys":
                print(key)
                continue
            target = os.path.join(sys.argv[3], key[len(prefix) + 1:])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            s3.download_file(os.environ["BUCKET"], key, target)
"#;

/// A moto S3 server on 127.0.0.1 at a port it chose, killed when dropped.
struct S3Server {
    child: Child,
    endpoint: String,
    python: PathBuf,
}

impl S3Server {
    /// Starts the server with the bucket made, or `None` (skipped) when the venv cannot be made.
    fn start() -> Option<S3Server> {
        let python = match common::venv_python("object-store-venv", &PACKAGES) {
            Ok(python) => python,
            Err(why) => {
                skip_or_fail("moto[server]", &why);
                return None;
            }
        };
        // Port 0: the server takes a free port itself and says which (no race with another
        // test's server for a port picked here).
        let mut child = Command::new(python.with_file_name("moto_server"))
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server starts");
        let mut log = BufReader::new(child.stderr.take().expect("piped"));
        let mut port = None;
        let mut line = String::new();
        while port.is_none() && log.read_line(&mut line).unwrap_or(0) > 0 {
            port = line
                .split("Running on http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.trim().parse::<u16>().ok());
            line.clear();
        }
        // The rest of its log is drained, so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut log, &mut std::io::sink()));
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{}", port.expect("moto_server says its port")),
            python,
        };
        server.tool(&["bucket", BUCKET]);
        Some(server)
    }

    /// The environment a user would set for an S3-compatible server.
    fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("BUCKET", BUCKET.into()),
        ]
    }

    /// Runs [`S3_TOOL`] with `args`; returns what it printed.
    fn tool(&self, args: &[&str]) -> String {
        self.script(S3_TOOL, args)
    }

    /// Runs a Python script in the venv with the server's environment; returns what it printed
    /// and fails the test if it fails.
    fn script(&self, script: &str, args: &[&str]) -> String {
        let output = Command::new(&self.python)
            .arg("-c")
            .arg(script)
            .args(args)
            .envs(self.environment())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "python {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn upload(&self, folder: &Path, prefix: &str) {
        self.tool(&["upload", &folder.to_string_lossy(), prefix]);
    }

    fn download(&self, prefix: &str, folder: &Path) {
        self.tool(&["download", prefix, &folder.to_string_lossy()]);
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        self.tool(&["keys", prefix]).lines().map(str::to_owned).collect()
    }

    /// Runs `fhir2table convert --in input --out out extra...` against the server.
    fn convert(&self, input: &str, out: &str, extra: &[&str]) -> (i32, String) {
        self.convert_with(&[], input, out, extra)
    }

    /// [`S3Server::convert`] with more environment (`env`: a test hook).
    fn convert_with(&self, env: &[(&str, &str)], input: &str, out: &str, extra: &[&str]) -> (i32, String) {
        let output = fhir2table()
            .envs(self.environment())
            .envs(env.iter().copied())
            .args(["convert", "--in", input, "--out", out])
            .args(extra)
            .output()
            .unwrap();
        (
            output.status.code().expect("exited normally"),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An input tree of real fixtures, a few broken files and a file to exclude: what each test
/// converts from local disk and from (or to) the bucket.
fn input_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("synthea"), &dir.path().join("synthea"));
    copy_tree(&fixtures().join("ndjson"), &dir.path().join("ndjson"));
    for bad in ["truncated.json", "lines.ndjson", "cut.ndjson.gz"] {
        std::fs::create_dir_all(dir.path().join("bad")).unwrap();
        std::fs::copy(fixtures().join("bad").join(bad), dir.path().join("bad").join(bad)).unwrap();
    }
    std::fs::write(dir.path().join("ndjson/log.ndjson"), "{\"not\": \"fhir\"}\n").unwrap();
    std::fs::write(dir.path().join("README.md"), "not an input\n").unwrap();
    dir
}

/// Every table of two outputs holds the same rows, cell for cell (`source_file` included).
fn assert_same_tables(expected: &Path, found: &Path) {
    let tables = table_folders(expected);
    assert!(tables.contains(&"patient".to_owned()), "{tables:?}");
    assert_eq!(table_folders(found), tables, "the same tables");
    assert!(!read_table(&expected.join("patient")).sorted_rows().is_empty());
    for table in tables {
        let (want, got) = (
            read_table(&expected.join(&table)),
            read_table(&found.join(&table)),
        );
        let (want, got) = (want.sorted_rows(), got.sorted_rows());
        assert_eq!(got.len(), want.len(), "rows of table {table}");
        if let Some(row) = want.iter().zip(&got).position(|(w, g)| w != g) {
            panic!(
                "table {table}, row {row}: expected {:?}, found {:?}",
                want[row], got[row]
            );
        }
    }
}

/// The parts of two run reports that must agree whatever the storage: inputs, errors, rows.
fn assert_same_reports(expected: &serde_json::Value, found: &serde_json::Value) {
    for key in [
        "inputs",
        "skipped_files",
        "excluded_paths",
        "resources",
        "errors",
        "warnings",
    ] {
        assert_eq!(found[key], expected[key], "report {key}");
    }
    for (table, entry) in expected["tables"].as_object().unwrap() {
        assert_eq!(found["tables"][table]["rows"], entry["rows"], "rows of {table}");
    }
}

#[test]
fn converts_from_a_bucket_as_from_local_disk() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let input = input_tree();
    server.upload(input.path(), "landing/export");
    let flags = ["--view", "default", "--exclude", "log.ndjson", "--threads", "2"];

    let local = tempfile::tempdir().unwrap();
    let (code, stderr) = server.convert(
        &input.path().to_string_lossy(),
        &local.path().to_string_lossy(),
        &flags,
    );
    assert_eq!(code, 1, "the bad files are lost locally: {stderr}");
    let remote = tempfile::tempdir().unwrap();
    let url = format!("s3://{BUCKET}/landing/export");
    let (code, stderr) = server.convert(&url, &remote.path().to_string_lossy(), &flags);
    assert_eq!(code, 1, "and from the bucket: {stderr}");

    assert_same_tables(local.path(), remote.path());
    let (expected, found) = (report(local.path()), report(remote.path()));
    assert_same_reports(&expected, &found);
    assert_eq!(found["inputs"]["failed"], 3, "{found}");
    assert_eq!(found["excluded_paths"][0], "ndjson/log.ndjson", "{found}");
    assert_eq!(found["skipped_files"][0], "README.md", "{found}");

    // --incremental knows an object again by its size and time: the second run converts only
    // the files that failed.
    let incremental = tempfile::tempdir().unwrap();
    let incremental_out = incremental.path().to_string_lossy().into_owned();
    for _ in 0..2 {
        let (code, stderr) = server.convert(
            &url,
            &incremental_out,
            &["--incremental", "--exclude", "log.ndjson"],
        );
        assert_eq!(code, 1, "{stderr}");
    }
    let second = report(incremental.path());
    assert_eq!(second["inputs"]["unchanged"], found["inputs"]["read"], "{second}");
    assert_eq!(second["inputs"]["found"], found["inputs"]["failed"], "{second}");

    // One object named by its URL is an input of its own, as a single local file is.
    let (code, stderr) = server.convert(
        &format!("{url}/ndjson/Patient.ndjson"),
        &remote.path().to_string_lossy(),
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let patients = read_table(&remote.path().join("patient"));
    assert!(!patients.sorted_rows().is_empty());
    assert!(patients
        .column("source_file")
        .iter()
        .all(|file| file.as_deref() == Some("Patient.ndjson")));

    // A prefix with nothing below it is a usage error, as a missing folder is.
    let (code, stderr) = server.convert(
        &format!("s3://{BUCKET}/nothing"),
        &remote.path().to_string_lossy(),
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    // --errors-to a URL gets what a local --errors-to folder gets, byte for byte: copies of the
    // failed inputs and of the bad NDJSON lines, each with its .error.txt.
    let out = remote.path().to_string_lossy().into_owned();
    let local_quarantine = tempfile::tempdir().unwrap();
    let exclude = ["--exclude", "log.ndjson", "--errors-to"];
    let local_folder = local_quarantine.path().to_string_lossy().into_owned();
    let local_flags = [&exclude[..], &[local_folder.as_str()]].concat();
    let (code, stderr) = server.convert(&input.path().to_string_lossy(), &out, &local_flags);
    assert_eq!(code, 1, "{stderr}");
    let quarantine_url = format!("s3://{BUCKET}/quarantine");
    let remote_flags = [&exclude[..], &[quarantine_url.as_str()]].concat();
    let (code, stderr) = server.convert(&url, &out, &remote_flags);
    assert_eq!(code, 1, "{stderr}");
    let quarantined = tempfile::tempdir().unwrap();
    server.download("quarantine", quarantined.path());
    let files = |root: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = walkdir::WalkDir::new(root)
            .into_iter()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_type().is_file())
            .map(|entry| {
                let name = entry
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (name, std::fs::read(entry.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let expected = files(local_quarantine.path());
    assert!(
        expected
            .iter()
            .any(|(name, _)| name == "bad/truncated.json.error.txt"),
        "{expected:?}"
    );
    assert_eq!(files(quarantined.path()), expected);

    // After the commit, the objects read cleanly are archived (copied within the store, then
    // deleted); the failed, skipped and excluded ones stay where they are.
    let archive = format!("s3://{BUCKET}/archived");
    let (code, stderr) = server.convert(&url, &out, &["--exclude", "log.ndjson", "--archive", &archive]);
    assert_eq!(code, 1, "{stderr}");
    let archived = server.keys("archived");
    let moved = report(remote.path())["inputs"]["archived_or_deleted"].clone();
    assert_eq!(moved, found["inputs"]["read"]);
    assert_eq!(serde_json::json!(archived.len()), moved, "{archived:?}");
    assert!(
        archived.contains(&"archived/ndjson/Patient.ndjson".to_owned()),
        "{archived:?}"
    );
    let left: Vec<String> = [
        "README.md",
        "bad/cut.ndjson.gz",
        "bad/lines.ndjson",
        "bad/truncated.json",
        "ndjson/log.ndjson",
    ]
    .iter()
    .map(|name| format!("landing/export/{name}"))
    .collect();
    assert_eq!(server.keys("landing/export"), left);
    // To a local archive folder, they are downloaded, then deleted (here the archived ones).
    let local_archive = tempfile::tempdir().unwrap();
    let (code, stderr) = server.convert(
        &archive,
        &out,
        &["--archive", &local_archive.path().to_string_lossy()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(server.keys("archived").is_empty());
    let downloaded = std::fs::read(local_archive.path().join("ndjson/Patient.ndjson")).unwrap();
    assert_eq!(
        downloaded,
        std::fs::read(input.path().join("ndjson/Patient.ndjson")).unwrap()
    );
    // --delete-processed deletes them.
    server.upload(&fixtures().join("ndjson"), "landing/again");
    let again = format!("s3://{BUCKET}/landing/again");
    let (code, stderr) = server.convert(&again, &out, &["--delete-processed"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(server.keys("landing/again").is_empty());
    // Objects are archived within their store: another bucket is refused before anything is
    // read (exit 2).
    let (code, stderr) = server.convert(&url, &out, &["--archive", "s3://elsewhere/archive"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("another store or bucket"), "{stderr}");
    assert_eq!(server.keys("landing/export"), left, "nothing moved");
}

/// Compares every table of a local Parquet output with the Delta table of the same name on the
/// server, read by delta-rs (`deltalake`) at its newest version; exits non-zero at the first
/// difference. Arguments: the Parquet output, the Delta output's URL. With a third argument
/// `duckdb`, the second is a local copy of the Delta output, read by DuckDB's delta extension
/// (delta-kernel; it cannot reach the test's server without the httpfs extension, which DuckDB
/// cannot download here).
const COMPARE_DELTA: &str = r#"
import datetime, decimal, glob, json, os, sys
import pyarrow.dataset
from deltalake import DeltaTable

parquet_out, delta_url = sys.argv[1], sys.argv[2]
reader = sys.argv[3] if len(sys.argv) > 3 else "deltalake"
if reader == "duckdb":
    import duckdb
    site = glob.glob(os.path.join(sys.prefix, "lib/python*/site-packages"))[0]
    extension = glob.glob(os.path.join(site, "**/delta.duckdb_extension"), recursive=True)[0]
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extension}'")
    con.execute("SET TimeZone = 'UTC'")

def scan(name):
    if reader == "duckdb":
        url = "file://" + os.path.abspath(os.path.join(delta_url, name))
        return con.execute(f"SELECT * FROM delta_scan('{url}')").fetch_arrow_table()
    return DeltaTable(f"{delta_url}/{name}", storage_options=options).to_pyarrow_table()
options = {key: os.environ[key] for key in
           ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ALLOW_HTTP"]}

def canon(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return "ts:" + value.isoformat()
    if isinstance(value, (datetime.date, decimal.Decimal)):
        return str(value)
    if isinstance(value, float):
        return "float:" + repr(value)
    if isinstance(value, list):
        return [canon(v) for v in value]
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    return value

def rows(table):
    names = sorted(table.column_names)
    return names, sorted(json.dumps([canon(r[n]) for n in names]) for r in table.to_pylist())

tables = sorted(t for t in os.listdir(parquet_out) if not t.startswith((".", "_")))
for name in tables:
    expected = rows(pyarrow.dataset.dataset(os.path.join(parquet_out, name), format="parquet").to_table())
    found = rows(scan(name))
    if found[0] != expected[0]:
        sys.exit(f"{name}: columns {found[0]}, expected {expected[0]}")
    if found[1] != expected[1]:
        row = next(i for i, (a, b) in enumerate(zip(found[1] + [None], expected[1] + [None])) if a != b)
        sys.exit(f"{name}: {len(found[1])} rows, expected {len(expected[1])}; first difference at {row}")
    print(name, len(found[1]))
if reader == "duckdb":
    con.close()
# Straight out, without the interpreter's teardown: deltalake's native threads sometimes abort
# it there ("terminate called without an active exception") after every table was compared.
sys.stdout.flush()
os._exit(0)
"#;

/// No staging objects, journal or lock left under an output prefix once a run is done.
fn assert_no_debris(keys: &[String]) {
    let debris: Vec<&String> = keys
        .iter()
        .filter(|key| {
            key.contains("/.fhir2table/_staging-")
                || key.ends_with("/_commit.json")
                || key.ends_with("/_lock")
        })
        .collect();
    assert!(debris.is_empty(), "left behind: {debris:?}");
}

#[test]
fn converts_into_a_bucket_in_both_formats() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let input = input_tree();
    let input_path = input.path().to_string_lossy().into_owned();
    let local = tempfile::tempdir().unwrap();
    let local_out = local.path().to_string_lossy().into_owned();
    let parquet_url = format!("s3://{BUCKET}/lake/parquet");
    let delta_url = format!("s3://{BUCKET}/lake/delta");
    let flags = ["--view", "default", "--exclude", "log.ndjson"];
    let with = |extra: &[&'static str]| [&flags[..], extra].concat();
    let delta_flags = with(&["--format", "delta"]);

    // A bad input is reported and the rest converted, in both formats.
    let (code, stderr) = server.convert(&input_path, &local_out, &flags);
    assert_eq!(code, 1, "{stderr}");
    let (code, stderr) = server.convert(&input_path, &parquet_url, &flags);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("truncated.json"), "{stderr}");
    let (code, stderr) = server.convert(&input_path, &delta_url, &delta_flags);
    assert_eq!(code, 1, "{stderr}");

    let check = |what: &str| {
        let downloaded = tempfile::tempdir().unwrap();
        server.download("lake/parquet", downloaded.path());
        assert_same_tables(local.path(), downloaded.path());
        assert_same_reports(&report(local.path()), &report(downloaded.path()));
        let compared = server.script(COMPARE_DELTA, &[&local_out, &delta_url]);
        assert!(compared.contains("patient "), "{what}: {compared}");
        assert_no_debris(&server.keys("lake"));
    };
    check("first run");

    // Appending adds files beside the first run's, read back whole.
    let append = with(&["--mode", "append"]);
    for (out, extra) in [(&local_out, &append), (&parquet_url, &append)] {
        let (code, stderr) = server.convert(&input_path, out, extra);
        assert_eq!(code, 1, "{stderr}");
    }
    let delta_append = [&delta_flags[..], &["--mode", "append"]].concat();
    let (code, stderr) = server.convert(&input_path, &delta_url, &delta_append);
    assert_eq!(code, 1, "{stderr}");
    check("after the append");

    // Overwriting removes the appended files again (Parquet) or commits a new version (Delta).
    for (out, extra) in [
        (&local_out, &flags[..]),
        (&parquet_url, &flags[..]),
        (&delta_url, &delta_flags[..]),
    ] {
        let (code, stderr) = server.convert(&input_path, out, extra);
        assert_eq!(code, 1, "{stderr}");
    }
    check("after the overwrite");
    let patient_parts = server
        .keys("lake/parquet/patient")
        .iter()
        .filter(|key| key.ends_with(".parquet"))
        .count();
    assert_eq!(patient_parts, 1, "the overwrite removed the earlier parts");

    // One run at a time: a lock object held by another run refuses this one (exit 4), and
    // nothing changes.
    server.tool(&[
        "put",
        "lake/parquet/.fhir2table/_lock",
        "pid=1\nhost=elsewhere\nstarted=then\n",
    ]);
    let before = server.keys("lake/parquet");
    let (code, stderr) = server.convert(&input_path, &parquet_url, &flags);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("elsewhere") && stderr.contains("_lock"),
        "{stderr}"
    );
    assert_eq!(server.keys("lake/parquet"), before, "nothing written");
    server.tool(&["delete", "lake/parquet/.fhir2table/_lock"]);

    // --incremental keeps its state in the bucket: a second run finds every clean input
    // unchanged.
    for _ in 0..2 {
        let (code, stderr) = server.convert(&input_path, &parquet_url, &with(&["--incremental"]));
        assert_eq!(code, 1, "{stderr}");
    }
    let downloaded = tempfile::tempdir().unwrap();
    server.download("lake/parquet", downloaded.path());
    let second = report(downloaded.path());
    assert_eq!(
        second["inputs"]["unchanged"],
        report(local.path())["inputs"]["read"],
        "{second}"
    );
    assert!(downloaded.path().join(".fhir2table/_state.json").is_file());

    // A commit a killed run left half done (its journal and staged object are there) is
    // finished by the next run before anything else, and a dead run's staging objects without a
    // journal are removed.
    let patient = read_table(&downloaded.path().join("patient"));
    let staged = tempfile::tempdir().unwrap();
    let part = "part-20000101T000000.000000Z-1.parquet";
    let first_part = std::fs::read_dir(downloaded.path().join("patient"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    std::fs::copy(&first_part, staged.path().join(part)).unwrap();
    for dead in ["_staging-killed", "_staging-earlier"] {
        server.upload(staged.path(), &format!("lake/parquet/.fhir2table/{dead}/patient"));
    }
    let journal = serde_json::json!({
        "format": 1,
        "staging": "_staging-killed",
        "steps": [{"step": "copy", "from": format!(".fhir2table/_staging-killed/patient/{part}"),
                   "to": format!("patient/{part}")}],
    });
    server.tool(&[
        "put",
        "lake/parquet/.fhir2table/_commit.json",
        &journal.to_string(),
    ]);
    let (code, stderr) = server.convert(&input_path, &parquet_url, &with(&["--mode", "append"]));
    assert_eq!(code, 1, "{stderr}");
    let keys = server.keys("lake/parquet");
    assert!(keys.contains(&format!("lake/parquet/patient/{part}")), "{keys:?}");
    assert_no_debris(&keys);
    let recovered = tempfile::tempdir().unwrap();
    server.download("lake/parquet/patient", recovered.path());
    let rows = read_table(recovered.path()).sorted_rows().len();
    let added = common::read_files(&[first_part]).sorted_rows().len();
    let appended = report(local.path())["tables"]["patient"]["rows"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(
        rows,
        patient.sorted_rows().len() + added + appended,
        "the replayed part and the append"
    );

    // An output keeps its format.
    let (code, stderr) = server.convert(&input_path, &delta_url, &flags);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--format delta"), "{stderr}");
}

/// A wide resource table's part rolls over into more files while the run goes on
/// (`<part>_000001.parquet`, ...): every one of them lands in the bucket, in both formats, on
/// the first run and on an append. The test hook cuts the files at two rows.
#[test]
fn rolled_over_resource_table_parts_land_whole_in_a_bucket() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let input = fixtures().join("lossless");
    let input_path = input.to_string_lossy().into_owned();
    let hook = [(fhir2table::sink::WIDE_ROWS_PER_FILE_VARIABLE, "2")];
    let local = tempfile::tempdir().unwrap();
    let local_out = local.path().to_string_lossy().into_owned();
    let parquet_url = format!("s3://{BUCKET}/rolled/parquet");
    let delta_url = format!("s3://{BUCKET}/rolled/delta");
    let flags = vec!["--resources", "all", "--batch-size", "1"];
    let append = [&flags[..], &["--mode", "append"]].concat();
    let delta = [&flags[..], &["--format", "delta"]].concat();
    let delta_append = [&delta[..], &["--mode", "append"]].concat();
    let parquet_keys = |table: &str| -> usize {
        let keys = server.keys(&format!("rolled/parquet/{table}"));
        keys.iter().filter(|key| key.ends_with(".parquet")).count()
    };
    for (run, (parquet, delta)) in [(&flags, &delta), (&append, &delta_append)]
        .into_iter()
        .enumerate()
    {
        for (out, extra) in [
            (&local_out, parquet),
            (&parquet_url, parquet),
            (&delta_url, delta),
        ] {
            // Exit 1: the built-in patient table refuses two hand-made patients, as ever.
            let (code, stderr) = server.convert_with(&hook, &input_path, out, extra);
            assert_eq!(code, 1, "run {run} into {out}: {stderr}");
        }
        let local_files = read_table(&local.path().join("resource_patient")).files;
        assert!(
            local_files >= 4 * (run + 1),
            "the hook rolls parts over: {local_files} files"
        );
        assert_eq!(parquet_keys("resource_patient"), local_files, "run {run}");
        let downloaded = tempfile::tempdir().unwrap();
        server.download("rolled/parquet", downloaded.path());
        assert_same_tables(local.path(), downloaded.path());
        let compared = server.script(COMPARE_DELTA, &[&local_out, &delta_url]);
        assert!(compared.contains("resource_patient "), "run {run}: {compared}");
        assert!(
            compared.contains("resource_observation "),
            "run {run}: {compared}"
        );
        assert_no_debris(&server.keys("rolled"));
    }
}

/// The library's own uploads and reads against the server: a file over the part size goes up
/// as a multipart upload (S3 names such an object's ETag by its part count) and comes back
/// byte for byte, also through a range request. In-process, so the environment is set here;
/// `std::env::set_var` and the other tests' process spawns share std's environment lock.
#[test]
fn uploads_big_files_in_parts_and_reads_ranges_back() {
    use std::io::Read;
    let Some(server) = S3Server::start() else {
        return;
    };
    for (key, value) in server.environment() {
        std::env::set_var(key, value);
    }
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("big.bin");
    // 20 MiB and a bit of bytes that do not repeat in step with the 8 MiB parts.
    let content: Vec<u8> = (0..(20u64 << 20) + 123).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&local, &content).unwrap();
    let location = fhir2table::remote::Location::parse(&format!("s3://{BUCKET}/uploads")).unwrap();
    location.upload("big.bin", &local).unwrap();
    let etag = server.tool(&["etag", "uploads/big.bin"]);
    assert!(
        etag.trim().trim_matches('"').ends_with("-3"),
        "three parts: {etag}"
    );
    let back = tempfile::tempdir().unwrap();
    server.download("uploads", back.path());
    assert!(
        std::fs::read(back.path().join("big.bin")).unwrap() == content,
        "the same bytes"
    );
    let mut range = Vec::new();
    let window = (9u64 << 20) - 5..(9u64 << 20) + 70;
    location
        .reader("big.bin", Some(window.clone()))
        .unwrap()
        .read_to_end(&mut range)
        .unwrap();
    assert_eq!(range, &content[window.start as usize..window.end as usize]);
}

#[test]
fn four_concurrent_shards_commit_one_delta_table_per_table_into_the_bucket() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let input = fixtures();
    let input_path = input.to_string_lossy().into_owned();
    let local = tempfile::tempdir().unwrap();
    let local_out = local.path().to_string_lossy().into_owned();
    let (code, stderr) = server.convert(&input_path, &local_out, &["--view", "default"]);
    assert!(code <= 1, "{stderr}");
    let url = format!("s3://{BUCKET}/sharded");
    let shards: Vec<_> = (0..4)
        .map(|index| {
            Command::new(env!("CARGO_BIN_EXE_fhir2table"))
                .envs(server.environment())
                .args(["convert", "--in", &input_path, "--out", &url, "--format", "delta"])
                .args(["--view", "default", "--shard", &format!("{index}/4")])
                .env_remove("JOB_COMPLETION_INDEX")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut committers = 0;
    for shard in shards {
        let output = shard.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(matches!(output.status.code(), Some(0 | 1)), "{stderr}");
        committers += usize::from(stderr.contains("committed all 4 shards"));
    }
    assert_eq!(committers, 1, "exactly one shard commits");
    // delta-rs reads every table from the bucket; DuckDB reads a copy of it.
    let compared = server.script(COMPARE_DELTA, &[&local_out, &url]);
    assert!(
        compared.lines().count() > 10 && compared.contains("patient "),
        "{compared}"
    );
    let keys = server.keys("sharded");
    assert_no_debris(&keys);
    assert!(
        !keys.iter().any(|key| key.contains("/_shards/")),
        "the commit removed the shards"
    );
    let copy = tempfile::tempdir().unwrap();
    server.download("sharded", copy.path());
    let copy_path = copy.path().to_string_lossy().into_owned();
    let compared = server.script(COMPARE_DELTA, &[&local_out, &copy_path, "duckdb"]);
    assert!(compared.contains("patient "), "{compared}");
    // The merged report counts what the single run counted. (Its examples of unresolved
    // references may be others: the commit resolves four parts per table, not one.)
    assert_eq!(
        report_essentials(&report(copy.path())),
        report_essentials(&report(local.path()))
    );
}
