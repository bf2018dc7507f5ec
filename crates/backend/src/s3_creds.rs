//! S3 credentials, looked up in the order the AWS tools use:
//!
//! 1. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; each may instead
//!    come from a file named by the same variable with `_FILE` appended (a Kubernetes Secret
//!    mounted as files), trailing newlines removed;
//! 2. the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`),
//!    profile `AWS_PROFILE` or `default`;
//! 3. web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`) or ECS/EKS container
//!    credentials (`AWS_CONTAINER_CREDENTIALS_*_URI`), which `object_store` fetches itself.
//!
//! Nothing found is one clear configuration error; there is no instance-metadata probing
//! (it would only time out away from EC2).

use std::path::PathBuf;

use crate::BackendError;

/// A secret string: never shown by Debug and wiped from memory when dropped.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// Static S3 credentials.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Access key id (not secret, but only shown where AWS shows it).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Temporary session token, if any.
    pub session_token: Option<Secret>,
}

/// Where the credentials come from.
#[derive(Debug)]
pub(crate) enum CredentialSource {
    /// Keys known now, from the environment, files or the shared credentials file.
    Static(Credentials),
    /// Web identity or container credentials, fetched and refreshed by `object_store`.
    Ambient,
}

/// Reads `name`, else the file named by `name_FILE`; empty values count as unset.
fn var_or_file(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<String>, BackendError> {
    if let Some(v) = env(name).filter(|v| !v.is_empty()) {
        return Ok(Some(v));
    }
    let file_var = format!("{name}_FILE");
    let Some(path) = env(&file_var).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let s = std::fs::read_to_string(&path)
        .map_err(|e| BackendError::Config(format!("cannot read {file_var} ({path}): {e}")))?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        return Err(BackendError::Config(format!(
            "{file_var} ({path}) is empty"
        )));
    }
    Ok(Some(s))
}

/// Finds credentials as described in the module documentation. `env` reads a variable.
pub(crate) fn resolve(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CredentialSource, BackendError> {
    let key = var_or_file(env, "AWS_ACCESS_KEY_ID")?;
    let secret = var_or_file(env, "AWS_SECRET_ACCESS_KEY")?;
    match (key, secret) {
        (Some(access_key_id), Some(secret)) => {
            let session_token = var_or_file(env, "AWS_SESSION_TOKEN")?.map(Secret::new);
            return Ok(CredentialSource::Static(Credentials {
                access_key_id,
                secret_access_key: Secret::new(secret),
                session_token,
            }));
        }
        (Some(_), None) => {
            return Err(BackendError::Config(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY_FILE) is not"
                    .into(),
            ))
        }
        (None, Some(_)) => {
            return Err(BackendError::Config(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID_FILE) is not"
                    .into(),
            ))
        }
        (None, None) => {}
    }

    let profile = env("AWS_PROFILE")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".into());
    let explicit = env("AWS_SHARED_CREDENTIALS_FILE").filter(|p| !p.is_empty());
    let path = explicit
        .clone()
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws").join("credentials")));
    if let Some(path) = path {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Some(c) = parse_shared_credentials(&text, &profile) {
                    return Ok(CredentialSource::Static(c));
                }
                if explicit.is_some() || env("AWS_PROFILE").is_some() {
                    return Err(BackendError::Config(format!(
                        "profile {profile:?} in {} has no aws_access_key_id and aws_secret_access_key",
                        path.display()
                    )));
                }
            }
            Err(e) if explicit.is_some() => {
                return Err(BackendError::Config(format!(
                    "cannot read AWS_SHARED_CREDENTIALS_FILE {}: {e}",
                    path.display()
                )))
            }
            Err(_) => {}
        }
    }

    let set = |v: &str| env(v).is_some_and(|s| !s.is_empty());
    if (set("AWS_WEB_IDENTITY_TOKEN_FILE") && set("AWS_ROLE_ARN"))
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    {
        return Ok(CredentialSource::Ambient);
    }
    Err(BackendError::Config(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their _FILE \
         variants), or add a profile to ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE, \
         AWS_PROFILE)"
            .into(),
    ))
}

