//! Mutated ViewDefinitions: the shipped views and the SQL on FHIR conformance suite's views with
//! their structure, names, resource types and FHIRPath expressions changed. Each runs alone
//! (a bad view stops the run before any input is read) against a small fixed input.

use serde_json::Value;

use super::corpus::Corpus;
use super::json::{other_kind, replace_node, replace_node_under};
use super::mutate::{byte_flip, cut};
use super::rng::Rng;

/// The mutation classes for views.
pub const VIEW_CLASSES: &[&str] = &[
    "view-structure",
    "view-name",
    "view-resource",
    "view-path",
    "view-deep-path",
    "type-swap",
    "byte-flip",
    "cut",
];

/// One mutated view: its text and what was done to it.
pub struct ViewCase {
    pub text: Vec<u8>,
    pub story: Vec<String>,
}

pub fn generate(rng: &mut Rng, corpus: &Corpus) -> ViewCase {
    let mut text = rng.pick(&corpus.views).clone().into_bytes();
    let mut story = Vec::new();
    for _ in 0..rng.between(1, 3) {
        let class = *rng.pick(VIEW_CLASSES);
        let changed = match class {
            "view-structure" => replace_node_under(rng, &text, STRUCTURE_KEYS, true, |rng, node| {
                odd_structure(rng, node.key.as_deref())
            }),
            "view-name" => set_top_level(&text, "name", Value::String(odd_name(rng))),
            "view-resource" => {
                let resource = rng.pick(&[
                    "Patient",
                    "Observation",
                    "Bundle",
                    "patient",
                    "",
                    "Patient/1",
                    "Ünïcode",
                    "Binary",
                ]);
                set_top_level(&text, "resource", Value::String(resource.to_string()))
            }
            "view-path" => replace_node_under(rng, &text, PATH_KEYS, false, |rng, node| {
                Value::String(odd_path(rng, node.text.trim_matches('"'))).to_string()
            }),
            "view-deep-path" => replace_node_under(rng, &text, PATH_KEYS, false, |rng, node| {
                Value::String(deep_path(rng, node.text.trim_matches('"'))).to_string()
            }),
            "type-swap" => replace_node(rng, &text, |rng, node| other_kind(rng, &node.text)),
            "byte-flip" => Some(byte_flip(rng, &text)),
            _ => Some(cut(rng, &text)),
        };
        if let Some(changed) = changed {
            text = changed;
            story.push(class.to_owned());
        }
    }
    ViewCase { text, story }
}

/// Keys whose values shape a view's table.
const STRUCTURE_KEYS: &[&str] = &[
    "select",
    "column",
    "unionAll",
    "where",
    "constant",
    "forEach",
    "forEachOrNull",
    "repeat",
    "collection",
    "type",
    "name",
];

/// Keys holding FHIRPath expressions.
const PATH_KEYS: &[&str] = &["path", "forEach", "forEachOrNull", "repeat"];

fn odd_structure(rng: &mut Rng, key: Option<&str>) -> String {
    let general = [
        "[]", "[{}]", "{}", "[{\"column\":[]}]", "[{\"select\":[]}]", "[{\"unionAll\":[]}]",
        "[{\"name\":\"c\",\"path\":\"id\"},{\"name\":\"c\",\"path\":\"id\"}]",
        "[{\"column\":[{\"name\":\"x\",\"path\":\"id\",\"type\":\"integer\"}]}]",
        "[{\"forEach\":\"name\",\"column\":[]}]", "[{\"path\":\"\"}]", "null", "\"\"", "true", "[[]]",
        "[{\"name\":\"n\",\"valueInteger\":99999999999}]", "[{\"name\":\"n\",\"valueString\":\"\\u0000\"}]",
        "[{\"column\":[{\"name\":\"c\",\"path\":\"id\"}],\"unionAll\":[{\"column\":[{\"name\":\"d\",\"path\":\"id\"}]}]}]",
    ];
    match key {
        Some("type") => rng
            .pick(&[
                "\"integer\"",
                "\"integer64\"",
                "\"boolean\"",
                "\"decimal\"",
                "\"dateTime\"",
                "\"base64Binary\"",
                "\"Nonsense\"",
                "\"\"",
            ])
            .to_string(),
        Some("collection") => rng.pick(&["true", "false", "\"yes\"", "1"]).to_string(),
        Some("name") => Value::String(odd_name(rng)).to_string(),
        _ => rng.pick(&general).to_string(),
    }
}

