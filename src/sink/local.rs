//! The local backend: an output folder holding one folder of Parquet part files per table. It
//! implements the sink interface (`store.rs`) with the commit protocol of `commit.rs`, the lock
//! of `lock.rs` and the Parquet files of `parquet.rs`.

use std::fs;
use std::path::PathBuf;

use anyhow::Result;
use arrow_schema::SchemaRef;

use super::commit::{Output, Staging, Step};
use super::layout::{is_part, stored_part_name, table_folder};
use super::parquet::{continued_file_name, read_batches, rewrite_marked_strings, schema_of, DatasetWriter};
use super::store::{Batches, Part, RunInfo, StagedRun, Store, TableWriter};
use super::WriteOptions;
use crate::fsops;

impl Output {
    /// Where a part file of the folder is: a sharded run's commit takes the shards' part files
    /// from there.
    pub fn path_of(&self, part: &Part) -> PathBuf {
        table_folder(&self.root, &part.table).join(&part.file)
    }
}

impl Store for Output {
    fn recovered(&self) -> bool {
        self.recovered
    }

    fn location(&self, name: &str) -> String {
        table_folder(&self.root, name).display().to_string()
    }

    /// The table folders; names that are not UTF-8 are left out too (no table of this tool has
    /// one, and a lossy copy of the name would commit the table beside the original).
    fn tables(&self) -> Result<Vec<String>> {
        let mut folders: Vec<PathBuf> = fs::read_dir(&self.root)?.flatten().map(|e| e.path()).collect();
        folders.sort();
        Ok(folders
            .into_iter()
            .filter_map(|folder| {
                let name = folder.file_name()?.to_str()?.to_owned();
                let table = folder.is_dir() && !name.starts_with('.') && !name.starts_with('_');
                table.then_some(name)
            })
            .collect())
    }

    fn exists(&self, table: &str) -> bool {
        table_folder(&self.root, table).exists()
    }

    /// A folder that cannot be listed counts as empty, as a missing one does.
    fn is_empty(&self, table: &str) -> bool {
        match fs::read_dir(table_folder(&self.root, table)) {
            Ok(mut entries) => !entries.any(|entry| entry.is_ok()),
            Err(_) => true,
        }
    }

    /// The part files of the table's folder, by name (names sort oldest first); a folder that
    /// cannot be listed has none.
    fn parts(&self, table: &str) -> Result<Vec<Part>> {
        let Ok(entries) = fs::read_dir(table_folder(&self.root, table)) else {
            return Ok(Vec::new());
        };
        let mut files: Vec<_> = entries
            .flatten()
            .map(|entry| entry.file_name())
            .filter(|name| name.to_str().is_some_and(|name| is_part(table, name)))
            .collect();
        files.sort();
        Ok(files
            .into_iter()
            .map(|file| Part {
                table: table.to_owned(),
                file,
            })
            .collect())
    }

    fn schema(&self, part: &Part) -> Result<SchemaRef> {
        schema_of(&self.path_of(part))
    }

    fn read(&self, part: &Part) -> Result<Batches> {
        read_batches(&self.path_of(part))
    }

    fn local_file(&self, part: &Part) -> Result<PathBuf> {
        Ok(self.path_of(part))
    }

    fn stage(&self, options: WriteOptions) -> Result<Box<dyn StagedRun>> {
        Ok(Box::new(self.create_staging(options)?))
    }

    fn write_file(&self, name: &str, content: &[u8]) -> Result<()> {
        Ok(fsops::write_atomically(&self.root.join(name), content)?)
    }
}

impl StagedRun for Staging {
    fn create(&self, table: &str, file: &str, schema: SchemaRef) -> Result<Box<dyn TableWriter>> {
        let folder = self.table_dir(table)?;
        let file = stored_part_name(table, file);
        Ok(Box::new(DatasetWriter::create(
            &folder,
            &file,
            schema,
            &self.options,
        )?))
    }

    fn rewrite_marked_strings(
        &self,
        table: &str,
        file: &str,
        marker: char,
        replace: &mut dyn FnMut(&str, &str) -> Option<String>,
    ) -> Result<()> {
        // A wide table's part may go on in further files (see `continued_file_name`).
        let folder = self.table_dir(table)?;
        let first = stored_part_name(table, file);
        for index in 0.. {
            let path = folder.join(continued_file_name(&first, index));
            if index > 0 && !path.exists() {
                return Ok(());
            }
            rewrite_marked_strings(&path, &self.options, marker, &mut *replace)?;
        }
        Ok(())
    }

    fn adopt(&self, table: &str, file: &str, from: &std::path::Path) -> Result<()> {
        Staging::adopt(self, table, file, from)
    }

    fn remove_with_commit(&mut self, path: &str, guard: &str) -> Result<()> {
        Staging::remove_with_commit(self, path, guard)
    }

    /// The Parquet folder keeps no history, so `run` is not recorded.
    fn commit(
        self: Box<Self>,
        tables: &[&str],
        replace: bool,
        files: Vec<(&str, String)>,
        _run: &RunInfo,
    ) -> Result<()> {
        let mut steps = self.plan(tables, replace)?;
        steps.extend(files.into_iter().map(|(path, content)| Step::Write {
            path: path.to_owned(),
            content,
        }));
        (*self).commit_steps(steps)
    }
}
