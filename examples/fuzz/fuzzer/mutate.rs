//! Mutated input files: a seed from the corpus, changed by one to three mutations of the classes
//! below, written as `.json`, `.ndjson` or `.jsonl`, sometimes gzipped (and then sometimes with
//! the compressed bytes damaged too).

use std::io::Write;

use super::corpus::{Corpus, Layout};
use super::json::{other_kind, replace_node};
use super::rng::Rng;

/// The mutation classes; every input names the ones applied to it.
pub const CLASSES: &[&str] = &[
    "byte-flip",
    "cut",
    "splice",
    "type-swap",
    "odd-unicode",
    "deep-nesting",
    "huge-value",
];

/// Largest input generated (a many-entries Bundle, a long string): big enough to cross the
/// reader's buffers and the tables' batch sizes, small enough for a million inputs in an hour.
const MAX_INPUT_BYTES: usize = 8 << 20;

/// One generated input file.
pub struct Input {
    pub name: String,
    pub bytes: Vec<u8>,
    /// What was done to it, for the findings report.
    pub story: Vec<String>,
    /// Whether fhir2table should skip it by its name (not a FHIR input).
    pub skipped: bool,
}

/// Makes input number `index` of a batch.
pub fn generate(rng: &mut Rng, corpus: &Corpus, index: usize) -> Input {
    let (mut bytes, layout, mut story) = base(rng, corpus);
    // A few inputs stay unmutated: the oracles must hold for the seeds themselves.
    let mutations = if rng.chance(1, 50) { 0 } else { rng.between(1, 3) };
    for _ in 0..mutations {
        let class = *rng.pick(CLASSES);
        bytes = match layout {
            Layout::Ndjson if rng.chance(2, 3) => mutate_one_line(rng, corpus, class, &bytes),
            _ => mutate(rng, corpus, class, &bytes, layout),
        };
        bytes.truncate(MAX_INPUT_BYTES);
        story.push(class.to_owned());
    }
    let extension = match layout {
        Layout::Json => "json",
        Layout::Ndjson if rng.chance(1, 5) => "jsonl",
        Layout::Ndjson => "ndjson",
    };
    if rng.chance(1, 100) {
        story.push("not a FHIR file name".into());
        return Input {
            name: format!("{index:05}.txt"),
            bytes,
            story,
            skipped: true,
        };
    }
    if rng.chance(1, 8) {
        bytes = gzip(&bytes);
        story.push("gzip".into());
        if rng.chance(1, 4) {
            bytes = if rng.chance(1, 2) {
                byte_flip(rng, &bytes)
            } else {
                cut(rng, &bytes)
            };
            story.push("damaged gzip".into());
        }
        return Input {
            name: format!("{index:05}.{extension}.gz"),
            bytes,
            story,
            skipped: false,
        };
    }
    Input {
        name: format!("{index:05}.{extension}"),
        bytes,
        story,
        skipped: false,
    }
}

