//! restic 0.14's `forget`: which snapshots of a group to keep, and why, and the
//! operations that remove the others ([`forget()`], and [`retain_host`] for
//! `backup --forget`).
//!
//! The policy is pure logic, no I/O. Its semantics follow restic's `internal/restic/snapshot_policy.go`
//! and `snapshot_group.go` closely, including their quirks: buckets use the wall clock of
//! the offset a snapshot was written in, a negative count keeps nothing (but still makes the
//! policy non-empty), `--keep-within*` are measured from the newest snapshot that is not in
//! the future, and an empty policy keeps everything.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, FixedOffset, NaiveDate, Offset};
use chrono::{NaiveDateTime, TimeZone, Timelike, Utc};
use restash_format::Snapshot;
use serde::Serialize;

pub use crate::snapshots::{flatten_tag_lists, TagList};
use crate::{EngineError, Result, SnapshotEntry};

#[path = "forget_op.rs"]
mod op;
pub use op::{forget, retain_host, ForgetGroup, ForgetOptions, ForgetSummary, Retention};

/// restic's calendar duration (`1y5m7d2h`): each unit is kept separately, as Go's `AddDate`
/// applies them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Duration {
    /// Hours.
    pub hours: i64,
    /// Days.
    pub days: i64,
    /// Months.
    pub months: i64,
    /// Years.
    pub years: i64,
}

impl Duration {
    /// Parses restic's format: numbers (optionally negative) each followed by `y`, `m`, `d`
    /// or `h`; surrounding white space is ignored, a later unit overrides an earlier one.
    pub fn parse(s: &str) -> Result<Duration> {
        let mut d = Duration::default();
        let mut rest = s.trim();
        while !rest.is_empty() {
            let (neg, body) = match rest.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, rest),
            };
            let digits = body.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(EngineError::Usage(format!(
                    "invalid duration {s:?}: no number found"
                )));
            }
            let mut num: i64 = body[..digits].parse().map_err(|_| {
                EngineError::Usage(format!("invalid duration {s:?}: number out of range"))
            })?;
            if neg {
                num = -num;
            }
            let after = &body[digits..];
            let Some(unit) = after.chars().next() else {
                return Err(EngineError::Usage(format!(
                    "invalid duration {s:?}: no unit found after number {num}"
                )));
            };
            match unit {
                'y' => d.years = num,
                'm' => d.months = num,
                'd' => d.days = num,
                'h' => d.hours = num,
                other => {
                    return Err(EngineError::Usage(format!(
                        "invalid duration {s:?}: invalid unit {other:?} found after number {num}"
                    )))
                }
            }
            rest = &after[unit.len_utf8()..];
        }
        Ok(d)
    }

    /// Whether every unit is zero (the rule is then off).
    pub fn is_zero(&self) -> bool {
        self.years == 0 && self.months == 0 && self.days == 0 && self.hours == 0
    }

    /// `latest` minus this duration, the way Go computes
    /// `latest.AddDate(-y, -m, -d).Add(-h * time.Hour)`.
    fn before(&self, latest: &DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        let t = add_date(latest, -self.years, -self.months, -self.days);
        t - ChronoDuration::hours(self.hours)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (v, u) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if v != 0 {
                write!(f, "{v}{u}")?;
            }
        }
        Ok(())
    }
}

/// Go's `Time.AddDate`: the wall clock date is shifted and normalised (Jan 31 + 1 month is
/// Mar 3 or 2), then resolved in the time's location. A time whose offset is the local
/// zone's at that instant is in Go's `Local` location, so its result may take a different
/// (DST) offset; any other offset, and UTC, is a fixed zone.
fn add_date(
    t: &DateTime<FixedOffset>,
    years: i64,
    months: i64,
    days: i64,
) -> DateTime<FixedOffset> {
    let month0 = i64::from(t.year()) * 12 + i64::from(t.month0()) + years * 12 + months;
    let (y, m0) = (month0.div_euclid(12), month0.rem_euclid(12));
    let first = i32::try_from(y)
        .ok()
        .and_then(|y| NaiveDate::from_ymd_opt(y, m0 as u32 + 1, 1));
    let Some(first) = first else {
        return *t;
    };
    let date = first
        .checked_add_signed(ChronoDuration::days(i64::from(t.day()) - 1 + days))
        .unwrap_or(first);
    let wall = date.and_time(t.time());
    let off = *t.offset();
    let local_here = chrono::Local.offset_from_utc_datetime(&t.naive_utc()).fix();
    // Go parses a `Z` (the only way restic writes a zero offset) as UTC, never as Local.
    if local_here != off || off.local_minus_utc() == 0 {
        return off
            .from_utc_datetime(&(wall - ChronoDuration::seconds(off.local_minus_utc().into())));
    }
    // Go's Date(): take the offset in effect at the wall time read as UTC; if the instant
    // that gives lies in another zone period, use that period's offset instead.
    let off1 = chrono::Local.offset_from_utc_datetime(&wall).fix();
    let guess = wall - ChronoDuration::seconds(off1.local_minus_utc().into());
    let off2 = chrono::Local.offset_from_utc_datetime(&guess).fix();
    let utc: NaiveDateTime = wall - ChronoDuration::seconds(off2.local_minus_utc().into());
    off2.from_utc_datetime(&utc)
}

