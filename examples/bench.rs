//! The benchmark: generates Synthea-like input of a requested size from the fixtures, runs
//! fhir2table on it, a parse-only baseline (serde_json into `IgnoredAny` on all cores) and, where
//! the `duckdb` Python package is installed, DuckDB's `read_json_objects` extraction of the same
//! tables, and prints one table of MB/s, resources/s and peak RSS with ratios.
//!
//! ```text
//! cargo build --release && cargo run --release --example bench -- --size-mb 500
//! ```
//!
//! Options: `--size-mb N` (default 500), `--formats bundle,ndjson`, `--threads 1,2` (fhir2table
//! runs), `--views` (views runs, see below), `--no-duckdb`, `--data DIR` (where inputs are
//! generated and cached, default `bench/data`), `--single-files` (also one 200 MB Bundle and one
//! 1 GB NDJSON file, for memory: `--single-bundle-mb`, `--single-ndjson-mb` change the sizes).
//!
//! `--views` adds, with the most threads asked for: `--view default` plus the built-in tables;
//! five shipped views alone ([`FIVE_VIEWS`]) and 50 views alone (ten copies of each, same types);
//! the built-in tables plus one view of a type the input lacks; and DuckDB extracting the five
//! views' columns, against which the view runs' "vs DuckDB" is computed. It ends each table with
//! the figures issue 12's targets are stated in.
//!
//! `--resources` adds, with the most threads asked for: `--resources all` plus the built-in
//! tables (every resource type as a lossless table, docs/LOSSLESS.md), and `export` of those
//! tables back to NDJSON, with the figures issue 14's targets are stated in.
//!
//! `--instructions` also counts, with valgrind's callgrind on one thread, the instructions the
//! built-in tables' run executes (and, with `--resources`, the `--resources all` run): counts
//! that do not move with the machine's load, where a 2-core cloud machine's wall times swing by
//! up to 2x within the hour. Each counted run takes about 50x its time; valgrind must be
//! installed (the option says so when it is not).
//!
//! Every timed command's input is read once, untimed, just before it runs
//! ([`read_into_page_cache`]), so that no figure includes reading from disk.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::de::IgnoredAny;
use serde_json::Value;

/// Patient bundles replicated to build inputs (the hospital/practitioner bundles are copied once).
const SOURCE_FOLDERS: &[&str] = &[
    "fixtures/synthea/smart",
    "fixtures/synthea/pathling-collection",
    "fixtures/synthea/pathling-conditional",
];

/// NDJSON files are split at this size, like Bulk Data servers do (`Observation.003.ndjson`).
const NDJSON_PART_BYTES: u64 = 64 << 20;

/// The shipped views DuckDB's views row extracts the columns of (`views/<name>.json`): the
/// common Synthea types with a view (there is no encounter view: encounters are a built-in table).
const FIVE_VIEWS: &[&str] = &[
    "observation",
    "condition",
    "procedure",
    "medication_request",
    "immunization",
];

/// Copies of each of [`FIVE_VIEWS`] in the many-views run: 50 views over the same five types, so
/// it parses what the five-views run parses and differs only in the views evaluated and written.
const VIEW_COPIES: usize = 10;

/// A resource type the generated input does not hold (the bench warns if it does).
const ABSENT_TYPE: &str = "Basic";

/// A view of [`ABSENT_TYPE`], shaped like the shipped views.
const ABSENT_TYPE_VIEW: &str = r#"{
  "resourceType": "ViewDefinition",
  "name": "basic",
  "resource": "Basic",
  "select": [{ "column": [
    { "name": "id", "path": "getResourceKey()", "type": "id" },
    { "name": "patient_id", "path": "subject.getReferenceKey(Patient)", "type": "string" },
    { "name": "code_code", "path": "code.coding.code.first()", "type": "code" },
    { "name": "created", "path": "created", "type": "date" }
  ] }]
}
"#;

struct Options {
    size_mb: u64,
    formats: Vec<String>,
    threads: Vec<usize>,
    views: bool,
    resources: bool,
    instructions: bool,
    duckdb: bool,
    data: PathBuf,
    single_files: bool,
    single_bundle_mb: u64,
    single_ndjson_mb: u64,
}

