//! restic's own test repositories and trees, shipped as tarballs in `fixtures/restic-testdata`.

use std::fs::File;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// One repository archive and what restic 0.14 makes of it (see the fixtures' README.md).
#[derive(Debug, Clone, Copy)]
pub struct RepoFixture {
    /// Archive name without `.tar.gz`.
    pub name: &'static str,
    pub snapshots: usize,
    /// `restic check --read-data` passes.
    pub check_ok: bool,
    /// `restic restore` of every snapshot succeeds, so restores can be compared with restic's.
    /// repo-unused-data-missing fails `check` only because of a pack no snapshot uses.
    pub restore_ok: bool,
}

const fn fx(name: &'static str, snapshots: usize, check_ok: bool, restore_ok: bool) -> RepoFixture {
    RepoFixture {
        name,
        snapshots,
        check_ok,
        restore_ok,
    }
}

/// Every repository archive in the fixtures folder.
pub const REPO_FIXTURES: &[RepoFixture] = &[
    fx("small-repo", 4, true, true),
    fx("repo-layout-default", 3, true, true),
    fx("repo-mixed", 1, true, true),
    fx("repo-same-timestamps", 3, true, true),
    fx("repo-restore-permissions-test", 1, true, true),
    fx("repo-duplicates", 1, true, true),
    fx("repo-obsolete-index", 1, true, true),
    fx("repo-unreferenced-data", 1, true, true),
    fx("copy-unstable-json", 1, true, true),
    fx("duplicate-packs-in-index-test-repo", 0, true, true),
    fx("repo-data-missing", 1, false, false),
    fx("repo-index-missing", 2, false, false),
    fx("repo-index-missing-blob", 1, false, false),
    fx("repo-unused-data-missing", 1, false, true),
];

/// Archives that are source trees to back up rather than repositories.
pub const SOURCE_FIXTURES: &[&str] = &["backup-data", "test.hl"];

/// Folder holding the fixture archives.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/restic-testdata")
}

/// Path of `name`'s archive (`name` with or without `.tar.gz`).
pub fn fixture_path(name: &str) -> PathBuf {
    let file = if name.ends_with(".tar.gz") {
        name.to_owned()
    } else {
        format!("{name}.tar.gz")
    };
    let path = fixtures_dir().join(file);
    assert!(path.is_file(), "fixture archive {path:?} is missing");
    path
}

/// Unpacks a fixture archive into a fresh temporary directory, keeping modes, owners (when
/// root), mtimes, xattrs and hard links, since the trees are compared after a round trip.
pub fn unpack_fixture(name: &str) -> TempDir {
    unpack_archive(&fixture_path(name))
}

/// The repository inside an unpacked repository archive.
pub fn fixture_repo(unpacked: &TempDir) -> PathBuf {
    let repo = unpacked.path().join("repo");
    assert!(
        repo.join("config").is_file(),
        "{repo:?} is not a repository"
    );
    repo
}

/// Folder holding repositories written by other restic-format tools (rustic), each
/// described in its README.md.
pub fn rustic_fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/rustic-testdata")
}

/// Unpacks the archive at `path` (any folder) into a fresh temporary directory, keeping the
/// same metadata as [`unpack_fixture`]; open the repository inside with [`fixture_repo`].
pub fn unpack_archive(path: &Path) -> TempDir {
    assert!(path.is_file(), "fixture archive {path:?} is missing");
    let stem = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let stem = stem
        .as_deref()
        .unwrap_or("archive")
        .trim_end_matches(".tar.gz");
    let dir = tempfile::Builder::new()
        .prefix(&format!("fx-{stem}-"))
        .tempdir()
        .expect("tempdir");
    let file = File::open(path).unwrap_or_else(|e| panic!("open {path:?}: {e}"));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(crate::common::is_root());
    archive.set_unpack_xattrs(true);
    archive
        .unpack(dir.path())
        .unwrap_or_else(|e| panic!("unpack {path:?}: {e}"));
    dir
}
