//! A full disk (ENOSPC) while the tables are written: the run exits 3 naming the problem and the
//! previous tables stay exactly as they were. The disk is a real 8 MB tmpfs, mounted in a private
//! mount namespace (`unshare -m`, needs root, as in CI) so nothing outside the test sees it.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fixtures, read_table};

const SCRIPT: &str = r#"
set -eu
mount -t tmpfs -o size=8m tmpfs "$DISK"
"$BIN" convert -q --in "$SMALL" --out "$DISK/out"
cp -a "$DISK/out" "$SNAP/before"
available=$(df --output=avail -B1 "$DISK" | tail -n 1)
head -c $((available - 65536)) /dev/zero > "$DISK/filler"
set +e
"$BIN" convert -q --in "$BIG" --out "$DISK/out" --view default 2> "$SNAP/stderr"
echo $? > "$SNAP/code"
cp -a "$DISK/out" "$SNAP/after"
"#;

fn private_mounts_available() -> bool {
    Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn a_full_disk_keeps_the_previous_tables_and_exits_3() {
    if !private_mounts_available() {
        eprintln!("skipped: needs root for `unshare -m` and a tmpfs mount");
        return;
    }
    let disk = tempfile::tempdir().unwrap();
    let snap = tempfile::tempdir().unwrap();
    let status = Command::new("unshare")
        .args(["-m", "sh", "-c", SCRIPT])
        .env("DISK", disk.path())
        .env("SNAP", snap.path())
        .env("BIN", env!("CARGO_BIN_EXE_fhir2table"))
        .env("SMALL", fixtures().join("handmade"))
        .env("BIG", fixtures().join("synthea"))
        .status()
        .unwrap();
    assert!(status.success(), "the script itself ran");
    let code = std::fs::read_to_string(snap.path().join("code")).unwrap();
    let stderr = std::fs::read_to_string(snap.path().join("stderr")).unwrap();
    assert_eq!(code.trim(), "3", "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let (before, after) = (snap.path().join("before"), snap.path().join("after"));
    for table in ["patient", "encounter"] {
        assert_eq!(
            read_table(&after.join(table)).sorted_rows(),
            read_table(&before.join(table)).sorted_rows(),
            "{table} is as before"
        );
    }
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(&after),
        names(&before),
        "no view table, staging folder or temporary file was left"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(after.join(".fhir2table/_run.json")).unwrap()).unwrap();
    assert_eq!(report["exit_code"], 3, "the report says the run failed");
    assert!(
        report["failure"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{report}"
    );
}
