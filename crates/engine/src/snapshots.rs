//! Snapshot selection, the one way every operation chooses snapshots: restic's
//! `--host/--tag/--path` filter, explicit ids (restic's `FindFilteredSnapshots`, which
//! warns about an id that does not resolve and goes on), and the one rule that turns
//! `latest` or an id prefix into a snapshot while some snapshot files cannot be read.

use std::collections::HashMap;
use std::fmt;

use restash_backend::FileType;
use restash_format::{Snapshot, SnapshotId};

use crate::events::{Control, Phase};
use crate::{EngineError, Repository, Result};

/// A snapshot with its id.
pub type SnapshotEntry = (SnapshotId, Snapshot);

/// A comma-separated tag list (`--tag a,b`, `--keep-tag a,b`): a snapshot matches if it
/// has all the tags; an empty entry matches a snapshot without tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagList(pub Vec<String>);

impl TagList {
    /// Splits at commas and trims each tag, like restic's `splitTagList`.
    pub fn parse(s: &str) -> TagList {
        TagList(s.split(',').map(|t| t.trim().to_string()).collect())
    }

    /// restic's `Snapshot.HasTags`.
    pub fn matches(&self, s: &Snapshot) -> bool {
        for tag in &self.0 {
            if tag.is_empty() && s.tags.is_empty() {
                return true;
            }
            if !s.has_tag(tag) {
                return false;
            }
        }
        true
    }
}

impl fmt::Display for TagList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0.join(", "))
    }
}

/// All non-empty tags of several lists, in order (restic's `TagLists.Flatten`).
pub fn flatten_tag_lists(lists: &[TagList]) -> Vec<String> {
    lists
        .iter()
        .flat_map(|l| l.0.iter().filter(|t| !t.is_empty()).cloned())
        .collect()
}

/// restic's `--host`, `--tag` and `--path` snapshot filters. Empty lists select everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Any of these hosts.
    pub hosts: Vec<String>,
    /// Any of these tag lists (each must match as a whole, see [`TagList::matches`]).
    pub tags: Vec<TagList>,
    /// The snapshot's paths must contain all of these.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// The filter of restic's flags: each `tags` entry is one comma-separated list.
    pub fn new(hosts: &[String], tags: &[String], paths: &[String]) -> SnapshotFilter {
        SnapshotFilter {
            hosts: hosts.to_vec(),
            tags: tags.iter().map(|t| TagList::parse(t)).collect(),
            paths: paths.to_vec(),
        }
    }

    /// The snapshots of one host.
    pub fn host(host: &str) -> SnapshotFilter {
        SnapshotFilter {
            hosts: vec![host.to_string()],
            ..SnapshotFilter::default()
        }
    }

    /// Whether `s` passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.tags.is_empty() || self.tags.iter().any(|l| l.matches(s)))
            && self.paths.iter().all(|p| s.paths.contains(p))
    }

    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.paths.is_empty()
    }
}

/// As restic prints a filter in its warnings: `(Paths:[/a /b] Tags:[[x, y]] Hosts:[h])`.
impl fmt::Display for SnapshotFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tags: Vec<String> = self.tags.iter().map(|t| t.to_string()).collect();
        write!(
            f,
            "(Paths:[{}] Tags:[{}] Hosts:[{}])",
            self.paths.join(" "),
            tags.join(" "),
            self.hosts.join(" ")
        )
    }
}

/// An explicit snapshot id that [`Snapshots::select`] skipped, as restic warns about it.
#[derive(Debug)]
pub enum Ignored {
    /// `latest` found no snapshot passing the filter.
    NoMatch {
        /// The id as given (`latest`).
        spec: String,
        /// The filter, as restic prints it.
        filter: String,
    },
    /// The id did not resolve (unknown, ambiguous, unreadable).
    Unresolved {
        /// The id as given.
        spec: String,
        /// Why.
        error: EngineError,
    },
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::NoMatch { spec, filter } => {
                write!(
                    f,
                    "Ignoring {spec:?}, no snapshot matched given filter {filter}"
                )
            }
            Ignored::Unresolved { spec, error } => write!(f, "Ignoring {spec:?}: {error}"),
        }
    }
}

/// What [`Snapshots::select`] chose, and what it has to warn about.
#[derive(Debug, Default)]
pub struct Selection {
    /// The snapshots: for explicit ids in argument order (each once), else in the
    /// backend's listing order.
    pub snapshots: Vec<SnapshotEntry>,
    /// Explicit ids that were skipped.
    pub ignored: Vec<Ignored>,
    /// A filter was given with explicit ids, none of them `latest`: it was not used.
    pub filter_unused: bool,
}

