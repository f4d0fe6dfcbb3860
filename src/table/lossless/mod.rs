//! The Arrow side of the lossless resource tables (docs/LOSSLESS.md): the schema of
//! `resource_<type>` from the FHIR definition tree of [`crate::fhir::definitions`]. The tree says
//! which JSON members exist; this module says how each is held (types, lists, the annotation
//! companions of decimals and dates, the `__unmapped` column), so the row builder and `export`
//! share one layout.

#[cfg(test)]
mod bundle_once;
mod columns;
mod export;
mod numeric;
mod place;
#[cfg(test)]
mod round_trip;
mod rows;

pub use export::{BatchRows, Exporter};
pub use place::{Place, BUNDLE, ENTRY_ROWS, KEY};
pub use rows::ResourceTable;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};

use crate::fhir::definitions::{definitions, Member, ObjectShape, Shape, TreeOptions};
use crate::fhir::elements::{value_class, ValueClass};
use crate::table::UTC;

/// The column every resource table starts with, as the Parquet on FHIR draft requires.
pub const RESOURCE_TYPE: &str = "resourceType";

/// The last column: members the definitions do not have, or of the wrong JSON kind, as
/// (JSON Pointer, JSON text) pairs in document order, so nothing is dropped silently.
pub const UNMAPPED: &str = "__unmapped";

/// The prefix of every resource table's name: `resource_observation`.
pub const TABLE_PREFIX: &str = "resource_";

/// Schema metadata key holding the typed depth the table was written with; `export` builds
/// the same shape from it.
pub const DEPTH_METADATA: &str = "fhir2table.lossless.typed_depth";

/// Schema metadata key holding the table's FHIR resource type.
pub const TYPE_METADATA: &str = "fhir2table.lossless.resource_type";

/// Precision and scale of the `__<key>_numeric` companion of a decimal (the draft's choice).
pub const NUMERIC_PRECISION: u8 = 32;

/// See [`NUMERIC_PRECISION`].
pub const NUMERIC_SCALE: i8 = 6;

/// The Arrow schema of the lossless table of `resource_type`, or `None` when R4 has no such
/// resource type. A function of the definitions and `options` only, so every run and every
/// append of a type writes the same schema.
pub fn resource_schema(resource_type: &str, options: TreeOptions) -> Option<Schema> {
    let shape = definitions().resource_shape(resource_type, options)?;
    Some(shape_schema(resource_type, options, &shape))
}

/// [`resource_schema`] from the type's shape.
pub(super) fn shape_schema(resource_type: &str, options: TreeOptions, shape: &ObjectShape) -> Schema {
    let mut fields = vec![Field::new(RESOURCE_TYPE, DataType::Utf8, false)];
    fields.extend(object_fields(shape));
    fields.push(unmapped_field());
    fields.extend(place::place_fields(resource_type));
    let metadata = HashMap::from([
        (DEPTH_METADATA.to_owned(), options.typed_depth.to_string()),
        (TYPE_METADATA.to_owned(), resource_type.to_owned()),
    ]);
    Schema::new_with_metadata(fields, metadata)
}

