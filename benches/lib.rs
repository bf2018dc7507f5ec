//! Benchmarks of restash kernels (see benches/*.rs).
