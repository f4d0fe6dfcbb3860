//! Diagnostics logging (tracing): to stderr at a level set by `-q`/`-v`, and to the log file at
//! `log_level` when one is configured. The log file is appended to, so cron runs accumulate.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

use crate::config::LogLevel;

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// The stderr level for `-q` and the number of `-v` flags: warn by default.
pub fn stderr_level(quiet: bool, verbose: u8) -> LogLevel {
    match (quiet, verbose) {
        (true, _) => LogLevel::Error,
        (false, 0) => LogLevel::Warn,
        (false, 1) => LogLevel::Info,
        (false, 2) => LogLevel::Debug,
        (false, _) => LogLevel::Trace,
    }
}

/// Installs the global subscriber. Fails when the log file cannot be opened.
pub fn init(stderr: LogLevel, log_file: Option<&Path>, file_level: LogLevel) -> Result<()> {
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(level_filter(stderr));
    let file_layer = match log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(Mutex::new(file))
                    .with_ansi(false)
                    .with_filter(level_filter(file_level)),
            )
        }
        None => None,
    };
    // A second init (tests calling the library twice) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    Ok(())
}
