use zeroize::Zeroize;

use crate::{CryptoError, Key};

/// scrypt parameters as stored in a restic key file (`N`, `r`, `p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// CPU/memory cost; a power of two greater than 1.
    pub n: u64,
    /// Block size.
    pub r: u32,
    /// Parallelism.
    pub p: u32,
}

impl KdfParams {
    /// What restic 0.14's calibration settles on for typical machines (§3.3 of the format
    /// notes): N = 2^15, r = 8; p is raised until 0.5 s, which we do not chase.
    pub const DEFAULT: KdfParams = KdfParams {
        n: 32768,
        r: 8,
        p: 5,
    };

    /// restic's calibration (simple-scrypt `Calibrate(500 ms, 60 MiB)`): N = 2^15, r = 8,
    /// and p raised until one derivation takes about half a second, then lowered by one.
    /// Times one p = 1 run to choose p.
    pub fn calibrate() -> KdfParams {
        let probe = KdfParams {
            n: 32768,
            r: 8,
            p: 1,
        };
        let start = std::time::Instant::now();
        if derive_key(b"calibration", &[0u8; 64], probe).is_err() {
            return KdfParams::DEFAULT;
        }
        let t = start.elapsed().as_secs_f64().max(1e-3);
        let p = ((0.5 / t).ceil() as u32).saturating_sub(1).clamp(1, 64);
        KdfParams { p, ..probe }
    }

    fn validate(&self) -> Result<u8, CryptoError> {
        if self.n <= 1 || !self.n.is_power_of_two() {
            return Err(CryptoError::InvalidKdfParams(format!(
                "N={} is not a power of two above 1",
                self.n
            )));
        }
        if self.r == 0 || self.p == 0 || (self.r as u64) * (self.p as u64) >= 1 << 30 {
            return Err(CryptoError::InvalidKdfParams(format!(
                "r={} p={} out of range",
                self.r, self.p
            )));
        }
        Ok(self.n.trailing_zeros() as u8)
    }
}

/// Derives a user key from a password: scrypt(password, salt, N, r, p) → 64 bytes →
/// encrypt ‖ mac.k ‖ mac.r.
pub fn derive_key(password: &[u8], salt: &[u8], params: KdfParams) -> Result<Key, CryptoError> {
    if salt.len() != 64 {
        return Err(CryptoError::InvalidKdfParams(format!(
            "salt is {} bytes, restic requires 64",
            salt.len()
        )));
    }
    let log_n = params.validate()?;
    crate::scrypt::check_params(log_n, params.r, params.p)
        .map_err(CryptoError::InvalidKdfParams)?;
    let mut dk = [0u8; 64];
    crate::scrypt::scrypt(password, salt, log_n, params.r, params.p, &mut dk)
        .map_err(CryptoError::InvalidKdfParams)?;
    let key = Key::from_kdf_output(&dk);
    dk.zeroize();
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appendix_a_user_key() {
        // restic-format.md Appendix A.1: password "kat-password", N=32768 r=8 p=5.
        let salt = [
            "e7f6b297fcd940c9c173bdd2ab0069f61eb97268a3936dea464f569f43b1fae7",
            "c3ae63188b33f6ed8dc8ac0735e220b0314a681ff2da036928fcf8db502ceef2",
        ]
        .concat();
        let salt = hex::decode(salt).unwrap();
        let key = derive_key(b"kat-password", &salt, KdfParams::DEFAULT).unwrap();
        assert_eq!(hex::encode(key.mac_k()), "e28966241e6395527ce229c70e7c329e");
        assert_eq!(hex::encode(key.mac_r()), "dd459c073b93db545610b64c3eb85c2e");
    }

    #[test]
    fn rejects_bad_params() {
        let salt = [1u8; 64];
        let bad = KdfParams {
            n: 1000,
            r: 8,
            p: 1,
        };
        assert!(derive_key(b"x", &salt, bad).is_err());
        assert!(derive_key(b"x", &salt[..32], KdfParams::DEFAULT).is_err());
    }
}
