//! The shape every built-in table shares, written once: a table of one resource type whose
//! resource is parsed into a struct of the parts it reads, given an id, and turned into one row.

/// Declares a built-in table `$table` and its [`Table`](crate::table::Table) impl. It parses each
/// resource of `$resource_type` into `$parsed` (which has an `id: Option<Str>` field), takes its
/// logical id (else the one its Bundle `fullUrl` gives), and appends the row that
/// `$row_of(&parsed, id, &mut cells)` builds to `$columns` (made by `define_columns!`).
macro_rules! builtin_table {
    (
        $(#[$meta:meta])*
        $table:ident { name: $name:literal, resource_type: $resource_type:literal,
            parsed: $parsed:ident, columns: $columns:ident, row: $row_of:ident $(,)? }
    ) => {
        $(#[$meta])*
        pub struct $table {
            columns: $columns,
        }

        impl $table {
            pub fn new(batch_size: usize) -> Self {
                $table {
                    columns: $columns::with_capacity(batch_size),
                }
            }
        }

        impl $crate::table::Table for $table {
            fn name(&self) -> &str {
                $name
            }

            fn resource_type(&self) -> &str {
                $resource_type
            }

            fn contract_version(&self) -> Option<&'static str> {
                Some($crate::table::CONTRACT_VERSION)
            }

            fn fresh(&self, batch_size: usize) -> Box<dyn $crate::table::Table> {
                Box::new($table::new(batch_size))
            }

            fn schema(&self) -> arrow_schema::SchemaRef {
                $columns::schema()
            }

            fn append(
                &mut self,
                resource: &$crate::resource::Resource<'_>,
                diagnostics: &mut $crate::diagnostics::Diagnostics,
            ) -> Result<bool, $crate::resource::Rejection> {
                let parsed: $parsed =
                    serde_json::from_str(resource.raw).map_err(|e| resource.rejection(&e))?;
                let id = resource.logical_id(parsed.id.as_deref()).ok_or_else(|| {
                    concat!($resource_type, " without an id (and no fullUrl to take one from)").to_owned()
                })?;
                let id = $crate::table::cells::row_id($resource_type, id)?;
                let mut cells = $crate::table::cells::Cells::new(resource, id, diagnostics);
                let row = $row_of(&parsed, id, &mut cells);
                self.columns.append(row);
                Ok(cells.has_pending)
            }

            fn len(&self) -> usize {
                self.columns.len()
            }

            fn buffered_bytes(&self) -> usize {
                self.columns.buffered_bytes()
            }

            fn finish_rows(&mut self, rows: usize) -> arrow_array::RecordBatch {
                self.columns.finish_rows(rows)
            }

            fn finish(&mut self) -> arrow_array::RecordBatch {
                self.columns.finish()
            }
        }
    };
}

pub(crate) use builtin_table;
