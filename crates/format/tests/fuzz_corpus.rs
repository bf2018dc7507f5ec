//! Replays the committed fuzz corpora of the targets whose checks live in this crate (see
//! `fuzz/replay.rs`).

#[path = "../../../fuzz/replay.rs"]
mod replay;

use replay::Check;
use restash_format::fuzzing;

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

#[test]
fn every_corpus_and_regression_input_passes() {
    replay::every_input_passes(TARGETS);
}

#[test]
fn every_fuzz_target_of_this_crate_is_replayed() {
    replay::every_target_is_replayed("restash_format::fuzzing", TARGETS);
}
