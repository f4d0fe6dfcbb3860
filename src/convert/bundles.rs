//! `export --bundles`: each Bundle put back together from its envelope (its row in
//! `resource_bundle`, which left out the entries that became rows) and its entries' rows in the
//! other resource tables (docs/LOSSLESS.md, "Bundles").
//!
//! The entries of a Bundle can be anywhere in the tables, so they are gathered, by the key their
//! rows' `__bundle` holds, before the envelope is written. Each table is read once. Every row is
//! rendered as it is read: an entry's resource to its JSON text, an envelope to its JSON text
//! with a placeholder where each entry's resource goes. While those texts fit `--bundles-memory`
//! they are held in memory; past it, they go to spill files in the export's staging folder, one
//! of [`BUCKETS`] by a hash of the document's key (so a Bundle and the Bundles nested in it stay
//! together), and each bucket is rebuilt on its own afterwards; a bucket still over the budget
//! is split again by the next bits of the hash. Memory stays bounded and the work linear in the
//! tables' size, whatever the budget.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::export::{each_batch, ExportFile, ExportFormat, ResourceTableParts, Staging, TypeExport};
use crate::fhir::key_hash::text_key;
use crate::fsops;
use crate::sink::Store;

/// The resource type whose table holds the envelopes.
pub(super) const BUNDLE_TYPE: &str = "Bundle";

/// Spill files per split: a bucket over the budget is cut into this many by the next six bits
/// of its documents' hash.
const BUCKETS: usize = 64;

/// Splits after which a bucket is rebuilt whatever it holds (64^10 buckets: far past any input).
const MAX_SPLITS: u32 = 10;

/// Marks where an entry's resource goes in an envelope's text: a NUL byte, which valid JSON
/// text never holds raw (strings escape it), then the entry index and a second NUL.
const PLACEHOLDER: u8 = 0;

/// Writes `Bundle.ndjson[.gz]`: every Bundle that was a whole document, rebuilt, holding at
/// most `budget` bytes of rendered rows in memory (see the module's doc).
pub(super) fn write_bundles(
    output: &dyn Store,
    tables: &[ResourceTableParts],
    staging: &mut Staging,
    format: ExportFormat,
    budget: usize,
) -> Result<TypeExport> {
    let Some(bundle_table) = tables.iter().find(|table| table.resource_type == BUNDLE_TYPE) else {
        bail!("no Bundle table to rebuild Bundles from");
    };
    let name = format!("{BUNDLE_TYPE}{}", format.extension());
    let spill_folder = staging.scratch_folder("bundles");
    let mut gathered = Gathered::new(budget, spill_folder);
    for table in tables.iter().filter(|table| table.resource_type != BUNDLE_TYPE) {
        each_batch(output, table, |exporter, batch| {
            let rows = exporter.rows_reached(batch)?;
            for row in 0..batch.num_rows() {
                if let Some((key, entry)) = rows.container(row) {
                    let mut text = Vec::new();
                    rows.write(row, Vec::new(), &mut text)?;
                    text.shrink_to_fit();
                    gathered.add(Record::Entry {
                        key: key.to_owned(),
                        entry,
                        text,
                    })?;
                }
            }
            Ok(())
        })?;
    }
    each_batch(output, bundle_table, |exporter, batch| {
        let rows = exporter.rows_reached(batch)?;
        for row in 0..batch.num_rows() {
            let Some((key, entry_rows)) = rows.envelope(row) else {
                bail!(
                    "{}: a Bundle row without {}",
                    bundle_table.table,
                    crate::table::lossless::KEY
                );
            };
            let inserted = entry_rows
                .iter()
                .map(|entry| {
                    (
                        format!("/entry/{entry}"),
                        "resource".to_owned(),
                        placeholder(*entry),
                    )
                })
                .collect();
            let mut text = Vec::new();
            rows.write(row, inserted, &mut text)?;
            text.shrink_to_fit();
            gathered.add(Record::Envelope {
                key: key.to_owned(),
                entry_rows,
                text,
            })?;
        }
        Ok(())
    })?;

    let mut file: Option<ExportFile> = None;
    let mut rows = 0u64;
    let mut write = |mut bundle: Vec<u8>| {
        bundle.push(b'\n');
        let file = match &mut file {
            Some(file) => file,
            None => file.insert(ExportFile::create(&staging.stage_file(&name), format)?),
        };
        rows += 1;
        file.write(&bundle)
    };
    let parts = gathered.rebuild(&mut write)?;
    let bytes = match file {
        Some(file) => file.finish()?,
        None => 0,
    };
    Ok(TypeExport {
        resource_type: BUNDLE_TYPE.to_owned(),
        table: bundle_table.table.clone(),
        file: (rows > 0).then_some(name),
        rows,
        in_bundles: 0,
        bytes,
        shares: Some(parts),
    })
}

