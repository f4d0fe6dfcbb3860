//! The FHIR R4 definitions as a tree: which JSON members an object of each resource type, data
//! type and backbone element may hold, in definition order. The lossless resource tables
//! (docs/LOSSLESS.md) derive their schema from this tree alone, never from the data, so every
//! run and every append of a type has the same columns; the row builder and `export` walk the
//! same tree, so the three cannot disagree.
//!
//! The table behind it is the compacted element table of [`super::elements`]; it leaves out the
//! members every element has (`id`, `extension`, `modifierExtension`), which are added here by
//! the rules of the FHIR base types (checked against the full R4 table when this was written:
//! every element of type `Element` has `id` and `extension`, every `BackboneElement` also
//! `modifierExtension`, every `DomainResource` also `extension` and `modifierExtension` after
//! `contained`).

use std::collections::HashMap;
use std::sync::OnceLock;

use super::elements::R4_ELEMENTS;

/// The data types derived from `BackboneElement` rather than `Element`: they carry
/// `modifierExtension` too. The only facts of the full R4 table the compacted one does not hold.
const BACKBONE_DATATYPES: [&str; 8] = [
    "Dosage",
    "ElementDefinition",
    "MarketingStatus",
    "Population",
    "ProdCharacteristic",
    "ProductShelfLife",
    "SubstanceAmount",
    "Timing",
];

/// The complex types an open choice (`Extension.value[x]`, `Task.input.value[x]`,
/// `ElementDefinition.fixed[x]`, ...: the 50 types FHIR calls `*`) is typed as, with every
/// primitive type: the ones extensions carry in practice (US Core, Synthea, IPS). The other 34
/// (`valueTiming`, `valueDosage`, ...) are JSON-text members: typed, they would make the
/// extension columns of every resource table more than 2 000, and StructureDefinition 24 812.
const TYPED_OPEN_CHOICE_TYPES: [&str; 14] = [
    "Address",
    "Age",
    "CodeableConcept",
    "Coding",
    "Count",
    "Distance",
    "Duration",
    "Identifier",
    "Money",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
];

/// The abstract types: they have definitions but no instances, so no table.
const ABSTRACT_TYPES: [&str; 4] = ["Resource", "DomainResource", "Element", "BackboneElement"];

/// How the definitions are cut into a finite tree. FHIR types are recursive (`Extension` holds
/// `Extension`s, `Identifier.assigner` is a `Reference` whose `identifier` is an `Identifier`,
/// `Questionnaire.item.item` is an item), so a schema must stop somewhere; a member beyond the
/// cut is a [`Shape::Json`] member (docs/LOSSLESS.md, "Recursion").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeOptions {
    /// How many times one complex type (a data type, or a backbone element by its defining path)
    /// may appear on the path from the resource down to a member; a member that would make it
    /// one more is cut.
    pub typed_depth: usize,
}

impl Default for TreeOptions {
    /// Depth 2: an extension's own extensions (US Core race and ethnicity) and an item's
    /// sub-items stay typed; the third level is JSON text.
    fn default() -> Self {
        TreeOptions { typed_depth: 2 }
    }
}

/// The layout of one JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Kept as its exact JSON text (the whole array, for a repeating member): whole resources
    /// (`contained`, `Bundle.entry.resource`), which may be of any type; members beyond the
    /// typed depth; extensions below the resource's own (docs/LOSSLESS.md, "Extensions").
    Json,
    /// A FHIR primitive (`string`, `decimal`, `dateTime`, ...): the JSON string, number or
    /// boolean, by its FHIR type code.
    Primitive(&'static str),
    /// A JSON object: a complex data type, a backbone element, or the `_field` object (id and
    /// extensions) of a primitive.
    Object(ObjectShape),
}

/// The members a JSON object may hold, in definition order. A key not listed is not an R4
/// element there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectShape {
    /// The members, in definition order.
    pub members: Vec<Member>,
}

