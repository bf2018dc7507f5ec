#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| restash_format::fuzzing::snapshot_json(data));
