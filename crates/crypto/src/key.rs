use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use aes::{Aes128, Aes256};
use poly1305::Poly1305;
use rand::RngCore;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;

/// Length of the random IV in front of every sealed object.
pub const IV_LEN: usize = 16;
/// Length of the Poly1305 tag behind every sealed object.
pub const MAC_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const OVERHEAD: usize = IV_LEN + MAC_LEN;

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// A restic crypto key: the AES-256 key plus the two halves of the Poly1305-AES key.
///
/// Used both as the repository master key and as a password-derived user key. Wiped on drop;
/// its `Debug` never shows the key bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key {
    encrypt: [u8; 32],
    mac_k: [u8; 16],
    mac_r: [u8; 16],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Poly1305's clamping of `r`; restic stores master keys already clamped but user keys
/// come straight from scrypt, so it is applied on every use.
fn clamp(r: &[u8; 16]) -> [u8; 16] {
    const MASK: [u8; 16] = [
        0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff,
        0x0f,
    ];
    let mut out = [0u8; 16];
    for i in 0..16 {
        out[i] = r[i] & MASK[i];
    }
    out
}

impl Key {
    /// Builds a key from its three parts, refusing all-zero parts as restic does.
    pub fn from_parts(
        encrypt: [u8; 32],
        mac_k: [u8; 16],
        mac_r: [u8; 16],
    ) -> Result<Self, CryptoError> {
        if encrypt.iter().all(|b| *b == 0) {
            return Err(CryptoError::InvalidKey("encryption key is all zero"));
        }
        if mac_k.iter().all(|b| *b == 0) || mac_r.iter().all(|b| *b == 0) {
            return Err(CryptoError::InvalidKey("MAC key is all zero"));
        }
        Ok(Key {
            encrypt,
            mac_k,
            mac_r,
        })
    }

    /// Builds a key from 64 bytes of KDF output: encrypt ‖ mac.k ‖ mac.r.
    pub fn from_kdf_output(dk: &[u8; 64]) -> Self {
        let mut key = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        key.encrypt.copy_from_slice(&dk[..32]);
        key.mac_k.copy_from_slice(&dk[32..48]);
        key.mac_r.copy_from_slice(&dk[48..]);
        key
    }

