//! A resource's JSON as a tree that borrows from the input: keys, numbers and strings without
//! escapes are slices of the resource's text, and an object is one vector of its members in
//! document order. Views evaluate FHIRPath over it; building and dropping it costs a fraction of a
//! `serde_json::Value` (no allocation per key or string, no sorted map per object), and it is
//! built once per resource however many views read it.
//!
//! It reads what `serde_json` reads and nothing else (the text has already passed `serde_json`
//! when it gets here, but this parser checks everything itself and never panics): the same
//! nesting limit, the same escapes (a lone surrogate is an error), and an object's duplicate key
//! means its last value, as in `serde_json::Value`.

use std::borrow::Cow;
use std::fmt;

/// A JSON value of a resource.
///
/// A word-sized tag (`repr(u64)`) keeps every payload word-aligned: with a byte tag, a `Bool`'s
/// payload sits at offset 1, every value returned while parsing is copied from offset 1, and
/// those copies of just-written words stall store forwarding (measured: a quarter of the parse).
#[derive(Debug, Clone, PartialEq)]
#[repr(u64)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    /// A number as written (`1.50`, `1e2`, `-0`): FHIR decimals keep their precision.
    Number(Cow<'a, str>),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Object<'a>),
}

/// An object's members in document order.
#[derive(Debug, Clone, Default)]
pub struct Object<'a>(pub Vec<(Cow<'a, str>, Node<'a>)>);

/// Equal when they have the same keys with equal (last) values, in any order, as
/// `serde_json::Value` compares objects.
impl PartialEq for Object<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.sorted() == other.sorted()
    }
}

impl<'a> Object<'a> {
    /// The value of `key` (the last one, if the key is repeated).
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The members in key order (each key once, with its last value), as `serde_json::Value`
    /// iterates them: where the order shows in results, it is the order it always was.
    pub fn sorted(&self) -> Vec<(&str, &Node<'a>)> {
        let mut order = vec![0; self.0.len()];
        self.last_of_each_key(&mut order).collect()
    }

    /// The members in key order, each key once with its last value; `order`, as long as the
    /// object, is where their indexes are sorted.
    fn last_of_each_key<'s, 'o>(
        &'s self,
        order: &'o mut [u32],
    ) -> impl Iterator<Item = (&'s str, &'s Node<'a>)> + 'o
    where
        's: 'o,
    {
        let members = &self.0;
        for (place, index) in order.iter_mut().zip(0u32..) {
            *place = index;
        }
        // Stable, so a repeated key's members stay in document order and the last is kept.
        order.sort_by(|a, b| members[*a as usize].0.cmp(&members[*b as usize].0));
        let order = &*order;
        order.iter().enumerate().filter_map(move |(at, index)| {
            let (key, value) = &members[*index as usize];
            let repeated = order
                .get(at + 1)
                .is_some_and(|next| members[*next as usize].0 == *key);
            (!repeated).then_some((key.as_ref(), value))
        })
    }
}

impl<'a> Node<'a> {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(object) => object.get(key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Node::Object(_))
    }

    /// A tree that owns its text, from any `serde_json::Value` (view constants).
    pub fn from_value(value: &serde_json::Value) -> Node<'static> {
        match value {
            serde_json::Value::Null => Node::Null,
            serde_json::Value::Bool(b) => Node::Bool(*b),
            serde_json::Value::Number(number) => Node::Number(Cow::Owned(number.to_string())),
            serde_json::Value::String(text) => Node::String(Cow::Owned(text.clone())),
            serde_json::Value::Array(items) => Node::Array(items.iter().map(Node::from_value).collect()),
            serde_json::Value::Object(map) => Node::Object(Object(
                map.iter()
                    .map(|(k, v)| (Cow::Owned(k.clone()), Node::from_value(v)))
                    .collect(),
            )),
        }
    }
}

/// JSON text, with object keys in sorted order as `serde_json::Value` writes them.
impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_json(f)
    }
}

impl Node<'_> {
    /// Writes the value as JSON text to `out`, as `Display` shows it: object keys sorted, each
    /// once with its last value. Why not `write!(out, "{node}")`: the resource tables write
    /// every JSON-text member so (contained resources, extensions below the typed depth), and
    /// going through `fmt` for each nested value, with a vector allocated to sort each
    /// object's keys, was 2.7% of the instructions of `--resources all` on Bulk NDJSON.
    pub fn write_json<W: fmt::Write>(&self, out: &mut W) -> fmt::Result {
        match self {
            Node::Null => out.write_str("null"),
            Node::Bool(true) => out.write_str("true"),
            Node::Bool(false) => out.write_str("false"),
            Node::Number(text) => out.write_str(text),
            Node::String(text) => write_string(out, text),
            Node::Array(items) => {
                out.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.write_str(",")?;
                    }
                    item.write_json(out)?;
                }
                out.write_str("]")
            }
            Node::Object(object) => object.write_json(out),
        }
    }
}

impl Object<'_> {
    /// Members an object may have for [`Object::write_json`] to sort them in place, without
    /// allocating (every FHIR element has fewer).
    const SORTED_IN_PLACE: usize = 64;

    /// [`Node::write_json`] of an object.
    fn write_json<W: fmt::Write>(&self, out: &mut W) -> fmt::Result {
        let mut on_stack = [0u32; Self::SORTED_IN_PLACE];
        let mut on_heap = Vec::new();
        let order = match self.0.len() <= Self::SORTED_IN_PLACE {
            true => &mut on_stack[..self.0.len()],
            false => {
                on_heap.resize(self.0.len(), 0);
                &mut on_heap[..]
            }
        };
        write_members(out, self.last_of_each_key(order))
    }
}

/// An object of `members` (in the order given) as JSON text.
fn write_members<'n, 'a: 'n, W: fmt::Write>(
    out: &mut W,
    members: impl Iterator<Item = (&'n str, &'n Node<'a>)>,
) -> fmt::Result {
    out.write_str("{")?;
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.write_str(",")?;
        }
        write_string(out, key)?;
        out.write_str(":")?;
        value.write_json(out)?;
    }
    out.write_str("}")
}

fn write_string<W: fmt::Write>(out: &mut W, text: &str) -> fmt::Result {
    // serde_json's escaping: the two-character escapes, \u00XX for other control characters.
    // Runs without a character to escape go out in one piece (a character at a time through
    // `write!` was most of the cost of writing JSON text).
    out.write_str("\"")?;
    let mut rest = text;
    while let Some(stop) = string_stop(rest.as_bytes()) {
        out.write_str(&rest[..stop])?;
        match rest.as_bytes()[stop] {
            b'"' => out.write_str("\\\"")?,
            b'\\' => out.write_str("\\\\")?,
            b'\n' => out.write_str("\\n")?,
            b'\r' => out.write_str("\\r")?,
            b'\t' => out.write_str("\\t")?,
            0x08 => out.write_str("\\b")?,
            0x0c => out.write_str("\\f")?,
            control => write!(out, "\\u{control:04x}")?,
        }
        rest = &rest[stop + 1..];
    }
    out.write_str(rest)?;
    out.write_str("\"")
}

/// Where a string's plain run ends: the offset of the first `"`, `\\` or control character.
/// Sixteen bytes at a time where SSE2 is (every x86-64), then eight at a time: most of the text
/// in FHIR strings is in strings of 32 to 255 bytes (references, codings' systems, displays),
/// and the slice searched runs on to the end of the document, so the sixteen-byte steps rarely
/// meet its end.
fn string_stop(bytes: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    // SAFETY: the build's target has SSE2 (the cfg above; every x86-64 does).
    let at = match unsafe { string_stop_sse2(bytes) } {
        Ok(found) => return Some(found),
        Err(searched) => searched,
    };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let at = 0;
    string_stop_words(bytes, at)
}

