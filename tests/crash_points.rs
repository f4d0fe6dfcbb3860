//! Crash-point enumeration: every way of changing an output folder (convert in each write mode,
//! with views, with --archive / --delete-processed, and compact) is run once per file-system call
//! it makes, killed right after that call (`FHIR2TABLE_CRASH_AFTER_FS_CALL`, see src/fsops.rs),
//! and the output folder is then opened as the next run opens it. It must hold exactly the tables
//! of before the operation or exactly those of after it, with no debris, and an input may be
//! archived or deleted only once its rows are committed.
//!
//! The same holds for `--format delta`, judged as a Delta reader judges a table: the rows of the
//! files its log's newest version lists, read from the log here with serde_json (no Delta code
//! of the tool's), and its version number. A run's transaction may land at most once per table,
//! and nothing may be in a table folder that no version of its log names.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{copy_tree, fixtures, read_files, read_table};

/// Held while this process holds an output's lock and while it starts a child: a child forked at
/// that moment would share the lock's open file until it execs, and the run it starts would find
/// the folder locked.
static SPAWNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What an operation is judged by: every table's rows, each Delta table's newest version, the
/// incremental state's inputs, and where the input files are.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    tables: BTreeMap<String, Vec<Vec<Option<String>>>>,
    delta_versions: BTreeMap<String, u64>,
    state_inputs: Vec<(String, String)>,
}

/// A Delta table's log (`_delta_log/`), replayed action by action as the Delta protocol says.
struct DeltaLog {
    /// The newest commit's version.
    version: u64,
    /// The files of the newest version: every add not removed by a later commit.
    live: BTreeSet<String>,
    /// Every file some version added (files removed since stay for time travel).
    ever_added: BTreeSet<String>,
    /// The fhir2table run (commitInfo `runId`) of each commit, oldest first.
    run_ids: Vec<String>,
    /// Files in the log folder that are not commits (a half-written commit, say).
    stray: Vec<String>,
}

const DELTA_LOG: &str = "_delta_log";

/// `00000000000000000007.json` gives 7.
fn commit_version(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().unwrap())
}

/// The log of the Delta table in `table`, or `None` when the folder has no log or a log without
/// a commit (which no Delta reader takes for a table).
fn delta_log(table: &Path) -> Option<DeltaLog> {
    let mut commits = BTreeMap::new();
    let mut stray = Vec::new();
    for entry in std::fs::read_dir(table.join(DELTA_LOG)).ok()? {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        match commit_version(&name) {
            Some(version) => {
                commits.insert(version, name);
            }
            None => stray.push(name),
        }
    }
    let version = *commits.keys().last()?;
    assert_eq!(
        commits.keys().copied().collect::<Vec<_>>(),
        (0..=version).collect::<Vec<_>>(),
        "{}: the log's versions have a gap",
        table.display()
    );
    let mut log = DeltaLog {
        version,
        live: BTreeSet::new(),
        ever_added: BTreeSet::new(),
        run_ids: Vec::new(),
        stray,
    };
    for name in commits.values() {
        let text = std::fs::read_to_string(table.join(DELTA_LOG).join(name)).unwrap();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let action: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("{}: {name}: {error}: {line}", table.display()));
            if let Some(path) = action["add"]["path"].as_str() {
                log.live.insert(path.to_owned());
                log.ever_added.insert(path.to_owned());
            }
            if let Some(path) = action["remove"]["path"].as_str() {
                log.live.remove(path);
            }
            if let Some(run_id) = action["commitInfo"]["runId"].as_str() {
                log.run_ids.push(run_id.to_owned());
            }
        }
    }
    Some(log)
}

/// Where each input file is: still in --in, or archived.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    remaining: Vec<String>,
    archived: Vec<String>,
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