/// One member of a JSON object: its key as written in FHIR JSON, whether it holds an array, and
/// the shape of its value (of each item, for an array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The JSON key: `birthDate`, `_birthDate`, `valueQuantity`.
    pub key: String,
    /// The element repeats (`max = *`): the value is a JSON array.
    pub repeats: bool,
    /// The shape of the value, or of each item of the array.
    pub shape: Shape,
}

/// One row of the element table.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// The element's own name (last path segment), `value[x]` for a choice.
    name: &'static str,
    /// Its full path, which is the key of its own children.
    path: &'static str,
    /// Type codes, comma-separated; `@Path` reuses that path's definition.
    types: &'static str,
    repeats: bool,
}

/// The R4 definitions, indexed by parent path.
#[derive(Debug)]
pub struct Definitions {
    children: HashMap<&'static str, Vec<Row>>,
    resource_types: Vec<&'static str>,
    /// The type list of an open choice, as the table writes it (that of `Extension.value[x]`).
    open_choice_types: &'static str,
}

/// The R4 definitions, parsed once from the embedded table.
pub fn definitions() -> &'static Definitions {
    static DEFINITIONS: OnceLock<Definitions> = OnceLock::new();
    DEFINITIONS.get_or_init(|| Definitions::parse(R4_ELEMENTS))
}

impl Definitions {
    /// Indexes a table of `path<TAB>types<TAB>max` lines; `#` lines are comments.
    fn parse(table: &'static str) -> Definitions {
        let mut children: HashMap<&'static str, Vec<Row>> = HashMap::new();
        for line in table.lines().filter(|line| !line.starts_with('#')) {
            let mut fields = line.split('\t');
            let (Some(path), Some(types), Some(max)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let Some((parent, name)) = path.rsplit_once('.') else {
                continue;
            };
            children.entry(parent).or_default().push(Row {
                name,
                path,
                types,
                repeats: max == "*",
            });
        }
        // A resource type is a root with `meta`: no data type has one.
        let mut resource_types: Vec<&'static str> = children
            .iter()
            .filter(|(parent, rows)| {
                !parent.contains('.')
                    && !ABSTRACT_TYPES.contains(parent)
                    && rows.iter().any(|row| row.name == "meta" && row.types == "Meta")
            })
            .map(|(parent, _)| *parent)
            .collect();
        resource_types.sort_unstable();
        let open_choice_types = children
            .get("Extension")
            .and_then(|rows| rows.iter().find(|row| row.name == "value[x]"))
            .map_or("", |row| row.types);
        Definitions {
            children,
            resource_types,
            open_choice_types,
        }
    }

    /// Every concrete R4 resource type, sorted by name: the types that get a resource table.
    pub fn resource_types(&self) -> &[&'static str] {
        &self.resource_types
    }

    /// The members of a resource of `resource_type` (without `resourceType`, which every
    /// resource JSON has and the table keeps as a column of its own), or `None` when R4 has no
    /// such resource type.
    pub fn resource_shape(&self, resource_type: &str, options: TreeOptions) -> Option<ObjectShape> {
        let (&name, rows) = self.children.get_key_value(resource_type)?;
        if !self.resource_types.contains(&name) {
            return None;
        }
        let mut builder = Builder {
            definitions: self,
            options,
            ancestors: vec![name],
        };
        let mut object = ObjectShape::default();
        builder.primitive(&mut object, "id", "id", false, false);
        for row in rows {
            builder.row(&mut object, row);
            // A DomainResource's extensions follow `contained` (Bundle, Binary and Parameters
            // have neither).
            if row.name == "contained" {
                builder.extensions(&mut object, true);
            }
        }
        Some(object)
    }

    /// The members of an object of the data type `type_name` (`Quantity`, `Extension`), as it
    /// appears one level below a resource; `None` when it is not an R4 complex data type.
    pub fn datatype_shape(&self, type_name: &str, options: TreeOptions) -> Option<ObjectShape> {
        let is_datatype = type_name.starts_with(|c: char| c.is_ascii_uppercase())
            && self.children.contains_key(type_name)
            && !self.resource_types.contains(&type_name)
            && !ABSTRACT_TYPES.contains(&type_name);
        if !is_datatype {
            return None;
        }
        let mut builder = Builder {
            definitions: self,
            options,
            ancestors: Vec::new(),
        };
        builder.datatype(type_name)
    }
}

/// Builds shapes while tracking the complex types on the path, for the depth cut.
struct Builder<'d> {
    definitions: &'d Definitions,
    options: TreeOptions,
    /// Type keys (data type names, backbone paths) from the resource down to the object being
    /// built.
    ancestors: Vec<&'static str>,
}

