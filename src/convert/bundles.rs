//! `export --bundles`: each Bundle put back together from its envelope (its row in
//! `resource_bundle`, which left out the entries that became rows) and its entries' rows in the
//! other resource tables (docs/LOSSLESS.md, "Bundles").
//!
//! The entries of a Bundle can be anywhere in the tables, so they are gathered in memory, by
//! the key their rows' `__bundle` holds, before the envelope is written. Memory stays bounded:
//! Bundles are taken a share of their keys at a time (a hash of the document's key, so a Bundle
//! and the Bundles nested in it go together), and when a share's rows pass the budget
//! (`--bundles-memory`) the rebuild starts again with eight times the shares. Each share reads
//! the tables once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use arrow_array::{RecordBatch, UInt32Array};

use super::export::{each_batch, ExportFile, ExportFormat, ResourceTableParts, Staging, TypeExport};
use crate::fhir::key_hash::text_key;
use crate::sink::Store;
use crate::table::lossless::Exporter;

/// The most shares the keys are cut into: past it a share is rebuilt whatever it holds (at
/// 4,096 shares, 256 MB per share stands for a terabyte of entries).
const MAX_SHARES: u64 = 4096;

/// The resource type whose table holds the envelopes.
pub(super) const BUNDLE_TYPE: &str = "Bundle";

/// Writes `Bundle.ndjson[.gz]`: every Bundle that was a whole document, rebuilt, gathering at
/// most `budget` bytes of entries at a time (see the module's doc).
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
    let mut path = None;
    let mut shares = 1u64;
    loop {
        let rebuild = Rebuild {
            output,
            tables,
            bundle_table,
            shares,
            budget: if shares >= MAX_SHARES { usize::MAX } else { budget },
        };
        let mut staged = || path.get_or_insert_with(|| staging.stage_file(&name)).clone();
        let Some((rows, bytes)) = rebuild.write(&mut staged, format)? else {
            shares = (shares * 8).min(MAX_SHARES);
            continue;
        };
        return Ok(TypeExport {
            resource_type: BUNDLE_TYPE.to_owned(),
            table: bundle_table.table.clone(),
            file: (rows > 0).then_some(name),
            rows,
            in_bundles: 0,
            bytes,
            shares: Some(shares),
        });
    }
}

/// One attempt at the rebuild, with the keys cut into `shares`.
struct Rebuild<'r> {
    output: &'r dyn Store,
    tables: &'r [ResourceTableParts],
    bundle_table: &'r ResourceTableParts,
    shares: u64,
    budget: usize,
}

impl Rebuild<'_> {
    /// Writes every share's Bundles into the file at `staged()` (created, or emptied, at the
    /// first); returns the Bundles written and the file's size, or `None` when a share went over
    /// the budget.
    fn write(&self, staged: &mut dyn FnMut() -> PathBuf, format: ExportFormat) -> Result<Option<(u64, u64)>> {
        let mut file: Option<ExportFile> = None;
        let mut rows = 0u64;
        for share in 0..self.shares {
            let mut write = |mut bundle: Vec<u8>| {
                bundle.push(b'\n');
                let file = match &mut file {
                    Some(file) => file,
                    None => file.insert(ExportFile::create(&staged(), format)?),
                };
                rows += 1;
                file.write(&bundle)
            };
            if !rebuild_share(self, share, &mut write)? {
                return Ok(None);
            }
        }
        let bytes = match file {
            Some(file) => file.finish()?,
            None => 0,
        };
        Ok(Some((rows, bytes)))
    }
}

/// The share (of `shares`) a Bundle key falls in: by the key of the document it is part of.
fn share_of(key: &str, shares: u64) -> u64 {
    let document = key.split('/').next().unwrap_or(key);
    text_key(document) % shares
}

/// An entry's resource, rendered: (entry index, JSON text).
type EntryText = (u32, Vec<u8>);

