//! The web view in the cluster: a Deployment running `restash serve`, a ClusterIP Service in
//! front of it, and the Secret holding its access token.

use std::fmt;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::manifests::{labels, metadata};
use crate::names::{check_dns_label, check_dns_subdomain, check_secret_key};
use crate::pod::{check_common, pod_template, PodPlan, Purpose, SecretFile};
use crate::{Common, K8sError, SERVE_PORT, TOKEN_DIR, TOKEN_KEY};

/// Secret files readable by owner (root) and group (the pod's fsGroup), as the repository
/// Secret's.
const TOKEN_MODE: u32 = 0o440;

/// Where the web view's access token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// This value, printed as the Secret `<name>-token` (key [`TOKEN_KEY`]).
    New(String),
    /// An existing Secret and its key; nothing is printed for it.
    Existing {
        /// The Secret.
        secret: String,
        /// Its key holding the token.
        key: String,
    },
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::New(_) => f.write_str("New(<redacted>)"),
            TokenSource::Existing { secret, key } => f
                .debug_struct("Existing")
                .field("secret", secret)
                .field("key", key)
                .finish(),
        }
    }
}

/// What the web view's manifests need besides [`Common`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Name of the Deployment and the Service; the new token's Secret is `<name>-token`.
    pub name: String,
    /// The access token.
    pub token: TokenSource,
    /// `restash serve --stale-after` (Go duration, checked by the caller); `None`: serve's
    /// default.
    pub stale_after: Option<String>,
}

impl ServeOptions {
    /// The Secret and key the Deployment reads the token from.
    pub fn token_secret(&self) -> (String, &str) {
        match &self.token {
            TokenSource::New(_) => (format!("{}-token", self.name), TOKEN_KEY),
            TokenSource::Existing { secret, key } => (secret.clone(), key),
        }
    }
}

fn check(o: &ServeOptions) -> Result<(), K8sError> {
    // A Service name is a DNS-1035 label: a DNS-1123 label that starts with a letter.
    check_dns_label("name", &o.name)?;
    if !o.name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(K8sError::Invalid {
            what: "name".into(),
            value: o.name.clone(),
            rule: "a Service name, starting with a letter a-z".into(),
        });
    }
    match &o.token {
        TokenSource::New(t) if t.is_empty() => {
            return Err(K8sError::EmptySecretValue(TOKEN_KEY.into()))
        }
        TokenSource::New(_) => {}
        TokenSource::Existing { secret, key } => {
            check_dns_subdomain("token secret name", secret)?;
            check_secret_key(key).map_err(|_| K8sError::Invalid {
                what: "--token-key".into(),
                value: key.clone(),
                rule: "a Secret key: 1 to 253 characters A-Z, a-z, 0-9, '-', '_' and '.', \
                       not starting with '..'"
                    .into(),
            })?;
        }
    }
    if let Some(d) = &o.stale_after {
        if d.is_empty() || d.contains(char::is_whitespace) {
            return Err(K8sError::Invalid {
                what: "--stale-after".into(),
                value: d.clone(),
                rule: "a duration such as 26h".into(),
            });
        }
    }
    Ok(())
}

/// The web view's manifests: the token Secret (for [`TokenSource::New`]), a Deployment of
/// one replica running `restash serve --listen 0.0.0.0:8080` as jovyan with the repository
/// Secret as every job has it, and a ClusterIP Service on port 8080. The token is mounted as
/// a file, as the credentials are, and named by `--token-file`.
pub fn serve_manifests(c: &Common, o: &ServeOptions) -> Result<Vec<Value>, K8sError> {
    check_common(c)?;
    check(o)?;
    let mut labels = labels("serve", None);
    labels.insert("app.kubernetes.io/instance".into(), json!(o.name));
    let mut docs = Vec::new();
    let (token_secret, token_key) = o.token_secret();
    if let TokenSource::New(token) = &o.token {
        docs.push(token_secret_manifest(c, &token_secret, &labels, token));
    }
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        format!("0.0.0.0:{SERVE_PORT}"),
        "--token-file".into(),
        format!("{TOKEN_DIR}/{TOKEN_KEY}"),
    ];
    if let Some(d) = &o.stale_after {
        args.extend(["--stale-after".into(), d.clone()]);
    }
    let mut template = pod_template(
        c,
        &PodPlan {
            purpose: Purpose::Serve,
            args,
            pvc: None,
            affinity_user: None,
            env: vec![],
            labels: labels.clone(),
            secret_file: Some(SecretFile {
                volume: "token",
                secret: &token_secret,
                key: token_key,
                dir: TOKEN_DIR,
                file: TOKEN_KEY,
                mode: TOKEN_MODE,
            }),
        },
    );
    add_port_and_probes(&mut template["spec"]["containers"][0]);
    let md = metadata(&o.name, c, &labels, None);
    docs.push(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": md,
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": labels},
            "template": template,
        },
    }));
    docs.push(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": md,
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{
                "name": "http",
                "port": SERVE_PORT,
                "targetPort": SERVE_PORT,
                "protocol": "TCP",
            }],
        },
    }));
    Ok(docs)
}

fn token_secret_manifest(
    c: &Common,
    name: &str,
    labels: &Map<String, Value>,
    token: &str,
) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD.encode(token);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, c, labels, None),
        "type": "Opaque",
        "data": {TOKEN_KEY: b64},
    })
}

fn add_port_and_probes(container: &mut Value) {
    container["ports"] = json!([{"name": "http", "containerPort": SERVE_PORT, "protocol": "TCP"}]);
    // /healthz answers without the token. Readiness keeps the Service off a pod that does
    // not answer yet; liveness restarts one that stopped answering, slowly enough that a
    // pod busy streaming downloads is not killed for one late answer.
    let probe = |period: u32, failures: u32| {
        json!({
            "httpGet": {"path": "/healthz", "port": SERVE_PORT},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        })
    };
    container["readinessProbe"] = probe(10, 3);
    container["livenessProbe"] = probe(30, 4);
}
