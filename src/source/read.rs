use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

use flate2::read::MultiGzDecoder;

use super::InputFile;

/// Bytes read per system call; also the buffer that NDJSON lines are cut from.
const READ_BUFFER: usize = 1 << 20;

fn open(file: &InputFile) -> io::Result<Box<dyn Read>> {
    let handle = open_raw(file, None)?;
    Ok(if file.gzip {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(READ_BUFFER, handle)))
    } else {
        handle
    })
}

/// The file's bytes as stored (still gzipped if it is), or the byte `range` of them: a local
/// file, or a streamed GET of an object (a range GET for a part of a big NDJSON object).
pub fn open_raw(file: &InputFile, range: Option<std::ops::Range<u64>>) -> io::Result<Box<dyn Read>> {
    if let Some(remote) = &file.remote {
        if range.is_none() {
            if let Some(bytes) = super::read_ahead::take(file) {
                return Ok(Box::new(io::Cursor::new(bytes)));
            }
        }
        return Ok(remote.location.reader(&file.relative, range)?);
    }
    let mut handle = File::open(&file.path)?;
    Ok(match range {
        Some(range) => {
            handle.seek(SeekFrom::Start(range.start))?;
            Box::new(handle.take(range.end - range.start))
        }
        None => Box::new(handle),
    })
}

/// How much of the input one worker holds in memory at once (`max_json_bytes`,
/// `max_line_bytes`); input over a limit is reported and skipped, never read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest JSON document (a `.json` file, after gzip decompression).
    pub max_json_bytes: u64,
    /// Longest NDJSON line (without its line break, after decompression).
    pub max_line_bytes: u64,
}

/// Default `max_json_bytes`: 2 GiB. Synthea's and servers' Bundles are megabytes to a few hundred;
/// a document must be parsed in memory, so this only stops a runaway file from taking it all.
pub const DEFAULT_MAX_JSON_BYTES: u64 = 2 << 30;
/// Default `max_line_bytes`: 256 MiB. A Bulk Data line is one resource; the largest real ones
/// (Binary, attachments in DocumentReference) are tens of megabytes.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 256 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// The whole (decompressed) content of a JSON file: one document must be in memory to parse it.
/// Content over `max_bytes` is an error of kind [`io::ErrorKind::FileTooLarge`], found before
/// more than `max_bytes` are held.
pub fn read_whole(file: &InputFile, max_bytes: u64) -> io::Result<Vec<u8>> {
    let too_large = || {
        let what = if file.gzip { "decompresses to" } else { "is" };
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "the JSON document {what} more than {} (max_json_bytes, --max-json-bytes): not read",
                describe_bytes(max_bytes)
            ),
        )
    };
    if !file.gzip && file.size > max_bytes {
        return Err(too_large());
    }
    let mut content = Vec::with_capacity(if file.gzip { 0 } else { file.size as usize + 1 });
    open(file)?
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut content)?;
    if content.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(content)
}

/// `bytes` as text, or the offset of the first byte that is not UTF-8. Every input document is
/// checked whole before it is parsed; the standard library's check, a byte at a time, was 1.5%
/// of a `--resources all` run and 3.3% of a run of the built-in tables (500 MB of Bundles,
/// instructions), where simdutf8 checks 32 or 64 bytes at once (it is already built, under
/// arrow-json and encoding_rs).
pub fn text_of(bytes: &[u8]) -> Result<&str, usize> {
    simdutf8::compat::from_utf8(bytes).map_err(|error| error.valid_up_to())
}

/// A byte count for messages: `256 MiB`, `2 GiB`, or bytes when not a whole unit.
pub fn describe_bytes(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

/// A byte range of an uncompressed NDJSON file that starts and ends at line boundaries, so several
/// workers can share one big file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub start: u64,
    pub end: u64,
    /// The 1-based line number of the part's first line in the whole file.
    pub first_line: u64,
}

/// Cuts an uncompressed file into parts of about `part_bytes` at line boundaries, counting lines
/// on the way (one sequential read, no parsing) so every part knows its first line number.
pub fn split_lines(file: &InputFile, part_bytes: u64) -> io::Result<Vec<Part>> {
    let mut reader = open_raw(file, None)?;
    let mut buffer = vec![0u8; READ_BUFFER];
    let (mut position, mut lines) = (0u64, 0u64);
    let mut parts = Vec::new();
    let mut current = Part {
        start: 0,
        end: 0,
        first_line: 1,
    };
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        for (offset, &byte) in buffer[..read].iter().enumerate() {
            if byte != b'\n' {
                continue;
            }
            lines += 1;
            let after = position + offset as u64 + 1;
            if after - current.start >= part_bytes {
                parts.push(Part {
                    end: after,
                    ..current
                });
                current = Part {
                    start: after,
                    end: after,
                    first_line: lines + 1,
                };
            }
        }
        position += read as u64;
    }
    if position > current.start {
        parts.push(Part {
            end: position,
            ..current
        });
    }
    Ok(parts)
}