/// Rebuilds the whole-document Bundles of one share, giving each to `write` as it is done;
/// `false` when the share gathered more than the budget (before any was written).
fn rebuild_share(
    rebuild: &Rebuild<'_>,
    share: u64,
    write: &mut dyn FnMut(Vec<u8>) -> Result<()>,
) -> Result<bool> {
    let Rebuild {
        output,
        tables,
        bundle_table,
        shares,
        budget,
    } = *rebuild;
    let mut gathered: HashMap<String, Vec<EntryText>> = HashMap::new();
    let mut held = Held::new(budget);
    for table in tables.iter().filter(|table| table.resource_type != BUNDLE_TYPE) {
        each_batch(output, table, |exporter, batch| {
            let rows = exporter.rows_reached(batch)?;
            for row in 0..batch.num_rows() {
                let Some((key, entry)) = rows.container(row) else {
                    continue;
                };
                if share_of(key, shares) != share || held.over() {
                    continue;
                }
                let mut text = Vec::new();
                rows.write(row, Vec::new(), &mut text)?;
                held.add(key, text.len() + key.len());
                gathered.entry(key.to_owned()).or_default().push((entry, text));
            }
            Ok(())
        })?;
        if held.over() {
            return Ok(false);
        }
    }

    // The envelopes of the share, each a one-row batch, rebuilt innermost first so
    // that a nested Bundle is whole before the Bundle around it takes it in.
    let mut envelopes: Vec<(usize, RecordBatch, Arc<Exporter>)> = Vec::new();
    each_batch(output, bundle_table, |exporter, batch| {
        let rows = exporter.rows_reached(batch)?;
        for row in 0..batch.num_rows() {
            let Some((key, _)) = rows.envelope(row) else {
                bail!(
                    "{}: a Bundle row without {}",
                    bundle_table.table,
                    crate::table::lossless::KEY
                );
            };
            if share_of(key, shares) == share && !held.over() {
                // A copy of the row: a slice would keep the whole batch alive.
                let one = UInt32Array::from(vec![row as u32]);
                let envelope = arrow_select::take::take_record_batch(batch, &one)?;
                held.add(key, envelope.get_array_memory_size());
                envelopes.push((key.matches('/').count(), envelope, Arc::clone(exporter)));
            }
        }
        Ok(())
    })?;
    if held.over() {
        return Ok(false);
    }
    envelopes.sort_by_key(|(depth, _, _)| std::cmp::Reverse(*depth));

    let mut kept_whole: HashMap<String, Vec<u32>> = HashMap::new();
    for (_, envelope, exporter) in &envelopes {
        let rows = exporter.rows_reached(envelope)?;
        let (key, entry_rows) = rows.envelope(0).expect("checked above");
        let mut entries = gathered.remove(key).unwrap_or_default();
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
        let inserted = entries
            .into_iter()
            .map(|(entry, text)| {
                let text = String::from_utf8(text).expect("export writes UTF-8");
                (format!("/entry/{entry}"), "resource".to_owned(), text)
            })
            .collect();
        let mut text = Vec::new();
        rows.write(0, inserted, &mut text)?;
        kept_whole.insert(key.to_owned(), entry_rows);
        match rows.container(0) {
            Some((parent, entry)) => gathered.entry(parent.to_owned()).or_default().push((entry, text)),
            None => write(text)?,
        }
    }

    // Rows of a Bundle without an envelope: fine only when a Bundle around it kept that entry
    // whole (its envelope was refused at convert, so the one around it kept its text).
    for key in gathered.keys() {
        if !inside_kept_entry(key, &kept_whole) {
            bail!("rows of Bundle {key} have no Bundle to go back into: resource_bundle has no row for it");
        }
    }
    Ok(true)
}

/// What one share holds in memory, against the budget.
struct Held {
    bytes: usize,
    budget: usize,
    first_document: Option<String>,
    several_documents: bool,
}

impl Held {
    fn new(budget: usize) -> Self {
        Held {
            bytes: 0,
            budget,
            first_document: None,
            several_documents: false,
        }
    }

    /// Counts `bytes` held for the Bundle `key`.
    fn add(&mut self, key: &str, bytes: usize) {
        self.bytes += bytes;
        let document = key.split('/').next().unwrap_or(key);
        match &self.first_document {
            None => self.first_document = Some(document.to_owned()),
            Some(first) => self.several_documents |= first != document,
        }
    }

    /// Over the budget, and smaller shares would help: one document's Bundles cannot be split.
    fn over(&self) -> bool {
        self.bytes > self.budget && self.several_documents
    }
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
