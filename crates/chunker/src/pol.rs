//! Polynomials over GF(2) as restic/chunker represents them.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;

use crate::ChunkerError;

/// restic/chunker's `randPolMaxTries`: about 1 in 27 candidates is irreducible, so this
/// bound only trips on a broken random source.
const RANDOM_MAX_TRIES: u32 = 1_000_000;

/// A polynomial over GF(2) of degree at most 63: bit *i* is the coefficient of x^i.
///
/// This is the repository's `chunker_polynomial`. Its text form is lower-case hex
/// without `0x`, as in restic's `config` (`3da3358b4dc173`).
///
/// ```
/// use restash_chunker::Pol;
///
/// let p: Pol = "3DA3358B4DC173".parse().unwrap();
/// assert_eq!(p, Pol::new(0x3da3358b4dc173));
/// assert_eq!(p.degree(), Some(53));
/// assert!(p.is_irreducible());
/// assert_eq!(p.to_string(), "3da3358b4dc173");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pol(u64);

impl Pol {
    /// Wraps raw coefficient bits.
    pub const fn new(bits: u64) -> Self {
        Pol(bits)
    }

    /// The coefficient bits.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// Index of the highest set bit; `None` for the zero polynomial.
    pub const fn degree(self) -> Option<u32> {
        if self.0 == 0 {
            None
        } else {
            Some(63 - self.0.leading_zeros())
        }
    }

    /// `self mod d` by long division.
    ///
    /// # Panics
    /// If `d` is zero.
    pub fn modulo(self, d: Pol) -> Pol {
        Pol(reduce(u128::from(self.0), d) as u64)
    }

    /// `(self · other) mod m`.
    ///
    /// # Panics
    /// If `m` is zero.
    pub fn mul_mod(self, other: Pol, m: Pol) -> Pol {
        Pol(reduce(clmul(self.0, other.0), m) as u64)
    }

    /// Greatest common divisor.
    pub fn gcd(self, other: Pol) -> Pol {
        let (mut a, mut b) = (self, other);
        while b.0 != 0 {
            let r = a.modulo(b);
            a = b;
            b = r;
        }
        a
    }

    /// Ben-Or's irreducibility test, as restic/chunker's `Irreducible`: `self` is
    /// irreducible iff `gcd(self, x^(2^i) − x mod self) = 1` for every `i` in
    /// `1..=deg/2`.
    ///
    /// Constants (degree 0 or zero) are reported as irreducible, matching restic, which
    /// never asks about them.
    pub fn is_irreducible(self) -> bool {
        let deg = self.degree().unwrap_or(0);
        let mut x_pow = Pol(2); // x^(2^i) mod self, squared once per round
        for _ in 1..=deg / 2 {
            x_pow = x_pow.mul_mod(x_pow, self);
            if self.gcd(Pol(x_pow.0 ^ 2).modulo(self)) != Pol(1) {
                return false;
            }
        }
        true
    }

    /// A random irreducible polynomial of degree 53, drawn as restic's
    /// `RandomPolynomial` does (8 bytes read little-endian, masked to 54 bits, bits 53 and
    /// 0 set, retried until irreducible, at most 10^6 tries).
    pub fn random<R: RngCore + ?Sized>(rng: &mut R) -> Result<Pol, ChunkerError> {
        Self::random_with_tries(rng, RANDOM_MAX_TRIES)
    }

    /// [`Pol::random`] with an explicit bound on the number of candidates drawn.
    pub fn random_with_tries<R: RngCore + ?Sized>(
        rng: &mut R,
        max_tries: u32,
    ) -> Result<Pol, ChunkerError> {
        for _ in 0..max_tries {
            let mut bytes = [0u8; 8];
            rng.try_fill_bytes(&mut bytes)
                .map_err(|e| ChunkerError::Random(e.to_string()))?;
            let f = Pol((u64::from_le_bytes(bytes) & ((1 << 54) - 1)) | (1 << 53) | 1);
            if f.is_irreducible() {
                return Ok(f);
            }
        }
        Err(ChunkerError::NoIrreduciblePolynomial(max_tries))
    }
}

/// Carry-less product; two degree-≤63 operands cannot overflow 127 bits.
fn clmul(a: u64, b: u64) -> u128 {
    let (a, mut b) = (u128::from(a), b);
    let mut r = 0u128;
    let mut shift = 0;
    while b != 0 {
        if b & 1 == 1 {
            r ^= a << shift;
        }
        b >>= 1;
        shift += 1;
    }
    r
}

