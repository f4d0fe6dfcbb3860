use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

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

/// Streams an NDJSON file line by line (1-based line numbers, without the line break), so a file of
/// any size needs only one line in memory. Stops at the first read error and returns it.
pub fn for_each_line(file: &InputFile, mut visit: impl FnMut(u64, &[u8])) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, open(file)?);
    let mut line = Vec::new();
    let mut number = 0u64;
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