/// The text standing for entry `entry`'s resource in an envelope until it is rebuilt.
fn placeholder(entry: u32) -> String {
    format!("{}{entry}{}", PLACEHOLDER as char, PLACEHOLDER as char)
}

/// One rendered row: an entry's resource, or a Bundle's envelope.
enum Record {
    Entry {
        key: String,
        entry: u32,
        text: Vec<u8>,
    },
    Envelope {
        key: String,
        /// The entries whose resources are rows, each a placeholder in `text`. (A nested
        /// Bundle's key, `<parent key>/<entry>`, says where it goes: [`container_of`].)
        entry_rows: Vec<u32>,
        text: Vec<u8>,
    },
}

impl Record {
    fn key(&self) -> &str {
        match self {
            Record::Entry { key, .. } | Record::Envelope { key, .. } => key,
        }
    }

    /// The key of the document the record belongs to: a nested Bundle's key starts with it.
    fn document(&self) -> &str {
        let key = self.key();
        key.split('/').next().unwrap_or(key)
    }

    /// The memory the record holds, against the budget.
    fn size(&self) -> usize {
        std::mem::size_of::<Record>()
            + match self {
                Record::Entry { key, text, .. } => key.capacity() + text.capacity(),
                Record::Envelope {
                    key,
                    entry_rows,
                    text,
                } => key.capacity() + text.capacity() + 4 * entry_rows.capacity(),
            }
    }

    /// Which of [`BUCKETS`] the record goes to after `splits` splits.
    fn bucket(&self, splits: u32) -> usize {
        ((text_key(self.document()) >> (6 * splits)) % BUCKETS as u64) as usize
    }

    fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let bytes = |out: &mut dyn Write, bytes: &[u8]| {
            out.write_all(&(bytes.len() as u64).to_le_bytes())?;
            out.write_all(bytes)
        };
        match self {
            Record::Entry { key, entry, text } => {
                out.write_all(&[0])?;
                bytes(out, key.as_bytes())?;
                out.write_all(&entry.to_le_bytes())?;
                bytes(out, text)
            }
            Record::Envelope {
                key,
                entry_rows,
                text,
            } => {
                out.write_all(&[1])?;
                bytes(out, key.as_bytes())?;
                let entries: Vec<u8> = entry_rows.iter().flat_map(|entry| entry.to_le_bytes()).collect();
                bytes(out, &entries)?;
                bytes(out, text)
            }
        }
    }

    /// The next record of a spill file; `None` at its end.
    fn read_from(input: &mut impl Read) -> Result<Option<Record>> {
        let mut kind = [0u8];
        if input.read(&mut kind)? == 0 {
            return Ok(None);
        }
        let number = |input: &mut dyn Read| -> Result<u64> {
            let mut bytes = [0u8; 8];
            input.read_exact(&mut bytes)?;
            Ok(u64::from_le_bytes(bytes))
        };
        let entry = |input: &mut dyn Read| -> Result<u32> {
            let mut bytes = [0u8; 4];
            input.read_exact(&mut bytes)?;
            Ok(u32::from_le_bytes(bytes))
        };
        let bytes = |input: &mut dyn Read| -> Result<Vec<u8>> {
            let mut bytes = vec![0u8; usize::try_from(number(input)?)?];
            input.read_exact(&mut bytes)?;
            Ok(bytes)
        };
        let text = |input: &mut dyn Read| -> Result<String> { Ok(String::from_utf8(bytes(input)?)?) };
        Ok(Some(match kind[0] {
            0 => Record::Entry {
                key: text(input)?,
                entry: entry(input)?,
                text: bytes(input)?,
            },
            _ => {
                let key = text(input)?;
                let entry_rows = bytes(input)?
                    .chunks_exact(4)
                    .map(|entry| u32::from_le_bytes(entry.try_into().expect("four bytes")))
                    .collect();
                Record::Envelope {
                    key,
                    entry_rows,
                    text: bytes(input)?,
                }
            }
        }))
    }
}