impl Selection {
    /// restic's warnings about the selection, in its order.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.ignored.iter().map(|i| i.to_string()).collect();
        if self.filter_unused {
            out.push("Ignoring filters as there are explicit snapshot ids given".into());
        }
        out
    }
}

/// Loads the snapshots and selects among them as [`Snapshots::select`] does, as phase
/// [`Phase::LoadSnapshots`]; each unreadable snapshot file and each skipped id is a
/// [`crate::events::Event::Warning`]. The selection of every operation on several
/// snapshots.
pub fn select_snapshots(
    repo: &Repository,
    filter: &SnapshotFilter,
    ids: &[String],
    ctl: &Control,
) -> Result<Vec<SnapshotEntry>> {
    let all = ctl.phase(Phase::LoadSnapshots, || Snapshots::load(repo))?;
    let sel = all.select(filter, ids);
    for w in all.load_warnings().iter().chain(&sel.warnings()) {
        ctl.warn(w);
    }
    Ok(sel.snapshots)
}

/// `snapshots`: [`select_snapshots`] under restic's read lock, taken while the snapshots
/// load. Taking a lock costs a write, a listing and restic's 200 ms pause; loading
/// meanwhile hides that. When the lock cannot be had, what was loaded is dropped.
pub fn list_snapshots(
    repo: &Repository,
    filter: &SnapshotFilter,
    ids: &[String],
    lock: &crate::LockPolicy,
    ctl: &Control,
) -> Result<Vec<SnapshotEntry>> {
    let (held, chosen) = crate::ahead::both(
        || crate::RepoLock::take(repo, false, lock, ctl),
        || select_snapshots(repo, filter, ids, ctl),
    );
    let _held = held?;
    chosen
}

/// How `restore`, `ls` and `dump` begin: restic's read lock, then the snapshot named by
/// `spec` (sent as [`crate::events::Event::Selected`]), both while the index loads, so
/// neither costs a round trip of its own. The caller holds the lock until it is done.
pub fn lock_and_select_one(
    repo: &mut Repository,
    spec: &str,
    filter: &SnapshotFilter,
    lock: &crate::LockPolicy,
    ctl: &Control,
) -> Result<(Option<crate::RepoLock>, SnapshotEntry)> {
    let (chosen, index) = repo.load_index_with(|repo| {
        let held = crate::RepoLock::take(repo, false, lock, ctl)?;
        let (id, snapshot) = select_one(repo, spec, filter, ctl)?;
        ctl.emit(crate::events::Event::Selected {
            id: &id,
            snapshot: &snapshot,
        });
        Ok::<_, EngineError>((held, (id, snapshot)))
    });
    let chosen = chosen?;
    index?;
    Ok(chosen)
}

/// One snapshot named by `spec` (`latest`, through `filter`, or an id prefix). On
/// failure the error names the unreadable snapshot that made the choice impossible; on
/// success each unreadable one is still a warning, so the user learns of the damage.
pub fn select_one(
    repo: &Repository,
    spec: &str,
    filter: &SnapshotFilter,
    ctl: &Control,
) -> Result<SnapshotEntry> {
    let all = ctl.phase(Phase::LoadSnapshots, || Snapshots::load(repo))?;
    let found = all.find(spec, filter)?.clone();
    for w in all.load_warnings() {
        ctl.warn(&w);
    }
    Ok(found)
}

/// A snapshot file that could not be read or decoded, and why.
#[derive(Debug)]
pub struct UnreadableSnapshot {
    /// Its file name.
    pub id: SnapshotId,
    /// Why it could not be used.
    pub error: EngineError,
}

impl std::fmt::Display for UnreadableSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "snapshot {} cannot be read: {}",
            self.id.short(),
            self.error
        )
    }
}

/// Every snapshot file of a repository: the readable ones, oldest first, and the ones that
/// could not be read. Nothing that picks one snapshot out of several may look at the
/// readable ones alone: an unreadable file may be the one that was asked for.
#[derive(Debug, Default)]
pub struct Snapshots {
    readable: Vec<SnapshotEntry>,
    unreadable: Vec<UnreadableSnapshot>,
    // Every snapshot file in the backend's listing order (empty: unknown, time order).
    listed: Vec<SnapshotId>,
}

impl Snapshots {
    /// Builds the set; `readable` is sorted by time (then id), `unreadable` by id; the
    /// listing order is unknown (see [`Self::load`]).
    pub fn new(mut readable: Vec<SnapshotEntry>, mut unreadable: Vec<UnreadableSnapshot>) -> Self {
        readable.sort_by(|a, b| a.1.time.0.cmp(&b.1.time.0).then(a.0.cmp(&b.0)));
        unreadable.sort_by_key(|u| u.id);
        Snapshots {
            readable,
            unreadable,
            listed: Vec::new(),
        }
    }

