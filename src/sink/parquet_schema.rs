//! The Parquet schema of a table's Arrow schema, as the parquet crate's `ArrowSchemaConverter`
//! makes it (with its types coerced, as the tool writes them), for the Arrow types the tables
//! use. The converter also describes the schema it makes (every leaf's path and levels), and a
//! file writer made from that schema describes it again: for the resource tables' thousands of
//! leaves, describing schemas was 2.3% of the instructions of `--resources all` on 500 MB of
//! Bundles and freeing the descriptions 1.4%, half of it for the description made for nothing.
//! Any type or field setting not handled here (field ids, extension types, other Arrow types),
//! and types not coerced, leave the conversion to the crate.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowSchemaConverter;
use parquet::basic::{LogicalType, Repetition, TimeUnit as ParquetTimeUnit, Type as PhysicalType};
use parquet::schema::types::{Type, TypePtr};

use crate::fhir::key_hash::FastHash;

/// The root of `schema`'s Parquet schema: the crate's `ArrowSchemaConverter` with
/// `coerce_types` (the writer settings' own) gives the same one.
pub(super) fn parquet_schema(schema: &Schema, coerce_types: bool) -> parquet::errors::Result<TypePtr> {
    if coerce_types {
        let mut nodes = SharedNodes::default();
        if let Some(fields) = schema
            .fields()
            .iter()
            .map(|field| nodes.parquet_type(field))
            .collect()
        {
            let root = Type::group_type_builder("arrow_schema").with_fields(fields);
            return Ok(Arc::new(root.build()?));
        }
    }
    let converter = ArrowSchemaConverter::new().with_coerce_types(coerce_types);
    Ok(converter.convert(schema)?.root_schema_ptr())
}

/// The Parquet type of `field`, `None` when the crate is left to convert it.
#[cfg(test)]
fn parquet_type(field: &Field) -> Option<TypePtr> {
    SharedNodes::default().parquet_type(field)
}

/// Makes each distinct node of a schema once: a node with the same name, repetition and
/// children as one made before is that one (the schema is a tree to its readers and a graph in
/// memory). A resource table repeats the same elements under many parents (`extension`,
/// `coding`, `system`, `value`), and every table keeps its schema until the run ends: on 4 GB
/// of Synthea Bundles the 16 tables' Parquet schemas took 10.5 MB, nearly all of it leaves
/// alike.
#[derive(Default)]
struct SharedNodes {
    made: HashMap<NodeKey, TypePtr, FastHash>,
}

/// What makes a node the same as another: its name, whether it may be null, and its type (a
/// leaf) or its children, already shared, by address (a group).
#[derive(PartialEq, Eq, Hash)]
enum NodeKey {
    Leaf(String, bool, DataType),
    Struct(String, bool, Vec<usize>),
    /// A list's repeated `list` group and the list around it, by its element.
    List(String, bool, usize),
}

impl SharedNodes {
    /// The node `key` names, made by `make` the first time.
    fn node(
        &mut self,
        key: NodeKey,
        make: impl FnOnce() -> parquet::errors::Result<Type>,
    ) -> Option<TypePtr> {
        if let Some(made) = self.made.get(&key) {
            return Some(made.clone());
        }
        let made = Arc::new(make().ok()?);
        self.made.insert(key, made.clone());
        Some(made)
    }

