//! `repair index` (restic 0.14's `rebuild-index`) and `repair snapshots` (restic 0.16).

mod index;
mod snapshots;

pub use index::{repair_index, RepairIndexOptions, RepairIndexStats};
pub use snapshots::{
    repair_snapshots, RepairSnapshotsJob, RepairSnapshotsOptions, SnapshotRepairer,
};
