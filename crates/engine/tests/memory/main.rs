//! In-process tests of the engine on the in-memory backend (one test binary: one link,
//! and helpers shared without dead-code warnings): backup → restore, cancelled backups,
//! prune against a held lock, check finding each kind of damage, and rewrite.

mod cancel;
mod check_damage;
mod common;
mod prune_lock;
mod rewrite;
mod roundtrip;
