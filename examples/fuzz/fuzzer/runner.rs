//! Running the real `fhir2table convert` as a child process under a time and memory limit, and
//! the oracles its outcome must satisfy.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Limits every run must stay within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    /// Peak resident memory allowed (measured with `wait4`).
    pub max_rss_bytes: u64,
    /// Address-space cap (`RLIMIT_AS`) so a blow-up fails fast instead of swapping the machine.
    pub address_space_bytes: u64,
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
    TimedOut,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Outcome {
    pub status: Status,
    pub elapsed: Duration,
    pub max_rss_bytes: u64,
    pub stderr: String,
}

/// A broken oracle: a short `signature` that groups findings of one kind, and the details.
#[derive(Debug, Clone)]
pub struct Symptom {
    pub signature: String,
    pub detail: String,
    pub exit: String,
}

/// Runs `binary args...` in `dir` with stderr to a file, under `limits`.
pub fn run(binary: &Path, args: &[String], dir: &Path, limits: &Limits) -> io::Result<Outcome> {
    let stderr_path = dir.join("stderr.txt");
    let stderr = fs::File::create(&stderr_path)?;
    let address_space = limits.address_space_bytes;
    let mut command = Command::new(binary);
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .env("RUST_BACKTRACE", "0");
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let memory = libc::rlimit {
                rlim_cur: address_space as libc::rlim_t,
                rlim_max: address_space as libc::rlim_t,
            };
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &memory) != 0
                || libc::setrlimit(libc::RLIMIT_CORE, &no_core) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let child = command.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut timed_out = false;
    let mut pause = Duration::from_millis(1);
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child only, by its pid.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break (status, usage);
        }
        if reaped < 0 {
            return Err(io::Error::last_os_error());
        }
        if !timed_out && started.elapsed() > limits.timeout {
            timed_out = true;
            // SAFETY: signals our own child, which we have not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let status = if timed_out {
        Status::TimedOut
    } else if libc::WIFSIGNALED(status) {
        Status::Signaled(libc::WTERMSIG(status))
    } else {
        Status::Exited(libc::WEXITSTATUS(status))
    };
    let stderr = String::from_utf8_lossy(&fs::read(&stderr_path)?).into_owned();
    Ok(Outcome {
        status,
        elapsed,
        max_rss_bytes: usage.ru_maxrss as u64 * 1024,
        stderr,
    })
}

/// What a run was given, for the oracles.
pub struct Expectation<'a> {
    /// Exit codes the run may end with: {0, 1} for data, {0, 1, 2} with a mutated view.
    pub allowed_exits: &'a [i32],
    /// Input files with FHIR names, and files fhir2table should skip by name.
    pub fhir_files: u64,
    pub skipped_files: u64,
    /// The entries the sandbox held before the run; the run may add only `out`.
    pub sandbox_before: Vec<String>,
}

