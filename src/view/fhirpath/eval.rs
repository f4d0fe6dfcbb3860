//! Evaluating a parsed FHIRPath expression over a resource's JSON tree. Collections are `Vec`s of
//! [`Item`]s that borrow from the resource; FHIR choice elements (`value[x]`) carry their type, so
//! `ofType()` works on plain JSON.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::resource::tree::Node as Value;

use super::parse::{Expr, Op};
use crate::fhir::reference::{literal_type_and_id, refers_to_type, resolve, FullUrlLookup, Resolution};

/// FHIR primitive type names: a choice suffix (`valueString`) names one of these in lower camel case.
pub const PRIMITIVE_TYPES: &[&str] = &[
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "integer64",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "xhtml",
];

/// One element of a FHIRPath collection.
#[derive(Debug, Clone)]
pub enum Item<'v> {
    /// A node of the resource (or a constant), with its FHIR type when the element name says it.
    Node(&'v Value<'v>, Option<Cow<'v, str>>),
    Boolean(bool),
    Integer(i64),
    /// A decimal and its number of digits after the point, when known.
    Decimal(f64, Option<u32>),
    /// A string, with the FHIR type it stands for (`string`, `date`, `dateTime`, `time`, ...).
    String(Cow<'v, str>, &'static str),
}

/// A primitive view of an item, for operators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Primitive<'a> {
    Boolean(bool),
    Integer(i64),
    Decimal(f64, Option<u32>),
    String(&'a str),
}

impl<'v> Item<'v> {
    pub fn primitive(&self) -> Option<Primitive<'_>> {
        Some(match self {
            Item::Boolean(b) => Primitive::Boolean(*b),
            Item::Integer(i) => Primitive::Integer(*i),
            Item::Decimal(d, scale) => Primitive::Decimal(*d, *scale),
            Item::String(s, _) => Primitive::String(s),
            Item::Node(value, _) => match value {
                Value::Bool(b) => Primitive::Boolean(*b),
                Value::String(s) => Primitive::String(s),
                Value::Number(text) => number_primitive(text)?,
                _ => return None,
            },
        })
    }

    /// The item's FHIR type name, as `ofType()` and `is` test it.
    pub fn type_name(&self) -> Option<Cow<'_, str>> {
        match self {
            Item::Node(_, Some(name)) => Some(Cow::Borrowed(name)),
            Item::Node(Value::Object(map), None) => map.get("resourceType")?.as_str().map(Cow::Borrowed),
            Item::Node(Value::Array(_) | Value::Null, None) => None,
            Item::String(_, kind) => Some(Cow::Borrowed(kind)),
            _ => Some(Cow::Borrowed(match self.primitive()? {
                Primitive::Boolean(_) => "boolean",
                Primitive::Integer(_) => "integer",
                Primitive::Decimal(..) => "decimal",
                Primitive::String(_) => "string",
            })),
        }
    }
}

fn number_primitive(text: &str) -> Option<Primitive<'static>> {
    if let Some(integer) = text
        .parse::<i64>()
        .ok()
        .filter(|_| !text.contains(['.', 'e', 'E']))
    {
        return Some(Primitive::Integer(integer));
    }
    let scale = text
        .split_once('.')
        .map(|(_, fraction)| fraction.chars().take_while(char::is_ascii_digit).count() as u32);
    let value = text.parse::<f64>().ok().filter(|value| value.is_finite())?;
    Some(Primitive::Decimal(value, Some(scale.unwrap_or(0))))
}

/// The type name a choice-element suffix stands for: `String` → `string`, `Quantity` → `Quantity`.
fn choice_type(suffix: &str) -> Cow<'_, str> {
    let primitive = PRIMITIVE_TYPES.iter().find(|name| {
        name.len() == suffix.len() && name[..1].eq_ignore_ascii_case(&suffix[..1]) && name[1..] == suffix[1..]
    });
    match primitive {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Borrowed(suffix),
    }
}

/// An evaluation error caused by the data (several values where one is needed, bad types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub String);

type Result<T> = std::result::Result<T, EvalError>;

