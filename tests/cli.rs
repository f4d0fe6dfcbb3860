//! The command line: help, version, config precedence and errors, logging, replacing output.

mod common;

use common::{convert, fhir2table, fixtures};

#[test]
fn help_teaches_usage_examples_and_exit_codes() {
    let output = fhir2table().args(["convert", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for part in [
        "--in",
        "--out",
        "--config",
        "--batch-size",
        "--compression",
        "--threads",
        "--log-file",
        "--log-level",
        "--quiet",
        "--verbose",
        "--include",
        "--exclude log.ndjson",
        "Examples:",
        "Exit codes:",
    ] {
        assert!(help.contains(part), "convert --help lacks {part}");
    }
    // The command's own description, not a code comment, heads its help and the command list.
    assert!(
        help.starts_with("Convert a folder (or file) of FHIR R4 JSON into Parquet tables."),
        "{help}"
    );
    let output = fhir2table().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("convert  Convert a folder (or file) of FHIR R4 JSON into Parquet tables"),
        "{help}"
    );
    let output = fhir2table().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("fhir2table {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn both_helps_end_with_the_exit_codes_of_the_code() {
    let table = fhir2table::Exit::help_table();
    for args in [&["--help"][..], &["convert", "--help"]] {
        let output = fhir2table().args(args).output().unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.trim_end().ends_with(&table), "{args:?}: {help}");
    }
}

#[test]
fn every_config_key_has_a_flag_in_help_and_a_row_in_the_readme() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("config.example.toml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let output = fhir2table().args(["convert", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let keys: Vec<&str> = example
        .lines()
        .map(|line| line.trim_start_matches("# "))
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| key))
        .filter(|key| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert!(keys.len() >= 16, "{keys:?}");
    for key in keys {
        assert!(
            help.contains(&format!("[config: {key}")),
            "--help lacks [config: {key}]"
        );
        assert!(
            readme.contains(&format!("| `{key}")),
            "README's flag table lacks {key}"
        );
    }
}

#[test]
fn every_flag_of_the_readme_table_is_in_help() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let output = fhir2table().args(["convert", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    let table = readme
        .split("## Command line")
        .nth(1)
        .expect("README has a Command line section");
    let flags: Vec<&str> = table
        .lines()
        .take_while(|line| !line.starts_with("##"))
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|line| line.split(" |").next())
        .flat_map(|cell| cell.split('`'))
        .filter_map(|part| part.split_whitespace().next())
        .filter(|flag| flag.starts_with("--"))
        .collect();
    assert!(flags.contains(&"--resources") && flags.len() >= 25, "{flags:?}");
    for flag in flags {
        assert!(
            help.contains(flag),
            "README's flag table has {flag}, --help does not"
        );
    }
}

#[test]
fn config_file_keys_are_used_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::copy(
        fixtures().join("fhir-examples/Patient-f001.json"),
        dir.path().join("in/p.json"),
    )
    .unwrap();
    let config = dir.path().join("fhir2table.toml");
    std::fs::write(
        &config,
        "in = \"in\"\nout = \"from-config\"\nlog_file = \"run.log\"\nlog_level = \"debug\"\n",
    )
    .unwrap();

    let output = fhir2table()
        .arg("convert")
        .arg("--config")
        .arg(&config)
        .arg("-q")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stderr.is_empty(), "--quiet prints nothing on success");
    assert!(
        dir.path().join("from-config/patient").is_dir(),
        "relative paths follow the config file"
    );
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(
        log.contains("converting"),
        "debug lines reach the log file: {log}"
    );

    let flag_out = dir.path().join("from-flag");
    let output = fhir2table()
        .arg("convert")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&flag_out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(flag_out.join("patient").is_dir());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("1 files read"),
        "a summary without --quiet"
    );
}

