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

use crate::resource::tree::Keep;
use crate::UsageError;

/// The argument of `--view` that selects the views shipped in `views/` (embedded in the binary).
pub const DEFAULT_VIEWS: &str = "default";

/// The shipped views: file stem and JSON text, embedded at build time.
const EMBEDDED: &[(&str, &str)] = &include!(concat!(env!("OUT_DIR"), "/default_views.rs"));

/// One output table per view. The views of one resource type share what they read of it, so
/// each resource's tree is built once, with the elements any of them can reach. The types in
/// `whole_types` are read whole by another table of the run (a lossless resource table), which
/// shares the same tree: their views keep every element, or that table would lose data.
pub fn tables(views: &[Arc<View>], batch_size: usize, whole_types: &[&str]) -> Vec<ViewTable> {
    let mut keeps: Vec<(&str, Arc<Keep>)> = Vec::new();
    for view in views {
        if !keeps.iter().any(|(resource, _)| *resource == view.resource) {
            let keep = match whole_types.contains(&view.resource.as_str()) {
                true => Keep::All,
                false => prune::keep_for(
                    views
                        .iter()
                        .filter(|v| v.resource == view.resource)
                        .map(Arc::as_ref),
                ),
            };
            keeps.push((&view.resource, Arc::new(keep)));
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use arrow_array::RecordBatch;
    use arrow_schema::{Schema, SchemaRef};

    use super::*;
    use crate::diagnostics::Diagnostics;
    use crate::resource::{tree, IdentifierIndex, Rejection, Resource, Walker};
    use crate::table::{stop_flags, Table, TableSet};

    /// A table that reads each resource's shared tree whole, as a lossless resource table does,
    /// and records whether the tree it got is the whole resource.
    struct WholeReader {
        whole: Arc<Mutex<Vec<bool>>>,
    }

    impl Table for WholeReader {
        fn name(&self) -> &str {
            "whole_reader"
        }
        fn resource_type(&self) -> &str {
            "Observation"
        }
        fn schema(&self) -> SchemaRef {
            Arc::new(Schema::empty())
        }
        fn fresh(&self, _batch_size: usize) -> Box<dyn Table> {
            unreachable!("one worker")
        }
        fn append(&mut self, resource: &Resource<'_>, _: &mut Diagnostics) -> Result<bool, Rejection> {
            let shared = resource.tree(&Keep::All)?;
            let whole = tree::parse(resource.raw).unwrap();
            self.whole.lock().unwrap().push(*shared == whole);
            Ok(false)
        }
        fn len(&self) -> usize {
            0
        }
        fn buffered_bytes(&self) -> usize {
            0
        }
        fn finish(&mut self) -> RecordBatch {
            RecordBatch::new_empty(self.schema())
        }
        fn finish_rows(&mut self, _rows: usize) -> RecordBatch {
            self.finish()
        }
    }

    /// Whether the whole reader, run after a view that reads only `id`, got whole trees.
    fn whole_trees_after_a_view(whole_types: &[&str]) -> Vec<bool> {
        let text = r#"{"resourceType": "ViewDefinition", "name": "obs_ids", "resource": "Observation",
            "select": [{"column": [{"name": "id", "path": "id"}]}]}"#;
        let views = vec![compile_text(text, "obs_ids", "test").unwrap()];
        let whole = Arc::new(Mutex::new(Vec::new()));
        let mut tables: Vec<Box<dyn Table>> = tables(&views, 10, whole_types)
            .into_iter()
            .map(|table| Box::new(table) as Box<dyn Table>)
            .collect();
        tables.push(Box::new(WholeReader { whole: whole.clone() }));
        let mut set = TableSet::new(tables, 10, stop_flags(2));
        let (mut index, mut diagnostics) = (IdentifierIndex::default(), Diagnostics::default());
        let mut walker = Walker {
            sink: &mut set,
            index: &mut index,
            diagnostics: &mut diagnostics,
        };
        let observation = r#"{"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"text": "weight"}, "valueQuantity": {"value": 1.50, "unit": "kg"}}"#;
        walker.document("test.json", observation, 1).unwrap();
        let seen = whole.lock().unwrap().clone();
        seen
    }

    #[test]
    fn a_type_read_whole_by_another_table_is_not_pruned_by_its_views() {
        assert_eq!(whole_trees_after_a_view(&["Observation"]), [true]);
        // The test can fail: without the type, the view prunes the tree both tables share.
        assert_eq!(whole_trees_after_a_view(&["Patient"]), [false]);
    }
}
