//! restic's authenticated encryption (AES-256-CTR + Poly1305-AES) and scrypt key derivation; no I/O