fn reduce(mut x: u128, d: Pol) -> u128 {
    let dd = d.degree().expect("division by the zero polynomial");
    let d = u128::from(d.0);
    while x != 0 {
        let dx = 127 - x.leading_zeros();
        if dx < dd {
            break;
        }
        x ^= d << (dx - dd);
    }
    x
}

impl fmt::Display for Pol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl fmt::Debug for Pol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pol({:#x})", self.0)
    }
}

impl fmt::LowerHex for Pol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl FromStr for Pol {
    type Err = ChunkerError;

    /// Parses 1 to 16 hex digits of either case, without a `0x` prefix or sign.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // from_str_radix alone would accept a leading '+'.
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChunkerError::InvalidHex(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(Pol)
            .map_err(|_| ChunkerError::InvalidHex(s.to_owned()))
    }
}

impl From<u64> for Pol {
    fn from(bits: u64) -> Self {
        Pol(bits)
    }
}

impl From<Pol> for u64 {
    fn from(p: Pol) -> Self {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn degree() {
        assert_eq!(Pol(0).degree(), None);
        assert_eq!(Pol(1).degree(), Some(0));
        assert_eq!(Pol(0x3da3358b4dc173).degree(), Some(53));
        assert_eq!(Pol(u64::MAX).degree(), Some(63));
    }

    #[test]
    fn arithmetic() {
        // (x+1)^2 = x^2+1 over GF(2)
        assert_eq!(Pol(3).mul_mod(Pol(3), Pol(1 << 10)), Pol(5));
        assert_eq!(Pol(0b1101).modulo(Pol(0b11)), Pol(1));
        assert_eq!(Pol(0b110).gcd(Pol(0b11)), Pol(0b11));
        let big = Pol(u64::MAX).mul_mod(Pol(u64::MAX), Pol(0x3da3358b4dc173));
        assert!(big.degree().unwrap() < 53);
    }

    #[test]
    fn irreducibility_matches_restic() {
        for p in [
            0x3da3358b4dc173,
            0x3b5d32b5a427db,
            0x2482734cacca49,
            0x2af61f9bf97f73,
        ] {
            assert!(Pol(p).is_irreducible(), "{p:x}");
        }
        for p in [0x38f1e565e288df, 0x30a8295b9d5c91, 0x255f4350b962cb] {
            assert!(!Pol(p).is_irreducible(), "{p:x}");
        }
        // x^2+x+1 is irreducible; x^2+1 = (x+1)^2 is not.
        assert!(Pol(0b111).is_irreducible());
        assert!(!Pol(0b101).is_irreducible());
    }

    #[test]
    fn random_polynomials_are_degree_53_and_irreducible() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let p = Pol::random(&mut rng).unwrap();
            assert_eq!(p.degree(), Some(53));
            assert_eq!(p.value() & 1, 1);
            assert!(p.is_irreducible());
            seen.insert(p);
        }
        assert!(seen.len() > 15);
    }

    #[test]
    fn random_gives_up() {
        // Every candidate from an all-zero source is x^53+1, which x+1 divides.
        struct Zero;
        impl RngCore for Zero {
            fn next_u32(&mut self) -> u32 {
                0
            }
            fn next_u64(&mut self) -> u64 {
                0
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                dest.fill(0)
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
                dest.fill(0);
                Ok(())
            }
        }
        assert_eq!(
            Pol::random_with_tries(&mut Zero, 5),
            Err(ChunkerError::NoIrreduciblePolynomial(5))
        );
    }

    #[test]
    fn hex_round_trip() {
        let p: Pol = "3b5d32b5a427db".parse().unwrap();
        assert_eq!(p.value(), 0x3b5d32b5a427db);
        assert_eq!(p.to_string(), "3b5d32b5a427db");
        assert_eq!(format!("{p:x}"), "3b5d32b5a427db");
        assert_eq!("ABCDEF".parse::<Pol>().unwrap(), Pol(0xabcdef));
        assert_eq!("ffffffffffffffff".parse::<Pol>().unwrap(), Pol(u64::MAX));
        for bad in [
            "",
            "0x3da3",
            "+1",
            "-1",
            "12345678901234567",
            "3da3 ",
            "xyz",
        ] {
            assert!(bad.parse::<Pol>().is_err(), "{bad:?}");
        }
    }
}
