//! Every default view's table over every fixture, pinned: its schema and all its cells (rows
//! sorted) are hashed and compared with `tests/golden/default_views.tsv`. Work on the view engine's
//! speed must leave this unchanged; a deliberate change of a view or a rule rewrites the file with
//! `FHIR2TABLE_BLESS=1 cargo test --release --test view_golden` and shows up in review.

mod common;

use std::fmt::Write as _;
use std::hash::Hasher;
use std::path::Path;

use common::{convert, fixtures, read_table, table_folders};

const GOLDEN: &str = "tests/golden/default_views.tsv";

/// `table<TAB>rows<TAB>digest` lines for every table of the run, sorted by table.
fn digests(out: &Path) -> String {
    let mut lines = String::new();
    for name in table_folders(out) {
        let table = read_table(&out.join(&name));
        let mut hasher = siphasher::sip::SipHasher13::new();
        hasher.write(format!("{:?}", table.schema.fields()).as_bytes());
        for row in table.sorted_rows() {
            for cell in row {
                match cell {
                    Some(text) => {
                        hasher.write_u8(1);
                        hasher.write(text.as_bytes());
                        hasher.write_u8(0xff);
                    }
                    None => hasher.write_u8(0),
                }
            }
            hasher.write_u8(b'\n');
        }
        writeln!(lines, "{name}\t{}\t{:016x}", table.rows.len(), hasher.finish()).unwrap();
    }
    lines
}

#[test]
fn default_views_give_exactly_the_pinned_tables_on_every_fixture() {
    // fixtures/lossless (odd shapes for the resource tables round trip) came after the pin.
    let run = convert(
        &fixtures(),
        &["--view", "default", "-q", "--exclude", "/lossless/"],
    );
    assert_eq!(run.code, 1, "fixtures/bad makes the run exit 1: {}", run.stderr);
    let actual = digests(run.out.path());
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("FHIR2TABLE_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).expect("the golden file exists");
    let differing: Vec<(&str, &str)> = expected
        .lines()
        .zip(actual.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert!(
        expected == actual,
        "tables differ from {GOLDEN} (expected, actual): {differing:?}\nfull actual:\n{actual}"
    );
}
