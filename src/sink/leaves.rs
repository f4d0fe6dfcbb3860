//! A wide table's leaf columns, as its files need them for as long as the table is written.
//!
//! The parquet crate describes a schema's leaves as one shared descriptor each, its path a list
//! of owned names: for a resource table of thousands of leaves, about 300 bytes a leaf in six
//! to eight allocations. Every table of a long run keeps its files' schema until the run ends:
//! on 4 GB of Synthea Bundles the 16 resource tables' descriptors took 17.7 MB of the heap,
//! and more than that of resident memory, in half a million small blocks. Here a leaf is its
//! (shared) primitive type, its levels and its path's place in one text for the whole table,
//! about 70 bytes; a descriptor is made from it only where the crate's writer asks for one (a
//! null chunk's template, `absent.rs`).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use parquet::basic::{Repetition, Type as PhysicalType};
use parquet::schema::types::{ColumnDescPtr, ColumnDescriptor, ColumnPath, Type, TypePtr};

/// Every leaf column of a wide table's schema, in schema order.
pub(super) struct Leaves {
    columns: Vec<LeafColumn>,
    /// Every leaf's path, its names one after the other.
    text: String,
    /// Where each name ends in `text`.
    name_ends: Vec<usize>,
}

/// How much [`Leaves`] holds for a schema: leaves, names on their paths, and their bytes.
#[derive(Default)]
struct Size {
    leaves: usize,
    names: usize,
    text: usize,
}

impl Size {
    /// Adds the leaves under `node`, whose path above it has `names` names of `text` bytes.
    fn add_tree(&mut self, node: &Type, names: usize, text: usize) {
        let (names, text) = (names + 1, text + node.name().len());
        match node {
            Type::PrimitiveType { .. } => {
                self.leaves += 1;
                self.names += names;
                self.text += text;
            }
            Type::GroupType { fields, .. } => {
                for field in fields {
                    self.add_tree(field, names, text);
                }
            }
        }
    }
}

/// One leaf column.
struct LeafColumn {
    /// The leaf's Parquet type, shared with the alike leaves of the schema (`parquet_schema.rs`).
    primitive: TypePtr,
    max_def_level: i16,
    max_rep_level: i16,
    /// Where the leaf's names end in `name_ends`: its path is the names from the previous
    /// leaf's end to this one.
    names_end: usize,
}

impl Leaves {
    /// The leaves of the schema under `root`, found as the crate's
    /// [`SchemaDescriptor`](parquet::schema::types::SchemaDescriptor) finds
    /// them (depth first; a field's levels count the optional and repeated nodes from the
    /// root's child down to it) without making its descriptors: for a resource table, thousands
    /// of them with a path of owned names each, made and dropped again cost 267 M instructions
    /// over the 16 tables of the Synthea set, a fifth of what `--resources all` spends before
    /// its first row.
    pub(super) fn of_root(root: &Type) -> Self {
        // Sized first: grown by doubling, the three vectors were copied over and over, half of
        // the walk's instructions.
        let mut size = Size::default();
        for field in root.get_fields() {
            size.add_tree(field, 0, 0);
        }
        let mut leaves = Leaves {
            columns: Vec::with_capacity(size.leaves),
            text: String::with_capacity(size.text),
            name_ends: Vec::with_capacity(size.names),
        };
        let mut names = Vec::new();
        for field in root.get_fields() {
            leaves.add_tree(field, 0, 0, &mut names);
        }
        leaves
    }

    /// The leaves `columns` describe, in their order (for tests that pick leaves of their own).
    #[cfg(test)]
    pub(super) fn of_columns(columns: &[ColumnDescPtr]) -> Self {
        let mut leaves = Leaves {
            columns: Vec::new(),
            text: String::new(),
            name_ends: Vec::new(),
        };
        for column in columns {
            leaves.push(
                column.self_type_ptr(),
                column.max_def_level(),
                column.max_rep_level(),
                column.path().parts().iter().map(String::as_str),
            );
        }
        leaves
    }

