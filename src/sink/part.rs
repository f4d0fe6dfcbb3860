//! Part files: a table is kept as part files named by the run that wrote them, so that their
//! names sort oldest first and `compact` can tell older rows from newer (every backend names its
//! parts so).

use std::path::Path;

/// A run's stamp for part file names: its start in UTC to the microsecond, always with six
/// fraction digits and no separators (`20261130T052000.123456Z`). Every writer uses it, so
/// stamps compare as text in time order.
pub fn run_stamp(time: std::time::SystemTime) -> String {
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let whole_seconds = crate::fhir::format_timestamp(since_epoch.as_secs() as i64 * 1_000_000);
    let seconds = whole_seconds.trim_end_matches('Z').replace(['-', ':'], "");
    format!("{seconds}.{:06}Z", since_epoch.subsec_micros())
}

/// The name of a table's part file: `part-<stamp>-<tag>.parquet`, where the stamp is the run's
/// start (`YYYYMMDDTHHMMSS[.ffffff]Z`, so names sort oldest first in a dataset) and the tag tells
/// runs of the same moment apart (a pid, or `compacted`). [`Part::stamp`] reads the stamp back.
///
/// [`Part::stamp`]: super::Part::stamp
pub fn part_file_name(stamp: &str, tag: &str) -> String {
    format!("part-{stamp}-{tag}.parquet")
}

/// The run stamp in a part file's name (see [`part_file_name`]).
pub(super) fn file_stamp(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.strip_prefix("part-")
        .and_then(|rest| rest.split('-').next())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_stamps_sort_as_text_in_time_order() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |micros: u64| run_stamp(UNIX_EPOCH + Duration::from_micros(micros));
        assert_eq!(at(1_795_478_400_000_000), "20261124T000000.000000Z");
        assert_eq!(at(1_795_478_400_500_000), "20261124T000000.500000Z");
        assert!(at(1_795_478_400_000_000) < at(1_795_478_400_000_001));
        assert!(at(1_795_478_399_999_999) < at(1_795_478_400_000_000));
    }

    #[test]
    fn part_file_names_give_their_stamp_back() {
        let name = part_file_name("20261130T052000.123456Z", "4242");
        assert_eq!(name, "part-20261130T052000.123456Z-4242.parquet");
        assert_eq!(file_stamp(Path::new(&name)), "20261130T052000.123456Z");
        let compacted = part_file_name("20261130T052000Z", "compacted");
        assert_eq!(file_stamp(Path::new(&compacted)), "20261130T052000Z");
    }
}
