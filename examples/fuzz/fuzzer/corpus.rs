//! The seed corpus: every fixture file as it is, the resources inside them (Bundle entries and
//! NDJSON lines) as small seeds, and ViewDefinitions (the shipped views and the SQL on FHIR
//! conformance tests' views) with the resources those tests run on.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// How an input file lays out its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Json,
    Ndjson,
}

/// One fixture file, decompressed.
#[derive(Debug, Clone)]
pub struct Document {
    pub name: String,
    pub bytes: Vec<u8>,
    pub layout: Layout,
}

/// Everything mutations start from.
#[derive(Debug, Default)]
pub struct Corpus {
    /// Fixture files up to [`SMALL_DOCUMENT`] bytes: mutated whole.
    pub small: Vec<Document>,
    /// Bigger fixture files (Synthea patients): mutated whole now and then.
    pub large: Vec<Document>,
    /// Single resources (one JSON object each) from Bundle entries and NDJSON lines.
    pub resources: Vec<String>,
    /// ViewDefinitions as JSON text.
    pub views: Vec<String>,
    /// The small input every mutated view runs against: (file name, content).
    pub view_input: Vec<(String, Vec<u8>)>,
}

/// Files larger than this are "large" seeds, used rarely so batches stay fast.
const SMALL_DOCUMENT: usize = 64 << 10;

/// Resources kept per fixture file (spread evenly over its entries).
const RESOURCES_PER_FILE: usize = 400;

impl Corpus {
    /// Loads the corpus from the project folder (`fixtures/`, `views/`, `tests/sof/`).
    pub fn load(project: &Path) -> Result<Corpus, String> {
        let mut corpus = Corpus::default();
        for path in files_under(&project.join("fixtures"))? {
            let name = path.file_name().unwrap().to_string_lossy().to_lowercase();
            let Some(layout) = layout_of(&name) else { continue };
            let mut bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if name.ends_with(".gz") {
                let mut plain = Vec::new();
                // A fixture that is a deliberately cut gzip file still gives what it holds.
                let _ = flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut plain);
                bytes = plain;
            }
            corpus.add_resources(&bytes, layout);
            let document = Document {
                name: name.trim_end_matches(".gz").to_owned(),
                bytes,
                layout,
            };
            if document.bytes.len() <= SMALL_DOCUMENT {
                corpus.small.push(document);
            } else {
                corpus.large.push(document);
            }
        }
        for path in files_under(&project.join("views"))? {
            corpus
                .views
                .push(fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?);
        }
        let mut sof_resources = Vec::new();
        for path in files_under(&project.join("tests/sof"))? {
            if path.extension().is_none_or(|e| e != "json")
                || path.components().any(|c| c.as_os_str() == "schema")
            {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let Ok(suite) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            for test in suite["tests"].as_array().into_iter().flatten() {
                if test["view"].is_object() {
                    corpus.views.push(test["view"].to_string());
                }
            }
            for resource in suite["resources"].as_array().into_iter().flatten() {
                sof_resources.push(resource.to_string());
            }
        }
        if corpus.small.is_empty() || corpus.resources.is_empty() || corpus.views.is_empty() {
            return Err(format!(
                "no fixtures, resources or views found under {}",
                project.display()
            ));
        }
        corpus.view_input = view_input(project, &sof_resources, &corpus.resources);
        Ok(corpus)
    }

    fn add_resources(&mut self, bytes: &[u8], layout: Layout) {
        let found: Vec<String> = match layout {
            Layout::Ndjson => bytes
                .split(|&b| b == b'\n')
                .filter_map(|line| std::str::from_utf8(line).ok())
                .filter(|line| line.trim_start().starts_with('{'))
                .map(str::to_owned)
                .collect(),
            Layout::Json => match serde_json::from_slice::<Value>(bytes) {
                Ok(document) => match document["entry"].as_array() {
                    Some(entries) => entries
                        .iter()
                        .filter(|entry| entry["resource"].is_object())
                        .map(|entry| entry["resource"].to_string())
                        .collect(),
                    None if document.is_object() => vec![document.to_string()],
                    None => Vec::new(),
                },
                Err(_) => Vec::new(),
            },
        };
        let step = found.len().div_ceil(RESOURCES_PER_FILE).max(1);
        self.resources.extend(found.into_iter().step_by(step));
    }
}

/// The files under `root`, recursively, in sorted order.
fn files_under(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|e| format!("{}: {e}", root.display()))?;
        if entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// `.json`, `.ndjson`, `.jsonl`, with or without `.gz`; anything else is not a seed.
fn layout_of(name: &str) -> Option<Layout> {
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    if stem.ends_with(".json") {
        Some(Layout::Json)
    } else if stem.ends_with(".ndjson") || stem.ends_with(".jsonl") {
        Some(Layout::Ndjson)
    } else {
        None
    }
}

/// A few hundred resources of many types for views to read: the conformance suite's resources,
/// the view fixture Bundle and one resource of every type found in the fixtures.
fn view_input(project: &Path, sof_resources: &[String], resources: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut lines = sof_resources.join("\n");
    let mut seen_types = std::collections::BTreeSet::new();
    for resource in resources {
        let Ok(value) = serde_json::from_str::<Value>(resource) else {
            continue;
        };
        if let Some(resource_type) = value["resourceType"].as_str() {
            if seen_types.insert(resource_type.to_owned()) {
                lines.push('\n');
                lines.push_str(resource);
            }
        }
    }
    lines.push('\n');
    let mut input = vec![("resources.ndjson".to_owned(), lines.into_bytes())];
    if let Ok(bundle) = fs::read(project.join("fixtures/views/synthea-extras.json")) {
        input.push(("synthea-extras.json".to_owned(), bundle));
    }
    input
}
