//! One run at a time per output folder: `OUT/.fhir2table.lock` holds the running process's pid and
//! host. A second run exits with a message naming the holder; a lock left by a process that is
//! gone (killed, crashed) on this host is taken over.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

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
    /// Takes the lock of `out` (which must exist).
    pub fn acquire(out: &Path) -> Result<OutputLock, anyhow::Error> {
        let path = out.join(LOCK_FILE);
        let host = host_name();
        for _ in 0..2 {
            match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let started = crate::report::format_utc(std::time::SystemTime::now());
                    writeln!(file, "pid={}\nhost={host}\nstarted={started}", std::process::id())?;
                    return Ok(OutputLock { path });
                }
                Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    let field = |name: &str| {
                        holder
                            .lines()
                            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                            .unwrap_or("?")
                            .to_owned()
                    };
                    let (pid, holder_host, started) = (field("pid"), field("host"), field("started"));
                    let gone = holder_host == host && !Path::new("/proc").join(&pid).exists();
                    if gone {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    return Err(Locked(format!(
                        "{} is in use by another fhir2table run (pid {pid} on {holder_host}, since {started}); \
                         if that run is gone, remove {}",
                        out.display(),
                        path.display()
                    ))
                    .into());
                }
                Err(error) => {
                    return Err(
                        anyhow::Error::new(error).context(format!("cannot create {}", path.display()))
                    );
                }
            }
        }
        Err(Locked(format!("cannot take the lock {}", path.display())).into())
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
