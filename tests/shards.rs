//! Sharded runs (`convert --shard I/N`, `fhir2table commit`): N processes converting one export
//! must leave exactly what one process converting all of it leaves, cell for cell (conditional
//! references resolved across shards included), whatever order they finish in, however big NDJSON
//! files are cut, and whichever shard is killed and run again, at whatever file-system call.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{
    copy_tree, fhir2table, fixtures, read_table, report_essentials, report_of as report, table_folders,
};

/// Every table of an output (the tool's `_deleted` included), rows sorted: runs whose files are
/// cut differently compare equal when they hold the same rows.
fn tables(out: &Path) -> BTreeMap<String, Vec<Vec<Option<String>>>> {
    let mut tables: BTreeMap<_, _> = table_folders(out)
        .into_iter()
        .map(|name| (name.clone(), read_table(&out.join(&name)).sorted_rows()))
        .collect();
    let deleted = out.join(".fhir2table/_deleted");
    if deleted.is_dir() {
        tables.insert("_deleted".into(), read_table(&deleted).sorted_rows());
    }
    tables
}

/// `fhir2table convert --in input --out out --shard shard extra...`, not waited for.
fn shard_command(input: &Path, out: &Path, shard: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fhir2table"));
    command
        .arg("convert")
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--shard", shard])
        .args(extra)
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("JOB_COMPLETIONS")
        .env_remove("FHIR2TABLE_CRASH_AFTER_FS_CALL");
    command
}