/// [`string_stop`] over the whole sixteen-byte blocks of `bytes`: the stop found, or how many
/// bytes were searched without one.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn string_stop_sse2(bytes: &[u8]) -> Result<usize, usize> {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
    let quote = _mm_set1_epi8(b'"' as i8);
    let backslash = _mm_set1_epi8(b'\\' as i8);
    let last_control = _mm_set1_epi8(0x1f);
    first_flagged_sse2(bytes, |block| {
        // A byte is a control character when the unsigned maximum of it and 0x1f is 0x1f.
        let control = _mm_cmpeq_epi8(_mm_max_epu8(block, last_control), last_control);
        let stops = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(block, quote), _mm_cmpeq_epi8(block, backslash)),
            control,
        );
        _mm_movemask_epi8(stops) as u32
    })
}

/// How many bytes of whitespace `bytes` starts with, when the run ends inside its whole
/// sixteen-byte blocks; else how many bytes those blocks hold (all whitespace). One compare per
/// block finds the end of an indent that a byte loop took a dozen steps for.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn whitespace_sse2(bytes: &[u8]) -> Result<usize, usize> {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
    let (space, line, ret, tab) = (
        _mm_set1_epi8(b' ' as i8),
        _mm_set1_epi8(b'\n' as i8),
        _mm_set1_epi8(b'\r' as i8),
        _mm_set1_epi8(b'\t' as i8),
    );
    first_flagged_sse2(bytes, |block| {
        let white = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(block, space), _mm_cmpeq_epi8(block, line)),
            _mm_or_si128(_mm_cmpeq_epi8(block, ret), _mm_cmpeq_epi8(block, tab)),
        );
        // The run ends at the first byte that is not whitespace.
        !_mm_movemask_epi8(white) as u32 & 0xffff
    })
}

/// The length of the whitespace `bytes` starts with when it is a line break and an indent of
/// fewer than 32 spaces followed by a byte that is not whitespace, the run between
/// pretty-printed members (nine in ten of Synthea's indents, at two or four spaces a level);
/// `None` for any other run (or too little text to look at), which [`whitespace_sse2`]
/// measures. Two compares find it where the general search took four a block.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn line_break_and_indent_sse2(bytes: &[u8]) -> Option<usize> {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let (b'\n', Some(indent)) = (*bytes.first()?, bytes.get(1..33)) else {
        return None;
    };
    let space = _mm_set1_epi8(b' ' as i8);
    // SAFETY: `indent` is 32 readable bytes; each load takes sixteen of them unaligned.
    let (low, high) = unsafe {
        (
            _mm_loadu_si128(indent.as_ptr().cast::<__m128i>()),
            _mm_loadu_si128(indent.as_ptr().add(16).cast::<__m128i>()),
        )
    };
    let spaces = _mm_movemask_epi8(_mm_cmpeq_epi8(low, space)) as u16 as u32
        | (_mm_movemask_epi8(_mm_cmpeq_epi8(high, space)) as u16 as u32) << 16;
    let width = (!spaces).trailing_zeros() as usize;
    (width < 32 && !is_json_whitespace(indent[width])).then_some(1 + width)
}

/// The offset of the first byte `flags` marks in the whole sixteen-byte blocks of `bytes`
/// (`flags` gives a block's marks as the low 16 bits of a mask, bit i for byte i), or how many
/// bytes were searched without one: the block walk [`string_stop_sse2`] and
/// [`whitespace_sse2`] share.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn first_flagged_sse2(
    bytes: &[u8],
    flags: impl Fn(std::arch::x86_64::__m128i) -> u32,
) -> Result<usize, usize> {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128};
    let mut at = 0;
    while let Some(block) = bytes.get(at..at + 16) {
        // SAFETY: `block` is sixteen readable bytes; the load takes them unaligned.
        let block = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        let marks = flags(block);
        if marks != 0 {
            return Ok(at + marks.trailing_zeros() as usize);
        }
        at += 16;
    }
    Err(at)
}

/// [`string_stop`] from `at` on, eight bytes at a time, then one.
fn string_stop_words(bytes: &[u8], mut at: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A byte's high bit is set where it is a quote, a backslash or below 0x20. Only the
        // lowest flagged byte is sure (a borrow can flag bytes above it), and it is the one used.
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let flagged = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let flagged = flagged & HIGHS;
        if flagged != 0 {
            return Some(at + (flagged.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|offset| at + offset)
}

/// Eight spaces, as one word.
const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);

/// JSON's four whitespace bytes (RFC 8259): Rust's `is_ascii_whitespace` also takes form feed,
/// which JSON does not.
#[inline(always)]
pub(super) const fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\n' | b'\r' | b'\t')
}

/// `str::trim_start`, the JSON whitespace (the only kind JSON allows, a line break and an indent
/// before most keys of pretty-printed Bundles) stepped over a byte at a time; any other
/// whitespace is left to `trim_start`, so the result is the same. `trim_start` decodes and
/// classifies each character: with it, reading resource types was 1.3% of a `--resources all`
/// run on 500 MB of Bundles.
pub(crate) fn trim_start(text: &str) -> &str {
    let json_whitespace = text
        .bytes()
        .position(|byte| !is_json_whitespace(byte))
        .unwrap_or(text.len());
    let rest = &text[json_whitespace..];
    match rest.as_bytes().first() {
        // Vertical tab, form feed, and the start of every non-ASCII character.
        Some(0x0b | 0x0c | 0x80..) => rest.trim_start(),
        _ => rest,
    }
}

/// Arrays and objects nest to fewer levels than this: `serde_json`'s own limit.
const MAX_DEPTH: usize = 128;

/// Why a text is not a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeError(pub String);

/// Parses one JSON value (surrounding whitespace allowed, nothing after it).
pub fn parse(text: &str) -> Result<Node<'_>, TreeError> {
    parse_keeping(text, &Keep::All)
}

/// [`parse`], building only the members `keep` names: the others are read and checked as
/// thoroughly (the same errors for the same text) but not built. Views keep what their paths
/// can reach, so a large resource of which they read a few elements costs little more than a
/// scan.
pub fn parse_keeping<'a>(text: &'a str, keep: &Keep) -> Result<Node<'a>, TreeError> {
    parse_skipping(text, keep, &[])
}

/// [`parse_keeping`], jumping over the skipped values that are among `checked`: slices of
/// `text` that are whole JSON values `serde_json` already read (a Bundle's entry resources,
/// which the walker read). Reading them again to skip them cost a Bundle's envelope as much as
/// parsing every resource in it. A value that starts where a checked slice starts ends where
/// that slice ends, so the tree is the one [`parse_keeping`] gives. One difference in errors:
/// a jumped value's own nesting does not count against the depth limit, as it did not when
/// `serde_json` read it (its `RawValue` has no limit); each resource is held to the limit from
/// its own root when it is parsed as a row ([`parse_nested`] for one kept where it is).
pub fn parse_skipping<'a>(text: &'a str, keep: &Keep, checked: &[&str]) -> Result<Node<'a>, TreeError> {
    let base = text.as_ptr() as usize;
    let mut jumps: Vec<(usize, usize)> = checked
        .iter()
        .filter_map(|slice| {
            let start = (slice.as_ptr() as usize).checked_sub(base)?;
            let end = start.checked_add(slice.len())?;
            (end <= text.len() && !slice.is_empty()).then_some((start, end))
        })
        .collect();
    jumps.sort_unstable();
    Parser { text, at: 0, jumps }.whole(0, keep)
}

/// [`parse`] of a value that sits `depth` arrays and objects down in a larger document (a
/// Bundle entry's resource: 3), so that the nesting limit counts from that document's root and
/// the value can be put back into the document's tree.
pub fn parse_nested(text: &str, depth: usize) -> Result<Node<'_>, TreeError> {
    let parser = Parser {
        text,
        at: 0,
        jumps: Vec::new(),
    };
    parser.whole(depth, &Keep::All)
}

