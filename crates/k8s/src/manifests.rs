//! The manifests: Secret, backup CronJobs and Jobs, restore Job, prune CronJob.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::names::{
    check_dns_label, check_dns_subdomain, check_schedule, check_secret_key, check_time_zone,
    label_value, object_name,
};
use crate::pod::{check_common, job_spec, pod_template, PodPlan, Purpose};
use crate::{
    daily_cron, BackupOptions, Common, CronSettings, K8sError, Keep, RestoreOptions, Timing,
    Volume, DATA_DIR, SECRET_KEYS, TERMINATION_LOG,
};

/// CronJob names: the controller appends 11 characters to make Job names.
const CRONJOB_NAME_MAX: usize = 52;
/// Job names become the `job-name` label value.
const JOB_NAME_MAX: usize = 63;

/// Secret contents: key → bytes. Debug shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretEntries(pub BTreeMap<String, Vec<u8>>);

impl fmt::Debug for SecretEntries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

pub(crate) fn labels(component: &str, vol: Option<&Volume>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("app.kubernetes.io/name".into(), json!("restash"));
    m.insert("app.kubernetes.io/component".into(), json!(component));
    if let Some(v) = vol {
        m.insert("restash/pvc".into(), json!(label_value(&v.pvc)));
        m.insert("restash/user".into(), json!(v.user));
    }
    m
}

pub(crate) fn metadata(
    name: &str,
    c: &Common,
    labels: &Map<String, Value>,
    vol: Option<&Volume>,
) -> Value {
    let mut md = json!({"name": name, "namespace": c.namespace, "labels": labels});
    // A PVC name too long for a label value is kept whole in an annotation.
    if let Some(v) = vol.filter(|v| label_value(&v.pvc) != v.pvc) {
        md["annotations"] = json!({"restash/pvc": v.pvc});
    }
    md
}

/// The Secret the jobs mount at `/secrets`. It must hold [`SECRET_KEYS`]; values are
/// stored base64-encoded in `data`.
pub fn secret(namespace: &str, name: &str, entries: &SecretEntries) -> Result<Value, K8sError> {
    check_dns_label("namespace", namespace)?;
    check_dns_subdomain("secret name", name)?;
    let missing: Vec<&str> = SECRET_KEYS
        .iter()
        .copied()
        .filter(|k| !entries.0.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(K8sError::MissingSecretKeys(missing.join(", ")));
    }
    let mut data = Map::new();
    for (k, v) in &entries.0 {
        check_secret_key(k)?;
        if v.is_empty() {
            return Err(K8sError::EmptySecretValue(k.clone()));
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(v);
        data.insert(k.clone(), json!(b64));
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels("credentials", None)},
        "type": "Opaque",
        "data": data,
    }))
}

/// The container arguments of a backup: the identity contract with the agent. The host is
/// the PVC, so each volume's snapshots, parents and retention stay apart.
pub fn backup_args(vol: &Volume, opts: &BackupOptions) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "backup".into(),
        DATA_DIR.into(),
        "--host".into(),
        vol.pvc.clone(),
        "--tag".into(),
        format!("pvc={}", vol.pvc),
        "--tag".into(),
        format!("user={}", vol.user),
        "--termination-log".into(),
        TERMINATION_LOG.into(),
    ];
    for e in &opts.excludes {
        a.push("--exclude".into());
        a.push(e.clone());
    }
    if opts.skip_if_unchanged {
        a.push("--skip-if-unchanged".into());
    }
    if opts.no_parent_hint {
        a.push("--no-parent-hint".into());
    }
    let keep = keep_flags(&opts.keep);
    if !keep.is_empty() {
        a.push("--forget".into());
        a.extend(keep);
    }
    a
}

/// `--keep-daily N …` for the rules given.
fn keep_flags(keep: &Keep) -> Vec<String> {
    [
        ("--keep-daily", keep.daily),
        ("--keep-weekly", keep.weekly),
        ("--keep-monthly", keep.monthly),
    ]
    .into_iter()
    .filter_map(|(flag, n)| Some([flag.to_string(), n?.to_string()]))
    .flatten()
    .collect()
}