#[test]
fn config_errors_name_the_key_and_the_file_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("in = \"x\"\nout = \"y\"\nbatchsize = 3\n", "batchsize"),
        ("in = \"x\"\nout = \"y\"\nthreads = \"two\"\n", "threads"),
        ("in = \"x\"\n", "missing `out`"),
        ("in = \"x\"\nout = \"y\"\ncompression = \"lz4\"\n", "compression"),
    ];
    for (text, expected) in cases {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, text).unwrap();
        let output = fhir2table()
            .arg("convert")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains("bad.toml"),
            "{text}: {stderr}"
        );
    }
    let output = fhir2table().args(["convert", "--in", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing `out`"));
    let output = fhir2table()
        .args(["convert", "--in", "x", "--out", "y", "--compression", "lz4"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap rejects bad flag values with 2"
    );
}

#[test]
fn a_second_run_replaces_the_tables_and_leaves_no_staging_behind() {
    let run = convert(&fixtures().join("synthea"), &[]);
    assert_eq!(run.table("patient").rows.len(), 7);
    let output = fhir2table()
        .args(["convert", "-q", "--in"])
        .arg(fixtures().join("handmade"))
        .arg("--out")
        .arg(run.out.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(run.table("patient").rows.len(), 2, "the old rows are gone");
    let mut names: Vec<String> = std::fs::read_dir(run.out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [".fhir2table", "encounter", "patient"],
        "tables, and the tool's folder"
    );
    let mut own: Vec<String> = std::fs::read_dir(run.out.path().join(".fhir2table"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    own.sort();
    assert_eq!(own, ["_deleted", "_lock", "_run.json"]);
}

#[test]
fn report_json_goes_to_stdout_and_pipes_get_no_progress_bar() {
    let out = tempfile::tempdir().unwrap();
    let output = fhir2table()
        .args(["convert", "--report", "json", "--in"])
        .arg(fixtures().join("handmade"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    printed_report(&output, out.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "no terminal control codes: {stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "just the summary line: {stderr}");
}

/// The JSON report a `--report json` run printed on stdout, checked to be whole and the same as
/// the one it wrote into `out`.
fn printed_report(output: &std::process::Output, out: &std::path::Path) -> serde_json::Value {
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("stdout is the whole JSON report");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(".fhir2table/_run.json")).unwrap()).unwrap();
    assert_eq!(printed, written);
    printed
}

/// A run with resource tables ends the process at once after its command returns (the
/// allocator's sweep at exit skipped, `allocator::exit_at_once_after_mimalloc`): the JSON
/// report still reaches a pipe whole, after the summary on stderr, and the exit code is the
/// run's (1: an input was lost).
#[test]
fn a_resources_run_ending_at_once_still_prints_its_whole_report_and_exit_code() {
    let input = tempfile::tempdir().unwrap();
    copy_dir_files(&fixtures().join("handmade"), input.path());
    std::fs::write(
        input.path().join("broken.json"),
        "{\"resourceType\": \"Patient\", \"id\": ",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = fhir2table()
        .args(["convert", "--report", "json", "--resources", "all", "--in"])
        .arg(input.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let printed = printed_report(&output, out.path());
    assert!(printed.to_string().contains("broken.json"), "{printed}");
    assert!(out.path().join("resource_patient").is_dir());
}

#[test]
fn a_second_run_on_the_same_output_is_refused_while_the_first_holds_the_lock() {
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir(out.path().join(".fhir2table")).unwrap();
    let lock_path = out.path().join(".fhir2table/_lock");
    // This test process holds the lock as a run would: an flock on the lock file, whose text
    // names the holder.
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    std::fs::write(
        &lock_path,
        format!(
            "pid={}\nhost=test-host\nstarted=2026-01-01T00:00:00Z\n",
            std::process::id()
        ),
    )
    .unwrap();
    let run = |out: &std::path::Path| {
        fhir2table()
            .args(["convert", "-q", "--in"])
            .arg(fixtures().join("handmade"))
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let output = run(out.path());
    assert_eq!(output.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("pid {} on test-host", std::process::id())) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(!out.path().join("patient").exists());
    // A stale text without a holder (the holder died: the kernel dropped its flock) is no
    // obstacle, and the file's text then names the new holder.
    drop(lock);
    assert_eq!(run(out.path()).status.code(), Some(0));
    let text = std::fs::read_to_string(&lock_path).unwrap();
    assert!(!text.contains(&format!("pid={}\n", std::process::id())), "{text}");
    assert!(text.starts_with("pid="), "{text}");
}

#[test]
fn write_modes_append_refuse_and_check_schemas() {
    let out = tempfile::tempdir().unwrap();
    let input = fixtures().join("handmade");
    let run = |extra: &[&str]| {
        fhir2table()
            .args(["convert", "-q", "--in"])
            .arg(&input)
            .arg("--out")
            .arg(out.path())
            .args(extra)
            .output()
            .unwrap()
    };
    assert_eq!(run(&[]).status.code(), Some(0));
    // append: a second file beside the first; old files untouched.
    let first_files = common::read_table(&out.path().join("patient")).files;
    assert_eq!(first_files, 1);
    assert_eq!(run(&["--mode", "append"]).status.code(), Some(0));
    let patients = common::read_table(&out.path().join("patient"));
    assert_eq!(patients.files, 2);
    assert_eq!(patients.rows.len(), 4, "the two runs' rows");
    // error: refuses a non-empty table folder before doing anything.
    let output = run(&["--mode", "error"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("exists and is not empty (--mode error)"));
    assert_eq!(common::read_table(&out.path().join("patient")).files, 2);

    // append with another schema under the same table name: refused, nothing written.
    let views = tempfile::tempdir().unwrap();
    let view_a = views.path().join("a.json");
    std::fs::write(
        &view_a,
        r#"{"name":"names","resource":"Patient","select":[{"column":[{"name":"id","path":"id"}]}]}"#,
    )
    .unwrap();
    let view_b = views.path().join("b.json");
    std::fs::write(
        &view_b,
        r#"{"name":"names","resource":"Patient","select":[{"column":[{"name":"id","path":"id"},{"name":"active","path":"active"}]}]}"#,
    )
    .unwrap();
    assert_eq!(
        run(&["--mode", "append", "--view", view_a.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let output = run(&["--mode", "append", "--view", view_b.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot append to") && stderr.contains("column active is missing"),
        "{stderr}"
    );
    assert_eq!(
        common::read_table(&out.path().join("patient")).files,
        3,
        "nothing written by the refused run"
    );
}

#[test]
fn inspect_shows_tables_rows_schema_and_the_last_run() {
    let run = convert(&fixtures().join("synthea"), &["--view", "default"]);
    assert_eq!(run.code, 0);
    let output = fhir2table()
        .arg("inspect")
        .arg(run.out.path())
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let inspection: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspection["tables"]["patient"]["rows"], 7);
    assert_eq!(inspection["tables"]["encounter"]["rows"], 62);
    assert_eq!(
        inspection["tables"]["patient"]["files"].as_array().unwrap().len(),
        1
    );
    assert_eq!(inspection["tables"]["patient"]["schema"][0], "id: Utf8 not null");
    assert!(inspection["tables"]["condition"]["rows"].as_u64().unwrap() > 0);
    assert_eq!(inspection["last_run"]["exit_code"], 0);
    let text = fhir2table().arg("inspect").arg(run.out.path()).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("patient: 7 rows in 1 file(s)") && text.contains("last run:"),
        "{text}"
    );
    let missing = fhir2table().args(["inspect", "/no/such/out"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn archive_and_quarantine_folders_may_not_overlap_the_input_or_output() {
    let input = tempfile::tempdir().unwrap();
    copy_dir_files(&fixtures().join("handmade"), input.path());
    let out = tempfile::tempdir().unwrap();
    let cases = [
        ("--archive", out.path().join("patient")),
        ("--errors-to", out.path().to_path_buf()),
        ("--archive", input.path().join("done")),
        ("--errors-to", input.path().join("failed")),
    ];
    for (flag, folder) in cases {
        let output = fhir2table()
            .args(["convert", "-q", "--in"])
            .arg(input.path())
            .arg("--out")
            .arg(out.path())
            .arg(flag)
            .arg(&folder)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag} {}", folder.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag) && stderr.contains("own"), "{stderr}");
        assert!(input.path().join("a-visit.json").exists(), "no input touched");
        assert!(!out.path().join("patient").exists(), "nothing written");
    }
}

fn copy_dir_files(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_run_of_an_older_release_holding_its_lock_file_refuses_this_run() {
    let out = tempfile::tempdir().unwrap();
    // Older releases locked OUT/.fhir2table.lock; one of them is running now.
    let old_lock = std::fs::File::create(out.path().join(".fhir2table.lock")).unwrap();
    old_lock.lock().unwrap();
    let input = fixtures().join("handmade");
    let (code, stderr) = common::convert_into(&input, out.path(), &["-q"]);
    assert_eq!(code, 4, "{stderr}");
    drop(old_lock);
    let (code, stderr) = common::convert_into(&input, out.path(), &["-q"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        out.path().join(".fhir2table.lock").exists(),
        "the old lock file stays"
    );
}

#[test]
fn inspect_reads_an_older_releases_report_and_state_without_moving_them() {
    let run = convert(&fixtures().join("handmade"), &["-q", "--incremental"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.out.path();
    // As releases before the tool folder left it.
    std::fs::rename(out.join(".fhir2table/_run.json"), out.join("_run.json")).unwrap();
    std::fs::create_dir(out.join("_state")).unwrap();
    std::fs::rename(out.join(".fhir2table/_state.json"), out.join("_state/state.json")).unwrap();
    let output = fhir2table()
        .arg("inspect")
        .arg(out)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let inspection: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspection["last_run"]["exit_code"], 0);
    assert_eq!(inspection["inputs_tracked"], 3);
    assert!(
        out.join("_run.json").exists() && out.join("_state/state.json").exists(),
        "nothing moved"
    );
}
