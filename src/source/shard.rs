//! Sharded runs: N processes, on one machine or many, convert one export together, each reading a
//! deterministic share of it. Which process reads what depends only on an input's relative path
//! (and, for a big NDJSON file cut into byte-range parts, the part's number), never on the order
//! or timing of the processes, so a retried shard reads exactly what the failed one would have.

use std::fmt;
use std::str::FromStr;

use crate::fhir::key_hash::KeyHasher;

/// Which share of the inputs a process converts: shard `index` of `count`, numbered from 0 as
/// Kubernetes Indexed Jobs number their pods (`JOB_COMPLETION_INDEX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// The most shards a run may be split into: each one leaves a folder of files to commit.
pub const MAX_SHARDS: u32 = 10_000;

impl Shard {
    /// The shard of a Kubernetes Indexed Job's pod: `JOB_COMPLETION_INDEX` (Kubernetes sets it)
    /// of `JOB_COMPLETIONS` (the Job's manifest sets it), when both are set; `--shard` wins.
    pub fn from_environment() -> Result<Option<Shard>, String> {
        let index = std::env::var("JOB_COMPLETION_INDEX").ok();
        let count = std::env::var("JOB_COMPLETIONS").ok();
        match (index, count) {
            (Some(index), Some(count)) => format!("{}/{}", index.trim(), count.trim())
                .parse()
                .map(Some)
                .map_err(|problem| format!("JOB_COMPLETION_INDEX/JOB_COMPLETIONS: {problem}")),
            _ => Ok(None),
        }
    }

    /// Whether this shard converts the whole input at `relative` (its path under `--in`).
    pub fn owns_file(&self, relative: &str) -> bool {
        self.owner(relative, 0) == self.index
    }

    /// Whether this shard converts part `part` (counted from 0) of the big input at `relative`.
    /// Consecutive parts of a file go to consecutive shards, so one big file spreads evenly.
    pub fn owns_part(&self, relative: &str, part: usize) -> bool {
        self.owner(relative, part as u64) == self.index
    }

    fn owner(&self, relative: &str, part: u64) -> u32 {
        let mut hasher = KeyHasher::new();
        hasher.text(relative);
        let start = hasher.finish() % u64::from(self.count);
        ((start + part) % u64::from(self.count)) as u32
    }

    /// The name of the folder that holds this shard's converted tables until they are committed.
    pub fn folder_name(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N`: shard I (0 to N-1) of N.
    fn from_str(text: &str) -> Result<Shard, String> {
        let usage = || format!("'{text}' is not a shard: use I/N, shard I (from 0) of N, as in 0/4");
        let (index, count) = text.split_once('/').ok_or_else(usage)?;
        let index: u32 = index.trim().parse().map_err(|_| usage())?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 || count > MAX_SHARDS {
            return Err(format!(
                "'{text}': the number of shards must be 1 to {MAX_SHARDS}"
            ));
        }
        if index >= count {
            return Err(format!(
                "'{text}': shards are numbered from 0, so the index must be below {count}"
            ));
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_OWNERS: [u32; 3] = [1, 2, 1];

    #[test]
    fn shards_parse_from_index_and_count() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("0/1".parse(), Ok(Shard { index: 0, count: 1 }));
        for bad in ["4/4", "1/0", "x/2", "1", "-1/2", "1/10001", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 3, count: 8 }.folder_name(), "3-of-8");
    }

    #[test]
    fn every_input_and_part_has_exactly_one_owner() {
        let shards: Vec<Shard> = (0..4).map(|index| Shard { index, count: 4 }).collect();
        let mut per_shard = [0usize; 4];
        for n in 0..400 {
            let path = format!("export/{n}.ndjson");
            let owners: Vec<_> = shards.iter().filter(|s| s.owns_file(&path)).collect();
            assert_eq!(owners.len(), 1, "{path}");
            per_shard[owners[0].index as usize] += 1;
            for part in 0..6 {
                assert_eq!(shards.iter().filter(|s| s.owns_part(&path, part)).count(), 1);
            }
        }
        // Paths spread over all shards (400 paths: each gets roughly 100).
        assert!(per_shard.iter().all(|&n| n > 60), "{per_shard:?}");
        // Consecutive parts of one file go to different shards.
        let owners: Vec<u32> = (0..4)
            .map(|part| {
                shards
                    .iter()
                    .find(|s| s.owns_part("big.ndjson", part))
                    .unwrap()
                    .index
            })
            .collect();
        let mut sorted = owners.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3]);
    }

    #[test]
    fn owners_are_pinned_so_retries_and_releases_agree() {
        // A shard retried by another fhir2table release must read what the others leave to it:
        // the owners depend on the persisted key hash only, pinned here.
        let owner = |path: &str, part: usize| {
            (0..4)
                .find(|&index| Shard { index, count: 4 }.owns_part(path, part))
                .unwrap()
        };
        let pinned: Vec<u32> = ["a/b.json", "Patient.000.ndjson", "x"]
            .iter()
            .map(|path| owner(path, 0))
            .collect();
        assert_eq!(pinned, PINNED_OWNERS);
        assert_eq!(owner("a/b.json", 4), owner("a/b.json", 0));
    }
}
