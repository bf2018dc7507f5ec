//! The operations that remove what the policy does not keep: `forget` and the retention
//! step of `backup --forget`.

use std::collections::BTreeSet;
use std::time::{Duration as StdDuration, Instant};

use restash_backend::{FileType, Handle};
use restash_format::{GroupSnapshot, SnapshotId};

use super::{apply_policy, group_snapshots, ExpirePolicy, GroupBy, GroupKey, PolicyResult};
use crate::archiver::same_paths;
use crate::events::{Control, Event, Phase};
use crate::snapshots::{select_snapshots, SnapshotEntry, SnapshotFilter};
use crate::{EngineError, LockPolicy, RepoLock, Repository, Result};

/// What [`forget`] is to do: restic's `forget` flags.
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// Which snapshots are considered (`--host`, `--tag`, `--path`); with explicit ids,
    /// only `latest` uses it.
    pub filter: SnapshotFilter,
    /// Snapshots to remove (ids, prefixes or `latest`); with any, no policy applies.
    pub ids: Vec<String>,
    /// How the considered snapshots are grouped, the policy applying to each group apart
    /// (restic's default is host and paths: `GroupBy::parse("host,paths")`).
    pub group_by: GroupBy,
    /// What to keep. An empty policy removes nothing (and reports no groups).
    pub policy: ExpirePolicy,
    /// Decide what to remove, remove nothing.
    pub dry_run: bool,
    /// How the exclusive lock is taken (`skip` for `--dry-run --no-lock`, or when the
    /// caller holds one already).
    pub lock: LockPolicy,
}

/// The policy's outcome for one group.
#[derive(Debug, Clone)]
pub struct ForgetGroup {
    /// What the group's snapshots share.
    pub key: GroupKey,
    /// Kept and removed snapshots, newest first, with the reasons for each kept one.
    pub result: PolicyResult,
}

/// What [`forget`] decided and did.
#[derive(Debug, Default)]
pub struct ForgetSummary {
    /// One entry per group, ordered by key, when a policy was applied (none for explicit
    /// ids or an empty policy).
    pub groups: Vec<ForgetGroup>,
    /// Every snapshot chosen for removal.
    pub remove: BTreeSet<SnapshotId>,
    /// How many of them were removed (none in a dry run).
    pub removed: usize,
    /// How long removing took.
    pub remove_time: StdDuration,
    /// The removal that failed, which stopped the others. The operation has then failed:
    /// it is reported here rather than as the error so that a caller can still show what
    /// was decided first, as restic does.
    pub failed: Option<(SnapshotId, EngineError)>,
}

/// restic's `forget`, under an exclusive lock: selects the snapshots, applies the policy
/// to each group (or takes the explicit ids), and removes the snapshot files unless it is
/// a dry run, each removal an [`Event::ItemDone`]. Unreadable snapshots and ids that do not
/// resolve are [`Event::Warning`]s, and the rest goes on, as in restic.
///
/// With a lock wait (`--retry-lock`) and something to remove, the snapshots are read and
/// the policy applied under a shared lock, beside backups, and only the removal waits for
/// the exclusive one. A backup's snapshot saved meanwhile is not among those read: the
/// policy then removes a subset of what it would remove with it (every keep rule keeps a
/// snapshot it kept in the larger set), so nothing the full set keeps is removed.
pub fn forget(repo: &Repository, opts: &ForgetOptions, ctl: &Control) -> Result<ForgetSummary> {
    let beside = !opts.dry_run && opts.lock.works_beside();
    let mut lock = RepoLock::take(repo, !beside, &opts.lock, ctl)?;
    let chosen = select_snapshots(repo, &opts.filter, &opts.ids, ctl)?;
    let mut out = ForgetSummary::default();
    if !opts.ids.is_empty() {
        out.remove.extend(chosen.iter().map(|(id, _)| *id));
    } else if !opts.policy.is_empty() {
        let now = chrono::Utc::now();
        for (key, list) in group_snapshots(chosen, opts.group_by) {
            let result = apply_policy(list, &opts.policy, now);
            out.remove.extend(result.remove.iter().map(|(id, _)| *id));
            out.groups.push(ForgetGroup { key, result });
        }
    }
    if !opts.dry_run && !out.remove.is_empty() {
        if let (true, Some(shared)) = (beside, &lock) {
            let alone = shared.exclusive_beside(repo, &opts.lock, ctl)?;
            shared.release();
            lock = Some(alone);
        }
        let start = Instant::now();
        ctl.phase(Phase::Forget, || -> Result<()> {
            for id in &out.remove {
                ctl.cancel.check()?;
                if let Err(e) = remove_snapshot(repo, id, "remove", ctl) {
                    out.failed = Some((*id, e));
                    break;
                }
                out.removed += 1;
            }
            Ok(())
        })?;
        out.remove_time = start.elapsed();
    }
    drop(lock);
    Ok(out)
}

