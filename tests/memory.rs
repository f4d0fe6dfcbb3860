//! Memory stays bounded: converting a generated NDJSON export of a few tens of MB, the binary's
//! peak RSS stays far below the input size and does not grow when the input grows. (No timing is
//! asserted here: speed is measured by `examples/bench.rs`, not in tests.)

mod common;

use std::io::Write;
use std::path::Path;

use common::fixtures;

/// Writes `copies` copies of the fixture NDJSON export (ids made unique per copy) into `dir`.
fn write_export(dir: &Path, copies: usize) -> u64 {
    let mut bytes = 0;
    for entry in std::fs::read_dir(fixtures().join("ndjson")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ndjson") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(dir.join(path.file_name().unwrap())).unwrap());
        for copy in 0..copies {
            for line in text.lines() {
                let line = line.replacen("\"id\":\"", &format!("\"id\":\"c{copy}-"), 1);
                writeln!(out, "{line}").unwrap();
                bytes += line.len() as u64 + 1;
            }
        }
    }
    bytes
}

/// Peak RSS in MB of `fhir2table convert` on `input`.
#[allow(clippy::zombie_processes)]
fn peak_rss_mb(input: &Path) -> f64 {
    let out = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fhir2table"))
        .args(["convert", "-q", "--in"])
        .arg(input)
        .arg("--out")
        .arg(out.path())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; we wait for our own child (wait4 reaps it).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(waited > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    usage.ru_maxrss as f64 / 1024.0
}

#[test]
fn peak_memory_is_bounded_and_flat() {
    let small = tempfile::tempdir().unwrap();
    let large = tempfile::tempdir().unwrap();
    let small_bytes = write_export(small.path(), 20);
    let large_bytes = write_export(large.path(), 200);
    assert!(
        large_bytes > 40_000_000,
        "the large export is {large_bytes} bytes"
    );
    let small_rss = peak_rss_mb(small.path());
    let large_rss = peak_rss_mb(large.path());
    eprintln!("{small_bytes} bytes: {small_rss:.0} MB; {large_bytes} bytes: {large_rss:.0} MB");
    assert!(
        large_rss < 200.0,
        "peak RSS {large_rss:.0} MB converting {large_bytes} bytes"
    );
    assert!(
        large_rss < small_rss * 1.5 + 20.0,
        "memory grows with the input: {small_rss:.0} MB for {small_bytes} bytes, {large_rss:.0} MB for {large_bytes}"
    );
}
