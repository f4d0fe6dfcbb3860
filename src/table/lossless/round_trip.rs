//! Unit round trips: JSON -> row builder -> Arrow -> export -> JSON, compared as
//! `serde_json::Value` (numbers by their text: the crate builds serde_json with
//! `arbitrary_precision`).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};

use super::rows::RowBuilder;
use super::{resource_schema, Exporter};
use crate::fhir::definitions::{definitions, TreeOptions};
use crate::resource::tree::{self, Node};

/// Builds one batch of `resources` (all of one type) and returns it with the unmapped pointers
/// of each row.
pub(super) fn build(resources: &[&str], options: TreeOptions) -> (RecordBatch, Vec<Vec<String>>) {
    let first: serde_json::Value = serde_json::from_str(resources[0]).unwrap();
    let resource_type = first["resourceType"].as_str().unwrap();
    let shape = definitions().resource_shape(resource_type, options).unwrap();
    let schema = Arc::new(resource_schema(resource_type, options).unwrap());
    let mut builder = RowBuilder::new(&shape, &schema);
    let mut unmapped = Vec::new();
    for text in resources {
        let Node::Object(object) = tree::parse(text).unwrap() else {
            panic!("not an object");
        };
        builder.append(&shape, &object, &super::Place::default());
        unmapped.push(
            builder
                .row_unmapped
                .iter()
                .map(|(path, _)| path.clone())
                .collect(),
        );
    }
    (builder.finish(schema), unmapped)
}

fn export(batch: &RecordBatch, options: TreeOptions) -> Vec<String> {
    let resource_type = batch.column(0).as_string::<i32>().value(0).to_owned();
    let exporter = Exporter::new(&resource_type, options).unwrap();
    let mut out = Vec::new();
    assert_eq!(exporter.write_batch(batch, &mut out).unwrap(), batch.num_rows());
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The lines `export` writes for `batch` once it went through a Parquet file and was read back
/// with only the columns that hold something, as `fhir2table export` reads it.
fn export_from_parquet(batch: &RecordBatch, options: TreeOptions) -> Vec<String> {
    let resource_type = batch.column(0).as_string::<i32>().value(0).to_owned();
    let exporter = Exporter::new(&resource_type, options).unwrap();
    let mut out = Vec::new();
    for read in crate::sink::reached::through_parquet(batch) {
        let rows = exporter.rows_reached(&read).unwrap();
        for row in 0..read.num_rows() {
            rows.write(row, Vec::new(), &mut out).unwrap();
            out.push(b'\n');
        }
    }
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Asserts every resource comes back JSON-equal, straight from the batch and through a Parquet
/// file read back with its reached columns only; returns the batch and the unmapped pointers.
fn round_trip_with(resources: &[&str], options: TreeOptions) -> (RecordBatch, Vec<Vec<String>>) {
    let (batch, unmapped) = build(resources, options);
    for lines in [export(&batch, options), export_from_parquet(&batch, options)] {
        assert_eq!(lines.len(), resources.len());
        for (input, output) in resources.iter().zip(&lines) {
            let want: serde_json::Value = serde_json::from_str(input).unwrap();
            let got: serde_json::Value = serde_json::from_str(output)
                .unwrap_or_else(|error| panic!("export wrote invalid JSON ({error}): {output}"));
            assert_eq!(got, want, "\n exported: {output}\n input:    {input}");
        }
    }
    (batch, unmapped)
}

fn round_trip(resources: &[&str]) -> (RecordBatch, Vec<Vec<String>>) {
    round_trip_with(resources, TreeOptions::default())
}

#[test]
fn patients_with_primitive_extensions_nulls_and_empties_come_back() {
    let (batch, unmapped) = round_trip(&[
        r##"{"resourceType":"Patient","id":"p1","active":true,
            "name":[{"family":"Chalmers","given":["Peter","James"],"_given":[null,{"extension":[{"url":"http://x","valueString":"Jim"}]}]},{}],
            "birthDate":"1974-12","_birthDate":{"id":"b","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1974-12-25T14:35:45-05:00"}]},
            "multipleBirthInteger":2147483647,
            "extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3","display":"White"}},{"url":"text","valueString":"White"}]},
                         {"url":"http://synthetichealth.github.io/synthea/disability-adjusted-life-years","valueDecimal":0.30},
                         {"url":"deep","extension":[{"url":"l2","extension":[{"url":"l3","extension":[{"url":"l4","valueInteger":4}]}]}]}],
            "telecom":[],
            "contained":[{"resourceType":"Organization","id":"o","name":"Org é \\ \n 😀"}],
            "managingOrganization":{"reference":"#o"}}"##,
        r#"{"resourceType":"Patient"}"#,
        r#"{"resourceType":"Patient","id":"p3","name":[null,{"given":["a",null],"_given":[null,{"id":"g2"}]}],"meta":{}}"#,
    ]);
    assert_eq!(unmapped, vec![Vec::<String>::new(); 3]);
    // The birth date's companions span the month.
    let start = batch
        .column_by_name("__birthDate_start")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    let end = batch
        .column_by_name("__birthDate_end")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    let bounds = crate::fhir::datetime::instant_bounds("1974-12", false).unwrap();
    assert_eq!((start.value(0), end.value(0)), bounds);
    assert!(start.is_null(1));
    assert_eq!(
        batch
            .column_by_name("multipleBirthInteger")
            .unwrap()
            .as_primitive::<Int32Type>()
            .value(0),
        i32::MAX
    );
    // The typed extension's decimal and its numeric companion.
    let extensions = batch
        .column_by_name("extension")
        .unwrap()
        .as_list::<i32>()
        .value(0);
    let extensions = extensions.as_struct();
    let decimal = extensions
        .column_by_name("valueDecimal")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(decimal.value(1), "0.30");
    let numeric = extensions
        .column_by_name("__valueDecimal_numeric")
        .unwrap()
        .as_primitive::<Decimal128Type>();
    assert_eq!(numeric.value(1), 300_000);
}