fn remove_snapshot(repo: &Repository, id: &SnapshotId, what: &str, ctl: &Control) -> Result<()> {
    let h = Handle::new(FileType::Snapshot, *id);
    repo.backend()
        .remove(&h)
        .map_err(EngineError::backend(format!("{what} {h}")))?;
    ctl.emit(Event::ItemDone {
        kind: "snapshot",
        action: "removed",
        name: &id.to_string(),
    });
    Ok(())
}

/// What [`retain_host`] did.
#[derive(Debug, Default)]
pub struct Retention {
    /// Snapshots of the host that the policy keeps.
    pub kept: usize,
    /// Snapshots it removed, group by group, newest first.
    pub removed: Vec<SnapshotId>,
    /// Whether the policy was applied to the snapshots the latest one's parent hint names,
    /// without reading every snapshot of the repository.
    pub by_hint: bool,
}

/// `backup --forget`: applies `policy` to the snapshots of `host` only, grouped by host
/// and paths as `forget` does by default, so that one volume's job never touches another's
/// snapshots. An empty policy is refused (it would keep everything).
///
/// `latest` is the snapshot the backup saved (or kept, unchanged): when its parent hint
/// names its group's snapshots, the policy applies to those of them that the store still
/// has, and no other snapshot is read, so that a Job's cost does not grow with the fleet.
/// A snapshot of the group that the hint does not name (saved by another program) is only
/// kept: each keep rule keeps, in a subset, at least what it kept there in the whole set.
/// Otherwise every snapshot of the host is read, as `forget --host` does.
///
/// It runs under the exclusive lock, and the backups of other volumes hold shared ones:
/// `lock.wait` says how long to wait for them, each wait an [`Event::Blocked`]. Not
/// beside them, as [`forget`] can: many Jobs each holding a shared lock while waiting for
/// the exclusive one would wait for each other until they gave up. By the hint, the lock
/// is held for a `HEAD` per snapshot of the volume and the removals.
pub fn retain_host(
    repo: &Repository,
    host: &str,
    latest: Option<SnapshotId>,
    policy: &ExpirePolicy,
    lock: &LockPolicy,
    ctl: &Control,
) -> Result<Retention> {
    if policy.is_empty() {
        return Err(EngineError::Usage(
            "retention needs a policy: at least one keep rule".into(),
        ));
    }
    let held = RepoLock::take(repo, true, lock, ctl)?;
    let hinted = match latest.map(|id| crate::hints::of_latest(repo, host, id)) {
        Some(found) => match found? {
            Ok(hint) => Some(hint),
            Err(why) => {
                ctl.say(2, &format!("reading every snapshot: {why}"));
                None
            }
        },
        None => None,
    };
    let named = hinted
        .as_ref()
        .and_then(|(_, h)| Some((h, h.group.as_ref()?)));
    if let (Some((_, hint)), None) = (&hinted, named) {
        ctl.say(
            2,
            &format!(
                "reading every snapshot: the parent hint of snapshot {} does not name the \
                 volume's snapshots yet",
                hint.snapshot.short()
            ),
        );
    }
    let mut out = Retention {
        by_hint: named.is_some(),
        ..Retention::default()
    };
    let mine: Vec<SnapshotEntry> = match named {
        Some((hint, listed)) => crate::hints::existing(repo, listed)?
            .iter()
            .map(|g| (g.id, crate::hints::as_snapshot(hint, g)))
            .collect(),
        None => select_snapshots(repo, &SnapshotFilter::host(host), &[], ctl)?,
    };
    // The snapshots of the latest one's group, as they are now: what its hint is to name.
    let group_now: Option<Vec<GroupSnapshot>> = hinted.as_ref().map(|(_, hint)| {
        mine.iter()
            .filter(|(_, s)| same_paths(&s.paths, &hint.paths))
            .map(|(id, s)| GroupSnapshot::of(*id, s))
            .collect()
    });
    let now = chrono::Utc::now();
    let by = GroupBy {
        host: true,
        paths: true,
        tags: false,
    };
    let mut kept = BTreeSet::new();
    for (_, list) in group_snapshots(mine, by) {
        let r = apply_policy(list, policy, now);
        kept.extend(r.keep.iter().map(|(id, _)| *id));
        out.removed.extend(r.remove.iter().map(|(id, _)| *id));
    }
    out.kept = kept.len();
    ctl.phase(Phase::Forget, || -> Result<()> {
        for id in &out.removed {
            ctl.cancel.check()?;
            remove_snapshot(repo, id, "forget: remove", ctl)?;
        }
        Ok(())
    })?;
    // The hint names what is left, so that the next night checks only that; a hint that
    // named none (an older restash's, or after `--parent`) learns them from this reading,
    // or every later Job would read every snapshot too.
    if let (Some((name, hint)), Some(group)) = (&hinted, group_now) {
        let left = crate::hints::tidy(group.into_iter().filter(|g| kept.contains(&g.id)));
        if hint.group.as_ref() != Some(&left) {
            if let Err(e) = crate::hints::regroup(repo, *name, hint, left) {
                ctl.warn(&format!(
                    "parent hint not updated ({e}): the next night checks the removed \
                     snapshots again"
                ));
            }
        }
    }
    drop(held);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::testing::{ids, memory_repo, recorder, save};

    fn days(repo: &Repository, host: &str, n: u32) -> Vec<SnapshotId> {
        (1..=n)
            .map(|d| save(repo, host, &format!("2021-03-{d:02}T10:00:00Z"), &[]))
            .collect()
    }

    fn opts(policy: ExpirePolicy) -> ForgetOptions {
        ForgetOptions {
            group_by: GroupBy::parse("host,paths").expect("group by"),
            policy,
            ..ForgetOptions::default()
        }
    }

    #[test]
    fn retention_removes_what_the_policy_does_not_keep() {
        let repo = memory_repo();
        let made = days(&repo, "h", 5);
        // Two on the last day: a daily policy keeps the later one.
        let late = save(&repo, "h", "2021-03-05T20:00:00Z", &[]);
        let keep_tagged = save(&repo, "h", "2021-02-01T00:00:00Z", &["keep"]);
        let policy = ExpirePolicy {
            daily: 2,
            tags: vec![crate::TagList::parse("keep")],
            ..ExpirePolicy::default()
        };
        let (ctl, seen) = recorder();
        let sum = forget(&repo, &opts(policy), &ctl).expect("forget");
        assert_eq!(sum.groups.len(), 1);
        let kept: Vec<SnapshotId> = sum.groups[0].result.keep.iter().map(|e| e.0).collect();
        assert_eq!(kept, [late, made[3], keep_tagged]);
        assert_eq!(sum.groups[0].result.reasons[2].matches, ["has tags [keep]"]);
        let want: BTreeSet<SnapshotId> = [made[0], made[1], made[2], made[4]].into();
        assert_eq!(sum.remove, want);
        assert_eq!((sum.removed, sum.failed.is_none()), (4, true));
        let mut left = vec![late, made[3], keep_tagged];
        left.sort();
        assert_eq!(ids(&repo), left);
        let seen = seen.lock().expect("log");
        let removed = seen.iter().filter(|e| e.contains("removed")).count();
        assert_eq!(removed, 4, "{seen:?}");
        // No lock is left behind.
        assert!(repo.list_ids(FileType::Lock).expect("locks").is_empty());
    }

    #[test]
    fn dry_runs_and_empty_policies_remove_nothing() {
        let repo = memory_repo();
        days(&repo, "h", 3);
        let ctl = Control::default();
        let mut o = opts(ExpirePolicy {
            last: 1,
            ..ExpirePolicy::default()
        });
        o.dry_run = true;
        let sum = forget(&repo, &o, &ctl).expect("dry run");
        assert_eq!((sum.remove.len(), sum.removed), (2, 0));
        let sum = forget(&repo, &opts(ExpirePolicy::default()), &ctl).expect("empty");
        assert!(sum.groups.is_empty() && sum.remove.is_empty());
        assert_eq!(ids(&repo).len(), 3);
    }

    #[test]
    fn explicit_ids_are_removed_and_unknown_ones_warned_about() {
        let repo = memory_repo();
        let made = days(&repo, "h", 3);
        let other = save(&repo, "g", "2021-04-01T00:00:00Z", &[]);
        let (ctl, seen) = recorder();
        let o = ForgetOptions {
            ids: vec![made[0].short(), "latest".into(), "nosuchid".into()],
            filter: SnapshotFilter::host("h"),
            // Ignored with ids, as in restic.
            policy: ExpirePolicy {
                last: 10,
                ..ExpirePolicy::default()
            },
            ..ForgetOptions::default()
        };
        let sum = forget(&repo, &o, &ctl).expect("forget");
        assert!(sum.groups.is_empty());
        assert_eq!(sum.remove, [made[0], made[2]].into());
        let mut left = vec![made[1], other];
        left.sort();
        assert_eq!(ids(&repo), left);
        let seen = seen.lock().expect("log");
        assert!(
            seen.iter()
                .any(|e| e.contains("Warning") && e.contains("nosuchid")),
            "{seen:?}"
        );
    }

    #[test]
    fn a_held_lock_refuses_forget_until_it_is_released() {
        let repo = memory_repo();
        days(&repo, "h", 3);
        let o = opts(ExpirePolicy {
            last: 1,
            ..ExpirePolicy::default()
        });
        // Another process's backup: a shared lock.
        let other = RepoLock::acquire(&repo, false, false).expect("lock");
        let err = forget(&repo, &o, &Control::default()).expect_err("locked");
        assert!(matches!(err, EngineError::Locked(_)), "{err}");
        assert_eq!(err.exit_code(), 11);
        assert_eq!(ids(&repo).len(), 3);
        other.release();
        let sum = forget(&repo, &o, &Control::default()).expect("forget");
        assert_eq!(sum.removed, 2);
        assert_eq!(ids(&repo).len(), 1);
    }

    #[test]
    fn retention_of_a_host_leaves_other_hosts_alone() {
        let repo = memory_repo();
        let mine = days(&repo, "vol-a", 4);
        let theirs = days(&repo, "vol-b", 2);
        let policy = ExpirePolicy {
            last: 1,
            ..ExpirePolicy::default()
        };
        let lock = LockPolicy::default();
        let r =
            retain_host(&repo, "vol-a", None, &policy, &lock, &Control::default()).expect("retain");
        assert_eq!(r.kept, 1);
        assert_eq!(r.removed, [mine[2], mine[1], mine[0]], "newest first");
        let mut left = vec![mine[3], theirs[0], theirs[1]];
        left.sort();
        assert_eq!(ids(&repo), left);
        let empty = ExpirePolicy::default();
        let err = retain_host(&repo, "vol-a", None, &empty, &lock, &Control::default());
        assert!(matches!(err, Err(EngineError::Usage(_))));
    }
}