fn parse_options() -> Options {
    let mut options = Options {
        size_mb: 500,
        formats: vec!["bundle".into(), "ndjson".into()],
        threads: vec![1, 2],
        views: false,
        resources: false,
        instructions: false,
        duckdb: true,
        data: PathBuf::from("bench/data"),
        single_files: false,
        single_bundle_mb: 200,
        single_ndjson_mb: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--size-mb" => options.size_mb = value().parse().expect("--size-mb takes a number"),
            "--formats" => options.formats = value().split(',').map(str::to_owned).collect(),
            "--threads" => {
                options.threads = value()
                    .split(',')
                    .map(|t| t.parse().expect("--threads takes numbers"))
                    .collect()
            }
            "--views" => options.views = true,
            "--resources" => options.resources = true,
            "--instructions" => options.instructions = true,
            "--no-duckdb" => options.duckdb = false,
            "--data" => options.data = PathBuf::from(value()),
            "--single-files" => options.single_files = true,
            "--single-bundle-mb" => options.single_bundle_mb = value().parse().expect("a number"),
            "--single-ndjson-mb" => options.single_ndjson_mb = value().parse().expect("a number"),
            other => panic!("unknown option {other} (see the top of examples/bench.rs)"),
        }
    }
    options
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--baseline-child") {
        let args: Vec<String> = std::env::args().collect();
        baseline(Path::new(&args[2]), &args[3]);
        return;
    }
    let options = parse_options();
    let binary = sibling_binary("fhir2table");
    println!(
        "fhir2table benchmark: {} MB per format, machine: {}",
        options.size_mb,
        machine()
    );
    let view_threads = options.threads.iter().max().copied().unwrap_or(2);
    let view_sets = options.views.then(ViewSets::write);
    let mut results = Vec::new();
    for format in &options.formats {
        let input = generate(&options.data, format, options.size_mb);
        let bytes = folder_bytes(&input);
        let out = std::env::temp_dir().join(format!("fhir2table-bench-out-{}", std::process::id()));
        let baseline_run = measure(
            &input,
            Command::new(std::env::current_exe().unwrap()).args([
                "--baseline-child",
                input.to_str().unwrap(),
                format,
            ]),
        );
        let mut rows = vec![Row {
            kind: RunKind::Baseline,
            label: "parse-only baseline (IgnoredAny, 2 threads)".to_owned(),
            run: baseline_run,
        }];
        let mut notes = Vec::new();
        let mut resources = 0;
        let mut five_view_rows = BTreeMap::new();
        let mut runs: Vec<(RunKind, String, Vec<String>)> = options
            .threads
            .iter()
            .map(|&t| {
                (
                    RunKind::BuiltinTables(t),
                    format!("fhir2table, {t} thread(s)"),
                    vec!["--threads".into(), t.to_string()],
                )
            })
            .collect();
        if let Some(sets) = &view_sets {
            runs.extend(sets.runs(view_threads));
        }
        if options.resources {
            runs.push((
                RunKind::ResourceTables,
                format!("fhir2table --resources all + built-in tables, {view_threads} threads"),
                vec![
                    "--threads".into(),
                    view_threads.to_string(),
                    "--resources".into(),
                    "all".into(),
                ],
            ));
        }
        for (kind, label, extra) in runs {
            let _ = fs::remove_dir_all(&out);
            let mut command = Command::new(&binary);
            command
                .args(["convert", "-q", "--in"])
                .arg(&input)
                .arg("--out")
                .arg(&out)
                .args(&extra);
            let run = measure(&input, &mut command);
            let report: Value =
                serde_json::from_str(&fs::read_to_string(out.join(".fhir2table/_run.json")).unwrap())
                    .unwrap();
            if resources == 0 {
                resources = report["resources"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(kind, _)| *kind != "Bundle")
                    .map(|(_, n)| n.as_u64().unwrap())
                    .sum();
            }
            match kind {
                RunKind::FiveViews => five_view_rows = table_rows(&report),
                RunKind::AbsentTypeView if report["resources"].get(ABSENT_TYPE).is_some() => notes
                    .push(format!(
                        "warning: the input holds {ABSENT_TYPE} resources, so the view of it is not of an absent type"
                    )),
                _ => {}
            }
            rows.push(Row { kind, label, run });
            if kind == RunKind::ResourceTables {
                let exports: [(&[&str], &str); 2] = [
                    (&[], "fhir2table export of the resource tables to NDJSON"),
                    (&["--bundles"], "fhir2table export --bundles (Bundles rebuilt)"),
                ];
                for (extra, label) in exports {
                    let exported = out.with_extension("export");
                    let _ = fs::remove_dir_all(&exported);
                    let run = measure(
                        &out,
                        Command::new(&binary)
                            .args(["export", "-q"])
                            .arg(&out)
                            .arg("--to")
                            .arg(&exported)
                            .args(extra),
                    );
                    let written = folder_bytes(&exported);
                    let tables = tree_bytes(&out);
                    notes.push(format!(
                        "resource tables: {:.0} MB of Parquet; {label} wrote {:.0} MB of NDJSON \
                         ({:.0} MB/s of NDJSON written)",
                        tables as f64 / 1e6,
                        written as f64 / 1e6,
                        written as f64 / 1e6 / run.seconds
                    ));
                    rows.push(Row {
                        kind: RunKind::Export,
                        label: label.to_owned(),
                        run,
                    });
                    let _ = fs::remove_dir_all(&exported);
                }
            }
        }
        let _ = fs::remove_dir_all(&out);
        if options.instructions {
            notes.push(instruction_counts(
                &binary,
                &input,
                &out,
                bytes,
                options.resources,
            ));
        }
        if options.duckdb && duckdb_available() {
            let run = measure(
                &input,
                Command::new("python3")
                    .args(["-c", DUCKDB_SCRIPT])
                    .arg(&input)
                    .arg(format)
                    .arg(&out),
            );
            rows.push(Row {
                kind: RunKind::DuckdbBuiltinTables,
                label: "DuckDB read_json_objects (patient + encounter columns)".to_owned(),
                run,
            });
            let _ = fs::remove_dir_all(&out);
            if options.views {
                let run = measure(
                    &input,
                    Command::new("python3")
                        .args(["-c", DUCKDB_VIEWS_SCRIPT])
                        .arg(&input)
                        .arg(format)
                        .arg(&out),
                );
                let duckdb_rows: BTreeMap<String, u64> =
                    serde_json::from_str(&fs::read_to_string(out.join("counts.json")).unwrap()).unwrap();
                notes.push(compare_rows(&five_view_rows, &duckdb_rows));
                rows.push(Row {
                    kind: RunKind::DuckdbViews,
                    label: format!("DuckDB, {} views' columns", FIVE_VIEWS.len()),
                    run,
                });
                let _ = fs::remove_dir_all(&out);
            }
        }
        results.push(InputResult {
            format: format.clone(),
            bytes,
            resources,
            rows,
            notes,
        });
    }
    if let Some(sets) = view_sets {
        let _ = fs::remove_dir_all(sets.root);
    }
    print_table(&results, view_threads);
    if options.single_files {
        single_files(&options, &binary);
    }
}

