//! Tests that a Bundle read once (the walker finds the entries and the resource tables build
//! their rows from the same reading, `resource/one_pass.rs`) gives what reading it the usual
//! way gives: the same batches, cut at the same rows (but where a worker's memory budget cuts
//! them: the same rows in the same order there), the same errors and counts; and that every
//! case the reading gives up on still ends the usual way.

use std::path::Path;

use arrow_array::RecordBatch;

use super::ResourceTable;
use crate::diagnostics::Diagnostics;
use crate::fhir::definitions::{definitions, TreeOptions};
use crate::resource::tree::Reader;
use crate::resource::{IdentifierIndex, Rejection, Resource, ResourceSink, StreamRefused, Walker};
use crate::table::{stop_flags, Table, TableSet};

/// The tables' sink, counting the entries streamed, or (`once` false) never reading a Bundle
/// once: the usual way.
struct Sink {
    tables: TableSet,
    once: bool,
    streamed: usize,
    /// The Bundles the tables asked to read once.
    tries: usize,
}

impl ResourceSink for Sink {
    fn wants(&self, resource_type: &str) -> bool {
        self.tables.wants(resource_type)
    }
    fn accept(&mut self, resource: &Resource<'_>, diagnostics: &mut Diagnostics) -> Result<(), Rejection> {
        self.tables.accept(resource, diagnostics)
    }
    fn deleted(&mut self, resource_type: &str, id: &str) {
        self.tables.deleted(resource_type, id);
    }
    fn begin_bundle(&mut self) -> bool {
        let once = self.once && self.tables.begin_bundle();
        self.tries += usize::from(once);
        once
    }
    fn stream_entry(&mut self, resource_type: &str, reader: &mut Reader<'_>) -> Result<bool, StreamRefused> {
        let taken = self.tables.stream_entry(resource_type, reader)?;
        self.streamed += usize::from(taken);
        Ok(taken)
    }
    fn abandon_bundle(&mut self) {
        self.tables.abandon_bundle();
    }
}

/// What converting `documents` gave: each document's outcome, the batches (cut during the
/// documents and flushed at the end, by table), the diagnostics, the entries streamed and the
/// Bundles tried.
type Outcome = (Vec<String>, Vec<(usize, RecordBatch)>, Diagnostics, usize, usize);

/// How a conversion is set up: the batch size, a worker's memory budget (`None`: the run's),
/// and a second Patient table next to the first.
#[derive(Clone, Copy)]
struct Setup {
    batch_size: usize,
    budget: Option<usize>,
    two_patient_tables: bool,
}

impl Setup {
    fn batches_of(batch_size: usize) -> Self {
        Setup {
            batch_size,
            budget: None,
            two_patient_tables: false,
        }
    }
}

fn convert(documents: &[String], setup: Setup, once: bool) -> Outcome {
    let table = |resource_type: &str| -> Box<dyn Table> {
        let table = ResourceTable::new(resource_type, TreeOptions::default(), setup.batch_size);
        Box::new(table.expect("an R4 type"))
    };
    let mut tables: Vec<Box<dyn Table>> = definitions().resource_types().iter().map(|t| table(t)).collect();
    if setup.two_patient_tables {
        tables.push(table("Patient"));
    }
    let count = tables.len();
    let mut sink = Sink {
        tables: TableSet::new(tables, setup.batch_size, stop_flags(count)),
        once,
        streamed: 0,
        tries: 0,
    };
    if let Some(budget) = setup.budget {
        sink.tables.budget = budget;
    }
    let mut index = IdentifierIndex::default();
    let mut diagnostics = Diagnostics::default();
    let mut outcomes = Vec::new();
    let mut batches = Vec::new();
    for (number, document) in documents.iter().enumerate() {
        sink.tables.begin_document(1);
        let mut walker = Walker {
            sink: &mut sink,
            index: &mut index,
            diagnostics: &mut diagnostics,
        };
        let outcome = walker.document(&format!("doc{number}.json"), document, 1);
        outcomes.push(match outcome {
            Ok(clean) => format!("ok {clean}"),
            Err(error) => format!("error at line {}: {}", error.line, error.message),
        });
        batches.extend(sink.tables.take_ready());
    }
    let (flushed, broken) = sink.tables.flush();
    assert!(broken.is_empty());
    batches.extend(flushed);
    (outcomes, batches, diagnostics, sink.streamed, sink.tries)
}

/// Converts `documents` both ways and checks they agree, batch by batch; returns the entries
/// streamed.
fn same_both_ways(documents: &[String], setup: Setup) -> usize {
    let (outcomes, batches, diagnostics, streamed, _) = convert(documents, setup, true);
    let (usual_outcomes, usual_batches, usual_diagnostics, none, _) = convert(documents, setup, false);
    assert_eq!(none, 0);
    assert_eq!(outcomes, usual_outcomes);
    assert_eq!(diagnostics.resources, usual_diagnostics.resources);
    assert_eq!(
        format!("{:?}", diagnostics.errors),
        format!("{:?}", usual_diagnostics.errors)
    );
    assert_eq!(
        format!("{:?}", diagnostics.unmapped),
        format!("{:?}", usual_diagnostics.unmapped)
    );
    assert_eq!(batches.len(), usual_batches.len());
    for ((table, batch), (usual_table, usual_batch)) in batches.iter().zip(&usual_batches) {
        assert_eq!(table, usual_table);
        assert_eq!(batch.num_rows(), usual_batch.num_rows(), "table {table}");
        assert!(batch == usual_batch, "table {table}: the batches differ");
    }
    streamed
}

