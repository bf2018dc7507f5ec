use super::*;
use restash_format::{BlobId, GoTime, Id, SnapshotId};

fn snap(n: u8, time: &str, host: &str, tags: &[&str]) -> SnapshotEntry {
    let s = Snapshot {
        time: GoTime::parse(time).unwrap(),
        parent: None,
        tree: BlobId(Id([0; 32])),
        paths: vec!["/b".into(), "/a".into()],
        hostname: host.into(),
        username: String::new(),
        uid: 0,
        gid: 0,
        excludes: vec![],
        tags: tags.iter().map(|t| t.to_string()).collect(),
        original: None,
        program_version: None,
        summary: None,
    };
    (SnapshotId(Id([n; 32])), s)
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn kept(r: &PolicyResult) -> Vec<u8> {
    r.keep.iter().map(|(id, _)| id.0 .0[0]).collect()
}

#[test]
fn durations_parse_and_print_like_restic() {
    let d = Duration::parse(" 1y5m7d2h ").unwrap();
    assert_eq!(
        d,
        Duration {
            years: 1,
            months: 5,
            days: 7,
            hours: 2
        }
    );
    assert_eq!(d.to_string(), "1y5m7d2h");
    assert_eq!(Duration::parse("2d1d").unwrap().days, 1);
    assert_eq!(Duration::parse("-3d").unwrap().days, -3);
    assert!(Duration::parse("").unwrap().is_zero());
    assert!(Duration::parse("0y0d").unwrap().is_zero());
    for bad in ["5", "d", "5x", "1y2"] {
        assert!(Duration::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn add_date_normalises_like_go() {
    let t = DateTime::parse_from_rfc3339("2021-03-31T12:00:00+05:30").unwrap();
    // Go: 2021-02-31 is 2021-03-03.
    assert_eq!(
        add_date(&t, 0, -1, 0).to_rfc3339(),
        "2021-03-03T12:00:00+05:30"
    );
    assert_eq!(
        add_date(&t, -1, -3, -31).to_rfc3339(),
        "2019-11-30T12:00:00+05:30"
    );
    let leap = DateTime::parse_from_rfc3339("2020-02-29T00:00:00+05:30").unwrap();
    assert_eq!(
        add_date(&leap, -1, 0, 0).to_rfc3339(),
        "2019-03-01T00:00:00+05:30"
    );
}

#[test]
fn empty_policy_keeps_everything() {
    let list = vec![
        snap(1, "2020-01-01T00:00:00Z", "h", &[]),
        snap(2, "2020-01-02T00:00:00Z", "h", &[]),
    ];
    let p = ExpirePolicy::default();
    assert!(p.is_empty());
    let r = apply_policy(list, &p, now());
    assert_eq!(kept(&r), [2, 1]);
    assert!(r.reasons.iter().all(|k| k.matches == ["policy is empty"]));
}

#[test]
fn negative_count_keeps_nothing() {
    let list = vec![snap(1, "2020-01-01T00:00:00Z", "h", &[])];
    let p = ExpirePolicy {
        last: -1,
        ..Default::default()
    };
    assert!(!p.is_empty());
    let r = apply_policy(list, &p, now());
    assert!(r.keep.is_empty());
    assert_eq!(r.remove.len(), 1);
}

#[test]
fn buckets_keep_the_newest_of_each_period() {
    // 2020-12-28 (Mon) .. 2021-01-03 (Sun) is ISO week 2020-53.
    let list = vec![
        snap(1, "2020-12-28T10:00:00Z", "h", &[]),
        snap(2, "2021-01-03T10:00:00Z", "h", &[]),
        snap(3, "2021-01-04T09:00:00Z", "h", &[]),
        snap(4, "2021-01-04T09:30:00Z", "h", &["x"]),
        snap(5, "2021-01-04T10:00:00Z", "h", &[]),
    ];
    let p = ExpirePolicy {
        weekly: 5,
        ..Default::default()
    };
    let r = apply_policy(list.clone(), &p, now());
    assert_eq!(kept(&r), [5, 2]);
    assert_eq!(r.reasons[1].counters.weekly, 3);

    let p = ExpirePolicy {
        hourly: 2,
        yearly: 9,
        tags: vec![TagList::parse("x")],
        ..Default::default()
    };
    let r = apply_policy(list.clone(), &p, now());
    assert_eq!(kept(&r), [5, 4, 1]);
    assert_eq!(r.reasons[0].matches, ["hourly snapshot", "yearly snapshot"]);
    assert_eq!(r.reasons[1].matches, ["has tags [x]", "hourly snapshot"]);
    assert_eq!(r.reasons[2].matches, ["yearly snapshot"]);
    assert_eq!(
        r.reasons[2].counters,
        Counters {
            yearly: 7,
            ..Default::default()
        }
    );
    let json = serde_json::to_string(&r.reasons[2].counters).unwrap();
    assert_eq!(json, r#"{"yearly":7}"#);
}

#[test]
fn within_is_measured_from_the_newest_past_snapshot() {
    let list = vec![
        snap(1, "2021-01-01T00:00:00Z", "h", &[]),
        snap(2, "2021-01-02T00:00:00Z", "h", &[]),
        snap(3, "2021-01-02T12:00:00Z", "h", &[]),
        // In the future: ignored when finding the newest, but within range itself.
        snap(4, "2031-01-01T00:00:00Z", "h", &[]),
    ];
    let p = ExpirePolicy {
        within: Duration::parse("1d").unwrap(),
        ..Default::default()
    };
    let r = apply_policy(list.clone(), &p, now());
    assert_eq!(kept(&r), [4, 3, 2]);
    assert_eq!(r.reasons[0].matches, ["within 1d"]);
    // Exactly `within` before the newest is not "after" it.
    let p = ExpirePolicy {
        within: Duration::parse("36h").unwrap(),
        within_daily: Duration::parse("2d").unwrap(),
        ..Default::default()
    };
    let r = apply_policy(list, &p, now());
    assert_eq!(kept(&r), [4, 3, 2, 1]);
    assert_eq!(r.reasons[2].matches, ["within 36h"]);
    assert_eq!(r.reasons[3].matches, ["daily within 2d"]);
}

#[test]
fn tag_lists_match_like_restic() {
    let (_, s) = snap(1, "2021-01-01T00:00:00Z", "h", &["a", "b"]);
    let (_, untagged) = snap(2, "2021-01-01T00:00:00Z", "h", &[]);
    assert!(TagList::parse("a, b").matches(&s));
    assert!(!TagList::parse("a,c").matches(&s));
    assert!(TagList::parse("").matches(&untagged));
    assert!(!TagList::parse("").matches(&s));
    assert_eq!(TagList::parse("a, b").to_string(), "[a, b]");
    assert_eq!(
        flatten_tag_lists(&[TagList::parse("a,,b"), TagList::parse("")]),
        ["a", "b"]
    );
}

#[test]
fn policy_describes_itself_like_restic() {
    let p = ExpirePolicy {
        last: 1,
        weekly: 2,
        within_daily: Duration::parse("3m").unwrap(),
        tags: vec![TagList::parse("a,b"), TagList::parse("c")],
        within: Duration::parse("1y").unwrap(),
        ..Default::default()
    };
    assert_eq!(
        p.to_string(),
        "keep 1 latest, 2 weekly snapshots, daily snapshots within 3m and all snapshots \
         with tags [[a, b] [c]] and all snapshots within 1y of the newest"
    );
}

#[test]
fn groups_by_host_paths_and_tags() {
    let list = vec![
        snap(1, "2021-01-01T00:00:00Z", "h1", &["b", "a"]),
        snap(2, "2021-01-02T00:00:00Z", "h2", &[]),
        snap(3, "2021-01-03T00:00:00Z", "h1", &["a", "b"]),
    ];
    let g = group_snapshots(list.clone(), GroupBy::parse("host,tags").unwrap());
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].0.hostname, "h1");
    assert_eq!(g[0].0.tags.as_deref(), Some(&["a".into(), "b".into()][..]));
    assert_eq!(g[0].1[0].1.tags, ["a", "b"]);
    assert_eq!(g[0].1[0].1.paths, ["/a", "/b"]);
    assert_eq!(g[1].0.tags, None);
    let g = group_snapshots(list, GroupBy::parse("").unwrap());
    assert_eq!(g.len(), 1);
    assert_eq!(
        serde_json::to_string(&g[0].0).unwrap(),
        r#"{"hostname":"","paths":null,"tags":null}"#
    );
    assert!(GroupBy::parse("host,foo").is_err());
}
