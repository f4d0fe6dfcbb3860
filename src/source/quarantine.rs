//! `--errors-to`: a copy of every input that failed, and of every bad NDJSON line, each with a
//! `.error.txt` saying why, so nothing that failed is lost. `--archive` / `--delete-processed`:
//! moving or deleting inputs once their rows are committed.

use std::io;
use std::path::{Path, PathBuf};

use super::InputFile;
use crate::fsops;

/// Where failed inputs are copied: a local folder, or a location on object storage
/// (`--errors-to s3://...`), where each copy is one object written whole.
pub struct Quarantine {
    dir: PathBuf,
    remote: Option<crate::remote::Location>,
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
    /// The quarantine at `dir`, a folder or a URL. A URL that names no object store is an
    /// error (the run checks it before starting, as a usage error).
    pub fn new(dir: &Path) -> io::Result<Quarantine> {
        let remote = match crate::remote::is_url(dir) {
            true => Some(
                crate::remote::Location::parse(&dir.to_string_lossy())
                    .map_err(|error| io::Error::other(format!("{error:#}")))?,
            ),
            false => None,
        };
        Ok(Quarantine {
            dir: dir.to_path_buf(),
            remote,
        })
    }

    /// Writes `content` as the copy named `relative` + `suffix`, replacing any.
    fn write(&self, relative: &str, suffix: &str, content: &mut dyn std::io::Read) -> io::Result<()> {
        let Some(remote) = &self.remote else {
            return fsops::write_atomically_from(&self.target(relative, suffix)?, content);
        };
        // The same check of the name as for a folder: nothing outside the location.
        inside(Path::new("."), &format!("{relative}{suffix}"))?;
        remote
            .upload_from(&format!("{relative}{suffix}"), content)
            .map_err(|error| io::Error::other(format!("{error:#}")))
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
        match (&input.remote, &self.remote) {
            (None, None) => fsops::copy(&input.path, &self.target(&input.relative, "")?)?,
            // An object, or a copy to object storage, is streamed: read again, not held in memory.
            _ => self.write(&input.relative, "", &mut super::open_raw(input, None)?)?,
        }
        let reasons = reasons_text(reasons, more);
        self.write(&input.relative, ".error.txt", &mut reasons.as_bytes())
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
            self.write(&input.relative, &stem, &mut bytes.as_slice())?;
        }
        let text = format!("{}: line {line}\n{}", input.relative, reasons_text(reasons, 0));
        self.write(
            &input.relative,
            &format!("{stem}.error.txt"),
            &mut text.as_bytes(),
        )
    }

    /// Records an input that could not even be read (nothing to copy).
    pub fn unreadable(&self, relative: &str, reason: &str) -> io::Result<()> {
        self.write(relative, ".error.txt", &mut format!("{reason}\n").as_bytes())
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
