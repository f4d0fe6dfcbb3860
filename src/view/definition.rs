//! Reading and checking a ViewDefinition: everything that can be wrong with a view is found here,
//! before any data is read, and named with the view, the JSON path and the problem.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::resource::tree::Node as JsonNode;

use super::fhirpath::{self, Constants, Expr, Path, FUNCTIONS};

/// A column of the view's table, in schema order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    /// The FHIR type name (`string`, `boolean`, `integer`, `dateTime`, ...).
    pub type_name: String,
    pub collection: bool,
    /// Set when the column asks for a typed date or time (`ansi/type` tag); `None` keeps the
    /// SQL on FHIR default, the FHIR value as text.
    pub typed_time: Option<TypedTime>,
}

/// The tag name SQL on FHIR reserves for a column's ANSI SQL type.
pub const ANSI_TYPE_TAG: &str = "ansi/type";

/// How a `date`, `dateTime` or `instant` column is stored when its `ansi/type` tag asks for a
/// typed column, by the built-in tables' rules (docs/tables.md): analysts then filter and join on
/// times without casting text in every query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypedTime {
    /// `TIMESTAMP` or `TIMESTAMP WITH TIME ZONE`: `Timestamp(µs, "UTC")`, the earliest instant
    /// the value can mean.
    Timestamp,
    /// `DATE`: `Date32`, the calendar date as written (a partial date is its first day).
    Date,
}

/// How a select iterates over its input.
#[derive(Debug, Clone)]
pub(crate) enum Iteration {
    Once,
    ForEach(Path),
    ForEachOrNull(Path),
    Repeat(Vec<Path>),
}

/// A compiled select: columns (by index into the view's columns), nested selects, union branches.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub iteration: Iteration,
    pub columns: Vec<(usize, Path)>,
    pub selects: Vec<Node>,
    pub union: Vec<Node>,
    /// Every column index this node and its children fill (for forEachOrNull's null row).
    pub covered: Vec<usize>,
}

/// A compiled ViewDefinition.
#[derive(Debug, Clone)]
pub struct View {
    pub name: String,
    /// Where the definition came from (file path or `default view <stem>`), for messages.
    pub source: String,
    pub resource: String,
    pub columns: Vec<ColumnDef>,
    pub(crate) root: Node,
    pub(crate) filters: Vec<(String, Path)>,
    pub(crate) constants: Constants,
}

/// Keys a ViewDefinition may carry besides the ones this module interprets (FHIR metadata).
const METADATA_KEYS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
    "url",
    "identifier",
    "version",
    "name",
    "title",
    "status",
    "experimental",
    "date",
    "publisher",
    "contact",
    "description",
    "useContext",
    "copyright",
    "resourceVersion",
    "fhirVersion",
    "profile",
];

/// Constant `value[x]` suffixes and the FHIR type each gives.
const CONSTANT_TYPES: &[(&str, &str)] = &[
    ("Base64Binary", "base64Binary"),
    ("Boolean", "boolean"),
    ("Canonical", "canonical"),
    ("Code", "code"),
    ("Date", "date"),
    ("DateTime", "dateTime"),
    ("Decimal", "decimal"),
    ("Id", "id"),
    ("Instant", "instant"),
    ("Integer", "integer"),
    ("Integer64", "integer64"),
    ("Oid", "oid"),
    ("PositiveInt", "positiveInt"),
    ("String", "string"),
    ("Time", "time"),
    ("UnsignedInt", "unsignedInt"),
    ("Uri", "uri"),
    ("Url", "url"),
    ("Uuid", "uuid"),
];

/// Variables every expression may use besides the view's constants.
const BUILTIN_VARIABLES: &[&str] = &["rowIndex", "resource", "rootResource", "context"];

struct Compiler<'a> {
    view: &'a str,
    resource: &'a str,
    constants: HashSet<String>,
    columns: Vec<ColumnDef>,
}

