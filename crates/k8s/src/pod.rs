//! The pod and Job specs every restash job shares: identity, hardening, volumes, env.

use serde_json::{json, Map, Value};

use crate::names::{check_env_name, check_quantity, quantity_value};
use crate::{
    CaSource, Common, K8sError, RunAs, CA_DIR, CA_KEY, CONTAINER_NAME, DATA_DIR, REPOSITORY_KEY,
    SECRETS_DIR, SECRET_KEYS, TMP_DIR,
};

/// jovyan's uid and gid in Zero to JupyterHub's user pods.
const JOVYAN_UID: u32 = 1000;
const USERS_GID: u32 = 100;
/// Secret files readable by owner (root) and group (the pod's fsGroup), nobody else.
const SECRET_MODE: u32 = 0o440;
/// A CA bundle is public: readable by all, whichever identity the job has.
const CA_MODE: u32 = 0o444;

/// What the job does; decides the capabilities root gets and how the PVC is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Backup,
    Restore,
    Prune,
    /// The web view: runs until stopped, so its pod restarts.
    Serve,
}

impl Purpose {
    fn root_capabilities(self) -> &'static [&'static str] {
        match self {
            // Read any file and list any directory; nothing else.
            Purpose::Backup => &["DAC_READ_SEARCH"],
            // Write anywhere, give files back their owners, modes (setgid kept) and times.
            Purpose::Restore => &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"],
            Purpose::Prune | Purpose::Serve => &[],
        }
    }
}

/// One pod: the arguments, the PVC (if any) and the user whose notebook pod it joins.
pub(crate) struct PodPlan<'a> {
    pub purpose: Purpose,
    pub args: Vec<String>,
    pub pvc: Option<&'a str>,
    pub affinity_user: Option<&'a str>,
    pub env: Vec<(&'static str, String)>,
    pub labels: Map<String, Value>,
    /// One key of a Secret mounted read-only (the web view's token).
    pub secret_file: Option<SecretFile<'a>>,
}

/// One key of a Secret, mounted read-only as `dir/file`.
pub(crate) struct SecretFile<'a> {
    pub volume: &'static str,
    pub secret: &'a str,
    pub key: &'a str,
    pub dir: &'static str,
    pub file: &'static str,
    pub mode: u32,
}

/// Environment names the manifests set themselves or that would carry credentials.
const RESERVED_ENV: &[&str] = &[
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
    "RESTIC_PASSWORD",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
    "AWS_ACCESS_KEY_ID",
    "AWS_ACCESS_KEY_ID_FILE",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECRET_ACCESS_KEY_FILE",
    "AWS_SESSION_TOKEN",
    "RESTASH_PVC",
    "TMPDIR",
    "RESTIC_CACHE_DIR",
    "RESTASH_SERVE_TOKEN",
];

/// Checks what the JSON schema does not: quantities, env names, the namespace and Secret.
pub(crate) fn check_common(c: &Common) -> Result<(), K8sError> {
    crate::names::check_dns_label("namespace", &c.namespace)?;
    crate::names::check_dns_subdomain("secret name", &c.secret_name)?;
    if c.image.trim().is_empty() || c.image.contains(char::is_whitespace) {
        return Err(K8sError::Invalid {
            what: "image".into(),
            value: c.image.clone(),
            rule: "an image reference without spaces".into(),
        });
    }
    let r = &c.resources;
    check_quantity("cpu request", &r.cpu_request)?;
    check_quantity("memory request", &r.memory_request)?;
    for (what, request, limit) in [
        ("cpu", &r.cpu_request, &r.cpu_limit),
        ("memory", &r.memory_request, &r.memory_limit),
    ] {
        let Some(limit) = limit else { continue };
        check_quantity(&format!("{what} limit"), limit)?;
        // The API server refuses a request above its limit.
        if quantity_value(request) > quantity_value(limit) {
            return Err(K8sError::Invalid {
                what: format!("{what} request"),
                value: request.clone(),
                rule: format!("at most the {what} limit {limit}"),
            });
        }
    }
    if let Some(ca) = &c.ca {
        match &ca.source {
            CaSource::Secret(n) => crate::names::check_dns_subdomain("ca secret name", n)?,
            CaSource::ConfigMap(n) => crate::names::check_dns_subdomain("ca configmap name", n)?,
        }
        crate::names::check_secret_key(&ca.key).map_err(|_| K8sError::Invalid {
            what: "--ca-key".into(),
            value: ca.key.clone(),
            rule: "a Secret or ConfigMap key: 1 to 253 characters A-Z, a-z, 0-9, '-', '_' \
                   and '.', not starting with '..'"
                .into(),
        })?;
    }
    for (k, _) in &c.extra_env {
        check_env_name(k)?;
        if c.ca.is_some() && k == "RESTIC_CACERT" {
            return Err(K8sError::ReservedEnv(
                k.clone(),
                "set by --ca-secret or --ca-configmap",
            ));
        }
        if RESERVED_ENV.contains(&k.as_str()) {
            return Err(K8sError::ReservedEnv(
                k.clone(),
                "set by the manifests or a credential (credentials belong in the Secret)",
            ));
        }
    }
    Ok(())
}