/// The rendered rows: in memory while they fit the budget, then in spill files.
struct Gathered {
    budget: usize,
    held: Vec<Record>,
    held_bytes: usize,
    spill_folder: PathBuf,
    spilled: Option<Vec<Spill>>,
}

/// One spill file being written.
struct Spill {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl Spill {
    fn new(path: PathBuf) -> Spill {
        Spill { path, writer: None }
    }

    fn add(&mut self, record: &Record) -> Result<()> {
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let file = fsops::create_file(&self.path)
                    .with_context(|| format!("cannot create {}", self.path.display()))?;
                self.writer.insert(BufWriter::with_capacity(64 << 10, file))
            }
        };
        record
            .write_to(writer)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Flushes the file; its path, when anything was written.
    fn finish(self) -> Result<Option<PathBuf>> {
        let Some(writer) = self.writer else {
            return Ok(None);
        };
        writer
            .into_inner()
            .map_err(|error| error.into_error())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(Some(self.path))
    }
}

impl Gathered {
    fn new(budget: usize, spill_folder: PathBuf) -> Gathered {
        Gathered {
            budget,
            held: Vec::new(),
            held_bytes: 0,
            spill_folder,
            spilled: None,
        }
    }

    fn add(&mut self, record: Record) -> Result<()> {
        if let Some(spills) = &mut self.spilled {
            return spills[record.bucket(0)].add(&record);
        }
        self.held_bytes += record.size();
        self.held.push(record);
        if self.held_bytes > self.budget {
            fsops::create_dir_all(&self.spill_folder)
                .with_context(|| format!("cannot create {}", self.spill_folder.display()))?;
            let mut spills: Vec<Spill> = (0..BUCKETS)
                .map(|bucket| Spill::new(self.spill_folder.join(format!("0-{bucket}"))))
                .collect();
            for record in std::mem::take(&mut self.held) {
                spills[record.bucket(0)].add(&record)?;
            }
            self.held_bytes = 0;
            self.spilled = Some(spills);
        }
        Ok(())
    }

