use std::path::{Path, PathBuf};
use std::sync::Arc;

use walkdir::WalkDir;

use super::InputFilter;

/// How a file's content is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON document: a Bundle or a single resource.
    Json,
    /// One resource per line (FHIR Bulk Data).
    Ndjson,
}

/// One input file to convert.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    /// Path relative to `--in`, with `/` separators: the `source_file` column.
    pub relative: String,
    pub format: InputFormat,
    pub gzip: bool,
    pub size: u64,
    /// Where an input on object storage is (`--in s3://...`): its folder-like location, under
    /// which `relative` names the object, and the object's time. `None` for a local file, read
    /// from `path`; for an object, `path` is only its URL, for messages.
    pub remote: Option<RemoteInput>,
}

/// An input on object storage (see [`InputFile::remote`]).
#[derive(Debug, Clone)]
pub struct RemoteInput {
    /// The `--in` location the object's relative name is below.
    pub location: Arc<crate::remote::Location>,
    /// The object's last modification, nanoseconds since 1970 (`--incremental` records it).
    pub modified: u128,
}

/// The inputs found under `--in`, in sorted path order, plus what was passed over.
#[derive(Debug, Default)]
pub struct Discovery {
    pub files: Vec<InputFile>,
    /// Files that are not FHIR inputs (README, .DS_Store, ...), relative paths.
    pub skipped: Vec<String>,
    /// Paths left out by `--include` / `--exclude`: files, and folders (ending in `/`) that were
    /// not entered.
    pub excluded: Vec<String>,
    /// Paths that could not be listed or examined, with the reason.
    pub unreadable: Vec<(String, String)>,
}

/// Walks `root` (a folder, recursively, or a single file) and classifies every file by its name.
/// The folder `output` (when it lies inside the input) is not entered; `filter` leaves out the
/// paths `--include` / `--exclude` select, and they are listed as excluded.
pub fn discover(root: &Path, output: Option<&Path>, filter: &InputFilter) -> Discovery {
    if crate::remote::is_url(root) {
        return super::listing::discover_objects(root, output, filter);
    }
    let mut discovery = Discovery::default();
    let output = output.and_then(|path| path.canonicalize().ok());
    let mut excluded_folders = Vec::new();
    let walker = WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            if !entry.file_type().is_dir() {
                return true;
            }
            if output.is_some() && entry.path().canonicalize().ok() == output {
                return false;
            }
            if entry.depth() == 0 {
                return true;
            }
            let relative = relative_path(root, entry.path());
            let enter = filter.enters_folder(&relative);
            if !enter {
                excluded_folders.push(relative + "/");
            }
            enter
        });
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                let path = error.path().unwrap_or(root);
                discovery
                    .unreadable
                    .push((relative_path(root, path), error.to_string()));
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = relative_path(root, entry.path());
        if !filter.reads_file(&relative) {
            discovery.excluded.push(relative);
            continue;
        }
        let Some((format, gzip)) = classify(entry.path()) else {
            discovery.skipped.push(relative);
            continue;
        };
        let size = match entry.metadata() {
            Ok(metadata) => metadata.len(),
            Err(error) => {
                discovery.unreadable.push((relative, error.to_string()));
                continue;
            }
        };
        discovery.files.push(InputFile {
            path: entry.into_path(),
            relative,
            format,
            gzip,
            size,
            remote: None,
        });
    }
    // One sorted list: a folder (ending in `/`) stands where its files would.
    discovery.excluded.extend(excluded_folders);
    discovery.excluded.sort();
    // Kept for the whole run, about 100 bytes an input besides its two paths.
    discovery.files.shrink_to_fit();
    discovery
}

/// The format implied by a file name: `.json`, `.ndjson`, `.jsonl`, each optionally `.gz`.
pub(super) fn classify(path: &Path) -> Option<(InputFormat, bool)> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let (stem, gzip) = match name.strip_suffix(".gz") {
        Some(stem) => (stem, true),
        None => (name.as_str(), false),
    };
    let format = if stem.ends_with(".json") {
        InputFormat::Json
    } else if stem.ends_with(".ndjson") || stem.ends_with(".jsonl") {
        InputFormat::Ndjson
    } else {
        return None;
    };
    Some((format, gzip))
}

/// `path` relative to `root` with `/` separators; a single-file root gives its file name.
fn relative_path(root: &Path, path: &Path) -> String {
    let relative = match path.strip_prefix(root) {
        Ok(rest) if !rest.as_os_str().is_empty() => rest,
        _ => path.file_name().map(Path::new).unwrap_or(path),
    };
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_decide_the_format() {
        let json = Some((InputFormat::Json, false));
        let ndjson = Some((InputFormat::Ndjson, false));
        assert_eq!(classify(Path::new("a/Patient.json")), json);
        assert_eq!(classify(Path::new("Patient.000.ndjson")), ndjson);
        assert_eq!(classify(Path::new("1.Encounter.NDJSON")), ndjson);
        assert_eq!(classify(Path::new("x.jsonl")), ndjson);
        assert_eq!(classify(Path::new("x.json.gz")), Some((InputFormat::Json, true)));
        assert_eq!(
            classify(Path::new("x.ndjson.gz")),
            Some((InputFormat::Ndjson, true))
        );
        assert_eq!(classify(Path::new("README.md")), None);
        assert_eq!(classify(Path::new(".DS_Store")), None);
        assert_eq!(classify(Path::new("x.gz")), None);
    }

    #[test]
    fn relative_paths_use_forward_slashes() {
        let root = Path::new("/data/in");
        assert_eq!(relative_path(root, Path::new("/data/in/a/b.json")), "a/b.json");
        assert_eq!(
            relative_path(Path::new("/data/in/b.json"), Path::new("/data/in/b.json")),
            "b.json"
        );
    }
}
