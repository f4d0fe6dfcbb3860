//! The mutation fuzzer: mutated fixtures (byte flips, cuts, splices, JSON type swaps, odd
//! Unicode, deep nesting, huge values) and mutated ViewDefinitions through the real
//! `fhir2table convert`, checked against oracles (documented exit code, no crash or signal,
//! `_run.json` present and counting every file, time and memory limits). See docs/FUZZING.md.
//!
//! ```text
//! cargo run --release --example fuzz -- --iterations 100000 [--seed 7]
//! ```
//!
//! Options: `--iterations N` (inputs, default 10000), `--seed S` (default: from the clock),
//! `--batch-size N` (files per convert run, default 1000), `--inputs-per-view N` (one mutated
//! view per N data inputs, default 200; 0: none), `--default-views-every N` (every Nth batch
//! with `--view default`, default 4), `--resources-every N` (every Nth batch with `--resources
//! all`, default 5; it takes the batch first), `--bin PATH` (default: the
//! `fhir2table` next to this example, rebuilt first when run by cargo), `--timeout-secs N` (per
//! run, default 60), `--rss-mb N` (peak RSS allowed, default 1024), `--findings DIR` (default
//! target/fuzz-findings), `--work DIR` (scratch folder), `--quiet`. Exits 1 on any finding.

mod fuzzer;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

fn main() -> ExitCode {
    match run() {
        Ok(clean) => ExitCode::from(u8::from(!clean)),
        Err(message) => {
            eprintln!("fuzz: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let project = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let mut config = fuzzer::Config::new(project.clone(), sibling_binary(&project));
    config.seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    config.verbose = true;
    let mut explicit_binary = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--iterations" => config.iterations = number(&value()?)?,
            "--seed" => config.seed = number(&value()?)?,
            "--batch-size" => config.batch_size = number::<usize>(&value()?)?.max(1),
            "--inputs-per-view" => config.inputs_per_view = number(&value()?)?,
            "--default-views-every" => config.default_views_every = number(&value()?)?,
            "--resources-every" => config.resources_every = number(&value()?)?,
            "--timeout-secs" => config.limits.timeout = Duration::from_secs(number(&value()?)?),
            "--rss-mb" => config.limits.max_rss_bytes = number::<u64>(&value()?)? << 20,
            "--findings" => config.findings = PathBuf::from(value()?),
            "--work" => config.work = PathBuf::from(value()?),
            "--bin" => {
                config.binary = PathBuf::from(value()?);
                explicit_binary = true;
            }
            "--quiet" => config.verbose = false,
            other => {
                return Err(format!(
                    "unknown option {other} (see the doc comment of examples/fuzz/main.rs)"
                ))
            }
        }
    }
    if !explicit_binary {
        rebuild_binary()?;
    }
    eprintln!(
        "fuzz: {} inputs, seed {}, binary {}",
        config.iterations,
        config.seed,
        config.binary.display()
    );
    let summary = fuzzer::run(&config)?;
    println!(
        "fuzz: {} inputs ({} data files, {} mutated views) in {} runs, {:.1} s, {:.0} inputs/s; slowest run {:.2} s, peak RSS {} MB",
        summary.inputs,
        summary.data_inputs,
        summary.view_inputs,
        summary.runs,
        summary.elapsed.as_secs_f64(),
        summary.inputs_per_second(),
        summary.slowest_run.as_secs_f64(),
        summary.peak_rss_bytes >> 20,
    );
    let classes: Vec<String> = summary
        .by_class
        .iter()
        .map(|(class, n)| format!("{class} {n}"))
        .collect();
    println!("fuzz: mutations applied: {}", classes.join(", "));
    if summary.findings.is_empty() {
        println!("fuzz: seed {}: no findings", config.seed);
        return Ok(true);
    }
    println!("fuzz: seed {}: {} findings", config.seed, summary.findings.len());
    for (signature, count) in &summary.by_signature {
        println!("  {count:>5} x {signature}");
    }
    for finding in summary.findings.iter().filter(|f| f.saved.is_some()) {
        println!("  {} [{}]: {}", finding.symptom, finding.exit, finding.story);
        println!("    saved in {}", finding.saved.as_ref().unwrap().display());
    }
    Ok(false)
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}

/// Under `cargo run`, brings the binary under test up to date with the sources first.
fn rebuild_binary() -> Result<(), String> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "fhir2table"])
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| "cargo build --release failed".to_owned())
}

/// The `fhir2table` next to this example (`target/<profile>/examples/fuzz` → `target/<profile>/`).
fn sibling_binary(project: &Path) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("fhir2table")))
        .unwrap_or_else(|| project.join("target/release/fhir2table"))
}
