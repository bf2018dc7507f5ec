//! Flag groups more than one command takes, and how they become engine options.

use clap::Args as ClapArgs;
use restash_engine::forget::{Duration, ExpirePolicy, TagList};
use restash_engine::prune::{MaxUnused, PruneOptions};
use restash_engine::units::parse_size;
use restash_engine::SnapshotFilter;

use crate::global::GlobalOpts;

/// restic's snapshot filter flags.
#[derive(ClapArgs, Debug, Default)]
pub struct FilterArgs {
    /// Only consider snapshots of this host (repeatable).
    #[arg(short = 'H', long = "host")]
    pub hosts: Vec<String>,
    /// Only consider snapshots with these tags (comma-separated: all of them; repeat: any).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only consider snapshots including this absolute path (repeatable).
    #[arg(long = "path")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    /// As an engine filter.
    pub fn to_filter(&self) -> SnapshotFilter {
        SnapshotFilter::new(&self.hosts, &self.tags, &self.paths)
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    Duration::parse(s).map_err(|e| e.to_string())
}

/// restic's `--keep-*` policy flags, shared by `forget` and `backup --forget`.
#[derive(ClapArgs, Debug, Default, Clone)]
pub struct KeepArgs {
    /// Keep the last `n` snapshots.
    #[arg(
        short = 'l',
        long = "keep-last",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub last: i64,
    /// Keep the last `n` hourly snapshots.
    #[arg(
        short = 'H',
        long = "keep-hourly",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub hourly: i64,
    /// Keep the last `n` daily snapshots.
    #[arg(
        short = 'd',
        long = "keep-daily",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub daily: i64,
    /// Keep the last `n` weekly snapshots.
    #[arg(
        short = 'w',
        long = "keep-weekly",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub weekly: i64,
    /// Keep the last `n` monthly snapshots.
    #[arg(
        short = 'm',
        long = "keep-monthly",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub monthly: i64,
    /// Keep the last `n` yearly snapshots.
    #[arg(
        short = 'y',
        long = "keep-yearly",
        value_name = "n",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub yearly: i64,
    /// Keep snapshots that are newer than `duration` (eg. 1y5m7d2h) relative to the latest snapshot.
    #[arg(long = "keep-within", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within: Option<Duration>,
    /// Keep hourly snapshots that are newer than `duration` relative to the latest snapshot.
    #[arg(long = "keep-within-hourly", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within_hourly: Option<Duration>,
    /// Keep daily snapshots that are newer than `duration` relative to the latest snapshot.
    #[arg(long = "keep-within-daily", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within_daily: Option<Duration>,
    /// Keep weekly snapshots that are newer than `duration` relative to the latest snapshot.
    #[arg(long = "keep-within-weekly", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within_weekly: Option<Duration>,
    /// Keep monthly snapshots that are newer than `duration` relative to the latest snapshot.
    #[arg(long = "keep-within-monthly", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within_monthly: Option<Duration>,
    /// Keep yearly snapshots that are newer than `duration` relative to the latest snapshot.
    #[arg(long = "keep-within-yearly", value_name = "duration", value_parser = duration, allow_hyphen_values = true)]
    pub within_yearly: Option<Duration>,
    /// Keep snapshots with this `taglist` (can be specified multiple times).
    #[arg(long = "keep-tag", value_name = "taglist")]
    pub keep_tags: Vec<String>,
}

impl KeepArgs {
    /// The engine policy these flags describe.
    pub fn policy(&self) -> ExpirePolicy {
        ExpirePolicy {
            last: self.last,
            hourly: self.hourly,
            daily: self.daily,
            weekly: self.weekly,
            monthly: self.monthly,
            yearly: self.yearly,
            within: self.within.unwrap_or_default(),
            within_hourly: self.within_hourly.unwrap_or_default(),
            within_daily: self.within_daily.unwrap_or_default(),
            within_weekly: self.within_weekly.unwrap_or_default(),
            within_monthly: self.within_monthly.unwrap_or_default(),
            within_yearly: self.within_yearly.unwrap_or_default(),
            tags: self.keep_tags.iter().map(|t| TagList::parse(t)).collect(),
        }
    }
}

#[derive(ClapArgs, Debug, Clone)]
pub struct PruneFlags {
    /// Tolerate given limit of unused data (absolute value in bytes with suffixes k/K, m/M,
    /// g/G, t/T, a value in % or the word 'unlimited').
    #[arg(long = "max-unused", default_value = "5%")]
    pub max_unused: String,
    /// Maximum size to repack (allowed suffixes: k/K, m/M, g/G, t/T).
    #[arg(long = "max-repack-size")]
    pub max_repack_size: Option<String>,
    /// Only repack packs which are cacheable.
    #[arg(long = "repack-cacheable-only")]
    pub repack_cacheable_only: bool,
    /// Repack pack files below 80% of target pack size.
    #[arg(long = "repack-small")]
    pub repack_small: bool,
    /// Repack all uncompressed data.
    #[arg(long = "repack-uncompressed")]
    pub repack_uncompressed: bool,
}

/// The prune options the flags describe.
impl PruneFlags {
    /// The engine's prune options; `--pack-size` and `--compression` are global flags.
    pub fn options(&self, g: &GlobalOpts, dry_run: bool) -> anyhow::Result<PruneOptions> {
        let a = self;
        Ok(PruneOptions {
            dry_run,
            max_unused: MaxUnused::parse(&a.max_unused)?,
            max_repack_bytes: match &a.max_repack_size {
                Some(s) => parse_size(s)?,
                None => u64::MAX,
            },
            repack_cacheable_only: a.repack_cacheable_only,
            repack_small: a.repack_small,
            repack_uncompressed: a.repack_uncompressed,
            pack_size: g.pack_size()?,
            compression: g.compression()?,
            ignore_snapshots: Vec::new(),
        })
    }
}
