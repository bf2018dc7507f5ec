#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| restash_backend::fuzzing::s3_answer(data));