/// The keys of `profile` in an AWS shared credentials file (INI: `[name]` sections,
/// `key = value` lines, `#` or `;` comments; `[profile name]` is accepted too).
fn parse_shared_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            let name = section.strip_prefix("profile ").unwrap_or(section).trim();
            in_profile = name == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => key = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" | "aws_security_token" => token = Some(v),
            _ => {}
        }
    }
    Some(Credentials {
        access_key_id: key.filter(|k| !k.is_empty())?,
        secret_access_key: Secret::new(secret.filter(|s| !s.is_empty())?),
        session_token: token.filter(|t| !t.is_empty()).map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn stat(src: CredentialSource) -> Credentials {
        match src {
            CredentialSource::Static(c) => c,
            CredentialSource::Ambient => panic!("expected static credentials"),
        }
    }

    #[test]
    fn from_variables_and_files() {
        let c = stat(
            resolve(&env_of(&[
                ("AWS_ACCESS_KEY_ID", "k"),
                ("AWS_SECRET_ACCESS_KEY", "s"),
            ]))
            .unwrap(),
        );
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.expose()),
            ("k", "s")
        );
        assert!(c.session_token.is_none());

        let dir = tempfile::tempdir().unwrap();
        let f = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            p.display().to_string()
        };
        let (k, s, t) = (f("k", "key1\n"), f("s", "sec ret\r\n"), f("t", "tok"));
        let c = stat(
            resolve(&env_of(&[
                ("AWS_ACCESS_KEY_ID_FILE", &k),
                ("AWS_SECRET_ACCESS_KEY_FILE", &s),
                ("AWS_SESSION_TOKEN_FILE", &t),
            ]))
            .unwrap(),
        );
        assert_eq!(c.access_key_id, "key1");
        assert_eq!(c.secret_access_key.expose(), "sec ret");
        assert_eq!(c.session_token.as_ref().unwrap().expose(), "tok");
        assert!(!format!("{c:?}").contains("sec ret"));

        let e = resolve(&env_of(&[
            ("AWS_ACCESS_KEY_ID", "k"),
            ("AWS_SECRET_ACCESS_KEY_FILE", "/nonexistent/x"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY_FILE"), "{e}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn shared_credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials");
        std::fs::write(
            &p,
            "# comment\n[default]\naws_access_key_id = dk\naws_secret_access_key=ds\n\n\
             [profile other]\naws_access_key_id = ok\naws_secret_access_key = os\naws_session_token = ot\n",
        )
        .unwrap();
        let ps = p.display().to_string();
        let c = stat(resolve(&env_of(&[("AWS_SHARED_CREDENTIALS_FILE", &ps)])).unwrap());
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.expose()),
            ("dk", "ds")
        );
        let c = stat(
            resolve(&env_of(&[
                ("AWS_SHARED_CREDENTIALS_FILE", &ps),
                ("AWS_PROFILE", "other"),
            ]))
            .unwrap(),
        );
        assert_eq!(c.access_key_id, "ok");
        assert_eq!(c.session_token.unwrap().expose(), "ot");
        assert!(resolve(&env_of(&[
            ("AWS_SHARED_CREDENTIALS_FILE", &ps),
            ("AWS_PROFILE", "nope")
        ]))
        .is_err());

        let home = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::copy(&p, dir.path().join(".aws/credentials")).unwrap();
        let c = stat(resolve(&env_of(&[("HOME", &home)])).unwrap());
        assert_eq!(c.access_key_id, "dk");
    }

    #[test]
    fn nothing_found_is_one_clear_error() {
        let e = resolve(&env_of(&[("HOME", "/nonexistent")])).unwrap_err();
        assert!(matches!(e, BackendError::Config(_)));
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        assert!(matches!(
            resolve(&env_of(&[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
                ("AWS_ROLE_ARN", "arn")
            ]))
            .unwrap(),
            CredentialSource::Ambient
        ));
    }
}