    /// The Parquet type of `field`, `None` when the crate is left to convert it.
    fn parquet_type(&mut self, field: &Field) -> Option<TypePtr> {
        // Field ids and extension types change the type the crate makes; the tool's own marks
        // (lookup columns) do not.
        if field
            .metadata()
            .keys()
            .any(|key| key.starts_with("PARQUET:") || key.starts_with("ARROW:"))
        {
            return None;
        }
        let name = field.name().as_str();
        let nullable = field.is_nullable();
        let repetition = if nullable {
            Repetition::OPTIONAL
        } else {
            Repetition::REQUIRED
        };
        let primitive = |physical| Type::primitive_type_builder(name, physical).with_repetition(repetition);
        let leaf = |data_type: &DataType| NodeKey::Leaf(name.to_owned(), nullable, data_type.clone());
        match field.data_type() {
            DataType::Boolean => self.node(leaf(field.data_type()), || {
                primitive(PhysicalType::BOOLEAN).build()
            }),
            DataType::Int32 => self.node(leaf(field.data_type()), || primitive(PhysicalType::INT32).build()),
            DataType::Int64 => self.node(leaf(field.data_type()), || primitive(PhysicalType::INT64).build()),
            DataType::Utf8 => self.node(leaf(field.data_type()), || {
                primitive(PhysicalType::BYTE_ARRAY)
                    .with_logical_type(Some(LogicalType::String))
                    .build()
            }),
            DataType::Timestamp(unit, zone) => {
                let unit = match unit {
                    TimeUnit::Second => return None,
                    TimeUnit::Millisecond => ParquetTimeUnit::MILLIS,
                    TimeUnit::Microsecond => ParquetTimeUnit::MICROS,
                    TimeUnit::Nanosecond => ParquetTimeUnit::NANOS,
                };
                let utc = zone.as_deref().is_some_and(|zone| !zone.is_empty());
                self.node(leaf(field.data_type()), || {
                    primitive(PhysicalType::INT64)
                        .with_logical_type(Some(LogicalType::timestamp(utc, unit)))
                        .build()
                })
            }
            // Precisions of 18 digits and less take another physical type.
            DataType::Decimal128(precision, scale) if *precision > 18 => {
                let length = decimal_bytes(*precision)?;
                self.node(leaf(field.data_type()), || {
                    primitive(PhysicalType::FIXED_LEN_BYTE_ARRAY)
                        .with_length(length)
                        .with_logical_type(Some(LogicalType::decimal(*scale as i32, *precision as i32)))
                        .with_precision(*precision as i32)
                        .with_scale(*scale as i32)
                        .build()
                })
            }
            DataType::List(item) => {
                let element = self.parquet_type(&item.as_ref().clone().with_name("element"))?;
                let key = NodeKey::List(
                    name.to_owned(),
                    nullable,
                    Arc::as_ptr(&element) as *const () as usize,
                );
                self.node(key, || {
                    let list = Type::group_type_builder("list")
                        .with_fields(vec![element])
                        .with_repetition(Repetition::REPEATED)
                        .build()?;
                    Type::group_type_builder(name)
                        .with_fields(vec![Arc::new(list)])
                        .with_logical_type(Some(LogicalType::List))
                        .with_repetition(repetition)
                        .build()
                })
            }
            DataType::Struct(children) if !children.is_empty() => {
                let fields: Vec<TypePtr> = children
                    .iter()
                    .map(|child| self.parquet_type(child))
                    .collect::<Option<_>>()?;
                let addresses = fields
                    .iter()
                    .map(|child| Arc::as_ptr(child) as *const () as usize)
                    .collect();
                self.node(NodeKey::Struct(name.to_owned(), nullable, addresses), || {
                    Type::group_type_builder(name)
                        .with_fields(fields)
                        .with_repetition(repetition)
                        .build()
                })
            }
            _ => None,
        }
    }
}

