//! In-process tests of the engine on the in-memory backend (one test binary: one link,
//! and helpers shared without dead-code warnings): backup → restore, cancelled backups,
//! prune against a held lock, restoring over an existing target, check finding each kind
//! of damage, and rewrite.

mod cancel;
mod check_damage;
mod common;
mod hints;
mod prune_beside;
mod prune_lock;
mod restore_modes;
mod rewrite;
mod roundtrip;