fn check_backup_options(opts: &BackupOptions) -> Result<(), K8sError> {
    for e in &opts.excludes {
        if e.is_empty() {
            return Err(K8sError::Invalid {
                what: "exclude pattern".into(),
                value: e.clone(),
                rule: "a non-empty pattern".into(),
            });
        }
    }
    Ok(())
}

fn backup_pod(
    c: &Common,
    vol: &Volume,
    opts: &BackupOptions,
    labels: &Map<String, Value>,
) -> Value {
    pod_template(
        c,
        &PodPlan {
            purpose: Purpose::Backup,
            args: backup_args(vol, opts),
            pvc: Some(&vol.pvc),
            affinity_user: Some(&vol.user),
            env: vec![("RESTASH_PVC", vol.pvc.clone())],
            labels: labels.clone(),
            secret_file: None,
        },
    )
}

fn check_cron(cron: &CronSettings) -> Result<(), K8sError> {
    check_time_zone(&cron.time_zone)
}

fn cronjob(
    c: &Common,
    cron: &CronSettings,
    schedule: &str,
    md: Value,
    labels: &Map<String, Value>,
    template: Value,
) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": md,
        "spec": {
            "schedule": schedule,
            "timeZone": cron.time_zone,
            "concurrencyPolicy": "Forbid",
            "suspend": cron.suspend,
            "startingDeadlineSeconds": cron.starting_deadline_seconds,
            "successfulJobsHistoryLimit": cron.successful_jobs_history_limit,
            "failedJobsHistoryLimit": cron.failed_jobs_history_limit,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": job_spec(c, template),
            },
        },
    })
}

/// One backup CronJob per volume (give them sorted and unique, see
/// [`crate::unique_volumes`]). With a window, volume `i` of `n` starts `i * len / n`
/// minutes into it.
pub fn backup_cronjobs(
    c: &Common,
    cron: &CronSettings,
    timing: &Timing,
    vols: &[Volume],
    opts: &BackupOptions,
) -> Result<Vec<Value>, K8sError> {
    check_common(c)?;
    check_cron(cron)?;
    check_backup_options(opts)?;
    if vols.is_empty() {
        return Err(K8sError::NoVolumes);
    }
    let schedules: Vec<String> = match timing {
        Timing::Window(w) => w
            .stagger(vols.len())
            .into_iter()
            .map(|(h, m)| daily_cron(h, m))
            .collect(),
        Timing::Schedule(s) => {
            check_schedule(s)?;
            vec![s.clone(); vols.len()]
        }
    };
    Ok(vols
        .iter()
        .zip(schedules)
        .map(|(vol, schedule)| {
            let name = object_name("restash-backup-", &vol.pvc, CRONJOB_NAME_MAX);
            let labels = labels("backup", Some(vol));
            let md = metadata(&name, c, &labels, Some(vol));
            let template = backup_pod(c, vol, opts, &labels);
            cronjob(c, cron, &schedule, md, &labels, template)
        })
        .collect())
}

fn job_name(prefix: &str, pvc: &str, suffix: &str) -> Result<String, K8sError> {
    let name = if suffix.is_empty() {
        object_name(prefix, pvc, JOB_NAME_MAX)
    } else {
        let base = object_name(prefix, pvc, JOB_NAME_MAX.saturating_sub(suffix.len() + 1));
        format!("{base}-{suffix}")
    };
    check_dns_label("job name (check the name suffix)", &name)?;
    Ok(name)
}

fn job(md: Value, c: &Common, template: Value) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": md,
        "spec": job_spec(c, template),
    })
}

/// A one-off backup Job of one volume, named `restash-backup-<pvc>-<suffix>`.
pub fn backup_job(
    c: &Common,
    vol: &Volume,
    opts: &BackupOptions,
    suffix: &str,
) -> Result<Value, K8sError> {
    check_common(c)?;
    check_backup_options(opts)?;
    let name = job_name("restash-backup-", &vol.pvc, suffix)?;
    let labels = labels("backup", Some(vol));
    let md = metadata(&name, c, &labels, Some(vol));
    Ok(job(md, c, backup_pod(c, vol, opts, &labels)))
}