/// Checks one run against the oracles; `Err` names what broke.
pub fn check(
    sandbox: &Path,
    outcome: &Outcome,
    expectation: &Expectation<'_>,
    limits: &Limits,
) -> Result<(), Symptom> {
    let exit = match outcome.status {
        Status::Exited(code) => format!("exit {code}"),
        Status::Signaled(signal) => format!("signal {signal}"),
        Status::TimedOut => "timed out (killed)".to_owned(),
    };
    let fail = |signature: String, detail: String| Symptom {
        signature,
        detail,
        exit: exit.clone(),
    };
    let stderr_tail = tail(&outcome.stderr, 1500);
    let code = match outcome.status {
        Status::TimedOut => {
            return Err(fail(
                "hang: over the time limit".into(),
                format!(
                    "killed after {:.1} s\n{stderr_tail}",
                    outcome.elapsed.as_secs_f64()
                ),
            ))
        }
        Status::Signaled(signal) => {
            return Err(fail(
                format!("killed by signal {signal}{}", crash_kind(&outcome.stderr)),
                stderr_tail,
            ))
        }
        Status::Exited(code) => code,
    };
    if let Some(kind) = panic_kind(&outcome.stderr) {
        return Err(fail(format!("panic{kind}"), stderr_tail));
    }
    if !expectation.allowed_exits.contains(&code) {
        return Err(fail(
            format!("exit code {code}{}", crash_kind(&outcome.stderr)),
            stderr_tail,
        ));
    }
    if outcome.max_rss_bytes > limits.max_rss_bytes {
        return Err(fail(
            "memory: peak RSS over the limit".into(),
            format!("peak RSS {} MB", outcome.max_rss_bytes >> 20),
        ));
    }
    let mut after = entries(sandbox);
    after.retain(|name| name != "out" && name != "stderr.txt");
    let mut before = expectation.sandbox_before.clone();
    before.retain(|name| name != "out" && name != "stderr.txt");
    if after != before {
        return Err(fail(
            "wrote outside --out".into(),
            format!("sandbox before: {before:?}\nsandbox after: {after:?}"),
        ));
    }
    let report_path = sandbox.join("out/.fhir2table/_run.json");
    if code == 2 {
        let written = fs::read_dir(sandbox.join("out"))
            .map(|dir| dir.count())
            .unwrap_or(0);
        if !outcome.stderr.contains("error") {
            return Err(fail("exit 2 without an error message".into(), stderr_tail));
        }
        return match written {
            0 => Ok(()),
            _ => Err(fail(
                "exit 2 but output written".into(),
                format!("{:?}", entries(&sandbox.join("out"))),
            )),
        };
    }
    let text = fs::read_to_string(&report_path).map_err(|e| {
        fail(
            "no _run.json after exit 0/1".into(),
            format!("{e}\n{stderr_tail}"),
        )
    })?;
    let report: Value =
        serde_json::from_str(&text).map_err(|e| fail("_run.json is not JSON".into(), e.to_string()))?;
    let count = |key: &str| report["inputs"][key].as_u64().unwrap_or(u64::MAX);
    let counts = format!("inputs {} in _run.json", report["inputs"]);
    if report["exit_code"].as_i64() != Some(i64::from(code)) {
        return Err(fail(
            "_run.json exit_code differs from the exit code".into(),
            counts,
        ));
    }
    if count("found") != expectation.fhir_files || count("skipped") != expectation.skipped_files {
        return Err(fail(
            "files not counted: found/skipped".into(),
            format!(
                "wrote {} FHIR files and {} others; {counts}",
                expectation.fhir_files, expectation.skipped_files
            ),
        ));
    }
    if count("read") + count("failed") + count("unchanged") != count("found") {
        return Err(fail("files not counted: read + failed != found".into(), counts));
    }
    let error_count = report["error_count"].as_u64().unwrap_or(0);
    if code == 0 && (count("failed") > 0 || error_count > 0) {
        return Err(fail("exit 0 but input lost".into(), counts));
    }
    if code == 1
        && count("failed") == 0
        && error_count == 0
        && report["warnings"].as_object().is_none_or(|w| w.is_empty())
    {
        return Err(fail("exit 1 but nothing reported lost".into(), counts));
    }
    Ok(())
}

/// " (stack overflow)" and the like, from the Rust runtime's last words.
fn crash_kind(stderr: &str) -> String {
    if stderr.contains("overflowed its stack") {
        " (stack overflow)".into()
    } else if stderr.contains("memory allocation of") {
        " (allocation failed)".into()
    } else {
        panic_kind(stderr).unwrap_or_default()
    }
}

/// " at src/file.rs" of a panic message, if stderr holds one.
fn panic_kind(stderr: &str) -> Option<String> {
    let at = stderr.find("panicked at ")?;
    let location = stderr[at + "panicked at ".len()..]
        .split(':')
        .next()
        .unwrap_or("?");
    Some(format!(" at {location}"))
}

/// The sorted names in `dir` (empty when it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn tail(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

/// A fresh, empty folder.
pub fn fresh_dir(path: &Path) -> io::Result<PathBuf> {
    if path.exists() {
        fs::remove_dir_all(path)?;
    }
    fs::create_dir_all(path)?;
    Ok(path.to_path_buf())
}
