//! restic 0.14's `copy`: snapshots of one repository copied into another. Only blobs the
//! destination lacks are read, decrypted and saved again under the destination's key
//! (and its compression); a snapshot already copied (same `original`, or identical) is
//! skipped.

use std::collections::{BTreeMap, HashSet};

use rayon::prelude::*;
use restash_backend::{FileType, Handle};
use restash_format::{BlobId, BlobType, NodeType, Snapshot, SnapshotId};

use restash_format::Compression;

use crate::archiver::Saver;
use crate::events::{Control, Event, Phase};
use crate::{
    select_snapshots, BlobLocation, EngineError, LockPolicy, RepoLock, Repository, Result,
    SnapshotFilter,
};

/// restic's `similarSnapshots`: everything but `parent` and `original` is the same.
pub fn similar_snapshots(a: &Snapshot, b: &Snapshot) -> bool {
    if a.time != b.time
        || a.tree != b.tree
        || a.hostname != b.hostname
        || a.username != b.username
        || a.uid != b.uid
        || a.gid != b.gid
        || a.paths.len() != b.paths.len()
        || a.excludes.len() != b.excludes.len()
        || a.tags.len() != b.tags.len()
    {
        return false;
    }
    b.paths.iter().all(|p| a.paths.contains(p))
        && b.tags.iter().all(|t| a.tags.contains(t))
        && a.excludes == b.excludes
}

/// The destination's snapshots by persistent id: their `original` and their own id.
pub fn by_original(dst: &[(SnapshotId, Snapshot)]) -> CopiedIndex {
    let mut m: CopiedIndex = BTreeMap::new();
    for (id, s) in dst {
        if let Some(o) = s.original {
            if o.0 .0 != [0u8; 32] {
                m.entry(o).or_default().push((*id, s.clone()));
            }
        }
        m.entry(*id).or_default().push((*id, s.clone()));
    }
    m
}

/// Destination snapshots by persistent id.
pub type CopiedIndex = BTreeMap<SnapshotId, Vec<(SnapshotId, Snapshot)>>;

/// The destination snapshot `sn` (with id `id`) was already copied to, if any.
pub fn already_copied(dst: &CopiedIndex, id: &SnapshotId, sn: &Snapshot) -> Option<SnapshotId> {
    let original = sn.original.unwrap_or(*id);
    dst.get(&original)?
        .iter()
        .find(|(_, d)| similar_snapshots(d, sn))
        .map(|(did, _)| *did)
}

/// Counters of one copy.
#[derive(Debug, Default, Clone, Copy)]
pub struct CopyCounts {
    /// Blobs saved to the destination.
    pub blobs: u64,
    /// Packs of the source read from.
    pub packs: u64,
}

/// What one copy run has done so far, across snapshots.
#[derive(Debug, Default)]
pub struct CopyState {
    visited_trees: HashSet<BlobId>,
    saved: HashSet<(BlobId, BlobType)>,
}

