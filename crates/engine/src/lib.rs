//! Repository operations: open, index, restore, backup, check