/// Which members of the objects at one place in a tree are built. A name also keeps the choice
/// elements it stands for (`value` keeps `valueQuantity`), and `resourceType` is always kept.
/// The members of an array's elements are chosen by the array's own entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// Everything below.
    All,
    /// These members, each with what to keep below it.
    Members(Vec<(String, Keep)>),
    /// Every member but these: each named member with what to keep below it, `None` to skip
    /// it, unless its value is `null` (which costs nothing to keep, and is kept: a Bundle's
    /// envelope skips its entries' resources, while `"resource": null` must survive).
    AllBut(Vec<(String, Option<Keep>)>),
}

impl Keep {
    /// What to keep under the member `key`; `None`: skip it. A key can stand for several names
    /// (`classHistory` is itself and, by the choice rule, `class`): then what any of them keeps.
    fn member(&self, key: &str) -> Option<Cow<'_, Keep>> {
        let members = match self {
            Keep::All => return Some(Cow::Borrowed(self)),
            Keep::Members(members) => members,
            Keep::AllBut(except) => {
                return match except.iter().find(|(name, _)| name == key) {
                    Some((_, below)) => below.as_ref().map(Cow::Borrowed),
                    None => Some(Cow::Borrowed(&Keep::All)),
                }
            }
        };
        if key == "resourceType" {
            return Some(Cow::Borrowed(&Keep::All));
        }
        let mut matching = members.iter().filter(|(name, _)| {
            key.strip_prefix(name.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase()))
        });
        let (_, first) = matching.next()?;
        let mut kept = Cow::Borrowed(first);
        for (_, other) in matching {
            kept = Cow::Owned(kept.union(other));
        }
        Some(kept)
    }

    /// What either keeps.
    fn union(&self, other: &Keep) -> Keep {
        let (Keep::Members(mine), Keep::Members(theirs)) = (self, other) else {
            return Keep::All;
        };
        let mut members = mine.clone();
        for (name, keep) in theirs {
            match members.iter_mut().find(|(n, _)| n == name) {
                Some((_, existing)) => *existing = existing.union(keep),
                None => members.push((name.clone(), keep.clone())),
            }
        }
        Keep::Members(members)
    }
}

/// A JSON value read a piece at a time, for the resource tables, which build their columns
/// straight from the text (`src/table/lossless/rows/stream.rs`): building a tree first and
/// walking it was a sixth of a `--resources all` run. The same checks as [`parse`] (the nesting
/// limit, escapes, numbers, what may follow what) and the same scalars: a string unescaped, a
/// number as the tree keeps it.
///
/// The caller drives it: [`Reader::peek`] tells what the next value is, [`Reader::open`] enters
/// an object or array, [`Reader::next_key`] and [`Reader::next_item`] step through it, and the
/// scalar readers take one value. Any error is final: the caller gives up on the text.
pub struct Reader<'a> {
    parser: Parser<'a>,
    /// Objects and arrays open around the next value.
    depth: usize,
    /// Whether the innermost object or array was just opened (no member or item read yet).
    fresh: bool,
}

/// A key [`Reader::next_key_expecting`] looks for. The implementer must accept only bytes
/// without a quote, backslash or control character (the reader does not check, but for a
/// debug assertion): text that writes such bytes between quotes writes them as they are, so
/// accepting them accepts that key. A trait rather than a closure: the check is a few
/// instructions, and as a closure it was left a call of its own.
pub trait ExpectedKey {
    /// The key's length in bytes.
    fn byte_len(&self) -> usize;
    /// Whether `raw`, `byte_len()` bytes written between quotes, is the key.
    fn is(&self, raw: &[u8]) -> bool;
}

#[cfg(test)]
impl ExpectedKey for [u8] {
    fn byte_len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn is(&self, raw: &[u8]) -> bool {
        raw == self
    }
}

/// What [`Reader::next_key_expecting`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum NextKey<'a> {
    /// The end of the object, which is then left.
    End,
    /// The key expected.
    Expected,
    /// Another key, unescaped.
    Other(Cow<'a, str>),
}