/// One NDJSON line as [`for_each_line`] hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes, without the line break.
    Text(&'a [u8]),
    /// A line longer than the limit, skipped unread: its bytes, line break included if any.
    TooLong(u64),
}

/// Streams an NDJSON file (or one part of it) line by line (1-based line numbers of the whole
/// file, without the line break), so a file of any size needs only one line in memory. A line
/// longer than `max_line` bytes is skipped and reported as [`Line::TooLong`]; reading goes on
/// after it. Stops at the first read error and returns it.
pub fn for_each_line(
    file: &InputFile,
    part: Option<&Part>,
    max_line: u64,
    mut visit: impl FnMut(u64, Line<'_>),
) -> io::Result<()> {
    let source: Box<dyn Read> = match part {
        Some(part) => open_raw(file, Some(part.start..part.end))?,
        None => open(file)?,
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, source);
    let mut line = Vec::new();
    let mut number = part.map_or(0, |p| p.first_line - 1);
    // Room for the longest allowed line and its `\r\n`: more than that is never buffered.
    let keep = max_line.saturating_add(2);
    loop {
        line.clear();
        let read = read_line_within(&mut reader, keep, &mut line)?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        if read == keep && !line.ends_with(b"\n") {
            let rest = reader.skip_until(b'\n')? as u64;
            visit(number, Line::TooLong(read + rest));
            continue;
        }
        let mut content = line.as_slice();
        if let Some(rest) = content.strip_suffix(b"\n") {
            content = rest.strip_suffix(b"\r").unwrap_or(rest);
        }
        if content.len() as u64 > max_line {
            visit(number, Line::TooLong(read));
            continue;
        }
        visit(number, Line::Text(content));
    }
}

/// Appends to `line` the bytes up to and with the next line break, or up to `limit` bytes, or to
/// the end: what `reader.take(limit).read_until(b'\n', line)` does, with the memchr crate's
/// vector search for the line break, where std's goes a word at a time (1.9% of the
/// instructions of a `--resources all` run on Bulk NDJSON). Returns the bytes read.
fn read_line_within(reader: &mut impl BufRead, limit: u64, line: &mut Vec<u8>) -> io::Result<u64> {
    let mut read = 0;
    while read < limit {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let room = &available[..available
            .len()
            .min(usize::try_from(limit - read).unwrap_or(usize::MAX))];
        if room.is_empty() {
            break;
        }
        let (used, ended) = match memchr::memchr(b'\n', room) {
            Some(at) => (at + 1, true),
            None => (room.len(), false),
        };
        line.extend_from_slice(&room[..used]);
        reader.consume(used);
        read += used as u64;
        if ended {
            break;
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::InputFormat;
    use std::path::Path;

    fn line_text(line: Line<'_>) -> String {
        match line {
            Line::Text(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
            Line::TooLong(length) => format!("<{length} bytes>"),
        }
    }

    fn ndjson_file(dir: &Path, name: &str, content: &[u8], gzip: bool) -> InputFile {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        InputFile {
            path,
            relative: name.into(),
            format: InputFormat::Ndjson,
            gzip,
            size: content.len() as u64,
            remote: None,
        }
    }

    #[test]
    fn a_line_is_read_as_take_and_read_until_read_it() {
        // Texts with breaks at the start, the end, side by side and none, read through buffers
        // smaller and larger than a line, up to limits inside, at and past a line.
        let texts: [&[u8]; 6] = [
            b"",
            b"\n",
            b"abc",
            b"abc\n\nde\r\nfghij\n",
            b"\n\nx",
            b"0123456789\nab",
        ];
        for text in texts {
            for capacity in [1, 2, 3, 7, 64] {
                for limit in [0, 1, 2, 3, 4, 5, 11, 100] {
                    let mut ours = BufReader::with_capacity(capacity, text);
                    let mut theirs = BufReader::with_capacity(capacity, text);
                    loop {
                        let (mut our_line, mut their_line) = (Vec::new(), Vec::new());
                        let our_read = read_line_within(&mut ours, limit, &mut our_line).unwrap();
                        let their_read = (&mut theirs)
                            .take(limit)
                            .read_until(b'\n', &mut their_line)
                            .unwrap();
                        let case = format!("{text:?}, buffer {capacity}, limit {limit}");
                        assert_eq!((our_read, &our_line), (their_read as u64, &their_line), "{case}");
                        if our_read == 0 {
                            break;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lines_over_the_limit_are_skipped_and_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let text = "12345\n123456\r\n1234567\n\n1234\r\n123456789012345678901234567890";
        let file = ndjson_file(dir.path(), "x.ndjson", text.as_bytes(), false);
        let mut seen = Vec::new();
        for_each_line(&file, None, 6, |number, line| {
            seen.push((number, line_text(line)))
        })
        .unwrap();
        let expected = [
            (1, "12345"),
            (2, "123456"),
            (3, "<8 bytes>"),
            (4, ""),
            (5, "1234"),
            (6, "<30 bytes>"),
        ];
        let expected: Vec<(u64, String)> = expected.iter().map(|(n, t)| (*n, t.to_string())).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_json_document_over_the_limit_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = ndjson_file(dir.path(), "x.json", &[b' '; 100], false);
        file.format = InputFormat::Json;
        assert_eq!(read_whole(&file, 100).unwrap().len(), 100);
        let error = read_whole(&file, 99).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
        assert!(error.to_string().contains("is more than 99 bytes"), "{error}");
        // Gzipped: the size on disk says nothing; the decompressed bytes count.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, &[b' '; 5000]).unwrap();
        let mut file = ndjson_file(dir.path(), "x.json.gz", &encoder.finish().unwrap(), true);
        file.format = InputFormat::Json;
        assert_eq!(read_whole(&file, 5000).unwrap().len(), 5000);
        let error = read_whole(&file, 4 << 10).unwrap_err();
        assert!(
            error.to_string().contains("decompresses to more than 4 KiB"),
            "{error}"
        );
    }

    #[test]
    fn parts_cut_at_line_boundaries_and_know_their_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ndjson");
        let text = "aaaa\nbb\n\ncccccc\nd\neeeeeeeeee\nf";
        std::fs::write(&path, text).unwrap();
        let file = InputFile {
            path,
            relative: "x.ndjson".into(),
            format: InputFormat::Ndjson,
            gzip: false,
            size: text.len() as u64,
            remote: None,
        };
        let parts = split_lines(&file, 8).unwrap();
        let mut seen = Vec::new();
        for part in &parts {
            assert!(part.start == 0 || text.as_bytes()[part.start as usize - 1] == b'\n');
            for_each_line(&file, Some(part), 100, |number, line| {
                seen.push((number, line_text(line)));
            })
            .unwrap();
        }
        let mut whole = Vec::new();
        for_each_line(&file, None, 100, |number, line| {
            whole.push((number, line_text(line)))
        })
        .unwrap();
        assert!(parts.len() > 2, "{parts:?}");
        assert_eq!(
            seen, whole,
            "the parts together are the file, with the right line numbers"
        );
        assert_eq!(parts.last().unwrap().end, text.len() as u64);
    }

    /// An object's parts are read with range GETs (here through object_store's own file store,
    /// `file://`): together they are the object, with the line numbers of the whole.
    #[cfg(feature = "cloud")]
    #[test]
    fn the_parts_of_an_object_are_range_reads_that_make_up_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let text = "aaaa\nbb\n\ncccccc\nd\neeeeeeeeee\nf";
        std::fs::write(dir.path().join("x.ndjson"), text).unwrap();
        let url = format!("file://{}", dir.path().display());
        let location = std::sync::Arc::new(crate::remote::Location::parse(&url).unwrap());
        let file = InputFile {
            path: location.display("x.ndjson").into(),
            relative: "x.ndjson".into(),
            format: InputFormat::Ndjson,
            gzip: false,
            size: text.len() as u64,
            remote: Some(super::super::RemoteInput {
                location,
                modified: 0,
            }),
        };
        let parts = split_lines(&file, 8).unwrap();
        assert!(parts.len() > 2, "{parts:?}");
        let mut seen = Vec::new();
        for part in &parts {
            for_each_line(&file, Some(part), 100, |number, line| {
                seen.push((number, line_text(line)));
            })
            .unwrap();
        }
        let local = ndjson_file(dir.path(), "y.ndjson", text.as_bytes(), false);
        let mut whole = Vec::new();
        for_each_line(&local, None, 100, |number, line| {
            whole.push((number, line_text(line)))
        })
        .unwrap();
        assert_eq!(seen, whole);
        assert_eq!(read_whole(&file, 1000).unwrap(), text.as_bytes());
    }

    #[test]
    fn text_is_checked_as_the_standard_library_checks_it() {
        // Long enough for the vector loops, with every length of sequence and bad bytes at
        // the start, inside and at the end of a 64-byte block.
        let good = "{\"name\": \"Zoë Ångström 中文 🙂\"}\n".repeat(9);
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), b"{}".to_vec(), good.clone().into_bytes()];
        for at in [0, 5, 63, 64, 100, good.len() - 1] {
            for bad in [
                &[0xff][..],
                &[0xc3][..],
                &[0xe4, 0xb8][..],
                &[0xed, 0xa0, 0x80][..],
            ] {
                let mut bytes = good.as_bytes()[..at].to_vec();
                bytes.extend_from_slice(bad);
                bytes.extend_from_slice(&good.as_bytes()[at..]);
                inputs.push(bytes);
            }
        }
        inputs.push(good.as_bytes()[..good.len() - 2].to_vec());
        for input in &inputs {
            let expected = std::str::from_utf8(input).map_err(|error| error.valid_up_to());
            assert_eq!(text_of(input), expected, "{input:?}");
        }
        assert!(inputs.iter().filter(|input| text_of(input).is_err()).count() >= 24);
    }
}
