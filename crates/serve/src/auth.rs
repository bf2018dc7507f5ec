//! Who may look: nobody needs to on loopback, else a token (as a bearer token or as the
//! password of HTTP Basic auth, so a browser's own prompt works) or a user of an Apache
//! htpasswd file (bcrypt, Apache's MD5 `$apr1$`, MD5-crypt `$1$`, or `{SHA}`).

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use crate::ServeError;

/// How requests are checked.
#[derive(Clone, Default)]
pub enum Auth {
    /// Everyone is let in (only allowed on loopback).
    #[default]
    Open,
    /// The token, as `Authorization: Bearer …` or as a Basic password with any user.
    Token(String),
    /// Users and password hashes of an htpasswd file.
    Htpasswd(Vec<(String, String)>),
}

// The token and the hashes are secrets: Debug shows neither.
impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Open => f.write_str("Open"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::Htpasswd(users) => write!(f, "Htpasswd({} users)", users.len()),
        }
    }
}

impl Auth {
    /// Reads an htpasswd file; every line must be `user:hash` in a supported scheme, so
    /// that a typo never silently locks everyone out or lets anyone in.
    pub fn htpasswd(path: &Path) -> Result<Auth, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut users = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| ServeError::Htpasswd {
                path: path.to_path_buf(),
                line: n + 1,
                why: why.to_string(),
            };
            let (user, hash) = line.split_once(':').ok_or_else(|| bad("no ':'"))?;
            if !supported(hash) {
                return Err(bad(
                    "unsupported hash: use bcrypt (htpasswd -B), MD5 (-m) or SHA-1 (-s)",
                ));
            }
            users.push((user.to_string(), hash.to_string()));
        }
        if users.is_empty() {
            return Err(ServeError::Htpasswd {
                path: path.to_path_buf(),
                line: 0,
                why: "no users".into(),
            });
        }
        Ok(Auth::Htpasswd(users))
    }

    /// Whether a request with this `Authorization` header value may pass.
    pub fn allows(&self, header: Option<&str>) -> bool {
        let token = match self {
            Auth::Open => return true,
            Auth::Token(t) => t,
            Auth::Htpasswd(users) => {
                let Some((user, password)) = header.and_then(basic) else {
                    return false;
                };
                return users
                    .iter()
                    .any(|(u, hash)| *u == user && verify(hash, &password));
            }
        };
        let given = match header {
            Some(h) if h.starts_with("Bearer ") => h["Bearer ".len()..].trim().to_string(),
            Some(h) => match basic(h) {
                Some((_, password)) => password,
                None => return false,
            },
            None => return false,
        };
        bool::from(given.as_bytes().ct_eq(token.as_bytes()))
    }

    /// Whether anything is checked at all.
    pub fn is_open(&self) -> bool {
        matches!(self, Auth::Open)
    }
}

fn basic(header: &str) -> Option<(String, String)> {
    let b64 = header.strip_prefix("Basic ")?.trim();
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn supported(hash: &str) -> bool {
    hash.starts_with("$2y$")
        || hash.starts_with("$2b$")
        || hash.starts_with("$2a$")
        || hash.starts_with("$apr1$")
        || hash.starts_with("$1$")
        || hash.starts_with("{SHA}")
}

fn verify(hash: &str, password: &str) -> bool {
    if let Some(sha) = hash.strip_prefix("{SHA}") {
        let digest = <sha1::Sha1 as sha1::Digest>::digest(password.as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(digest);
        return bool::from(want.as_bytes().ct_eq(sha.as_bytes()));
    }
    for magic in ["$apr1$", "$1$"] {
        if let Some(rest) = hash.strip_prefix(magic) {
            let salt = rest.split('$').next().unwrap_or("");
            let want = md5_crypt(password.as_bytes(), salt.as_bytes(), magic.as_bytes());
            return bool::from(want.as_bytes().ct_eq(hash.as_bytes()));
        }
    }
    bcrypt::verify(password, hash).unwrap_or(false)
}

const CRYPT64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Poul-Henning Kamp's MD5-crypt, which Apache's `$apr1$` is with another magic string.
fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let alt = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(magic)
        .chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        ctx.update(&alt[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut sum = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(sum);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(sum);
        } else {
            c.update(password);
        }
        sum = c.finalize();
    }
    let mut out = String::new();
    out.push_str(std::str::from_utf8(magic).unwrap_or(""));
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(CRYPT64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(
            (u32::from(sum[a]) << 16) | (u32::from(sum[b]) << 8) | u32::from(sum[c]),
            4,
        );
    }
    put(u32::from(sum[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic_header(user: &str, password: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b64}")
    }

    // Hashes made by `openssl passwd -apr1 -salt rSsT2mZb secret`, `openssl passwd -1
    // -salt abcdefgh secret`, SHA-1 of "secret", and OpenBSD's bcrypt vector for "U*U".
    const APR1: &str = "$apr1$rSsT2mZb$svPt0ns8RcnwCmuzYp.8L/";
    const MD5: &str = "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1";
    const SHA: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
    const BCRYPT: &str = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";

    #[test]
    fn htpasswd_hashes_verify_as_their_tools_made_them() {
        for hash in [APR1, MD5, SHA] {
            assert!(verify(hash, "secret"), "{hash}");
            assert!(!verify(hash, "Secret"), "{hash}");
        }
        assert!(verify(BCRYPT, "U*U"));
        assert!(!verify(BCRYPT, "U*V"));
    }

    #[test]
    fn htpasswd_file_users_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, format!("# admins\nann:{APR1}\nbob:{SHA}\n")).unwrap();
        let auth = Auth::htpasswd(&path).unwrap();
        assert!(auth.allows(Some(&basic_header("ann", "secret"))));
        assert!(auth.allows(Some(&basic_header("bob", "secret"))));
        assert!(!auth.allows(Some(&basic_header("ann", "wrong"))));
        assert!(!auth.allows(Some(&basic_header("carl", "secret"))));
        assert!(!auth.allows(None));
        assert!(!format!("{auth:?}").contains("apr1"));

        std::fs::write(&path, "ann:plaintext\n").unwrap();
        let err = Auth::htpasswd(&path).unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("unsupported"),
            "{err}"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(Auth::htpasswd(&path).is_err());
    }

    #[test]
    fn token_as_bearer_or_basic_password() {
        let auth = Auth::Token("t0k3n".into());
        assert!(auth.allows(Some("Bearer t0k3n")));
        assert!(auth.allows(Some(&basic_header("anyone", "t0k3n"))));
        assert!(!auth.allows(Some("Bearer t0k3")));
        assert!(!auth.allows(Some(&basic_header("t0k3n", ""))));
        assert!(!auth.allows(None));
        assert_eq!(format!("{auth:?}"), "Token(<redacted>)");
        assert!(Auth::Open.allows(None));
    }
}