/// The fewest bytes whose signed range holds every decimal of `precision` digits (the Parquet
/// spec's rule for a decimal as a fixed-length byte array); `None` past 38 digits.
fn decimal_bytes(precision: u8) -> Option<i32> {
    let largest = 10u128.checked_pow(u32::from(precision))?;
    (1..=16).find(|&bytes: &i32| bytes == 16 || 1u128 << (8 * bytes - 1) >= largest)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_schema::Fields;

    use super::*;
    use crate::fhir::definitions::{definitions, TreeOptions};
    use crate::table::lossless::resource_schema;

    fn converted(schema: &Schema) -> TypePtr {
        ArrowSchemaConverter::new()
            .with_coerce_types(true)
            .convert(schema)
            .unwrap()
            .root_schema_ptr()
    }

    /// Every resource type's table, at typed depths 1 and 2 (the default): the schema made here
    /// is the crate's, and made here, not by the crate.
    #[test]
    fn every_tables_parquet_schema_is_the_converters() {
        let mut schemas: Vec<Schema> = Vec::new();
        for typed_depth in [1, 2] {
            let options = TreeOptions { typed_depth };
            for resource_type in definitions().resource_types() {
                schemas.push(resource_schema(resource_type, options).unwrap());
            }
        }
        assert_eq!(schemas.len(), 2 * 146);
        for schema in &schemas {
            assert!(schema.fields().iter().all(|field| parquet_type(field).is_some()));
            assert_eq!(parquet_schema(schema, true).unwrap(), converted(schema));
        }
    }

    /// A resource table's schema repeats the same elements under many parents: each is made
    /// once, and the schema is still the converter's, leaf for leaf.
    #[test]
    fn alike_nodes_are_made_once() {
        fn walk(node: &TypePtr, leaves: &mut usize, distinct: &mut std::collections::HashSet<usize>) {
            if node.is_primitive() {
                *leaves += 1;
                distinct.insert(Arc::as_ptr(node) as *const () as usize);
                return;
            }
            for child in node.get_fields() {
                walk(child, leaves, distinct);
            }
        }
        let schema = resource_schema("Observation", TreeOptions { typed_depth: 2 }).unwrap();
        let root = parquet_schema(&schema, true).unwrap();
        let (mut leaves, mut distinct) = (0, std::collections::HashSet::new());
        walk(&root, &mut leaves, &mut distinct);
        assert!(leaves > 1000, "{leaves} leaves");
        assert!(
            distinct.len() * 10 < leaves,
            "{} distinct of {leaves} leaves",
            distinct.len()
        );
        assert_eq!(
            parquet::schema::types::SchemaDescriptor::new(root).columns(),
            parquet::schema::types::SchemaDescriptor::new(converted(&schema)).columns()
        );
    }

    /// Each type handled, nullable or not, a list whose items are not named `element`, a field
    /// with the tool's own mark, and what is left to the crate: field ids, extension types,
    /// other types.
    #[test]
    fn each_type_is_made_as_the_converter_makes_it_and_the_rest_left_to_it() {
        let item = Field::new("item", DataType::Utf8, true);
        let handled = Schema::new(vec![
            Field::new("flag", DataType::Boolean, false),
            Field::new("id", DataType::Utf8, true).with_metadata(HashMap::from([(
                crate::sink::LOOKUP_INDEX_KEY.to_owned(),
                "true".to_owned(),
            )])),
            Field::new("count", DataType::Int32, true),
            Field::new("big", DataType::Int64, true),
            Field::new("text", DataType::Utf8, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("local", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new(
                "nanos",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("".into())),
                true,
            ),
            Field::new("exact", DataType::Decimal128(32, 6), true),
            Field::new("texts", DataType::List(Arc::new(item.clone())), true),
            Field::new(
                "nested",
                DataType::Struct(Fields::from(vec![
                    Field::new("inner", DataType::List(Arc::new(item.clone())), false),
                    Field::new("n", DataType::Int32, false),
                ])),
                true,
            ),
        ]);
        let decimals: Vec<Field> = (19..=38)
            .map(|precision| Field::new(format!("d{precision}"), DataType::Decimal128(precision, 2), true))
            .collect();
        let decimals = Schema::new(decimals);
        assert_eq!(parquet_schema(&decimals, true).unwrap(), converted(&decimals));
        for field in handled.fields().iter().chain(decimals.fields()) {
            assert!(parquet_type(field).is_some(), "{field}");
        }
        assert_eq!(parquet_schema(&handled, true).unwrap(), converted(&handled));

        let with_id = Field::new("id", DataType::Int32, true)
            .with_metadata(HashMap::from([("PARQUET:field_id".to_owned(), "7".to_owned())]));
        let extended = Field::new("json", DataType::Utf8, true).with_metadata(HashMap::from([(
            "ARROW:extension:name".to_owned(),
            "arrow.json".to_owned(),
        )]));
        let left = [
            with_id,
            extended,
            Field::new("day", DataType::Date32, true),
            Field::new("small", DataType::Decimal128(9, 2), true),
            Field::new("seconds", DataType::Timestamp(TimeUnit::Second, None), true),
            Field::new("bytes", DataType::Binary, true),
            Field::new(
                "in_list",
                DataType::List(Arc::new(Field::new("d", DataType::Date32, true))),
                true,
            ),
        ];
        let plain = ArrowSchemaConverter::new()
            .convert(&handled)
            .unwrap()
            .root_schema_ptr();
        assert_eq!(
            parquet_schema(&handled, false).unwrap(),
            plain,
            "not coerced: the crate's"
        );
        for field in left {
            assert!(parquet_type(&field).is_none(), "{field}");
            let schema = Schema::new(vec![field.clone(), Field::new("x", DataType::Utf8, true)]);
            assert_eq!(
                parquet_schema(&schema, true).unwrap(),
                converted(&schema),
                "{field}"
            );
        }
    }
}
