//! `--in` and `--out` on object storage, against a real S3-protocol server: moto's server
//! (`moto_server`, pinned) started by each test on 127.0.0.1 at a free port, with a bucket. The
//! fhir2table binary reaches it through the standard AWS variables (`AWS_ENDPOINT_URL`, keys,
//! region, `AWS_ALLOW_HTTP`), as a user would. Objects are put and fetched with boto3, which
//! shares no code with fhir2table's object_store, and every table is compared cell for cell with
//! a run on local disk over the same files. Without a venv or PyPI the tests are skipped with a
//! note, and fail when `CI` is set.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fhir2table, fixtures, read_table, skip_or_fail, table_folders};

/// The server and the readers, pinned.
const PACKAGES: [&str; 3] = ["moto[server]==5.2.5", "pyarrow==26.0.1", "deltalake==1.6.6"];

/// The bucket every test works in (each test has a server of its own).
const BUCKET: &str = "fhir";

/// boto3 against the test's server: `bucket NAME`, `upload DIR PREFIX` (every file below DIR,
/// keys PREFIX/relative path), `download PREFIX DIR`, `keys PREFIX` (prints one key a line).
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

/// A moto S3 server on 127.0.0.1, killed when dropped.
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
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(python.with_file_name("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            python,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start listening");
            std::thread::sleep(Duration::from_millis(100));
        }
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
        let output = Command::new(&self.python)
            .arg("-c")
            .arg(S3_TOOL)
            .args(args)
            .envs(self.environment())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "s3 tool {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn upload(&self, folder: &Path, prefix: &str) {
        self.tool(&["upload", &folder.to_string_lossy(), prefix]);
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        self.tool(&["keys", prefix]).lines().map(str::to_owned).collect()
    }

    /// Runs `fhir2table convert --in input --out out extra...` against the server.
    fn convert(&self, input: &str, out: &str, extra: &[&str]) -> (i32, String) {
        let output = fhir2table()
            .envs(self.environment())
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

/// Copies the folder `from` into `to` (created), files only.
fn copy_folder(from: &Path, to: &Path) {
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

/// An input tree of real fixtures, a few broken files and a file to exclude: what each test
/// converts from local disk and from (or to) the bucket.
fn input_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_folder(&fixtures().join("synthea"), &dir.path().join("synthea"));
    copy_folder(&fixtures().join("ndjson"), &dir.path().join("ndjson"));
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

fn report(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join(".fhir2table/_run.json")).unwrap();
    serde_json::from_str(&text).unwrap()
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
    // Moving or deleting objects is refused before anything is read.
    let (code, stderr) = server.convert(&url, &remote.path().to_string_lossy(), &["--delete-processed"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("OBJECT-STORAGE.md"), "{stderr}");
    assert!(!server.keys("landing/export").is_empty(), "nothing deleted");
}
