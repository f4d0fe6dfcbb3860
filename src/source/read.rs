use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

use flate2::read::MultiGzDecoder;

use super::InputFile;

/// Bytes read per system call; also the buffer that NDJSON lines are cut from.
const READ_BUFFER: usize = 1 << 20;

fn open(file: &InputFile) -> io::Result<Box<dyn Read>> {
    let handle = File::open(&file.path)?;
    Ok(if file.gzip {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(READ_BUFFER, handle)))
    } else {
        Box::new(handle)
    })
}

/// The whole (decompressed) content of a JSON file: one document must be in memory to parse it.
pub fn read_whole(file: &InputFile) -> io::Result<Vec<u8>> {
    let mut content = Vec::with_capacity(if file.gzip { 0 } else { file.size as usize + 1 });
    open(file)?.read_to_end(&mut content)?;
    Ok(content)
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
    let mut reader = File::open(&file.path)?;
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

/// Streams an NDJSON file (or one part of it) line by line (1-based line numbers of the whole
/// file, without the line break), so a file of any size needs only one line in memory. Stops at
/// the first read error and returns it.
pub fn for_each_line(
    file: &InputFile,
    part: Option<&Part>,
    mut visit: impl FnMut(u64, &[u8]),
) -> io::Result<()> {
    let source: Box<dyn Read> = match part {
        Some(part) => {
            let mut handle = File::open(&file.path)?;
            handle.seek(SeekFrom::Start(part.start))?;
            Box::new(handle.take(part.end - part.start))
        }
        None => open(file)?,
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, source);
    let mut line = Vec::new();
    let mut number = part.map_or(0, |p| p.first_line - 1);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        number += 1;
        let mut content = line.as_slice();
        if let Some(rest) = content.strip_suffix(b"\n") {
            content = rest.strip_suffix(b"\r").unwrap_or(rest);
        }
        visit(number, content);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::InputFormat;

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
        };
        let parts = split_lines(&file, 8).unwrap();
        let mut seen = Vec::new();
        for part in &parts {
            assert!(part.start == 0 || text.as_bytes()[part.start as usize - 1] == b'\n');
            for_each_line(&file, Some(part), |number, line| {
                seen.push((number, String::from_utf8(line.to_vec()).unwrap()));
            })
            .unwrap();
        }
        let mut whole = Vec::new();
        for_each_line(&file, None, |number, line| {
            whole.push((number, String::from_utf8(line.to_vec()).unwrap()))
        })
        .unwrap();
        assert!(parts.len() > 2, "{parts:?}");
        assert_eq!(
            seen, whole,
            "the parts together are the file, with the right line numbers"
        );
        assert_eq!(parts.last().unwrap().end, text.len() as u64);
    }
}
