//! Parent hints: how a backup in a repository shared by a fleet of volumes finds its parent
//! and its deduplication set without reading every volume's snapshots and the whole index.
//!
//! After each backup of a host and paths, a hint (`restash/hints/<group>/<name>`, see
//! [`ParentHint`]) names the new snapshot and lists where every blob it reaches is stored.
//! The next backup of the same group lists that one directory, reads the newest hint, and,
//! once its lock is held, checks that the snapshot still exists and says what the hint
//! says, and that every pack holding one of its trees is still there. Only then is the hint
//! the backup's index. Why that is safe:
//! - New blobs are deduplicated against the parent's blobs by id. The parent exists under
//!   the lock, and prune and forget take an exclusive lock, so every blob it reaches is in
//!   the repository until this backup's snapshot (which reaches them too) is written.
//! - Only trees are read through the hint's locations, and those packs were just seen in
//!   the store (never only in a cache, which may keep what the repository lost).
//!   Another program's prune may have moved data blobs since: a backup never reads them.
//!
//! Anything else (no hint, a hint that cannot be read, a forgotten parent, a tree pack
//! gone) means the full index and every snapshot, as before, and a new hint afterwards.

use std::collections::{BTreeMap, HashMap, HashSet};

use restash_backend::{BackendError, FileType, Handle};
use restash_format::{
    BlobId, BlobType, GroupSnapshot, HintGroup, Id, IndexBlob, IndexFile, IndexPack, PackId,
    ParentHint, Snapshot, SnapshotId,
};

use crate::ahead::map_io;
use crate::archiver::same_paths;
use crate::index::MasterIndex;
use crate::{EngineError, Repository, Result};

/// Every blob a snapshot reaches.
pub(crate) type Reached = HashSet<(BlobId, BlobType)>;

/// A group's hints as a backup found them before it started.
#[derive(Debug)]
pub(crate) struct Found {
    /// The group.
    pub group: HintGroup,
    /// Every hint listed, removed once a newer one is written.
    pub listed: Vec<Id>,
    /// The newest hint that could be read, and its name.
    pub newest: Option<(Id, ParentHint)>,
    /// Hints that could not be read, and why (the backup goes on without them).
    pub unreadable: Vec<String>,
}

/// What a backup takes from its group's hints.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The hints found.
    pub found: Found,
    /// The parent the newest hint names, checked under the lock: the backup's index is
    /// then the hint's.
    pub parent: Option<(SnapshotId, Snapshot)>,
}

/// The group of `host` and `paths` in `repo`, or None where the store keeps no hints (a
/// REST server).
pub(crate) fn group(repo: &Repository, host: &str, paths: &[String]) -> Option<HintGroup> {
    repo.backend()
        .keeps(FileType::Hint)
        .then(|| HintGroup::of(repo.key(), host, paths))
}

/// Lists the group's hints and reads them all (normally one: each backup removes the older).
pub(crate) fn find(repo: &Repository, group: HintGroup) -> Result<Found> {
    let listed: Vec<Id> = repo
        .backend()
        .list_group(FileType::Hint, &group.to_hex())
        .map_err(EngineError::backend(format!(
            "list {}/{}",
            FileType::Hint.dir(),
            group.to_hex()
        )))?
        .into_iter()
        .map(|f| f.id)
        .collect();
    let read = map_io(&listed, |name| read(repo, group, name));
    let mut newest: Option<(Id, ParentHint)> = None;
    let mut unreadable = Vec::new();
    for (name, r) in listed.iter().zip(read) {
        match r {
            Ok(h) => {
                let later = |(_, n): &(Id, ParentHint)| h.time.0 > n.time.0;
                if newest.as_ref().is_none_or(later) {
                    newest = Some((*name, h));
                }
            }
            Err(e) => unreadable.push(format!("{}: {e}", Handle::new(FileType::Hint, *name))),
        }
    }
    Ok(Found {
        group,
        listed,
        newest,
        unreadable,
    })
}

fn read(repo: &Repository, group: HintGroup, name: &Id) -> Result<ParentHint> {
    let h = Handle::new(FileType::Hint, *name);
    let sealed = repo
        .backend()
        .read(&h)
        .map_err(EngineError::backend(format!("load {h}")))?;
    if !group.names(name, &sealed) {
        return Err(EngineError::Corrupt(format!(
            "load {h}: its bytes do not match its name"
        )));
    }
    let json = repo.decrypt_unpacked(FileType::Hint, name, &sealed)?;
    ParentHint::from_json(&json).map_err(EngineError::format(h.to_string()))
}