    /// Loads every snapshot file, in parallel, remembering the backend's listing order
    /// (restic visits snapshots in that order; for a local repository it is the
    /// directory's). A file that fails to load is kept with its error.
    pub fn load(repo: &Repository) -> Result<Snapshots> {
        Snapshots::load_reusing(repo, &Snapshots::default())
    }

    /// [`Self::load`] for a process that keeps its list (a mount, the web view): a
    /// snapshot file is named by the hash of its bytes and never changes, so the ones
    /// `known` read are taken from it and only new files are loaded. Files that could not
    /// be read are tried again.
    pub fn reload(&self, repo: &Repository) -> Result<Snapshots> {
        Snapshots::load_reusing(repo, self)
    }

    fn load_reusing(repo: &Repository, known: &Snapshots) -> Result<Snapshots> {
        let listed: Vec<SnapshotId> = repo
            .backend()
            .list(FileType::Snapshot)
            .map_err(EngineError::backend(format!(
                "list {}",
                FileType::Snapshot.dir()
            )))?
            .into_iter()
            .map(|f| SnapshotId(f.id))
            .collect();
        let had: HashMap<SnapshotId, &Snapshot> =
            known.readable.iter().map(|(id, s)| (*id, s)).collect();
        let loaded = crate::ahead::map_io(&listed, |id| match had.get(id) {
            Some(s) => Ok((*s).clone()),
            None => repo.load_snapshot(id),
        });
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (id, r) in listed.iter().zip(loaded) {
            match r {
                Ok(s) => good.push((*id, s)),
                Err(error) => bad.push(UnreadableSnapshot { id: *id, error }),
            }
        }
        let mut all = Snapshots::new(good, bad);
        all.listed = listed;
        Ok(all)
    }

    /// restic's warning for each snapshot file that could not be read.
    pub fn load_warnings(&self) -> Vec<String> {
        self.unreadable
            .iter()
            .map(|bad| format!("could not load snapshot {}: {}", bad.id.short(), bad.error))
            .collect()
    }