/// Which snapshots to keep (restic's `ExpirePolicy`). Counts are Go ints: 0 turns a rule
/// off, and so does a negative value, which still makes the policy non-empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpirePolicy {
    /// Keep the last n snapshots.
    pub last: i64,
    /// Keep the last n hourly snapshots.
    pub hourly: i64,
    /// Keep the last n daily snapshots.
    pub daily: i64,
    /// Keep the last n weekly snapshots (ISO weeks).
    pub weekly: i64,
    /// Keep the last n monthly snapshots.
    pub monthly: i64,
    /// Keep the last n yearly snapshots.
    pub yearly: i64,
    /// Keep every snapshot within this duration of the newest.
    pub within: Duration,
    /// Keep hourly snapshots within this duration of the newest.
    pub within_hourly: Duration,
    /// Keep daily snapshots within this duration of the newest.
    pub within_daily: Duration,
    /// Keep weekly snapshots within this duration of the newest.
    pub within_weekly: Duration,
    /// Keep monthly snapshots within this duration of the newest.
    pub within_monthly: Duration,
    /// Keep yearly snapshots within this duration of the newest.
    pub within_yearly: Duration,
    /// Keep every snapshot matching one of these tag lists.
    pub tags: Vec<TagList>,
}

impl ExpirePolicy {
    /// No rule set: restic then keeps everything.
    pub fn is_empty(&self) -> bool {
        *self == ExpirePolicy::default()
    }
}

/// restic's `ExpirePolicy.String()`, printed as `Applying Policy: …`.
impl fmt::Display for ExpirePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keeps = Vec::new();
        for (n, what) in [
            (self.last, "latest"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ] {
            if n > 0 {
                keeps.push(format!("{n} {what}"));
            }
        }
        let mut keepw = Vec::new();
        for (d, what) in [
            (self.within_hourly, "hourly"),
            (self.within_daily, "daily"),
            (self.within_weekly, "weekly"),
            (self.within_monthly, "monthly"),
            (self.within_yearly, "yearly"),
        ] {
            if !d.is_zero() {
                keepw.push(format!("{what} snapshots within {d}"));
            }
        }
        let mut s = String::new();
        if !keeps.is_empty() {
            s = format!("{} snapshots", keeps.join(", "));
        }
        if !keepw.is_empty() {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&keepw.join(", "));
        }
        if !self.tags.is_empty() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            let lists: Vec<String> = self.tags.iter().map(|t| t.to_string()).collect();
            s.push_str(&format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if !self.within.is_zero() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            s.push_str(&format!(
                "all snapshots within {} of the newest",
                self.within
            ));
        }
        write!(f, "keep {s}")
    }
}

/// The bucket counters after a kept snapshot was evaluated (zeros omitted in JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Remaining `--keep-last`.
    #[serde(skip_serializing_if = "is_zero")]
    pub last: i64,
    /// Remaining `--keep-hourly`.
    #[serde(skip_serializing_if = "is_zero")]
    pub hourly: i64,
    /// Remaining `--keep-daily`.
    #[serde(skip_serializing_if = "is_zero")]
    pub daily: i64,
    /// Remaining `--keep-weekly`.
    #[serde(skip_serializing_if = "is_zero")]
    pub weekly: i64,
    /// Remaining `--keep-monthly`.
    #[serde(skip_serializing_if = "is_zero")]
    pub monthly: i64,
    /// Remaining `--keep-yearly`.
    #[serde(skip_serializing_if = "is_zero")]
    pub yearly: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Why one snapshot is kept; serialises as restic's `KeepReason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeepReason {
    /// The kept snapshot's id (not part of restic's JSON).
    #[serde(skip)]
    pub id: restash_format::SnapshotId,
    /// The kept snapshot.
    pub snapshot: Snapshot,
    /// The rules that matched, e.g. `daily snapshot`, `within 1y`.
    pub matches: Vec<String>,
    /// The counters after this snapshot.
    pub counters: Counters,
}