/// Checks, under the backup's lock, that `hint` can stand in for the index: returns its
/// snapshot, or why it cannot (the backup then takes the full path).
pub(crate) fn check(
    repo: &Repository,
    hint: &ParentHint,
    host: &str,
    paths: &[String],
) -> Result<std::result::Result<Snapshot, String>> {
    let id = hint.snapshot;
    // Asked of the store itself, never of a cache: a cache keeps files that the repository
    // has lost since (a snapshot forgotten, a pack pruned), and a hint trusted then would
    // deduplicate against blobs that are gone.
    let h = Handle::new(FileType::Snapshot, id.0);
    match repo.backend().exists(&h) {
        Ok(true) => {}
        Ok(false) => return Ok(Err(format!("its snapshot {} was removed", id.short()))),
        Err(e) => return Err(EngineError::backend(format!("stat {h}"))(e)),
    }
    let snap = repo.load_snapshot(&id)?;
    let same = |h: &str, p: &[String]| h == host && same_paths(p, paths);
    if !same(&snap.hostname, &snap.paths) || !same(&hint.hostname, &hint.paths) {
        return Ok(Err(format!(
            "its snapshot {} is of another host or other paths",
            id.short()
        )));
    }
    let tree_packs: Vec<PackId> = hint
        .packs
        .iter()
        .filter(|p| p.blobs.iter().any(|b| b.blob_type == BlobType::Tree))
        .map(|p| p.id)
        .collect();
    let files: Vec<Handle> = tree_packs
        .iter()
        .map(|p| Handle::new(FileType::Pack, *p))
        .collect();
    let seen = in_store(repo, &files)?;
    if let Some((pack, _)) = tree_packs.iter().zip(seen).find(|(_, seen)| !seen) {
        return Ok(Err(format!(
            "pack {} with its trees is gone (pruned by another program?)",
            pack.short()
        )));
    }
    Ok(Ok(snap))
}

/// Whether the store has each of `files`, asked of the store itself, never of a cache (see
/// [`check`]), as many at once as it takes.
fn in_store(repo: &Repository, files: &[Handle]) -> Result<Vec<bool>> {
    map_io(files, |h| {
        repo.backend()
            .exists(h)
            .map_err(EngineError::backend(format!("stat {h}")))
    })
    .into_iter()
    .collect()
}

/// The index a backup uses in place of the repository's: the hint's blobs.
pub(crate) fn index_of(hint: &ParentHint) -> MasterIndex {
    let mut index = MasterIndex::new();
    index.add_file(&hint.index(), false);
    index.finish();
    index
}

/// Where every blob of `reached` is stored, from the repository's index and the packs this
/// run wrote; None if one cannot be found (a hint must name every blob its snapshot
/// reaches, or the next backup would store it again without knowing).
pub(crate) fn locate(
    index: &MasterIndex,
    written: &[IndexPack],
    reached: &Reached,
) -> Option<IndexFile> {
    let mut new: std::collections::HashMap<
        (restash_format::BlobId, BlobType),
        (PackId, IndexBlob),
    > = std::collections::HashMap::new();
    for p in written {
        for b in &p.blobs {
            new.insert((b.id, b.blob_type), (p.id, *b));
        }
    }
    let mut packs: BTreeMap<PackId, Vec<IndexBlob>> = BTreeMap::new();
    for &(id, t) in reached {
        let (pack, blob) = match index.copies(&id, t).first() {
            Some(e) => (
                index.pack_id(e.pack),
                IndexBlob {
                    id,
                    blob_type: t,
                    offset: e.offset,
                    length: e.length,
                    uncompressed_length: (e.uncompressed_length != 0)
                        .then_some(e.uncompressed_length),
                },
            ),
            None => *new.get(&(id, t))?,
        };
        packs.entry(pack).or_default().push(blob);
    }
    Some(IndexFile {
        supersedes: Vec::new(),
        packs: packs
            .into_iter()
            .map(|(id, mut blobs)| {
                blobs.sort_by_key(|b| b.offset);
                IndexPack { id, blobs }
            })
            .collect(),
    })
}

/// How many of its group's snapshots a hint names at most, the newest: a volume backed up
/// nightly without `--forget` for years would otherwise make its hint grow without end.
/// Those left out are only kept longer, never removed by a policy that did not see them.
const GROUP_MAX: usize = 1000;

/// `group` with snapshot `id` added, as a hint names them (see [`tidy`]).
pub(crate) fn with_snapshot(
    mut group: Vec<GroupSnapshot>,
    id: SnapshotId,
    snap: &Snapshot,
) -> Vec<GroupSnapshot> {
    if !group.iter().any(|g| g.id == id) {
        group.push(GroupSnapshot::of(id, snap));
    }
    tidy(group)
}

