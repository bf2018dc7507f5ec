//! One behavioural suite every backend must pass (local, memory, S3, REST, and the limit,
//! retry and cache layers over them): run it from each backend's tests against a real
//! store.

use crate::{Backend, BackendError, FileType, Handle, Id};

fn check(cond: bool, what: &str) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(format!("conformance: {what}"))
    }
}

/// Runs the suite on an empty backend location. Returns the first violation.
pub fn run(be: &dyn Backend) -> Result<(), String> {
    let e = |err: BackendError| format!("conformance: unexpected error: {err}");
    be.create().map_err(e)?;
    let cfg = Handle::config();
    check(
        matches!(be.read(&cfg), Err(BackendError::NotFound(_))),
        "reading a missing config is NotFound",
    )?;
    be.write(&cfg, b"config-bytes").map_err(e)?;
    check(
        matches!(be.create(), Err(BackendError::AlreadyExists(_))),
        "create on an existing repository fails",
    )?;

    let id = Id([0x0a; 32]);
    let pack = Handle::new(FileType::Pack, id);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    be.write(&pack, &data).map_err(e)?;
    check(be.read(&pack).map_err(e)? == data, "read back a whole file")?;
    check(
        be.read_range(&pack, 1000, 5000).map_err(e)? == data[1000..6000],
        "ranged read",
    )?;
    check(
        be.read_range(&pack, 99_990, 10).map_err(e)? == data[99_990..],
        "ranged read to the end",
    )?;
    check(
        matches!(
            be.read_range(&pack, 99_990, 100),
            Err(BackendError::ShortRead { .. })
        ),
        "a read past the end is a ShortRead error, not a short read",
    )?;
    // A length from a damaged or hostile index: the answer must come from the file's size,
    // not from reserving the length first (1 TiB here, which would abort the process).
    check(
        matches!(
            be.read_range(&pack, 1000, 1 << 40),
            Err(BackendError::ShortRead { .. })
        ),
        "a huge length past the end is a ShortRead error, nothing reserved for it",
    )?;
    // A reused buffer: its old contents must not survive or shift the range.
    let mut buf = vec![0xee; 7000];
    be.read_range_into(&pack, 10, 300, &mut buf).map_err(e)?;
    check(
        buf == data[10..310],
        "read_range_into replaces the buffer's contents",
    )?;
    check(be.stat(&pack).map_err(e)? == 100_000, "stat size")?;
    check(
        matches!(
            be.write(&pack, b"other"),
            Err(BackendError::AlreadyExists(_))
        ),
        "writes are create-only",
    )?;
    check(
        be.read(&pack).map_err(e)? == data,
        "a refused write changes nothing",
    )?;

    let snap = Handle::new(FileType::Snapshot, Id([0xb1; 32]));
    be.write(&snap, b"s").map_err(e)?;
    let packs = be.list(FileType::Pack).map_err(e)?;
    check(
        packs.len() == 1 && packs[0].id == id && packs[0].size == 100_000,
        "list packs with sizes",
    )?;
    let snaps = be.list(FileType::Snapshot).map_err(e)?;
    check(
        snaps.len() == 1 && snaps[0].id == Id([0xb1; 32]),
        "list snapshots",
    )?;
    check(
        be.list(FileType::Index).map_err(e)?.is_empty(),
        "empty list",
    )?;
    check(be.exists(&snap).map_err(e)?, "exists")?;

    // Packs in different data/xx/ subdirectories, an empty file, a key, the config.
    let id2 = Id([0xf7; 32]);
    let pack2 = Handle::new(FileType::Pack, id2);
    be.write(&pack2, b"").map_err(e)?;
    check(
        be.read(&pack2).map_err(e)?.is_empty(),
        "an empty file reads back",
    )?;
    check(be.stat(&pack2).map_err(e)? == 0, "an empty file has size 0")?;
    let mut names: Vec<_> = be
        .list(FileType::Pack)
        .map_err(e)?
        .into_iter()
        .map(|f| (f.id, f.size))
        .collect();
    names.sort();
    check(
        names == vec![(id, 100_000), (id2, 0)],
        "list packs across data subdirectories",
    )?;
    let key = Handle::new(FileType::Key, Id([0xc3; 32]));
    be.write(&key, b"{}").map_err(e)?;
    check(be.list(FileType::Key).map_err(e)?.len() == 1, "list keys")?;
    check(
        be.list(FileType::Config).map_err(e)?.is_empty(),
        "the config, which has no id, is not listed",
    )?;
    check(
        be.stat(&cfg).map_err(e)? == b"config-bytes".len() as u64,
        "stat config",
    )?;
    let missing = Handle::new(FileType::Pack, Id([0xd4; 32]));
    check(
        matches!(be.read(&missing), Err(BackendError::NotFound(_))),
        "reading a missing file is NotFound",
    )?;
    check(
        matches!(
            be.read_range(&missing, 0, 10),
            Err(BackendError::NotFound(_))
        ),
        "a ranged read of a missing file is NotFound",
    )?;
    check(
        !be.exists(&missing).map_err(e)?,
        "a missing file does not exist",
    )?;

    be.remove(&snap).map_err(e)?;
    check(!be.exists(&snap).map_err(e)?, "removed")?;
    be.remove(&snap).map_err(e)?;
    check(
        matches!(be.stat(&snap), Err(BackendError::NotFound(_))),
        "stat of a missing file is NotFound",
    )?;
    hints(be)
}

/// restash's hints, in stores that keep them: listed by group, each group apart.
fn hints(be: &dyn Backend) -> Result<(), String> {
    if !be.keeps(FileType::Hint) {
        return Ok(());
    }
    let e = |err: BackendError| format!("conformance: unexpected error: {err}");
    let name = |group: u8, n: u8| {
        let mut id = [n; 32];
        id[..16].fill(group);
        Id(id)
    };
    let (a1, a2, b1) = (name(0xa1, 1), name(0xa1, 2), name(0xb2, 1));
    for id in [a1, a2, b1] {
        be.write(&Handle::new(FileType::Hint, id), b"hint")
            .map_err(e)?;
    }
    let ids = |mut v: Vec<crate::FileInfo>| {
        v.sort_by_key(|f| f.id);
        v.into_iter().map(|f| f.id).collect::<Vec<_>>()
    };
    let group_a = Id([0xa1; 32]).to_hex()[..crate::HINT_GROUP_HEX].to_string();
    check(
        ids(be.list_group(FileType::Hint, &group_a).map_err(e)?) == vec![a1, a2],
        "a group's hints, and no other group's",
    )?;
    check(
        ids(be.list(FileType::Hint).map_err(e)?) == vec![a1, a2, b1],
        "every hint",
    )?;
    check(
        be.list(FileType::Snapshot)
            .map_err(e)?
            .iter()
            .all(|f| ![a1, a2, b1].contains(&f.id)),
        "hints are not snapshots",
    )?;
    be.remove(&Handle::new(FileType::Hint, a1)).map_err(e)?;
    check(
        ids(be.list_group(FileType::Hint, &group_a).map_err(e)?) == vec![a2],
        "a removed hint is not listed",
    )?;
    Ok(())
}
