//! Replays the committed fuzz corpora of the targets whose checks live in this crate (see
//! `fuzz/replay.rs`).

#[path = "../../../fuzz/replay.rs"]
mod replay;

use replay::Check;
use restash_backend::fuzzing;

/// Every fuzz target whose checks live in this crate.
const TARGETS: &[(&str, Check)] = &[
    ("rest_listing", fuzzing::rest_listing),
    ("s3_answer", fuzzing::s3_answer),
];

#[test]
fn every_corpus_and_regression_input_passes() {
    replay::every_input_passes(TARGETS);
}

#[test]
fn every_fuzz_target_of_this_crate_is_replayed() {
    replay::every_target_is_replayed("restash_backend::fuzzing", TARGETS);
}