/// A group's snapshots as a hint names them: oldest first, at most [`GROUP_MAX`].
pub(crate) fn tidy(group: impl IntoIterator<Item = GroupSnapshot>) -> Vec<GroupSnapshot> {
    let mut group: Vec<GroupSnapshot> = group.into_iter().collect();
    group.sort_by_key(|g| (g.time.0, g.id));
    let excess = group.len().saturating_sub(GROUP_MAX);
    group.drain(..excess);
    group
}

/// Writes the hint for snapshot `id`, then removes the group's hints listed before it.
pub(crate) fn write(
    repo: &Repository,
    found: &Found,
    id: SnapshotId,
    snap: &Snapshot,
    index: IndexFile,
    group: Option<Vec<GroupSnapshot>>,
) -> Result<()> {
    let hint = ParentHint {
        snapshot: id,
        time: snap.time,
        hostname: snap.hostname.clone(),
        paths: snap.paths.clone(),
        packs: index.packs,
        group,
    };
    let name = store(repo, found.group, &hint)?;
    for old in found.listed.iter().filter(|n| **n != name) {
        remove(repo, *old)?;
    }
    Ok(())
}

/// Seals and writes a hint of `group`; returns its name.
fn store(repo: &Repository, group: HintGroup, hint: &ParentHint) -> Result<Id> {
    let (_, sealed) = repo.seal_unpacked(&hint.to_json());
    let name = group.name_for(&sealed);
    let h = Handle::new(FileType::Hint, name);
    match repo.backend().write(&h, &sealed) {
        Ok(()) | Err(BackendError::AlreadyExists(_)) => Ok(name),
        Err(e) => Err(EngineError::backend(format!("save {h}"))(e)),
    }
}

fn remove(repo: &Repository, name: Id) -> Result<()> {
    let h = Handle::new(FileType::Hint, name);
    repo.backend()
        .remove(&h)
        .map_err(EngineError::backend(format!("remove {h}")))
}

/// The hint that snapshot `latest` of `host` left, or why there is none. When it names its
/// group's snapshots (see [`ParentHint::group`]), `backup --forget` applies its policy to
/// those, so that a Job never reads every volume's snapshots to forget its own.
pub(crate) fn of_latest(
    repo: &Repository,
    host: &str,
    latest: SnapshotId,
) -> Result<std::result::Result<(Id, ParentHint), String>> {
    let snap = repo.load_snapshot(&latest)?;
    if snap.hostname != host {
        return Ok(Err(format!(
            "snapshot {} is of another host",
            latest.short()
        )));
    }
    let Some(group) = group(repo, host, &snap.paths) else {
        return Ok(Err("the store keeps no parent hints".into()));
    };
    let found = find(repo, group)?;
    match found.newest {
        Some((name, hint)) if hint.snapshot == latest => Ok(Ok((name, hint))),
        _ => {
            let mut why = format!("no parent hint names snapshot {}", latest.short());
            for u in &found.unreadable {
                why.push_str(&format!("; parent hint {u}"));
            }
            Ok(Err(why))
        }
    }
}

/// Those of `group` that the store still has (never a cache: see [`check`]). A snapshot
/// forgotten by another program must not count for a keep policy, or the policy would
/// keep it in place of one that exists and remove that one.
pub(crate) fn existing(repo: &Repository, group: &[GroupSnapshot]) -> Result<Vec<GroupSnapshot>> {
    let files: Vec<Handle> = group
        .iter()
        .map(|g| Handle::new(FileType::Snapshot, g.id.0))
        .collect();
    let seen = in_store(repo, &files)?;
    Ok(group
        .iter()
        .zip(seen)
        .filter(|(_, seen)| *seen)
        .map(|(g, _)| g.clone())
        .collect())
}

/// A snapshot of `hint`'s group as a keep policy sees it: time, tags, host and paths.
pub(crate) fn as_snapshot(hint: &ParentHint, g: &GroupSnapshot) -> Snapshot {
    Snapshot {
        time: g.time,
        parent: None,
        tree: BlobId::default(),
        paths: hint.paths.clone(),
        hostname: hint.hostname.clone(),
        username: String::new(),
        uid: 0,
        gid: 0,
        excludes: Vec::new(),
        tags: g.tags.clone(),
        original: None,
        program_version: None,
        summary: None,
    }
}

/// Writes hint `name` again with `group` as its group's snapshots, and removes the old one.
pub(crate) fn regroup(
    repo: &Repository,
    name: Id,
    hint: &ParentHint,
    group: Vec<GroupSnapshot>,
) -> Result<()> {
    let hint = ParentHint {
        group: Some(group),
        ..hint.clone()
    };
    replace(repo, name, &hint)
}

