//! Shared helpers for the end-to-end tests.
//!
//! Every test binary includes this module with `mod common;` and uses only part of it, so
//! unused items are expected.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod backup;
pub mod compare;
pub mod fixtures;
pub mod mount;
pub mod oracle;
pub mod run;
pub mod serve;
pub mod tree;

pub use compare::{
    assert_trees_equal, compare_trees, compare_trees_with, summarize, CompareOptions,
};
pub use fixtures::{
    fixture_path, fixture_repo, unpack_fixture, RepoFixture, REPO_FIXTURES, SOURCE_FIXTURES,
};
pub use run::{restash, restic, restored_path, seed_from_env, CmdOutput, Repo, PASSWORD};
pub use tree::{make_tricky_tree, TrickyTree};

/// Builds a `Vec<OsString>` from a mix of `&str`, `String`, `&Path`, `PathBuf`, `OsString`…,
/// because command lines in these tests mix paths (possibly non-UTF-8) and plain flags.
macro_rules! osargs {
    ($($arg:expr),* $(,)?) => {
        vec![$(::std::ffi::OsString::from(::std::convert::AsRef::<::std::ffi::OsStr>::as_ref(&$arg))),*]
    };
}
pub(crate) use osargs;

/// Whether the tests run as root; device nodes, foreign owners and some mode bits need it.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