/// A view's constants by name: value and FHIR type.
pub type Constants = HashMap<String, (Value<'static>, &'static str)>;

/// What an expression can see besides its input.
pub struct Context<'v> {
    pub resource: &'v Value<'v>,
    pub constants: &'v Constants,
    pub row_index: i64,
    pub bundle: Option<&'v dyn FullUrlLookup>,
}

/// Evaluates `expr` with `input` as its focus.
pub fn evaluate<'v>(expr: &Expr, input: &[Item<'v>], context: &Context<'v>) -> Result<Vec<Item<'v>>> {
    Ok(match expr {
        Expr::Empty => Vec::new(),
        Expr::Boolean(b) => vec![Item::Boolean(*b)],
        Expr::Integer(i) => vec![Item::Integer(*i)],
        Expr::Decimal(text) => vec![decimal_literal(text)],
        Expr::String(text) => vec![Item::String(Cow::Owned(text.clone()), "string")],
        Expr::DateTime(text) => vec![date_literal(text)],
        Expr::This => input.to_vec(),
        Expr::Variable(name) => variable(name, context)?,
        Expr::Member(name) => {
            let mut found = Vec::with_capacity(input.len());
            for item in input {
                found.extend(child_items(item, name));
            }
            found
        }
        Expr::Function(name, arguments) => function(name, arguments, input, context)?,
        Expr::Invoke(base, next) => {
            let focus = evaluate(base, input, context)?;
            evaluate(next, &focus, context)?
        }
        Expr::Index(base, index) => {
            let focus = evaluate(base, input, context)?;
            match integer_argument(index, input, context)? {
                Some(i) if i >= 0 => focus.into_iter().nth(i as usize).into_iter().collect(),
                _ => Vec::new(),
            }
        }
        Expr::Negate(operand) => match single_primitive(&evaluate(operand, input, context)?)? {
            None => Vec::new(),
            Some(Primitive::Integer(i)) => vec![Item::Integer(-i)],
            Some(Primitive::Decimal(d, scale)) => vec![Item::Decimal(-d, scale)],
            Some(_) => return Err(EvalError("unary minus needs a number".into())),
        },
        Expr::TypeTest(is, operand, type_name) => {
            let focus = evaluate(operand, input, context)?;
            let matching: Vec<Item> = focus
                .into_iter()
                .filter(|item| has_type(item, type_name))
                .collect();
            if *is {
                vec![Item::Boolean(!matching.is_empty())]
            } else {
                matching
            }
        }
        Expr::Binary(op, left, right) => binary(*op, left, right, input, context)?,
    })
}

fn decimal_literal(text: &str) -> Item<'static> {
    let scale = text
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len() as u32);
    Item::Decimal(text.parse().unwrap_or(0.0), Some(scale))
}

fn date_literal(text: &str) -> Item<'static> {
    let kind = if text.starts_with('T') {
        "time"
    } else if text.contains('T') {
        "dateTime"
    } else {
        "date"
    };
    Item::String(Cow::Owned(text.trim_start_matches('T').to_owned()), kind)
}

fn variable<'v>(name: &str, context: &Context<'v>) -> Result<Vec<Item<'v>>> {
    match name {
        "rowIndex" => Ok(vec![Item::Integer(context.row_index)]),
        "resource" | "rootResource" | "context" => Ok(vec![Item::Node(context.resource, None)]),
        _ => match context.constants.get(name) {
            Some((value, kind)) => Ok(vec![Item::Node(value, Some(Cow::Borrowed(*kind)))]),
            None => Err(EvalError(format!("unknown constant %{name}"))),
        },
    }
}

/// The children named `name` of an item: arrays flattened, choice elements (`value` finding
/// `valueQuantity`) typed by their suffix, and a type name (`Patient`) matching the resource itself.
pub fn children<'v>(item: &Item<'v>, name: &str) -> Vec<Item<'v>> {
    child_items(item, name).collect()
}