    /// `node`'s leaves, `names` the path above it, `def` and `rep` its parent's levels.
    fn add_tree<'t>(&mut self, node: &'t TypePtr, mut def: i16, mut rep: i16, names: &mut Vec<&'t str>) {
        let info = node.get_basic_info();
        if info.has_repetition() {
            match info.repetition() {
                Repetition::OPTIONAL => def += 1,
                Repetition::REPEATED => (def, rep) = (def + 1, rep + 1),
                Repetition::REQUIRED => {}
            }
        }
        names.push(node.name());
        match node.as_ref() {
            Type::PrimitiveType { .. } => self.push(node.clone(), def, rep, names.iter().copied()),
            Type::GroupType { fields, .. } => {
                for field in fields {
                    self.add_tree(field, def, rep, names);
                }
            }
        }
        names.pop();
    }

    fn push<'n>(&mut self, primitive: TypePtr, def: i16, rep: i16, path: impl Iterator<Item = &'n str>) {
        for name in path {
            self.text.push_str(name);
            self.name_ends.push(self.text.len());
        }
        self.columns.push(LeafColumn {
            primitive,
            max_def_level: def,
            max_rep_level: rep,
            names_end: self.name_ends.len(),
        });
    }

    /// How many leaves the schema has.
    pub(super) fn len(&self) -> usize {
        self.columns.len()
    }

    pub(super) fn physical_type(&self, leaf: usize) -> PhysicalType {
        self.columns[leaf].primitive.get_physical_type()
    }

    pub(super) fn max_def_level(&self, leaf: usize) -> i16 {
        self.columns[leaf].max_def_level
    }

    pub(super) fn max_rep_level(&self, leaf: usize) -> i16 {
        self.columns[leaf].max_rep_level
    }

    /// The leaf's Parquet type (its name is the path's last).
    pub(super) fn primitive_type(&self, leaf: usize) -> &Type {
        &self.columns[leaf].primitive
    }

    /// The leaf's path from the schema's root.
    pub(super) fn path(&self, leaf: usize) -> LeafPath<'_> {
        let start = leaf
            .checked_sub(1)
            .map_or(0, |before| self.columns[before].names_end);
        LeafPath {
            leaves: self,
            names: start..self.columns[leaf].names_end,
        }
    }

    /// The leaf's path as the crate's settings look a column up.
    pub(super) fn column_path(&self, leaf: usize) -> ColumnPath {
        ColumnPath::new(self.path(leaf).names().map(str::to_owned).collect())
    }

    /// The crate's descriptor of the leaf, made anew: for the crate's column writer and chunk
    /// metadata, which take nothing else. One thing differs from the schema's own: the level
    /// of its nearest repeated ancestor, which the crate's public constructor leaves at 0 and
    /// only its content-defined chunking reads, in the Arrow writer, which never gets these
    /// (the null chunks are written by `absent.rs` and `null_pages.rs`). So it is not equal
    /// (`==`) to the schema's own for a leaf under a list, and a chunk made with it must not go
    /// through the crate's row group writer (`append_column` compares descriptors): a wide
    /// file's null chunks are written by `wide_file.rs`, which does not.
    pub(super) fn descriptor(&self, leaf: usize) -> ColumnDescPtr {
        let column = &self.columns[leaf];
        Arc::new(ColumnDescriptor::new(
            column.primitive.clone(),
            column.max_def_level,
            column.max_rep_level,
            self.column_path(leaf),
        ))
    }
}

/// A leaf's path: its names from the schema's root, shown joined by dots and quoted, as the
/// crate shows a [`ColumnPath`] in its messages.
#[derive(Clone)]
pub(super) struct LeafPath<'a> {
    leaves: &'a Leaves,
    /// The names' places in `leaves.name_ends`.
    names: Range<usize>,
}

