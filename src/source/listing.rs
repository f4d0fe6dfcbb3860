//! Inputs on object storage (`--in s3://bucket/prefix`): the objects below the prefix, chosen by
//! the same rules as the files of a local folder (names, `--include`/`--exclude`), in the same
//! order, with their names relative to the prefix as `source_file`. An object store has no
//! folders: every `/` in a key is a folder boundary for the filters, as in the local walk.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::discover::classify;
use super::{Discovery, InputFile, InputFilter, RemoteInput};
use crate::remote::{is_url, Location, ObjectInfo};
use crate::UsageError;

/// Checks that `--in` exists, before anything is written: a local file or folder, or an object
/// store location holding at least one object (or naming one). Exit 2 otherwise.
pub fn check_input(input: &Path) -> Result<(), UsageError> {
    if !is_url(input) {
        return match input.exists() {
            true => Ok(()),
            false => Err(UsageError(format!("input {} does not exist", input.display()))),
        };
    }
    let text = input.to_string_lossy();
    let usage = |error: anyhow::Error| UsageError(format!("input {text}: {error:#}"));
    let location = Location::parse(&text).map_err(usage)?;
    if location.has_objects().map_err(usage)? {
        return Ok(());
    }
    let single = match location.split_last() {
        Some((folder, name)) => folder.head(&name).map_err(usage)?.is_some(),
        None => false,
    };
    match single {
        true => Ok(()),
        false => Err(UsageError(format!(
            "input {text} does not exist (no object there or below it)"
        ))),
    }
}

/// [`super::discover`] for a URL: lists the objects below it (or takes the one object it names)
/// and classifies them as the local walk does. `output`, when it lies below `root` on the same
/// store, is left out. A listing that fails is reported as unreadable.
pub(super) fn discover_objects(root: &Path, output: Option<&Path>, filter: &InputFilter) -> Discovery {
    let mut discovery = Discovery::default();
    let text = root.to_string_lossy().trim_end_matches('/').to_owned();
    let listed = Location::parse(&text).and_then(|location| {
        let objects = location.list("")?;
        if !objects.is_empty() {
            return Ok((location, objects));
        }
        // No object below: the URL may name one object.
        let Some((folder, name)) = location.split_last() else {
            return Ok((location, objects));
        };
        let single = folder.head(&name)?.into_iter().collect();
        Ok((folder, single))
    });
    let (location, mut objects) = match listed {
        Ok(listed) => listed,
        Err(error) => {
            discovery.unreadable.push((text, format!("{error:#}")));
            return discovery;
        }
    };
    let location = Arc::new(location);
    // The output's objects, when it lies inside the input, are not inputs.
    let output_inside = output
        .map(|path| path.to_string_lossy().trim_end_matches('/').to_owned())
        .and_then(|out| out.strip_prefix(&format!("{text}/")).map(str::to_owned));
    // Sorted as the local walk visits files: name by name, folder by folder.
    objects.sort_by(|a, b| a.relative.split('/').cmp(b.relative.split('/')));
    let mut excluded_folders = BTreeSet::new();
    for object in objects {
        let ObjectInfo {
            relative,
            size,
            modified,
        } = object;
        if relative.is_empty() || relative.ends_with('/') {
            continue; // a "folder" marker some tools write
        }
        if output_inside
            .as_deref()
            .is_some_and(|out| relative == out || relative.starts_with(&format!("{out}/")))
        {
            continue;
        }
        if let Some(folder) = excluded_folder(&relative, filter) {
            excluded_folders.insert(folder + "/");
            continue;
        }
        if !filter.reads_file(&relative) {
            discovery.excluded.push(relative);
            continue;
        }
        let Some((format, gzip)) = classify(Path::new(&relative)) else {
            discovery.skipped.push(relative);
            continue;
        };
        discovery.files.push(InputFile {
            path: location.display(&relative).into(),
            relative,
            format,
            gzip,
            size,
            remote: Some(RemoteInput {
                location: location.clone(),
                modified,
            }),
        });
    }
    discovery.excluded.extend(excluded_folders);
    discovery.excluded.sort();
    // Kept for the whole run, as the local walk's list is.
    discovery.files.shrink_to_fit();
    discovery
}

/// The outermost folder of `relative` that the filter does not enter, if any: the local walk
/// never enters it, so it is reported once and nothing below it is read.
fn excluded_folder(relative: &str, filter: &InputFilter) -> Option<String> {
    let parts: Vec<&str> = relative.split('/').collect();
    (1..parts.len())
        .map(|depth| parts[..depth].join("/"))
        .find(|folder| !filter.enters_folder(folder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outermost_folder_not_entered_is_the_one_reported() {
        let filter = InputFilter::new(&[], &["old/".to_owned(), "tmp".to_owned()]).unwrap();
        assert_eq!(
            excluded_folder("a/old/b/c.json", &filter).as_deref(),
            Some("a/old")
        );
        assert_eq!(excluded_folder("tmp/old/c.json", &filter).as_deref(), Some("tmp"));
        assert_eq!(excluded_folder("a/b/c.json", &filter), None);
        assert_eq!(
            excluded_folder("old", &filter),
            None,
            "a file named old is not a folder"
        );
    }
}
