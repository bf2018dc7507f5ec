//! Which packs to keep, repack and delete: restic 0.14's `packInfoFromIndex` and
//! `decidePackAction` (cmd/restic/cmd_prune.go), over [`BlobIndex`].

use std::collections::HashMap;

use restash_backend::FileType;
use restash_format::{BlobType, PackId};

use super::blobs::BlobIndex;
use super::{say, Msg, PruneOptions, PruneStats};
use crate::events::Control;
use crate::{EngineError, Repository, Result};

use crate::pack::HEADER_OVERHEAD;

/// What happens to an indexed pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Keep,
    Repack,
    Remove,
    /// In the index but not in the repository, and not needed: left out of the new index.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PackType {
    Unset,
    Data,
    Tree,
    Mixed,
}

#[derive(Debug, Clone, Copy)]
struct PackInfo {
    used_blobs: u64,
    unused_blobs: u64,
    used_size: u64,
    unused_size: u64,
    tpe: PackType,
    uncompressed: bool,
}

/// The decisions.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Packs no index names: deleted first.
    pub remove_first: Vec<PackId>,
    /// Per pack number of the [`BlobIndex`].
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn count(&self, a: Action) -> usize {
        self.actions.iter().filter(|x| **x == a).count()
    }
}

/// Sizes per pack, restic's way: the header counts as used, each blob as used or unused,
/// and of a used blob stored several times exactly one copy counts as used.
fn pack_infos(idx: &mut BlobIndex, stats: &mut PruneStats) -> Vec<PackInfo> {
    let mut infos = vec![
        PackInfo {
            used_blobs: 0,
            unused_blobs: 0,
            used_size: HEADER_OVERHEAD,
            unused_size: 0,
            tpe: PackType::Unset,
            uncompressed: false,
        };
        idx.pack_count()
    ];
    for e in idx.entries() {
        let p = &mut infos[e.pack as usize];
        p.used_size += e.header_size();
        let t = match e.blob_type {
            BlobType::Data => PackType::Data,
            BlobType::Tree => PackType::Tree,
        };
        if p.tpe == PackType::Unset {
            p.tpe = t;
        } else if p.tpe != t {
            p.tpe = PackType::Mixed;
        }
        if e.uncompressed_length == 0 {
            p.uncompressed = true;
        }
    }
    // First pass: statistics, and the plain used/unused blobs.
    let mut duplicates = Vec::new();
    for r in idx.groups() {
        let used = idx.entries()[r.start].used;
        for (k, i) in r.clone().enumerate() {
            let e = &idx.entries()[i];
            let size = e.length as u64;
            if used && k == 0 {
                stats.size.used += size;
                stats.blobs.used += 1;
            } else if used {
                stats.size.duplicate += size;
                stats.blobs.duplicate += 1;
            } else {
                stats.size.unused += size;
                stats.blobs.unused += 1;
            }
            let p = &mut infos[e.pack as usize];
            if !used {
                p.unused_size += size;
                p.unused_blobs += 1;
            } else if r.len() == 1 {
                p.used_size += size;
                p.used_blobs += 1;
            }
        }
        if used && r.len() > 1 {
            duplicates.push(r);
        }
    }
    // Second pass: one copy of each duplicate counts as used, preferably in a pack that
    // holds other used blobs, so that fewer packs need repacking.
    for r in duplicates {
        let mut count = r.len().min(255);
        for i in r {
            let e = &idx.entries()[i];
            let size = e.length as u64;
            let p = &mut infos[e.pack as usize];
            if count != 0 && (p.used_blobs > 0 || count == 1) {
                p.used_size += size;
                p.used_blobs += 1;
                count = 0;
            } else {
                p.unused_size += size;
                p.unused_blobs += 1;
                count = count.saturating_sub(1);
            }
        }
    }
    infos
}

