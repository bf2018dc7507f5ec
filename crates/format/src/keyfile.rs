use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use restash_crypto::{derive_key, CryptoError, KdfParams, Key};

use crate::{FormatError, GoTime};

/// A key file under `keys/`: plain JSON holding the master key sealed under a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Creation time.
    pub created: GoTime,
    /// Who created it.
    #[serde(default)]
    pub username: String,
    /// On which host.
    #[serde(default)]
    pub hostname: String,
    /// Must be `scrypt`.
    pub kdf: String,
    /// scrypt N.
    #[serde(rename = "N")]
    pub n: u64,
    /// scrypt r.
    pub r: u32,
    /// scrypt p.
    pub p: u32,
    /// base64 of the 64-byte salt.
    pub salt: String,
    /// base64 of IV ‖ sealed master key JSON ‖ MAC.
    pub data: String,
}

#[derive(Serialize, Deserialize)]
struct MacJson {
    k: String,
    r: String,
}

#[derive(Serialize, Deserialize)]
struct MasterKeyJson {
    mac: MacJson,
    encrypt: String,
}

fn decode_fixed<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], FormatError> {
    let v = B64
        .decode(s)
        .map_err(|_| FormatError::Invalid(format!("master key: {what} is not base64")))?;
    v.try_into()
        .map_err(|_| FormatError::Invalid(format!("master key: {what} has the wrong length")))
}

/// The master key as restic prints it with `cat masterkey` (compact; callers may pretty-print).
pub fn master_key_json(key: &Key) -> String {
    let j = MasterKeyJson {
        mac: MacJson {
            k: B64.encode(key.mac_k()),
            r: B64.encode(key.mac_r()),
        },
        encrypt: B64.encode(key.encrypt_key()),
    };
    serde_json::to_string(&j).expect("master key serializes")
}

impl KeyFile {
    /// Decodes key file JSON.
    pub fn from_json(data: &[u8]) -> Result<KeyFile, FormatError> {
        serde_json::from_slice(data).map_err(FormatError::json("key"))
    }

    /// Compact JSON, no newline.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("key file serializes")
    }

    /// Opens the master key with `password`. A wrong password is
    /// `FormatError::Crypto(CryptoError::Unauthenticated)`; anything else means the key
    /// file itself is unusable.
    pub fn open(&self, password: &[u8]) -> Result<Key, FormatError> {
        if self.kdf != "scrypt" {
            return Err(FormatError::Invalid(format!(
                "unsupported KDF {:?}",
                self.kdf
            )));
        }
        let salt = B64
            .decode(&self.salt)
            .map_err(|_| FormatError::Invalid("key salt is not base64".into()))?;
        let data = B64
            .decode(&self.data)
            .map_err(|_| FormatError::Invalid("key data is not base64".into()))?;
        let params = KdfParams {
            n: self.n,
            r: self.r,
            p: self.p,
        };
        let user = derive_key(password, &salt, params)?;
        let plain = Zeroizing::new(user.open(&data)?);
        let mk: MasterKeyJson =
            serde_json::from_slice(&plain).map_err(FormatError::json("master key"))?;
        let key = Key::from_parts(
            decode_fixed("encrypt", &mk.encrypt)?,
            decode_fixed("mac.k", &mk.mac.k)?,
            decode_fixed("mac.r", &mk.mac.r)?,
        )?;
        Ok(key)
    }

    /// Seals `master` under `password` with a fresh salt.
    pub fn create(
        master: &Key,
        password: &[u8],
        params: KdfParams,
        username: &str,
        hostname: &str,
    ) -> Result<KeyFile, CryptoError> {
        let salt: [u8; 64] = {
            let mut s = [0u8; 64];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut s);
            s
        };
        let user = derive_key(password, &salt, params)?;
        let plain = Zeroizing::new(master_key_json(master).into_bytes());
        let data = user.seal(&plain);
        Ok(KeyFile {
            created: GoTime::now_local(),
            username: username.to_string(),
            hostname: hostname.to_string(),
            kdf: "scrypt".into(),
            n: params.n,
            r: params.r,
            p: params.p,
            salt: B64.encode(salt),
            data: B64.encode(data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KAT_KEY: &str = r#"{"created":"2026-11-24T03:30:11.98182498Z","username":"root","hostname":"vm","kdf":"scrypt","N":32768,"r":8,"p":5,"salt":"5/ayl/zZQMnBc73SqwBp9h65cmijk23qRk9Wn0Ox+ufDrmMYizP27Y3IrAc14iCwMUpoH/LaA2ko/PjbUCzu8g==","data":"W0ZKA+CoVqvIv7x5bKesW44Vvgowm/CZstCQasuRZHUFoDBnAynDdeWj+wb52GOYmJQs2XijHxkMF43LlC9AOjZOwZvEDVAidP3kw3iKSckDeyYke+sM+jhLUwq0Frnvyn57VwFRIoOZ4itwPCvxGFjxi/Wz42KUKwS5gOMFduulfDsJj4PY0OqcLsUfjP1MMSgwly9+GcCo9wc2b+y+gg=="}"#;

    #[test]
    fn appendix_a_key_opens_to_the_master_key() {
        let kf = KeyFile::from_json(KAT_KEY.as_bytes()).unwrap();
        assert_eq!(kf.to_json(), KAT_KEY.as_bytes(), "field order as restic");
        let key = kf.open(b"kat-password").unwrap();
        assert_eq!(
            hex::encode(key.encrypt_key()),
            "76ceac36e929a8c39231a5b0f63edcd436ed60d9937933bad47621c82dd307f6"
        );
        assert_eq!(hex::encode(key.mac_k()), "b43cca0e011651e3d341a1e22f5f4d19");
        assert_eq!(hex::encode(key.mac_r()), "f999450fa4c0da011c23850a2c9a9e07");
        assert_eq!(
            master_key_json(&key),
            r#"{"mac":{"k":"tDzKDgEWUePTQaHiL19NGQ==","r":"+ZlFD6TA2gEcI4UKLJqeBw=="},"encrypt":"ds6sNukpqMOSMaWw9j7c1DbtYNmTeTO61HYhyC3TB/Y="}"#
        );
        assert!(matches!(
            kf.open(b"wrong"),
            Err(FormatError::Crypto(CryptoError::Unauthenticated))
        ));
    }

    #[test]
    fn create_then_open() {
        let master = Key::random();
        let cheap = KdfParams {
            n: 1024,
            r: 8,
            p: 1,
        };
        let kf = KeyFile::create(&master, b"pw", cheap, "u", "h").unwrap();
        let back = KeyFile::from_json(&kf.to_json())
            .unwrap()
            .open(b"pw")
            .unwrap();
        assert_eq!(back.encrypt_key(), master.encrypt_key());
    }
}