impl<'a> LeafPath<'a> {
    /// The names, from the root's child down to the leaf.
    pub(super) fn names(&self) -> impl ExactSizeIterator<Item = &'a str> + use<'a> {
        let leaves = self.leaves;
        self.names.clone().map(move |name| {
            let start = name.checked_sub(1).map_or(0, |before| leaves.name_ends[before]);
            &leaves.text[start..leaves.name_ends[name]]
        })
    }

    /// Whether `path` is this one.
    pub(super) fn is(&self, path: &ColumnPath) -> bool {
        let parts = path.parts();
        parts.len() == self.names.len() && self.names().zip(parts).all(|(name, part)| name == part)
    }
}

impl fmt::Display for LeafPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<&str> = self.names().collect();
        write!(f, "{:?}", joined.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::definitions::TreeOptions;
    use crate::table::lossless::resource_schema;
    use parquet::arrow::ArrowSchemaConverter;

    /// Every leaf of a resource table and of a small schema with lists, structs and a decimal
    /// reads back as the crate describes it: type, levels, path (names and as shown) and a
    /// descriptor like the crate's in all but the repeated ancestor's level (see
    /// [`Leaves::descriptor`]).
    #[test]
    fn every_leaf_is_the_crates_description() {
        let resource = resource_schema("Patient", TreeOptions { typed_depth: 2 }).unwrap();
        let small = arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("a", arrow_schema::DataType::Utf8, false),
            arrow_schema::Field::new(
                "s",
                arrow_schema::DataType::Struct(
                    vec![
                        arrow_schema::Field::new("d", arrow_schema::DataType::Decimal128(32, 4), true),
                        arrow_schema::Field::new_list(
                            "l",
                            arrow_schema::Field::new("item", arrow_schema::DataType::Int64, true),
                            true,
                        ),
                    ]
                    .into(),
                ),
                true,
            ),
        ]);
        for schema in [resource, small] {
            let descr = ArrowSchemaConverter::new().convert(&schema).unwrap();
            let from_root = Leaves::of_root(descr.root_schema());
            // Sized before the walk, exactly: nothing grown, nothing spare.
            assert_eq!(from_root.columns.capacity(), from_root.columns.len());
            assert_eq!(from_root.text.capacity(), from_root.text.len());
            assert_eq!(from_root.name_ends.capacity(), from_root.name_ends.len());
            for leaves in [from_root, Leaves::of_columns(descr.columns())] {
                same_leaves(&leaves, &descr);
            }
        }
    }

    /// `leaves` are the leaves the crate finds in `descr`.
    fn same_leaves(leaves: &Leaves, descr: &parquet::schema::types::SchemaDescriptor) {
        assert_eq!(leaves.len(), descr.num_columns());
        for (leaf, column) in descr.columns().iter().enumerate() {
            assert_eq!(leaves.physical_type(leaf), column.physical_type());
            assert_eq!(leaves.max_def_level(leaf), column.max_def_level());
            assert_eq!(leaves.max_rep_level(leaf), column.max_rep_level());
            assert_eq!(leaves.primitive_type(leaf), column.self_type());
            let path = leaves.path(leaf);
            assert!(path.is(column.path()), "{path} is not {}", column.path());
            assert_eq!(&leaves.column_path(leaf), column.path());
            assert_eq!(path.to_string(), column.path().to_string());
            assert_eq!(path.names().collect::<Vec<_>>(), column.path().parts());
            let made = leaves.descriptor(leaf);
            assert_eq!(made.self_type(), column.self_type());
            assert_eq!(made.path(), column.path());
            assert_eq!(
                (made.max_def_level(), made.max_rep_level()),
                (column.max_def_level(), column.max_rep_level())
            );
            assert_eq!(made.sort_order(), column.sort_order());
            assert_eq!(made.repeated_ancestor_def_level(), 0);
            // Another leaf's path is not this one.
            let other = descr.column((leaf + 1) % descr.num_columns());
            assert!(!path.is(other.path()) || descr.num_columns() == 1);
        }
    }
}