/// Compiles a ViewDefinition. `fallback_name` (the file stem) names views without `name`.
/// The error says which view, where in it and what is wrong.
pub fn compile(definition: &Value, fallback_name: &str) -> Result<View, String> {
    let object = definition
        .as_object()
        .ok_or_else(|| format!("view {fallback_name}: a ViewDefinition must be a JSON object"))?;
    let name = match object.get("name") {
        Some(Value::String(name)) => {
            check_table_name(name)
                .map_err(|problem| format!("view {name:?}: name {problem}; give the view another `name`"))?;
            name.clone()
        }
        Some(_) => return Err(format!("view {fallback_name}: `name` must be a string")),
        None => {
            check_table_name(fallback_name).map_err(|problem| {
                format!(
                    "view file name {fallback_name:?} {problem}; a view without `name` is named \
                     after its file: give the view a `name` or rename the file"
                )
            })?;
            fallback_name.to_owned()
        }
    };
    let fail = |path: &str, problem: String| format!("view {name}: {path}: {problem}");
    if let Some(kind) = object.get("resourceType").and_then(Value::as_str) {
        if kind != "ViewDefinition" {
            return Err(fail(
                "resourceType",
                format!("is '{kind}', expected 'ViewDefinition'"),
            ));
        }
    }
    for key in object.keys() {
        if !["resource", "constant", "select", "where"].contains(&key.as_str())
            && !METADATA_KEYS.contains(&key.as_str())
        {
            return Err(fail(key, "unknown key".into()));
        }
    }
    let resource = match object.get("resource") {
        Some(Value::String(resource)) if !resource.is_empty() => resource.clone(),
        Some(_) => return Err(fail("resource", "must be a resource type name".into())),
        None => {
            return Err(fail(
                "resource",
                "missing: a view names the resource type it reads".into(),
            ))
        }
    };
    let constants = constants(object.get("constant")).map_err(|(path, problem)| fail(&path, problem))?;
    let mut compiler = Compiler {
        view: &name,
        resource: &resource,
        constants: constants.keys().cloned().collect(),
        columns: Vec::new(),
    };
    let selects = match object.get("select") {
        Some(Value::Array(selects)) if !selects.is_empty() => selects,
        _ => {
            return Err(fail(
                "select",
                "missing or empty: a view needs at least one select".into(),
            ))
        }
    };
    let mut next_column = 0;
    let mut root_selects = Vec::new();
    for (i, select) in selects.iter().enumerate() {
        root_selects.push(compiler.select(select, &format!("select[{i}]"), &mut next_column, true)?);
    }
    let mut seen = HashSet::new();
    for column in &compiler.columns {
        if !seen.insert(column.name.as_str()) {
            return Err(fail(
                "select",
                format!("column name '{}' is used twice", column.name),
            ));
        }
    }
    let filters = match object.get("where") {
        None => Vec::new(),
        Some(Value::Array(filters)) => filters
            .iter()
            .enumerate()
            .map(|(i, filter)| compiler.filter(filter, &format!("where[{i}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(fail("where", "must be an array".into())),
    };
    if next_column == 0 {
        return Err(fail(
            "select",
            "no columns: a view needs at least one column".into(),
        ));
    }
    let covered = (0..next_column).collect();
    let columns = compiler.columns;
    Ok(View {
        name: name.clone(),
        source: fallback_name.to_owned(),
        resource,
        columns,
        root: Node {
            iteration: Iteration::Once,
            columns: Vec::new(),
            selects: root_selects,
            union: Vec::new(),
            covered,
        },
        filters,
        constants,
    })
}

/// The SQL on FHIR name rule for views and columns: `^[A-Za-z][A-Za-z0-9_]*$`.
fn is_sql_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Longest view name: a table folder name must fit the 255-byte file name limit of common file
/// systems.
pub const MAX_NAME_BYTES: usize = 255;

/// A view's name is its table's folder under `--out`, so it must be a plain SQL on FHIR name
/// (`^[A-Za-z][A-Za-z0-9_]*$`: no path separators, dots, NUL, nor a leading `_` or `.` as in
/// `_state` and `_deleted`) and not a built-in table's name (ignoring case, as case-insensitive
/// file systems do). The error says what is wrong with it.
pub fn check_table_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    if !is_sql_name(name) {
        return Err(
            "is not a valid view name: it must start with a letter and hold only \
             letters, digits and _ (the SQL on FHIR name rule), as it names the view's folder under --out"
                .to_owned(),
        );
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "is {} characters long: a view name has at most {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    let builtin = crate::table::BUILTIN_TABLE_NAMES
        .iter()
        .find(|table| table.eq_ignore_ascii_case(name));
    if let Some(table) = builtin {
        return Err(format!("is the name of a built-in table ({table})"));
    }
    Ok(())
}

fn constants(value: Option<&Value>) -> Result<Constants, (String, String)> {
    let mut constants = HashMap::new();
    let Some(value) = value else {
        return Ok(constants);
    };
    let list = value
        .as_array()
        .ok_or_else(|| ("constant".to_owned(), "must be an array".to_owned()))?;
    for (i, constant) in list.iter().enumerate() {
        let path = format!("constant[{i}]");
        let object = constant
            .as_object()
            .ok_or_else(|| (path.clone(), "must be an object".to_owned()))?;
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| (path.clone(), "needs a string `name`".to_owned()))?;
        let mut found = None;
        for (key, value) in object {
            if key == "name" {
                continue;
            }
            let kind = key
                .strip_prefix("value")
                .and_then(|suffix| CONSTANT_TYPES.iter().find(|(s, _)| *s == suffix))
                .map(|(_, kind)| *kind)
                .ok_or_else(|| (format!("{path}.{key}"), "unknown key".to_owned()))?;
            if found.replace((JsonNode::from_value(value), kind)).is_some() {
                return Err((path, "has more than one value[x]".to_owned()));
            }
        }
        let value = found.ok_or_else(|| (path.clone(), format!("constant '{name}' has no value[x]")))?;
        constants.insert(name.to_owned(), value);
    }
    Ok(constants)
}

impl Compiler<'_> {
    fn fail(&self, path: &str, problem: impl Into<String>) -> String {
        format!("view {}: {path}: {}", self.view, problem.into())
    }

    fn path(&self, value: Option<&Value>, path: &str) -> Result<Expr, String> {
        let text = match value {
            Some(Value::String(text)) => text,
            Some(_) => return Err(self.fail(path, "must be a FHIRPath string")),
            None => return Err(self.fail(path, "missing")),
        };
        let expr =
            fhirpath::parse(text).map_err(|e| self.fail(path, format!("invalid FHIRPath '{text}': {e}")))?;
        self.check(&expr)
            .map_err(|problem| self.fail(path, format!("'{text}': {problem}")))?;
        Ok(expr)
    }

    /// Names used in an expression must exist: functions (with the right number of arguments)
    /// and constants.
    fn check(&self, expr: &Expr) -> Result<(), String> {
        match expr {
            Expr::Variable(name)
                if !BUILTIN_VARIABLES.contains(&name.as_str()) && !self.constants.contains(name) =>
            {
                return Err(format!("unknown constant %{name}"));
            }
            Expr::Function(name, arguments) => {
                let (_, min, max) = FUNCTIONS
                    .iter()
                    .find(|(known, _, _)| known == name)
                    .ok_or_else(|| format!("unknown function {name}()"))?;
                if arguments.len() < *min || arguments.len() > *max {
                    return Err(format!(
                        "{name}() takes {min} to {max} arguments, not {}",
                        arguments.len()
                    ));
                }
                let takes_type = matches!(name.as_str(), "ofType" | "getReferenceKey");
                for argument in arguments {
                    if takes_type {
                        if fhirpath::type_argument(argument).is_none() {
                            return Err(format!("{name}() needs a type name"));
                        }
                    } else {
                        self.check(argument)?;
                    }
                }
            }
            Expr::Invoke(a, b) | Expr::Index(a, b) | Expr::Binary(_, a, b) => {
                self.check(a)?;
                self.check(b)?;
            }
            Expr::Negate(a) | Expr::TypeTest(_, a, _) => self.check(a)?,
            _ => {}
        }
        Ok(())
    }

    fn filter(&self, filter: &Value, path: &str) -> Result<(String, Path), String> {
        let object = filter
            .as_object()
            .ok_or_else(|| self.fail(path, "must be an object"))?;
        for key in object.keys() {
            if !["path", "description", "extension"].contains(&key.as_str()) {
                return Err(self.fail(&format!("{path}.{key}"), "unknown key"));
            }
        }
        let text = object
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok((
            text,
            Path::new(self.path(object.get("path"), &format!("{path}.path"))?),
        ))
    }

    /// Compiles one select. Columns get consecutive indices from `next_column` in schema order
    /// (own columns, nested selects, then the union's first branch); the other union branches
    /// must produce the same column names and reuse those indices.
    fn select(
        &mut self,
        select: &Value,
        path: &str,
        next_column: &mut usize,
        define: bool,
    ) -> Result<Node, String> {
        let object: &Map<String, Value> = select
            .as_object()
            .ok_or_else(|| self.fail(path, "must be an object"))?;
        for key in object.keys() {
            if ![
                "column",
                "select",
                "forEach",
                "forEachOrNull",
                "repeat",
                "unionAll",
                "extension",
            ]
            .contains(&key.as_str())
            {
                return Err(self.fail(&format!("{path}.{key}"), "unknown key"));
            }
        }
        let first_column = *next_column;
        let iteration = match (
            object.get("forEach"),
            object.get("forEachOrNull"),
            object.get("repeat"),
        ) {
            (Some(_), Some(_), _) => {
                return Err(self.fail(path, "forEach and forEachOrNull cannot both be given"));
            }
            (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => {
                return Err(self.fail(path, "repeat cannot be combined with forEach or forEachOrNull"));
            }
            (Some(each), None, None) => {
                Iteration::ForEach(Path::new(self.path(Some(each), &format!("{path}.forEach"))?))
            }
            (None, Some(each), None) => Iteration::ForEachOrNull(Path::new(
                self.path(Some(each), &format!("{path}.forEachOrNull"))?,
            )),
            (None, None, Some(Value::Array(paths))) if !paths.is_empty() => Iteration::Repeat(
                paths
                    .iter()
                    .enumerate()
                    .map(|(i, p)| self.path(Some(p), &format!("{path}.repeat[{i}]")).map(Path::new))
                    .collect::<Result<_, _>>()?,
            ),
            (None, None, Some(_)) => {
                return Err(self.fail(&format!("{path}.repeat"), "must be a non-empty array of paths"))
            }
            (None, None, None) => Iteration::Once,
        };
        let mut columns = Vec::new();
        if let Some(list) = object.get("column") {
            let list = list
                .as_array()
                .filter(|list| !list.is_empty())
                .ok_or_else(|| self.fail(&format!("{path}.column"), "must be a non-empty array"))?;
            for (i, column) in list.iter().enumerate() {
                let column_path = format!("{path}.column[{i}]");
                let (definition, expr) = self.column(column, &column_path)?;
                let index = *next_column;
                *next_column += 1;
                if define {
                    self.columns.push(definition);
                } else if self.columns.get(index).map(|c| &c.name) != Some(&definition.name) {
                    return Err(self.fail(
                        &column_path,
                        "unionAll branches must have the same columns in the same order",
                    ));
                } else if self.columns[index].typed_time != definition.typed_time {
                    return Err(self.fail(
                        &column_path,
                        "unionAll branches must give a column the same ansi/type tag",
                    ));
                }
                columns.push((index, Path::new(expr)));
            }
        }
        let mut selects = Vec::new();
        if let Some(list) = object.get("select") {
            let list = list
                .as_array()
                .filter(|list| !list.is_empty())
                .ok_or_else(|| self.fail(&format!("{path}.select"), "must be a non-empty array"))?;
            for (i, nested) in list.iter().enumerate() {
                selects.push(self.select(nested, &format!("{path}.select[{i}]"), next_column, define)?);
            }
        }
        let mut union = Vec::new();
        if let Some(list) = object.get("unionAll") {
            let list = list
                .as_array()
                .filter(|list| !list.is_empty())
                .ok_or_else(|| self.fail(&format!("{path}.unionAll"), "must be a non-empty array"))?;
            let start = *next_column;
            let mut end = None;
            for (i, branch) in list.iter().enumerate() {
                let mut cursor = start;
                let branch_path = format!("{path}.unionAll[{i}]");
                union.push(self.select(branch, &branch_path, &mut cursor, define && i == 0)?);
                match end {
                    None => end = Some(cursor),
                    Some(end) if end != cursor => {
                        return Err(self.fail(
                            &branch_path,
                            "unionAll branches must have the same columns in the same order",
                        ));
                    }
                    Some(_) => {}
                }
            }
            *next_column = end.unwrap_or(start);
        }
        Ok(Node {
            iteration,
            columns,
            selects,
            union,
            covered: (first_column..*next_column).collect(),
        })
    }

    fn column(&self, column: &Value, path: &str) -> Result<(ColumnDef, Expr), String> {
        let object = column
            .as_object()
            .ok_or_else(|| self.fail(path, "must be an object"))?;
        for key in object.keys() {
            if ![
                "name",
                "path",
                "description",
                "collection",
                "type",
                "tag",
                "extension",
            ]
            .contains(&key.as_str())
            {
                return Err(self.fail(&format!("{path}.{key}"), "unknown key"));
            }
        }
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| self.fail(&format!("{path}.name"), "missing: every column needs a name"))?;
        if !is_sql_name(name) {
            return Err(self.fail(
                &format!("{path}.name"),
                format!("'{name}' is not a valid column name (letters, digits, _)"),
            ));
        }
        let expr = self.path(object.get("path"), &format!("{path}.path"))?;
        let collection = match object.get("collection") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(self.fail(&format!("{path}.collection"), "must be true or false")),
        };
        let type_name = match object.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(_) => return Err(self.fail(&format!("{path}.type"), "must be a type name")),
            None => super::types::infer(&expr, self.resource),
        };
        let typed_time = self.typed_time(object.get("tag"), &type_name, path)?;
        Ok((
            ColumnDef {
                name: name.to_owned(),
                type_name,
                collection,
                typed_time,
            },
            expr,
        ))
    }

    /// The typed storage a column's `ansi/type` tag asks for. Other tags, and ANSI types other
    /// than the time ones, leave the column as it is.
    fn typed_time(
        &self,
        tags: Option<&Value>,
        type_name: &str,
        path: &str,
    ) -> Result<Option<TypedTime>, String> {
        let Some(tags) = tags else {
            return Ok(None);
        };
        let tags = tags.as_array().ok_or_else(|| {
            self.fail(
                &format!("{path}.tag"),
                "must be an array of {name, value} objects",
            )
        })?;
        let mut typed = None;
        for (i, tag) in tags.iter().enumerate() {
            let here = format!("{path}.tag[{i}]");
            let text = |key: &str| tag.get(key).and_then(Value::as_str);
            let name =
                text("name").ok_or_else(|| self.fail(&format!("{here}.name"), "missing or not a string"))?;
            let value = text("value")
                .ok_or_else(|| self.fail(&format!("{here}.value"), "missing or not a string"))?;
            if name != ANSI_TYPE_TAG {
                continue;
            }
            let wanted = match value.trim().to_ascii_uppercase().as_str() {
                "TIMESTAMP" | "TIMESTAMP WITH TIME ZONE" => TypedTime::Timestamp,
                "DATE" => TypedTime::Date,
                _ => continue,
            };
            if !matches!(type_name, "date" | "dateTime" | "instant") {
                let problem = format!(
                    "ansi/type {value} applies to date, dateTime and instant columns; this one is {type_name}"
                );
                return Err(self.fail(&here, problem));
            }
            typed = Some(wanted);
        }
        Ok(typed)
    }
}