#[test]
fn wrong_kinds_and_unknown_keys_are_kept_in_unmapped() {
    let (batch, unmapped) = round_trip(&[
        r#"{"resourceType":"Patient","id":"p","foo":1,"active":"yes","birthDate":null,
            "name":[{"family":"X","nickname":"Bob","given":["a",5]}],
            "multipleBirthInteger":1.0,"gender":"male","deceasedBoolean":false,
            "address":[{"line":["1 Main"],"_line":[{"extension":[]}]}],
            "a/b~c":{"x":[1,2]},"foo":2}"#,
        r#"{"resourceType":"Patient","multipleBirthInteger":3000000000}"#,
        r#"{"resourceType":"Patient","multipleBirthInteger":1e2,"photo":{"data":"AA=="},"id":7}"#,
    ]);
    assert_eq!(
        unmapped[0],
        [
            "/active",
            "/name/0/given",
            "/name/0/nickname",
            "/birthDate",
            "/multipleBirthInteger",
            "/a~1b~0c",
            "/foo"
        ]
    );
    assert_eq!(unmapped[1], ["/multipleBirthInteger"]);
    assert_eq!(unmapped[2], ["/id", "/multipleBirthInteger", "/photo"]);
    let gender = batch.column_by_name("gender").unwrap().as_string::<i32>();
    assert_eq!(gender.value(0), "male");
}

#[test]
fn observations_keep_decimals_as_written() {
    let (batch, unmapped) = round_trip(&[
        r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},
            "valueQuantity":{"value":1.50,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"},
            "effectiveDateTime":"2019-03-01T10:00:00.5+01:00",
            "component":[{"code":{"text":"a"},"valueQuantity":{"value":1e2}},{"code":{"text":"b"},"valueQuantity":{"value":-0.0}},
                         {"code":{"text":"c"},"valueQuantity":{"value":0.000001234}},{"code":{"text":"d"},"valueString":"1.5"}],
            "referenceRange":[{"low":{"value":"1.5"}}]}"#,
    ]);
    assert_eq!(unmapped[0], ["/referenceRange/0/low/value"]);
    let quantity = batch.column_by_name("valueQuantity").unwrap().as_struct();
    assert_eq!(
        quantity
            .column_by_name("value")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "1.50"
    );
    assert_eq!(
        quantity
            .column_by_name("__value_numeric")
            .unwrap()
            .as_primitive::<Decimal128Type>()
            .value(0),
        1_500_000
    );
}