/// [`children`], one at a time: member access walks them without a vector per item.
pub(super) fn child_items<'v>(item: &Item<'v>, name: &str) -> Children<'v> {
    let Item::Node(Value::Object(map), _) = item else {
        return Children::One(None);
    };
    if let Some(value) = map.get(name) {
        return Children::of(value, None);
    }
    if name.starts_with(|c: char| c.is_ascii_uppercase())
        && map.get("resourceType").and_then(Value::as_str) == Some(name)
    {
        return Children::One(Some(item.clone()));
    }
    // The first choice key in key order (`serde_json::Value` iterated sorted).
    let choice = map
        .0
        .iter()
        .filter(|(key, _)| {
            key.strip_prefix(name)
                .is_some_and(|suffix| suffix.starts_with(|c: char| c.is_ascii_uppercase()))
        })
        .min_by(|a, b| a.0.cmp(&b.0));
    match choice {
        Some((key, _)) => {
            let value = map.get(key).expect("the key is in the map");
            Children::of(value, Some(choice_type(&key[name.len()..])))
        }
        None => Children::One(None),
    }
}

/// The items one member access gives for one item.
pub(super) enum Children<'v> {
    One(Option<Item<'v>>),
    /// An array's elements (nulls skipped), all of the same type.
    Many(std::slice::Iter<'v, Value<'v>>, Option<Cow<'v, str>>),
}

impl<'v> Children<'v> {
    fn of(value: &'v Value<'v>, kind: Option<Cow<'v, str>>) -> Self {
        match value {
            Value::Array(elements) => Children::Many(elements.iter(), kind),
            Value::Null => Children::One(None),
            _ => Children::One(Some(Item::Node(value, kind))),
        }
    }
}

impl<'v> Iterator for Children<'v> {
    type Item = Item<'v>;

    fn next(&mut self) -> Option<Item<'v>> {
        match self {
            Children::One(item) => item.take(),
            Children::Many(elements, kind) => elements
                .find(|element| !element.is_null())
                .map(|element| Item::Node(element, kind.clone())),
        }
    }
}

pub(super) fn has_type(item: &Item<'_>, type_name: &str) -> bool {
    let wanted = type_name
        .strip_prefix("FHIR.")
        .or_else(|| type_name.strip_prefix("System."))
        .unwrap_or(type_name);
    item.type_name().is_some_and(|actual| {
        actual == wanted || actual.eq_ignore_ascii_case(wanted) && is_primitive(&actual)
    })
}

fn is_primitive(name: &str) -> bool {
    PRIMITIVE_TYPES.contains(&name)
}

