//! User volumes: a PVC name and the JupyterHub user it belongs to.

use std::collections::BTreeMap;

use crate::names::{check_dns_subdomain, check_label_value};
use crate::K8sError;

/// A PVC and its user. KubeSpawner names claims `claim-{username}{servername}`, so the
/// user is the name without `claim-` unless given as `claim-x=username`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Volume {
    /// The PVC name.
    pub pvc: String,
    /// The escaped user name, as in the notebook pod's `hub.jupyter.org/username` label.
    pub user: String,
}

/// Prefixes `kubectl get pvc -o name` prints.
const KUBECTL_PREFIXES: &[&str] = &["persistentvolumeclaim/", "persistentvolumeclaims/", "pvc/"];

impl Volume {
    /// A volume from its PVC name and, optionally, its user.
    pub fn new(pvc: &str, user: Option<&str>) -> Result<Self, K8sError> {
        check_dns_subdomain("pvc name", pvc)?;
        let user = match user {
            Some(u) => u,
            None => pvc.strip_prefix("claim-").unwrap_or(pvc),
        };
        check_label_value("user name (give it as --pvc <pvc>=<user>)", user)?;
        Ok(Volume {
            pvc: pvc.into(),
            user: user.into(),
        })
    }

    /// Parses `claim-alice`, `claim-alice=alice` or `persistentvolumeclaim/claim-alice`.
    pub fn parse(spec: &str) -> Result<Self, K8sError> {
        let spec = spec.trim();
        let spec = KUBECTL_PREFIXES
            .iter()
            .find_map(|p| spec.strip_prefix(p))
            .unwrap_or(spec);
        match spec.split_once('=') {
            Some((pvc, user)) => Volume::new(pvc.trim(), Some(user.trim())),
            None => Volume::new(spec, None),
        }
    }
}

/// One volume per non-empty line (`#` starts a comment line), as `kubectl get pvc -o name`
/// prints them or as `claim-x=user`.
pub fn parse_volume_list(text: &str) -> Result<Vec<Volume>, K8sError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Volume::parse)
        .collect()
}

/// The volumes sorted by PVC name, each once; the same PVC with two users is an error.
/// Sorting makes the staggered schedule independent of the order the names came in.
pub fn unique_volumes(vols: Vec<Volume>) -> Result<Vec<Volume>, K8sError> {
    let mut by_pvc: BTreeMap<String, Volume> = BTreeMap::new();
    for v in vols {
        if let Some(seen) = by_pvc.get(&v.pvc) {
            if seen.user != v.user {
                return Err(K8sError::ConflictingUser {
                    pvc: v.pvc,
                    a: seen.user.clone(),
                    b: v.user,
                });
            }
            continue;
        }
        by_pvc.insert(v.pvc.clone(), v);
    }
    if by_pvc.is_empty() {
        return Err(K8sError::NoVolumes);
    }
    Ok(by_pvc.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let v = Volume::parse("claim-alice").unwrap();
        assert_eq!((v.pvc.as_str(), v.user.as_str()), ("claim-alice", "alice"));
        let v = Volume::parse("persistentvolumeclaim/claim-bob").unwrap();
        assert_eq!((v.pvc.as_str(), v.user.as_str()), ("claim-bob", "bob"));
        let v = Volume::parse("claim-carol-2dx=Carol.X").unwrap();
        assert_eq!(
            (v.pvc.as_str(), v.user.as_str()),
            ("claim-carol-2dx", "Carol.X")
        );
        let v = Volume::parse("home-dave").unwrap();
        assert_eq!(v.user, "home-dave");
        assert!(Volume::parse("claim-").is_err());
        assert!(Volume::parse("Claim-Alice").is_err());
        assert!(Volume::parse("claim-x=a,b").is_err());
        assert!(Volume::parse("claim-x=").is_err());
    }

    #[test]
    fn list_and_unique() {
        let text = "# from kubectl\npersistentvolumeclaim/claim-b\n\n  claim-a  \nclaim-b\n";
        let vols = unique_volumes(parse_volume_list(text).unwrap()).unwrap();
        let names: Vec<_> = vols.iter().map(|v| v.pvc.as_str()).collect();
        assert_eq!(names, ["claim-a", "claim-b"]);
        let err = unique_volumes(parse_volume_list("claim-a\nclaim-a=x").unwrap()).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        assert!(matches!(unique_volumes(vec![]), Err(K8sError::NoVolumes)));
        assert!(parse_volume_list("claim-a\nnot a name\n").is_err());
    }
}
