//! Finding and reading inputs: which files under `--in` are FHIR, in what format, and their bytes
//! (decompressed when gzipped). Nothing here knows about resources or tables.

mod discover;
mod filter;
mod listing;
mod quarantine;
mod read;
mod read_ahead;
mod shard;

pub use discover::{discover, Discovery, InputFile, InputFormat, RemoteInput};
pub use filter::InputFilter;
pub use listing::check_input;
pub use quarantine::{retire_input, Quarantine};
pub use read::{
    describe_bytes, for_each_line, open_raw, read_whole, split_lines, text_of, Limits, Line, Part,
    DEFAULT_MAX_JSON_BYTES, DEFAULT_MAX_LINE_BYTES,
};
pub use read_ahead::{read_ahead, ReadAheadGuard};
pub use shard::{Shard, MAX_SHARDS};