fn fixture(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    std::fs::read_to_string(root.join(path)).unwrap()
}

fn entry(resource: &str) -> String {
    format!(r#"{{"fullUrl":"urn:uuid:x","resource":{resource},"request":{{"method":"POST","url":"X"}}}}"#)
}

fn bundle(entries: &[String]) -> String {
    format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{}]}}"#,
        entries.join(",")
    )
}

fn patient(id: &str) -> String {
    format!(r#"{{"resourceType":"Patient","id":"{id}","gender":"female","name":[{{"family":"F{id}"}}]}}"#)
}

fn observation(id: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","id":"{id}","status":"final","code":{{"text":"t"}},"valueQuantity":{{"value":1.50,"unit":"mg"}}}}"#
    )
}

/// Synthea's patient and hospital Bundles, pretty-printed as Synthea writes them: every entry
/// is streamed, and the batches are those of the usual way, whole and cut every few rows.
#[test]
fn synthea_bundles_read_once_give_the_usual_rows() {
    let documents: Vec<String> = [
        "synthea/smart/Gustavo_Mejía_59a8543c-e24f-4a01-b28b-47ccde6bc11d.json",
        "synthea/smart/hospitalInformation1559319163815.json",
        "synthea/pathling-collection/Tuyet839_Boyle917_3fc4d5b0-9e46-4307-8c05-e4cef7602e7f.json",
        "lossless/nested-bundles.json",
        "handmade/a-visit.json",
    ]
    .iter()
    .map(|path| fixture(path))
    .collect();
    // A table takes no more of a Bundle once its batch is full: the rest of its entries there
    // go the usual way, after the cut.
    for (batch_size, at_least) in [(5000, 380), (7, 80), (1, 25)] {
        let streamed = same_both_ways(&documents, Setup::batches_of(batch_size));
        assert!(
            streamed >= at_least,
            "{streamed} entries streamed at batch size {batch_size}"
        );
    }
}

