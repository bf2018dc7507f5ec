//! Content-defined chunking: restic-exact Rabin CDC and FastCDC; no I/O
