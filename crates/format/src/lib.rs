//! The restic repository format: ids, config, key files, packs, index, trees, snapshots, locks; no I/O
