//! A run that fails after it took the output folder, by an error or by a panic on the main
//! thread: the previous tables stay, no staging folder is left, and `_run.json` says why.

mod common;

use common::{fixtures, read_table};
use fhir2table::config::{Options, Settings};
use fhir2table::convert::{convert, Progress};

/// A progress display that panics when the input is read (a bug in a library user's callback,
/// standing in for any panic on the run's own thread).
struct PanickingProgress;

impl Progress for PanickingProgress {
    fn finish(&self) {
        panic!("the progress display broke");
    }
}

#[test]
fn a_panic_on_the_main_thread_is_a_failed_run_with_a_report() {
    let out = tempfile::tempdir().unwrap();
    let settings = |input: &str| {
        let options = Options {
            input: Some(fixtures().join(input)),
            out: Some(out.path().to_path_buf()),
            threads: Some(1),
            ..Options::default()
        };
        Settings::from_options(options, "test").unwrap()
    };
    convert(&settings("handmade"), &()).unwrap();
    let before = read_table(&out.path().join("patient")).sorted_rows();

    let error = convert(&settings("synthea/pathling-conditional"), &PanickingProgress).unwrap_err();
    assert_eq!(fhir2table::Exit::for_error(&error), fhir2table::Exit::Failed);
    assert!(
        format!("{error:#}").contains("the progress display broke"),
        "{error:#}"
    );
    assert_eq!(read_table(&out.path().join("patient")).sorted_rows(), before);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join(".fhir2table/_run.json")).unwrap())
            .unwrap();
    assert_eq!(report["exit_code"], 3);
    assert!(
        report["failure"].as_str().unwrap().contains("internal error"),
        "{report}"
    );
    let leftovers: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".fhir2table-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