/// The outcome for one group: keep and remove lists newest first, reasons parallel to keep.
#[derive(Debug, Clone, Default)]
pub struct PolicyResult {
    /// Snapshots to keep, newest first.
    pub keep: Vec<SnapshotEntry>,
    /// Snapshots to remove, newest first.
    pub remove: Vec<SnapshotEntry>,
    /// One per kept snapshot, same order.
    pub reasons: Vec<KeepReason>,
}

type Bucker = fn(&DateTime<FixedOffset>, usize) -> i64;

fn ymdh(d: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(d.year()) * 1_000_000
        + i64::from(d.month()) * 10_000
        + i64::from(d.day()) * 100
        + i64::from(d.hour())
}

fn ymd(d: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(d.year()) * 10_000 + i64::from(d.month()) * 100 + i64::from(d.day())
}

fn yw(d: &DateTime<FixedOffset>, _: usize) -> i64 {
    let w = d.iso_week();
    i64::from(w.year()) * 100 + i64::from(w.week())
}

fn ym(d: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(d.year()) * 100 + i64::from(d.month())
}

fn y(d: &DateTime<FixedOffset>, _: usize) -> i64 {
    i64::from(d.year())
}

fn always(_: &DateTime<FixedOffset>, nr: usize) -> i64 {
    nr as i64
}

/// The newest snapshot time that is not in the future (Go's zero time if there is none).
fn latest_time(list: &[SnapshotEntry], now: DateTime<Utc>) -> DateTime<FixedOffset> {
    let mut latest = restash_format::GoTime::zero().0;
    for (_, s) in list {
        if s.time.0 > latest && s.time.0 < now {
            latest = s.time.0;
        }
    }
    latest
}

/// restic's `ApplyPolicy` for one group. `list` is sorted newest first (ties keep their
/// input order); `now` bounds which snapshot counts as the newest for `--keep-within*`.
pub fn apply_policy(
    mut list: Vec<SnapshotEntry>,
    p: &ExpirePolicy,
    now: DateTime<Utc>,
) -> PolicyResult {
    list.sort_by_key(|e| std::cmp::Reverse(e.1.time.0));
    let mut out = PolicyResult::default();
    if p.is_empty() {
        for (id, s) in &list {
            out.reasons.push(KeepReason {
                id: *id,
                snapshot: s.clone(),
                matches: vec!["policy is empty".into()],
                counters: Counters::default(),
            });
        }
        out.keep = list;
        return out;
    }
    if list.is_empty() {
        return out;
    }
    struct Bucket {
        count: i64,
        bucker: Bucker,
        last: i64,
        reason: &'static str,
    }
    let mut buckets = [
        (p.last, always as Bucker, "last snapshot"),
        (p.hourly, ymdh, "hourly snapshot"),
        (p.daily, ymd, "daily snapshot"),
        (p.weekly, yw, "weekly snapshot"),
        (p.monthly, ym, "monthly snapshot"),
        (p.yearly, y, "yearly snapshot"),
    ]
    .map(|(count, bucker, reason)| Bucket {
        count,
        bucker,
        last: -1,
        reason,
    });
    struct Within {
        within: Duration,
        bucker: Bucker,
        last: i64,
        reason: &'static str,
    }
    let mut within = [
        (p.within_hourly, ymdh as Bucker, "hourly within"),
        (p.within_daily, ymd, "daily within"),
        (p.within_weekly, yw, "weekly within"),
        (p.within_monthly, ym, "monthly within"),
        (p.within_yearly, y, "yearly within"),
    ]
    .map(|(within, bucker, reason)| Within {
        within,
        bucker,
        last: -1,
        reason,
    });
    let latest = latest_time(&list, now);
    for (nr, (id, cur)) in list.into_iter().enumerate() {
        let t = &cur.time.0;
        let mut keep = false;
        let mut reasons = Vec::new();
        for l in &p.tags {
            if l.matches(&cur) {
                keep = true;
                reasons.push(format!("has tags {l}"));
            }
        }
        if !p.within.is_zero() && *t > p.within.before(&latest) {
            keep = true;
            reasons.push(format!("within {}", p.within));
        }
        for b in buckets.iter_mut() {
            if b.count > 0 {
                let val = (b.bucker)(t, nr);
                if val != b.last {
                    keep = true;
                    b.last = val;
                    b.count -= 1;
                    reasons.push(b.reason.to_string());
                }
            }
        }
        for b in within.iter_mut() {
            if !b.within.is_zero() && *t > b.within.before(&latest) {
                let val = (b.bucker)(t, nr);
                if val != b.last {
                    keep = true;
                    b.last = val;
                    reasons.push(format!("{} {}", b.reason, b.within));
                }
            }
        }
        if keep {
            out.reasons.push(KeepReason {
                id,
                snapshot: cur.clone(),
                matches: reasons,
                counters: Counters {
                    last: buckets[0].count,
                    hourly: buckets[1].count,
                    daily: buckets[2].count,
                    weekly: buckets[3].count,
                    monthly: buckets[4].count,
                    yearly: buckets[5].count,
                },
            });
            out.keep.push((id, cur));
        } else {
            out.remove.push((id, cur));
        }
    }
    out
}

