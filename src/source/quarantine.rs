//! `--errors-to`: a copy of every input that failed, and of every bad NDJSON line, each with a
//! `.error.txt` saying why, so nothing that failed is lost. `--archive` / `--delete-processed`:
//! moving or deleting inputs once their rows are committed.

use std::io;
use std::path::{Path, PathBuf};

use super::InputFile;
use crate::fsops;

/// Where failed inputs are copied.
pub struct Quarantine {
    dir: PathBuf,
}

fn reasons_text(reasons: &[String], more: u64) -> String {
    let mut text = reasons.join("\n");
    if more > 0 {
        text.push_str(&format!(
            "\n... and {more} more errors (see .fhir2table/_run.json)"
        ));
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
        let path = inside(&self.dir, &format!("{relative}{suffix}"))?;
        if let Some(parent) = path.parent() {
            fsops::create_dir_all(parent)?;
        }
        Ok(path)
    }

    /// Copies a failed input file, with the reasons.
    pub fn file(&self, input: &InputFile, reasons: &[String], more: u64) -> io::Result<()> {
        let target = self.target(&input.relative, "")?;
        match input.remote {
            // An object is streamed down: it is read again, not held in memory.
            Some(_) => fsops::write_atomically_from(&target, &mut super::open_raw(input, None)?)?,
            None => fsops::copy(&input.path, &target)?,
        }
        fsops::write_atomically(
            &self.target(&input.relative, ".error.txt")?,
            reasons_text(reasons, more).as_bytes(),
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
            fsops::write_atomically(&self.target(&input.relative, &stem)?, &bytes)?;
        }
        let text = format!("{}: line {line}\n{}", input.relative, reasons_text(reasons, 0));
        fsops::write_atomically(
            &self.target(&input.relative, &format!("{stem}.error.txt"))?,
            text.as_bytes(),
        )
    }

    /// Records an input that could not even be read (nothing to copy).
    pub fn unreadable(&self, relative: &str, reason: &str) -> io::Result<()> {
        fsops::write_atomically(
            &self.target(relative, ".error.txt")?,
            format!("{reason}\n").as_bytes(),
        )
    }
}

/// Moves `input` to `archive` keeping its path relative to `--in` (a durable copy, then the
/// original removed, across file systems), or deletes it when `archive` is `None`. A crash half
/// way leaves the input in place (to be converted again), never lost.
pub fn retire_input(input: &InputFile, archive: Option<&Path>) -> io::Result<()> {
    if let Some(remote) = &input.remote {
        return retire_object(input, &remote.location, archive);
    }
    let Some(archive) = archive else {
        return fsops::remove_file(&input.path);
    };
    let target = inside(archive, &input.relative)?;
    if target.symlink_metadata().is_ok() {
        // An earlier export's file of the same name: keep both, never overwrite an archived input.
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is already archived (left in place)", target.display()),
        ));
    }
    if let Some(parent) = target.parent() {
        fsops::create_dir_all(parent)?;
    }
    match fsops::rename(&input.path, &target) {
        Err(error) if error.kind() == io::ErrorKind::CrossesDevices => {
            fsops::copy(&input.path, &target)?;
            fsops::remove_file(&input.path)
        }
        other => other,
    }
}

/// [`retire_input`] for an object: deletes it, or first copies it to the archive (server-side to
/// an archive URL on the same store, streamed down to a local archive folder) and then deletes
/// it. As for a file, a failure half way leaves the object in place, never lost.
fn retire_object(
    input: &InputFile,
    location: &crate::remote::Location,
    archive: Option<&Path>,
) -> io::Result<()> {
    let failed = |error: anyhow::Error| io::Error::other(format!("{error:#}"));
    if let Some(archive) = archive {
        if crate::remote::is_url(archive) {
            let target = crate::remote::Location::parse(&archive.to_string_lossy()).map_err(failed)?;
            if target.head(&input.relative).map_err(failed)?.is_some() {
                return Err(already_archived(&target.display(&input.relative)));
            }
            location
                .copy_to(&input.relative, &target, &input.relative)
                .map_err(failed)?;
        } else {
            let target = inside(archive, &input.relative)?;
            if target.symlink_metadata().is_ok() {
                return Err(already_archived(&target.display().to_string()));
            }
            if let Some(parent) = target.parent() {
                fsops::create_dir_all(parent)?;
            }
            fsops::write_atomically_from(&target, &mut super::open_raw(input, None)?)?;
        }
    }
    location.delete(&input.relative).map_err(failed)
}

/// An earlier export's input of the same name is in the archive: both are kept.
fn already_archived(target: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{target} is already archived (left in place)"),
    )
}

/// `root/relative`, refusing a relative path that would lead outside `root`.
fn inside(root: &Path, relative: &str) -> io::Result<PathBuf> {
    let relative = Path::new(relative);
    if relative
        .components()
        .all(|part| matches!(part, std::path::Component::Normal(_)))
    {
        Ok(root.join(relative))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} would lead outside {}", relative.display(), root.display()),
        ))
    }
}
