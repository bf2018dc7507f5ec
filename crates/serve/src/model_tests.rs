//! The volumes as the page computes them, on a repository held in memory: counts, totals
//! from trees, ages and the stale and partial flags.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use restash_backend::{FileType, MemoryBackend};
use restash_engine::archiver::{backup, BackupOptions, Source};
use restash_engine::events::{Control, Discard};
use restash_engine::Repository;
use restash_format::{GoTime, Snapshot};

use crate::model::{Library, Totals};

fn repo_with_hosts(dir: &std::path::Path) -> (Repository, Snapshot) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.txt"), b"hello").unwrap();
    std::fs::write(dir.join("sub/b.bin"), vec![7u8; 3000]).unwrap();
    let kdf = restash_crypto::KdfParams {
        n: 1024,
        r: 8,
        p: 1,
    };
    let mut repo = Repository::init(Arc::new(MemoryBackend::new()), b"pw", 2, kdf).unwrap();
    let ctl = Control::new(Arc::new(Discard));
    let source = || Source::Paths(vec![dir.to_path_buf()]);
    let mut first = None;
    for host in ["claim-alice", "claim-bob", "claim-alice"] {
        let s = backup(&mut repo, source(), &BackupOptions::new(host), &ctl).unwrap();
        first.get_or_insert(s.snapshot_id.unwrap());
    }
    repo.load_index().unwrap();
    let snap = repo.load_snapshot(&first.unwrap()).unwrap();
    (repo, snap)
}

#[test]
fn volumes_count_age_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, template) = repo_with_hosts(dir.path());
    // An old backup of a third host, and a partial one of a fourth: written as restic
    // would (a snapshot file naming the same tree).
    let three_days = GoTime::from_unix(1_700_000_000, 0, 0).unwrap();
    // restic 0.14 writes no summary: its totals come from the tree.
    assert!(template.summary.is_some());
    let old = Snapshot {
        hostname: "claim-carol".into(),
        time: three_days,
        summary: None,
        ..template.clone()
    };
    let partial = Snapshot {
        hostname: "claim-dave".into(),
        tags: vec!["nightly".into(), restash_engine::PARTIAL_TAG.into()],
        ..template.clone()
    };
    for s in [&old, &partial] {
        repo.save_unpacked(FileType::Snapshot, &s.to_json())
            .unwrap();
    }
    let lib = Library::new(repo, Duration::from_secs(60), Box::new(|_| {}));
    let now = SystemTime::now();
    let vols = lib.volumes(now, Duration::from_secs(26 * 3600)).unwrap();
    let hosts: Vec<&str> = vols.iter().map(|v| v.host.as_str()).collect();
    assert_eq!(
        hosts,
        ["claim-alice", "claim-bob", "claim-carol", "claim-dave"]
    );
    let by = |h: &str| vols.iter().find(|v| v.host == h).unwrap();
    assert_eq!(by("claim-alice").count, 2);
    assert_eq!(by("claim-alice").series.len(), 2);
    assert_eq!(
        by("claim-bob").totals.as_ref().unwrap(),
        &Totals {
            files: 2,
            bytes: 3005
        }
    );
    assert!(!by("claim-alice").stale && !by("claim-alice").partial);
    let carol = by("claim-carol");
    assert!(carol.stale && !carol.partial);
    assert_eq!(carol.totals, by("claim-bob").totals);
    let expected_age = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 1_700_000_000;
    assert_eq!(carol.age_secs, expected_age);
    assert!(by("claim-dave").partial && !by("claim-dave").stale);
    assert_eq!(by("claim-dave").tags, ["nightly", "partial"]);
    // A longer threshold clears the stale flag.
    let lenient = lib
        .volumes(now, Duration::from_secs(expected_age + 60))
        .unwrap();
    assert!(!lenient.iter().any(|v| v.stale));
}