/// Copies the blobs below `root` that the destination lacks, then writes the
/// destination's index.
pub fn copy_tree(
    src: &Repository,
    dst: &Repository,
    saver: &Saver<'_>,
    state: &mut CopyState,
    root: &BlobId,
) -> Result<CopyCounts> {
    let mut want: HashSet<(BlobId, BlobType)> = HashSet::new();
    let mut stack = vec![*root];
    // The destination index is not reloaded between snapshots: blobs saved earlier in
    // this run are known from `state.saved`.
    let missing = |h: &(BlobId, BlobType)| !dst.index().has(&h.0, h.1) && !state.saved.contains(h);
    while let Some(id) = stack.pop() {
        if !state.visited_trees.insert(id) {
            continue;
        }
        let tree = src.load_tree(&id)?;
        if missing(&(id, BlobType::Tree)) {
            want.insert((id, BlobType::Tree));
        }
        for n in &tree.nodes {
            for b in n.content.iter().flatten() {
                if missing(&(*b, BlobType::Data)) {
                    want.insert((*b, BlobType::Data));
                }
            }
            if n.node_type == NodeType::Dir {
                stack.extend(n.subtree);
            }
        }
    }
    // Grouped by source pack: each pack is read once, from its first wanted blob to the
    // end of its last, instead of one request per blob (which costs dearly on S3).
    let mut by_pack: BTreeMap<u32, Vec<(BlobLocation, BlobId, BlobType)>> = BTreeMap::new();
    for (id, t) in &want {
        let loc = src.index().get(id, *t).ok_or_else(|| {
            EngineError::Corrupt(format!("{} blob {id} not found in index", t.as_str()))
        })?;
        by_pack.entry(loc.pack).or_default().push((loc, *id, *t));
    }
    let saved: Vec<Result<u64>> = by_pack
        .into_values()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|mut blobs| {
            blobs.sort_by_key(|(loc, _, _)| loc.offset);
            let span = read_span(src, &blobs);
            let (mut scratch, mut plain) = (Vec::new(), Vec::new());
            let mut n = 0;
            for (loc, id, t) in blobs {
                let decoded = span.as_ref().ok().and_then(|(start, bytes)| {
                    let from = (loc.offset - start) as usize;
                    let raw = bytes.get(from..from + loc.length as usize)?;
                    src.decode_blob(&id, &loc, raw, &mut scratch, &mut plain)
                        .ok()
                });
                // A failed span read or a damaged copy: the per-blob path tries every
                // copy the index knows and reports the error.
                let data = match decoded {
                    Some(()) => std::mem::take(&mut plain),
                    None => src.load_blob(&id, t)?,
                };
                if saver.save(t, id, &data)? {
                    n += 1;
                }
            }
            Ok(n)
        })
        .collect();
    let mut counts = CopyCounts::default();
    for r in saved {
        counts.blobs += r?;
        counts.packs += 1;
    }
    saver.flush()?;
    state.saved.extend(want);
    Ok(counts)
}

/// Reads the bytes of a pack from its first to its last listed blob (sorted by offset).
fn read_span(
    src: &Repository,
    blobs: &[(BlobLocation, BlobId, BlobType)],
) -> Result<(u32, Vec<u8>)> {
    let (Some(first), Some(last)) = (blobs.first(), blobs.last()) else {
        return Ok((0, Vec::new()));
    };
    let start = first.0.offset;
    let end = blobs
        .iter()
        .map(|(l, _, _)| l.offset as u64 + l.length as u64)
        .max()
        .unwrap_or(last.0.offset as u64);
    let pack = src.index().pack_id(first.0.pack);
    let h = Handle::new(FileType::Pack, pack);
    let bytes = src
        .backend()
        .read_range(&h, start as u64, end - start as u64)
        .map_err(EngineError::backend(format!("read {h}")))?;
    Ok((start, bytes))
}

/// Saves the copy of `sn` (source id `id`) to the destination: no parent, `original`
/// kept or set to the source id. Returns the new snapshot's id.
pub fn save_copy(dst: &Repository, id: &SnapshotId, sn: &Snapshot) -> Result<SnapshotId> {
    let mut s = sn.clone();
    s.parent = None;
    if s.original.is_none() {
        s.original = Some(*id);
    }
    Ok(SnapshotId(
        dst.save_unpacked(FileType::Snapshot, &s.to_json())?,
    ))
}

/// Which snapshots `copy` copies, and how the destination writes them.
#[derive(Debug, Clone)]
pub struct CopyJob {
    /// Source snapshots by id prefix (`latest` too); empty: all passing `filter`.
    pub ids: Vec<String>,
    /// restic's `--host`, `--tag`, `--path` (applied to both repositories, as restic does).
    pub filter: SnapshotFilter,
    /// How the source is locked (`--no-lock` skips it; the destination is always locked).
    pub source_lock: LockPolicy,
    /// Compression of the destination's new blobs.
    pub compression: Compression,
    /// Target pack size of the destination.
    pub pack_size: usize,
}

/// What a copy did.
#[derive(Debug, Clone, Default)]
pub struct CopySummary {
    /// Snapshots copied: (source id, new destination id).
    pub copied: Vec<(SnapshotId, SnapshotId)>,
    /// Source snapshots the destination already had.
    pub skipped: usize,
}