/// What the next value is, by its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `text`, a whole JSON value.
    pub fn new(text: &'a str) -> Self {
        let mut parser = Parser {
            text,
            at: 0,
            jumps: Vec::new(),
        };
        parser.whitespace();
        Reader {
            parser,
            depth: 0,
            fresh: false,
        }
    }

    /// What the value here is (`None`: no value can start here).
    #[inline]
    pub fn peek(&self) -> Option<Start> {
        match self.parser.peek()? {
            b'{' => Some(Start::Object),
            b'[' => Some(Start::Array),
            b'"' => Some(Start::String),
            b'-' | b'0'..=b'9' => Some(Start::Number),
            b't' | b'f' => Some(Start::Bool),
            b'n' => Some(Start::Null),
            _ => None,
        }
    }

    /// Enters the object or array here.
    #[inline(always)]
    pub fn open(&mut self) -> Result<(), TreeError> {
        if !matches!(self.parser.peek(), Some(b'{' | b'[')) {
            return Err(self.parser.error("expected an object or an array"));
        }
        if self.depth + 1 >= MAX_DEPTH {
            return Err(self.parser.error("recursion limit exceeded"));
        }
        self.depth += 1;
        self.parser.at += 1;
        self.parser.whitespace();
        self.fresh = true;
        Ok(())
    }

    /// The next key of the object being read, with the reader on its value; `None` at the end
    /// of the object, which is then left.
    #[inline]
    pub fn next_key(&mut self) -> Result<Option<Cow<'a, str>>, TreeError> {
        if !self.more(b'}')? {
            return Ok(None);
        }
        let key = self.string()?;
        self.colon()?;
        Ok(Some(key))
    }

    /// Steps from a key's closing quote onto its value: whitespace, the colon, whitespace. The
    /// colon right after the key, then the value or (pretty-printed text) one space and the
    /// value, is stepped over without a call for the space.
    #[inline(always)]
    fn colon(&mut self) -> Result<(), TreeError> {
        let bytes = self.parser.text.as_bytes();
        let at = self.parser.at;
        if bytes.get(at) == Some(&b':') {
            let after = at + 1;
            self.parser.at = if bytes.get(after) == Some(&b' ') {
                after + 1
            } else {
                after
            };
            self.parser.whitespace();
            return Ok(());
        }
        self.parser.whitespace();
        self.parser.expect(b':')?;
        self.parser.whitespace();
        Ok(())
    }

    /// [`Reader::next_key`] for a caller that expects a key: when the next key is, as written,
    /// the `expected` one, the reader steps onto its value without scanning the key for its
    /// end ([`NextKey::Expected`]). Keys are most of what an object's text holds, and the
    /// resource tables guess each one from the object before (`src/table/lossless/rows/stream.rs`):
    /// scanning them was 3% of a `--resources all` run.
    #[inline(always)]
    pub fn next_key_expecting<E: ExpectedKey + ?Sized>(
        &mut self,
        expected: &E,
    ) -> Result<NextKey<'a>, TreeError> {
        if !self.more(b'}')? {
            return Ok(NextKey::End);
        }
        let bytes = self.parser.text.as_bytes();
        let at = self.parser.at;
        let len = expected.byte_len();
        if bytes.get(at) != Some(&b'"')
            || bytes.get(at + 1 + len) != Some(&b'"')
            || !expected.is(&bytes[at + 1..at + 1 + len])
        {
            let key = self.string()?;
            self.colon()?;
            return Ok(NextKey::Other(key));
        }
        debug_assert!(
            !bytes[at + 1..at + 1 + len]
                .iter()
                .any(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20),
            "an expected key JSON cannot write as it is"
        );
        self.parser.at = at + 2 + len;
        self.colon()?;
        Ok(NextKey::Expected)
    }

    /// Whether another item of the array being read follows (the reader is then on it); at
    /// the end, the array is left.
    #[inline]
    pub fn next_item(&mut self) -> Result<bool, TreeError> {
        self.more(b']')
    }

    /// Steps past the separator before the next member or item, or past the closing `close`.
    #[inline]
    fn more(&mut self, close: u8) -> Result<bool, TreeError> {
        if self.depth == 0 {
            return Err(self.parser.error("not in an object or array"));
        }
        let fresh = std::mem::replace(&mut self.fresh, false);
        if !fresh {
            self.parser.whitespace();
            match self.parser.peek() {
                Some(b',') => {
                    self.parser.at += 1;
                    self.parser.whitespace();
                    if self.parser.peek() == Some(close) {
                        return Err(self.parser.error("expected a value"));
                    }
                    return Ok(true);
                }
                Some(byte) if byte == close => {}
                _ => return Err(self.parser.error("expected a separator or the end")),
            }
        } else if self.parser.peek() != Some(close) {
            return Ok(true);
        }
        self.parser.at += 1;
        self.depth -= 1;
        Ok(false)
    }

    /// The string here, unescaped.
    #[inline]
    pub fn string(&mut self) -> Result<Cow<'a, str>, TreeError> {
        if self.parser.peek() != Some(b'"') {
            return Err(self.parser.error("expected a string"));
        }
        match self.parser.plain_string() {
            Some(text) => Ok(Cow::Borrowed(text)),
            None => self.parser.escaped_string(),
        }
    }

    /// The number here, as the tree keeps it ([`Node::Number`]).
    pub fn number(&mut self) -> Result<Cow<'a, str>, TreeError> {
        match self.parser.number()? {
            Node::Number(text) => Ok(text),
            _ => Err(self.parser.error("invalid number")),
        }
    }

    /// The `true`, `false` or `null` here.
    pub fn literal(&mut self) -> Result<Node<'a>, TreeError> {
        let mut node = Node::Null;
        match self.peek() {
            Some(Start::Bool | Start::Null) => self.parser.value_into(self.depth, None, &mut node)?,
            _ => return Err(self.parser.error("expected a value")),
        }
        Ok(node)
    }

    /// The whole value here as a tree, at its depth in the text.
    pub fn tree(&mut self) -> Result<Node<'a>, TreeError> {
        self.parser.value(self.depth, Some(&Keep::All))
    }

    /// Reads past the value here, checking it as [`Reader::tree`] does, without building it.
    pub fn skip(&mut self) -> Result<(), TreeError> {
        self.parser.value(self.depth, None).map(drop)
    }

    /// Steps over the value here, which is `value`: a slice of the text that starts here and
    /// that the caller knows to be a whole JSON value read before (a Bundle entry's resource,
    /// which the walker read); only where it starts and that the text holds it are checked.
    /// `false`, and nothing done, when it does not start here or is empty. As with
    /// [`parse_skipping`], the value is not read again, so its nesting does not count against
    /// the depth limit.
    pub fn jump(&mut self, value: &str) -> bool {
        let rest = self.rest();
        if value.as_ptr() != rest.as_ptr() || value.len() > rest.len() || value.is_empty() {
            return false;
        }
        self.parser.at += value.len();
        true
    }

    /// The text from where the reader is on.
    pub fn rest(&self) -> &'a str {
        &self.parser.text[self.parser.at..]
    }

    /// Where the reader is in the text (a byte offset): a value read from here to a later
    /// offset is that slice of the text.
    pub fn offset(&self) -> usize {
        self.parser.at
    }

    /// Checks that the text ends after the value read.
    pub fn finish(mut self) -> Result<(), TreeError> {
        self.parser.whitespace();
        if self.depth != 0 || self.parser.at != self.parser.text.len() {
            return Err(self.parser.error("trailing characters"));
        }
        Ok(())
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    /// Checked values to jump over when skipped (start and end offsets, by start).
    jumps: Vec<(usize, usize)>,
}