fn snapshot(out: &Path) -> Snapshot {
    let mut tables = BTreeMap::new();
    let mut delta_versions = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // `_state` and `_deleted` at the top are an older release's layout (see
        // `to_legacy_layout`); its tombstones count as the same table as the tool folder's.
        if !path.is_dir() || name.starts_with('.') || name == "_state" {
            continue;
        }
        if path.join(DELTA_LOG).exists() {
            // A table for Delta readers once its log holds a commit; its rows are those of the
            // files of the newest version.
            if let Some(log) = delta_log(&path) {
                let files: Vec<PathBuf> = log.live.iter().map(|file| path.join(file)).collect();
                let rows = match files.is_empty() {
                    true => Vec::new(),
                    false => read_files(&files).sorted_rows(),
                };
                tables.insert(name.clone(), rows);
                delta_versions.insert(name, log.version);
            }
            continue;
        }
        let rows = if files_under(&path).is_empty() {
            Vec::new()
        } else {
            read_table(&path).sorted_rows()
        };
        tables.insert(name, rows);
    }
    let tombstones = out.join(".fhir2table/_deleted");
    if tombstones.is_dir() && !files_under(&tombstones).is_empty() {
        tables.insert("_deleted".to_owned(), read_table(&tombstones).sorted_rows());
    }
    let state = std::fs::read_to_string(out.join(".fhir2table/_state.json"))
        .or_else(|_| std::fs::read_to_string(out.join("_state/state.json")));
    let state_inputs = match state {
        Ok(text) => {
            let state: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut inputs: Vec<(String, String)> = state["inputs"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(path, record)| (path.clone(), record["hash"].to_string()))
                .collect();
            inputs.sort();
            inputs
        }
        Err(_) => Vec::new(),
    };
    Snapshot {
        tables,
        delta_versions,
        state_inputs,
    }
}

/// Anything in the output folder that is neither a table's Parquet file nor one of the tool's
/// own lasting files.
fn debris(out: &Path) -> Vec<String> {
    let folders = |dir: &Path, prefix: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|entry| entry.unwrap())
                    .filter(|entry| entry.file_type().unwrap().is_dir())
                    .map(|entry| format!("{prefix}{}", entry.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Hidden folders other than the tool's, and folders in the tool's other than its tombstones.
    let stray_folders = folders(out, "")
        .into_iter()
        .filter(|name| name.starts_with('.') && name != ".fhir2table")
        .chain(folders(&out.join(".fhir2table"), ".fhir2table/"))
        .filter(|name| name != ".fhir2table/_deleted");
    files_under(out)
        .into_iter()
        .chain(stray_folders)
        .filter(|file| {
            let lasting = [
                ".fhir2table/_lock",
                ".fhir2table.lock", // an older release's lock file stays (see sink/migrate.rs)
                ".fhir2table/_run.json",
                ".fhir2table/_state.json",
            ]
            .contains(&file.as_str());
            let depth = Path::new(file).components().count();
            let table_file = !file.starts_with('.') && file.ends_with(".parquet") && depth == 2;
            let delta_commit = !file.starts_with('.')
                && depth == 3
                && Path::new(file).parent().unwrap().ends_with(DELTA_LOG)
                && commit_version(Path::new(file).file_name().unwrap().to_str().unwrap()).is_some();
            let tombstones =
                file.starts_with(".fhir2table/_deleted/") && file.ends_with(".fhir2table-parquet");
            !(lasting || table_file || delta_commit || (tombstones && depth == 3))
        })
        .chain(delta_debris(out))
        .collect()
}

/// In each Delta table: files of its folder that no version of its log adds (no Delta reader
/// sees them, and nothing would ever remove them), and a log folder without a commit.
fn delta_debris(out: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let folder = entry.unwrap().path();
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || !folder.join(DELTA_LOG).is_dir() {
            continue;
        }
        let Some(log) = delta_log(&folder) else {
            found.push(format!("{name}/{DELTA_LOG}/ without a commit"));
            continue;
        };
        for file in files_under(&folder) {
            if !file.starts_with(DELTA_LOG) && !log.ever_added.contains(&file) {
                found.push(format!("{name}/{file}, in no version of the log"));
            }
        }
    }
    found
}

/// Where a Delta log says a run's transaction landed twice in a table, or names a file that is
/// not there.
fn delta_faults(out: &Path) -> Vec<String> {
    let mut faults = Vec::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let folder = entry.unwrap().path();
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        let Some(log) = delta_log(&folder) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for run_id in &log.run_ids {
            if !seen.insert(run_id) {
                faults.push(format!("{name}: run {run_id} committed twice"));
            }
        }
        faults.extend(
            log.live
                .iter()
                .filter(|file| !folder.join(file).is_file())
                .map(|file| format!("{name}: {file} is live but missing")),
        );
        faults.extend(log.stray.iter().map(|file| format!("{name}: {DELTA_LOG}/{file}")));
    }
    faults
}