impl Builder<'_> {
    /// Whether one more object of `type_key` would go past the typed depth.
    fn too_deep(&self, type_key: &str) -> bool {
        self.ancestors.iter().filter(|key| **key == type_key).count() >= self.options.typed_depth
    }

    /// Adds the member(s) of one element row: one per type for a choice (`value[x]` becomes
    /// `valueQuantity`, `valueString`, ...), each primitive followed by its `_` sibling.
    fn row(&mut self, object: &mut ObjectShape, row: &Row) {
        let choice = row.name.strip_suffix("[x]");
        for type_code in row.types.split(',') {
            let key = match choice {
                Some(base) => format!("{base}{}", upper_first(type_code)),
                None => row.name.to_owned(),
            };
            if is_primitive(type_code) {
                // `xhtml` (Narrative.div) admits no extensions (`xhtml.extension` max 0).
                let sibling = type_code != "xhtml";
                object.members.push(Member {
                    key: key.clone(),
                    repeats: row.repeats,
                    shape: Shape::Primitive(type_code),
                });
                if sibling {
                    self.sibling(object, &key, row.repeats);
                }
                continue;
            }
            let shape = match type_code {
                "Resource" => Some(Shape::Json),
                "Element" | "BackboneElement" => {
                    self.backbone(row.path, row.path, type_code == "BackboneElement")
                }
                reused if reused.starts_with('@') => {
                    let path = &reused[1..];
                    let (&path, _) = self
                        .definitions
                        .children
                        .get_key_value(path)
                        .expect("an @path of the element table names a defined element");
                    self.backbone(path, path, true)
                }
                untyped
                    if row.types == self.definitions.open_choice_types
                        && !TYPED_OPEN_CHOICE_TYPES.contains(&untyped) =>
                {
                    None
                }
                datatype => self.datatype(datatype).map(Shape::Object),
            };
            object.members.push(Member {
                key,
                repeats: row.repeats,
                shape: shape.unwrap_or(Shape::Json),
            });
        }
    }

    /// Adds a primitive member with the given FHIR type and, when `sibling`, its `_key` object.
    fn primitive(
        &mut self,
        object: &mut ObjectShape,
        key: &str,
        type_code: &'static str,
        repeats: bool,
        sibling: bool,
    ) {
        object.members.push(Member {
            key: key.to_owned(),
            repeats,
            shape: Shape::Primitive(type_code),
        });
        if sibling {
            self.sibling(object, key, repeats);
        }
    }

    /// The `_key` member of a primitive: its element id and extensions (an array parallel to the
    /// values when the primitive repeats). Its extensions are JSON text, as on every element.
    fn sibling(&mut self, object: &mut ObjectShape, key: &str, repeats: bool) {
        let mut element = ObjectShape::default();
        self.primitive(&mut element, "id", "string", false, false);
        element.members.push(Member {
            key: "extension".to_owned(),
            repeats: true,
            shape: Shape::Json,
        });
        object.members.push(Member {
            key: format!("_{key}"),
            repeats,
            shape: Shape::Object(element),
        });
    }

    /// Adds `extension` (and `modifierExtension`) arrays: typed `Extension`s on the resource
    /// itself and inside those (to the typed depth), JSON text everywhere else. Typed everywhere,
    /// each of the hundreds of elements of a resource would carry the 50 value types of an
    /// Extension: Patient alone would have 277 082 columns at depth 1.
    fn extensions(&mut self, object: &mut ObjectShape, modifier: bool) {
        let keys: &[&str] = if modifier {
            &["extension", "modifierExtension"]
        } else {
            &["extension"]
        };
        let resource_level = self.ancestors.len() == 1
            || (self.ancestors.len() > 1 && self.ancestors[1..].iter().all(|key| *key == "Extension"));
        for key in keys {
            let typed = if resource_level {
                self.datatype("Extension").map(Shape::Object)
            } else {
                None
            };
            object.members.push(Member {
                key: (*key).to_owned(),
                repeats: true,
                shape: typed.unwrap_or(Shape::Json),
            });
        }
    }

    /// The object of a backbone element defined at `path` (`Questionnaire.item`), or `None` when
    /// it is cut.
    fn backbone(&mut self, path: &'static str, type_key: &'static str, modifier: bool) -> Option<Shape> {
        if self.too_deep(type_key) {
            return None;
        }
        self.ancestors.push(type_key);
        let mut object = ObjectShape::default();
        self.primitive(&mut object, "id", "string", false, false);
        self.extensions(&mut object, modifier);
        let rows = self
            .definitions
            .children
            .get(path)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for row in rows {
            self.row(&mut object, row);
        }
        self.ancestors.pop();
        Some(Shape::Object(object))
    }

    /// The object of a complex data type, or `None` when it is cut.
    fn datatype(&mut self, type_name: &str) -> Option<ObjectShape> {
        let (&type_key, rows) = self.definitions.children.get_key_value(type_name)?;
        if self.too_deep(type_key) {
            return None;
        }
        self.ancestors.push(type_key);
        let mut object = ObjectShape::default();
        self.primitive(&mut object, "id", "string", false, false);
        self.extensions(&mut object, BACKBONE_DATATYPES.contains(&type_key));
        for row in rows {
            if type_key == "Extension" && row.name == "url" {
                // `Extension.url` is a plain string in JSON: no `_url`.
                self.primitive(&mut object, "url", "uri", false, false);
            } else {
                self.row(&mut object, row);
            }
        }
        self.ancestors.pop();
        Some(object)
    }
}