/// Starts all `count` shards at once and waits for them; their outputs by index.
fn run_shards_concurrently(input: &Path, out: &Path, count: u32, extra: &[&str]) -> Vec<Output> {
    let children: Vec<_> = (0..count)
        .map(|index| {
            shard_command(input, out, &format!("{index}/{count}"), extra)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect()
}

fn single_run(input: &Path, extra: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let (code, stderr) = common::convert_into(input, out.path(), extra);
    assert!(code <= 1, "{stderr}");
    out
}

fn assert_same_output(sharded: &Path, single: &Path) {
    let (got, expected) = (tables(sharded), tables(single));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, rows) in &expected {
        assert!(
            !rows.is_empty() || name != "patient",
            "the fixtures have patients"
        );
        assert!(got[name] == *rows, "table {name} differs from the single run's");
    }
    assert_eq!(
        report_essentials(&report(sharded)),
        report_essentials(&report(single))
    );
    assert!(
        !sharded.join(".fhir2table/_shards").exists() || dir_is_empty(&sharded.join(".fhir2table/_shards")),
        "the commit removes the shards"
    );
}

/// Asserts a finished process's exit code, showing its stderr when it is not the one expected.
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn dir_is_empty(path: &Path) -> bool {
    std::fs::read_dir(path).unwrap().next().is_none()
}

#[test]
fn four_concurrent_shards_leave_what_one_process_leaves() {
    // Every fixture: Synthea Bundles whose conditional references point into other files,
    // Bulk Data NDJSON with deletions, broken files, HL7 examples; every default view.
    let input = fixtures();
    let single = single_run(&input, &["--view", "default"]);
    let out = tempfile::tempdir().unwrap();
    let outputs = run_shards_concurrently(&input, out.path(), 4, &["--view", "default"]);
    let mut committers = 0;
    for output in &outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // A shard exits 1 when its own share held bad input, as one process would.
        assert!(matches!(output.status.code(), Some(0 | 1)), "{stderr}");
        committers += usize::from(stderr.contains("finished last and committed all 4 shards"));
    }
    assert_eq!(committers, 1, "exactly one shard commits");
    assert_same_output(out.path(), single.path());
    // Conditional references were resolved across shards: the encounters' practitioners are in
    // other files than the encounters.
    let encounters = read_table(&out.path().join("encounter"));
    assert!(encounters.column("practitioner_id").iter().any(Option::is_some));
    // Nothing left to commit, which is no error (a follow-up commit step of a job finds this).
    let again = fhir2table().arg("commit").arg(out.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to commit"));
    assert_same_output(out.path(), single.path());
}

#[test]
fn shards_commit_by_command_once_all_are_done_and_append_as_one_run() {
    let input = fixtures().join("synthea");
    let out = tempfile::tempdir().unwrap();
    let run = |shard: &str, extra: &[&str]| {
        let output = shard_command(&input, out.path(), shard, extra).output().unwrap();
        assert_exit(&output, 0);
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let commit = || fhir2table().arg("commit").arg(out.path()).output().unwrap();
    // Shard 1 of 2 alone: nothing visible, and commit says what it waits for.
    assert!(run("1/2", &[]).contains("waiting for shard 0/2"));
    assert!(table_folders(out.path()).is_empty());
    let waiting = commit();
    assert_eq!(waiting.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&waiting.stderr).contains("waiting for shard 0/2"));
    // The second shard completes the run and commits it.
    assert!(run("0/2", &[]).contains("committed all 2 shards"));
    let single = single_run(&input, &[]);
    assert_same_output(out.path(), single.path());
    // Appending a sharded run of the same input doubles every row, as an appending run does.
    run("0/3", &["--mode", "append"]);
    run("2/3", &["--mode", "append"]);
    assert_eq!(read_table(&out.path().join("patient")).rows.len(), 7);
    run("1/3", &["--mode", "append"]);
    assert_eq!(read_table(&out.path().join("patient")).rows.len(), 14);
    // A shard refuses what needs the whole run.
    let refused = shard_command(&input, out.path(), "0/2", &["--incremental"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--incremental cannot be used with --shard"));
    // Bad shard numbers are usage errors; so are bad Indexed Job variables.
    for bad in ["2/2", "1/0", "x"] {
        let output = shard_command(&input, out.path(), bad, &[]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
    }
    let mut from_env = Command::new(env!("CARGO_BIN_EXE_fhir2table"));
    let output = from_env
        .args(["convert", "--in"])
        .arg(&input)
        .arg("--out")
        .arg(out.path())
        .env("JOB_COMPLETION_INDEX", "3")
        .env("JOB_COMPLETIONS", "3")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("JOB_COMPLETION_INDEX"));
}

#[test]
fn an_indexed_jobs_variables_pick_the_shard() {
    let input = fixtures().join("synthea");
    let out = tempfile::tempdir().unwrap();
    for index in ["0", "1"] {
        let output = Command::new(env!("CARGO_BIN_EXE_fhir2table"))
            .args(["convert", "--in"])
            .arg(&input)
            .arg("--out")
            .arg(out.path())
            .env("JOB_COMPLETION_INDEX", index)
            .env("JOB_COMPLETIONS", "2")
            .output()
            .unwrap();
        assert_exit(&output, 0);
    }
    assert_same_output(out.path(), single_run(&input, &[]).path());
}

/// An NDJSON file of about 70 MB (more than two 32 MiB parts): the fixtures' Patient lines again
/// and again under new ids.
fn big_ndjson(folder: &Path) -> PathBuf {
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(fixtures().join("ndjson/Patient.ndjson"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let path = folder.join("Patient.000.ndjson");
    let mut text = String::new();
    let mut copy = 0;
    while text.len() < 70 << 20 {
        for line in &lines {
            let mut resource = line.clone();
            let id = format!("{}-{copy}", resource["id"].as_str().unwrap());
            resource["id"] = serde_json::Value::String(id);
            text.push_str(&resource.to_string());
            text.push('\n');
        }
        copy += 1;
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_big_ndjson_file_is_shared_out_by_byte_range() {
    let input = tempfile::tempdir().unwrap();
    let big = big_ndjson(input.path());
    let size = std::fs::metadata(&big).unwrap().len();
    let single = single_run(input.path(), &["--threads", "1"]);
    let out = tempfile::tempdir().unwrap();
    let mut read = Vec::new();
    for index in 0..3 {
        let output = shard_command(
            input.path(),
            out.path(),
            &format!("{index}/3"),
            &["--report", "json"],
        )
        .output()
        .unwrap();
        assert_exit(&output, 0);
        let shard: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        read.push(shard["inputs"]["bytes"].as_u64().unwrap());
    }
    // Each shard read a part of the one file, and together all of it.
    assert!(
        read.iter().all(|&bytes| bytes > 0 && bytes < size),
        "{read:?} of {size}"
    );
    assert_eq!(read.iter().sum::<u64>(), size);
    assert_same_output(out.path(), single.path());
    assert_eq!(report(out.path())["inputs"]["read"], 1);
}

#[test]
fn a_shard_killed_at_any_file_system_call_is_run_again_without_losing_or_doubling_rows() {
    // Shards 0 and 1 of 3 are done; shard 2, which converts and then commits all three, is
    // killed right after each of its file-system calls in turn. Then `fhir2table commit` runs
    // (finishing an interrupted commit, or finding the shard unfinished), and if nothing was
    // committed the shard is run again. Right after the commit command the output must hold no
    // table (before) or exactly the single run's (after); in the end, always the single run's.
    let input = fixtures().join("ndjson");
    let extra = ["--threads", "1"];
    let single = single_run(&input, &extra);
    let expected = tables(single.path());
    let prepared = tempfile::tempdir().unwrap();
    for shard in ["0/3", "1/3"] {
        let output = shard_command(&input, prepared.path(), shard, &extra)
            .output()
            .unwrap();
        assert_exit(&output, 0);
    }
    let mut crashes = 0;
    for call in 1.. {
        let case = tempfile::tempdir().unwrap();
        let out = case.path().join("out");
        copy_tree(prepared.path(), &out);
        let killed = shard_command(&input, &out, "2/3", &extra)
            .env("FHIR2TABLE_CRASH_AFTER_FS_CALL", call.to_string())
            .output()
            .unwrap();
        if killed.status.code().is_some() {
            // The run made fewer calls than `call`: it finished, and the sweep is complete.
            assert_exit(&killed, 0);
            assert_same_output(&out, single.path());
            break;
        }
        crashes += 1;
        let commit = fhir2table().arg("commit").arg(&out).output().unwrap();
        let stderr = String::from_utf8_lossy(&commit.stderr);
        let now = tables(&out);
        match commit.status.code() {
            Some(0) => assert!(
                now == expected,
                "call {call}: committed, but not the single run's rows"
            ),
            Some(2) => {
                assert!(stderr.contains("waiting for shard 2/3"), "call {call}: {stderr}");
                assert!(
                    now.is_empty(),
                    "call {call}: nothing may be visible before the commit"
                );
                let retried = shard_command(&input, &out, "2/3", &extra).output().unwrap();
                assert_eq!(
                    retried.status.code(),
                    Some(0),
                    "call {call}: {}",
                    String::from_utf8_lossy(&retried.stderr)
                );
            }
            other => panic!("call {call}: commit exited {other:?}: {stderr}"),
        }
        assert_same_output(&out, single.path());
        let leftovers: Vec<_> = std::fs::read_dir(out.join(".fhir2table"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("staging") || name.contains(".tmp-") || name == "_commit.json")
            .collect();
        assert!(leftovers.is_empty(), "call {call}: debris {leftovers:?}");
    }
    assert!(
        crashes > 20,
        "the sweep reached the shard's own commit and the commit of all shards ({crashes} calls)"
    );
}

/// The fenced block of `language` in docs/SCALING.md.
fn scaling_doc_block(language: &str) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/SCALING.md")).unwrap();
    let start = doc
        .find(&format!("```{language}\n"))
        .expect("the block is in the doc")
        + language.len()
        + 4;
    doc[start..start + doc[start..].find("```").unwrap()].to_owned()
}

/// Runs the docs' shard workers with `/data` mapped to a local folder, one after another, then
/// checks that they committed what one process writes.
fn check_doc_workers(workers: Vec<Command>, data: &Path, input: &Path) {
    for mut worker in workers {
        let output = worker.output().unwrap();
        assert_exit(&output, 0);
    }
    let single = single_run(input, &["--format", "delta", "--view", "default"]);
    let (got, expected) = (data.join("lake"), single.path());
    assert_eq!(
        report_essentials(&report(&got)),
        report_essentials(&report(expected))
    );
}

#[test]
fn the_kubernetes_and_aws_batch_examples_in_docs_run_a_sharded_conversion() {
    let input = fixtures().join("synthea");
    let binary = env!("CARGO_BIN_EXE_fhir2table");
    // Kubernetes: the container's args, with the Job's variables.
    let yaml = scaling_doc_block("yaml");
    let args_line = yaml.find("args: [").unwrap() + "args: ".len();
    let args_text = &yaml[args_line..args_line + yaml[args_line..].find(']').unwrap() + 1];
    let args: Vec<String> = serde_json::from_str(&args_text.replace('\n', " ")).unwrap();
    let completions: u32 = yaml
        .lines()
        .find_map(|line| line.trim().strip_prefix("completions:"))
        .and_then(|rest| rest.split('#').next())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        yaml.contains(&format!("value: \"{completions}\"")),
        "JOB_COMPLETIONS matches completions"
    );
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("export")).unwrap();
    copy_tree(&input, &data.path().join("export"));
    let local = |arg: &String, data: &Path| arg.replace("/data", &data.display().to_string());
    let pods = (0..completions)
        .map(|index| {
            let mut pod = Command::new(binary);
            pod.args(args.iter().map(|arg| local(arg, data.path())))
                .env("JOB_COMPLETION_INDEX", index.to_string())
                .env("JOB_COMPLETIONS", completions.to_string());
            pod
        })
        .collect();
    check_doc_workers(pods, data.path(), &input);

    // AWS Batch: the job definition's command, through sh, with the array index.
    let job: serde_json::Value = serde_json::from_str(&scaling_doc_block("json")).unwrap();
    let container = &job["containerProperties"];
    let command: Vec<String> = serde_json::from_value(container["command"].clone()).unwrap();
    assert_eq!(command[..2], ["sh", "-c"]);
    let shards = container["environment"][0]["value"].as_str().unwrap().to_owned();
    let data = tempfile::tempdir().unwrap();
    copy_tree(&input, &data.path().join("export"));
    let script = local(&command[2], data.path()).replace("exec fhir2table", &format!("exec {binary}"));
    let children = (0..shards.parse::<u32>().unwrap())
        .map(|index| {
            let mut child = Command::new("sh");
            child
                .args(["-c", &script])
                .env("AWS_BATCH_JOB_ARRAY_INDEX", index.to_string())
                .env("SHARDS", &shards)
                .env_remove("JOB_COMPLETION_INDEX");
            child
        })
        .collect();
    check_doc_workers(children, data.path(), &input);
}

#[test]
fn a_killed_commit_replayed_later_leaves_the_next_runs_shards_alone() {
    // Run A (the NDJSON export, 2 shards) is killed at each file-system call of its last shard,
    // which converts and commits. Run B (the Synthea Bundles, the same shard folders) then runs
    // both shards. B's shards open the output, which finishes A's commit if its journal was
    // written; that commit's removal of A's shard folders must spare B's, whose rows must be
    // what B's commit leaves: exactly a single run of B's input.
    let (first, second) = (fixtures().join("ndjson"), fixtures().join("synthea"));
    let extra = ["--threads", "1"];
    let single = single_run(&second, &extra);
    for call in 1.. {
        let out = tempfile::tempdir().unwrap();
        let done = shard_command(&first, out.path(), "0/2", &extra).output().unwrap();
        assert_exit(&done, 0);
        let killed = shard_command(&first, out.path(), "1/2", &extra)
            .env("FHIR2TABLE_CRASH_AFTER_FS_CALL", call.to_string())
            .output()
            .unwrap();
        let finished = killed.status.code().is_some();
        for shard in ["0/2", "1/2"] {
            let output = shard_command(&second, out.path(), shard, &extra)
                .output()
                .unwrap();
            assert_exit(&output, 0);
        }
        assert!(
            tables(out.path()) == tables(single.path()),
            "call {call}: the second run's rows are not what it converted"
        );
        assert!(
            dir_is_empty(&out.path().join(".fhir2table/_shards")),
            "call {call}"
        );
        if finished {
            break;
        }
    }
}
