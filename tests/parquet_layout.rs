//! The Parquet details other readers depend on, checked in the files themselves: key-value
//! metadata that names the table, list columns in the spec's `list.element` layout, min/max
//! statistics on floating-point columns under a column order every reader knows, and the key
//! that tells Spark 3 the calendar of old dates. tests/interop (Python readers) checks that the
//! readers act on them.

mod common;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use common::{convert, fhir2table, fixtures, read_table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{ColumnOrder, SortOrder, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;

fn part_files(out: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for table in std::fs::read_dir(out).unwrap() {
        let table = table.unwrap().path();
        if !table.is_dir()
            || table
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(['.', '_'])
        {
            continue;
        }
        for file in std::fs::read_dir(&table).unwrap() {
            let name = table.file_name().unwrap().to_string_lossy().into_owned();
            files.push((name, file.unwrap().path()));
        }
    }
    files.sort();
    assert!(
        files.len() > 20,
        "a default-views run writes many tables: {files:?}"
    );
    files
}

fn key_values(path: &Path) -> HashMap<String, String> {
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|entries| {
            entries
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_file_names_its_table_resource_type_contract_and_writer_in_parquet_metadata() {
    let run = convert(&fixtures().join("synthea"), &["--view", "default", "-q"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let view_resources: HashMap<&str, &str> =
        [("observation", "Observation"), ("care_team", "CareTeam")].into();
    for (table, path) in part_files(run.out.path()) {
        let kv = key_values(&path);
        assert_eq!(kv.get("fhir2table.table"), Some(&table), "{}", path.display());
        assert_eq!(
            kv.get("fhir2table.version").map(String::as_str),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            kv.get("org.apache.spark.version").map(String::as_str),
            Some("3.0.0")
        );
        assert!(!kv.contains_key("org.apache.spark.legacyDateTime"));
        let contract = kv.get("fhir2table.contract").map(String::as_str);
        let resource_type = kv.get("fhir2table.resource_type").map(String::as_str);
        match table.as_str() {
            "patient" => assert_eq!((resource_type, contract), (Some("Patient"), Some("1"))),
            "encounter" => assert_eq!((resource_type, contract), (Some("Encounter"), Some("1"))),
            view => {
                assert_eq!(contract, None, "{view}: views follow their ViewDefinition");
                assert!(resource_type.is_some(), "{view} records its resource type");
                if let Some(expected) = view_resources.get(view) {
                    assert_eq!(resource_type, Some(*expected));
                }
            }
        }
    }
}

#[test]
fn list_columns_use_the_parquet_spec_layout() {
    let run = convert(&fixtures().join("synthea"), &["--view", "default", "-q"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut lists = 0;
    for (_, path) in part_files(run.out.path()) {
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        for column in schema.columns() {
            let parts = column.path().parts();
            if parts.len() > 1 {
                assert_eq!(&parts[1..], ["list", "element"], "{}: {parts:?}", path.display());
                lists += 1;
            }
        }
        let arrow = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        for field in arrow.schema().fields() {
            if let DataType::List(element) = field.data_type() {
                assert_eq!(element.name(), "element", "{}", path.display());
            }
        }
    }
    assert!(lists >= 3, "the default views have list columns ({lists} found)");
}

#[test]
fn double_columns_carry_min_max_under_an_order_every_reader_knows() {
    let run = convert(&fixtures().join("synthea"), &["--view", "default", "-q"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut checked = 0;
    for (table, path) in part_files(run.out.path()) {
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let metadata = reader.metadata();
        let schema = metadata.file_metadata().schema_descr();
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (i, column) in schema.columns().iter().enumerate() {
            if column.physical_type() != PhysicalType::DOUBLE || column.path().parts().len() > 1 {
                continue;
            }
            let order = metadata.file_metadata().column_order(i);
            assert_eq!(
                order,
                ColumnOrder::TYPE_DEFINED_ORDER(SortOrder::SIGNED),
                "{table}.{}",
                column.name()
            );
            if metadata.num_row_groups() == 0 {
                continue;
            }
            assert_eq!(metadata.num_row_groups(), 1, "the fixtures fit one row group");
            let values: Vec<f64> = batches
                .iter()
                .flat_map(|batch| {
                    let array = batch
                        .column_by_name(column.name())
                        .unwrap()
                        .as_primitive::<Float64Type>();
                    array.iter().flatten().collect::<Vec<_>>()
                })
                .collect();
            let statistics = metadata
                .row_group(0)
                .column(i)
                .statistics()
                .expect("statistics are written");
            let Statistics::Double(statistics) = statistics else {
                panic!("{table}.{}: not double statistics", column.name())
            };
            let min = values.iter().copied().reduce(f64::min);
            let max = values.iter().copied().reduce(f64::max);
            assert_eq!(statistics.min_opt().copied(), min, "{table}.{}", column.name());
            assert_eq!(statistics.max_opt().copied(), max, "{table}.{}", column.name());
            checked += usize::from(min.is_some());
        }
    }
    assert!(
        checked >= 3,
        "latitude, longitude and view numbers are checked ({checked})"
    );
}

/// Rewrites a view's part file as fhir2table wrote it before list columns followed the spec:
/// `list.item` in the file and `item` in the stored Arrow schema.
fn rewrite_with_item_lists(path: &Path) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let old_type = |data_type: &DataType| match data_type {
        DataType::List(element) => {
            DataType::List(Arc::new(Field::new("item", element.data_type().clone(), true)))
        }
        other => other.clone(),
    };
    let fields: Vec<Field> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| Field::new(f.name(), old_type(f.data_type()), f.is_nullable()))
        .collect();
    let schema = Arc::new(Schema::new(fields).with_metadata(builder.schema().metadata().clone()));
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema.clone(), None).unwrap();
    for batch in batches {
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| match field.data_type() {
                DataType::List(element) => {
                    let list = column.as_list::<i32>();
                    let relabelled = ListArray::new(
                        element.clone(),
                        list.offsets().clone(),
                        list.values().clone(),
                        list.nulls().cloned(),
                    );
                    Arc::new(relabelled) as ArrayRef
                }
                _ => column.clone(),
            })
            .collect();
        writer
            .write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
            .unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn appending_to_a_dataset_with_item_lists_works_and_compact_brings_it_to_the_spec_layout() {
    let input = fixtures().join("synthea");
    let run = convert(&input, &["--view", "default", "-q"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let table = run.out.path().join("care_team");
    let before = read_table(&table);
    let old_file = std::fs::read_dir(&table).unwrap().next().unwrap().unwrap().path();
    rewrite_with_item_lists(&old_file);
    let old_schema = ParquetRecordBatchReaderBuilder::try_new(File::open(&old_file).unwrap()).unwrap();
    let DataType::List(element) = old_schema
        .schema()
        .field_with_name("participant_ids")
        .unwrap()
        .data_type()
    else {
        panic!("participant_ids is a list")
    };
    assert_eq!(element.name(), "item", "the test built an old-layout file");

    let (code, stderr) = common::convert_into(
        &input,
        run.out.path(),
        &["--view", "default", "-q", "--mode", "append"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read_table(&table).rows.len(), 2 * before.rows.len());

    let compact = fhir2table()
        .args(["compact", "-q"])
        .arg(run.out.path())
        .output()
        .unwrap();
    assert_eq!(
        compact.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&compact.stderr)
    );
    let after = read_table(&table);
    assert_eq!(after.files, 1);
    assert_eq!(
        after.sorted_rows(),
        before.sorted_rows(),
        "compact keeps one row per id, cells unchanged"
    );
    let compacted = std::fs::read_dir(&table).unwrap().next().unwrap().unwrap().path();
    let reader = SerializedFileReader::new(File::open(&compacted).unwrap()).unwrap();
    let paths: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.path().string())
        .collect();
    assert!(
        paths.contains(&"participant_ids.list.element".to_owned()),
        "{paths:?}"
    );
}

#[test]
fn id_and_reference_key_columns_carry_a_bloom_filter_holding_every_value() {
    use parquet::file::properties::ReaderProperties;
    use parquet::file::serialized_reader::ReadOptionsBuilder;

    let run = convert(&fixtures().join("synthea"), &["--view", "default", "-q"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (mut indexed, mut plain) = (0, 0);
    for (table, path) in part_files(run.out.path()) {
        let options = ReadOptionsBuilder::new()
            .with_reader_properties(ReaderProperties::builder().set_read_bloom_filter(true).build())
            .build();
        let reader = SerializedFileReader::new_with_options(File::open(&path).unwrap(), options).unwrap();
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for group in 0..reader.metadata().num_row_groups() {
            let row_group = reader.get_row_group(group).unwrap();
            let columns = reader
                .metadata()
                .file_metadata()
                .schema_descr()
                .columns()
                .to_vec();
            for (i, column) in columns.iter().enumerate() {
                let name = column.name();
                let is_key = column.path().parts().len() == 1
                    && column.physical_type() == PhysicalType::BYTE_ARRAY
                    && (name == "id" || name.ends_with("_id"));
                let filter = row_group.get_column_bloom_filter(i);
                if !is_key {
                    assert!(filter.is_none(), "{table}.{name} has no lookup index");
                    plain += 1;
                    continue;
                }
                let filter = filter.unwrap_or_else(|| panic!("{table}.{name} has a bloom filter"));
                let values: Vec<String> = batches
                    .iter()
                    .flat_map(|batch| {
                        let array = batch.column_by_name(name).unwrap().as_string::<i32>();
                        array.iter().flatten().map(str::to_owned).collect::<Vec<_>>()
                    })
                    .collect();
                for value in &values {
                    assert!(
                        filter.check(&value.as_str()),
                        "{table}.{name}: {value} is in the filter"
                    );
                }
                let absent = (0..100)
                    .filter(|n| filter.check(&format!("no-such-id-{n}").as_str()))
                    .count();
                assert!(
                    absent <= 10,
                    "{table}.{name}: {absent} of 100 absent ids pass the filter"
                );
                indexed += 1;
            }
        }
    }
    assert!(
        indexed >= 40 && plain >= 100,
        "{indexed} indexed, {plain} plain columns"
    );
}
