//! Embeds the shipped ViewDefinitions (`views/*.json`) so `--view default` works from the binary
//! alone: writes `default_views.rs`, an array of (file stem, JSON text).

use std::fmt::Write;
use std::path::Path;

fn main() {
    // Read when the script runs, not when it was compiled: a target folder shared by several
    // checkouts (git worktrees) may reuse a script compiled in another one.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let folder = Path::new(&manifest_dir).join("views");
    println!("cargo:rerun-if-changed={}", folder.display());
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|path| path.extension().is_some_and(|e| e == "json"));
    files.sort();
    let mut source = String::from("[\n");
    for path in files {
        println!("cargo:rerun-if-changed={}", path.display());
        let stem = path.file_stem().unwrap().to_string_lossy();
        writeln!(
            source,
            "    ({stem:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    source.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("default_views.rs");
    std::fs::write(out, source).unwrap();
}
