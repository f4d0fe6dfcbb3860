use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Prefix of the hidden folder a run builds its tables in.
const STAGING_PREFIX: &str = ".fhir2table-staging-";

/// A run's private folder under `--out`. Tables are written here and moved into place by
/// [`Staging::commit`]; if the run fails, the folder is removed and the previous output stays.
pub struct Staging {
    out: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// Creates `out` (if needed) and this run's staging folder in it, after clearing staging
    /// folders left by runs that were killed. Fails when `out` is not writable.
    pub fn create(out: &Path) -> Result<Staging> {
        fs::create_dir_all(out).with_context(|| format!("cannot create output folder {}", out.display()))?;
        remove_abandoned_staging(out);
        let dir = out.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        fs::create_dir(&dir).with_context(|| format!("output folder {} is not writable", out.display()))?;
        Ok(Staging {
            out: out.to_path_buf(),
            dir,
            committed: false,
        })
    }

    /// Where a table is built during the run.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.dir.join(table)
    }

    /// Puts the staged tables in place: `replace` swaps each whole table folder (overwrite mode),
    /// otherwise each new Parquet file is moved in beside the existing ones (append mode). Both are
    /// renames on one file system: a reader sees a table's old or new content, never part of a file.
    pub fn commit(self, tables: &[&str], replace: bool) -> Result<()> {
        if replace {
            self.replace_tables(tables)
        } else {
            self.append_files(tables)
        }
    }

    fn append_files(mut self, tables: &[&str]) -> Result<()> {
        for table in tables {
            let target = self.out.join(table);
            fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
            for entry in fs::read_dir(self.table_dir(table))? {
                let file = entry?.path();
                let destination = target.join(file.file_name().expect("staged files have names"));
                fs::rename(&file, &destination)
                    .with_context(|| format!("cannot move {} into place", destination.display()))?;
            }
        }
        self.committed = true;
        fs::remove_dir_all(&self.dir).with_context(|| format!("cannot remove {}", self.dir.display()))?;
        Ok(())
    }

    fn replace_tables(mut self, tables: &[&str]) -> Result<()> {
        let retired = self.dir.join(".previous");
        fs::create_dir_all(&retired)?;
        for table in tables {
            let target = self.out.join(table);
            if target.exists() {
                fs::rename(&target, retired.join(table))
                    .with_context(|| format!("cannot move the previous {} aside", target.display()))?;
            }
            fs::rename(self.table_dir(table), &target)
                .with_context(|| format!("cannot move the new {} into place", target.display()))?;
        }
        self.committed = true;
        fs::remove_dir_all(&self.dir).with_context(|| format!("cannot remove {}", self.dir.display()))?;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes `content` to `path` through a temporary file and a rename, so readers see the old or the
/// new file, never a part of one.
pub fn write_atomically(path: &Path, content: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = fs::File::create(&temporary)?;
    file.write_all(content)?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

/// Removes staging folders whose process is gone (a killed run); never those of live runs.
fn remove_abandoned_staging(out: &Path) {
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)) else {
            continue;
        };
        let alive = Path::new("/proc").join(pid).exists();
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
