//! CI's short fuzzing budget: the mutation fuzzer of `examples/fuzz` (shared as a module) on a
//! fixed seed, every mutation class included, through the real binary. Any finding fails the
//! test and names the saved input and how to reproduce it. `FUZZ_SMOKE_ITERATIONS` and
//! `FUZZ_SMOKE_SEED` change the budget and seed.

#[path = "../examples/fuzz/fuzzer/mod.rs"]
mod fuzzer;

use std::path::PathBuf;

#[test]
fn a_short_fuzz_run_finds_nothing() {
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    let mut config = fuzzer::Config::new(project, PathBuf::from(env!("CARGO_BIN_EXE_fhir2table")));
    config.iterations = env_number("FUZZ_SMOKE_ITERATIONS").unwrap_or(10_000);
    config.seed = env_number("FUZZ_SMOKE_SEED").unwrap_or(20_260_601);
    config.batch_size = 1000;
    config.default_views_every = 2;
    config.resources_every = 4;
    config.inputs_per_view = 50;
    config.findings = std::env::var_os("FUZZ_SMOKE_FINDINGS")
        .map_or_else(|| scratch.path().join("findings"), PathBuf::from);
    config.limits.timeout = std::time::Duration::from_secs(30);
    let summary = fuzzer::run(&config).expect("the fuzzer runs");
    eprintln!(
        "fuzz smoke: {} inputs in {} runs, {:.1} s, {:.0} inputs/s, {} findings",
        summary.inputs,
        summary.runs,
        summary.elapsed.as_secs_f64(),
        summary.inputs_per_second(),
        summary.findings.len()
    );
    assert_eq!(summary.inputs, config.iterations);
    assert!(summary.view_inputs > 0, "mutated views ran");
    assert!(summary.resource_batches > 0, "batches ran with --resources all");
    for class in fuzzer::CLASSES {
        assert!(
            summary.by_class.get(*class).copied().unwrap_or(0) > 0,
            "mutation class {class} ran"
        );
    }
    let report: Vec<String> = summary
        .findings
        .iter()
        .map(|finding| {
            let saved = finding.saved.as_ref().map(|dir| {
                std::fs::read_to_string(dir.join("README.txt")).unwrap_or_else(|_| dir.display().to_string())
            });
            format!(
                "{} [{}]: {}\n{}",
                finding.symptom,
                finding.exit,
                finding.story,
                saved.unwrap_or_default()
            )
        })
        .collect();
    assert!(
        summary.findings.is_empty(),
        "seed {}: {} findings (set FUZZ_SMOKE_FINDINGS=DIR to keep the inputs):\n{}",
        config.seed,
        summary.findings.len(),
        report.join("\n")
    );
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}
