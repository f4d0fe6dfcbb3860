//! The mutation fuzzer behind `cargo run --release --example fuzz` and `tests/fuzz_smoke.rs`:
//! batches of mutated inputs go through the real `fhir2table convert` binary, one process per
//! batch; a batch that breaks an oracle is bisected down to the input(s) that break it, which
//! are saved with a reproduction command.

mod corpus;
mod json;
mod mutate;
pub mod rng;
mod runner;
mod views;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use corpus::Corpus;
use mutate::Input;
use rng::Rng;
use runner::{Expectation, Limits, Symptom};

pub use mutate::CLASSES;
pub use views::VIEW_CLASSES;

/// What to fuzz and how hard.
#[derive(Debug, Clone)]
pub struct Config {
    /// Inputs to generate in total (data files and mutated views together).
    pub iterations: u64,
    pub seed: u64,
    /// The `fhir2table` binary under test.
    pub binary: PathBuf,
    /// The project folder: seeds come from its `fixtures/`, `views/` and `tests/sof/`.
    pub project: PathBuf,
    /// Where batches are written and run (emptied first).
    pub work: PathBuf,
    /// Where findings are saved.
    pub findings: PathBuf,
    /// Input files per `convert` run.
    pub batch_size: usize,
    /// Every this many batches, one runs with `--view default`.
    pub default_views_every: u64,
    /// Every this many batches, one runs with `--resources all`: the resource tables read every
    /// resource straight from its text (`tree::Reader`), a parser of its own to fuzz. Takes
    /// the batch before `--view default` does.
    pub resources_every: u64,
    /// One mutated ViewDefinition per this many data inputs.
    pub inputs_per_view: u64,
    /// Examples saved per kind of finding (the rest are counted).
    pub examples_per_signature: usize,
    pub limits: Limits,
    /// Print a progress line per batch.
    pub verbose: bool,
}

impl Config {
    /// Defaults for a project checkout at `project` and a binary at `binary`.
    pub fn new(project: PathBuf, binary: PathBuf) -> Config {
        Config {
            iterations: 10_000,
            seed: 1,
            binary,
            work: scratch_root().join(format!("fhir2table-fuzz-{}", std::process::id())),
            findings: project.join("target/fuzz-findings"),
            project,
            batch_size: 1000,
            default_views_every: 4,
            resources_every: 5,
            inputs_per_view: 200,
            examples_per_signature: 3,
            limits: Limits {
                timeout: Duration::from_secs(60),
                max_rss_bytes: 1 << 30,
                address_space_bytes: 6 << 30,
            },
            verbose: false,
        }
    }
}

/// A memory-backed folder when there is one: writing a batch to disk costs more than running it.
fn scratch_root() -> PathBuf {
    let shared_memory = PathBuf::from("/dev/shm");
    if shared_memory.is_dir() {
        shared_memory
    } else {
        std::env::temp_dir()
    }
}

/// One saved or counted finding.
#[derive(Debug, Clone)]
pub struct Finding {
    pub symptom: String,
    pub exit: String,
    /// The folder it was saved to, when saved.
    pub saved: Option<PathBuf>,
    /// What was done to the input(s).
    pub story: String,
}

/// Totals of a fuzzing run.
#[derive(Debug, Default)]
pub struct Summary {
    pub inputs: u64,
    pub data_inputs: u64,
    /// Bytes of data inputs generated.
    pub bytes: u64,
    pub view_inputs: u64,
    pub batches: u64,
    /// Batches run with `--resources all`.
    pub resource_batches: u64,
    pub runs: u64,
    pub elapsed: Duration,
    /// Time spent generating inputs, and inside `fhir2table` runs.
    pub generating: Duration,
    pub running: Duration,
    pub slowest_run: Duration,
    pub peak_rss_bytes: u64,
    pub findings: Vec<Finding>,
    /// Findings per signature (including those not saved).
    pub by_signature: BTreeMap<String, u64>,
    /// Inputs per mutation class, to show every class ran.
    pub by_class: BTreeMap<String, u64>,
}