/// A seed: one resource, a small Bundle or NDJSON file made of resources, or a fixture file.
fn base(rng: &mut Rng, corpus: &Corpus) -> (Vec<u8>, Layout, Vec<String>) {
    match rng.below(100) {
        0..=34 => (
            rng.pick(&corpus.resources).clone().into_bytes(),
            Layout::Json,
            vec!["one resource".into()],
        ),
        35..=54 => {
            let entries: Vec<String> = (0..rng.magnitude(1, 40))
                .map(|n| {
                    let resource = rng.pick(&corpus.resources);
                    format!(r#"{{"fullUrl":"urn:uuid:{n:08x}-0000-4000-8000-000000000000","resource":{resource}}}"#)
                })
                .collect();
            let kind = rng.pick(&["collection", "transaction", "batch-response", "searchset"]);
            let text = format!(
                r#"{{"resourceType":"Bundle","type":"{kind}","entry":[{}]}}"#,
                entries.join(",")
            );
            (text.into_bytes(), Layout::Json, vec!["small Bundle".into()])
        }
        55..=79 => {
            let mut text = String::new();
            for _ in 0..rng.magnitude(1, 60) {
                let resource: &String = rng.pick(&corpus.resources);
                text.push_str(resource);
                text.push_str(if rng.chance(1, 10) { "\r\n" } else { "\n" });
            }
            (
                text.into_bytes(),
                Layout::Ndjson,
                vec!["NDJSON of resources".into()],
            )
        }
        80..=98 => {
            let document = rng.pick(&corpus.small);
            (
                document.bytes.clone(),
                document.layout,
                vec![format!("fixture {}", document.name)],
            )
        }
        _ => {
            let document = rng.pick(&corpus.large);
            (
                document.bytes.clone(),
                document.layout,
                vec![format!("fixture {}", document.name)],
            )
        }
    }
}

/// Mutates one line of an NDJSON text, so the other lines stay good.
fn mutate_one_line(rng: &mut Rng, corpus: &Corpus, class: &str, text: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let chosen = rng.below(lines.len());
    lines[chosen] = mutate(rng, corpus, class, &lines[chosen], Layout::Json);
    lines.join(&b'\n')
}

fn mutate(rng: &mut Rng, corpus: &Corpus, class: &str, bytes: &[u8], layout: Layout) -> Vec<u8> {
    match class {
        "byte-flip" => byte_flip(rng, bytes),
        "cut" => cut(rng, bytes),
        "splice" => splice(rng, corpus, bytes),
        "type-swap" => replace_node(rng, bytes, |rng, node| other_kind(rng, &node.text))
            .unwrap_or_else(|| textual_type_swap(rng, bytes)),
        "odd-unicode" => odd_unicode(rng, bytes),
        "deep-nesting" => deep_nesting(rng, corpus, bytes, layout),
        "huge-value" => huge_value(rng, corpus, bytes, layout),
        other => unreachable!("unknown mutation class {other}"),
    }
}

/// Flips bits, or sets bytes to JSON's structural characters, at a few places.
pub fn byte_flip(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    if bytes.is_empty() {
        return b"{".to_vec();
    }
    for _ in 0..rng.magnitude(1, 64) {
        let at = rng.below(bytes.len());
        bytes[at] = match rng.below(3) {
            0 => bytes[at] ^ (1 << rng.below(8)),
            1 => *rng.pick(b"{}[]\":,\\ \n\r0-.eE"),
            _ => rng.next_u64() as u8,
        };
    }
    bytes
}

/// Truncates, or removes a span from the middle.
pub fn cut(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let at = rng.below(bytes.len() + 1);
    if rng.chance(2, 3) {
        return bytes[..at].to_vec();
    }
    let end = (at + rng.magnitude(1, 4096)).min(bytes.len());
    [&bytes[..at], &bytes[end..]].concat()
}

/// Inserts (or overwrites with) a span of another seed.
fn splice(rng: &mut Rng, corpus: &Corpus, bytes: &[u8]) -> Vec<u8> {
    let donor: &[u8] = if rng.chance(3, 4) {
        rng.pick(&corpus.resources).as_bytes()
    } else {
        &rng.pick(&corpus.small).bytes
    };
    let start = rng.below(donor.len());
    let end = (start + rng.magnitude(1, 4096)).min(donor.len());
    let at = rng.below(bytes.len() + 1);
    let resume = if rng.chance(1, 2) {
        (at + end - start).min(bytes.len())
    } else {
        at
    };
    [&bytes[..at], &donor[start..end], &bytes[resume..]].concat()
}

/// For text that is not JSON: replaces a quoted string with a number, object, array or null.
fn textual_type_swap(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let quotes: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'"')
        .map(|(i, _)| i)
        .collect();
    if quotes.len() < 2 {
        return byte_flip(rng, bytes);
    }
    let first = rng.below(quotes.len() - 1);
    let (start, end) = (quotes[first], quotes[first + 1] + 1);
    let replacement = other_kind(rng, "\"\"");
    [&bytes[..start], replacement.as_bytes(), &bytes[end..]].concat()
}

/// Text that tends to find encoding bugs, as raw bytes (some of them not UTF-8 at all).
const ODD_UNICODE: &[&[u8]] = &[
    b"\\ud800",
    b"\\udfff",
    b"\\udc00\\ud800",
    b"\\ud83d",
    b"\\u0000",
    b"\0",
    "\u{feff}".as_bytes(),
    "\u{202e}\u{202d}".as_bytes(),
    "\u{200f}\u{05d0}\u{05d1}".as_bytes(),
    "e\u{301}\u{302}\u{303}\u{304}\u{305}\u{306}\u{307}\u{308}".as_bytes(),
    "\u{2028}\u{2029}".as_bytes(),
    "\u{fffd}\u{ffff}".as_bytes(),
    "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}".as_bytes(),
    "\u{10ffff}".as_bytes(),
    b"\xff",
    b"\xc3",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe2\x82",
    b"\r",
    b"\x1b[31m",
];

/// Inserts odd Unicode: inside a string (after a quote), at the start (a BOM) or anywhere.
fn odd_unicode(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let piece = *rng.pick(ODD_UNICODE);
    let piece: Vec<u8> = if rng.chance(1, 10) {
        piece.repeat(rng.magnitude(2, 10_000))
    } else {
        piece.to_vec()
    };
    let at = match rng.below(10) {
        0 => 0,
        1..=6 => {
            let quotes: Vec<usize> = bytes
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'"')
                .map(|(i, _)| i + 1)
                .collect();
            if quotes.is_empty() {
                rng.below(bytes.len() + 1)
            } else {
                *rng.pick(&quotes)
            }
        }
        _ => rng.below(bytes.len() + 1),
    };
    [&bytes[..at], &piece, &bytes[at..]].concat()
}