/// A prepared case: an input folder and an output folder as the operation finds them.
struct Case {
    root: tempfile::TempDir,
    /// Environment variables every run of the case gets (test hooks of the binary).
    env: Vec<(&'static str, String)>,
}

impl Case {
    fn input(&self) -> PathBuf {
        self.root.path().join("in")
    }
    fn out(&self) -> PathBuf {
        self.root.path().join("out")
    }
    fn archive(&self) -> PathBuf {
        self.root.path().join("archive")
    }
    fn export(&self) -> PathBuf {
        self.root.path().join("export")
    }
    fn inputs(&self) -> Inputs {
        Inputs {
            remaining: files_under(&self.input()),
            archived: files_under(&self.archive()),
        }
    }
    fn copy(&self) -> Case {
        let root = tempfile::tempdir().unwrap();
        copy_tree(self.root.path(), root.path());
        Case {
            root,
            env: self.env.clone(),
        }
    }
}

/// A test hook for one run (see src/fsops.rs).
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// Abort right after file-system call N.
    CrashAfter(u64),
    /// File-system call N fails with an I/O error.
    Fail(u64),
}

/// Runs the binary with `args`, where `{in}`, `{out}`, `{archive}` and `{export}` stand for the case's
/// folders, with `fault`. Returns the exit code, or `None` if the process was killed.
fn run(case: &Case, args: &[&str], fault: Fault) -> Option<i32> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fhir2table"));
    for arg in args {
        let arg = arg
            .replace("{in}", &case.input().display().to_string())
            .replace("{out}", &case.out().display().to_string())
            .replace("{archive}", &case.archive().display().to_string())
            .replace("{export}", &case.export().display().to_string());
        command.arg(arg);
    }
    command.env_remove("FHIR2TABLE_CRASH_AFTER_FS_CALL");
    command.env_remove("FHIR2TABLE_FAIL_FS_CALL");
    command.env_remove(fhir2table::sink::WIDE_ROWS_PER_FILE_VARIABLE);
    command.envs(case.env.iter().map(|(name, value)| (name, value)));
    match fault {
        Fault::None => {}
        Fault::CrashAfter(call) => {
            command.env("FHIR2TABLE_CRASH_AFTER_FS_CALL", call.to_string());
        }
        Fault::Fail(call) => {
            command.env("FHIR2TABLE_FAIL_FS_CALL", call.to_string());
        }
    }
    let child = {
        let _no_lock_open = SPAWNING.lock().unwrap();
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let output = child.wait_with_output().unwrap();
    // Killed (no exit code): the crash point was reached.
    let code = output.status.code()?;
    let expected: &[i32] = match fault {
        Fault::Fail(_) => &[0, 1, 2, 3],
        _ => &[0, 1],
    };
    assert!(
        expected.contains(&code),
        "{args:?} with {fault:?}: exit {code}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(code)
}

/// Rows per table as `_run.json` reports them, or `None` for the report of a failed run.
fn reported_rows(out: &Path) -> Option<BTreeMap<String, u64>> {
    // Releases before the tool folder kept the report at the top.
    let text = std::fs::read_to_string(out.join(".fhir2table/_run.json"))
        .or_else(|_| std::fs::read_to_string(out.join("_run.json")))
        .ok()?;
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    if report["exit_code"] == 3 {
        return None;
    }
    let tables = report["tables"].as_object()?;
    Some(
        tables
            .iter()
            .map(|(name, table)| (name.clone(), table["rows"].as_u64().unwrap_or(0)))
            .collect(),
    )
}

/// The next run opens the folder (lock, finish or drop an interrupted commit, clear up); then
/// it must hold exactly the before or the after state, agree with its report, and hold no
/// debris, and no input may be retired unless its rows were committed.
fn check_recovered(what: &str, attempt: &Case, expected: &Expected) {
    {
        let _no_spawning = SPAWNING.lock().unwrap();
        drop(fhir2table::sink::Output::open(&attempt.out()).unwrap());
    }
    let state = snapshot(&attempt.out());
    let is_after = state == expected.after;
    assert!(
        state == expected.before || is_after,
        "{what}: the output is neither the before nor the after state"
    );
    let report = reported_rows(&attempt.out());
    let wanted = if is_after {
        &expected.after_report
    } else {
        &expected.before_report
    };
    assert!(
        report.is_none() || &report == wanted,
        "{what}: _run.json reports {report:?}, the tables are those of {wanted:?}"
    );
    assert_eq!(
        debris(&attempt.out()),
        Vec::<String>::new(),
        "{what}: debris left"
    );
    assert_eq!(
        delta_faults(&attempt.out()),
        Vec::<String>::new(),
        "{what}: a Delta log is wrong"
    );
    let inputs = attempt.inputs();
    if !is_after {
        assert_eq!(
            inputs, expected.before_inputs,
            "{what}: inputs retired but their rows not committed"
        );
    }
    if !expected.after_inputs.archived.is_empty() {
        let mut all: Vec<String> = inputs.remaining.iter().chain(&inputs.archived).cloned().collect();
        all.sort();
        assert_eq!(
            all, expected.before_inputs.remaining,
            "{what}: every input is in --in or in the archive, once"
        );
    }
}

/// The states an interrupted operation may end in.
struct Expected {
    before: Snapshot,
    after: Snapshot,
    before_report: Option<BTreeMap<String, u64>>,
    after_report: Option<BTreeMap<String, u64>>,
    before_inputs: Inputs,
    after_inputs: Inputs,
}

/// Enumerates the file-system calls of `operation` on the prepared `case`. For each call N:
/// the operation killed right after N; then, from there, the next run killed again early (in
/// its recovery or before its own commit); and the operation with call N failing. Each ends,
/// once the folder is opened, in the before or the after state. Returns the number of calls.
fn enumerate(name: &str, case: &Case, operation: &[&str]) -> u64 {
    let finished = case.copy();
    run(&finished, operation, Fault::None).expect("the operation runs to the end");
    let expected = Expected {
        before: snapshot(&case.out()),
        after: snapshot(&finished.out()),
        before_report: reported_rows(&case.out()),
        after_report: reported_rows(&finished.out()),
        before_inputs: case.inputs(),
        after_inputs: finished.inputs(),
    };
    assert_ne!(
        expected.before, expected.after,
        "{name}: the operation changes the tables"
    );
    assert_eq!(
        delta_faults(&finished.out()),
        Vec::<String>::new(),
        "{name}: finished"
    );
    let mut call = 0;
    loop {
        call += 1;
        let attempt = case.copy();
        if run(&attempt, operation, Fault::CrashAfter(call)).is_some() {
            break; // Fewer calls than that: every point has been tried.
        }
        let interrupted = attempt.copy();
        check_recovered(&format!("{name}: killed after call {call}"), &attempt, &expected);

        // A recovery can itself be killed: the next run, killed after one of its first calls
        // (replaying the journal, or building before its own commit point), leaves a folder
        // the run after it still recovers.
        let again = 1 + call % 4;
        let second = run(&interrupted, operation, Fault::CrashAfter(again));
        assert!(
            second.is_none(),
            "{name}: the second run has more than {again} calls"
        );
        check_recovered(
            &format!("{name}: killed after call {call}, then its recovery after call {again}"),
            &interrupted,
            &expected,
        );

        let failing = case.copy();
        run(&failing, operation, Fault::Fail(call)).expect("a failing call ends the run, not the process");
        check_recovered(&format!("{name}: call {call} failed"), &failing, &expected);

        // And the folder is fit for the next run: the operation, run again, ends in `after`.
        if call % 7 == 0 {
            run(&attempt, operation, Fault::None).expect("the next run finishes");
            let again = snapshot(&attempt.out());
            assert_eq!(
                again.tables.keys().collect::<Vec<_>>(),
                expected.after.tables.keys().collect::<Vec<_>>()
            );
        }
    }
    assert!(
        call > 10,
        "{name}: only {call} crash points; is the hook working?"
    );
    eprintln!(
        "{name}: {} crash points, each recovered (killed, killed twice, failed)",
        call - 1
    );
    call - 1
}

/// A case with `setup` (argument lists) already run.
fn prepared(inputs: &[(&Path, &str)], setup: &[&[&str]]) -> Case {
    prepared_with(inputs, setup, Vec::new())
}

/// A case whose every run gets `env`, with `setup` already run.
fn prepared_with(inputs: &[(&Path, &str)], setup: &[&[&str]], env: Vec<(&'static str, String)>) -> Case {
    let case = Case {
        root: tempfile::tempdir().unwrap(),
        env,
    };
    for (source, into) in inputs {
        let target = case.input().join(into);
        if source.is_dir() {
            copy_tree(source, &target);
        } else {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(source, &target).unwrap();
        }
    }
    std::fs::create_dir_all(case.input()).unwrap();
    for args in setup {
        run(&case, args, Fault::None).expect("setup runs");
    }
    case
}

fn patient_line(id: &str, family: &str, last_updated: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","meta":{{"lastUpdated":"{last_updated}"}},"name":[{{"family":"{family}"}}]}}"#
    )
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const CONVERT: &[&str] = &[
    "convert",
    "-q",
    "--threads",
    "1",
    "--in",
    "{in}",
    "--out",
    "{out}",
];

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn overwrite_replaces_tables_whole_or_not_at_all() {
    // Before: the hand-made fixture's tables. After: the Synthea bundle's (conditional references
    // resolved in a second pass over the staged files).
    let case = prepared(&[(&fixtures().join("handmade"), "")], &[CONVERT]);
    std::fs::remove_dir_all(case.input()).unwrap();
    copy_tree(&fixtures().join("synthea/pathling-conditional"), &case.input());
    enumerate("overwrite", &case, CONVERT);
}

#[test]
fn resource_tables_of_several_files_replace_tables_whole_or_not_at_all() {
    sweep_rolled_over("resource tables in several files", &[], &[]);
}

#[test]
fn resource_tables_of_several_files_are_appended_whole_or_not_at_all() {
    sweep_rolled_over(
        "appended resource tables in several files",
        &[],
        &["--mode", "append"],
    );
}

#[test]
fn delta_resource_tables_of_several_files_land_once_or_not_at_all() {
    sweep_rolled_over(
        "Delta resource tables in several files",
        &["--format", "delta"],
        &[],
    );
}

/// The Parquet files under `dir`.
fn parquet_files(dir: &Path) -> Vec<String> {
    let mut files = files_under(dir);
    files.retain(|file| file.ends_with(".parquet"));
    files
}

/// Sweeps a run whose resource tables are parts of several files. Batches of one row, row groups
/// of two and a new file after each (the test hook): the files (`<part>_000001.parquet`, ...)
/// are made while the run goes on. The run (`format` in both, `mode` in the second) takes a
/// folder of observations to one of patients.
fn sweep_rolled_over(name: &str, format: &[&'static str], mode: &[&'static str]) {
    let first = with(
        &with(CONVERT, format),
        &["--resources", "all", "--no-builtin-tables", "--batch-size", "1"],
    );
    let convert = with(&first, mode);
    let env = vec![(fhir2table::sink::WIDE_ROWS_PER_FILE_VARIABLE, "2".to_owned())];
    let lossless = fixtures().join("lossless");
    let case = prepared_with(
        &[(&lossless.join("observations.ndjson"), "observations.ndjson")],
        &[&first],
        env,
    );
    std::fs::remove_dir_all(case.input()).unwrap();
    std::fs::create_dir_all(case.input()).unwrap();
    std::fs::copy(
        lossless.join("patients.ndjson"),
        case.input().join("patients.ndjson"),
    )
    .unwrap();
    let finished = case.copy();
    run(&finished, &convert, Fault::None).expect("the operation runs to the end");
    // Two patients per file: the hook works, and the sweep goes through rolled-over parts.
    let patients = parquet_files(&finished.out().join("resource_patient"));
    assert!(patients.len() >= 5, "{name}: {patients:?}");
    // And the files hold the rows of a run in one file each, no row lost in the rollover.
    let mut whole = case.copy();
    whole.env.clear();
    run(&whole, &convert, Fault::None).expect("the operation runs to the end");
    assert_eq!(
        snapshot(&whole.out()).tables,
        snapshot(&finished.out()).tables,
        "{name}"
    );
    assert_eq!(
        parquet_files(&whole.out().join("resource_patient")).len(),
        1,
        "{name}"
    );
    enumerate(name, &case, &convert);
}

#[test]
fn a_first_run_into_an_empty_folder_is_whole_or_absent() {
    let case = prepared(&[(&fixtures().join("handmade"), "")], &[]);
    std::fs::create_dir_all(case.out()).unwrap();
    enumerate("first run", &case, CONVERT);
}

#[test]
fn append_adds_every_file_or_none() {
    let case = prepared(&[(&fixtures().join("handmade"), "")], &[CONVERT]);
    enumerate("append", &case, &with(CONVERT, &["--mode", "append"]));
}

#[test]
fn incremental_commits_rows_and_state_together() {
    let case = prepared(&[], &[]);
    write(
        &case.input().join("a.ndjson"),
        &patient_line("a", "A", "2024-01-01T00:00:00Z"),
    );
    let incremental = with(CONVERT, &["--incremental"]);
    run(&case, &incremental, Fault::None).unwrap();
    write(
        &case.input().join("b.ndjson"),
        &patient_line("b", "B", "2024-01-01T00:00:00Z"),
    );
    write(
        &case.input().join("a.ndjson"),
        &patient_line("a", "A2", "2024-02-01T00:00:00Z"),
    );
    enumerate("incremental", &case, &incremental);
}

/// An output that two incremental runs (`convert` plus `--incremental`) left with something to
/// compact: a patient updated by the second run, and one deleted by it.
fn before_compact(convert: &[&'static str]) -> Case {
    let case = prepared(&[], &[]);
    let incremental = with(convert, &["--incremental"]);
    write(
        &case.input().join("a.ndjson"),
        &[
            patient_line("a", "A", "2024-01-01T00:00:00Z"),
            patient_line("d", "D", "2024-01-01T00:00:00Z"),
        ]
        .join("\n"),
    );
    run(&case, &incremental, Fault::None).unwrap();
    write(
        &case.input().join("b.ndjson"),
        &patient_line("a", "A2", "2024-02-01T00:00:00Z"),
    );
    let delete = r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/d"}}]}"#;
    write(&case.input().join("deleted/Patient.ndjson"), delete);
    run(&case, &incremental, Fault::None).unwrap();
    case
}

#[test]
fn compact_swaps_tables_whole_or_not_at_all() {
    let case = before_compact(CONVERT);
    enumerate("compact", &case, &["compact", "-q", "{out}"]);
}

#[test]
fn views_replace_all_their_tables_whole_or_not_at_all() {
    // Three shipped views (all 24 give the same steps, 300 crash points): one whose conditional
    // references are resolved by a second pass, and two plain ones.
    let views = Path::new(env!("CARGO_MANIFEST_DIR")).join("views");
    let (claim, condition, practitioner) = (
        views.join("claim.json").display().to_string(),
        views.join("condition.json").display().to_string(),
        views.join("practitioner.json").display().to_string(),
    );
    let operation: Vec<&str> = CONVERT
        .iter()
        .copied()
        .chain([
            "--no-builtin-tables",
            "--view",
            &claim,
            "--view",
            &condition,
            "--view",
            &practitioner,
        ])
        .collect();
    let case = prepared(&[(&fixtures().join("handmade"), "")], &[&operation]);
    std::fs::remove_dir_all(case.input()).unwrap();
    copy_tree(&fixtures().join("synthea/pathling-conditional"), &case.input());
    enumerate("views", &case, &operation);
}

#[test]
fn archived_inputs_always_have_their_rows_committed() {
    let case = prepared(&[(&fixtures().join("handmade"), "")], &[]);
    std::fs::create_dir_all(case.out()).unwrap();
    enumerate("archive", &case, &with(CONVERT, &["--archive", "{archive}"]));
}

#[test]
fn deleted_inputs_always_have_their_rows_committed() {
    let case = prepared(&[(&fixtures().join("handmade"), "")], &[]);
    std::fs::create_dir_all(case.out()).unwrap();
    enumerate("delete-processed", &case, &with(CONVERT, &["--delete-processed"]));
}

#[test]
fn a_damaged_journal_is_an_error_naming_it_not_a_missing_one() {
    let case = prepared(&[(&fixtures().join("handmade"), "")], &[CONVERT]);
    let before = snapshot(&case.out());
    let journal = fhir2table::sink::journal_path(&case.out());
    std::fs::write(&journal, b"{\"format\":1,\"stag").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fhir2table"))
        .args(["convert", "-q", "--in"])
        .arg(fixtures().join("synthea/pathling-conditional"))
        .arg("--out")
        .arg(case.out())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&journal.display().to_string()) && stderr.contains("damaged"),
        "{stderr}"
    );
    assert_eq!(snapshot(&case.out()), before, "nothing was changed");
    assert!(journal.exists(), "the journal is left for a person to look at");
}

/// Moves a current output into the layout of releases before the tool folder: report, state,
/// tombstones and lock at the top, and debris those releases could leave.
fn to_legacy_layout(out: &Path) {
    let tools = out.join(".fhir2table");
    std::fs::rename(tools.join("_run.json"), out.join("_run.json")).unwrap();
    std::fs::create_dir(out.join("_state")).unwrap();
    std::fs::rename(tools.join("_state.json"), out.join("_state/state.json")).unwrap();
    std::fs::rename(tools.join("_deleted"), out.join("_deleted")).unwrap();
    for file in files_under(&out.join("_deleted")) {
        let old_name = file.replace(".fhir2table-parquet", ".parquet");
        std::fs::rename(
            out.join("_deleted").join(&file),
            out.join("_deleted").join(old_name),
        )
        .unwrap();
    }
    std::fs::rename(tools.join("_lock"), out.join(".fhir2table.lock")).unwrap();
    std::fs::remove_dir(&tools).unwrap();
    write(
        &out.join(".fhir2table-staging-99999/patient/part-x.parquet"),
        "left by a killed run",
    );
    write(&out.join("_state/state.json.tmp-99999"), "{");
}

#[test]
fn an_older_releases_layout_is_moved_into_the_tool_folder_whole() {
    let case = prepared(&[], &[]);
    write(
        &case.input().join("a.ndjson"),
        &[
            patient_line("a", "A", "2024-01-01T00:00:00Z"),
            patient_line("d", "D", "2024-01-01T00:00:00Z"),
        ]
        .join("\n"),
    );
    write(
        &case.input().join("deleted/Patient.ndjson"),
        r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/d"}}]}"#,
    );
    let incremental = with(CONVERT, &["--incremental"]);
    run(&case, &incremental, Fault::None).unwrap();
    to_legacy_layout(&case.out());
    write(
        &case.input().join("b.ndjson"),
        &patient_line("b", "B", "2024-01-01T00:00:00Z"),
    );
    let calls = enumerate("migration", &case, &incremental);
    assert!(calls > 10, "{calls} calls");

    // The migrated folder is the current layout, its state honoured (only b.ndjson was new).
    let finished = case.copy();
    assert_eq!(run(&finished, &incremental, Fault::None), Some(0));
    let mut top: Vec<String> = std::fs::read_dir(finished.out())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, [".fhir2table", ".fhir2table.lock", "encounter", "patient"]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(finished.out().join(".fhir2table/_run.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["tables"]["patient"]["rows"], 1,
        "only the new input: {report}"
    );
    assert_eq!(
        read_table(&finished.out().join(".fhir2table/_deleted"))
            .rows
            .len(),
        1
    );
}

/// `convert` writing Delta tables.
fn delta_convert() -> Vec<&'static str> {
    with(CONVERT, &["--format", "delta"])
}

#[test]
fn delta_a_first_run_into_an_empty_folder_creates_every_table_or_none() {
    let case = prepared(&[(&fixtures().join("handmade"), "")], &[]);
    std::fs::create_dir_all(case.out()).unwrap();
    enumerate("delta first run", &case, &delta_convert());
}

#[test]
fn delta_overwrite_lands_once_per_table_or_not_at_all() {
    // Version 0 of each table from the hand-made fixture; the overwrite removes its files and
    // adds the Synthea bundle's (conditional references resolved in the staging folder).
    let convert = delta_convert();
    let case = prepared(&[(&fixtures().join("handmade"), "")], &[convert.as_slice()]);
    std::fs::remove_dir_all(case.input()).unwrap();
    copy_tree(&fixtures().join("synthea/pathling-conditional"), &case.input());
    enumerate("delta overwrite", &case, &convert);
}

#[test]
fn delta_append_lands_once_per_table_or_not_at_all() {
    let convert = delta_convert();
    let case = prepared(&[(&fixtures().join("handmade"), "")], &[convert.as_slice()]);
    enumerate("delta append", &case, &with(&convert, &["--mode", "append"]));
}

#[test]
fn delta_compact_swaps_each_tables_files_once_or_not_at_all() {
    // Two incremental runs (the second updates a patient and deletes one), then `compact`,
    // which finds the Delta tables itself.
    let case = before_compact(&delta_convert());
    assert!(
        delta_log(&case.out().join("patient")).is_some_and(|log| log.version == 1),
        "two Delta versions before compact"
    );
    enumerate("delta compact", &case, &["compact", "-q", "{out}"]);
}

/// Every file under an export's target folder (its staging folder's included) and its bytes.
fn export_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|file| {
            let bytes = std::fs::read(dir.join(&file)).unwrap();
            (file, bytes)
        })
        .collect()
}