/// The view folders of the `--views` runs, written once to a temporary folder.
struct ViewSets {
    root: PathBuf,
    five: PathBuf,
    fifty: PathBuf,
    absent_type: PathBuf,
    /// How many views `--view default` selects (the files in `views/`).
    default_count: usize,
}

impl ViewSets {
    /// [`FIVE_VIEWS`] copied from `views/`; [`VIEW_COPIES`] of each under other names
    /// (`observation_copy1`, ...); the view of [`ABSENT_TYPE`].
    fn write() -> ViewSets {
        let root = std::env::temp_dir().join(format!("fhir2table-bench-views-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let sets = ViewSets {
            five: root.join("five"),
            fifty: root.join("fifty"),
            absent_type: root.join("absent-type"),
            default_count: fs::read_dir("views")
                .expect("the bench runs from the repository's root (views/)")
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "json")
                })
                .count(),
            root,
        };
        for folder in [&sets.five, &sets.fifty, &sets.absent_type] {
            fs::create_dir_all(folder).unwrap();
        }
        for name in FIVE_VIEWS {
            let text = fs::read_to_string(Path::new("views").join(format!("{name}.json"))).unwrap();
            fs::write(sets.five.join(format!("{name}.json")), &text).unwrap();
            let mut view: Value = serde_json::from_str(&text).unwrap();
            for copy in 0..VIEW_COPIES {
                let copy_name = match copy {
                    0 => name.to_string(),
                    n => format!("{name}_copy{n}"),
                };
                view["name"] = Value::String(copy_name.clone());
                fs::write(
                    sets.fifty.join(format!("{copy_name}.json")),
                    serde_json::to_string_pretty(&view).unwrap(),
                )
                .unwrap();
            }
        }
        fs::write(sets.absent_type.join("basic.json"), ABSENT_TYPE_VIEW).unwrap();
        sets
    }

    /// The fhir2table runs `--views` adds: label and arguments after `--out`.
    fn runs(&self, threads: usize) -> Vec<(RunKind, String, Vec<String>)> {
        let folder = |path: &Path| path.to_str().unwrap().to_owned();
        let five = FIVE_VIEWS.len();
        let with = |flags: &[&str], view: String| {
            let mut args = vec![
                "--threads".to_owned(),
                threads.to_string(),
                "--view".to_owned(),
                view,
            ];
            args.extend(flags.iter().map(|flag| flag.to_string()));
            args
        };
        vec![
            (
                RunKind::DefaultViews,
                format!(
                    "fhir2table --view default ({} views) + built-in tables, {threads} threads",
                    self.default_count
                ),
                with(&[], "default".to_owned()),
            ),
            (
                RunKind::FiveViews,
                format!("fhir2table, the {five} views alone, {threads} threads"),
                with(&["--no-builtin-tables"], folder(&self.five)),
            ),
            (
                RunKind::FiftyViews,
                format!(
                    "fhir2table, {} views ({VIEW_COPIES} copies of the {five}) alone, {threads} threads",
                    five * VIEW_COPIES
                ),
                with(&["--no-builtin-tables"], folder(&self.fifty)),
            ),
            (
                RunKind::AbsentTypeView,
                format!("fhir2table, built-in tables + a view of {ABSENT_TYPE} (absent), {threads} threads"),
                with(&[], folder(&self.absent_type)),
            ),
        ]
    }
}