fn single_primitive<'a>(items: &'a [Item<'_>]) -> Result<Option<Primitive<'a>>> {
    match items {
        [] => Ok(None),
        [item] => item
            .primitive()
            .map(Some)
            .ok_or_else(|| EvalError("expected a primitive value, found a complex element".into())),
        _ => Err(EvalError(format!("expected one value, found {}", items.len()))),
    }
}

/// FHIRPath's boolean reading of a collection: empty is unknown, a single boolean is itself, any
/// other single item is true.
pub(super) fn truth(items: &[Item<'_>]) -> Result<Option<bool>> {
    match items {
        [] => Ok(None),
        [item] => Ok(Some(!matches!(item.primitive(), Some(Primitive::Boolean(false))))),
        _ => Err(EvalError(format!(
            "expected one boolean, found {} values",
            items.len()
        ))),
    }
}

fn integer_argument(expr: &Expr, input: &[Item<'_>], context: &Context<'_>) -> Result<Option<i64>> {
    let values = evaluate(expr, input, context)?;
    match single_primitive(&values)? {
        None => Ok(None),
        Some(Primitive::Integer(i)) => Ok(Some(i)),
        Some(_) => Err(EvalError("expected an integer".into())),
    }
}

fn string_argument(expr: &Expr, input: &[Item<'_>], context: &Context<'_>) -> Result<Option<String>> {
    let values = evaluate(expr, input, context)?;
    match single_primitive(&values)? {
        None => Ok(None),
        Some(Primitive::String(s)) => Ok(Some(s.to_owned())),
        Some(_) => Err(EvalError("expected a string".into())),
    }
}

/// The name a type argument (`Quantity`, `FHIR.string`) spells.
pub fn type_argument(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Member(name) => Some(name.clone()),
        Expr::Invoke(namespace, name) => {
            Some(format!("{}.{}", type_argument(namespace)?, type_argument(name)?))
        }
        _ => None,
    }
}

/// Functions: name, minimum and maximum number of arguments.
pub const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("where", 1, 1),
    ("select", 1, 1),
    ("exists", 0, 1),
    ("all", 1, 1),
    ("empty", 0, 0),
    ("first", 0, 0),
    ("last", 0, 0),
    ("tail", 0, 0),
    ("skip", 1, 1),
    ("take", 1, 1),
    ("single", 0, 0),
    ("count", 0, 0),
    ("distinct", 0, 0),
    ("not", 0, 0),
    ("hasValue", 0, 0),
    ("ofType", 1, 1),
    ("extension", 1, 1),
    ("join", 0, 1),
    ("iif", 2, 3),
    ("toString", 0, 0),
    ("lowBoundary", 0, 1),
    ("highBoundary", 0, 1),
    ("getResourceKey", 0, 0),
    ("getReferenceKey", 0, 1),
];

fn function<'v>(
    name: &str,
    arguments: &[Expr],
    input: &[Item<'v>],
    context: &Context<'v>,
) -> Result<Vec<Item<'v>>> {
    let argument = |i: usize| &arguments[i];
    Ok(match name {
        "where" => {
            let mut kept = Vec::new();
            for item in input {
                let verdict = evaluate(argument(0), std::slice::from_ref(item), context)?;
                if truth(&verdict)? == Some(true) {
                    kept.push(item.clone());
                }
            }
            kept
        }
        "select" => {
            let mut selected = Vec::new();
            for item in input {
                selected.extend(evaluate(argument(0), std::slice::from_ref(item), context)?);
            }
            selected
        }
        "exists" if arguments.is_empty() => vec![Item::Boolean(!input.is_empty())],
        "exists" | "all" => {
            let wanted_all = name == "all";
            let mut outcome = wanted_all;
            for item in input {
                let verdict =
                    truth(&evaluate(argument(0), std::slice::from_ref(item), context)?)? == Some(true);
                if verdict != wanted_all {
                    outcome = !wanted_all;
                    break;
                }
            }
            vec![Item::Boolean(outcome)]
        }
        "empty" => vec![Item::Boolean(input.is_empty())],
        "first" => input.first().cloned().into_iter().collect(),
        "last" => input.last().cloned().into_iter().collect(),
        "tail" => input.iter().skip(1).cloned().collect(),
        "skip" | "take" => {
            let n = integer_argument(argument(0), input, context)?.unwrap_or(0).max(0) as usize;
            if name == "skip" {
                input.iter().skip(n).cloned().collect()
            } else {
                input.iter().take(n).cloned().collect()
            }
        }
        "single" => match input {
            [] | [_] => input.to_vec(),
            _ => return Err(EvalError(format!("single() found {} values", input.len()))),
        },
        "count" => vec![Item::Integer(input.len() as i64)],
        "distinct" => distinct(input.to_vec()),
        "not" => match truth(input)? {
            None => Vec::new(),
            Some(b) => vec![Item::Boolean(!b)],
        },
        "hasValue" => vec![Item::Boolean(
            matches!(input, [item] if item.primitive().is_some()),
        )],
        "ofType" => {
            let type_name =
                type_argument(argument(0)).ok_or_else(|| EvalError("ofType() needs a type name".into()))?;
            input
                .iter()
                .filter(|item| has_type(item, &type_name))
                .cloned()
                .collect()
        }
        "extension" => {
            let url = string_argument(argument(0), input, context)?;
            input
                .iter()
                .flat_map(|item| children(item, "extension"))
                .filter(|extension| {
                    let Item::Node(Value::Object(map), _) = extension else {
                        return false;
                    };
                    map.get("url").and_then(Value::as_str) == url.as_deref()
                })
                .collect()
        }
        "join" => {
            let separator = match arguments.first() {
                Some(expr) => string_argument(expr, input, context)?.unwrap_or_default(),
                None => String::new(),
            };
            if input.is_empty() {
                return Ok(Vec::new());
            }
            let parts: Vec<String> = input
                .iter()
                .map(lexical)
                .collect::<Option<_>>()
                .unwrap_or_default();
            vec![Item::String(Cow::Owned(parts.join(&separator)), "string")]
        }
        "iif" => {
            let condition = truth(&evaluate(argument(0), input, context)?)?;
            match (condition, arguments.get(2)) {
                (Some(true), _) => evaluate(argument(1), input, context)?,
                (_, Some(otherwise)) => evaluate(otherwise, input, context)?,
                _ => Vec::new(),
            }
        }
        "toString" => input
            .iter()
            .filter_map(|item| Some(Item::String(Cow::Owned(lexical(item)?), "string")))
            .collect(),
        "lowBoundary" | "highBoundary" => input
            .iter()
            .filter_map(|item| super::boundary::boundary(item, name == "highBoundary"))
            .collect(),
        "getResourceKey" => resource_key(input).into_iter().collect(),
        "getReferenceKey" => {
            let wanted = arguments.first().and_then(type_argument);
            input
                .iter()
                .filter_map(|item| reference_key(item, wanted.as_deref(), context))
                .collect()
        }
        other => return Err(EvalError(format!("unknown function {other}()"))),
    })
}

/// `getResourceKey()`: the logical id of the resource in focus.
pub(super) fn resource_key<'v>(input: &[Item<'v>]) -> Option<Item<'v>> {
    let Item::Node(Value::Object(map), _) = input.first()? else {
        return None;
    };
    let id = map.get("id")?.as_str()?;
    Some(Item::String(Cow::Borrowed(id), "string"))
}