fn env_list(c: &Common, extra: &[(&'static str, String)]) -> Vec<Value> {
    let mut env = Vec::new();
    match &c.repository {
        Some(r) => env.push(json!({"name": "RESTIC_REPOSITORY", "value": r})),
        None => env.push(json!({
            "name": "RESTIC_REPOSITORY_FILE",
            "value": format!("{SECRETS_DIR}/{REPOSITORY_KEY}"),
        })),
    }
    for key in SECRET_KEYS {
        env.push(json!({"name": format!("{key}_FILE"), "value": format!("{SECRETS_DIR}/{key}")}));
    }
    for (k, v) in extra {
        env.push(json!({"name": k, "value": v}));
    }
    if c.ca.is_some() {
        env.push(json!({"name": "RESTIC_CACERT", "value": format!("{CA_DIR}/{CA_KEY}")}));
    }
    env.push(json!({"name": "TMPDIR", "value": TMP_DIR}));
    // The root file system is read-only and the image has no HOME: the cache lives in
    // the emptyDir, for the life of the pod.
    env.push(json!({"name": "RESTIC_CACHE_DIR", "value": format!("{TMP_DIR}/restash-cache")}));
    for (k, v) in &c.extra_env {
        env.push(json!({"name": k, "value": v}));
    }
    env
}

fn resources(c: &Common) -> Value {
    let r = &c.resources;
    let mut limits = Map::new();
    if let Some(l) = &r.cpu_limit {
        limits.insert("cpu".into(), json!(l));
    }
    if let Some(l) = &r.memory_limit {
        limits.insert("memory".into(), json!(l));
    }
    let mut v = json!({"requests": {"cpu": r.cpu_request, "memory": r.memory_request}});
    if !limits.is_empty() {
        v["limits"] = Value::Object(limits);
    }
    v
}

/// Pod and container security contexts for the identity and purpose.
fn security(run_as: RunAs, purpose: Purpose) -> (Value, Value) {
    let seccomp = json!({"type": "RuntimeDefault"});
    let root = run_as == RunAs::Root && matches!(purpose, Purpose::Backup | Purpose::Restore);
    if root {
        let pod = json!({
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": false,
            "seccompProfile": seccomp,
        });
        let container = json!({
            "runAsUser": 0,
            "runAsNonRoot": false,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": {"drop": ["ALL"], "add": purpose.root_capabilities()},
            "seccompProfile": seccomp,
        });
        (pod, container)
    } else {
        let pod = json!({
            "runAsUser": JOVYAN_UID,
            "runAsGroup": USERS_GID,
            "runAsNonRoot": true,
            "fsGroup": USERS_GID,
            // The user's volume already has gid 100: no recursive chown/chmod at mount.
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": seccomp,
        });
        let container = json!({
            "runAsUser": JOVYAN_UID,
            "runAsGroup": USERS_GID,
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": seccomp,
        });
        (pod, container)
    }
}

fn affinity(user: &str) -> Value {
    json!({
        "podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {
                        "component": "singleuser-server",
                        "hub.jupyter.org/username": user,
                    }},
                    "topologyKey": "kubernetes.io/hostname",
                },
            }],
        },
    })
}