    /// A fresh random key, with `r` stored clamped like restic's `NewRandomKey`.
    pub fn random() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut key = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        rng.fill_bytes(&mut key.encrypt);
        rng.fill_bytes(&mut key.mac_k);
        rng.fill_bytes(&mut key.mac_r);
        key.mac_r = clamp(&key.mac_r);
        key
    }

    /// The AES-256 key, for serialising the master key into a key file.
    pub fn encrypt_key(&self) -> &[u8; 32] {
        &self.encrypt
    }

    /// The Poly1305-AES `k` part (an AES-128 key).
    pub fn mac_k(&self) -> &[u8; 16] {
        &self.mac_k
    }

    /// The Poly1305 `r` part, as stored (not necessarily clamped).
    pub fn mac_r(&self) -> &[u8; 16] {
        &self.mac_r
    }

    /// A keyed hash of `message` that only holders of this key can compute or check:
    /// HMAC-SHA256 under the whole key, with `context` keeping the uses of the key apart.
    /// For names that must not reveal what they name (a hint's group stands for a host and
    /// its paths).
    pub fn keyed_hash(&self, context: &str, message: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        let mut material = [0u8; 64];
        material[..32].copy_from_slice(&self.encrypt);
        material[32..48].copy_from_slice(&self.mac_k);
        material[48..].copy_from_slice(&self.mac_r);
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&material)
            .expect("HMAC takes any key");
        material.zeroize();
        mac.update(context.as_bytes());
        mac.update(&[0]);
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, iv: &[u8; IV_LEN], ciphertext: &[u8]) -> [u8; MAC_LEN] {
        // Poly1305-AES: s = AES-128_k(nonce); the one-time key is r ‖ s.
        let aes = Aes128::new(&self.mac_k.into());
        let mut s = (*iv).into();
        aes.encrypt_block(&mut s);
        let mut otk = [0u8; 32];
        otk[..16].copy_from_slice(&clamp(&self.mac_r));
        otk[16..].copy_from_slice(&s);
        let tag = Poly1305::new(&otk.into()).compute_unpadded(ciphertext);
        otk.zeroize();
        tag.into()
    }

    /// Seals `plaintext` under a fresh random IV: returns IV ‖ ciphertext ‖ MAC.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_append(plaintext, &mut out);
        out
    }

    /// Seals with a caller-chosen IV. Only for known-answer tests: an IV must never repeat.
    pub fn seal_with_iv(&self, iv: &[u8; IV_LEN], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_append_with_iv(iv, plaintext, &mut out);
        out
    }

    /// Appends IV ‖ ciphertext ‖ MAC of `plaintext` to `out` under a fresh IV, so that a
    /// pack is built without an intermediate copy of each blob.
    pub fn seal_append(&self, plaintext: &[u8], out: &mut Vec<u8>) {
        let mut iv = [0u8; IV_LEN];
        while iv.iter().all(|b| *b == 0) {
            rand::rngs::OsRng.fill_bytes(&mut iv);
        }
        self.seal_append_with_iv(&iv, plaintext, out);
    }

    fn seal_append_with_iv(&self, iv: &[u8; IV_LEN], plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(plaintext.len() + OVERHEAD);
        out.extend_from_slice(iv);
        out.extend_from_slice(plaintext);
        let ct = &mut out[start + IV_LEN..];
        Aes256Ctr::new(&self.encrypt.into(), iv.into()).apply_keystream(ct);
        let tag = self.mac(iv, ct);
        out.extend_from_slice(&tag);
    }

    /// Verifies and decrypts IV ‖ ciphertext ‖ MAC.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::new();
        self.open_into(sealed, &mut out)?;
        Ok(out)
    }

    /// Like [`Key::open`], but decrypts into `out` (cleared first) so hot loops can reuse
    /// one allocation.
    pub fn open_into(&self, sealed: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::TooShort { len: sealed.len() });
        }
        let (iv, rest) = sealed.split_at(IV_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - MAC_LEN);
        let iv: &[u8; IV_LEN] = iv.try_into().expect("split at IV_LEN");
        if iv.iter().all(|b| *b == 0) {
            return Err(CryptoError::ZeroIv);
        }
        // Encrypt-then-MAC: nothing is decrypted before the tag verifies.
        let expected = self.mac(iv, ciphertext);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(CryptoError::Unauthenticated);
        }
        out.clear();
        out.extend_from_slice(ciphertext);
        let mut cipher = Aes256Ctr::new(&self.encrypt.into(), iv.into());
        cipher.apply_keystream(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn bernstein_poly1305_aes_vector() {
        let key = Key {
            encrypt: [1; 32],
            mac_k: h("ec074c835580741701425b623235add6"),
            mac_r: h("851fc40c3467ac0be05cc20404f3f700"),
        };
        let tag = key.mac(&h("fb447350c4e868c52ac3275cf9d4327e"), &[0xf3, 0xf6]);
        assert_eq!(hex::encode(tag), "f4c633c3044fc145f84f335cb81953de");
    }

    #[test]
    fn keyed_hash_is_hmac_sha256_under_the_whole_key() {
        let key = Key {
            encrypt: [1; 32],
            mac_k: h("ec074c835580741701425b623235add6"),
            mac_r: h("851fc40c3467ac0be05cc20404f3f700"),
        };
        // Python's hmac.new(encrypt ‖ mac_k ‖ mac_r, b"restash hint\0claim-ada", sha256).
        let want = "553b912d253d980d4daeba7a2f964d50fdd77e5c8638ba4aa78d776f246510bd";
        assert_eq!(
            hex::encode(key.keyed_hash("restash hint", b"claim-ada")),
            want
        );
        assert_ne!(
            key.keyed_hash("other", b"claim-ada"),
            key.keyed_hash("restash hint", b"claim-ada")
        );
    }

    #[test]
    fn restic_crypto_int_test_object_opens() {
        let key = Key::from_parts(
            h("303e8687b1d7db18421bdc6bb8588ccadac4d59ee87b8ff70c44e635790cafef"),
            h("ef4d8824cb80b2bcc5fbff8a9b12a42c"),
            h("cc8d4b948ee0ebfe1d415de921d10353"),
        )
        .unwrap();
        let sealed = hex::decode("69fb41c62d12def4593bd71757138606338f621aeaeb39da0fe4f99233f8037a54ea63338a813bcf3f75d8c3cc75dddf8750").unwrap();
        assert_eq!(key.open(&sealed).unwrap(), b"Dies ist ein Test!");
        // The same IV reproduces the same bytes: seal is the exact inverse.
        let iv: [u8; 16] = sealed[..16].try_into().unwrap();
        assert_eq!(key.seal_with_iv(&iv, b"Dies ist ein Test!"), sealed);
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert_eq!(key.open(&bad), Err(CryptoError::Unauthenticated));
        assert_eq!(
            key.open(&sealed[..31]),
            Err(CryptoError::TooShort { len: 31 })
        );
    }

    #[test]
    fn counter_carries_across_64_bits() {
        // Go's CTR increments the whole 128-bit block; a 64-bit counter would diverge here.
        let key = Key::random();
        let iv = h::<16>("0102030405060708ffffffffffffffff");
        let data = vec![0u8; 64];
        let sealed = key.seal_with_iv(&iv, &data);
        let mut ks = data.clone();
        let mut c = Aes256Ctr::new(&key.encrypt.into(), (&iv).into());
        c.apply_keystream(&mut ks);
        let aes = Aes256::new(&key.encrypt.into());
        let mut block = h::<16>("01020304050607090000000000000000").into();
        aes.encrypt_block(&mut block);
        assert_eq!(&ks[16..32], block.as_slice());
        assert_eq!(&sealed[16..80], &ks[..]);
    }

    #[test]
    fn debug_hides_secrets() {
        let key = Key::from_kdf_output(&[7; 64]);
        assert_eq!(format!("{key:?}"), "Key(<redacted>)");
    }

    #[test]
    fn random_keys_are_clamped_and_distinct() {
        let a = Key::random();
        let b = Key::random();
        assert_ne!(a.encrypt, b.encrypt);
        assert_eq!(clamp(&a.mac_r), a.mac_r);
        let sealed = a.seal(b"x");
        assert_eq!(b.open(&sealed), Err(CryptoError::Unauthenticated));
    }
}