/// Decides every pack's fate and fills the statistics.
pub(crate) fn plan(
    repo: &Repository,
    idx: &mut BlobIndex,
    opts: &PruneOptions,
    stats: &mut PruneStats,
    out: &Control,
) -> Result<Plan> {
    let infos = pack_infos(idx, stats);
    let mut listing = repo
        .backend()
        .list(FileType::Pack)
        .map_err(EngineError::backend("list packs"))?;
    listing.sort_by_key(|f| f.id);

    let mut plan = Plan {
        remove_first: Vec::new(),
        actions: vec![Action::Ignore; idx.pack_count()],
    };
    let mut seen = vec![false; idx.pack_count()];
    let pack_size = opts.pack_size as u64;
    let target = if opts.repack_small {
        pack_size / 5 * 4
    } else {
        pack_size / 25
    };
    let mut candidates: Vec<(u32, PackInfo)> = Vec::new();
    let mut small: Vec<(u32, PackInfo)> = Vec::new();
    for f in &listing {
        let id = PackId(f.id);
        let Some(n) = idx.pack_number(&id) else {
            say(
                out,
                Msg::Detail(format!(
                    "will remove pack {} as it is unused and not indexed",
                    id.short()
                )),
            );
            plan.remove_first.push(id);
            stats.size.unref += f.size;
            continue;
        };
        seen[n as usize] = true;
        let mut p = infos[n as usize];
        if p.unused_size + p.used_size != f.size && p.used_blobs != 0 {
            say(out, Msg::Warn(format!(
                "pack {}: calculated size {} does not match real size {}\nRun 'restic rebuild-index'.",
                id.short(),
                p.unused_size + p.used_size,
                f.size
            )));
            return Err(EngineError::Corrupt(
                "pack size does not match calculated size from index".into(),
            ));
        }
        if p.used_blobs == 0 {
            stats.packs.unused += 1;
        } else if p.unused_blobs == 0 {
            stats.packs.used += 1;
        } else {
            stats.packs.partly_used += 1;
        }
        let must_compress = repo.version() >= 2
            && (p.tpe == PackType::Tree || opts.repack_uncompressed)
            && p.uncompressed;
        p.uncompressed = must_compress;
        if p.used_blobs == 0 {
            plan.actions[n as usize] = Action::Remove;
            stats.blobs.remove += p.unused_blobs;
            stats.size.remove += p.unused_size;
        } else if opts.repack_cacheable_only && p.tpe == PackType::Data {
            plan.actions[n as usize] = Action::Keep;
            stats.packs.keep += 1;
        } else if p.unused_blobs == 0 && p.tpe != PackType::Mixed && !must_compress {
            plan.actions[n as usize] = Action::Keep;
            if f.size >= target {
                stats.packs.keep += 1;
            } else {
                small.push((n, p));
            }
        } else {
            plan.actions[n as usize] = Action::Keep;
            candidates.push((n, p));
        }
    }

    let listed = seen.iter().filter(|s| **s).count() as u64;
    say(
        out,
        Msg::Progress(listed, idx.pack_count() as u64, "packs processed"),
    );

    // Indexed packs that are not in the repository.
    let mut missing_needed = Vec::new();
    let mut ignored = Vec::new();
    for (n, p) in infos.iter().enumerate() {
        if seen[n] {
            continue;
        }
        if p.used_blobs == 0 {
            ignored.push(idx.pack_id(n as u32));
            stats.blobs.remove += p.unused_blobs;
            stats.size.remove += p.unused_size;
        } else {
            missing_needed.push(idx.pack_id(n as u32));
        }
    }
    if !missing_needed.is_empty() {
        let mut msg = format!(
            "The index references {} needed pack files which are missing from the repository:",
            missing_needed.len()
        );
        for id in &missing_needed {
            msg.push_str(&format!("\n  {id}"));
        }
        say(out, Msg::Warn(msg));
        return Err(EngineError::Corrupt(
            "packs from index missing in repo".into(),
        ));
    }
    if !ignored.is_empty() {
        say(
            out,
            Msg::Warn(
                "Missing but unneeded pack files are referenced in the index, will be repaired"
                    .into(),
            ),
        );
        for id in &ignored {
            say(
                out,
                Msg::Warn(format!("will forget missing pack file {id}")),
            );
        }
    }

    // Too few small packs are not worth it, and repacking a single one would repeat forever.
    if small.len() < 10 {
        stats.packs.keep += small.len() as u64;
    } else {
        candidates.append(&mut small);
    }
    let total = |p: &PackInfo| p.unused_size + p.used_size;
    // Trees first, then packs below the target size, then by unused/total ratio.
    candidates.sort_by(|(_, a), (_, b)| {
        let (ad, bd) = (a.tpe == PackType::Data, b.tpe == PackType::Data);
        let (asm, bsm) = (total(a) < target, total(b) < target);
        bd.cmp(&ad).then(bsm.cmp(&asm)).then_with(|| {
            (b.unused_size as u128 * a.used_size as u128)
                .cmp(&(a.unused_size as u128 * b.used_size as u128))
        })
    });
    let max_unused_after = opts.max_unused.bytes(stats.size.used);
    for (n, p) in candidates {
        let unused_left = stats
            .size
            .unused
            .saturating_sub(stats.size.remove + stats.size.repackrm);
        let reached_unused = unused_left < max_unused_after;
        let reached_repack = stats.size.repack + total(&p) >= opts.max_repack_bytes;
        let large_enough = total(&p) >= target;
        let repack = if reached_repack {
            false
        } else if p.tpe != PackType::Data || p.uncompressed {
            true
        } else {
            !(reached_unused && large_enough)
        };
        if repack {
            plan.actions[n as usize] = Action::Repack;
            stats.blobs.repack += p.unused_blobs + p.used_blobs;
            stats.size.repack += total(&p);
            stats.blobs.repackrm += p.unused_blobs;
            stats.size.repackrm += p.unused_size;
        } else {
            stats.packs.keep += 1;
        }
    }
    stats.packs.unref = plan.remove_first.len() as u64;
    stats.packs.repack = plan.count(Action::Repack) as u64;
    stats.packs.remove = plan.count(Action::Remove) as u64;
    Ok(plan)
}

/// The blobs that must be copied out of repacked packs: used blobs with no copy in a pack
/// that stays. Returns, per repacked pack number, the entry indices to copy.
pub(crate) fn blobs_to_repack(idx: &BlobIndex, plan: &Plan) -> Result<HashMap<u32, Vec<usize>>> {
    let mut out: HashMap<u32, Vec<usize>> = HashMap::new();
    for r in idx.groups() {
        if !idx.entries()[r.start].used {
            continue;
        }
        let action = |i: usize| plan.actions[idx.entries()[i].pack as usize];
        if r.clone().any(|i| action(i) == Action::Keep) {
            continue;
        }
        match r.clone().find(|&i| action(i) == Action::Repack) {
            Some(i) => out.entry(idx.entries()[i].pack).or_default().push(i),
            None => {
                let e = &idx.entries()[r.start];
                return Err(EngineError::Corrupt(format!(
                    "internal error: used {} blob {} would be deleted with its pack {}",
                    e.blob_type.as_str(),
                    e.id,
                    idx.pack_id(e.pack)
                )));
            }
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|&i| idx.entries()[i].offset);
    }
    Ok(out)
}