/// Each Bundle here has something the reading gives up on, between entries it streams: the
/// rows, errors and counts are those of the usual way.
#[test]
fn bundles_the_reading_gives_up_on_end_the_usual_way() {
    let ok = [patient("p1"), observation("o1")].map(|resource| entry(&resource));
    let with = |odd: String| -> String {
        let mut entries = ok.to_vec();
        entries.insert(1, odd);
        entries.push(entry(&observation("o2")));
        bundle(&entries)
    };
    let documents = vec![
        // A member the shape lacks: the tree's way keeps it in `__unmapped`.
        with(entry(r#"{"resourceType":"Observation","id":"u","nickname":"x"}"#)),
        // `resourceType` not first.
        with(entry(
            r#"{"id":"late","resourceType":"Observation","status":"final"}"#,
        )),
        // A Bundle in an entry, and a DELETE entry.
        with(entry(&bundle(&[entry(&patient("inner"))]))),
        with(r#"{"request":{"method":"DELETE","url":"Patient/p1"}}"#.to_owned()),
        // Repeated entry members and a repeated `entry`: `serde_json` refuses the Bundle.
        with(r#"{"fullUrl":"a","fullUrl":"b"}"#.to_owned()),
        with(r#"{"request":{"method":"POST","method":"PUT"}}"#.to_owned()),
        format!(r#"{{"resourceType":"Bundle","entry":[],"entry":[{}]}}"#, ok[0]),
        // Values of another kind.
        with(r#"{"fullUrl":1}"#.to_owned()),
        with(r#"{"resource":"text"}"#.to_owned()),
        with(r#"{"request":{"url":true}}"#.to_owned()),
        format!(r#"{{"resourceType":"Bundle","entry":null,"x":[{}]}}"#, ok[0]),
        with("null".to_owned()),
        // A Patient whose identifiers the walker cannot index: refused before the tables.
        with(entry(
            r#"{"resourceType":"Patient","id":"i","identifier":[null]}"#,
        )),
        // Text that is not JSON after streamed entries, and a truncated Bundle.
        with(r#"{"resource":{"resourceType":"Observation","id":"bad","status":"fi"#.to_owned()),
        bundle(&ok)[..150].to_owned(),
        format!("{} x", bundle(&ok)),
        // Null members, other members, an entry without a resource, escapes.
        with(r#"{"fullUrl":null,"resource":null,"request":null,"search":{"mode":"match"}}"#.to_owned()),
        with(entry(&patient(r"p\u0032"))),
        bundle(&[]),
        r#"{"resourceType":"Bundle"}"#.to_owned(),
    ];
    for batch_size in [5000, 2, 1] {
        same_both_ways(&documents, Setup::batches_of(batch_size));
        for document in &documents {
            same_both_ways(std::slice::from_ref(document), Setup::batches_of(batch_size));
        }
    }
    // The same, each odd entry after several entries of the types around it (nested members
    // too): giving up then undoes several rows of one table that share one generation.
    let late: Vec<String> = documents
        .iter()
        .filter_map(|document| {
            let at = document.find(r#""entry":["#)? + r#""entry":["#.len();
            let lead: Vec<String> = (0..3)
                .flat_map(|n| [patient(&format!("l{n}")), component_observation(&format!("l{n}"))])
                .map(|resource| entry(&resource))
                .collect();
            Some(format!(
                "{}{},{}",
                &document[..at],
                lead.join(","),
                &document[at..]
            ))
        })
        .collect();
    assert!(late.len() > 15);
    for batch_size in [5000, 4] {
        same_both_ways(&late, Setup::batches_of(batch_size));
        // One at a time: after a Bundle given up, the next is not tried (see below).
        let streamed: usize = late
            .iter()
            .map(|document| same_both_ways(std::slice::from_ref(document), Setup::batches_of(batch_size)))
            .sum();
        assert!(streamed >= 3 * late.len(), "{streamed} entries streamed");
    }
}

/// After a Bundle given up, the tables skip one Bundle before trying again, then two, four...;
/// one Bundle read once starts again from none.
#[test]
fn bundles_given_up_in_a_row_are_tried_less_and_less() {
    let late_odd = bundle(&[
        entry(&patient("a")),
        entry(&observation("b")),
        entry(r#"{"resourceType":"Observation","id":"u","nickname":"x"}"#),
    ]);
    let clean = bundle(&[entry(&patient("c")), entry(&observation("d"))]);
    let mut documents = vec![late_odd.clone(); 5];
    documents.extend([clean.clone(), clean.clone(), late_odd.clone(), late_odd, clean]);
    let setup = Setup::batches_of(5000);
    same_both_ways(&documents, setup);
    // Tried: the 1st (given up, skip 1), the 3rd (given up, skip 2), the 6th (read once), the
    // 7th, the 8th (given up, skip 1), the 10th.
    let (_, _, _, streamed, tries) = convert(&documents, setup, true);
    assert_eq!(tries, 6);
    assert_eq!(streamed, 2 + 2 + 2 + 2 + 2 + 2);
}

fn component_observation(id: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","id":"{id}","code":{{"coding":[{{"system":"s","code":"c"}}]}},"component":[{{"code":{{"text":"a"}},"valueString":"x"}},{{"code":{{"coding":[{{"code":"b"}}]}},"valueInteger":2}}]}}"#
    )
}

/// A worker over its memory budget cuts its fullest table, but not one whose Bundle is being
/// finished: batches are cut at other rows then, and the rows are the same in the same order.
#[test]
fn tables_over_the_budget_hold_the_same_rows() {
    let documents: Vec<String> = (0..6)
        .map(|n| {
            let entries: Vec<String> = (0..10)
                .flat_map(|i| {
                    [
                        patient(&format!("p{n}-{i}")),
                        component_observation(&format!("o{n}-{i}")),
                    ]
                })
                .map(|resource| entry(&resource))
                .collect();
            bundle(&entries)
        })
        .collect();
    let setup = Setup {
        batch_size: 5000,
        budget: Some(3000),
        two_patient_tables: false,
    };
    let (outcomes, batches, _, streamed, _) = convert(&documents, setup, true);
    let (usual_outcomes, usual_batches, _, _, _) = convert(&documents, setup, false);
    assert_eq!(outcomes, usual_outcomes);
    assert_eq!(streamed, 120);
    assert!(usual_batches.len() > 4, "the budget cut batches");
    let rows = |batches: &[(usize, RecordBatch)]| {
        let mut by_table: std::collections::BTreeMap<usize, Vec<RecordBatch>> = Default::default();
        for (table, batch) in batches {
            by_table.entry(*table).or_default().push(batch.clone());
        }
        by_table
            .into_iter()
            .map(|(table, batches)| {
                let schema = batches[0].schema();
                (
                    table,
                    arrow_select::concat::concat_batches(&schema, &batches).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&batches), rows(&usual_batches));
}

/// Two tables of one type: only the first reads the entries as they come; the second takes
/// them the usual way, and neither finishes the other's rows.
#[test]
fn only_the_first_table_of_a_type_reads_entries_as_they_come() {
    let entries: Vec<String> = (0..5).map(|n| entry(&patient(&format!("p{n}")))).collect();
    let documents = vec![bundle(&entries), bundle(&entries[..2])];
    for batch_size in [5000, 2] {
        let setup = Setup {
            batch_size,
            budget: None,
            two_patient_tables: true,
        };
        assert!(same_both_ways(&documents, setup) > 0);
    }
}