#[test]
fn items_nest_past_the_typed_depth_as_json_text() {
    let item = |inner: &str, depth: usize| {
        format!(r#"{{"linkId":"{depth}","text":"level {depth}","type":"group","item":[{inner}]}}"#)
    };
    let mut items = r#"{"linkId":"6","type":"string","initialString":"deep"}"#.to_owned();
    for depth in (1..=5).rev() {
        items = item(&items, depth);
    }
    let questionnaire = format!(r#"{{"resourceType":"Questionnaire","status":"active","item":[{items}]}}"#);
    for typed_depth in 1..=4 {
        round_trip_with(&[&questionnaire], TreeOptions { typed_depth });
    }
}

#[test]
fn bundles_and_parameters_keep_nested_resources() {
    round_trip(&[
        r#"{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"n"}}]}}]}"#,
    ]);
    round_trip(&[
        r#"{"resourceType":"Parameters","parameter":[{"name":"a","valueDecimal":2.50},{"name":"b","resource":{"resourceType":"Patient","id":"x"}},{"name":"c","part":[{"name":"d","valueTiming":{"event":["2019"]}}]}]}"#,
    ]);
}

#[test]
fn every_type_round_trips_a_resource_with_only_an_id() {
    let options = TreeOptions::default();
    for resource_type in definitions().resource_types() {
        let text = format!(r#"{{"resourceType":"{resource_type}","id":"x","zz":[1]}}"#);
        let (_, unmapped) = round_trip_with(&[&text], options);
        assert_eq!(unmapped[0], ["/zz"], "{resource_type}");
    }
}

/// Walks `document` into the resource tables of `types`; returns each table's batch.
fn walk(document: &str, types: &[&str]) -> Vec<RecordBatch> {
    use crate::table::{stop_flags, Table, TableSet};
    let tables: Vec<Box<dyn Table>> = types
        .iter()
        .map(|t| {
            Box::new(super::ResourceTable::new(t, TreeOptions::default(), 100).unwrap()) as Box<dyn Table>
        })
        .collect();
    let mut set = TableSet::new(tables, 100, stop_flags(types.len()));
    let mut index = crate::resource::IdentifierIndex::default();
    let mut diagnostics = crate::diagnostics::Diagnostics::default();
    let mut walker = crate::resource::Walker {
        sink: &mut set,
        index: &mut index,
        diagnostics: &mut diagnostics,
    };
    assert!(walker.document("bundle.json", document, 1).unwrap());
    let (mut batches, broken) = set.flush();
    assert!(broken.is_empty());
    batches.sort_by_key(|(position, _)| *position);
    batches.into_iter().map(|(_, batch)| batch).collect()
}

#[test]
fn a_bundle_envelope_leaves_out_the_entries_that_became_rows_and_keeps_the_rest() {
    let document = r#"{"resourceType":"Bundle","type":"collection","entry":[
        {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"p1"}},
        {"resource":{"resourceType":"Observation","id":"o1","status":"final"}},
        {"resource":null,"search":{"mode":"include"}},
        {"request":{"method":"DELETE","url":"Patient/gone"}},
        {"resource":{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"p2"}}]}}
    ]}"#;
    let batches = walk(document, &["Bundle", "Patient"]);
    let (bundles, patients) = (&batches[0], &batches[1]);
    // Innermost first: the nested Bundle's row comes before the document's.
    let exporter = Exporter::new("Bundle", TreeOptions::default()).unwrap();
    let rows = exporter.rows(bundles).unwrap();
    assert_eq!(bundles.num_rows(), 2);
    let (outer_key, outer_rows) = rows.envelope(1).unwrap();
    assert_eq!(outer_key.len(), 16);
    assert_eq!(outer_rows, [0, 4]);
    assert_eq!(rows.container(1), None);
    let (inner_key, inner_rows) = rows.envelope(0).unwrap();
    assert_eq!(inner_key, format!("{outer_key}/4"));
    assert_eq!(inner_rows, [0]);
    assert_eq!(rows.container(0), Some((outer_key, 4)));
    let mut text = Vec::new();
    rows.write(1, Vec::new(), &mut text).unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let expected = serde_json::json!({"resourceType":"Bundle","type":"collection","entry":[
        {"fullUrl":"urn:uuid:p1"},
        {"resource":{"resourceType":"Observation","id":"o1","status":"final"}},
        {"resource":null,"search":{"mode":"include"}},
        {"request":{"method":"DELETE","url":"Patient/gone"}},
        {}
    ]});
    assert_eq!(envelope, expected);
    // Each Patient row says where it was.
    let patient_rows = Exporter::new("Patient", TreeOptions::default()).unwrap();
    let patient_rows = patient_rows.rows(patients).unwrap();
    assert_eq!(patient_rows.container(0), Some((outer_key, 0)));
    assert_eq!(patient_rows.container(1), Some((inner_key, 0)));
    assert_eq!(patient_rows.envelope(0), None);
}