/// `getReferenceKey([type])`: the id a Reference points to, resolved like the built-in tables do
/// (literal, Bundle `fullUrl`); empty when it names another type or cannot be resolved.
pub(super) fn reference_key<'v>(
    item: &Item<'v>,
    wanted: Option<&str>,
    context: &Context<'v>,
) -> Option<Item<'v>> {
    let Item::Node(Value::Object(map), _) = item else {
        return None;
    };
    let reference = map.get("reference")?.as_str()?;
    let declared = map.get("type").and_then(Value::as_str);
    let resolved = resolve(reference, context.bundle);
    if let Some(wanted) = wanted {
        let matches = refers_to_type(reference, declared, resolved.entry_type.as_deref(), wanted)
            || literal_type_and_id(reference).is_some_and(|(literal_type, _)| literal_type == wanted);
        if !matches {
            return None;
        }
    }
    match resolved.resolution {
        Resolution::Id(id) => Some(Item::String(id, "string")),
        // Only the run-wide identifier index can resolve it: staged like the built-in tables'
        // cells, resolved when the table is finished (never equal to a real key meanwhile).
        Resolution::Conditional(_) => Some(Item::String(
            Cow::Owned(crate::table::staged(reference)),
            "string",
        )),
        _ => None,
    }
}

/// [`lexical`], borrowed from the item where it holds the text already (strings).
pub fn lexical_text<'a>(item: &'a Item<'_>) -> Option<Cow<'a, str>> {
    match item {
        Item::Node(Value::String(text), _) => Some(Cow::Borrowed(text)),
        Item::String(text, _) => Some(Cow::Borrowed(text)),
        _ => lexical(item).map(Cow::Owned),
    }
}

/// The FHIR lexical form of a primitive item (JSON text for complex ones).
pub fn lexical(item: &Item<'_>) -> Option<String> {
    Some(match item {
        Item::Node(Value::Number(text), _) => text.to_string(),
        Item::Node(value @ (Value::Object(_) | Value::Array(_)), _) => value.to_string(),
        _ => match item.primitive()? {
            Primitive::Boolean(b) => b.to_string(),
            Primitive::Integer(i) => i.to_string(),
            Primitive::Decimal(d, Some(scale)) => format!("{d:.*}", scale as usize),
            Primitive::Decimal(d, None) => d.to_string(),
            Primitive::String(s) => s.to_owned(),
        },
    })
}

