//! One run at a time per output folder: `OUT/.fhir2table.lock` holds the running process's pid and
//! host. A second run exits with a message naming the holder; a lock left by a process that is
//! gone (killed, crashed) on this host is taken over.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The lock file's name inside `--out`.
pub const LOCK_FILE: &str = ".fhir2table.lock";

/// Another live run holds the output folder.
#[derive(Debug)]
pub struct Locked(pub String);

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Locked {}

/// Held while a run writes into an output folder; removed when dropped.
pub struct OutputLock {
    path: PathBuf,
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned())
}

impl OutputLock {
    /// Takes the lock of `out` (which must exist). The content is written to a draft first and
    /// then hard-linked under the lock's name, which fails if the lock exists: the lock file is
    /// never seen half-written, even when a process is killed while taking it.
    pub fn acquire(out: &Path) -> Result<OutputLock, anyhow::Error> {
        let path = out.join(LOCK_FILE);
        let host = host_name();
        let draft = out.join(format!("{LOCK_FILE}.{}", std::process::id()));
        let started = crate::report::format_utc(std::time::SystemTime::now());
        let mut file =
            fs::File::create(&draft).with_context(|| format!("cannot create {}", draft.display()))?;
        writeln!(file, "pid={}\nhost={host}\nstarted={started}", std::process::id())?;
        drop(file);
        let outcome = take(&draft, &path, &host, out);
        let _ = fs::remove_file(&draft);
        outcome.map(|()| OutputLock { path })
    }
}

fn take(draft: &Path, path: &Path, host: &str, out: &Path) -> Result<(), anyhow::Error> {
    for _ in 0..2 {
        match fs::hard_link(draft, path) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => remove_if_stale(path, host, out)?,
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!("cannot create {}", path.display())))
            }
        }
    }
    Err(Locked(format!("cannot take the lock {}", path.display())).into())
}

/// Removes the lock if its process is gone from this host; otherwise names the live holder.
fn remove_if_stale(path: &Path, host: &str, out: &Path) -> Result<(), anyhow::Error> {
    let holder = fs::read_to_string(path).unwrap_or_default();
    let field = |name: &str| {
        holder
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("?")
            .to_owned()
    };
    let (pid, holder_host, started) = (field("pid"), field("host"), field("started"));
    if holder_host == host && !Path::new("/proc").join(&pid).exists() {
        let _ = fs::remove_file(path);
        return Ok(());
    }
    Err(Locked(format!(
        "{} is in use by another fhir2table run (pid {pid} on {holder_host}, since {started}); \
         if that run is gone, remove {}",
        out.display(),
        path.display()
    ))
    .into())
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