    /// Rebuilds every Bundle, giving each whole document to `write`; returns how many parts
    /// the rows were rebuilt in (1 when they fitted in memory, else the buckets rebuilt).
    fn rebuild(self, write: &mut dyn FnMut(Vec<u8>) -> Result<()>) -> Result<u64> {
        let Some(spills) = self.spilled else {
            rebuild_bundles(self.held, write)?;
            return Ok(1);
        };
        let mut parts = 0;
        let mut pending: Vec<(PathBuf, u32)> = Vec::new();
        for spill in spills {
            pending.extend(spill.finish()?.map(|path| (path, 0)));
        }
        while let Some((path, splits)) = pending.pop() {
            let size = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
            let records = || -> Result<SpillReader> {
                let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
                Ok(SpillReader(BufReader::with_capacity(64 << 10, file)))
            };
            if size as usize > self.budget && splits < MAX_SPLITS {
                // `0-7` splits into `0-7.0` .. `0-7.63`: names unique by their place in the tree.
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let mut spills: Vec<Spill> = (0..BUCKETS)
                    .map(|bucket| Spill::new(self.spill_folder.join(format!("{name}.{bucket}"))))
                    .collect();
                for record in records()? {
                    let record = record?;
                    spills[record.bucket(splits + 1)].add(&record)?;
                }
                let mut split: Vec<PathBuf> = Vec::new();
                for spill in spills {
                    split.extend(spill.finish()?);
                }
                fsops::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
                // All went to one bucket: one document's Bundles (which cannot be split), or, one
                // time in 64, documents whose hashes share the next bits. Rebuild it whole.
                let whole = split.len() == 1;
                pending.extend(
                    split
                        .into_iter()
                        .map(|path| (path, if whole { MAX_SPLITS } else { splits + 1 })),
                );
                continue;
            }
            let held = records()?.collect::<Result<Vec<Record>>>()?;
            rebuild_bundles(held, write)?;
            fsops::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            parts += 1;
        }
        Ok(parts)
    }
}

/// The records of a spill file, in the order they were written.
struct SpillReader(BufReader<File>);

impl Iterator for SpillReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        Record::read_from(&mut self.0).transpose()
    }
}

/// Rebuilds the whole-document Bundles among `records` (all the records of their documents),
/// innermost first so that a nested Bundle is whole before the Bundle around it takes it in.
fn rebuild_bundles(records: Vec<Record>, write: &mut dyn FnMut(Vec<u8>) -> Result<()>) -> Result<()> {
    let mut gathered: HashMap<String, Vec<(u32, Vec<u8>)>> = HashMap::new();
    let mut envelopes = Vec::new();
    for record in records {
        match record {
            Record::Entry { key, entry, text } => gathered.entry(key).or_default().push((entry, text)),
            envelope => envelopes.push(envelope),
        }
    }
    envelopes.sort_by_key(|envelope| std::cmp::Reverse(envelope.key().matches('/').count()));

    let mut kept_whole: HashMap<String, Vec<u32>> = HashMap::new();
    for envelope in envelopes {
        let Record::Envelope {
            key,
            entry_rows,
            text,
        } = envelope
        else {
            unreachable!("only envelopes were kept");
        };
        let mut entries = gathered.remove(&key).unwrap_or_default();
        entries.sort_by_key(|(entry, _)| *entry);
        let found: Vec<u32> = entries.iter().map(|(entry, _)| *entry).collect();
        let mut expected = entry_rows.clone();
        expected.sort_unstable();
        if found != expected {
            bail!(
                "Bundle {key} cannot be rebuilt: its envelope names entries {expected:?} as rows, the \
                 resource tables hold rows for entries {found:?}"
            );
        }
        let text = fill_placeholders(&key, &text, entries)?;
        match container_of(&key) {
            Some((parent, entry)) => gathered.entry(parent.to_owned()).or_default().push((entry, text)),
            None => write(text)?,
        }
        kept_whole.insert(key, entry_rows);
    }

    // Rows of a Bundle without an envelope: fine only when a Bundle around it kept that entry
    // whole (its envelope was refused at convert, so the one around it kept its text).
    for key in gathered.keys() {
        if !inside_kept_entry(key, &kept_whole) {
            bail!("rows of Bundle {key} have no Bundle to go back into: resource_bundle has no row for it");
        }
    }
    Ok(())
}