#[test]
fn export_publishes_only_whole_files_and_the_next_export_clears_an_interrupted_one() {
    sweep_export(&[]);
}

#[test]
fn export_of_rebuilt_bundles_publishes_only_whole_files_too() {
    // With no memory for entries every row is spilled, so the sweep also goes through the spill
    // files' calls (made, written, split, removed), on top of what an export in memory makes.
    sweep_export(&["--bundles", "--bundles-memory", "0"]);
}

/// Kills `export extra...` after each of its file-system calls in turn, and fails each call.
fn sweep_export(extra: &[&str]) {
    // `export` changes a folder of its own (DIR), not the output, so it is judged by its own
    // rule: killed after any call, DIR holds only whole files under their final names (and the
    // staging folder), and the next export into it removes that and finishes; a failing call
    // leaves DIR as it was (absent). The output folder is unchanged either way.
    let convert = with(CONVERT, &["--resources", "all", "--no-builtin-tables"]);
    let case = prepared(&[(&fixtures().join("lossless"), "")], &[&convert]);
    let mut operation = vec!["export", "-q", "{out}", "--to", "{export}"];
    operation.extend_from_slice(extra);
    let operation = operation.as_slice();
    let finished = case.copy();
    assert_eq!(run(&finished, operation, Fault::None), Some(0));
    let expected = export_files(&finished.export());
    let bundles = extra.contains(&"--bundles");
    assert_eq!(expected.contains_key("Bundle.ndjson"), bundles);
    assert!(
        expected.len() >= if bundles { 3 } else { 5 }
            && expected.keys().all(|name| name.ends_with(".ndjson")),
        "{:?}",
        expected.keys()
    );
    let tables = snapshot(&case.out());
    let staging = fhir2table::convert::export::STAGING_FOLDER;
    let mut call = 0;
    loop {
        call += 1;
        let attempt = case.copy();
        if run(&attempt, operation, Fault::CrashAfter(call)).is_some() {
            break;
        }
        let what = format!("export killed after call {call}");
        for (file, bytes) in export_files(&attempt.export()) {
            if file.starts_with(staging) {
                continue;
            }
            assert!(
                expected.get(&file) == Some(&bytes),
                "{what}: {file} is in the folder but not whole"
            );
        }
        {
            let _no_spawning = SPAWNING.lock().unwrap();
            drop(fhir2table::sink::Output::open(&attempt.out()).unwrap());
        }
        assert_eq!(snapshot(&attempt.out()), tables, "{what}: the output changed");
        // Killed after its last call, the export is whole (the after state): the next one
        // refuses the full folder and leaves it so. Otherwise the next one clears and finishes.
        if export_files(&attempt.export()) == expected {
            let again = Command::new(env!("CARGO_BIN_EXE_fhir2table"))
                .args(["export", "-q"])
                .arg(attempt.out())
                .arg("--to")
                .arg(attempt.export())
                .args(extra)
                .output()
                .unwrap();
            assert_eq!(
                again.status.code(),
                Some(2),
                "{what}: the next export refuses the full folder"
            );
        } else {
            assert_eq!(
                run(&attempt, operation, Fault::None),
                Some(0),
                "{what}: the next export"
            );
        }
        assert_eq!(
            export_files(&attempt.export()),
            expected,
            "{what}, then exported again"
        );

        let failing = case.copy();
        let code = run(&failing, operation, Fault::Fail(call)).expect("a failing call ends the run");
        assert_eq!(code, 3, "export with call {call} failing");
        assert_eq!(
            export_files(&failing.export()),
            BTreeMap::new(),
            "export with call {call} failing leaves nothing"
        );
        assert!(!failing.export().exists(), "the folder it made is removed");
    }
    assert!(call > 10, "only {call} crash points; is the hook working?");
    eprintln!(
        "export {extra:?}: {} crash points, each whole or cleared",
        call - 1
    );
}