/// restic's `copy`. For each chosen source snapshot it sends [`Event::Selected`], then
/// either an [`Event::ItemDone`] "already copied" naming the destination's snapshot, or
/// the phase [`Phase::Copy`] with the packs copied as progress and an "saved" item naming
/// the new snapshot.
pub fn run(
    src: &mut Repository,
    dst: &mut Repository,
    job: &CopyJob,
    ctl: &Control,
) -> Result<CopySummary> {
    let _src_lock = RepoLock::take(src, false, &job.source_lock, ctl)?;
    // The destination is written, so `--no-lock` never applies to it; the wait does.
    let dst_policy = LockPolicy {
        skip: false,
        ..job.source_lock.clone()
    };
    let _dst_lock = RepoLock::take(dst, false, &dst_policy, ctl)?;
    src.load_index()?;
    dst.load_index()?;
    let copied = by_original(&select_snapshots(dst, &job.filter, &[], ctl)?);
    let chosen = select_snapshots(src, &job.filter, &job.ids, ctl)?;
    let saver = Saver::new(dst, job.compression, job.pack_size, false);
    let mut state = CopyState::default();
    let mut out = CopySummary::default();
    for (id, sn) in &chosen {
        ctl.cancel.check()?;
        ctl.emit(Event::Selected { id, snapshot: sn });
        if let Some(existing) = already_copied(&copied, id, sn) {
            let name = existing.short();
            ctl.emit(Event::ItemDone {
                kind: "snapshot",
                action: "already copied",
                name: &name,
            });
            out.skipped += 1;
            continue;
        }
        ctl.phase(Phase::Copy, || {
            let counts = copy_tree(src, dst, &saver, &mut state, &sn.tree)?;
            ctl.progress(Phase::Copy, "packs copied", counts.packs, counts.packs);
            Ok::<_, EngineError>(())
        })?;
        let new_id = save_copy(dst, id, sn)?;
        ctl.emit(Event::ItemDone {
            kind: "snapshot",
            action: "saved",
            name: &new_id.short(),
        });
        out.copied.push((*id, new_id));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use restash_format::{GoTime, Id, SnapshotSummary};

    fn snap() -> Snapshot {
        Snapshot {
            time: GoTime::parse("2022-01-02T03:04:05.5+01:00").unwrap(),
            parent: None,
            tree: BlobId(Id([1; 32])),
            paths: vec!["/a".into(), "/b".into()],
            hostname: "h".into(),
            username: "u".into(),
            uid: 1,
            gid: 2,
            excludes: vec!["x".into(), "y".into()],
            tags: vec!["t1".into(), "t2".into()],
            original: None,
            program_version: Some("restash 0.1.0".into()),
            summary: Some(SnapshotSummary {
                total_files_processed: 3,
                ..SnapshotSummary::default()
            }),
        }
    }

    #[test]
    fn similar_ignores_parent_original_summary_and_order_of_paths_and_tags() {
        let a = snap();
        let mut b = snap();
        b.parent = Some(SnapshotId(Id([9; 32])));
        b.original = Some(SnapshotId(Id([8; 32])));
        b.paths.reverse();
        b.tags.reverse();
        // The same instant written in another zone is the same time.
        b.time = GoTime::parse("2022-01-02T02:04:05.5Z").unwrap();
        // restic before 0.17 drops these when it copies: still the same snapshot.
        b.program_version = None;
        b.summary = None;
        assert!(similar_snapshots(&a, &b));
        let mut c = snap();
        c.excludes.reverse();
        assert!(!similar_snapshots(&a, &c), "exclude order matters");
        let mut d = snap();
        d.tree = BlobId(Id([2; 32]));
        assert!(!similar_snapshots(&a, &d));
    }

    #[test]
    fn copies_are_found_by_original_and_by_id() {
        let src_id = SnapshotId(Id([5; 32]));
        let copy_id = SnapshotId(Id([6; 32]));
        let mut copy = snap();
        copy.original = Some(src_id);
        let idx = by_original(&[(copy_id, copy)]);
        assert_eq!(already_copied(&idx, &src_id, &snap()), Some(copy_id));
        // A copy of the copy carries the same original.
        let mut again = snap();
        again.original = Some(src_id);
        assert_eq!(already_copied(&idx, &copy_id, &again), Some(copy_id));
        let mut other = snap();
        other.hostname = "else".into();
        assert_eq!(already_copied(&idx, &src_id, &other), None);
    }
}