/// Writes `hint` in place of hint `name` (its group's), and removes `name` unless the new
/// bytes are the same.
fn replace(repo: &Repository, name: Id, hint: &ParentHint) -> Result<()> {
    if store(repo, HintGroup::of_name(&name), hint)? != name {
        remove(repo, name)?;
    }
    Ok(())
}

/// What prune did to the hints.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Relocated {
    /// Hints rewritten with their blobs' new places.
    pub rewritten: usize,
    /// Hints removed: a blob of theirs is kept nowhere (their snapshot was forgotten).
    pub removed: usize,
}

/// Where blobs went: their new pack and entry, for the blobs asked for that moved to one.
pub(crate) type NewPlaces = HashMap<(BlobId, BlobType), (PackId, IndexBlob)>;

/// How many hints prune rewrites at once: the new places of their blobs are looked up
/// together, so that memory stays that of a few volumes' hints, not of the fleet's.
const RELOCATE_CHUNK: usize = 64;

/// After prune moved blobs into new packs and before it deletes the old ones: rewrites
/// every hint with a blob in a pack that does not `stay`, from the new places `find` gives
/// for such blobs, so that the next night's Jobs still read their own volume only; removes
/// the hints with a blob that is nowhere now (their snapshot was forgotten). Failures are
/// returned as warnings: a stale hint only sends its next backup the long way.
pub(crate) fn relocate_all(
    repo: &Repository,
    stays: &(dyn Fn(&PackId) -> bool + Sync),
    find: &dyn Fn(&Reached) -> NewPlaces,
) -> (Relocated, Vec<String>) {
    let mut warnings = Vec::new();
    let names: Vec<Id> = match repo.backend().list(FileType::Hint) {
        Ok(l) => l.into_iter().map(|f| f.id).collect(),
        Err(e) => {
            warnings.push(format!("parent hints cannot be listed: {e}"));
            return (Relocated::default(), warnings);
        }
    };
    let mut done = Relocated::default();
    for chunk in names.chunks(RELOCATE_CHUNK) {
        let read = map_io(chunk, |name| read(repo, HintGroup::of_name(name), name));
        let wanted: Reached = read
            .iter()
            .flatten()
            .flat_map(|h| &h.packs)
            .filter(|p| !stays(&p.id))
            .flat_map(|p| p.blobs.iter().map(|b| (b.id, b.blob_type)))
            .collect();
        let places = find(&wanted);
        let hints: Vec<(Id, Result<ParentHint>)> = chunk.iter().copied().zip(read).collect();
        let results = map_io(&hints, |(name, hint)| -> Result<Option<bool>> {
            let hint = match hint {
                Ok(h) => h,
                Err(e) => return Err(EngineError::Corrupt(e.to_string())),
            };
            relocate_one(repo, name, hint, stays, &places)
        });
        for ((name, _), r) in hints.iter().zip(results) {
            match r {
                Ok(None) => {}
                Ok(Some(true)) => done.rewritten += 1,
                Ok(Some(false)) => done.removed += 1,
                Err(e) => warnings.push(format!(
                    "parent hint {}: {e}; its volume's next backup reads the whole index",
                    name.short()
                )),
            }
        }
    }
    (done, warnings)
}

/// One hint rewritten (`Some(true)`), removed (`Some(false)`) or left as it is (`None`).
fn relocate_one(
    repo: &Repository,
    name: &Id,
    hint: &ParentHint,
    stays: &(dyn Fn(&PackId) -> bool + Sync),
    places: &NewPlaces,
) -> Result<Option<bool>> {
    let mut packs: BTreeMap<PackId, Vec<IndexBlob>> = BTreeMap::new();
    let mut changed = false;
    for p in &hint.packs {
        for b in &p.blobs {
            let (pack, blob) = if stays(&p.id) {
                (p.id, *b)
            } else {
                match places.get(&(b.id, b.blob_type)) {
                    Some(to) => {
                        changed = true;
                        *to
                    }
                    None => {
                        remove(repo, *name)?;
                        return Ok(Some(false));
                    }
                }
            };
            packs.entry(pack).or_default().push(blob);
        }
    }
    if !changed {
        return Ok(None);
    }
    let hint = ParentHint {
        packs: packs
            .into_iter()
            .map(|(id, blobs)| IndexPack { id, blobs })
            .collect(),
        ..hint.clone()
    };
    replace(repo, *name, &hint)?;
    Ok(Some(true))
}