/// The pod template (`metadata` + `spec`) of a job.
pub(crate) fn pod_template(c: &Common, plan: &PodPlan) -> Value {
    let (pod_sc, container_sc) = security(c.run_as, plan.purpose);
    let read_only = plan.purpose != Purpose::Restore;
    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    if let Some(pvc) = plan.pvc {
        mounts.push(json!({"name": "data", "mountPath": DATA_DIR, "readOnly": read_only}));
        // readOnly on the claim too: the kubelet then also skips the fsGroup ownership change.
        volumes.push(json!({
            "name": "data",
            "persistentVolumeClaim": {"claimName": pvc, "readOnly": read_only},
        }));
    }
    mounts.push(json!({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": true}));
    mounts.push(json!({"name": "tmp", "mountPath": TMP_DIR}));
    volumes.push(json!({
        "name": "secrets",
        "secret": {"secretName": c.secret_name, "defaultMode": SECRET_MODE},
    }));
    volumes.push(json!({"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}));
    if let Some(ca) = &c.ca {
        mounts.push(json!({"name": "ca", "mountPath": CA_DIR, "readOnly": true}));
        // Only the bundle's key, under a fixed name: RESTIC_CACERT never depends on the key.
        let items = json!([{"key": ca.key, "path": CA_KEY}]);
        volumes.push(match &ca.source {
            CaSource::Secret(name) => json!({
                "name": "ca",
                "secret": {"secretName": name, "items": items, "defaultMode": CA_MODE},
            }),
            CaSource::ConfigMap(name) => json!({
                "name": "ca",
                "configMap": {"name": name, "items": items, "defaultMode": CA_MODE},
            }),
        });
    }

    if let Some(f) = &plan.secret_file {
        mounts.push(json!({"name": f.volume, "mountPath": f.dir, "readOnly": true}));
        // Only that key, under a fixed name: the argument never depends on the key.
        volumes.push(json!({
            "name": f.volume,
            "secret": {
                "secretName": f.secret,
                "items": [{"key": f.key, "path": f.file}],
                "defaultMode": f.mode,
            },
        }));
    }

    let mut args = plan.args.clone();
    if let Some(wait) = &c.retry_lock {
        args.extend(["--retry-lock".to_string(), wait.clone()]);
    }
    let container = json!({
        "name": CONTAINER_NAME,
        "image": c.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env_list(c, &plan.env),
        "resources": resources(c),
        "securityContext": container_sc,
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    // A Deployment's pods must restart (the only policy it accepts); a Job's pod fails and
    // the Job's backoffLimit decides about another.
    let restart = if plan.purpose == Purpose::Serve {
        "Always"
    } else {
        "Never"
    };
    let mut spec = json!({
        "restartPolicy": restart,
        // A backup needs the object store, not the cluster API.
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": pod_sc,
    });
    if let Some(user) = plan.affinity_user {
        spec["affinity"] = affinity(user);
    }
    spec["containers"] = json!([container]);
    spec["volumes"] = Value::Array(volumes);
    json!({"metadata": {"labels": plan.labels}, "spec": spec})
}

/// Exit codes that another try cannot fix: 3 (some files unreadable: the snapshot exists),
/// 10 (no repository), 12 (wrong password). Others (1, 11 lock held) are retried.
const FINAL_EXIT_CODES: [u32; 3] = [3, 10, 12];

/// The Job spec around a pod template.
pub(crate) fn job_spec(c: &Common, template: Value) -> Value {
    json!({
        "backoffLimit": c.job.backoff_limit,
        "activeDeadlineSeconds": c.job.active_deadline_seconds,
        "ttlSecondsAfterFinished": c.job.ttl_seconds_after_finished,
        "podFailurePolicy": {"rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": FINAL_EXIT_CODES,
                },
                // Required by the 1.28 schema (the field had no omitempty then).
                "onPodConditions": [],
            },
            {
                // An evicted or preempted pod is not the job's fault.
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]},
        "template": template,
    })
}