impl<'a> Parser<'a> {
    /// The one value the text holds (surrounding whitespace allowed), `depth` levels down.
    fn whole(mut self, depth: usize, keep: &Keep) -> Result<Node<'a>, TreeError> {
        self.whitespace();
        let node = self.value(depth, Some(keep))?;
        self.whitespace();
        if self.at != self.text.len() {
            return Err(self.error("trailing characters"));
        }
        Ok(node)
    }

    fn error(&self, what: &str) -> TreeError {
        TreeError(what.to_owned())
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// Steps over whitespace. Most values of Bulk NDJSON have none before them, and most runs
    /// of pretty-printed text are the one space between a key's colon and its value (59% of
    /// the runs of Synthea's Bundles): both are decided inline, a byte or two looked at, and
    /// only a longer run takes a call.
    #[inline(always)]
    fn whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        match bytes.get(self.at) {
            Some(b' ')
                if !bytes
                    .get(self.at + 1)
                    .is_some_and(|&next| is_json_whitespace(next)) =>
            {
                self.at += 1;
            }
            Some(&byte) if is_json_whitespace(byte) => self.whitespace_run(),
            _ => {}
        }
    }

    /// Pretty-printed input (Synthea's Bundles, a third of whose bytes are whitespace) breaks
    /// the line after each member and indents the next with spaces: the run is measured sixteen
    /// bytes at a time, by where its first other byte is in the block. (Stepping over it a byte
    /// or eight at a time was 7% of the instructions of `--resources all` on 500 MB of Bundles.)
    /// Text past the last whole block is stepped over eight spaces at a time, then a byte at a
    /// time.
    #[inline(never)]
    fn whitespace_run(&mut self) {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        // SAFETY: the build's target has SSE2 (the cfg above; every x86-64 does).
        if let Some(run) = unsafe { line_break_and_indent_sse2(&self.text.as_bytes()[self.at..]) } {
            self.at += run;
            return;
        }
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        // SAFETY: as above.
        match unsafe { whitespace_sse2(&self.text.as_bytes()[self.at..]) } {
            Ok(run) => {
                self.at += run;
                return;
            }
            Err(searched) => self.at += searched,
        }
        let bytes = self.text.as_bytes();
        let mut at = self.at;
        loop {
            if let Some(run) = bytes.get(at..at + 8) {
                let other = u64::from_le_bytes(run.try_into().expect("eight bytes")) ^ SPACES;
                if other == 0 {
                    at += 8;
                    continue;
                }
                at += other.trailing_zeros() as usize / 8;
            }
            match bytes.get(at) {
                Some(&byte) if is_json_whitespace(byte) => at += 1,
                _ => break,
            }
        }
        self.at = at;
    }

    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Result<(), TreeError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.expected(byte))
        }
    }

    #[cold]
    fn expected(&self, byte: u8) -> TreeError {
        self.error(&format!("expected '{}'", byte as char))
    }

    fn literal(&mut self, word: &str, node: Node<'a>, slot: &mut Node<'a>) -> Result<(), TreeError> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            *slot = node;
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// One value; with `keep` `None` it is checked and skipped (a `Null` stands for it).
    fn value(&mut self, depth: usize, keep: Option<&Keep>) -> Result<Node<'a>, TreeError> {
        let mut node = Node::Null;
        self.value_into(depth, keep, &mut node)?;
        Ok(node)
    }

    /// [`Self::value`], written into `slot`: an object's member or an array's item is parsed
    /// where it is kept (its slot holds `Null` until then; a skipped value's slot is scratch,
    /// never read). Returning each node and moving it into its vector went through the stack in
    /// pieces that stalled store forwarding (a third of the parse's own time, `perf annotate`).
    fn value_into(
        &mut self,
        depth: usize,
        keep: Option<&Keep>,
        slot: &mut Node<'a>,
    ) -> Result<(), TreeError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, keep, slot),
            Some(b'[') => self.array(depth + 1, keep, slot),
            Some(b'"') => {
                *slot = match self.plain_string() {
                    Some(text) => Node::String(Cow::Borrowed(text)),
                    None => Node::String(self.escaped_string()?),
                };
                Ok(())
            }
            Some(b't') => self.literal("true", Node::Bool(true), slot),
            Some(b'f') => self.literal("false", Node::Bool(false), slot),
            Some(b'n') => self.literal("null", Node::Null, slot),
            Some(b'-' | b'0'..=b'9') => {
                *slot = self.number()?;
                Ok(())
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn object(&mut self, depth: usize, keep: Option<&Keep>, slot: &mut Node<'a>) -> Result<(), TreeError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.at += 1;
        // Most FHIR objects have a handful of members: one allocation for them.
        let mut members: Vec<(Cow<'a, str>, Node<'a>)> = if keep.is_some() {
            Vec::with_capacity(4)
        } else {
            Vec::new()
        };
        let mut skipped = Node::Null;
        self.whitespace();
        let mut more = self.peek() != Some(b'}');
        while more {
            self.whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key"));
            }
            // A plain key comes back in registers (see `plain_string`); an escaped one is rare.
            let (plain, mut escaped) = match self.plain_string() {
                Some(text) => (text, None),
                None => ("", Some(self.escaped_string()?)),
            };
            let key: &str = escaped.as_deref().unwrap_or(plain);
            self.whitespace();
            self.expect(b':')?;
            self.whitespace();
            let kept = keep.and_then(|keep| keep.member(key));
            let null_kept =
                kept.is_none() && matches!(keep, Some(Keep::AllBut(_))) && self.peek() == Some(b'n');
            let jump = self.jump_end(kept.is_none() && !null_kept);
            let target = if kept.is_some() || null_kept {
                match escaped.take() {
                    Some(text) => members.push((text, Node::Null)),
                    None => members.push((Cow::Borrowed(plain), Node::Null)),
                }
                &mut members.last_mut().expect("pushed above").1
            } else {
                &mut skipped
            };
            match jump {
                Some(end) => self.at = end,
                None => self.value_into(depth, kept.as_deref(), target)?,
            }
            self.whitespace();
            more = match self.peek() {
                Some(b',') => true,
                Some(b'}') => false,
                _ => return Err(self.error("expected ',' or '}'")),
            };
            if more {
                self.at += 1;
            }
        }
        self.at += 1;
        if keep.is_some() {
            *slot = Node::Object(Object(members));
        }
        Ok(())
    }

    /// Where the checked value starting here ends, when it is to be skipped.
    #[inline]
    fn jump_end(&self, skipped: bool) -> Option<usize> {
        if !skipped || self.jumps.is_empty() {
            return None;
        }
        let found = self
            .jumps
            .binary_search_by_key(&self.at, |&(start, _)| start)
            .ok()?;
        Some(self.jumps[found].1)
    }

    fn array(&mut self, depth: usize, keep: Option<&Keep>, slot: &mut Node<'a>) -> Result<(), TreeError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.at += 1;
        let mut items = Vec::new();
        let mut skipped = Node::Null;
        self.whitespace();
        let mut more = self.peek() != Some(b']');
        while more {
            self.whitespace();
            let target = if keep.is_some() {
                items.push(Node::Null);
                items.last_mut().expect("pushed above")
            } else {
                &mut skipped
            };
            self.value_into(depth, keep, target)?;
            self.whitespace();
            more = match self.peek() {
                Some(b',') => true,
                Some(b']') => false,
                _ => return Err(self.error("expected ',' or ']'")),
            };
            if more {
                self.at += 1;
            }
        }
        self.at += 1;
        if keep.is_some() {
            *slot = Node::Array(items);
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Node<'a>, TreeError> {
        let start = self.at;
        let bytes = self.text.as_bytes();
        let digits = |at: &mut usize| {
            let from = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at - from
        };
        let mut at = self.at;
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        match bytes.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                digits(&mut at);
            }
            _ => return Err(self.error("invalid number")),
        }
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            if digits(&mut at) == 0 {
                self.at = at;
                return Err(self.error("invalid number"));
            }
        }
        let mut exponent = None;
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            exponent = Some(at);
            at += 1;
            if matches!(bytes.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if digits(&mut at) == 0 {
                self.at = at;
                return Err(self.error("invalid number"));
            }
        }
        self.at = at;
        let text = &self.text[start..at];
        // serde_json writes an exponent as `e+N` or `e-N`, whatever the input wrote; so do we.
        match exponent {
            Some(e) if bytes[e] == b'E' || !matches!(bytes[e + 1], b'+' | b'-') => {
                let (mantissa, rest) = (&self.text[start..e], &self.text[e + 1..at]);
                let sign = if rest.starts_with(['+', '-']) { "" } else { "+" };
                Ok(Node::Number(Cow::Owned(format!("{mantissa}e{sign}{rest}"))))
            }
            _ => Ok(Node::Number(Cow::Borrowed(text))),
        }
    }

    /// The common case of a string (keys and values), without escapes or errors (`None`: anything
    /// else, `at` left on the opening quote). Returned in registers: a `Cow` in a `Result` is
    /// returned through memory and copied back in pieces that stall store forwarding.
    #[inline]
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.at + 1;
        let found = string_stop(&self.text.as_bytes()[start..])?;
        if self.text.as_bytes()[start + found] != b'"' {
            return None;
        }
        self.at = start + found + 1;
        Some(&self.text[start..start + found])
    }

    /// A string with an escape, or a broken one.
    #[cold]
    fn escaped_string(&mut self) -> Result<Cow<'a, str>, TreeError> {
        self.at += 1;
        let start = self.at;
        let bytes = self.text.as_bytes();
        // The closing quote, the first escape or a control character.
        let Some(found) = string_stop(&bytes[start..]) else {
            return Err(self.error("unterminated string"));
        };
        self.at = start + found;
        if bytes[self.at] < 0x20 {
            return Err(self.error("control character in a string"));
        }
        let mut owned = String::from(&self.text[start..self.at]);
        loop {
            match bytes.get(self.at) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Cow::Owned(owned));
                }
                Some(b'\\') => {
                    self.at += 1;
                    let simple = match bytes.get(self.at) {
                        Some(b'"') => Some('"'),
                        Some(b'\\') => Some('\\'),
                        Some(b'/') => Some('/'),
                        Some(b'b') => Some('\u{08}'),
                        Some(b'f') => Some('\u{0c}'),
                        Some(b'n') => Some('\n'),
                        Some(b'r') => Some('\r'),
                        Some(b't') => Some('\t'),
                        Some(b'u') => None,
                        _ => return Err(self.error("invalid escape")),
                    };
                    self.at += 1;
                    let escaped = match simple {
                        Some(c) => c,
                        None => self.unicode_escape()?,
                    };
                    owned.push(escaped);
                }
                Some(byte) if *byte < 0x20 => return Err(self.error("control character in a string")),
                Some(_) => {
                    // Copy the run up to the next quote or escape in one go.
                    let from = self.at;
                    while bytes
                        .get(self.at)
                        .is_some_and(|b| *b != b'"' && *b != b'\\' && *b >= 0x20)
                    {
                        self.at += 1;
                    }
                    owned.push_str(&self.text[from..self.at]);
                }
            }
        }
    }

    /// The character of a `\uXXXX` escape (the `u` consumed), a surrogate pair included; leaves
    /// `at` after the escape.
    fn unicode_escape(&mut self) -> Result<char, TreeError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.text[self.at..].starts_with("\\u") {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in hex escape")),
            code => code,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode escape"))
    }

    fn hex4(&mut self) -> Result<u32, TreeError> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("invalid escape"))?;
        let value = u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid escape"))?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("invalid escape"));
        }
        self.at += 4;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strings_stop_is_the_first_quote_backslash_or_control_character_wherever_it_is() {
        let by_bytes = |bytes: &[u8]| bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        // Every stop byte, and the bytes next to them (0x20, 0x7f and above, where a signed
        // compare or a borrow would go wrong), at every place of texts of every length up to
        // three sixteen-byte blocks and a tail, after plain text and after another stop.
        let stops = [b'"', b'\\', 0x00, 0x09, 0x0a, 0x1f];
        let others = [b'a', b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xc3, 0xff];
        for length in 0..=53 {
            for &fill in &others {
                let plain = vec![fill; length];
                assert_eq!(string_stop(&plain), None, "{fill:#x} x {length}");
                for place in 0..length {
                    for &stop in &stops {
                        let mut text = plain.clone();
                        text[place] = stop;
                        assert_eq!(
                            string_stop(&text),
                            Some(place),
                            "{stop:#x} at {place} of {length}"
                        );
                        if place + 1 < length {
                            text[place + 1] = b'"';
                            assert_eq!(string_stop(&text), by_bytes(&text));
                        }
                    }
                }
            }
        }
    }

    /// The tree says what serde_json's `Value` says: accepted or not, and the same JSON back;
    /// and so does a pruned tree, with exactly the members its keep names.
    fn same_as_serde(text: &str) {
        let theirs = serde_json::from_str::<serde_json::Value>(text);
        for keep in keeps() {
            let ours = parse_keeping(text, &keep);
            match (&ours, &theirs) {
                (Ok(node), Ok(value)) => {
                    assert_eq!(
                        node.to_string(),
                        pruned(value, &keep).to_string(),
                        "{text:?} {keep:?}"
                    )
                }
                (Err(_), Err(_)) => {}
                _ => panic!("{text:?} {keep:?}: tree {ours:?}, serde_json {theirs:?}"),
            }
        }
    }

    fn keeps() -> Vec<Keep> {
        let members = |list: Vec<(&str, Keep)>| {
            Keep::Members(
                list.into_iter()
                    .map(|(name, keep)| (name.to_owned(), keep))
                    .collect(),
            )
        };
        vec![
            Keep::All,
            members(vec![]),
            members(vec![("a", Keep::All)]),
            members(vec![("a", members(vec![("b", Keep::All)])), ("s", Keep::All)]),
            members(vec![
                ("n", members(vec![])),
                ("dup", Keep::All),
                ("c", members(vec![("d", Keep::All)])),
            ]),
            Keep::AllBut(vec![("a".to_owned(), None)]),
            Keep::AllBut(vec![
                ("b".to_owned(), None),
                ("c".to_owned(), Some(Keep::AllBut(vec![("d".to_owned(), None)]))),
                ("z".to_owned(), Some(members(vec![("y", Keep::All)]))),
            ]),
        ]
    }

    /// The model of a pruned parse: `value` without the members `keep` leaves out.
    fn pruned(value: &serde_json::Value, keep: &Keep) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .filter_map(|(key, value)| match keep.member(key) {
                        Some(below) => Some((key.clone(), pruned(value, below.as_ref()))),
                        // `AllBut` keeps a skipped member that is `null`.
                        None if value.is_null() && matches!(keep, Keep::AllBut(_)) => {
                            Some((key.clone(), value.clone()))
                        }
                        None => None,
                    })
                    .collect(),
            ),
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(|item| pruned(item, keep)).collect())
            }
            other => other.clone(),
        }
    }

    /// Whitespace of every run length up to 20 (spaces alone, and spaces with a newline, tab or
    /// return among them) around keys, values and separators, also where the text ends within eight bytes,
    /// reads as serde_json reads it; so does a stray byte after spaces.
    #[test]
    fn whitespace_of_any_run_reads_as_serde_json_reads_it() {
        for run in 0..=20 {
            for other in [None, Some("\n"), Some("\t"), Some("\r"), Some("\n\r\t")] {
                let gap = match other {
                    None => " ".repeat(run),
                    Some(other) => format!("{}{other}{}", " ".repeat(run), " ".repeat(run / 2)),
                };
                let text = format!("{gap}{{{gap}\"a\"{gap}:{gap}[{gap}1{gap},{gap}\"b\"{gap}]{gap},{gap}\"c\":{{}}{gap}}}{gap}");
                same_as_serde(&text);
                same_as_serde(&format!("{text}{gap}x"));
                same_as_serde(&format!("{{\"a\":{gap}"));
            }
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#"{"a":null,"b":null,"c":[{"d":null,"e":1},{"d":{"x":1}}],"z":{"y":1,"w":null}}"#,
            r#"{"resourceType":"X","a":[{"b":1,"c":[2]},{"bC":3}],"aB":{"x":1},"z":{"y":[tru]}}"#,
            r#"{"a":{"b":1},"z":{"y":"\x"}}"#,
            r#"{"a":{"b":1},"z":[1,]}"#,
            r#" {"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"mg"}} "#,
            r#"{"n":[0,-0,1e2,1E+2,2E-3,-1.5e-3,12345678901234567890123,1.50]}"#,
            r#"{"s":"tab\there \"quoted\" \\ \/ \b\f\n\r \u00e9 \ud83d\ude00 \u0001"}"#,
            r#"{"dup":1,"dup":2}"#,
            r#"{"b":1,"a":2}"#,
            "[]",
            "{}",
            r#""\ud800""#,
            r#""\udc00x""#,
            r#""\ud800\u0041""#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a" 1}"#,
            r#"{"a":"unterminated}"#,
            "{\"a\":\"raw\u{1}control\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u+123"}"#,
            r#"{} x"#,
            "",
        ] {
            same_as_serde(text);
        }
    }

    #[test]
    fn nests_exactly_as_deep_as_serde_json() {
        for depth in [126, 127, 128, 129] {
            same_as_serde(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            same_as_serde(&objects);
        }
    }

    #[test]
    fn keys_and_plain_strings_borrow_and_duplicates_mean_the_last() {
        let text = r#"{"id":"x","id":"y","name":"a\nb"}"#;
        let node = parse(text).unwrap();
        let Node::Object(object) = &node else { panic!() };
        assert!(matches!(object.0[0].0, Cow::Borrowed(_)));
        assert!(matches!(object.get("name"), Some(Node::String(Cow::Owned(_)))));
        assert_eq!(node.get("id").and_then(Node::as_str), Some("y"));
        assert_eq!(object.sorted().len(), 2);
    }

    #[test]
    fn json_text_is_serde_jsons_with_each_key_once_at_its_last_value() {
        // Objects of every size around the in-place sort's limit, keys repeated (three times
        // for some) and out of order, with nested objects, arrays and escapes.
        for members in [0, 1, 2, 63, 64, 65, 130] {
            let mut text = String::from("{");
            for i in 0..members {
                let key = format!("k{:03}", (i * 37) % (members / 2 + 1));
                let value = match i % 4 {
                    0 => format!("{i}"),
                    1 => format!(r#""v{i}\n\u0001\"""#),
                    2 => format!(r#"{{"b":[{i},null,true],"a":{{"z":{i},"z":"last"}}}}"#),
                    _ => "[]".to_string(),
                };
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&format!(r#""{key}":{value}"#));
            }
            text.push('}');
            let node = parse(&text).unwrap();
            let theirs = serde_json::from_str::<serde_json::Value>(&text)
                .unwrap()
                .to_string();
            let mut written = String::new();
            node.write_json(&mut written).unwrap();
            assert_eq!(written, theirs, "{members} members");
            assert_eq!(node.to_string(), theirs);
        }
    }

    #[test]
    fn skipped_values_already_checked_are_jumped_over() {
        let skip_resources = Keep::AllBut(vec![(
            "entry".to_owned(),
            Some(Keep::AllBut(vec![("resource".to_owned(), None)])),
        )]);
        let text = r#"{"entry":[{"fullUrl":"u","resource":{"a":[1,{"b":2}]}},{"resource":null}],"id":"x"}"#;
        let slice = |part: &str| {
            let at = text.find(part).unwrap();
            &text[at..at + part.len()]
        };
        // A checked slice where a kept value starts (`"u"`) is not jumped over: it is built.
        let checked = [slice(r#"{"a":[1,{"b":2}]}"#), slice(r#""u""#)];
        let jumped = parse_skipping(text, &skip_resources, &checked).unwrap();
        assert_eq!(jumped, parse_keeping(text, &skip_resources).unwrap());
        assert_eq!(
            jumped.get("entry").unwrap().to_string(),
            r#"[{"fullUrl":"u"},{"resource":null}]"#
        );
        // A value the caller vouches for is not read at all: here one that is not JSON.
        let text = r#"{"entry":[{"resource":{"a":tru},"fullUrl":"u"}]}"#;
        assert!(parse_keeping(text, &skip_resources).is_err());
        let vouched = &text[text.find("{\"a\"").unwrap()..text.find("},").unwrap() + 1];
        let jumped = parse_skipping(text, &skip_resources, &[vouched]).unwrap();
        assert_eq!(jumped.to_string(), r#"{"entry":[{"fullUrl":"u"}]}"#);
        // Slices of another text are ignored.
        let elsewhere = String::from(vouched);
        assert!(parse_skipping(text, &skip_resources, &[&elsewhere]).is_err());
    }

    #[test]
    fn an_entry_kept_in_its_envelope_is_held_to_the_depth_limit_from_the_bundles_root() {
        let deep = format!("{}{}", "[".repeat(126), "]".repeat(126));
        assert!(parse(&deep).is_ok());
        assert!(parse_nested(&deep, 1).is_ok());
        let error = parse_nested(&deep, 3).unwrap_err();
        assert_eq!(error.0, "recursion limit exceeded");
        // The same text inside a Bundle entry, read whole: the same error.
        let bundle = format!(r#"{{"entry":[{{"resource":{deep}}}]}}"#);
        assert_eq!(parse(&bundle).unwrap_err(), error);
    }

    /// The whole text read through a [`Reader`], driven as a caller would, into a tree.
    fn read_all(text: &str) -> Result<Node<'_>, TreeError> {
        read_expecting(text, None)
    }

    /// [`read_all`], with every key read by [`Reader::next_key_expecting`] for `expected`
    /// when there is one.
    fn read_expecting<'a>(text: &'a str, expected: Option<&'a str>) -> Result<Node<'a>, TreeError> {
        fn value<'a>(reader: &mut Reader<'a>, expected: Option<&'a str>) -> Result<Node<'a>, TreeError> {
            match reader.peek() {
                Some(Start::Object) => {
                    reader.open()?;
                    let mut members = Vec::new();
                    loop {
                        let key = match expected {
                            None => match reader.next_key()? {
                                Some(key) => key,
                                None => break,
                            },
                            Some(expected) => match reader.next_key_expecting(expected.as_bytes())? {
                                NextKey::End => break,
                                NextKey::Expected => Cow::Borrowed(expected),
                                NextKey::Other(key) => key,
                            },
                        };
                        members.push((key, value(reader, expected)?));
                    }
                    Ok(Node::Object(Object(members)))
                }
                Some(Start::Array) => {
                    reader.open()?;
                    let mut items = Vec::new();
                    while reader.next_item()? {
                        items.push(value(reader, expected)?);
                    }
                    Ok(Node::Array(items))
                }
                Some(Start::String) => Ok(Node::String(reader.string()?)),
                Some(Start::Number) => Ok(Node::Number(reader.number()?)),
                Some(Start::Bool | Start::Null) => reader.literal(),
                None => Err(TreeError("expected a value".to_owned())),
            }
        }
        let mut reader = Reader::new(text);
        let node = value(&mut reader, expected)?;
        reader.finish()?;
        Ok(node)
    }

    /// Reading keys with an expected one gives what reading them plainly gives, error or tree.
    fn same_expecting(text: &str, expected: &str) {
        // `Debug`: document order and repeated keys as read (JSON text sorts and merges them).
        let plain = read_all(text).map(|node| format!("{node:?}"));
        let checked = read_expecting(text, Some(expected)).map(|node| format!("{node:?}"));
        assert_eq!(plain, checked, "{text:?} expecting {expected:?}");
    }

    /// Every mix of whitespace `str::trim_start` takes, JSON's and others, before a value or
    /// at the end, trims as it does.
    #[test]
    fn trimming_is_str_trim_start() {
        let spaces = [
            " ", "\n", "\r", "\t", "\u{b}", "\u{c}", "\u{a0}", "\u{2028}", "\u{3000}", "\u{85}",
        ];
        let others = ["", "{", "x", "\u{e9}", "\u{1c}", "\u{feff}"];
        for first in spaces {
            for second in spaces {
                for third in spaces {
                    for after in others {
                        let text = format!("{first}{second}{third}{after} \n");
                        assert_eq!(trim_start(&text), text.trim_start(), "{text:?}");
                    }
                }
            }
        }
        for text in others {
            assert_eq!(trim_start(text), text.trim_start());
        }
    }

    /// A jump steps over exactly the value given, and only over a slice of the text that
    /// starts where the reader is: a copy, a slice starting elsewhere, or an empty one leaves
    /// the reader where it was.
    #[test]
    fn a_jump_steps_over_the_slice_given_from_where_the_reader_is_only() {
        let text = r#"{"a": {"b": [1, 2]}, "c": "d"}"#;
        let mut reader = Reader::new(text);
        reader.open().unwrap();
        assert_eq!(reader.next_key().unwrap().as_deref(), Some("a"));
        let value = &text[6..19];
        assert_eq!(value, r#"{"b": [1, 2]}"#);
        let copy = value.to_owned();
        for elsewhere in [copy.as_str(), &text[7..19], &text[6..6], &text[20..]] {
            assert!(!reader.jump(elsewhere), "{elsewhere:?}");
            assert_eq!(reader.offset(), 6);
        }
        assert!(reader.jump(value));
        assert_eq!(reader.offset(), 19);
        assert_eq!(reader.next_key().unwrap().as_deref(), Some("c"));
        assert_eq!(reader.string().unwrap(), "d");
        assert_eq!(reader.next_key().unwrap(), None);
        reader.finish().unwrap();
    }

    #[test]
    fn a_key_checked_as_written_is_the_key_read() {
        for (text, expected) in [
            (r#"{"a":1}"#, "a"),
            (r#"{"a" : 1, "b":2}"#, "b"),
            (r#"{"\u0061":1}"#, "a"),
            (r#"{"ab":1}"#, "a"),
            (r#"{"a":1}"#, "ab"),
            (r#"{"":1}"#, ""),
            (r#"{"a"}"#, "a"),
            (r#"{"a" 1}"#, "a"),
            (r#"{"a""#, "a"),
            (r#"{"a"#, "a"),
            (r#"{"a":1,}"#, "a"),
            (r#"{"a\"":1}"#, "a"),
            (r#"{"a": 1, "b":  2}"#, "a"),
            (r#"{"a": 1, "b":  2}"#, "b"),
            ("{\"a\":\n 1}", "a"),
            (r#"{"a": }"#, "a"),
            (r#"{"a": "#, "a"),
            (r#"{"a":"#, "a"),
            (r#"{"a" :1}"#, "a"),
            ("{\"a\":\t1}", "a"),
            ("{\"a\":\r\n 1}", "a"),
            (r#"{"é":1,"a":{"é":2}}"#, "é"),
            (
                r#"{"abcdefghijklmnop":1,"abcdefghijklmnopq":2}"#,
                "abcdefghijklmnop",
            ),
            (
                r#"{"abcdefghijklmnop":1,"abcdefghijklmnopq":2}"#,
                "abcdefghijklmnopq",
            ),
            (r#"{"a":1,"a":2}"#, "a"),
        ] {
            same_expecting(text, expected);
        }
        let mut reader = Reader::new(r#"{"\u0061":1,"a" :2}"#);
        reader.open().unwrap();
        fn expecting_a<'a>(reader: &mut Reader<'a>) -> NextKey<'a> {
            reader.next_key_expecting(b"a".as_slice()).unwrap()
        }
        assert_eq!(expecting_a(&mut reader), NextKey::Other(Cow::Borrowed("a")));
        assert_eq!(reader.number().unwrap(), "1");
        assert_eq!(expecting_a(&mut reader), NextKey::Expected);
        assert_eq!(reader.number().unwrap(), "2");
        assert_eq!(expecting_a(&mut reader), NextKey::End);
    }

    #[test]
    fn a_whitespace_run_ends_at_its_first_other_byte_wherever_it_is() {
        for len in 0..=40 {
            for kind in 0..5 {
                let run: String = (0..len)
                    .map(|i| match kind {
                        0 => ' ',
                        1 => '\t',
                        2 if i % 2 == 0 => '\r',
                        2 => '\n',
                        // A pretty-printed line break and indent.
                        3 if i == 0 => '\n',
                        3 => ' ',
                        _ => [' ', '\n', '\r', '\t'][(i * 7 + len) % 4],
                    })
                    .collect();
                for after in ["", "x", "\"", "é", " x", "\tx", "\nx", "\r\n  x", "\n"] {
                    let text = format!("{run}{after}");
                    // The end: the run's, and past whitespace that follows it, the next other byte.
                    let end = text.len() - text.trim_start_matches([' ', '\t', '\n', '\r']).len();
                    for start in 0..=len {
                        let mut parser = Parser {
                            text: &text,
                            at: start,
                            jumps: Vec::new(),
                        };
                        parser.whitespace();
                        assert_eq!(parser.at, end, "{text:?} from {start}");
                    }
                }
            }
        }
    }

    /// The reader accepts exactly what the tree accepts, and reads the same values.
    fn same_as_tree(text: &str) {
        let read = read_all(text).map(|node| node.to_string());
        let parsed = parse(text).map(|node| node.to_string());
        assert_eq!(read.is_ok(), parsed.is_ok(), "{text:?}: {read:?} {parsed:?}");
        if let (Ok(read), Ok(parsed)) = (read, parsed) {
            assert_eq!(read, parsed, "{text:?}");
        }
    }

    #[test]
    fn the_reader_takes_what_the_tree_takes() {
        for text in [
            "{}",
            "[]",
            "{,}",
            "[,]",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":}",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "[",
            "{\"a\"",
            "[1,",
            " [ 1 , { \"a\" : [ ] } ] ",
            "[1] x",
            "\"a\\u0041\"",
            "1E5",
            "-",
            "nul",
            "{\"a\":{\"b\":[true,false,null,1.5e-3,\"\\ud83d\\ude00\"]}}",
            "\"\\ud800\"",
        ] {
            same_as_tree(text);
        }
        // The nesting limit, by arrays and by objects.
        for depth in 125..=129 {
            same_as_tree(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            same_as_tree(&format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)));
        }
    }

    #[test]
    fn a_reader_out_of_any_object_or_array_refuses_to_step() {
        let mut reader = Reader::new("1");
        assert!(reader.next_key().is_err());
        assert!(reader.next_item().is_err());
        let mut reader = Reader::new("[]");
        reader.open().unwrap();
        assert!(!reader.next_item().unwrap());
        assert!(reader.next_item().is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(3000))]

        /// Any text over JSON's alphabet: the tree accepts exactly what serde_json accepts, and
        /// gives the same JSON back; so does the reader.
        #[test]
        fn any_text_is_read_as_serde_json_reads_it(text in r#"[\[\]{}",:0-9eE.+\-tfrunals \\/bu\u{e9}\u{1}]{0,40}"#) {
            same_as_serde(&text);
            same_as_tree(&text);
        }

        /// Keys read with an expected one read as they read plainly, in any text over JSON's
        /// alphabet and in objects of any shape, compact and pretty-printed.
        #[test]
        fn keys_read_with_an_expected_one_read_as_keys_read(
            text in r#"[\[\]{}",:0-9eE.+\-tfrunals \\/bu\u{e9}\u{1}]{0,40}"#,
            value in json_value(),
            other in "[a-z_]{0,2}",
            own in proptest::sample::select(vec![false, true]),
            pick in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            // Half the time one of the value's own keys, so that the check often passes.
            let mut keys = Vec::new();
            keys_of(&value, &mut keys);
            let expected = if own && !keys.is_empty() { keys[pick.index(keys.len())].clone() } else { other };
            same_expecting(&text, &expected);
            same_expecting(&value.to_string(), &expected);
            same_expecting(&serde_json::to_string_pretty(&value).unwrap(), &expected);
        }

        /// Valid JSON of any shape, written by serde_json, reads back equal (tree and reader).
        #[test]
        fn any_json_value_reads_back(value in json_value()) {
            same_as_serde(&value.to_string());
            same_as_tree(&value.to_string());
            same_as_tree(&serde_json::to_string_pretty(&value).unwrap());
        }

        /// Bundles of any entries, as text with whitespace and repeated keys in the resources:
        /// jumping over the resources the walker's `serde_json` read gives the tree reading
        /// them through gives.
        #[test]
        fn an_envelope_read_with_jumps_is_the_envelope_read_through(
            entries in proptest::collection::vec((json_value(), proptest::bool::ANY, proptest::bool::ANY), 0..5),
        ) {
            let mut text = String::from("{ \"resourceType\": \"Bundle\", \"entry\": [");
            for (index, (resource, pretty, twice)) in entries.iter().enumerate() {
                if index > 0 {
                    text.push(',');
                }
                let mut resource = if *pretty {
                    serde_json::to_string_pretty(resource).unwrap()
                } else {
                    resource.to_string()
                };
                if *twice && resource.starts_with('{') && resource.len() > 2 {
                    resource.insert_str(1, "\"id\": 1, \"id\": [2],");
                }
                text.push_str(&format!("\n  {{\"fullUrl\": \"u{index}\", \"resource\" : {resource} }}"));
            }
            text.push_str("]}");
            #[derive(serde::Deserialize)]
            struct Entry<'a> {
                #[serde(borrow)]
                resource: Option<&'a serde_json::value::RawValue>,
            }
            #[derive(serde::Deserialize)]
            struct Bundle<'a> {
                #[serde(borrow)]
                entry: Vec<Entry<'a>>,
            }
            let read: Bundle<'_> = serde_json::from_str(&text).unwrap();
            let checked: Vec<&str> = read.entry.iter().filter_map(|entry| entry.resource).map(|raw| raw.get()).collect();
            let skip_resources = Keep::AllBut(vec![(
                "entry".to_owned(),
                Some(Keep::AllBut(vec![("resource".to_owned(), None)])),
            )]);
            let through = parse_keeping(&text, &skip_resources).unwrap();
            let jumped = parse_skipping(&text, &skip_resources, &checked).unwrap();
            proptest::prop_assert_eq!(jumped.to_string(), through.to_string());
            proptest::prop_assert_eq!(jumped, through);
        }
    }

    /// Every object key in `value`, at any depth.
    fn keys_of(value: &serde_json::Value, keys: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(members) => {
                for (key, member) in members {
                    keys.push(key.clone());
                    keys_of(member, keys);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| keys_of(item, keys)),
            _ => {}
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            // Printable text and the characters JSON text escapes (controls; DEL it does not).
            "(\\PC|[\\x00-\\x1f\\x7f\"\\\\]){0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::vec(("[a-z_]{0,6}", inner), 0..6)
                    .prop_map(|members| serde_json::Value::Object(members.into_iter().collect())),
            ]
        })
    }
}