/// Names a view or column might be given: path tricks, control characters, reserved names.
fn odd_name(rng: &mut Rng) -> String {
    let names = [
        "../sibling",
        "a/../../b",
        "/abs",
        "x\u{0}y",
        "_state",
        "_deleted",
        ".hidden",
        "",
        ".",
        "..",
        "patient",
        "encounter",
        "CON",
        "a b",
        "ünïcode",
        "tab\there",
        "new\nline",
        "\u{202e}evil",
        "1starts_with_digit",
    ];
    match rng.below(10) {
        0 => "n".repeat(rng.magnitude(100, 100_000)),
        _ => rng.pick(&names).to_string(),
    }
}

/// A FHIRPath expression broken or bent: characters changed, tokens that do not belong, literals
/// out of range.
fn odd_path(rng: &mut Rng, original: &str) -> String {
    const TOKENS: &[&str] = &[
        "name",
        ".",
        "(",
        ")",
        "[",
        "]",
        "0",
        "1.5",
        "'text'",
        "'",
        "`",
        "`div`",
        "where(",
        "exists()",
        "first()",
        "ofType(",
        "Quantity",
        "%resource",
        "%rowIndex",
        "%undefined",
        "$this",
        "$index",
        "@",
        "@2019-13-45",
        "@T25:00",
        "|",
        "and",
        "or",
        "implies",
        "is",
        "as",
        "=",
        "!=",
        "~",
        "<=",
        "+",
        "-",
        "*",
        "/",
        "div",
        "mod",
        "&",
        "{}",
        ",",
        "99999999999999999999",
        "-9223372036854775808",
        "getReferenceKey(",
        "getResourceKey()",
        "join(',')",
        "\u{0}",
        "é",
        "\u{202e}",
        "//",
        "\\",
    ];
    match rng.below(4) {
        0 => (0..rng.between(1, 12))
            .map(|_| *rng.pick(TOKENS))
            .collect::<Vec<_>>()
            .join(if rng.chance(1, 2) { " " } else { "" }),
        1 => {
            let mut chars: Vec<char> = original.chars().collect();
            for _ in 0..rng.between(1, 4) {
                let token: Vec<char> = rng.pick(TOKENS).chars().collect();
                let at = rng.below(chars.len() + 1);
                let end = if rng.chance(1, 2) {
                    (at + 1).min(chars.len())
                } else {
                    at
                };
                chars.splice(at..end, token);
            }
            chars.into_iter().collect()
        }
        2 => format!("{original}.{}", rng.pick(TOKENS)),
        _ => {
            let cut = rng.below(original.chars().count() + 1);
            original.chars().take(cut).collect()
        }
    }
}

/// FHIRPath nested or chained thousands deep: the parser and evaluator recurse over it.
fn deep_path(rng: &mut Rng, original: &str) -> String {
    let depth = rng.magnitude(2, 100_000);
    match rng.below(5) {
        0 => format!("{}{original}{}", "(".repeat(depth), ")".repeat(depth)),
        1 => format!("{}true{}", "where(".repeat(depth), ")".repeat(depth)),
        2 => format!("{original}{}", ".first()".repeat(depth)),
        3 => format!("{}1", "-".repeat(depth)),
        _ => format!("{original}{}", " | id".repeat(depth)),
    }
}

/// Sets a top-level key of the view (when it is a JSON object).
fn set_top_level(text: &[u8], key: &str, value: Value) -> Option<Vec<u8>> {
    let mut view: Value = serde_json::from_slice(text).ok()?;
    view.as_object_mut()?.insert(key.to_owned(), value);
    Some(view.to_string().into_bytes())
}