    /// The readable snapshots passing `filter`, oldest first: for listings.
    pub fn matching<'a>(
        &'a self,
        filter: &'a SnapshotFilter,
    ) -> impl Iterator<Item = &'a SnapshotEntry> + 'a {
        self.readable.iter().filter(|(_, s)| filter.matches(s))
    }

    /// restic's `FindFilteredSnapshots`, the selection of every command that works on
    /// several snapshots: without `ids`, every readable snapshot passing `filter`, in the
    /// backend's listing order; with `ids`, each one resolved (`latest` as the newest
    /// passing `filter`, else a unique id prefix), those that do not resolve skipped with
    /// a warning, duplicates dropped.
    pub fn select(&self, filter: &SnapshotFilter, ids: &[String]) -> Selection {
        let mut sel = Selection::default();
        if ids.is_empty() {
            sel.snapshots = self.matching(filter).cloned().collect();
            if !self.listed.is_empty() {
                let order: std::collections::HashMap<&SnapshotId, usize> =
                    self.listed.iter().zip(0..).collect();
                sel.snapshots
                    .sort_by_cached_key(|(id, _)| order.get(id).copied());
            }
            return sel;
        }
        let mut used_filter = false;
        for spec in ids {
            let found = if spec == "latest" {
                used_filter = true;
                match self.latest(filter) {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        sel.ignored.push(Ignored::NoMatch {
                            spec: spec.clone(),
                            filter: filter.to_string(),
                        });
                        continue;
                    }
                    Err(error) => {
                        sel.ignored.push(Ignored::Unresolved {
                            spec: spec.clone(),
                            error,
                        });
                        continue;
                    }
                }
            } else {
                match self.find_prefix(spec) {
                    Ok(s) => s,
                    Err(error) => {
                        sel.ignored.push(Ignored::Unresolved {
                            spec: spec.clone(),
                            error,
                        });
                        continue;
                    }
                }
            };
            if !sel.snapshots.iter().any(|(id, _)| *id == found.0) {
                sel.snapshots.push(found.clone());
            }
        }
        sel.filter_unused = !used_filter && !filter.is_empty();
        sel
    }

    /// The snapshots that could be read, oldest first. For listings, which name the
    /// unreadable ones separately; never for choosing one snapshot.
    pub fn readable(&self) -> &[SnapshotEntry] {
        &self.readable
    }

    /// The snapshot files that could not be read.
    pub fn unreadable(&self) -> &[UnreadableSnapshot] {
        &self.unreadable
    }

    /// The readable snapshots, owned (see [`Self::readable`]).
    pub fn into_readable(self) -> Vec<SnapshotEntry> {
        self.readable
    }

    /// The newest snapshot for which `pred` holds. An unreadable snapshot might be newer
    /// and match, so while there is one the answer is unknown and this is an error.
    pub fn latest_where(&self, pred: impl Fn(&Snapshot) -> bool) -> Result<Option<&SnapshotEntry>> {
        if let Some(bad) = self.unreadable.first() {
            return Err(EngineError::UnreadableSnapshot(format!(
                "cannot tell which snapshot is the latest: {bad}{}; name a snapshot by its \
                 id, or remove the damaged one (forget or repair snapshots)",
                self.more_unreadable()
            )));
        }
        Ok(self.readable.iter().rev().find(|(_, s)| pred(s)))
    }

    /// The newest snapshot that passes `filter` (see [`Self::latest_where`]).
    pub fn latest(&self, filter: &SnapshotFilter) -> Result<Option<&SnapshotEntry>> {
        self.latest_where(|s| filter.matches(s))
    }

    /// Resolves `latest` (through `filter`) or a unique id prefix, like restic's
    /// `FindSnapshot`/`FindLatestSnapshot`.
    pub fn find(&self, spec: &str, filter: &SnapshotFilter) -> Result<&SnapshotEntry> {
        if spec == "latest" {
            return self
                .latest(filter)?
                .ok_or_else(|| EngineError::NotFound("no snapshot found".into()));
        }
        self.find_prefix(spec)
    }

    /// Resolves a unique id prefix (`latest` is not special). The prefix is matched against
    /// every snapshot file, readable or not, so a damaged one is named instead of skipped.
    pub fn find_prefix(&self, spec: &str) -> Result<&SnapshotEntry> {
        let lower = spec.to_ascii_lowercase();
        let hit = |id: &SnapshotId| !spec.is_empty() && id.to_string().starts_with(&lower);
        let good: Vec<&SnapshotEntry> = self.readable.iter().filter(|(id, _)| hit(id)).collect();
        let bad: Vec<&UnreadableSnapshot> = self.unreadable.iter().filter(|u| hit(&u.id)).collect();
        match (good.as_slice(), bad.as_slice()) {
            ([one], []) => Ok(one),
            ([], [one]) => Err(EngineError::UnreadableSnapshot(one.to_string())),
            ([], []) => Err(EngineError::NotFound(format!(
                "no matching ID found for prefix {spec:?}"
            ))),
            _ => Err(EngineError::NotFound(format!(
                "multiple IDs with prefix {spec:?} found"
            ))),
        }
    }

    fn more_unreadable(&self) -> String {
        match self.unreadable.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more unreadable snapshots)", n - 1),
        }
    }
}

#[cfg(test)]
#[path = "snapshots_tests.rs"]
mod tests;

/// Repositories in memory for the tests of the operations on snapshots.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use restash_backend::FileType;
    use restash_format::{GoTime, Snapshot, SnapshotId};

    use crate::events::{Control, Event};
    use crate::Repository;

    pub(crate) use crate::test_util::memory_repo;

    /// Saves a snapshot of `host` taken at `time` (RFC 3339) of `/x`, with `tags`.
    pub(crate) fn save(repo: &Repository, host: &str, time: &str, tags: &[&str]) -> SnapshotId {
        let json = format!(
            r#"{{"time":"{}","tree":"{}","paths":["/x"],"hostname":"{host}"}}"#,
            GoTime::parse(time).expect("time").to_go_string(),
            restash_format::Id::hash(time.as_bytes()).to_hex()
        );
        let mut s = Snapshot::from_json(json.as_bytes()).expect("snapshot");
        s.tags = tags.iter().map(|t| t.to_string()).collect();
        SnapshotId(
            repo.save_unpacked(FileType::Snapshot, &s.to_json())
                .expect("save"),
        )
    }

    /// The snapshot files of `repo`, sorted.
    pub(crate) fn ids(repo: &Repository) -> Vec<SnapshotId> {
        let ids = repo.list_ids(FileType::Snapshot).expect("list");
        ids.into_iter().map(SnapshotId).collect()
    }

    /// A control that records every event as its `Debug` text.
    pub(crate) fn recorder() -> (Control, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let ctl = Control::new(Arc::new(move |e: &Event<'_>| {
            log.lock().expect("log").push(format!("{e:?}"));
        }));
        (ctl, seen)
    }
}
