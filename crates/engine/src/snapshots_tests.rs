use super::testing::{memory_repo, save};
use super::*;
use restash_format::{GoTime, Id};

fn snap(n: u8, secs: i64) -> SnapshotEntry {
    let time = GoTime::from_unix(secs, 0, 0).expect("time").to_go_string();
    let json = format!(
        r#"{{"time":"{time}","tree":"{}","paths":["/x"],"hostname":"h"}}"#,
        Id::hash(&[n]).to_hex()
    );
    (
        SnapshotId(Id::hash(&[n, n])),
        Snapshot::from_json(json.as_bytes()).expect("snapshot"),
    )
}

fn bad(id: SnapshotId) -> UnreadableSnapshot {
    UnreadableSnapshot {
        id,
        error: EngineError::Corrupt("invalid data returned".into()),
    }
}

#[test]
fn latest_is_unknown_while_a_snapshot_is_unreadable() {
    let set = Snapshots::new(vec![snap(2, 200), snap(1, 100)], vec![]);
    let (id, _) = set
        .find("latest", &SnapshotFilter::default())
        .expect("latest");
    assert_eq!(*id, snap(2, 0).0);

    let broken = snap(3, 0).0;
    let set = Snapshots::new(vec![snap(1, 100)], vec![bad(broken)]);
    let err = set.find("latest", &SnapshotFilter::default()).unwrap_err();
    assert!(matches!(err, EngineError::UnreadableSnapshot(_)));
    assert!(err.to_string().contains(&broken.short()), "{err}");
    assert!(set.latest_where(|_| false).is_err());
}

#[test]
fn a_prefix_naming_an_unreadable_snapshot_is_an_error() {
    let (good, _) = snap(1, 100);
    let mut twin = good;
    twin.0 .0[31] ^= 1; // same first 62 hex digits as `good`
    let other = snap(3, 0).0;
    let set = Snapshots::new(vec![snap(1, 100)], vec![bad(twin), bad(other)]);
    let filter = SnapshotFilter::default();
    assert_eq!(
        set.find(&good.to_string(), &filter).expect("full id").0,
        good
    );
    let err = set.find_prefix(&other.short()).unwrap_err();
    assert!(matches!(err, EngineError::UnreadableSnapshot(_)), "{err}");
    // A prefix shared by a readable and an unreadable snapshot is ambiguous: never
    // quietly the readable one.
    let err = set.find_prefix(&good.short()).unwrap_err();
    assert!(err.to_string().contains("multiple"), "{err}");
    assert!(matches!(set.find_prefix(""), Err(EngineError::NotFound(_))));
}

fn tagged(n: u8, secs: i64, host: &str, tags: &[&str]) -> SnapshotEntry {
    let (id, mut s) = snap(n, secs);
    s.hostname = host.into();
    s.tags = tags.iter().map(|t| t.to_string()).collect();
    (id, s)
}

#[test]
fn filters_use_restics_tag_lists() {
    let (_, ab) = tagged(1, 100, "h", &["a", "b"]);
    let (_, none) = tagged(2, 200, "h", &[]);
    let f = |tags: &[&str]| {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        SnapshotFilter::new(&[], &tags, &[])
    };
    // As restic 0.14: `--tag ''` is the untagged snapshots, tags are trimmed, and an empty
    // tag in a list with others matches nothing tagged.
    assert!(f(&[""]).matches(&none) && !f(&[""]).matches(&ab));
    assert!(f(&[" a"]).matches(&ab));
    assert!(!f(&["a,"]).matches(&ab));
    assert!(f(&["x", "b, a"]).matches(&ab));
    assert!(SnapshotFilter::default().matches(&ab));
    let full = SnapshotFilter::new(
        &["h1".into(), "h2".into()],
        &["a,b".into(), "c".into()],
        &["/x".into(), "/y".into()],
    );
    assert_eq!(
        full.to_string(),
        "(Paths:[/x /y] Tags:[[a, b] [c]] Hosts:[h1 h2])"
    );
    assert!(!full.matches(&ab));
}

