//! Benchmarks of restash kernels: see `benches/chunker.rs`, `benches/kernels.rs` and the
//! end-to-end harness in `e2e/run.sh` (README.md here).
//!
//! * `chunker`: Rabin and FastCDC chunking throughput.
