//! SQL on FHIR v2 ViewDefinitions: every resource type as a table. A view is read and checked
//! once ([`definition`]), its FHIRPath compiled ([`fhirpath`]); per resource it yields rows
//! (`rows.rs`) that [`output::ViewTable`] turns into Arrow batches like any built-in table.

pub mod definition;
pub mod fhirpath;
pub mod output;
mod prune;
mod rows;
mod types;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use definition::{ColumnDef, View};
pub use output::ViewTable;

use crate::UsageError;

/// The argument of `--view` that selects the views shipped in `views/` (embedded in the binary).
pub const DEFAULT_VIEWS: &str = "default";

/// The shipped views: file stem and JSON text, embedded at build time.
const EMBEDDED: &[(&str, &str)] = &include!(concat!(env!("OUT_DIR"), "/default_views.rs"));

/// One output table per view. The views of one resource type share what they read of it, so
/// each resource's tree is built once, with the elements any of them can reach.
pub fn tables(views: &[Arc<View>], batch_size: usize) -> Vec<ViewTable> {
    let mut keeps: Vec<(&str, Arc<crate::resource::tree::Keep>)> = Vec::new();
    for view in views {
        if !keeps.iter().any(|(resource, _)| *resource == view.resource) {
            let same_type = views.iter().filter(|v| v.resource == view.resource);
            keeps.push((
                &view.resource,
                Arc::new(prune::keep_for(same_type.map(Arc::as_ref))),
            ));
        }
    }
    views
        .iter()
        .map(|view| {
            let (_, keep) = keeps
                .iter()
                .find(|(resource, _)| *resource == view.resource)
                .expect("every view's type has its keep");
            ViewTable::new(view.clone(), keep.clone(), batch_size)
        })
        .collect()
}

/// Reads and compiles the views named by `--view` arguments: ViewDefinition files, folders of
/// them (every `*.json`, sorted), or `default`. Any problem is a usage error naming the view.
pub fn load(specs: &[PathBuf]) -> Result<Vec<Arc<View>>, UsageError> {
    let mut views = Vec::new();
    for spec in specs {
        if spec.as_os_str() == DEFAULT_VIEWS {
            for (stem, text) in EMBEDDED {
                views.push(compile_text(text, stem, &format!("default view {stem}"))?);
            }
        } else if spec.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(spec)
                .map_err(|e| UsageError(format!("cannot read view folder {}: {e}", spec.display())))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            for file in files {
                views.push(load_file(&file)?);
            }
        } else {
            views.push(load_file(spec)?);
        }
    }
    Ok(views)
}

fn load_file(path: &Path) -> Result<Arc<View>, UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read view {}: {e}", path.display())))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    compile_text(&text, &stem, &path.display().to_string())
}

fn compile_text(text: &str, stem: &str, source: &str) -> Result<Arc<View>, UsageError> {
    let definition: serde_json::Value =
        serde_json::from_str(text).map_err(|e| UsageError(format!("view {source}: invalid JSON: {e}")))?;
    let mut view = definition::compile(&definition, stem)
        .map_err(|message| UsageError(format!("{message} (in {source})")))?;
    view.source = source.to_owned();
    Ok(Arc::new(view))
}

/// The fixtures' JSON documents (whole files, NDJSON lines), for tests that run views over all
/// of them.
#[cfg(test)]
pub(crate) fn fixture_documents() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut documents = Vec::new();
    let mut folders = vec![
        root.join("fixtures/synthea"),
        root.join("fixtures/ndjson"),
        root.join("fixtures/fhir-examples"),
    ];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            // Gzip files are not text: left out.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "ndjson") {
                documents.extend(text.lines().map(str::to_owned));
            } else {
                documents.push(text);
            }
        }
    }
    documents
}
