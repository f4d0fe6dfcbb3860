//! Changing one node of a JSON document without knowing its schema: pick a node at random (or
//! one under a key the pipeline cares about) and replace its text. The document is re-serialised
//! around a marker string, so the replacement can be any text at all: a 100,000-deep nest, a
//! 10 MB string, a number no float can hold.

use serde_json::Value;

use super::rng::Rng;

/// Keys whose values the walker, the tables and the views read; nodes under them are picked more
/// often than a uniform draw over a big resource would pick them.
const INTERESTING_KEYS: &[&str] = &[
    "resourceType",
    "entry",
    "resource",
    "fullUrl",
    "request",
    "method",
    "url",
    "id",
    "birthDate",
    "deceasedDateTime",
    "period",
    "start",
    "end",
    "subject",
    "patient",
    "reference",
    "identifier",
    "system",
    "value",
    "gender",
    "name",
    "family",
    "given",
    "status",
    "class",
    "code",
    "coding",
    "effectiveDateTime",
    "valueQuantity",
    "extension",
    "contained",
    "meta",
    "lastUpdated",
    "column",
    "select",
    "path",
    "forEach",
    "forEachOrNull",
    "where",
    "unionAll",
    "constant",
    "type",
    "collection",
    "repeat",
];

const MARKER: &str = "\u{1}fuzz-node\u{1}";

/// A node of the document: its JSON text and the key it sits under (if in an object).
pub struct Node {
    pub text: String,
    pub key: Option<String>,
}

/// Replaces one node of `document` (JSON text) with `replace(node)`; `None` when the text is
/// not JSON (callers fall back to byte-level changes).
pub fn replace_node(
    rng: &mut Rng,
    document: &[u8],
    replace: impl FnOnce(&mut Rng, &Node) -> String,
) -> Option<Vec<u8>> {
    replace_node_under(rng, document, INTERESTING_KEYS, true, replace)
}

/// Like [`replace_node`], but picks among the nodes under `keys` (and, when `or_any`, now and
/// then any node); `None` also when no node sits under those keys.
pub fn replace_node_under(
    rng: &mut Rng,
    document: &[u8],
    keys: &[&str],
    or_any: bool,
    replace: impl FnOnce(&mut Rng, &Node) -> String,
) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(document).ok()?;
    let mut nodes = Vec::new();
    list_nodes(&value, None, &mut nodes);
    let under_keys: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, key)| key.as_deref().is_some_and(|k| keys.contains(&k)))
        .map(|(index, _)| index)
        .collect();
    let chosen = if !under_keys.is_empty() && (!or_any || rng.chance(1, 2)) {
        *rng.pick(&under_keys)
    } else if or_any {
        rng.below(nodes.len())
    } else {
        return None;
    };
    let slot = nth_node(&mut value, &mut { chosen })?;
    let node = Node {
        text: slot.to_string(),
        key: nodes[chosen].clone(),
    };
    *slot = Value::String(MARKER.to_owned());
    let replacement = replace(rng, &node);
    let text = value.to_string();
    let marker = Value::String(MARKER.to_owned()).to_string();
    Some(text.replacen(&marker, &replacement, 1).into_bytes())
}

/// Every node in depth-first order, with the key it is stored under.
fn list_nodes(value: &Value, key: Option<&str>, nodes: &mut Vec<Option<String>>) {
    nodes.push(key.map(str::to_owned));
    match value {
        Value::Array(items) => items.iter().for_each(|item| list_nodes(item, key, nodes)),
        Value::Object(map) => map.iter().for_each(|(k, item)| list_nodes(item, Some(k), nodes)),
        _ => {}
    }
}

/// The node numbered `index` in the order of [`list_nodes`].
fn nth_node<'v>(value: &'v mut Value, index: &mut usize) -> Option<&'v mut Value> {
    if *index == 0 {
        return Some(value);
    }
    *index -= 1;
    match value {
        Value::Array(items) => items.iter_mut().find_map(|item| nth_node(item, index)),
        Value::Object(map) => map.values_mut().find_map(|item| nth_node(item, index)),
        _ => None,
    }
}

/// A JSON value of a different kind than `text` (string, number, object, array, null, boolean).
pub fn other_kind(rng: &mut Rng, text: &str) -> String {
    const KINDS: &[&[&str]] = &[
        &["\"\"", "\"x\"", "\"Patient\"", "\"2019-13-45\"", "\"urn:uuid:x\""],
        &[
            "0",
            "-1",
            "1.5",
            "1e308",
            "-0",
            "2147483648",
            "9223372036854775808",
            "1e-400",
        ],
        &[
            "{}",
            "{\"resourceType\":\"Patient\"}",
            "{\"reference\":\"Patient/1\"}",
            "{\"\":null}",
        ],
        &["[]", "[null]", "[1,\"a\",{}]", "[[]]"],
        &["null"],
        &["true", "false"],
    ];
    let current = match text.as_bytes().first() {
        Some(b'"') => 0,
        Some(b'-' | b'0'..=b'9') => 1,
        Some(b'{') => 2,
        Some(b'[') => 3,
        Some(b'n') => 4,
        _ => 5,
    };
    let mut kind = rng.below(KINDS.len() - 1);
    if kind >= current {
        kind += 1;
    }
    rng.pick(KINDS[kind]).to_string()
}
