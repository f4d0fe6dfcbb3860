//! Python users install the CLI with pip: `pip install .` into a fresh virtual environment builds
//! the wheel with maturin (`pyproject.toml`, `bindings = "bin"`), and the installed `fhir2table`
//! must be this crate's binary: same version, same tables from the same input. maturin builds in
//! this crate's target folder (`CARGO_TARGET_DIR` when set), so only what `cargo test` did not
//! already build for the release profile is compiled. The test needs `python3 -m venv` and PyPI
//! (for maturin); without a working venv it is skipped with a note, and fails when `CI` is set.

mod common;

use std::path::Path;
use std::process::Command;

use common::{convert, fixtures, read_table, table_folders};

/// A fresh virtual environment in `dir`, or `None` (skip) when Python cannot make one.
fn fresh_venv(dir: &Path) -> Option<std::path::PathBuf> {
    let venv = dir.join("venv");
    let made = Command::new("python3").args(["-m", "venv"]).arg(&venv).output();
    match made {
        Ok(output) if output.status.success() => Some(venv),
        failed => {
            let why = match failed {
                Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                Err(error) => error.to_string(),
            };
            if std::env::var_os("CI").is_some() {
                panic!("CI must have python3 with venv and pip (see .ci/run): {why}");
            }
            eprintln!("skipped: python3 -m venv failed: {why}");
            None
        }
    }
}

#[test]
fn pip_install_gives_a_working_fhir2table() {
    let dir = tempfile::tempdir().unwrap();
    let Some(venv) = fresh_venv(dir.path()) else {
        return;
    };
    let install = Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .arg(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "pip install . failed:\n{}\n{}",
        String::from_utf8_lossy(&install.stdout),
        String::from_utf8_lossy(&install.stderr)
    );
    let installed = venv.join("bin/fhir2table");
    assert!(installed.is_file(), "pip put no fhir2table in {}", venv.display());

    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("fhir2table {}\n", env!("CARGO_PKG_VERSION"))
    );

    let input = fixtures().join("synthea");
    let out = dir.path().join("out");
    let conversion = Command::new(&installed)
        .arg("convert")
        .arg("--in")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args(["--view", "default", "-q"])
        .output()
        .unwrap();
    assert_eq!(
        conversion.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&conversion.stderr)
    );

    // The same run by the binary cargo built: the installed one must give the same tables.
    let reference = convert(&input, &["--view", "default", "-q"]);
    assert_eq!(reference.code, 0, "{}", reference.stderr);
    let tables = table_folders(reference.out.path());
    assert!(
        tables.len() > 2,
        "the built-in tables and the default views: {tables:?}"
    );
    assert_eq!(
        table_folders(&out),
        tables,
        "the installed binary writes the same tables"
    );
    for name in &tables {
        let expected = read_table(&reference.out.path().join(name));
        let actual = read_table(&out.join(name));
        assert_eq!(actual.schema, expected.schema, "schema of {name}");
        assert_eq!(actual.sorted_rows(), expected.sorted_rows(), "rows of {name}");
    }
}