fn distinct(items: Vec<Item<'_>>) -> Vec<Item<'_>> {
    let mut kept: Vec<Item> = Vec::new();
    for item in items {
        if !kept.iter().any(|k| equal(k, &item) == Some(true)) {
            kept.push(item);
        }
    }
    kept
}

/// Equality of two items: `None` when they cannot be compared.
fn equal(left: &Item<'_>, right: &Item<'_>) -> Option<bool> {
    if let (Item::Node(a, _), Item::Node(b, _)) = (left, right) {
        if a.is_object() || b.is_object() {
            return Some(a == b);
        }
    }
    Some(match (left.primitive()?, right.primitive()?) {
        (Primitive::String(a), Primitive::String(b)) => a == b,
        (Primitive::Boolean(a), Primitive::Boolean(b)) => a == b,
        (a, b) => match (number(a), number(b)) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-12 * x.abs().max(y.abs()).max(1.0),
            _ => false,
        },
    })
}

fn number(value: Primitive<'_>) -> Option<f64> {
    match value {
        Primitive::Integer(i) => Some(i as f64),
        Primitive::Decimal(d, _) => Some(d),
        _ => None,
    }
}

fn compare(left: &Item<'_>, right: &Item<'_>) -> Result<Option<std::cmp::Ordering>> {
    let (Some(a), Some(b)) = (left.primitive(), right.primitive()) else {
        return Err(EvalError("only primitive values can be compared".into()));
    };
    Ok(match (a, b) {
        (Primitive::String(x), Primitive::String(y)) => Some(x.cmp(y)),
        (x, y) => match (number(x), number(y)) {
            (Some(p), Some(q)) => p.partial_cmp(&q),
            _ => return Err(EvalError("cannot compare values of different types".into())),
        },
    })
}

fn binary<'v>(
    op: Op,
    left: &Expr,
    right: &Expr,
    input: &[Item<'v>],
    context: &Context<'v>,
) -> Result<Vec<Item<'v>>> {
    let boolean = |b: Option<bool>| b.map(Item::Boolean).into_iter().collect::<Vec<_>>();
    if matches!(op, Op::And | Op::Or | Op::Xor | Op::Implies) {
        let a = truth(&evaluate(left, input, context)?)?;
        let b = truth(&evaluate(right, input, context)?)?;
        return Ok(boolean(match op {
            Op::And => match (a, b) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Op::Or => match (a, b) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Op::Xor => a.zip(b).map(|(x, y)| x != y),
            _ => match (a, b) {
                (Some(false), _) | (_, Some(true)) => Some(true),
                (Some(true), Some(false)) => Some(false),
                _ => None,
            },
        }));
    }
    let a = evaluate(left, input, context)?;
    let b = evaluate(right, input, context)?;
    Ok(match op {
        Op::Union => distinct(a.into_iter().chain(b).collect()),
        Op::In | Op::Contains => {
            let (element, collection) = if op == Op::In { (&a, &b) } else { (&b, &a) };
            match element.as_slice() {
                [] => Vec::new(),
                [one] => vec![Item::Boolean(
                    collection.iter().any(|c| equal(one, c) == Some(true)),
                )],
                _ => return Err(EvalError("'in'/'contains' need one value".into())),
            }
        }
        Op::Equal | Op::NotEqual | Op::Equivalent | Op::NotEquivalent => {
            let equivalence = matches!(op, Op::Equivalent | Op::NotEquivalent);
            let result = if a.is_empty() || b.is_empty() {
                equivalence.then_some(a.is_empty() && b.is_empty())
            } else if a.len() != b.len() {
                Some(false)
            } else {
                a.iter()
                    .zip(&b)
                    .map(|(x, y)| equal(x, y))
                    .try_fold(true, |all, e| Some(all && e?))
            };
            let negate = matches!(op, Op::NotEqual | Op::NotEquivalent);
            boolean(result.map(|r| r != negate))
        }
        Op::Less | Op::Greater | Op::LessOrEqual | Op::GreaterOrEqual => match (a.as_slice(), b.as_slice()) {
            ([x], [y]) => boolean(compare(x, y)?.map(|ordering| match op {
                Op::Less => ordering.is_lt(),
                Op::Greater => ordering.is_gt(),
                Op::LessOrEqual => ordering.is_le(),
                _ => ordering.is_ge(),
            })),
            ([], _) | (_, []) => Vec::new(),
            _ => return Err(EvalError("comparison needs one value on each side".into())),
        },
        Op::Concatenate => {
            let text = |items: &[Item]| items.first().and_then(lexical).unwrap_or_default();
            vec![Item::String(Cow::Owned(text(&a) + &text(&b)), "string")]
        }
        _ => arithmetic(op, single_primitive(&a)?, single_primitive(&b)?)?
            .into_iter()
            .collect(),
    })
}