/// A small deterministic generator (xorshift64) for resources made from the shape tree.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'t>(&mut self, from: &[&'t str]) -> &'t str {
        from[self.below(from.len() as u64) as usize]
    }
}

/// A resource of `resource_type` with random members of its shape: values of every kind, nulls
/// in arrays, `{}`, decimals as written, JSON-text members, and now and then a key R4 lacks or
/// a value of the wrong kind (both for `__unmapped`).
fn random_resource(resource_type: &str, random: &mut Random) -> String {
    let shape = definitions()
        .resource_shape(resource_type, TreeOptions::default())
        .unwrap();
    let mut object = random_object(&shape, random, 0);
    object.insert("resourceType".to_owned(), resource_type.into());
    serde_json::Value::Object(object).to_string()
}

fn random_object(
    shape: &crate::fhir::definitions::ObjectShape,
    random: &mut Random,
    depth: usize,
) -> serde_json::Map<String, serde_json::Value> {
    use crate::fhir::definitions::Shape;
    let percent = [15, 25, 15, 8][depth.min(3)];
    let mut object = serde_json::Map::new();
    for member in &shape.members {
        if !random.chance(percent) {
            continue;
        }
        let value = if member.repeats && !matches!(member.shape, Shape::Json) {
            let items = (0..random.below(3))
                .map(|_| match random.chance(10) {
                    true => serde_json::Value::Null,
                    false => random_value(&member.shape, random, depth),
                })
                .collect();
            serde_json::Value::Array(items)
        } else {
            random_value(&member.shape, random, depth)
        };
        object.insert(member.key.clone(), value);
    }
    if random.chance(3) {
        object.insert("notInR4".to_owned(), random_json(random, 2));
    }
    object
}

fn random_value(
    shape: &crate::fhir::definitions::Shape,
    random: &mut Random,
    depth: usize,
) -> serde_json::Value {
    use crate::fhir::definitions::Shape;
    use crate::fhir::elements::{value_class, ValueClass};
    if random.chance(2) {
        // A value of the wrong kind for its element.
        return random_json(random, 1);
    }
    match shape {
        Shape::Json => random_json(random, 2),
        Shape::Primitive(type_code) => match value_class(type_code) {
            ValueClass::Boolean => random.chance(50).into(),
            ValueClass::Integer32 => (random.next() as i32).into(),
            ValueClass::Integer64 => (random.next() as i64).into(),
            ValueClass::Decimal => {
                let text = random.pick(&["1.50", "1e2", "-0.0", "0", "3.14159265358979323846", "-12E-3"]);
                serde_json::from_str(text).unwrap()
            }
            ValueClass::Text => random_text(random).into(),
        },
        Shape::Object(object) if depth < 4 => random_object(object, random, depth + 1).into(),
        Shape::Object(_) => serde_json::json!({}),
    }
}

fn random_text(random: &mut Random) -> String {
    let words = [
        "2019",
        "2019-02-28T10:00:00+01:00",
        "final",
        "é😀",
        "a\"b\\c",
        "line\nbreak",
        "",
        "\u{1}",
        "1.50",
    ];
    (0..random.below(3)).map(|_| random.pick(&words)).collect()
}

fn random_json(random: &mut Random, depth: usize) -> serde_json::Value {
    match random.below(if depth == 0 { 4 } else { 6 }) {
        0 => serde_json::Value::Null,
        1 => random.chance(50).into(),
        2 => serde_json::from_str(random.pick(&["7", "1.50", "-2e-5"])).unwrap(),
        3 => random_text(random).into(),
        4 => (0..random.below(3))
            .map(|_| random_json(random, depth - 1))
            .collect(),
        _ => (0..random.below(3))
            .map(|n| (format!("k{n}"), random_json(random, depth - 1)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(300))]

    /// Resources of any type, made at random from the type's own shape, come back JSON-equal.
    #[test]
    fn random_resources_of_every_type_come_back(type_index in 0usize..146, seed in 1u64..u64::MAX) {
        let types = definitions().resource_types();
        let resource_type = types[type_index % types.len()];
        let mut random = Random(seed);
        let resources: Vec<String> = (0..3).map(|_| random_resource(resource_type, &mut random)).collect();
        let texts: Vec<&str> = resources.iter().map(String::as_str).collect();
        round_trip_with(&texts, TreeOptions::default());
    }
}
