//! Where things live in a local output folder. Each table is a folder at the top (`OUT/patient/`),
//! holding nothing but its Parquet files. Everything of the tool's own is in one hidden folder,
//! `OUT/.fhir2table/`: the run report, the incremental state, the tombstones of deleted resources,
//! the lock, the commit journal and the staging folders. Readers that take a glob over the output
//! never meet them: every name in the tool's folder starts with `_`, which Spark and Hadoop treat
//! as hidden (their `OUT/*/` matches `.fhir2table` too), `OUT/*/*.parquet` does not enter a
//! hidden folder, and the tombstones' files do not end in `.parquet`, so `OUT/**/*.parquet` does
//! not pick them up either. Releases
//! before this layout kept those things at the top; `migrate.rs` moves them.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The hidden folder under `OUT` that holds everything of the tool's own.
pub const TOOL_FOLDER: &str = ".fhir2table";

/// The lock file, inside the tool's folder.
pub(super) const LOCK_FILE: &str = "_lock";

/// The commit journal, inside the tool's folder.
pub(super) const JOURNAL_FILE: &str = "_commit.json";

/// Prefix of a run's staging folder inside the tool's folder (`_staging-<pid>`).
pub(super) const STAGING_PREFIX: &str = "_staging-";

/// The folder inside the tool's folder where the shards of a sharded run (`--shard`) keep their
/// converted tables until one commit takes them all into `OUT`.
pub(super) const SHARDS_FOLDER: &str = "_shards";

/// Where the shard folder `name` (`I-of-N`) of `out` is: `OUT/.fhir2table/_shards/<name>`.
pub fn shard_folder(out: &Path, name: &str) -> PathBuf {
    tool_folder(out).join(SHARDS_FOLDER).join(name)
}

/// The folder that holds every shard folder of `out`.
pub fn shards_folder(out: &Path) -> PathBuf {
    tool_folder(out).join(SHARDS_FOLDER)
}

/// The extension of the Parquet files of the tool's own tables (in place of `.parquet`).
const INTERNAL_PART_EXTENSION: &str = "fhir2table-parquet";

/// `OUT/.fhir2table`.
pub(super) fn tool_folder(out: &Path) -> PathBuf {
    out.join(TOOL_FOLDER)
}

/// Whether a table is the tool's own (the tombstones, `_deleted`) rather than one users query:
/// view and built-in table names never start with `_`.
pub fn is_internal(table: &str) -> bool {
    table.starts_with('_')
}

/// The folder of a table: `OUT/<table>`, or `OUT/.fhir2table/<table>` for the tool's own.
pub(super) fn table_folder(out: &Path, table: &str) -> PathBuf {
    match is_internal(table) {
        true => tool_folder(out).join(table),
        false => out.join(table),
    }
}

/// The name a part file is stored under: as given, except that the tool's own tables swap the
/// `.parquet` extension for one no reader's glob picks up.
pub(super) fn stored_part_name<'f>(table: &str, file: &'f str) -> Cow<'f, str> {
    match (is_internal(table), file.strip_suffix(".parquet")) {
        (true, Some(stem)) => Cow::Owned(format!("{stem}.{INTERNAL_PART_EXTENSION}")),
        _ => Cow::Borrowed(file),
    }
}

/// A Delta table's transaction log, inside its folder.
pub(super) const DELTA_LOG: &str = "_delta_log";

/// Whether `folder` is a Delta table: its log holds at least one commit or checkpoint (a log
/// folder without one is left by a table creation that never committed).
pub(super) fn is_delta_table(folder: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(folder.join(DELTA_LOG)) else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// Whether a file in a table's folder is one of its part files.
pub(super) fn is_part(table: &str, file_name: &str) -> bool {
    let extension = Path::new(file_name).extension().and_then(|e| e.to_str());
    match is_internal(table) {
        true => extension == Some(INTERNAL_PART_EXTENSION),
        false => extension == Some("parquet"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_own_tables_live_in_its_folder_under_names_no_parquet_glob_matches() {
        let out = Path::new("/o");
        assert_eq!(table_folder(out, "patient"), Path::new("/o/patient"));
        assert_eq!(
            table_folder(out, "_deleted"),
            Path::new("/o/.fhir2table/_deleted")
        );
        let stored = stored_part_name("_deleted", "part-1-2.parquet");
        assert_eq!(stored, "part-1-2.fhir2table-parquet");
        assert!(is_part("_deleted", &stored) && !is_part("_deleted", "part-1-2.parquet"));
        assert_eq!(
            stored_part_name("patient", "part-1-2.parquet"),
            "part-1-2.parquet"
        );
        assert!(is_part("patient", "part-1-2.parquet") && !is_part("patient", "notes.txt"));
    }
}
