//! Benchmarks of restash kernels (see benches/*.rs).
//!
//! * `chunker`: Rabin and FastCDC chunking throughput.