/// The table of a resource type: `resource_` and the type in snake case
/// (`MedicationRequest` -> `resource_medication_request`).
pub fn table_name(resource_type: &str) -> String {
    let mut name = String::from(TABLE_PREFIX);
    for (i, c) in resource_type.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

/// The tree options a resource table was written with, from its schema's metadata (depth 2
/// when absent); `None` when the schema is not a resource table's.
pub fn table_options(schema: &Schema) -> Option<(String, TreeOptions)> {
    let resource_type = schema.metadata().get(TYPE_METADATA)?.clone();
    // The type names export's files (`<Type>.ndjson`): only an R4 resource type, never a path.
    if !definitions().resource_types().contains(&resource_type.as_str()) {
        return None;
    }
    let typed_depth = schema
        .metadata()
        .get(DEPTH_METADATA)
        .and_then(|depth| depth.parse().ok())
        .unwrap_or(TreeOptions::default().typed_depth);
    Some((resource_type, TreeOptions { typed_depth }))
}

/// Writes one JSON Pointer reference token (RFC 6901): `~` as `~0`, `/` as `~1`. The row
/// builder writes `__unmapped` paths with it and `export` finds their places with it.
fn push_pointer_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// The fields of an object's members, each followed by its annotation companions.
fn object_fields(object: &ObjectShape) -> Vec<Field> {
    let mut fields = Vec::with_capacity(object.members.len());
    for member in &object.members {
        fields.push(Field::new(&member.key, member_type(member), true));
        if let Shape::Primitive(type_code) = member.shape {
            for (suffix, item_type) in annotations(type_code) {
                let name = format!("__{}_{suffix}", member.key);
                fields.push(Field::new(name, repeated(item_type, member.repeats), true));
            }
        }
    }
    fields
}

/// The Arrow type of a member's column.
fn member_type(member: &Member) -> DataType {
    match &member.shape {
        // The whole value, an array included, is one JSON text.
        Shape::Json => DataType::Utf8,
        Shape::Primitive(type_code) => repeated(primitive_type(type_code), member.repeats),
        Shape::Object(object) => repeated(
            DataType::Struct(Fields::from(object_fields(object))),
            member.repeats,
        ),
    }
}

/// `List<item>` (items named `element`, the Parquet `list.element` layout) for a repeating
/// member, the item type itself otherwise.
fn repeated(item: DataType, repeats: bool) -> DataType {
    if repeats {
        DataType::List(Arc::new(Field::new("element", item, true)))
    } else {
        item
    }
}

/// How a primitive's value is held: Boolean, Int32, or its exact lexical form (decimals
/// included, so `1.50` and `1e2` survive).
fn primitive_type(type_code: &str) -> DataType {
    match value_class(type_code) {
        ValueClass::Boolean => DataType::Boolean,
        ValueClass::Integer32 => DataType::Int32,
        ValueClass::Integer64 => DataType::Int64,
        ValueClass::Decimal | ValueClass::Text => DataType::Utf8,
    }
}

/// The derived companions of a primitive type (suffix, Arrow type): a decimal's numeric value,
/// the first and last instant a date or time can mean.
fn annotations(type_code: &str) -> Vec<(&'static str, DataType)> {
    let instant = DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()));
    match type_code {
        "decimal" => vec![("numeric", DataType::Decimal128(NUMERIC_PRECISION, NUMERIC_SCALE))],
        "date" | "dateTime" | "instant" => vec![("start", instant.clone()), ("end", instant)],
        _ => Vec::new(),
    }
}

