//! The corpus replay shared by the crates' `tests/fuzz_corpus.rs` (each includes this file
//! as a module): runs the committed fuzz corpora (`fuzz/corpus/<target>/`) and the inputs
//! that once failed (`fuzz/regressions/<target>/`) through the checks the fuzz targets
//! run, so that every test run repeats them without the nightly toolchain.

use std::path::{Path, PathBuf};

/// A target's check: panics on a bug.
pub type Check = fn(&[u8]);

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

/// Replays the corpus and the regressions of every target; a corpus directory that is
/// missing or empty fails, as nothing would be tested.
pub fn every_input_passes(targets: &[(&str, Check)]) {
    let root = fuzz_dir();
    let mut failed = Vec::new();
    for (name, check) in targets {
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

/// Checks that every fuzz target calling into `module` (such as
/// `restash_format::fuzzing`) is among `targets`, and calls the check of its own name.
pub fn every_target_is_replayed(module: &str, targets: &[(&str, Check)]) {
    for target in files(&fuzz_dir().join("fuzz_targets")) {
        let src = std::fs::read_to_string(&target).expect("read target");
        if !src.contains(&format!("{module}::")) {
            continue;
        }
        let name = target.file_stem().expect("file name").to_string_lossy();
        assert!(
            targets.iter().any(|(n, _)| *n == name),
            "{name} is not replayed here"
        );
        assert!(
            src.contains(&format!("fuzzing::{name}(")),
            "{name} must call the check of the same name"
        );
    }
}