/// `envelope` with each entry's placeholder replaced by the entry's resource text.
fn fill_placeholders(key: &str, envelope: &[u8], entries: Vec<(u32, Vec<u8>)>) -> Result<Vec<u8>> {
    let mut texts: HashMap<u32, Vec<u8>> = entries.into_iter().collect();
    let mut out = Vec::with_capacity(envelope.len() + texts.values().map(Vec::len).sum::<usize>());
    let mut rest = envelope;
    while let Some(start) = rest.iter().position(|byte| *byte == PLACEHOLDER) {
        out.extend_from_slice(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.iter().position(|byte| *byte == PLACEHOLDER);
        let entry = end
            .and_then(|end| std::str::from_utf8(&after[..end]).ok())
            .and_then(|digits| digits.parse::<u32>().ok());
        let (Some(end), Some(entry)) = (end, entry) else {
            bail!("Bundle {key}: its envelope's text holds a NUL byte that is no entry's place");
        };
        let Some(text) = texts.remove(&entry) else {
            bail!("Bundle {key}: entry {entry} is placed twice in its envelope");
        };
        out.extend_from_slice(&text);
        rest = &after[end + 1..];
    }
    out.extend_from_slice(rest);
    if let Some(entry) = texts.keys().next() {
        bail!("Bundle {key}: entry {entry} has no place in its envelope");
    }
    Ok(out)
}

/// For a nested Bundle's key (`<parent key>/<entry>`): the Bundle and entry it is in.
fn container_of(key: &str) -> Option<(&str, u32)> {
    let (parent, entry) = key.rsplit_once('/')?;
    Some((parent, entry.parse().ok()?))
}

/// Whether the Bundle `key` sits in an entry that a Bundle around it kept whole.
fn inside_kept_entry(key: &str, envelopes: &HashMap<String, Vec<u32>>) -> bool {
    let mut key = key;
    while let Some((parent, entry)) = key.rsplit_once('/') {
        if let Some(entry_rows) = envelopes.get(parent) {
            return entry.parse().is_ok_and(|entry: u32| !entry_rows.contains(&entry));
        }
        key = parent;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_from_a_spill_file_as_written() {
        let records = [
            Record::Entry {
                key: "00ab".into(),
                entry: 3,
                text: b"{\"resourceType\":\"Patient\"}".to_vec(),
            },
            Record::Envelope {
                key: "00ab/3".into(),
                entry_rows: vec![0, 2],
                text: b"{}".to_vec(),
            },
            Record::Envelope {
                key: "00ab".into(),
                entry_rows: vec![],
                text: Vec::new(),
            },
        ];
        let mut bytes = Vec::new();
        for record in &records {
            record.write_to(&mut bytes).unwrap();
        }
        let mut input = &bytes[..];
        let mut back = Vec::new();
        while let Some(record) = Record::read_from(&mut input).unwrap() {
            let mut again = Vec::new();
            record.write_to(&mut again).unwrap();
            back.push(again);
        }
        let written: Vec<Vec<u8>> = records
            .iter()
            .map(|record| {
                let mut one = Vec::new();
                record.write_to(&mut one).unwrap();
                one
            })
            .collect();
        assert_eq!(back, written);
        assert!(
            Record::read_from(&mut &bytes[..5]).is_err(),
            "a cut record is an error"
        );
    }

    #[test]
    fn placeholders_take_the_entries_and_a_stray_one_is_an_error() {
        let envelope = format!(
            "{{\"entry\":[{{\"resource\":{}}},{{}},{{\"resource\":{}}}]}}",
            placeholder(0),
            placeholder(2)
        );
        let filled = fill_placeholders(
            "k",
            envelope.as_bytes(),
            vec![(2, b"{\"b\":1}".to_vec()), (0, b"{\"a\":1}".to_vec())],
        )
        .unwrap();
        assert_eq!(
            filled,
            br#"{"entry":[{"resource":{"a":1}},{},{"resource":{"b":1}}]}"#
        );
        assert!(fill_placeholders("k", envelope.as_bytes(), vec![(0, b"1".to_vec())]).is_err());
        assert!(fill_placeholders("k", b"{\"x\":\"\0\"}", vec![]).is_err());
    }
}