/// `--group-by`: which snapshot fields separate groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By the (sorted) list of paths.
    pub paths: bool,
    /// By the (sorted) list of tags.
    pub tags: bool,
}

impl GroupBy {
    /// Parses restic's comma list of `host(s)`, `path(s)`, `tag(s)`; empty entries are
    /// allowed (`''` disables grouping).
    pub fn parse(s: &str) -> Result<GroupBy> {
        let mut g = GroupBy::default();
        for opt in s.split(',') {
            match opt {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                "" => {}
                other => {
                    return Err(EngineError::Usage(format!(
                        "unknown grouping option: '{other}'"
                    )))
                }
            }
        }
        Ok(g)
    }
}

/// A group's key, as restic's `SnapshotGroupKey`: fields not grouped by are empty / `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    /// Host name, empty unless grouped by host.
    pub hostname: String,
    /// Sorted paths, `None` unless grouped by paths.
    pub paths: Option<Vec<String>>,
    /// Sorted tags, `None` unless grouped by tags or the snapshot has none.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// Whether no field separates this group (no grouping at all).
    pub fn is_empty(&self) -> bool {
        self.hostname.is_empty() && self.tags.is_none() && self.paths.is_none()
    }
}

/// As restic names a group in `forget -v`: `host [h], tags [a, b], paths [/x, /y]`.
impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut info = Vec::new();
        if !self.hostname.is_empty() {
            info.push(format!("host [{}]", self.hostname));
        }
        if let Some(t) = &self.tags {
            info.push(format!("tags [{}]", t.join(", ")));
        }
        if let Some(p) = &self.paths {
            info.push(format!("paths [{}]", p.join(", ")));
        }
        f.write_str(&info.join(", "))
    }
}

/// restic's `GroupSnapshots`. Like restic, each snapshot's paths are sorted in place (and
/// its tags too when grouping by tags), which shows in the JSON output. Groups come out
/// ordered by key (restic's order is a Go map's, i.e. random); snapshots keep input order.
pub fn group_snapshots(
    snaps: Vec<SnapshotEntry>,
    by: GroupBy,
) -> Vec<(GroupKey, Vec<SnapshotEntry>)> {
    let mut groups: BTreeMap<String, (GroupKey, Vec<SnapshotEntry>)> = BTreeMap::new();
    for (id, mut s) in snaps {
        let mut key = GroupKey::default();
        if by.tags {
            s.tags.sort();
            // A snapshot without tags has Go's nil slice: `null` in the key.
            key.tags = (!s.tags.is_empty()).then(|| s.tags.clone());
        }
        s.paths.sort();
        if by.host {
            key.hostname = s.hostname.clone();
        }
        if by.paths {
            key.paths = (!s.paths.is_empty()).then(|| s.paths.clone());
        }
        let k = serde_json::to_string(&key).unwrap_or_default();
        groups
            .entry(k)
            .or_insert_with(|| (key, Vec::new()))
            .1
            .push((id, s));
    }
    groups.into_values().collect()
}

#[cfg(test)]
#[path = "forget_tests.rs"]
mod tests;