fn arithmetic(op: Op, a: Option<Primitive<'_>>, b: Option<Primitive<'_>>) -> Result<Option<Item<'static>>> {
    let (Some(a), Some(b)) = (a, b) else {
        return Ok(None);
    };
    if let (Op::Add, Primitive::String(x), Primitive::String(y)) = (op, a, b) {
        return Ok(Some(Item::String(Cow::Owned(format!("{x}{y}")), "string")));
    }
    let scale = |p: Primitive| match p {
        Primitive::Decimal(_, scale) => scale,
        _ => Some(0),
    };
    if let (Primitive::Integer(x), Primitive::Integer(y)) = (a, b) {
        let integer = match op {
            Op::Add => x.checked_add(y),
            Op::Subtract => x.checked_sub(y),
            Op::Multiply => x.checked_mul(y),
            Op::IntegerDivide => x.checked_div(y),
            Op::Modulo => x.checked_rem(y),
            _ => None,
        };
        if let Some(value) = integer {
            return Ok(Some(Item::Integer(value)));
        }
        if matches!(op, Op::IntegerDivide | Op::Modulo) {
            return Ok(None);
        }
    }
    let (Some(x), Some(y)) = (number(a), number(b)) else {
        return Err(EvalError("arithmetic needs numbers".into()));
    };
    let combined_scale = scale(a).zip(scale(b)).map(|(p, q)| p.max(q));
    Ok(match op {
        Op::Add => Some(Item::Decimal(x + y, combined_scale)),
        Op::Subtract => Some(Item::Decimal(x - y, combined_scale)),
        Op::Multiply => Some(Item::Decimal(x * y, None)),
        Op::Divide if y != 0.0 => Some(Item::Decimal(x / y, None)),
        Op::IntegerDivide if y != 0.0 => Some(Item::Integer((x / y).trunc() as i64)),
        Op::Modulo if y != 0.0 => Some(Item::Decimal(x % y, combined_scale)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::fhirpath::parse;

    const PATIENT: &str = r#"{
        "resourceType": "Patient", "id": "p1", "active": true, "gender": "female",
        "name": [
            {"use": "usual", "family": "Usual", "given": ["A", "B"]},
            {"use": "official", "family": "Official", "given": ["C"]}
        ],
        "deceasedDateTime": "2020-01-02",
        "extension": [{"url": "http://x/ext", "valueCode": "F"}],
        "link": [{"other": {"reference": "Patient/p2"}}],
        "multipleBirthInteger": 2
    }"#;

    fn run(path: &str) -> std::result::Result<Vec<String>, EvalError> {
        let resource = crate::resource::tree::parse(PATIENT).unwrap();
        let mut constants = Constants::new();
        constants.insert(
            "two".into(),
            (Value::from_value(&serde_json::json!(2)), "integer"),
        );
        let context = Context {
            resource: &resource,
            constants: &constants,
            row_index: 7,
            bundle: None,
        };
        let expr = parse(path).unwrap();
        let items = evaluate(&expr, &[Item::Node(&resource, None)], &context)?;
        Ok(items.iter().map(|item| lexical(item).unwrap()).collect())
    }

    fn one(path: &str) -> String {
        let values = run(path).unwrap();
        assert_eq!(values.len(), 1, "{path} gave {values:?}");
        values[0].clone()
    }

    #[test]
    fn navigation_flattens_and_filters() {
        assert_eq!(run("name.given").unwrap(), ["A", "B", "C"]);
        assert_eq!(one("name.where(use = 'official').family"), "Official");
        assert_eq!(one("Patient.name[1].given.first()"), "C");
        assert_eq!(run("name[5]").unwrap(), Vec::<String>::new());
        assert_eq!(one("name.given.join(',')"), "A,B,C");
        assert_eq!(one("name.select(given.count()).last()"), "1");
    }

    #[test]
    fn choice_elements_and_types() {
        assert_eq!(one("deceased.ofType(dateTime)"), "2020-01-02");
        assert_eq!(run("deceased.ofType(boolean)").unwrap(), Vec::<String>::new());
        assert_eq!(one("multipleBirth.ofType(integer) = %two"), "true");
        assert_eq!(one("deceased is dateTime"), "true");
        assert_eq!(one("extension('http://x/ext').value.ofType(code)"), "F");
    }

    #[test]
    fn logic_is_three_valued() {
        assert_eq!(one("active and gender = 'female'"), "true");
        assert_eq!(run("active and missing").unwrap(), Vec::<String>::new());
        assert_eq!(one("missing or active"), "true");
        assert_eq!(one("(gender = 'male').not()"), "true");
        assert_eq!(one("missing.empty()"), "true");
        assert_eq!(run("missing = 'x'").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn arithmetic_and_comparison() {
        assert_eq!(one("1 + 2 * 3"), "7");
        assert_eq!(one("3 / 2"), "1.5");
        assert_eq!(one("7 div 2"), "3");
        assert_eq!(one("7 mod 2"), "1");
        assert_eq!(one("'a' + 'b'"), "ab");
        assert_eq!(one("'a' & missing"), "a");
        assert_eq!(one("2.5 > 2"), "true");
        assert_eq!(one("'abc' < 'abd'"), "true");
        assert_eq!(one("%rowIndex"), "7");
        assert_eq!(run("(1 | 2 | 1)").unwrap(), ["1", "2"]);
    }

    #[test]
    fn keys_and_boundaries() {
        assert_eq!(one("getResourceKey()"), "p1");
        assert_eq!(one("link.other.getReferenceKey()"), "p2");
        assert_eq!(one("link.other.getReferenceKey(Patient)"), "p2");
        assert_eq!(
            run("link.other.getReferenceKey(Observation)").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            one("deceased.ofType(dateTime).lowBoundary()"),
            "2020-01-02T00:00:00.000+14:00"
        );
        assert_eq!(one("1.5.highBoundary()"), "1.55");
    }

    #[test]
    fn the_deepest_expressions_allowed_evaluate_on_a_worker_stack() {
        let deepest = super::super::parse::MAX_DEPTH;
        let union = vec!["name"; deepest].join(" | ");
        let conditions = format!(
            "{}name{}",
            "iif(true, ".repeat(deepest - 1),
            ")".repeat(deepest - 1)
        );
        let filters = format!(
            "name{}",
            ".where($this".repeat(deepest / 2 - 1) + &")".repeat(deepest / 2 - 1)
        );
        for path in [union, conditions, filters] {
            // A spawned thread gets Rust's default 2 MiB stack; the workers get 8 times that.
            let outcome = std::thread::spawn(move || run(&path).map(|values| values.len()))
                .join()
                .expect("no stack overflow");
            assert!(outcome.unwrap() > 0);
        }
    }

    #[test]
    fn data_errors_say_what_went_wrong() {
        assert_eq!(
            run("name.given > 'A'").unwrap_err().0,
            "comparison needs one value on each side"
        );
        assert_eq!(run("name.single()").unwrap_err().0, "single() found 2 values");
        assert_eq!(
            run("name and true").unwrap_err().0,
            "expected one boolean, found 2 values"
        );
        assert_eq!(run("%nope").unwrap_err().0, "unknown constant %nope");
        assert_eq!(
            run("name.family + 1").unwrap_err().0,
            "expected one value, found 2"
        );
    }
}