/// Whether a type code names a FHIR primitive (they are the lower-case ones).
fn is_primitive(type_code: &str) -> bool {
    type_code.starts_with(|c: char| c.is_ascii_lowercase())
}

/// `dateTime` -> `DateTime`: the suffix of a choice member's key.
fn upper_first(type_code: &str) -> String {
    let mut chars = type_code.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(object: &ObjectShape) -> Vec<&str> {
        object.members.iter().map(|member| member.key.as_str()).collect()
    }

    fn member<'o>(object: &'o ObjectShape, key: &str) -> &'o Member {
        object
            .members
            .iter()
            .find(|member| member.key == key)
            .unwrap_or_else(|| panic!("no member {key}"))
    }

    fn object<'o>(object: &'o ObjectShape, key: &str) -> &'o ObjectShape {
        match &member(object, key).shape {
            Shape::Object(inner) => inner,
            other => panic!("{key} is {other:?}"),
        }
    }

    #[test]
    fn resource_types_are_the_concrete_r4_ones() {
        let types = definitions().resource_types();
        assert_eq!(
            types.len(),
            146,
            "the 147 roots with `meta` in the table, less DomainResource"
        );
        for name in [
            "Patient",
            "Bundle",
            "Binary",
            "Parameters",
            "Observation",
            "VisionPrescription",
        ] {
            assert!(types.contains(&name), "{name}");
        }
        for name in [
            "Quantity",
            "Extension",
            "DomainResource",
            "Resource",
            "BackboneElement",
        ] {
            assert!(!types.contains(&name), "{name}");
        }
        assert!(types.windows(2).all(|pair| pair[0] < pair[1]));
        for backbone_type in BACKBONE_DATATYPES.iter().chain(&TYPED_OPEN_CHOICE_TYPES) {
            assert!(definitions()
                .datatype_shape(backbone_type, TreeOptions::default())
                .is_some());
        }
    }

    #[test]
    fn patient_members_follow_the_definition_order() {
        let patient = definitions()
            .resource_shape("Patient", TreeOptions::default())
            .unwrap();
        assert_eq!(
            keys(&patient),
            [
                "id",
                "meta",
                "implicitRules",
                "_implicitRules",
                "language",
                "_language",
                "text",
                "contained",
                "extension",
                "modifierExtension",
                "identifier",
                "active",
                "_active",
                "name",
                "telecom",
                "gender",
                "_gender",
                "birthDate",
                "_birthDate",
                "deceasedBoolean",
                "_deceasedBoolean",
                "deceasedDateTime",
                "_deceasedDateTime",
                "address",
                "maritalStatus",
                "multipleBirthBoolean",
                "_multipleBirthBoolean",
                "multipleBirthInteger",
                "_multipleBirthInteger",
                "photo",
                "contact",
                "communication",
                "generalPractitioner",
                "managingOrganization",
                "link"
            ]
        );
        assert_eq!(member(&patient, "birthDate").shape, Shape::Primitive("date"));
        assert_eq!(member(&patient, "contained").shape, Shape::Json);
        let birth_date = object(&patient, "_birthDate");
        assert_eq!(keys(birth_date), ["id", "extension"]);
        assert_eq!(member(birth_date, "extension").shape, Shape::Json);
        let name = object(&patient, "name");
        assert!(member(&patient, "name").repeats);
        assert_eq!(
            keys(name),
            [
                "id",
                "extension",
                "use",
                "_use",
                "text",
                "_text",
                "family",
                "_family",
                "given",
                "_given",
                "prefix",
                "_prefix",
                "suffix",
                "_suffix",
                "period"
            ]
        );
        // Extensions below the resource's own are JSON text; a repeating primitive's sibling
        // repeats with it.
        assert_eq!(member(name, "extension").shape, Shape::Json);
        assert!(member(name, "_given").repeats);
        // A backbone element has modifierExtension, as JSON text too.
        assert_eq!(
            keys(object(&patient, "link"))[..3],
            ["id", "extension", "modifierExtension"]
        );
    }

    #[test]
    fn resource_extensions_are_typed_to_the_depth() {
        let patient = definitions()
            .resource_shape("Patient", TreeOptions::default())
            .unwrap();
        let extension = object(&patient, "extension");
        assert_eq!(
            keys(extension)[..5],
            [
                "id",
                "extension",
                "url",
                "valueBase64Binary",
                "_valueBase64Binary"
            ]
        );
        assert_eq!(member(extension, "url").shape, Shape::Primitive("uri"));
        assert!(extension.members.iter().all(|member| member.key != "_url"));
        assert!(matches!(member(extension, "valueCoding").shape, Shape::Object(_)));
        assert_eq!(member(extension, "valueTiming").shape, Shape::Json);
        // The extension's own extensions are typed (depth 2), theirs are text.
        let nested = object(extension, "extension");
        assert_eq!(member(nested, "extension").shape, Shape::Json);
        // Inside a typed value, extensions are text.
        assert_eq!(
            member(object(extension, "valueCoding"), "extension").shape,
            Shape::Json
        );
        // Every open choice follows the Extension's rule.
        let task = definitions()
            .resource_shape("Task", TreeOptions::default())
            .unwrap();
        let input = object(&task, "input");
        assert_eq!(member(input, "valueString").shape, Shape::Primitive("string"));
        assert!(matches!(member(input, "valueQuantity").shape, Shape::Object(_)));
        assert_eq!(member(input, "valueTiming").shape, Shape::Json);
        let shallow = definitions()
            .resource_shape("Patient", TreeOptions { typed_depth: 1 })
            .unwrap();
        assert_eq!(
            member(object(&shallow, "extension"), "extension").shape,
            Shape::Json
        );
    }

    #[test]
    fn choices_expand_to_one_member_per_type() {
        let observation = definitions()
            .resource_shape("Observation", TreeOptions::default())
            .unwrap();
        let values: Vec<&str> = keys(&observation)
            .into_iter()
            .filter(|key| key.starts_with("value") || key.starts_with("_value"))
            .collect();
        assert_eq!(
            values,
            [
                "valueQuantity",
                "valueCodeableConcept",
                "valueString",
                "_valueString",
                "valueBoolean",
                "_valueBoolean",
                "valueInteger",
                "_valueInteger",
                "valueRange",
                "valueRatio",
                "valueSampledData",
                "valueTime",
                "_valueTime",
                "valueDateTime",
                "_valueDateTime",
                "valuePeriod"
            ]
        );
        assert_eq!(
            member(object(&observation, "valueQuantity"), "value").shape,
            Shape::Primitive("decimal")
        );
    }

    #[test]
    fn recursive_elements_turn_to_json_past_the_depth() {
        for depth in 1..=3 {
            let questionnaire = definitions()
                .resource_shape("Questionnaire", TreeOptions { typed_depth: depth })
                .unwrap();
            let mut level = &questionnaire;
            for _ in 0..depth {
                let item = member(level, "item");
                assert!(item.repeats);
                level = object(level, "item");
            }
            assert_eq!(member(level, "item").shape, Shape::Json, "depth {depth}");
        }
        let bundle = definitions()
            .resource_shape("Bundle", TreeOptions::default())
            .unwrap();
        assert_eq!(
            keys(&bundle)[..4],
            ["id", "meta", "implicitRules", "_implicitRules"]
        );
        assert!(bundle.members.iter().all(|member| member.key != "extension"));
        let entry = object(&bundle, "entry");
        assert_eq!(member(entry, "resource").shape, Shape::Json);
        // `@Bundle.link`: the entry's links reuse the Bundle's link definition.
        assert_eq!(keys(object(entry, "link")), keys(object(&bundle, "link")));
    }

    /// Leaf fields of an object, and those outside any list (every row pays a slot for them).
    fn leaves(object: &ObjectShape) -> (usize, usize) {
        object.members.iter().fold((0, 0), |(all, per_row), member| {
            let (inner_all, inner_per_row) = match &member.shape {
                Shape::Object(inner) => leaves(inner),
                _ => (1, 1),
            };
            let inner_per_row = if member.repeats { 0 } else { inner_per_row };
            (all + inner_all, per_row + inner_per_row)
        })
    }

    #[test]
    fn schemas_stay_within_the_measured_sizes() {
        // The sizes docs/LOSSLESS.md quotes: typing every extension everywhere made Patient
        // 277 082 columns, every open choice StructureDefinition 24 812; this keeps a change
        // that widens the tree from going unnoticed. The widest is Contract (10 492).
        let options = TreeOptions::default();
        let size = |name| leaves(&definitions().resource_shape(name, options).unwrap());
        assert_eq!(size("Patient"), (3042, 78));
        assert_eq!(size("Observation"), (4411, 386));
        assert_eq!(size("ExplanationOfBenefit"), (7586, 709));
        let largest = definitions()
            .resource_types()
            .iter()
            .map(|name| size(name).0)
            .max()
            .unwrap();
        assert!(
            largest < 12_000,
            "the widest resource table has {largest} columns"
        );
    }

    #[test]
    fn unknown_types_have_no_shape() {
        let options = TreeOptions::default();
        assert_eq!(definitions().resource_shape("Quantity", options), None);
        assert_eq!(definitions().resource_shape("DomainResource", options), None);
        assert_eq!(definitions().resource_shape("Patient.name", options), None);
        assert_eq!(definitions().resource_shape("NoSuchType", options), None);
        assert_eq!(definitions().datatype_shape("Patient", options), None);
        assert_eq!(definitions().datatype_shape("string", options), None);
    }
}
