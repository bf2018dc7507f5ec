//! The restic repository format (versions 1 and 2), as pure functions over bytes.
//!
//! Typed ids, the `config`, key files, unpacked files (index, snapshot, lock) with their
//! v2 compression byte, pack headers, index JSON in the current and the old array form,
//! trees and nodes with Go's exact JSON encoding, snapshots and locks. Nothing here does I/O:
//! callers fetch bytes from a backend and hand them in.
//!
//! ```
//! use restash_format::{BlobId, Tree};
//!
//! let empty = Tree::default().to_bytes();
//! assert_eq!(empty, b"{\"nodes\":[]}\n");
//! assert_eq!(
//!     BlobId::hash(&empty).to_string(),
//!     "ac08ce34ba4f8123618661bef2425f7028ffb9ac740578a3ee88684d2523fee8"
//! );
//! ```
#![forbid(unsafe_code)]

mod config;
mod error;
pub mod fuzzing;
mod gojson;
mod hint;
mod id;
mod index;
mod keyfile;
mod lock;
mod node;
mod pack;
mod snapshot;
mod time;
mod unpacked;

pub use config::Config;
pub use error::FormatError;
pub use gojson::{go_quote, go_unquote, write_go_string};
pub use hint::{GroupSnapshot, HintGroup, ParentHint};
pub use id::{BlobId, Id, IndexId, KeyId, LockId, PackId, SnapshotId};
pub use index::{IndexBlob, IndexFile, IndexPack};
pub use keyfile::{master_key_json, KeyFile};
pub use lock::Lock;
pub use node::{go_mode, go_mode_string, ExtendedAttribute, Node, NodeType, Tree};
pub use pack::{
    parse_header, parse_trailer, BlobType, PackBuilder, PackEntry, HEADER_TAIL_READ,
    MAX_HEADER_SIZE,
};
pub use snapshot::{Snapshot, SnapshotSummary};
pub use time::GoTime;
pub use unpacked::{compress_blob, decode_unpacked, decompress_blob, encode_unpacked, Compression};
