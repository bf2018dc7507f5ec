use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use restash_crypto::{derive_key, CryptoError, KdfParams, Key};

use crate::gojson::null_as_default;
use crate::{FormatError, GoTime};

/// A key file under `keys/`: plain JSON holding the master key sealed under a password.
///
/// `created`, `username` and `hostname` are informational and may be absent (rustic writes
/// none of them); they then read as Go's zero values, as restic 0.14 reads them. The KDF
/// fields are required: without them the key cannot be opened, and naming the missing field
/// beats restic's later "only supported KDF is scrypt()" or scrypt parameter error.
/// Everything is always written, as restic's `Key` has no `omitempty`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Creation time (Go's zero time when absent).
    #[serde(default, deserialize_with = "null_as_default")]
    pub created: GoTime,
    /// Who created it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub username: String,
    /// On which host.
    #[serde(default, deserialize_with = "null_as_default")]
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

/// Poly1305's clamp of `r`, as restic's `maskKey`.
const POLY1305_R_MASK: [u8; 16] = [
    0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f,
];

/// The master key as restic prints it with `cat masterkey` (compact; callers may pretty-print)
/// and seals it into new key files.
///
/// `r` is written clamped even when the stored key is not (rustic stores it unclamped):
/// restic clamps its in-memory key the first time it computes a MAC, before it can print or
/// re-seal it. The MACs are the same either way, as Poly1305 clamps `r` itself.
pub fn master_key_json(key: &Key) -> String {
    let mut r = *key.mac_r();
    for (b, m) in r.iter_mut().zip(POLY1305_R_MASK) {
        *b &= m;
    }
    let j = MasterKeyJson {
        mac: MacJson {
            k: B64.encode(key.mac_k()),
            r: B64.encode(r),
        },
        encrypt: B64.encode(key.encrypt_key()),
    };
    serde_json::to_string(&j).expect("master key serializes")
}

/// Reads the master key from the decrypted `data` of a key file.
pub(crate) fn master_key_from_json(plain: &[u8]) -> Result<Key, FormatError> {
    let mk: MasterKeyJson =
        serde_json::from_slice(plain).map_err(FormatError::json("master key"))?;
    let key = Key::from_parts(
        decode_fixed("encrypt", &mk.encrypt)?,
        decode_fixed("mac.k", &mk.mac.k)?,
        decode_fixed("mac.r", &mk.mac.r)?,
    )?;
    Ok(key)
}

impl KeyFile {
    /// Decodes key file JSON. Bytes that are not UTF-8 become U+FFFD, as Go's decoder
    /// makes them in strings: restic opens a key whose `username` or `hostname` holds such
    /// bytes (nothing authenticates or depends on those fields), and so must we.
    pub fn from_json(data: &[u8]) -> Result<KeyFile, FormatError> {
        let text = String::from_utf8_lossy(data);
        serde_json::from_str(&text).map_err(FormatError::json("key"))
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
        master_key_from_json(&plain)
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
    fn key_with_a_name_that_is_not_utf8_opens_as_in_go() {
        let mut json = KAT_KEY.as_bytes().to_vec();
        let at = KAT_KEY.find("\"root\"").unwrap() + 2;
        json[at] = 0xff;
        let kf = KeyFile::from_json(&json).unwrap();
        assert_eq!(kf.username, "r\u{fffd}ot");
        kf.open(b"kat-password").unwrap();
    }

    /// `KAT_KEY` without `drop` and with `extra` merged in.
    fn kat_variant(drop: &[&str], extra: serde_json::Value) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(KAT_KEY).unwrap();
        let obj = v.as_object_mut().unwrap();
        for k in drop {
            obj.remove(*k);
        }
        for (k, x) in extra.as_object().unwrap() {
            obj.insert(k.clone(), x.clone());
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn key_with_only_the_kdf_fields_opens() {
        let json = kat_variant(&["created", "username", "hostname"], serde_json::json!({}));
        let kf = KeyFile::from_json(&json).unwrap();
        assert_eq!(kf.created, GoTime::zero());
        assert_eq!((kf.username.as_str(), kf.hostname.as_str()), ("", ""));
        let key = kf.open(b"kat-password").unwrap();
        assert_eq!(hex::encode(key.mac_k()), "b43cca0e011651e3d341a1e22f5f4d19");
        // What Go's json.Marshal writes for the zero values: every field, no omitempty.
        let out = String::from_utf8(kf.to_json()).unwrap();
        assert!(
            out.starts_with(r#"{"created":"0001-01-01T00:00:00Z","username":"","hostname":"","kdf":"scrypt","N":32768,"#),
            "{out}"
        );
    }

    #[test]
    fn rustic_key_file_decodes() {
        // keys/ of fixtures/rustic-testdata (rustic 0.11.4): no created/username/hostname.
        let rustic = br#"{"kdf":"scrypt","N":131072,"r":8,"p":1,"data":"zzCQn73oeytHHfRN+k80ldKnAOiH0ed7fE2f+aWXK9NMqnB5hWDV/8sEWbZaLPLOaEd6JtWmkLhfl0msLl8YpmwJ14vUGRTxA5SS46M0bMOWyGlvzCYnhUPeWlWSE2z25c9AvPkus8moAESQetIyLsvONv/7uUIAaInc/06EhpI3EzVQCi8ToZ6UZrWjcfPU89chIYj+EIqsdbaRMO30jQ==","salt":"5LjtsmfA9s+wXK82bvqApEsX0T0A4EYkhlqgZPcFYyM/yTEazuaZldo9yjZEoN88ffzx8U26l2FHKdf5JD99qA=="}"#;
        let kf = KeyFile::from_json(rustic).unwrap();
        assert_eq!((kf.n, kf.r, kf.p), (131072, 8, 1));
        assert_eq!(kf.created, GoTime::zero());
    }

    #[test]
    fn unknown_and_null_fields_are_ignored() {
        let json = kat_variant(
            &[],
            serde_json::json!({"created": null, "username": null, "hostname": null,
                "future": {"x": [1, 2]}, "Note": "hi"}),
        );
        let kf = KeyFile::from_json(&json).unwrap();
        assert_eq!(kf.created, GoTime::zero());
        assert!(kf.open(b"kat-password").is_ok());
    }

    #[test]
    fn missing_kdf_fields_are_named() {
        for field in ["kdf", "N", "r", "p", "salt", "data"] {
            let json = kat_variant(&[field], serde_json::json!({}));
            let err = KeyFile::from_json(&json).unwrap_err().to_string();
            assert!(
                err.contains(&format!("missing field `{field}`")),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn master_key_r_is_printed_clamped() {
        // rustic 0.11.4's master key (fixtures/rustic-testdata) stores r unclamped; restic
        // 0.14's `cat masterkey` prints it clamped.
        let r = decode_fixed("mac.r", "ZknKBRSxmzmtbtDgjwgL2A==").unwrap();
        let key = Key::from_parts([7; 32], [9; 16], r).unwrap();
        let j: serde_json::Value = serde_json::from_str(&master_key_json(&key)).unwrap();
        assert_eq!(j["mac"]["r"], "ZknKBRSxmwmsbtAAjAgLCA==");
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