impl Summary {
    pub fn inputs_per_second(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One thing to run: input files, maybe with a view (mutated, or `default`).
#[derive(Clone, Copy)]
enum Views<'a> {
    None,
    Default,
    Mutated(&'a [u8]),
    /// No view, the resource tables (`--resources all`).
    Resources,
}

/// Runs the fuzzer; errors are problems of the fuzzer itself (no binary, no fixtures, disk).
pub fn run(config: &Config) -> Result<Summary, String> {
    if !config.binary.is_file() {
        return Err(format!(
            "no fhir2table binary at {} (build it: cargo build --release)",
            config.binary.display()
        ));
    }
    // Runs happen inside the sandbox, so a relative path must be made absolute first.
    let config = &Config {
        binary: config
            .binary
            .canonicalize()
            .map_err(|e| format!("{}: {e}", config.binary.display()))?,
        ..config.clone()
    };
    let corpus = Corpus::load(&config.project)?;
    let plan = plan(config);
    let mut summary = Summary::default();
    let started = Instant::now();
    // The next batch is generated on another thread while fhir2table runs the current one.
    std::thread::scope(|scope| -> Result<(), String> {
        let corpus = &corpus;
        let mut next = plan
            .first()
            .map(|&(size, views)| scope.spawn(move || generate(config, corpus, 0, size, views)));
        for (batch, _) in plan.iter().enumerate() {
            let generated = next
                .take()
                .expect("a batch is being generated")
                .join()
                .expect("generating does not panic");
            next = plan.get(batch + 1).map(|&(size, views)| {
                scope.spawn(move || generate(config, corpus, batch as u64 + 1, size, views))
            });
            summary.generating += generated.took;
            let GeneratedBatch { inputs, views, .. } = generated;
            summary.bytes += inputs.iter().map(|i| i.bytes.len() as u64).sum::<u64>();
            for story in inputs
                .iter()
                .map(|i| &i.story)
                .chain(views.iter().map(|v| &v.story))
            {
                for class in story
                    .iter()
                    .filter(|s| CLASSES.contains(&s.as_str()) || VIEW_CLASSES.contains(&s.as_str()))
                {
                    *summary.by_class.entry(class.clone()).or_default() += 1;
                }
            }
            let every = config.default_views_every;
            let resources_every = config.resources_every;
            let with_views = if resources_every > 0 && batch as u64 % resources_every == resources_every - 1 {
                summary.resource_batches += 1;
                Views::Resources
            } else if every > 0 && batch as u64 % every == every - 1 {
                Views::Default
            } else {
                Views::None
            };
            let refs: Vec<&Input> = inputs.iter().collect();
            let label = format!("seed {} batch {batch}", config.seed);
            examine(config, &refs, with_views, &label, &mut summary)?;
            summary.inputs += inputs.len() as u64;
            summary.data_inputs += inputs.len() as u64;
            summary.batches += 1;
            for case in &views {
                let view_input: Vec<Input> = corpus
                    .view_input
                    .iter()
                    .map(|(name, bytes)| Input {
                        name: name.clone(),
                        bytes: bytes.clone(),
                        story: vec![format!("mutated view: {}", case.story.join(", "))],
                        skipped: false,
                    })
                    .collect();
                let refs: Vec<&Input> = view_input.iter().collect();
                examine(config, &refs, Views::Mutated(&case.text), &label, &mut summary)?;
                summary.inputs += 1;
                summary.view_inputs += 1;
            }
            if config.verbose {
                eprintln!(
                    "batch {batch}: {} inputs, {} MB, {:.0}/s ({:.1} s generating, {:.1} s in fhir2table), {} findings",
                    summary.inputs,
                    summary.bytes >> 20,
                    summary.inputs as f64 / started.elapsed().as_secs_f64(),
                    summary.generating.as_secs_f64(),
                    summary.running.as_secs_f64(),
                    summary.by_signature.values().sum::<u64>()
                );
            }
        }
        Ok(())
    })?;
    summary.elapsed = started.elapsed();
    let _ = fs::remove_dir_all(&config.work);
    Ok(summary)
}

/// Data inputs and mutated views of each batch: `batch_size` data inputs, and a view for every
/// `inputs_per_view` of them, until `iterations` inputs in all.
fn plan(config: &Config) -> Vec<(usize, usize)> {
    let (mut plan, mut total, mut credit) = (Vec::new(), 0u64, 0u64);
    while total < config.iterations {
        let size = (config.batch_size as u64).min(config.iterations - total);
        total += size;
        credit += size;
        let mut views = 0;
        while config.inputs_per_view > 0 && credit >= config.inputs_per_view && total < config.iterations {
            credit -= config.inputs_per_view;
            views += 1;
            total += 1;
        }
        plan.push((size as usize, views));
    }
    plan
}

/// One batch's inputs, made from its own random stream (seed, batch number).
struct GeneratedBatch {
    inputs: Vec<Input>,
    views: Vec<views::ViewCase>,
    took: Duration,
}

fn generate(config: &Config, corpus: &Corpus, batch: u64, size: usize, view_count: usize) -> GeneratedBatch {
    let started = Instant::now();
    let mut rng = Rng::derive(config.seed, batch);
    let inputs = (0..size)
        .map(|index| mutate::generate(&mut rng, corpus, index))
        .collect();
    let views = (0..view_count)
        .map(|_| views::generate(&mut rng, corpus))
        .collect();
    GeneratedBatch {
        inputs,
        views,
        took: started.elapsed(),
    }
}

/// Runs one batch; when it breaks an oracle, finds and saves the inputs that break it.
fn examine(
    config: &Config,
    inputs: &[&Input],
    views: Views<'_>,
    label: &str,
    summary: &mut Summary,
) -> Result<(), String> {
    let symptom = match try_inputs(config, inputs, views, summary)? {
        Some(symptom) => symptom,
        None => return Ok(()),
    };
    if let Views::Mutated(_) = views {
        // The view is the mutated input; the files it reads are the same for every view.
        let saved = summary
            .findings
            .iter()
            .filter(|f| f.symptom == symptom.signature && f.saved.is_some())
            .count();
        let save = saved < config.examples_per_signature;
        return record(config, inputs, views, symptom, label, summary, save);
    }
    hunt(config, inputs, views, symptom, label, summary)
}

/// Bisects a failing set of inputs down to each single input that fails (or a set that fails
/// only together) and saves it. Once a kind of finding has enough saved examples, further sets
/// failing the same way are counted without bisecting, so one common bug cannot stall a run.
fn hunt(
    config: &Config,
    inputs: &[&Input],
    views: Views<'_>,
    symptom: Symptom,
    label: &str,
    summary: &mut Summary,
) -> Result<(), String> {
    let saved = summary
        .findings
        .iter()
        .filter(|f| f.symptom == symptom.signature && f.saved.is_some())
        .count();
    if saved >= config.examples_per_signature {
        return record(config, inputs, views, symptom, label, summary, false);
    }
    if inputs.len() > 1 {
        let (left, right) = inputs.split_at(inputs.len() / 2);
        let mut halves_fail = false;
        for half in [left, right] {
            if let Some(half_symptom) = try_inputs(config, half, views, summary)? {
                halves_fail = true;
                hunt(config, half, views, half_symptom, label, summary)?;
            }
        }
        if halves_fail {
            return Ok(());
        }
        // Neither half fails alone: the inputs fail only together (memory, a shared index).
    }
    record(config, inputs, views, symptom, label, summary, true)
}

/// Counts a finding, and saves its inputs when `save_inputs`.
fn record(
    config: &Config,
    inputs: &[&Input],
    views: Views<'_>,
    symptom: Symptom,
    label: &str,
    summary: &mut Summary,
    save_inputs: bool,
) -> Result<(), String> {
    *summary.by_signature.entry(symptom.signature.clone()).or_default() += 1;
    let saved = match save_inputs {
        true => Some(save(
            config,
            inputs,
            views,
            &symptom,
            label,
            summary.findings.len(),
        )?),
        false => None,
    };
    let story = match (inputs, views) {
        (_, Views::Mutated(_)) => inputs.first().map(|i| i.story.join(", ")).unwrap_or_default(),
        ([input], _) => format!("{} ({})", input.name, input.story.join(", ")),
        _ if save_inputs => format!("{} inputs that fail only together", inputs.len()),
        (_, _) => format!(
            "{label}: a set of {} inputs, not bisected (examples enough)",
            inputs.len()
        ),
    };
    summary.findings.push(Finding {
        symptom: symptom.signature,
        exit: symptom.exit,
        saved,
        story,
    });
    Ok(())
}

/// Runs `inputs` once in a fresh sandbox; `Some` symptom when an oracle broke.
fn try_inputs(
    config: &Config,
    inputs: &[&Input],
    views: Views<'_>,
    summary: &mut Summary,
) -> Result<Option<Symptom>, String> {
    let io = |e: std::io::Error| format!("fuzzer work folder {}: {e}", config.work.display());
    let sandbox = runner::fresh_dir(&config.work).map_err(io)?;
    let input_dir = sandbox.join("in");
    fs::create_dir(&input_dir).map_err(io)?;
    for input in inputs {
        fs::write(input_dir.join(&input.name), &input.bytes).map_err(io)?;
    }
    let mut args: Vec<String> = ["convert", "--in", "in", "--out", "out", "-q"]
        .map(String::from)
        .to_vec();
    match views {
        Views::None => {}
        Views::Default => args.extend(["--view".into(), "default".into()]),
        Views::Mutated(text) => {
            fs::write(sandbox.join("view.json"), text).map_err(io)?;
            args.extend(["--view".into(), "view.json".into()]);
        }
        Views::Resources => args.extend(["--resources".into(), "all".into()]),
    }
    let expectation = Expectation {
        allowed_exits: if matches!(views, Views::Mutated(_)) {
            &[0, 1, 2]
        } else {
            &[0, 1]
        },
        fhir_files: inputs.iter().filter(|i| !i.skipped).count() as u64,
        skipped_files: inputs.iter().filter(|i| i.skipped).count() as u64,
        sandbox_before: runner::entries(&sandbox),
    };
    let outcome = runner::run(&config.binary, &args, &sandbox, &config.limits)
        .map_err(|e| format!("running {}: {e}", config.binary.display()))?;
    summary.runs += 1;
    summary.slowest_run = summary.slowest_run.max(outcome.elapsed);
    summary.running += outcome.elapsed;
    summary.peak_rss_bytes = summary.peak_rss_bytes.max(outcome.max_rss_bytes);
    let context = match views {
        Views::None => "",
        Views::Default => "--view default: ",
        Views::Mutated(_) => "mutated view: ",
        Views::Resources => "--resources all: ",
    };
    Ok(runner::check(&sandbox, &outcome, &expectation, &config.limits)
        .err()
        .map(|symptom| Symptom {
            signature: format!("{context}{}", symptom.signature),
            ..symptom
        }))
}

/// Saves failing inputs with a README saying what broke and how to reproduce it.
fn save(
    config: &Config,
    inputs: &[&Input],
    views: Views<'_>,
    symptom: &Symptom,
    label: &str,
    number: usize,
) -> Result<PathBuf, String> {
    let slug: String = symptom
        .signature
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let dir = config.findings.join(format!(
        "{:03}-seed{}-{}",
        number,
        config.seed,
        slug.trim_matches('-')
    ));
    let io = |e: std::io::Error| format!("saving a finding in {}: {e}", dir.display());
    runner::fresh_dir(&dir.join("in")).map_err(io)?;
    for input in inputs {
        fs::write(dir.join("in").join(&input.name), &input.bytes).map_err(io)?;
    }
    let view_flag = match views {
        Views::None => String::new(),
        Views::Default => " --view default".into(),
        Views::Mutated(text) => {
            fs::write(dir.join("view.json"), text).map_err(io)?;
            format!(" --view {}", dir.join("view.json").display())
        }
        Views::Resources => " --resources all".into(),
    };
    let stories: Vec<String> = inputs
        .iter()
        .map(|i| format!("- {}: {}", i.name, i.story.join(", ")))
        .collect();
    let readme = format!(
        "symptom: {}\noutcome: {}\nfound by: {label}\ninputs ({}):\n{}\n\nreproduce:\n  {} convert --in {} --out /tmp/fuzz-repro{view_flag}\n\ndetails:\n{}\n",
        symptom.signature,
        symptom.exit,
        inputs.len(),
        stories.join("\n"),
        config.binary.display(),
        dir.join("in").display(),
        symptom.detail,
    );
    fs::write(dir.join("README.txt"), readme).map_err(io)?;
    Ok(dir)
}
