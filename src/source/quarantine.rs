//! `--errors-to`: a copy of every input that failed, and of every bad NDJSON line, each with a
//! `.error.txt` saying why, so nothing that failed is lost. `--archive` / `--delete-processed`:
//! moving or deleting inputs once their rows are committed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::InputFile;

/// Where failed inputs are copied.
pub struct Quarantine {
    dir: PathBuf,
}

fn reasons_text(reasons: &[String], more: u64) -> String {
    let mut text = reasons.join("\n");
    if more > 0 {
        text.push_str(&format!("\n... and {more} more errors (see _run.json)"));
    }
    text.push('\n');
    text
}

impl Quarantine {
    pub fn new(dir: &Path) -> Quarantine {
        Quarantine {
            dir: dir.to_path_buf(),
        }
    }

    fn target(&self, relative: &str, suffix: &str) -> io::Result<PathBuf> {
        let path = self.dir.join(format!("{relative}{suffix}"));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        Ok(path)
    }

    /// Copies a failed input file, with the reasons.
    pub fn file(&self, input: &InputFile, reasons: &[String], more: u64) -> io::Result<()> {
        fs::copy(&input.path, self.target(&input.relative, "")?)?;
        fs::write(
            self.target(&input.relative, ".error.txt")?,
            reasons_text(reasons, more),
        )
    }

    /// Writes one bad NDJSON line as `<file>.line-<n>.ndjson`, with the reasons; only the reasons
    /// when `content` is `None` (a line over `max_line_bytes` is never held in memory).
    pub fn line(
        &self,
        input: &InputFile,
        line: u64,
        content: Option<&[u8]>,
        reasons: &[String],
    ) -> io::Result<()> {
        let stem = format!(".line-{line}.ndjson");
        if let Some(content) = content {
            let mut bytes = content.to_vec();
            bytes.push(b'\n');
            fs::write(self.target(&input.relative, &stem)?, bytes)?;
        }
        let text = format!("{}: line {line}\n{}", input.relative, reasons_text(reasons, 0));
        fs::write(self.target(&input.relative, &format!("{stem}.error.txt"))?, text)
    }

    /// Records an input that could not even be read (nothing to copy).
    pub fn unreadable(&self, relative: &str, reason: &str) -> io::Result<()> {
        fs::write(self.target(relative, ".error.txt")?, format!("{reason}\n"))
    }
}

/// Moves `input` to `archive` keeping its path relative to `--in` (copy and delete across file
/// systems), or deletes it when `archive` is `None`.
pub fn retire_input(input: &InputFile, archive: Option<&Path>) -> io::Result<()> {
    let Some(archive) = archive else {
        return fs::remove_file(&input.path);
    };
    let target = archive.join(&input.relative);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    if fs::rename(&input.path, &target).is_err() {
        fs::copy(&input.path, &target)?;
        fs::remove_file(&input.path)?;
    }
    Ok(())
}
