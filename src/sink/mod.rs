//! Writing tables: Parquet datasets built in a staging folder under `--out` and moved into place
//! only when complete, so readers never see a half-written table.

mod commit;
mod compact;
mod footer;
mod lock;
mod parquet;

pub use self::parquet::{
    rewrite_marked_strings, same_columns, schema_of, Compression, DatasetWriter, WriteOptions,
    TOOL_VERSION_KEY,
};
pub use commit::{Output, Staging, Step, JOURNAL_FILE};
pub use compact::{
    file_stamp, part_file_name, read_batches, rewrite_rows, run_stamp, CONTRACT_KEY, RESOURCE_TYPE_KEY,
    TABLE_KEY,
};
pub use lock::{Locked, OutputLock, LOCK_FILE};
