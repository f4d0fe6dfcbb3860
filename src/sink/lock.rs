//! One run at a time per output folder. A run holds an exclusive `flock` on `OUT/.fhir2table/_lock`
//! for as long as it changes the folder; the kernel releases it when the process ends in any way
//! (exit, panic, `kill -9`), so a dead run's lock never needs taking over and two runs can never
//! both hold it. The file stays in place between runs (removing it would let a run lock a new file
//! while another still holds the old one); its text names the current or last holder, for the
//! message a refused run prints.
//!
//! Not covered: network file systems without working `flock` (some NFS set-ups lock only on one
//! client, or not at all) and object storage; give each such output folder one writer.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::Context;

use super::layout::{tool_folder, LOCK_FILE};

/// Another live run holds the output folder.
#[derive(Debug)]
pub struct Locked(pub String);

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Locked {}

/// The value of `name=` in a lock's text (which names its holder), or `?`: the message of a
/// refused run shows it, for the local lock file and the object-storage lock object alike.
pub(super) fn holder_field(holder: &str, name: &str) -> String {
    holder
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or("?")
        .to_owned()
}

/// Held while a run writes into an output folder; the lock goes with the open file when dropped.
pub struct OutputLock {
    _file: File,
}

/// This machine's name, for the lock's holder text (the object storage lock too).
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned())
}

impl OutputLock {
    /// Takes the lock of `out` (whose tool folder must exist), or fails with [`Locked`] naming
    /// the holder.
    pub fn acquire(out: &Path) -> Result<OutputLock, anyhow::Error> {
        Self::acquire_file(&tool_folder(out).join(LOCK_FILE), out)
    }

    /// Takes the lock file at `path` that guards `out` (releases before this layout kept it at
    /// `OUT/.fhir2table.lock`).
    pub(super) fn acquire_file(path: &Path, out: &Path) -> Result<OutputLock, anyhow::Error> {
        let path = path.to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let field = |name: &str| holder_field(&holder, name);
                return Err(Locked(format!(
                    "{} is in use by another fhir2table run (pid {} on {}, since {})",
                    out.display(),
                    field("pid"),
                    field("host"),
                    field("started")
                ))
                .into());
            }
            Err(TryLockError::Error(error)) => {
                return Err(anyhow::Error::new(error).context(format!("cannot lock {}", path.display())))
            }
        }
        let started = crate::fhir::datetime::format_utc(std::time::SystemTime::now());
        let text = format!(
            "pid={}\nhost={}\nstarted={started}\n",
            std::process::id(),
            host_name()
        );
        // The holder's name is a courtesy for the message above; the lock itself is the flock.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(text.as_bytes()));
        Ok(OutputLock { _file: file })
    }
}
