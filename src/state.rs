//! Incremental runs (`--incremental`): `OUT/.fhir2table/_state.json` remembers every input already
//! converted (path, size, modification time, content hash), so a later run converts only new or
//! changed inputs. The state is committed in the same journal as the data files it describes.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::fhir::key_hash::KeyHasher;
use crate::source::InputFile;

/// Where the state lives inside `--out`.
pub const STATE_FILE: &str = ".fhir2table/_state.json";

/// The state file format this version writes and the newest it reads. Files without a `format`
/// (the first versions) are format 1: the same fields and the same hashes.
pub const STATE_FORMAT: u32 = 1;

/// Runs remembered in the state (the oldest are dropped).
const RUNS_KEPT: usize = 100;

/// One converted input as it was when converted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified: u128,
    /// 64-bit hash of the content, hex.
    pub hash: String,
    /// The run that converted it (its start, as in the part file names).
    pub run: String,
}

/// One run, for `inspect` and for people.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run: String,
    pub started_at: String,
    pub converted: u64,
    pub unchanged: u64,
    pub exit_code: i32,
}

/// The whole state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_FORMAT`] when written; a newer format is refused rather than misread.
    #[serde(default = "first_format")]
    pub format: u32,
    pub inputs: BTreeMap<String, InputRecord>,
    pub runs: Vec<RunRecord>,
    /// The identifiers of providers and places seen so far, so conditional references in later
    /// inputs resolve against resources converted by earlier runs.
    #[serde(default)]
    pub identifiers: Vec<(u64, Option<String>)>,
}

fn first_format() -> u32 {
    1
}

impl Default for State {
    fn default() -> Self {
        State {
            format: STATE_FORMAT,
            inputs: BTreeMap::new(),
            runs: Vec::new(),
            identifiers: Vec::new(),
        }
    }
}

/// Just the format of a state file, read before the rest.
#[derive(Deserialize)]
struct FormatOnly {
    #[serde(default = "first_format")]
    format: u32,
}

impl State {
    /// The state of `out`, or an empty one for a first run (no state file). A state file that
    /// cannot be read or parsed, or is of a newer format, is an error naming it: taking it for a
    /// first run would convert every input again.
    pub fn load(out: &Path) -> Result<State> {
        if crate::remote::is_url(out) {
            // An output on object storage keeps its state there too.
            let root = crate::remote::Location::parse(&out.to_string_lossy())?;
            return match root.get(STATE_FILE)? {
                Some(bytes) => Self::parse(&bytes, &root.display(STATE_FILE)),
                None => Ok(State::default()),
            };
        }
        Self::load_file(&out.join(STATE_FILE))
    }

    /// The state in the file at `path` (see [`State::load`]); `inspect` also reads an older
    /// release's `_state/state.json` with it, without migrating the folder.
    pub fn load_file(path: &Path) -> Result<State> {
        let path = path.to_path_buf();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
        };
        Self::parse(&bytes, &path.display().to_string())
    }

    /// The state in `bytes`, read from `name` (for messages); see [`State::load`].
    fn parse(bytes: &[u8], name: &str) -> Result<State> {
        let damaged = || format!("{name} is damaged");
        // One parse; the format alone is read again only to explain a state that does not parse.
        let parsed = serde_json::from_slice::<State>(bytes);
        let format = match &parsed {
            Ok(state) => state.format,
            Err(_) => serde_json::from_slice::<FormatOnly>(bytes).map_or(0, |only| only.format),
        };
        if format > STATE_FORMAT {
            anyhow::bail!(
                "{name} is of format {format}, written by a newer fhir2table; this one reads format \
                 {STATE_FORMAT} and older"
            );
        }
        let mut state = parsed.with_context(damaged)?;
        state.format = STATE_FORMAT;
        Ok(state)
    }

    /// Splits the discovered inputs into those to convert (new or changed) and the number left
    /// alone. An input whose size and time changed but whose content did not is left alone too
    /// (its record is refreshed).
    pub fn select(&mut self, files: Vec<InputFile>) -> (Vec<(InputFile, InputRecord)>, u64) {
        let mut selected = Vec::new();
        let mut unchanged = 0;
        for file in files {
            let Ok((size, modified)) = size_and_time(&file) else {
                // Unreadable now: convert it, so the run reports the error.
                selected.push((file, InputRecord::unknown()));
                continue;
            };
            if let Some(known) = self.inputs.get(&file.relative) {
                if known.size == size && known.modified == modified {
                    unchanged += 1;
                    continue;
                }
            }
            let hash = content_hash(&file).unwrap_or_default();
            if let Some(known) = self.inputs.get_mut(&file.relative) {
                if known.hash == hash && !hash.is_empty() {
                    known.size = size;
                    known.modified = modified;
                    unchanged += 1;
                    continue;
                }
            }
            let record = InputRecord {
                size,
                modified,
                hash,
                run: String::new(),
            };
            selected.push((file, record));
        }
        (selected, unchanged)
    }

    /// Records a finished run.
    pub fn add_run(&mut self, run: RunRecord) {
        self.runs.push(run);
        if self.runs.len() > RUNS_KEPT {
            self.runs.remove(0);
        }
    }
}

impl InputRecord {
    fn unknown() -> Self {
        InputRecord {
            size: 0,
            modified: 0,
            hash: String::new(),
            run: String::new(),
        }
    }
}

/// An input's size and modification time: a local file's metadata, or an object's as listed.
fn size_and_time(file: &InputFile) -> std::io::Result<(u64, u128)> {
    if let Some(remote) = &file.remote {
        return Ok((file.size, remote.modified));
    }
    let metadata = fs::metadata(&file.path)?;
    let modified = metadata
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Ok((metadata.len(), modified))
}

/// A 64-bit hash of a file's bytes (see [`crate::fhir::key_hash`]), hex.
fn content_hash(input: &InputFile) -> std::io::Result<String> {
    let mut file = crate::source::open_raw(input, None)?;
    let mut hasher = KeyHasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.bytes(&buffer[..read]);
    }
    Ok(format!("{:016x}", hasher.finish()))
}
