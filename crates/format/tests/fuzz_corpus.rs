//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) and the inputs that once
//! failed (`fuzz/regressions/<target>/`) through the checks the fuzz targets run, so that
//! every test run repeats them without the nightly toolchain.

use std::path::{Path, PathBuf};

use restash_format::fuzzing;

type Check = fn(&[u8]);

/// Every fuzz target whose checks live in this crate.
const TARGETS: &[(&str, Check)] = &[
    ("pack_header", fuzzing::pack_header),
    ("blob_framing", fuzzing::blob_framing),
    ("index_json", fuzzing::index_json),
    ("tree_json", fuzzing::tree_json),
    ("snapshot_json", fuzzing::snapshot_json),
    ("key_file", fuzzing::key_file),
    ("config_json", fuzzing::config_json),
    ("lock_json", fuzzing::lock_json),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs `check` on every file, returning the files it panicked on.
fn replay(check: Check, inputs: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for p in inputs {
        let data = std::fs::read(p).expect("read input");
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            failed.push(p.display().to_string());
        }
    }
    failed
}

#[test]
fn every_corpus_and_regression_input_passes() {
    let root = fuzz_dir();
    let mut failed = Vec::new();
    for (name, check) in TARGETS {
        let corpus = files(&root.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name} is missing or empty: nothing would be tested"
        );
        failed.extend(replay(*check, &corpus));
        failed.extend(replay(*check, &files(&root.join("regressions").join(name))));
    }
    assert!(failed.is_empty(), "inputs that fail: {failed:#?}");
}

#[test]
fn every_fuzz_target_of_this_crate_is_replayed() {
    for target in files(&fuzz_dir().join("fuzz_targets")) {
        let src = std::fs::read_to_string(&target).expect("read target");
        if !src.contains("restash_format::fuzzing::") {
            continue;
        }
        let name = target.file_stem().expect("file name").to_string_lossy();
        assert!(
            TARGETS.iter().any(|(n, _)| *n == name),
            "{name} is not replayed here"
        );
        assert!(
            src.contains(&format!("fuzzing::{name}(")),
            "{name} must call the check of the same name"
        );
    }
}