/// `sub/dir` as `/sub/dir`: no `..`, no empty result; `None` or `""` or `/` is the volume.
fn normalize_sub(path: Option<&str>) -> Result<String, K8sError> {
    let Some(p) = path else {
        return Ok(String::new());
    };
    let mut out = String::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(K8sError::Invalid {
                    what: "restore path".into(),
                    value: p.into(),
                    rule: "a directory inside the volume, without '..'".into(),
                })
            }
            part => {
                out.push('/');
                out.push_str(part);
            }
        }
    }
    Ok(out)
}

fn check_snapshot(s: &str) -> Result<(), K8sError> {
    let ok = s == "latest"
        || (!s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(K8sError::Invalid {
            what: "snapshot".into(),
            value: s.into(),
            rule: "latest or a snapshot id (prefix) in hex".into(),
        })
    }
}

/// The container arguments of a restore. The snapshot holds `/data`, so the restore reads
/// `<snap>:/data[/sub]` and writes it to `/data[/sub]`: the volume gets its own layout back.
pub fn restore_args(r: &RestoreOptions) -> Result<Vec<String>, K8sError> {
    check_snapshot(&r.snapshot)?;
    let sub = normalize_sub(r.path.as_deref())?;
    Ok(vec![
        "restore".into(),
        format!("{}:{DATA_DIR}{sub}", r.snapshot),
        "--host".into(),
        r.source.pvc.clone(),
        "--target".into(),
        format!("{DATA_DIR}{sub}"),
    ])
}

/// A one-off restore Job (named `restash-restore-<target pvc>-<suffix>`) writing into the
/// target volume, mounted read-write. Root mode gets the capabilities to restore owners.
pub fn restore_job(c: &Common, r: &RestoreOptions, suffix: &str) -> Result<Value, K8sError> {
    check_common(c)?;
    let args = restore_args(r)?;
    let target = r.target.as_ref().unwrap_or(&r.source);
    let name = job_name("restash-restore-", &target.pvc, suffix)?;
    let mut labels = labels("restore", Some(target));
    labels.insert(
        "restash/source-pvc".into(),
        json!(label_value(&r.source.pvc)),
    );
    let md = metadata(&name, c, &labels, Some(target));
    let template = pod_template(
        c,
        &PodPlan {
            purpose: Purpose::Restore,
            args,
            pvc: Some(&target.pvc),
            affinity_user: Some(&target.user),
            env: vec![("RESTASH_PVC", target.pvc.clone())],
            labels: labels.clone(),
            secret_file: None,
        },
    );
    Ok(job(md, c, template))
}

/// The CronJob running `prune` (which takes the repository's exclusive lock; backups that
/// meet it wait for it with `--retry-lock`, or fail with exit 11 and are retried). It mounts no PVC and runs as jovyan.
///
/// With a `keep` rule it runs `forget --keep-… --prune` instead: every volume's snapshots
/// (restic groups them by host and paths) thinned in one weekly pass that reads the
/// repository once, rather than in every nightly Job (see docs/kubernetes.md, section 8).
pub fn prune_cronjob(
    c: &Common,
    cron: &CronSettings,
    schedule: &str,
    keep: &Keep,
) -> Result<Value, K8sError> {
    check_common(c)?;
    check_cron(cron)?;
    check_schedule(schedule)?;
    let name = "restash-prune";
    let labels = labels("prune", None);
    let md = metadata(name, c, &labels, None);
    let template = pod_template(
        c,
        &PodPlan {
            purpose: Purpose::Prune,
            args: match keep_flags(keep) {
                k if k.is_empty() => vec!["prune".into()],
                k => [vec!["forget".to_string()], k, vec!["--prune".to_string()]].concat(),
            },
            pvc: None,
            affinity_user: None,
            env: vec![],
            labels: labels.clone(),
            secret_file: None,
        },
    );
    Ok(cronjob(c, cron, schedule, md, &labels, template))
}

/// The documents as one `kind: List` (for JSON output; `kubectl apply -f` takes it).
pub fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}
