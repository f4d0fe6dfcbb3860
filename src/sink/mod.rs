//! Writing tables: Parquet datasets built in a staging folder under `--out` and moved into place
//! only when complete, so readers never see a half-written table.

mod compact;
mod lock;
mod output;
mod parquet;

pub use self::parquet::{rewrite_marked_strings, schema_of, Compression, DatasetWriter, WriteOptions};
pub use compact::{
    can_compact, compact_files, file_stamp, tombstones, Compaction, Superseded, RESOURCE_TYPE_KEY,
};
pub use lock::{Locked, OutputLock, LOCK_FILE};
pub use output::{recover, write_atomically, Journal, Move, Staging};