/// `__unmapped`: `List<Struct{path, json}>`.
fn unmapped_field() -> Field {
    let entry = Fields::from(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("json", DataType::Utf8, false),
    ]);
    Field::new(UNMAPPED, repeated(DataType::Struct(entry), true), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(resource_type: &str) -> Schema {
        resource_schema(resource_type, TreeOptions::default()).unwrap()
    }

    fn struct_of(fields: &[(&str, DataType)]) -> DataType {
        DataType::Struct(Fields::from(
            fields
                .iter()
                .map(|(name, data_type)| Field::new(*name, data_type.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    fn list_of(item: DataType) -> DataType {
        repeated(item, true)
    }

    fn instant() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
    }

    fn field_type<'s>(schema: &'s Schema, name: &str) -> &'s DataType {
        schema.field_with_name(name).unwrap().data_type()
    }

    /// The sibling of a primitive: its id and its extensions as JSON text.
    fn sibling() -> DataType {
        struct_of(&[("id", DataType::Utf8), ("extension", DataType::Utf8)])
    }

    #[test]
    fn patient_columns_are_exact() {
        let schema = schema("Patient");
        let first = schema.field(0);
        assert_eq!(
            (first.name().as_str(), first.data_type(), first.is_nullable()),
            ("resourceType", &DataType::Utf8, false)
        );
        assert!(schema.fields().iter().skip(1).all(|field| field.is_nullable()));
        let names: Vec<&str> = schema
            .fields()
            .iter()
            .map(|field| field.name().as_str())
            .collect();
        assert_eq!(names[names.len() - 2..], [UNMAPPED, BUNDLE]);
        assert_eq!(
            field_type(&schema, BUNDLE),
            &DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("entry", DataType::Int32, false),
            ]))
        );
        // Only the Bundle table has the envelope's columns.
        let bundle = resource_schema("Bundle", TreeOptions::default()).unwrap();
        let tail: Vec<&str> = bundle.fields()[bundle.fields().len() - 4..]
            .iter()
            .map(|field| field.name().as_str())
            .collect();
        assert_eq!(tail, [UNMAPPED, BUNDLE, KEY, ENTRY_ROWS]);
        assert_eq!(field_type(&bundle, ENTRY_ROWS), &list_of(DataType::Int32));
        assert_eq!(names[..4], ["resourceType", "id", "meta", "implicitRules"]);
        let birth = names.iter().position(|name| *name == "birthDate").unwrap();
        assert_eq!(
            names[birth..birth + 4],
            ["birthDate", "__birthDate_start", "__birthDate_end", "_birthDate"]
        );
        assert_eq!(field_type(&schema, "birthDate"), &DataType::Utf8);
        assert_eq!(field_type(&schema, "__birthDate_start"), &instant());
        assert_eq!(field_type(&schema, "_birthDate"), &sibling());
        assert_eq!(field_type(&schema, "active"), &DataType::Boolean);
        assert_eq!(field_type(&schema, "multipleBirthInteger"), &DataType::Int32);
        assert_eq!(field_type(&schema, "contained"), &DataType::Utf8);
        let period = struct_of(&[
            ("id", DataType::Utf8),
            ("extension", DataType::Utf8),
            ("start", DataType::Utf8),
            ("__start_start", instant()),
            ("__start_end", instant()),
            ("_start", sibling()),
            ("end", DataType::Utf8),
            ("__end_start", instant()),
            ("__end_end", instant()),
            ("_end", sibling()),
        ]);
        let name = struct_of(&[
            ("id", DataType::Utf8),
            ("extension", DataType::Utf8),
            ("use", DataType::Utf8),
            ("_use", sibling()),
            ("text", DataType::Utf8),
            ("_text", sibling()),
            ("family", DataType::Utf8),
            ("_family", sibling()),
            ("given", list_of(DataType::Utf8)),
            ("_given", list_of(sibling())),
            ("prefix", list_of(DataType::Utf8)),
            ("_prefix", list_of(sibling())),
            ("suffix", list_of(DataType::Utf8)),
            ("_suffix", list_of(sibling())),
            ("period", period),
        ]);
        assert_eq!(field_type(&schema, "name"), &list_of(name));
        let pair = DataType::Struct(Fields::from(vec![
            Field::new("path", DataType::Utf8, false),
            Field::new("json", DataType::Utf8, false),
        ]));
        assert_eq!(field_type(&schema, UNMAPPED), &list_of(pair));
    }

    #[test]
    fn observation_value_choices_are_typed_with_companions() {
        let schema = schema("Observation");
        assert_eq!(field_type(&schema, "valueString"), &DataType::Utf8);
        assert_eq!(field_type(&schema, "valueInteger"), &DataType::Int32);
        assert_eq!(field_type(&schema, "valueBoolean"), &DataType::Boolean);
        assert_eq!(field_type(&schema, "__valueDateTime_end"), &instant());
        assert!(
            schema.field_with_name("__valueTime_start").is_err(),
            "a time of day is no instant"
        );
        let DataType::Struct(quantity) = field_type(&schema, "valueQuantity") else {
            panic!("valueQuantity is a struct");
        };
        let quantity: Vec<(&str, &DataType)> = quantity
            .iter()
            .map(|field| (field.name().as_str(), field.data_type()))
            .collect();
        assert_eq!(
            quantity[2..5],
            [
                ("value", &DataType::Utf8),
                ("__value_numeric", &DataType::Decimal128(32, 6)),
                ("_value", &sibling()),
            ]
        );
        assert_eq!(quantity[5].0, "comparator");
    }

    #[test]
    fn extension_columns_are_typed_at_the_resource_only() {
        let schema = schema("Patient");
        let DataType::List(item) = field_type(&schema, "extension") else {
            panic!("extension is a list");
        };
        let DataType::Struct(extension) = item.data_type() else {
            panic!("an extension is a struct");
        };
        let url = extension.find("url").unwrap().1;
        assert_eq!(url.data_type(), &DataType::Utf8);
        assert!(extension.find("_url").is_none());
        assert_eq!(
            extension.find("valueDecimal").unwrap().1.data_type(),
            &DataType::Utf8
        );
        assert_eq!(
            extension.find("__valueDecimal_numeric").unwrap().1.data_type(),
            &DataType::Decimal128(32, 6)
        );
        assert_eq!(
            extension.find("valueDosage").unwrap().1.data_type(),
            &DataType::Utf8
        );
        assert!(matches!(
            extension.find("valueCodeableConcept").unwrap().1.data_type(),
            DataType::Struct(_)
        ));
        // Its own extensions are typed once more (race/ethnicity's `ombCategory`), then text.
        let DataType::List(nested) = extension.find("extension").unwrap().1.data_type() else {
            panic!("Extension.extension is a list");
        };
        let DataType::Struct(nested) = nested.data_type() else {
            panic!("a nested extension is a struct");
        };
        assert_eq!(nested.find("extension").unwrap().1.data_type(), &DataType::Utf8);
    }

    #[test]
    fn questionnaire_items_nest_to_the_depth_then_hold_json() {
        let schema = resource_schema("Questionnaire", TreeOptions { typed_depth: 3 }).unwrap();
        let mut data_type = field_type(&schema, "item").clone();
        for level in 1..=3 {
            let DataType::List(item) = data_type else {
                panic!("level {level} is a list");
            };
            let DataType::Struct(members) = item.data_type() else {
                panic!("level {level} items are structs");
            };
            assert!(members.find("linkId").is_some());
            data_type = members.find("item").unwrap().1.data_type().clone();
        }
        assert_eq!(data_type, DataType::Utf8, "the fourth level is JSON text");
    }

    #[test]
    fn table_options_name_only_r4_resource_types() {
        let patient = schema("Patient");
        assert_eq!(
            table_options(&patient),
            Some(("Patient".to_owned(), TreeOptions::default()))
        );
        for forged in ["../../etc/x", "Quantity", "/tmp/x", ""] {
            let metadata = HashMap::from([(TYPE_METADATA.to_owned(), forged.to_owned())]);
            let schema = patient.clone().with_metadata(metadata);
            assert_eq!(table_options(&schema), None, "{forged:?}");
        }
        let mut pointer = String::new();
        push_pointer_token(&mut pointer, "a/b~c");
        assert_eq!(pointer, "/a~1b~0c");
    }

    #[test]
    fn every_resource_type_has_a_deterministic_schema() {
        let options = TreeOptions::default();
        for resource_type in definitions().resource_types() {
            let first = resource_schema(resource_type, options).unwrap();
            assert_eq!(first.field(0).name(), RESOURCE_TYPE);
            assert!(first.field_with_name("id").is_ok(), "{resource_type}");
            assert_eq!(
                resource_schema(resource_type, options).unwrap(),
                first,
                "{resource_type}"
            );
        }
        assert!(resource_schema("Quantity", options).is_none());
        assert_ne!(
            schema("Questionnaire"),
            resource_schema("Questionnaire", TreeOptions { typed_depth: 1 }).unwrap()
        );
    }
}
