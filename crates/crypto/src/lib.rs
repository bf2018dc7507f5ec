//! restic's authenticated encryption and key derivation, byte for byte.
//!
//! Every encrypted object in a restic repository is `IV(16) ‖ AES-256-CTR(plaintext) ‖
//! Poly1305-AES(ciphertext)`. The same construction protects the master key inside a key
//! file, under a key derived from the password with scrypt. This crate does no I/O: it turns
//! bytes into bytes.
//!
//! ```
//! use restash_crypto::Key;
//!
//! let key = Key::random();
//! let sealed = key.seal(b"hello");
//! assert_eq!(sealed.len(), 5 + restash_crypto::OVERHEAD);
//! assert_eq!(key.open(&sealed).unwrap(), b"hello");
//! ```
#![forbid(unsafe_code)]

mod error;
mod kdf;
mod key;
mod scrypt;

pub use error::CryptoError;
pub use kdf::{derive_key, KdfParams};
pub use key::{Key, IV_LEN, MAC_LEN, OVERHEAD};
