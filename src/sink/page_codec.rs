//! Zstd for the pages of a wide table's reached column chunks, with one context per thread of a
//! row group's writing.
//!
//! Why: the parquet crate's column writer makes a zstd compressor and a decompressor for every
//! compressed column chunk, and zstd asks the CPU for its features (`cpuid`) each time it makes
//! one. Under a hypervisor that instruction traps to the host: 6.3 µs each on the benchmark
//! machine, three per context, about 3% of the CPU time of `--resources all` (2,800 contexts
//! for the 1,400 compressed chunks of 500 MB of Bundles). So those chunks are encoded
//! uncompressed and their pages compressed here, by a context each thread keeps while it writes
//! a row group ([`Zstd`]):
//! the bytes and the account of them are the crate's own (the tests of `wide_file.rs` compare
//! whole files with the crate's).

use std::io::Cursor as WriteCursor;

use anyhow::{bail, ensure, Context, Result};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::page_index::offset_index::OffsetIndexMetaData;

use super::footer::{Cursor, I32};

/// A zstd compression context, made on first use and kept for the level it was made for.
#[derive(Default)]
pub(super) struct Zstd(Option<(i32, zstd::bulk::Compressor<'static>)>);

impl Zstd {
    /// The context at `level`.
    pub(super) fn at_level(&mut self, level: i32) -> Result<&mut zstd::bulk::Compressor<'static>> {
        if self.0.as_ref().is_none_or(|(made_for, _)| *made_for != level) {
            self.0 = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        Ok(&mut self.0.as_mut().expect("made above").1)
    }

    /// Appends `input` compressed at `level` to `output`, as the crate's codec does (the same
    /// bytes: a frame made in one pass into room for the worst case).
    pub(super) fn compress_into(&mut self, level: i32, input: &[u8], output: &mut Vec<u8>) -> Result<()> {
        let start = output.len();
        output.reserve(zstd::zstd_safe::compress_bound(input.len()));
        let mut cursor = WriteCursor::new(output);
        cursor.set_position(start as u64);
        self.at_level(level)?.compress_to_buffer(input, &mut cursor)?;
        Ok(())
    }
}

/// Thrift field ids of a `PageHeader`.
const PAGE_TYPE: i16 = 1;
const UNCOMPRESSED_SIZE: i16 = 2;
const COMPRESSED_SIZE: i16 = 3;
const CHECKSUM: i16 = 4;
/// `PageType::DICTIONARY_PAGE` and `PageType::DATA_PAGE` (version 1, whose whole body is
/// compressed; a version 2 page leaves its levels out, which this does not do).
const DICTIONARY_PAGE: i64 = 2;
const DATA_PAGE: i64 = 0;

/// A page header as read: its length, the page's type and body size, and where the value of
/// its compressed size lies (the one field that changes).
struct PageHeader {
    length: usize,
    page_type: i64,
    body: usize,
    compressed_size_value: std::ops::Range<usize>,
}

fn zigzag(value: u64) -> i64 {
    (value >> 1) as i64 ^ -((value & 1) as i64)
}

/// The header at the start of `bytes`, of a page written uncompressed (its two sizes equal).
fn page_header(bytes: &[u8]) -> Result<PageHeader> {
    let mut cursor = Cursor::new(bytes);
    let (mut page_type, mut uncompressed, mut compressed, mut value) = (None, None, None, None);
    let mut last = 0i16;
    while let Some((field, kind)) = cursor.field_header(&mut last)? {
        match field {
            PAGE_TYPE | UNCOMPRESSED_SIZE | COMPRESSED_SIZE => {
                ensure!(kind == I32, "a page header field of another type");
                let start = cursor.at();
                let read = zigzag(cursor.varint()?);
                match field {
                    PAGE_TYPE => page_type = Some(read),
                    UNCOMPRESSED_SIZE => uncompressed = Some(read),
                    _ => {
                        compressed = Some(read);
                        value = Some(start..cursor.at());
                    }
                }
            }
            CHECKSUM => bail!("a page with a checksum"),
            _ => cursor.skip(kind)?,
        }
    }
    let (Some(page_type), Some(body), Some(compressed), Some(value)) =
        (page_type, uncompressed, compressed, value)
    else {
        bail!("a page header without its type or sizes");
    };
    ensure!(body == compressed, "a page already compressed");
    Ok(PageHeader {
        length: cursor.at(),
        page_type,
        body: usize::try_from(body)?,
        compressed_size_value: value,
    })
}

fn zigzag_varint(value: i64, output: &mut Vec<u8>) {
    let mut rest = ((value << 1) ^ (value >> 63)) as u64;
    while rest >= 0x80 {
        output.push((rest as u8) | 0x80);
        rest >>= 7;
    }
    output.push(rest as u8);
}

/// A column chunk written uncompressed (`chunk`, its pages from the first; `origin`, where it
/// starts in the offsets of `metadata` and `offset_index`) with its pages compressed at `level`:
/// the chunk's new bytes and metadata, their offsets from the new bytes' start, and the offset
/// index moved to them. What the crate's writer would have made with zstd at that level.
pub(super) fn compress_chunk(
    chunk: &[u8],
    origin: i64,
    metadata: &ColumnChunkMetaData,
    offset_index: Option<&mut OffsetIndexMetaData>,
    level: ZstdLevel,
    zstd: &mut Zstd,
) -> Result<(Vec<u8>, ColumnChunkMetaData)> {
    let mut output = Vec::with_capacity(chunk.len() / 2);
    let mut uncompressed_size = 0i64;
    // Each data page: where it started, where it starts now and its length.
    let mut data_pages: Vec<(i64, i64, i32)> = Vec::new();
    let mut dictionary = None;
    let mut compressed = Vec::new();
    let mut at = 0;
    while at < chunk.len() {
        let header = page_header(&chunk[at..])?;
        let body_start = at + header.length;
        let body = chunk
            .get(body_start..body_start + header.body)
            .context("a page beyond its chunk")?;
        let start = output.len();
        let value = header.compressed_size_value.clone();
        compressed.clear();
        zstd.compress_into(level.compression_level(), body, &mut compressed)?;
        output.extend_from_slice(&chunk[at..at + value.start]);
        let compressed_size = i32::try_from(compressed.len()).context("a compressed page over 2 GiB")?;
        zigzag_varint(i64::from(compressed_size), &mut output);
        output.extend_from_slice(&chunk[at + value.end..body_start]);
        let header_length = output.len() - start;
        output.extend_from_slice(&compressed);
        uncompressed_size += (header_length + header.body) as i64;
        match header.page_type {
            DICTIONARY_PAGE => {
                ensure!(start == 0, "a dictionary page after the first");
                dictionary = Some(0);
            }
            DATA_PAGE => data_pages.push((
                origin + at as i64,
                start as i64,
                i32::try_from(output.len() - start)?,
            )),
            other => bail!("a page of type {other}"),
        }
        at = body_start + header.body;
    }
    let first_data_page = data_pages.first().context("a chunk without data pages")?.1;
    if let Some(index) = offset_index {
        ensure!(
            index.page_locations.len() == data_pages.len(),
            "an offset index of other pages"
        );
        for (location, (was, now, length)) in index.page_locations.iter_mut().zip(&data_pages) {
            ensure!(location.offset == *was, "an offset index of other pages");
            location.offset = *now;
            location.compressed_page_size = *length;
        }
    }
    let metadata = metadata
        .clone()
        .into_builder()
        .set_compression_codec(Compression::ZSTD(level).into())
        .set_total_compressed_size(output.len() as i64)
        .set_total_uncompressed_size(uncompressed_size)
        .set_data_page_offset(first_data_page)
        .set_dictionary_page_offset(dictionary)
        .build()?;
    output.shrink_to_fit();
    Ok((output, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data page header as the crate writes one: type, both sizes, then a `DataPageHeader`
    /// (one value, PLAIN, RLE levels); `checksum` adds a crc field after the sizes.
    fn header(uncompressed: u8, compressed: u8, checksum: bool) -> Vec<u8> {
        let mut bytes = vec![0x15, 0x00, 0x15, uncompressed << 1, 0x15, compressed << 1];
        if checksum {
            bytes.extend([0x15, 0x02]);
            bytes.extend([0x1c, 0x15, 0x02, 0x15, 0x00, 0x15, 0x06, 0x15, 0x06, 0x00, 0x00]);
        } else {
            bytes.extend([0x2c, 0x15, 0x02, 0x15, 0x00, 0x15, 0x06, 0x15, 0x06, 0x00, 0x00]);
        }
        bytes
    }

    #[test]
    fn a_page_header_gives_its_length_sizes_and_the_place_of_its_compressed_size() {
        let mut bytes = header(5, 5, false);
        let length = bytes.len();
        bytes.extend(b"body!");
        let read = page_header(&bytes).unwrap();
        assert_eq!((read.length, read.page_type, read.body), (length, DATA_PAGE, 5));
        assert_eq!(read.compressed_size_value, 5..6);
        let mut written = Vec::new();
        zigzag_varint(5, &mut written);
        assert_eq!(&bytes[read.compressed_size_value], &written[..]);
        zigzag_varint(300, &mut written);
        assert_eq!(written, [0x0a, 0xd8, 0x04], "a two-byte size");
    }

    #[test]
    fn pages_already_compressed_or_with_a_checksum_are_refused() {
        let compressed = page_header(&header(9, 5, false)).err().unwrap();
        assert!(
            compressed.to_string().contains("already compressed"),
            "{compressed}"
        );
        let checked = page_header(&header(5, 5, true)).err().unwrap();
        assert!(checked.to_string().contains("checksum"), "{checked}");
        assert!(
            page_header(&header(5, 5, false)[..7]).is_err(),
            "a header cut short"
        );
    }
}
