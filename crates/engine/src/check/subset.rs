//! `--read-data` and `--read-data-subset`: which packs to read, chosen exactly as restic
//! 0.14 chooses them.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use restash_format::PackId;

use crate::{EngineError, Result};

/// restic checks only the first byte of a pack id, so there are at most 256 groups.
pub const TOTAL_BUCKETS_MAX: u32 = 256;

/// Which packs `check` reads in full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadDataSubset {
    /// `--read-data`: every pack.
    All,
    /// `n/t`: packs whose first id byte modulo `t` is `n - 1` (`--read-data` is `1/1`).
    Bucket {
        /// The group, from 1.
        n: u32,
        /// Number of groups.
        t: u32,
    },
    /// `x%`: that share of the packs, chosen at random.
    Percent(f64),
    /// A size in bytes: random packs adding up to about that much.
    Size(u64),
}

fn int_slice(s: &str) -> Option<Vec<u64>> {
    s.split('/')
        .map(|p| {
            // Go's ParseUint: digits only, no sign.
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse::<u64>().ok()
            }
        })
        .collect()
}

impl ReadDataSubset {
    /// Parses `--read-data-subset` with restic's rules and messages.
    pub fn parse(s: &str) -> Result<ReadDataSubset> {
        let invalid = || {
            EngineError::Usage(
                "check flag --read-data-subset has invalid value, please see documentation".into(),
            )
        };
        if let Some(v) = int_slice(s) {
            if v.len() != 2 {
                return Err(invalid());
            }
            let (n, t) = (v[0], v[1]);
            if n == 0 || t == 0 || n > t {
                return Err(EngineError::Usage(
                    "check flag --read-data-subset=n/t values must be positive integers, and n <= t, e.g. --read-data-subset=1/2".into(),
                ));
            }
            if t > TOTAL_BUCKETS_MAX as u64 {
                return Err(EngineError::Usage(format!(
                    "check flag --read-data-subset=n/t t must be at most {TOTAL_BUCKETS_MAX}"
                )));
            }
            return Ok(ReadDataSubset::Bucket {
                n: n as u32,
                t: t as u32,
            });
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.parse().map_err(|_| invalid())?;
            if p <= 0.0 || p > 100.0 || p.is_nan() {
                return Err(EngineError::Usage(
                    "check flag --read-data-subset=x% x must be above 0.0% and at most 100.0%"
                        .into(),
                ));
            }
            return Ok(ReadDataSubset::Percent(p));
        }
        // restic 0.14's parseSizeStr reads a signed number: a negative size is refused below,
        // with the message for sizes, not as an unknown form.
        let size: i64 = crate::units::parse_bytes(s).map_err(|_| invalid())?;
        if size <= 0 {
            return Err(EngineError::Usage(
                "check flag --read-data-subset=n n must be above 0".into(),
            ));
        }
        Ok(ReadDataSubset::Size(size as u64))
    }

    /// The line restic prints before reading (without the newline).
    pub(crate) fn describe(&self, selected: usize, total: usize) -> String {
        match *self {
            ReadDataSubset::All => "read all data".into(),
            ReadDataSubset::Bucket { n, t } => format!(
                "read group #{n} of {selected} data packs (out of total {total} packs in {t} groups)"
            ),
            ReadDataSubset::Percent(p) => format!("read {p:.1}% of data packs"),
            ReadDataSubset::Size(s) => format!("read {s} bytes of data packs"),
        }
    }

    /// Picks the packs to read from `all` (pack id → size).
    pub(crate) fn select(&self, all: &HashMap<PackId, u64>) -> Result<Vec<PackId>> {
        let mut out: Vec<PackId> = match *self {
            ReadDataSubset::All => all.keys().copied().collect(),
            ReadDataSubset::Bucket { n, t } => all
                .keys()
                .filter(|id| (id.0 .0[0] as u32) % t == n - 1)
                .copied()
                .collect(),
            ReadDataSubset::Percent(p) => by_percentage(all, p),
            ReadDataSubset::Size(size) => {
                let repo_size: u64 = all.values().sum();
                if repo_size == 0 {
                    return Err(EngineError::Usage(
                        "Cannot read from a repository having size 0".into(),
                    ));
                }
                let size = size.min(repo_size);
                by_percentage(all, size as f64 / repo_size as f64 * 100.0)
            }
        };
        out.sort();
        Ok(out)
    }
}

/// restic's `selectRandomPacksByPercentage`: the share rounded down, at least one pack.
fn by_percentage(all: &HashMap<PackId, u64>, percentage: f64) -> Vec<PackId> {
    let count = all.len();
    let mut want = (count as f64 * (percentage / 100.0)) as usize;
    if count > 0 && want < 1 {
        want = 1;
    }
    let mut keys: Vec<PackId> = all.keys().copied().collect();
    keys.shuffle(&mut rand::thread_rng());
    keys.truncate(want.min(count));
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_restic() {
        assert_eq!(
            ReadDataSubset::parse("1/3").unwrap(),
            ReadDataSubset::Bucket { n: 1, t: 3 }
        );
        assert!(ReadDataSubset::parse("0/3").is_err());
        assert!(ReadDataSubset::parse("4/3").is_err());
        assert!(ReadDataSubset::parse("1/257").is_err());
        assert!(ReadDataSubset::parse("1/2/3").is_err());
        // A bare number is one element of n/t, which restic refuses.
        assert!(ReadDataSubset::parse("100").is_err());
        assert_eq!(
            ReadDataSubset::parse("2.5%").unwrap(),
            ReadDataSubset::Percent(2.5)
        );
        assert!(ReadDataSubset::parse("0%").is_err());
        assert!(ReadDataSubset::parse("101%").is_err());
        assert_eq!(
            ReadDataSubset::parse("10M").unwrap(),
            ReadDataSubset::Size(10 << 20)
        );
        assert_eq!(
            ReadDataSubset::parse("100b").unwrap(),
            ReadDataSubset::Size(100)
        );
        assert!(ReadDataSubset::parse("0k").is_err());
        assert!(ReadDataSubset::parse("x").is_err());
    }

    #[test]
    fn buckets_use_the_first_byte() {
        let mut all = HashMap::new();
        for b in 0u8..=255 {
            let mut id = [0u8; 32];
            id[0] = b;
            all.insert(PackId(restash_format::Id(id)), 1u64);
        }
        let s = ReadDataSubset::Bucket { n: 2, t: 3 };
        let got = s.select(&all).unwrap();
        assert_eq!(got.len(), 85);
        assert!(got.iter().all(|id| id.0 .0[0] % 3 == 1));
        let pct = ReadDataSubset::Percent(10.0).select(&all).unwrap();
        assert_eq!(pct.len(), 25);
        let tiny = ReadDataSubset::Percent(0.01).select(&all).unwrap();
        assert_eq!(tiny.len(), 1);
    }
}