/// Bundles nested in Bundles, or arrays and objects nested thousands deep.
fn deep_nesting(rng: &mut Rng, corpus: &Corpus, bytes: &[u8], layout: Layout) -> Vec<u8> {
    // Most nests are a few hundred deep (past every parser's limit); a quarter go to the extremes.
    let extreme = rng.chance(1, 4);
    let depth = rng.magnitude(2, if extreme { 20_000 } else { 2_000 });
    if rng.chance(1, 2) {
        let inner = rng.pick(&corpus.resources);
        let open = r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":"#;
        let nested = format!("{}{inner}{}", open.repeat(depth), "}]}".repeat(depth));
        return place_document(rng, bytes, layout, &nested);
    }
    let depth = rng.magnitude(2, if extreme { 200_000 } else { 5_000 });
    let (open, close) = *rng.pick(&[
        ("[", "]"),
        ("{\"a\":", "}"),
        ("[{\"extension\":", "}]"),
        ("{\"resource\":[", "]}"),
    ]);
    replace_node(rng, bytes, |_, node| {
        format!("{}{}{}", open.repeat(depth), node.text, close.repeat(depth))
    })
    .unwrap_or_else(|| {
        let at = rng.below(bytes.len() + 1);
        [
            &bytes[..at],
            open.repeat(depth).as_bytes(),
            &bytes[at..],
            close.repeat(depth).as_bytes(),
        ]
        .concat()
    })
}

/// Puts a whole JSON document into the input: as a Bundle entry when there is an entry list, as
/// a line of an NDJSON file, else instead of the input.
fn place_document(rng: &mut Rng, bytes: &[u8], layout: Layout, document: &str) -> Vec<u8> {
    const ENTRY_LIST: &[u8] = b"\"entry\":[";
    if let Some(at) = bytes.windows(ENTRY_LIST.len()).position(|w| w == ENTRY_LIST) {
        let at = at + ENTRY_LIST.len();
        let comma = if bytes.get(at) == Some(&b']') { "" } else { "," };
        return [
            &bytes[..at],
            format!(r#"{{"resource":{document}}}{comma}"#).as_bytes(),
            &bytes[at..],
        ]
        .concat();
    }
    if layout == Layout::Ndjson {
        let at = rng.below(bytes.len() + 1);
        let at = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| at + p + 1);
        return [&bytes[..at], document.as_bytes(), b"\n", &bytes[at..]].concat();
    }
    document.as_bytes().to_vec()
}

/// Long strings and keys, numbers beyond any machine type, Bundles with many entries, files with
/// many lines, objects with many keys.
fn huge_value(rng: &mut Rng, corpus: &Corpus, bytes: &[u8], layout: Layout) -> Vec<u8> {
    let size = if rng.chance(1, 16) {
        rng.magnitude(64 << 10, MAX_INPUT_BYTES)
    } else {
        rng.magnitude(1 << 10, 64 << 10)
    };
    match rng.below(5) {
        0 => {
            let unit = *rng.pick(&["x", "é", "\\u00e9", "\\n", "𝕏", " "]);
            let text = format!("\"{}\"", unit.repeat(size / unit.len()));
            replace_node(rng, bytes, |_, _| text.clone()).unwrap_or_else(|| [bytes, text.as_bytes()].concat())
        }
        1 => {
            let digits = "9".repeat(rng.magnitude(10, size));
            let number = match rng.below(4) {
                0 => digits,
                1 => format!("-0.{digits}"),
                2 => format!("1e{digits}"),
                _ => format!("{digits}.5e-{}", rng.magnitude(10, 1 << 20)),
            };
            replace_node(rng, bytes, |_, _| number.clone())
                .unwrap_or_else(|| [bytes, number.as_bytes()].concat())
        }
        2 => {
            let resource = rng.pick(&corpus.resources);
            let count = (size / (resource.len() + 16)).clamp(2, 100_000);
            let entry = format!(r#"{{"resource":{resource}}}"#);
            let entries = vec![entry; count].join(",");
            format!(r#"{{"resourceType":"Bundle","type":"collection","entry":[{entries}]}}"#).into_bytes()
        }
        3 => {
            let line = rng.pick(&corpus.resources);
            let count = (size / (line.len() + 1)).clamp(2, 100_000);
            let lines = format!("{line}\n").repeat(count);
            match layout {
                Layout::Ndjson => [bytes, lines.as_bytes()].concat(),
                Layout::Json => place_document(rng, bytes, layout, &lines),
            }
        }
        _ => {
            let keys: Vec<String> = (0..(size / 12).max(2)).map(|k| format!("\"k{k}\":{k}")).collect();
            let object = format!("{{{}}}", keys.join(","));
            replace_node(rng, bytes, |_, _| object.clone()).unwrap_or_else(|| object.into_bytes())
        }
    }
}

/// Gzip at the fastest level (the reader decompresses any level alike).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}