#[test]
fn explicit_ids_resolve_or_are_skipped_with_restics_warnings() {
    let one = tagged(1, 100, "h1", &[]);
    let two = tagged(2, 200, "h2", &[]);
    let three = tagged(3, 300, "h1", &[]);
    let set = Snapshots::new(vec![one.clone(), two.clone(), three.clone()], vec![]);
    let h1 = SnapshotFilter::host("h1");
    let ids = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };

    let sel = set.select(&h1, &ids(&["latest", &two.0.short(), "nosuch", "latest"]));
    let got: Vec<SnapshotId> = sel.snapshots.iter().map(|(id, _)| *id).collect();
    assert_eq!(got, [three.0, two.0], "argument order, duplicates dropped");
    assert_eq!(
        sel.warnings(),
        [r#"Ignoring "nosuch": no matching ID found for prefix "nosuch""#]
    );

    // A filter beside ids that do not use it is said to be ignored.
    let sel = set.select(&h1, &ids(&[&one.0.to_string()]));
    assert_eq!(sel.snapshots.len(), 1);
    assert_eq!(
        sel.warnings(),
        ["Ignoring filters as there are explicit snapshot ids given"]
    );
    assert!(set
        .select(&SnapshotFilter::default(), &ids(&[&one.0.short()]))
        .warnings()
        .is_empty());

    let sel = set.select(&SnapshotFilter::host("zz"), &ids(&["latest"]));
    assert!(sel.snapshots.is_empty());
    assert_eq!(
        sel.warnings(),
        [r#"Ignoring "latest", no snapshot matched given filter (Paths:[] Tags:[] Hosts:[zz])"#]
    );

    // `latest` cannot be known while a snapshot is unreadable: skipped, naming it.
    let broken = snap(9, 0).0;
    let set = Snapshots::new(vec![one.clone()], vec![bad(broken)]);
    let sel = set.select(&SnapshotFilter::default(), &ids(&["latest"]));
    assert!(sel.snapshots.is_empty());
    assert!(matches!(
        &sel.ignored[..],
        [Ignored::Unresolved {
            error: EngineError::UnreadableSnapshot(_),
            ..
        }]
    ));
    assert!(sel.warnings()[0].contains(&broken.short()));
    assert_eq!(
        set.load_warnings(),
        [format!(
            "could not load snapshot {}: invalid data returned",
            broken.short()
        )]
    );
}

#[test]
fn without_ids_the_selection_is_in_listing_order() {
    let repo = memory_repo();
    let mut saved = Vec::new();
    for (i, host) in ["a", "b", "a", "a", "b", "a"].iter().enumerate() {
        saved.push((
            save(&repo, host, &format!("2021-01-0{}T00:00:00Z", i + 1), &[]),
            *host,
        ));
    }
    let all = Snapshots::load(&repo).expect("load");
    let sel = all.select(&SnapshotFilter::host("a"), &[]);
    let got: Vec<SnapshotId> = sel.snapshots.iter().map(|(id, _)| *id).collect();
    // The memory backend lists by id.
    let mut want: Vec<SnapshotId> = saved
        .iter()
        .filter(|(_, h)| *h == "a")
        .map(|(id, _)| *id)
        .collect();
    want.sort();
    assert_eq!(got, want);
    // Listings stay oldest first.
    let times: Vec<i64> = all
        .matching(&SnapshotFilter::default())
        .map(|(_, s)| s.time.unix_secs())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn reload_reads_only_new_snapshot_files() {
    use restash_backend::Handle;
    let repo = memory_repo();
    let first = save(&repo, "h", "2021-01-01T00:00:00Z", &[]);
    let before = Snapshots::load(&repo).expect("load");
    // The file's bytes are now garbage: a fresh load cannot read it, a reload keeps the
    // snapshot it already read (a snapshot file never changes under its name).
    let h = Handle::new(FileType::Snapshot, first.0);
    repo.backend().remove(&h).expect("remove");
    repo.backend().write(&h, b"garbage").expect("write");
    assert_eq!(Snapshots::load(&repo).expect("load").unreadable().len(), 1);
    let second = save(&repo, "h", "2021-01-02T00:00:00Z", &[]);
    let after = before.reload(&repo).expect("reload");
    let ids: Vec<SnapshotId> = after.readable().iter().map(|e| e.0).collect();
    assert_eq!(ids, [first, second]);
    assert!(after.unreadable().is_empty());
    // A file gone from the listing is gone from the reload too.
    repo.backend().remove(&h).expect("remove");
    let ids: Vec<SnapshotId> = after
        .reload(&repo)
        .expect("reload")
        .readable()
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(ids, [second]);
}