/// Rows per table in a run report.
fn table_rows(report: &Value) -> BTreeMap<String, u64> {
    report["tables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(table, entry)| (table.clone(), entry["rows"].as_u64().unwrap()))
        .collect()
}

/// Whether DuckDB's views row wrote as many rows per table as fhir2table's five-views run: a
/// check that the two did the same work.
fn compare_rows(fhir2table: &BTreeMap<String, u64>, duckdb: &BTreeMap<String, u64>) -> String {
    let listed = |rows: &BTreeMap<String, u64>| {
        rows.iter()
            .map(|(table, n)| format!("{table} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if fhir2table == duckdb {
        format!(
            "Rows per view, the same from fhir2table and DuckDB: {}.",
            listed(duckdb)
        )
    } else {
        format!(
            "warning: rows per view differ: fhir2table {}; DuckDB {}.",
            listed(fhir2table),
            listed(duckdb)
        )
    }
}

/// Memory on one big file: a Bundle is parsed whole (about its size is needed), NDJSON streams.
fn single_files(options: &Options, binary: &Path) {
    println!("\n### single files (2 threads)\n");
    println!("| input | MB | wall s | MB/s | peak RSS MB | RSS / input |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (kind, size) in [
        ("bundle", options.single_bundle_mb),
        ("ndjson", options.single_ndjson_mb),
    ] {
        let file = generate_single(&options.data, kind, size);
        let mb = fs::metadata(&file).unwrap().len() as f64 / 1e6;
        let out = std::env::temp_dir().join(format!("fhir2table-bench-single-{}", std::process::id()));
        let _ = fs::remove_dir_all(&out);
        let run = measure(
            &file,
            Command::new(binary)
                .args(["convert", "-q", "--in"])
                .arg(&file)
                .arg("--out")
                .arg(&out),
        );
        let _ = fs::remove_dir_all(&out);
        println!(
            "| one {kind} file | {mb:.0} | {:.2} | {:.0} | {:.0} | {:.2} |",
            run.seconds,
            mb / run.seconds,
            run.peak_rss_mb,
            run.peak_rss_mb / mb
        );
    }
}

/// One file of about `size_mb`: all generated entries in one Bundle, or all lines in one NDJSON.
fn generate_single(data: &Path, kind: &str, size_mb: u64) -> PathBuf {
    // Bundle entries are written compact, about half their pretty-printed size: start from more.
    let source = generate(data, kind, if kind == "bundle" { size_mb * 2 } else { size_mb });
    let path = data.join(format!(
        "single-{kind}-{size_mb}mb.{}",
        if kind == "bundle" { "json" } else { "ndjson" }
    ));
    if path.exists() {
        return path;
    }
    eprintln!("writing {} ...", path.display());
    let mut out = std::io::BufWriter::new(fs::File::create(&path).unwrap());
    if kind == "ndjson" {
        for file in input_files(&source) {
            std::io::copy(&mut fs::File::open(file).unwrap(), &mut out).unwrap();
        }
    } else {
        out.write_all(b"{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[\n")
            .unwrap();
        let mut written = 0u64;
        'files: for file in input_files(&source) {
            let bundle: Value = serde_json::from_str(&fs::read_to_string(file).unwrap()).unwrap();
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                if written > 0 {
                    out.write_all(b",\n").unwrap();
                }
                let text = serde_json::to_string(entry).unwrap();
                out.write_all(text.as_bytes()).unwrap();
                written += text.len() as u64 + 2;
                if written >= size_mb * 1_000_000 {
                    break 'files;
                }
            }
        }
        out.write_all(b"\n]}\n").unwrap();
    }
    out.flush().unwrap();
    path
}

/// Wall time and peak resident memory of a child process.
#[derive(Clone, Copy)]
struct Measurement {
    seconds: f64,
    peak_rss_mb: f64,
}

/// Runs the command; `wait4` reaps the child and reports its own peak RSS (`Child::wait` would not).
#[allow(clippy::zombie_processes)]
fn measure(reads: &Path, command: &mut Command) -> Measurement {
    read_into_page_cache(reads);
    let start = Instant::now();
    let child = command.stdout(Stdio::null()).spawn().expect("the command starts");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid we hold, with valid pointers.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    assert!(waited > 0, "wait4 failed");
    assert!(
        libc::WIFEXITED(status),
        "the benchmarked command crashed: {command:?}"
    );
    let code = libc::WEXITSTATUS(status);
    assert!(
        code == 0 || code == 1,
        "the benchmarked command failed with {code}: {command:?}"
    );
    Measurement {
        seconds,
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

/// The note of `--instructions`: what the built-in tables' run (and, when `resources`, the
/// `--resources all` run) executes on one thread, per byte of `bytes` of input, and the ratio
/// of the two.
fn instruction_counts(binary: &Path, input: &Path, out: &Path, bytes: u64, resources: bool) -> String {
    let Some(builtin) = count_instructions(binary, input, out, &[]) else {
        return "instructions: not counted (valgrind is not installed)".to_owned();
    };
    let per_byte = |count: u64| count as f64 / bytes as f64;
    let mut note = format!(
        "instructions (callgrind, 1 thread): built-in tables {:.2} G ({:.1} per input byte)",
        builtin as f64 / 1e9,
        per_byte(builtin)
    );
    if resources {
        let all = count_instructions(binary, input, out, &["--resources", "all"])
            .expect("valgrind ran the built-in tables' run");
        note.push_str(&format!(
            "; --resources all + built-in tables {:.2} G ({:.1} per byte), {:.2}x the built-in tables",
            all as f64 / 1e9,
            per_byte(all),
            all as f64 / builtin as f64
        ));
    }
    note
}

/// The instructions `fhir2table convert` executes on `input` on one thread with `extra`
/// arguments, as valgrind's callgrind counts them (its `I refs` total); `None` when valgrind
/// cannot be started.
fn count_instructions(binary: &Path, input: &Path, out: &Path, extra: &[&str]) -> Option<u64> {
    let _ = fs::remove_dir_all(out);
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(binary)
        .args(["convert", "-q", "--threads", "1", "--in"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let _ = fs::remove_dir_all(out);
    let code = output.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "the counted run failed ({code:?}): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let total = stderr
        .lines()
        .find_map(|line| line.split_once("I   refs:"))
        .map(|(_, count)| count.trim().replace(',', ""))
        .expect("callgrind prints its instruction total");
    Some(total.parse().expect("the total is a number"))
}

/// Reads every file under `path` (a file or a folder) once, untimed, so that the timed run reads
/// its input from memory. This machine's page cache does not keep a bench input between runs:
/// 150 MB of the 500 MB of Bundles were dropped within the hour with 17 GB free, and a run
/// that then reads from disk measures the disk (one `--resources all` run waited 0.5-0.7 s of
/// its workers' time in `read`).
fn read_into_page_cache(path: &Path) {
    let mut sink = std::io::sink();
    for entry in walkdir::WalkDir::new(path).into_iter().filter_map(Result::ok) {
        if entry.file_type().is_file() {
            if let Ok(mut file) = fs::File::open(entry.path()) {
                let _ = std::io::copy(&mut file, &mut sink);
            }
        }
    }
}

/// What a row measured, so that each run is read against the runs doing the same work.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Baseline,
    /// The built-in tables alone, with this many threads.
    BuiltinTables(usize),
    /// `--view default` plus the built-in tables.
    DefaultViews,
    /// The views DuckDB's views row extracts, without the built-in tables.
    FiveViews,
    /// [`VIEW_COPIES`] copies of each of those views, without the built-in tables.
    FiftyViews,
    /// The built-in tables plus one view of a resource type the input does not hold.
    AbsentTypeView,
    DuckdbBuiltinTables,
    DuckdbViews,
    /// `--resources all` plus the built-in tables.
    ResourceTables,
    /// `export` (also `--bundles`) of that run's resource tables.
    Export,
}

impl RunKind {
    /// The DuckDB row doing comparable work: the views' extraction for view runs, else the
    /// patient + encounter extraction.
    fn duckdb_counterpart(self) -> RunKind {
        match self {
            RunKind::DefaultViews | RunKind::FiveViews | RunKind::FiftyViews | RunKind::DuckdbViews => {
                RunKind::DuckdbViews
            }
            _ => RunKind::DuckdbBuiltinTables,
        }
    }
}

/// One measured run of the table.
struct Row {
    kind: RunKind,
    label: String,
    run: Measurement,
}

/// The runs on one input, and what the bench found worth saying about them.
struct InputResult {
    format: String,
    bytes: u64,
    resources: u64,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl InputResult {
    fn seconds(&self, kind: RunKind) -> Option<f64> {
        self.rows
            .iter()
            .find(|row| row.kind == kind)
            .map(|row| row.run.seconds)
    }
}

fn print_table(results: &[InputResult], view_threads: usize) {
    println!(
        "\nvs DuckDB: speed relative to the DuckDB row doing comparable work (view runs: the \
         views' columns; the others: patient + encounter columns). time / built-in: wall time \
         relative to `fhir2table, {view_threads} thread(s)`."
    );
    for result in results {
        let InputResult {
            format,
            bytes,
            resources,
            rows,
            notes,
        } = result;
        let mb = *bytes as f64 / 1e6;
        println!("\n### {format}: {mb:.0} MB, {resources} resources\n");
        println!(
            "| run | wall s | MB/s | resources/s | peak RSS MB | vs baseline | time / built-in | vs DuckDB |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let baseline = rows[0].run.seconds;
        let builtin = result.seconds(RunKind::BuiltinTables(view_threads));
        for Row { kind, label, run: m } in rows {
            let vs_duckdb = result
                .seconds(kind.duckdb_counterpart())
                .map_or("n/a".to_owned(), |d| format!("{:.2}x", d / m.seconds));
            let vs_builtin = builtin.map_or("n/a".to_owned(), |b| format!("{:.2}", m.seconds / b));
            println!(
                "| {label} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0}% | {vs_builtin} | {vs_duckdb} |",
                m.seconds,
                mb / m.seconds,
                *resources as f64 / m.seconds,
                m.peak_rss_mb,
                100.0 * baseline / m.seconds,
            );
        }
        print_against_targets(result, builtin);
        for note in notes {
            println!("\n{note}");
        }
    }
}

/// The issue 12 targets that can be read off one input's rows (printed only when measured).
fn print_against_targets(result: &InputResult, builtin: Option<f64>) {
    let views = result.seconds(RunKind::DefaultViews);
    let mut lines = Vec::new();
    if let (Some(views), Some(duckdb)) = (views, result.seconds(RunKind::DuckdbViews)) {
        lines.push(format!(
            "`--view default` MB/s / DuckDB {} views' MB/s: {:.2}x (target: at least 2x)",
            FIVE_VIEWS.len(),
            duckdb / views
        ));
    }
    if let (Some(views), Some(builtin)) = (views, builtin) {
        lines.push(format!(
            "`--view default` time / built-in tables alone: {:.2} (target: at most 2)",
            views / builtin
        ));
    }
    if let (Some(fifty), Some(five)) = (
        result.seconds(RunKind::FiftyViews),
        result.seconds(RunKind::FiveViews),
    ) {
        lines.push(format!(
            "{} views time / {} views time: {:.2} (target: under 2)",
            FIVE_VIEWS.len() * VIEW_COPIES,
            FIVE_VIEWS.len(),
            fifty / five
        ));
    }
    if let (Some(absent), Some(builtin)) = (result.seconds(RunKind::AbsentTypeView), builtin) {
        lines.push(format!(
            "a view of {ABSENT_TYPE} (absent) on top of the built-in tables: {:+.2} s ({:+.0}%) \
             (target: nothing measurable; single runs vary by about ±15% here)",
            absent - builtin,
            100.0 * (absent - builtin) / builtin
        ));
    }
    let fhir2table_rows = result.rows.iter().filter(|row| {
        !matches!(
            row.kind,
            RunKind::Baseline | RunKind::DuckdbBuiltinTables | RunKind::DuckdbViews
        )
    });
    let highest = fhir2table_rows.max_by(|a, b| a.run.peak_rss_mb.total_cmp(&b.run.peak_rss_mb));
    let default_views = result.rows.iter().find(|row| row.kind == RunKind::DefaultViews);
    if let (Some(default_views), Some(highest)) = (default_views, highest) {
        lines.push(format!(
            "peak RSS of `--view default` + built-in tables: {:.0} MB (target: under 200 MB); \
             highest of the fhir2table runs: {:.0} MB ({})",
            default_views.run.peak_rss_mb, highest.run.peak_rss_mb, highest.label
        ));
    }
    if let (Some(resources), Some(builtin)) = (result.seconds(RunKind::ResourceTables), builtin) {
        let rss = result
            .rows
            .iter()
            .find(|row| row.kind == RunKind::ResourceTables)
            .map_or(0.0, |row| row.run.peak_rss_mb);
        lines.push(format!(
            "`--resources all` + built-in tables time / built-in tables alone: {:.2} (issue 14 \
             target: at most 3); its peak RSS: {rss:.0} MB (target: under 300 MB)",
            resources / builtin
        ));
    }
    if !lines.is_empty() {
        println!("\nAgainst issue 12's and issue 14's targets:\n");
        for line in lines {
            println!("- {line}");
        }
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("?".to_owned(), |kb| format!("{} GiB", kb / (1 << 20)));
    format!("{cores} cores, {memory} memory")
}

fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --release` first",
        path.display()
    );
    path
}

/// The input files of a generated folder (its `.complete` marker left out).
fn input_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

fn folder_bytes(folder: &Path) -> u64 {
    input_files(folder)
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .sum()
}

/// Bytes of every file under `folder`, sub-folders included.
fn tree_bytes(folder: &Path) -> u64 {
    walkdir::WalkDir::new(folder)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.metadata().map_or(0, |m| m.len()))
        .sum()
}

fn duckdb_available() -> bool {
    Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// DuckDB's extraction of a few patient and encounter columns into Parquet.
const DUCKDB_SCRIPT: &str = r#"
import duckdb, sys, os
folder, fmt, out = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)
con = duckdb.connect()
con.execute("SET threads = 2")
if fmt == "bundle":
    source = f"""SELECT unnest(json_extract(json, '$.entry[*].resource')) AS r
                 FROM read_json_objects('{folder}/*.json', maximum_object_size = 1073741824)"""
else:
    source = f"SELECT json AS r FROM read_json_objects('{folder}/*.ndjson', format = 'newline_delimited')"
con.execute(f"CREATE TEMP TABLE resources AS SELECT r FROM ({source}) WHERE r->>'resourceType' IN ('Patient', 'Encounter')")
con.execute(f"""COPY (SELECT r->>'id' AS id, r->>'gender' AS gender, TRY_CAST(r->>'birthDate' AS DATE) AS birth_date,
                            r->'name'->0->>'family' AS family_name
                     FROM resources WHERE r->>'resourceType' = 'Patient') TO '{out}/patient.parquet'""")
con.execute(f"""COPY (SELECT r->>'id' AS id, r->>'status' AS status, r->'class'->>'code' AS class_code,
                            TRY_CAST(r->'period'->>'start' AS TIMESTAMPTZ) AS start
                     FROM resources WHERE r->>'resourceType' = 'Encounter') TO '{out}/encounter.parquet'""")
"#;

/// DuckDB's extraction of the columns of [`FIVE_VIEWS`] into Parquet, one file per view, and
/// `counts.json` (rows per view). One pass keeps the five types' resources in a temporary table;
/// each view then pulls all its JSON paths in one `json_extract_string` call (one parse per
/// resource and view). It follows the views' FHIRPath where Synthea's data allows: `first()` is the
/// first array element (`coding[0]`), `getReferenceKey(T)` the id after `T/` or `urn:uuid:`
/// (conditional references are not resolved: null), `ofType(X)` the `valueX` key, dates
/// `TRY_CAST` to `TIMESTAMPTZ` in UTC (a partial date is null, not its earliest instant), and no
/// data errors (several values where one is expected) are checked.
const DUCKDB_VIEWS_SCRIPT: &str = r#"
import duckdb, sys, os, json
folder, fmt, out = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET TimeZone = 'UTC'")
if fmt == "bundle":
    source = f"""SELECT unnest(json_extract(json, '$.entry[*].resource')) AS r
                 FROM read_json_objects('{folder}/*.json', maximum_object_size = 1073741824)"""
else:
    source = f"SELECT json AS r FROM read_json_objects('{folder}/*.ndjson', format = 'newline_delimited')"
con.execute("""CREATE MACRO ref_key(reference, kind) AS CASE
    WHEN starts_with(reference, kind || '/') THEN split_part(substr(reference, length(kind) + 2), '/', 1)
    WHEN starts_with(reference, 'urn:uuid:') THEN substr(reference, 10) END""")
def coded(prefix, column):
    return [(f"{column}_code", f"$.{prefix}.coding[0].code", "{}"),
            (f"{column}_system", f"$.{prefix}.coding[0].system", "{}"),
            (f"{column}_display", f"$.{prefix}.coding[0].display", "coalesce({}, {text})"),
            ("text", f"$.{prefix}.text", None)]
def ref(column, path, kind):
    return (column, path, f"ref_key({{}}, '{kind}')")
def ts(column, path):
    return (column, path, "TRY_CAST({} AS TIMESTAMPTZ)")
def typed(column, path, kind):
    return (column, path, f"TRY_CAST({{}} AS {kind})")
def plain(column, path):
    return (column, path, "{}")
ID = plain("id", "$.id")
ENCOUNTER = ref("encounter_id", "$.encounter.reference", "Encounter")
VIEWS = {
    "observation": ("Observation", [ID, ref("patient_id", "$.subject.reference", "Patient"), ENCOUNTER,
        plain("status", "$.status"), plain("category", "$.category[0].coding[0].code"), *coded("code", "code"),
        ts("effective", "$.effectiveDateTime"), ts("issued", "$.issued"),
        typed("value_quantity", "$.valueQuantity.value", "DOUBLE"), plain("value_unit", "$.valueQuantity.unit"),
        plain("value_code", "$.valueCodeableConcept.coding[0].code"),
        plain("value_display", "$.valueCodeableConcept.coding[0].display"), plain("value_string", "$.valueString"),
        typed("value_boolean", "$.valueBoolean", "BOOLEAN"),
        ("component_count", "$.component", "coalesce(json_array_length({}), 0)::INTEGER")]),
    "condition": ("Condition", [ID, ref("patient_id", "$.subject.reference", "Patient"), ENCOUNTER,
        plain("clinical_status", "$.clinicalStatus.coding[0].code"),
        plain("verification_status", "$.verificationStatus.coding[0].code"),
        plain("category", "$.category[0].coding[0].code"), *coded("code", "code"),
        ts("onset", "$.onsetDateTime"), ts("abatement", "$.abatementDateTime"), ts("recorded_date", "$.recordedDate")]),
    "procedure": ("Procedure", [ID, ref("patient_id", "$.subject.reference", "Patient"), ENCOUNTER,
        plain("status", "$.status"), *coded("code", "code"),
        ("performed_start", "$.performedPeriod.start", "TRY_CAST(coalesce({}, {performed}) AS TIMESTAMPTZ)"),
        ("performed", "$.performedDateTime", None), ts("performed_end", "$.performedPeriod.end"),
        plain("reason_code", "$.reasonCode[0].coding[0].code"), plain("reason_display", "$.reasonCode[0].coding[0].display"),
        ref("location_id", "$.location.reference", "Location")]),
    "medication_request": ("MedicationRequest", [ID, ref("patient_id", "$.subject.reference", "Patient"), ENCOUNTER,
        plain("status", "$.status"), plain("intent", "$.intent"), *coded("medicationCodeableConcept", "medication"),
        ref("medication_id", "$.medicationReference.reference", "Medication"), ts("authored_on", "$.authoredOn"),
        ref("requester_id", "$.requester.reference", "Practitioner"),
        plain("reason_code", "$.reasonCode[0].coding[0].code"), plain("dosage_text", "$.dosageInstruction[0].text"),
        typed("as_needed", "$.dosageInstruction[0].asNeededBoolean", "BOOLEAN")]),
    "immunization": ("Immunization", [ID, ref("patient_id", "$.patient.reference", "Patient"), ENCOUNTER,
        plain("status", "$.status"), *coded("vaccineCode", "vaccine"), ts("occurrence", "$.occurrenceDateTime"),
        typed("primary_source", "$.primarySource", "BOOLEAN"), ref("location_id", "$.location.reference", "Location")]),
}
kinds = ", ".join(f"'{kind}'" for kind, _ in VIEWS.values())
con.execute(f"""CREATE TEMP TABLE resources AS SELECT kind, r FROM
                (SELECT r->>'resourceType' AS kind, r FROM ({source})) WHERE kind IN ({kinds})""")
counts = {}
for name, (kind, columns) in VIEWS.items():
    slot = {column: f"v[{i + 1}]" for i, (column, _, _) in enumerate(columns)}
    paths = ", ".join(f"'{path}'" for _, path, _ in columns)
    select = ", ".join(f"{template.format(slot[column], **slot)} AS {column}"
                       for column, _, template in columns if template)
    counts[name] = con.execute(f"""COPY (SELECT {select} FROM
        (SELECT json_extract_string(r, [{paths}]) AS v FROM resources WHERE kind = '{kind}'))
        TO '{out}/{name}.parquet'""").fetchone()[0]
json.dump(counts, open(f"{out}/counts.json", "w"))
"#;

/// The physical yardstick: every input byte through serde_json into `IgnoredAny`, files spread
/// over all cores. Runs as a child so its peak RSS is measured like the others.
fn baseline(folder: &Path, format: &str) {
    let files = input_files(folder);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..std::thread::available_parallelism().map_or(1, |n| n.get()) {
            scope.spawn(|| {
                while let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if format == "bundle" {
                        let bytes = fs::read(file).unwrap();
                        serde_json::from_slice::<IgnoredAny>(&bytes).unwrap();
                    } else {
                        let reader = BufReader::with_capacity(1 << 20, fs::File::open(file).unwrap());
                        for line in reader.split(b'\n') {
                            let line = line.unwrap();
                            if !line.is_empty() {
                                serde_json::from_slice::<IgnoredAny>(&line).unwrap();
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Generates (or reuses) `size_mb` of input in the given format; returns its folder.
fn generate(data: &Path, format: &str, size_mb: u64) -> PathBuf {
    let folder = data.join(format!("{format}-{size_mb}mb"));
    let done = folder.join(".complete");
    if done.exists() {
        return folder;
    }
    let _ = fs::remove_dir_all(&folder);
    fs::create_dir_all(&folder).unwrap();
    eprintln!(
        "generating {size_mb} MB of {format} input in {} ...",
        folder.display()
    );
    let mut templates = Vec::new();
    for source in SOURCE_FOLDERS {
        let mut files: Vec<PathBuf> = fs::read_dir(source).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let text = fs::read_to_string(&file).unwrap();
            if name.starts_with("hospitalInformation") || name.starts_with("practitionerInformation") {
                if format == "bundle" {
                    fs::write(folder.join(&name), &text).unwrap();
                }
                continue;
            }
            let shared = shared_uuids(&text);
            templates.push((name, text, shared));
        }
    }
    let target = size_mb * 1_000_000;
    let mut written = 0u64;
    let mut ndjson = NdjsonWriter::new(&folder);
    let mut copy = 0u64;
    while written < target {
        for (name, text, shared) in &templates {
            let fresh = fresh_uuids(text, copy, shared);
            if format == "bundle" {
                let path = folder.join(format!("{copy:06}-{name}"));
                fs::write(&path, &fresh).unwrap();
                written += fresh.len() as u64;
            } else {
                written += ndjson.write_bundle(&fresh);
            }
            if written >= target {
                break;
            }
        }
        copy += 1;
    }
    ndjson.finish();
    fs::write(done, "").unwrap();
    folder
}

/// UUIDs of the providers and places in a bundle: a population shares them, so copies keep them.
fn shared_uuids(text: &str) -> std::collections::HashSet<String> {
    let bundle: Value = serde_json::from_str(text).unwrap();
    let shared_types = ["Practitioner", "PractitionerRole", "Organization", "Location"];
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| shared_types.contains(&entry["resource"]["resourceType"].as_str().unwrap_or("")))
        .flat_map(|entry| [entry["resource"]["id"].as_str(), entry["fullUrl"].as_str()])
        .flatten()
        .filter_map(|text| text.get(text.len().saturating_sub(36)..).map(str::to_owned))
        .collect()
}

/// Replaces every UUID in `text` (but the `shared` ones) by one derived from it and the copy
/// number, so patient-level ids and `urn:uuid:` references stay unique across copies and still
/// match within one.
fn fresh_uuids(text: &str, copy: u64, shared: &std::collections::HashSet<String>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut last = 0;
    while i + 36 <= bytes.len() {
        if is_uuid(&bytes[i..i + 36])
            && (i == 0 || !bytes[i - 1].is_ascii_hexdigit())
            && !shared.contains(&text[i..i + 36])
        {
            out.push_str(&text[last..i]);
            let hash = fnv(&bytes[i..i + 36], copy);
            let hex = format!(
                "{:016x}{:016x}",
                hash,
                fnv(&bytes[i..i + 36], copy ^ 0x9e37_79b9_7f4a_7c15)
            );
            out.push_str(&format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            ));
            i += 36;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[last..]);
    out
}

fn is_uuid(candidate: &[u8]) -> bool {
    candidate.iter().enumerate().all(|(i, &b)| match i {
        8 | 13 | 18 | 23 => b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}

fn fnv(bytes: &[u8], seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x100_0000_01b3);
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

/// Writes resources of Bundles as Bulk Data NDJSON: one file series per type, `urn:uuid:`
/// references rewritten to `Type/id` as a FHIR server's export has them.
struct NdjsonWriter {
    folder: PathBuf,
    files: HashMap<String, (fs::File, u64, u32)>,
}

impl NdjsonWriter {
    fn new(folder: &Path) -> Self {
        NdjsonWriter {
            folder: folder.to_path_buf(),
            files: HashMap::new(),
        }
    }

    fn write_bundle(&mut self, text: &str) -> u64 {
        let bundle: Value = serde_json::from_str(text).unwrap();
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        let targets: HashMap<String, String> = entries
            .iter()
            .filter_map(|e| {
                let resource = &e["resource"];
                Some((
                    e["fullUrl"].as_str()?.to_owned(),
                    format!(
                        "{}/{}",
                        resource["resourceType"].as_str()?,
                        resource["id"].as_str()?
                    ),
                ))
            })
            .collect();
        let mut written = 0;
        for entry in entries {
            let mut resource = entry["resource"].clone();
            rewrite_references(&mut resource, &targets);
            let kind = resource["resourceType"].as_str().unwrap_or("Unknown").to_owned();
            let line = resource_first(&mut resource, &kind);
            written += line.len() as u64;
            self.append(&kind, line.as_bytes());
        }
        written
    }

    fn append(&mut self, kind: &str, line: &[u8]) {
        let folder = self.folder.clone();
        let open = |part: u32| fs::File::create(folder.join(format!("{kind}.{part:03}.ndjson"))).unwrap();
        let slot = self
            .files
            .entry(kind.to_owned())
            .or_insert_with(|| (open(0), 0, 0));
        if slot.1 + line.len() as u64 > NDJSON_PART_BYTES {
            slot.2 += 1;
            slot.0 = open(slot.2);
            slot.1 = 0;
        }
        slot.0.write_all(line).unwrap();
        slot.1 += line.len() as u64;
    }

    fn finish(self) {
        for (_, (file, _, _)) in self.files {
            file.sync_all().unwrap();
        }
    }
}

/// One NDJSON line with `resourceType` as the first key, as FHIR servers write it (serde_json's
/// map would sort the keys).
fn resource_first(resource: &mut Value, kind: &str) -> String {
    if let Some(map) = resource.as_object_mut() {
        map.remove("resourceType");
    }
    let rest = serde_json::to_string(resource).unwrap();
    let separator = if rest == "{}" { "" } else { "," };
    format!(
        "{{\"resourceType\":{}{separator}{}\n",
        serde_json::to_string(kind).unwrap(),
        &rest[1..]
    )
}

fn rewrite_references(value: &mut Value, targets: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "reference" {
                    if let Some(target) = child.as_str().and_then(|r| targets.get(r)) {
                        *child = Value::String(target.clone());
                    }
                } else {
                    rewrite_references(child, targets);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_references(item, targets)),
        _ => {}
    }
}
