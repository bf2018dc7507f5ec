//! How a [`Request`] becomes manifests: the defaults of each kind of job, the PVC lists
//! and secret files it names (the only files this crate reads), and the builders.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::request::{
    BackupArgs, CommonArgs, CronArgs, PodArgs, PruneArgs, Request, RestoreArgs, SecretArgs,
    ServeArgs,
};
use crate::{
    backup_cronjobs, backup_job, default_image, parse_volume_list, prune_cronjob, restore_job,
    secret, serve_manifests, unique_volumes, BackupOptions, CaBundle, CaSource, Common,
    CronSettings, JobSettings, K8sError, Resources, RestoreOptions, RunAs, SecretEntries,
    ServeOptions, Timing, TokenSource, Volume, Window, REPOSITORY_KEY, SECRET_KEYS, SERVE_PORT,
};

impl Request {
    /// The runs' `--retry-lock` (restic's duration syntax, as the binary prints it; `0`
    /// waits not at all); unset, each kind of job has its default.
    pub fn set_retry_lock(&mut self, wait: Option<String>) {
        let common = match self {
            Request::Secret(_) => return,
            Request::Backup(b) | Request::Job(b) => &mut b.common.pod,
            Request::Restore(r) => &mut r.common.pod,
            Request::Prune(p) => &mut p.common.pod,
            Request::Serve(s) => &mut s.pod,
        };
        common.retry_lock = wait;
    }

    /// The manifests asked for. `default_suffix` names one-off Jobs given no
    /// `--name-suffix` (the command line passes the current UTC time, `YYYYMMDD-HHMMSS`);
    /// `note` hears what the user should know about a request that is valid.
    pub fn build(
        &self,
        default_suffix: &str,
        note: &mut dyn FnMut(&str),
    ) -> Result<Vec<Value>, K8sError> {
        match self {
            Request::Secret(s) => Ok(vec![build_secret(s, note)?]),
            Request::Backup(b) => backup(b, b.one_off, default_suffix, note),
            Request::Job(b) => backup(b, true, default_suffix, note),
            Request::Restore(r) => Ok(vec![restore(r, default_suffix)?]),
            Request::Prune(p) => Ok(vec![prune(p)?]),
            Request::Serve(s) => serve(s, note),
        }
    }
}

/// Which job the defaults are for.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Backup,
    Restore,
    Prune,
    Serve,
}

fn usage(msg: String) -> K8sError {
    K8sError::Usage(msg)
}

fn limit(flag: Option<&String>, default: Option<String>) -> Option<String> {
    match flag.map(String::as_str) {
        Some("none") | Some("") => None,
        Some(v) => Some(v.to_string()),
        None => default,
    }
}

/// A Job's [`Common`]: the pod's and the Job's settings.
fn common(a: &CommonArgs, kind: Kind, privileged: bool) -> Result<Common, K8sError> {
    let mut c = pod_common(&a.pod, kind, privileged)?;
    let deadline = match kind {
        Kind::Backup => 3600,
        Kind::Restore => 7200,
        Kind::Prune | Kind::Serve => 3 * 3600,
    };
    c.job = JobSettings {
        backoff_limit: a.backoff_limit,
        active_deadline_seconds: a.deadline.unwrap_or(deadline),
        ttl_seconds_after_finished: a.ttl,
    };
    Ok(c)
}

fn pod_common(a: &PodArgs, kind: Kind, privileged: bool) -> Result<Common, K8sError> {
    let image = a.image.clone().unwrap_or_else(default_image);
    let mut c = Common::new(&a.namespace, &image);
    c.secret_name = a.secret.clone();
    c.repository = a.repository.clone();
    c.run_as = if privileged {
        RunAs::Root
    } else {
        RunAs::Jovyan
    };
    let d = match kind {
        Kind::Prune => Resources::for_prune(),
        Kind::Serve => Resources::for_serve(),
        Kind::Backup | Kind::Restore => Resources::for_volume(),
    };
    c.resources = Resources {
        cpu_request: a.cpu.clone().unwrap_or(d.cpu_request),
        cpu_limit: limit(a.cpu_limit.as_ref(), d.cpu_limit),
        memory_request: a.memory.clone().unwrap_or(d.memory_request),
        memory_limit: limit(a.memory_limit.as_ref(), d.memory_limit),
    };
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(usage(format!("--env {kv:?}: expected NAME=VALUE")));
        };
        c.extra_env.push((k.to_string(), v.to_string()));
    }
    let source = match (&a.ca_secret, &a.ca_configmap) {
        (Some(s), _) => Some(CaSource::Secret(s.clone())),
        (None, Some(m)) => Some(CaSource::ConfigMap(m.clone())),
        (None, None) => None,
    };
    c.ca = source.map(|source| CaBundle {
        source,
        key: a.ca_key.clone(),
    });
    // A prune may wait for a night's backups to finish; a backup or restore for a prune. A
    // download from the web view fails at once rather than keep its browser waiting.
    let wait = match kind {
        Kind::Prune => "1h",
        Kind::Backup | Kind::Restore => "30m",
        Kind::Serve => "0",
    };
    c.retry_lock = match a.retry_lock.as_deref().unwrap_or(wait) {
        "0" | "0s" | "" => None,
        w => Some(w.to_string()),
    };
    Ok(c)
}

fn cron(a: &CronArgs) -> CronSettings {
    CronSettings {
        time_zone: a.time_zone.clone(),
        suspend: a.suspend,
        starting_deadline_seconds: a.starting_deadline,
        successful_jobs_history_limit: a.successful_history,
        failed_jobs_history_limit: a.failed_history,
    }
}

fn read_list(path: &str) -> Result<String, K8sError> {
    let input = |context: String| move |source| K8sError::Input { context, source };
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(input("reading the PVC list from stdin".into()))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(input(format!("reading PVC list {path}")))
    }
}

fn volumes(a: &BackupArgs) -> Result<Vec<Volume>, K8sError> {
    let mut vols = Vec::new();
    for p in &a.pvc {
        vols.push(Volume::parse(p)?);
    }
    for f in &a.pvc_file {
        let text = read_list(f)?;
        vols.extend(parse_volume_list(&text).map_err(|e| K8sError::InList {
            list: f.clone(),
            source: Box::new(e),
        })?);
    }
    if vols.is_empty() {
        return Err(usage(
            "no PVC given: use --pvc claim-<user> or --pvc-file FILE (- for stdin)".into(),
        ));
    }
    unique_volumes(vols)
}

fn backup(
    a: &BackupArgs,
    one_off: bool,
    default_suffix: &str,
    note: &mut dyn FnMut(&str),
) -> Result<Vec<Value>, K8sError> {
    let c = common(&a.common, Kind::Backup, a.privileged_read)?;
    let vols = volumes(a)?;
    let opts = BackupOptions {
        excludes: a.exclude.clone(),
        keep: a.keep.keep(),
        skip_if_unchanged: a.skip_if_unchanged,
        no_parent_hint: a.no_parent_hint,
    };
    if one_off {
        let suffix = a.name_suffix.as_deref().unwrap_or(default_suffix);
        return vols
            .iter()
            .map(|v| backup_job(&c, v, &opts, suffix))
            .collect();
    }
    let timing = match &a.schedule {
        Some(s) => Timing::Schedule(s.clone()),
        None => {
            let w = Window::parse(&a.window)?;
            if vols.len() > usize::from(w.minutes()) {
                note(&format!(
                    "{} PVCs in a {}-minute window: some start in the same minute",
                    vols.len(),
                    w.minutes()
                ));
            }
            Timing::Window(w)
        }
    };
    backup_cronjobs(&c, &cron(&a.cron), &timing, &vols, &opts)
}

fn restore(a: &RestoreArgs, default_suffix: &str) -> Result<Value, K8sError> {
    let c = common(&a.common, Kind::Restore, a.privileged_read)?;
    let r = RestoreOptions {
        source: Volume::parse(&a.pvc)?,
        target: a.target_pvc.as_deref().map(Volume::parse).transpose()?,
        snapshot: a.snapshot.clone(),
        path: a.path.clone(),
    };
    let suffix = a.name_suffix.as_deref().unwrap_or(default_suffix);
    restore_job(&c, &r, suffix)
}

fn prune(a: &PruneArgs) -> Result<Value, K8sError> {
    let c = common(&a.common, Kind::Prune, false)?;
    prune_cronjob(&c, &cron(&a.cron), &a.schedule, &a.keep.keep())
}

/// 32 random bytes from the operating system, in hex.
fn new_token() -> Result<String, K8sError> {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| K8sError::Input {
            context: "generating the web view's token".into(),
            source: std::io::Error::other(e),
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A `kubectl … -o jsonpath` expression for a Secret key: dots in the key are escaped.
fn jsonpath_data(key: &str) -> String {
    format!("{{.data.{}}}", key.replace('.', "\\."))
}

fn serve(a: &ServeArgs, note: &mut dyn FnMut(&str)) -> Result<Vec<Value>, K8sError> {
    let c = pod_common(&a.pod, Kind::Serve, false)?;
    let token = match &a.token_secret {
        Some(secret) => TokenSource::Existing {
            secret: secret.clone(),
            key: a.token_key.clone(),
        },
        None => TokenSource::New(new_token()?),
    };
    let o = ServeOptions {
        name: a.name.clone(),
        token,
        stale_after: a.stale_after.clone(),
    };
    let docs = serve_manifests(&c, &o)?;
    let (ns, name) = (&c.namespace, &o.name);
    let (secret, key) = o.token_secret();
    note(&format!(
        "reach the web view with: kubectl -n {ns} port-forward svc/{name} {SERVE_PORT}:{SERVE_PORT}"
    ));
    note(&format!(
        "its token: kubectl -n {ns} get secret {secret} -o jsonpath='{}' | base64 -d",
        jsonpath_data(key)
    ));
    Ok(docs)
}

/// Secret file contents without trailing newlines (`echo secret > file` adds one).
fn read_value(path: &Path) -> Result<Vec<u8>, K8sError> {
    let mut v = std::fs::read(path).map_err(|source| K8sError::Input {
        context: format!("reading {}", path.display()),
        source,
    })?;
    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        v.pop();
    }
    Ok(v)
}

fn add_entry(m: &mut BTreeMap<String, Vec<u8>>, key: &str, value: Vec<u8>) -> Result<(), K8sError> {
    if m.insert(key.to_string(), value).is_some() {
        return Err(usage(format!("secret key {key} is given twice")));
    }
    Ok(())
}

fn build_secret(a: &SecretArgs, note: &mut dyn FnMut(&str)) -> Result<Value, K8sError> {
    let mut m = BTreeMap::new();
    for spec in &a.from_file {
        if let Some((key, path)) = spec.split_once('=') {
            add_entry(&mut m, key, read_value(Path::new(path))?)?;
            continue;
        }
        let path = Path::new(spec);
        if path.is_dir() {
            // Only the keys the jobs read: a directory may hold other files.
            let mut found = false;
            for key in SECRET_KEYS.iter().chain([&REPOSITORY_KEY]) {
                let f = path.join(key);
                if f.is_file() {
                    add_entry(&mut m, key, read_value(&f)?)?;
                    found = true;
                }
            }
            if !found {
                return Err(usage(format!(
                    "directory {spec} holds none of {}, {REPOSITORY_KEY}",
                    SECRET_KEYS.join(", ")
                )));
            }
        } else {
            let key = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                usage(format!(
                    "--from-file {spec:?}: no usable file name; use KEY=PATH"
                ))
            })?;
            add_entry(&mut m, key, read_value(path)?)?;
        }
    }
    if let Some(r) = &a.repository {
        add_entry(&mut m, REPOSITORY_KEY, r.as_bytes().to_vec())?;
    }
    if !m.contains_key(REPOSITORY_KEY) {
        note(&format!(
            "the secret has no {REPOSITORY_KEY}: give the jobs --repository, or add \
             --repository here"
        ));
    }
    secret(&a.namespace, &a.name, &SecretEntries(m))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        request: Request,
    }

    fn build(args: &[&str]) -> (Result<Vec<Value>, K8sError>, Vec<String>) {
        build_waiting(args, None)
    }

    fn build_waiting(
        args: &[&str],
        wait: Option<&str>,
    ) -> (Result<Vec<Value>, K8sError>, Vec<String>) {
        let mut cli =
            Cli::try_parse_from(std::iter::once("k8s").chain(args.iter().copied())).expect("flags");
        cli.request.set_retry_lock(wait.map(String::from));
        let mut notes = Vec::new();
        let out = cli
            .request
            .build("20240101-000000", &mut |n| notes.push(n.to_string()));
        (out, notes)
    }

    fn container(doc: &Value) -> &Value {
        let spec = if doc["kind"] == "CronJob" {
            &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        } else {
            &doc["spec"]["template"]["spec"]
        };
        &spec["containers"][0]
    }

    fn args_of(doc: &Value) -> Vec<String> {
        container(doc)["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string").to_string())
            .collect()
    }

    fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
        args.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    #[test]
    fn jobs_wait_for_locks_and_save_a_snapshot_every_run_unless_asked() {
        let has_skip = |a: &[String]| a.iter().any(|x| x == "--skip-if-unchanged");
        let (docs, _) = build(&["backup", "--pvc", "claim-a"]);
        let a = args_of(&docs.expect("backup")[0]);
        assert!(has_pair(&a, "--retry-lock", "30m"), "{a:?}");
        assert!(!has_skip(&a), "{a:?}");
        let (docs, _) = build(&["backup", "--pvc", "claim-a", "--skip-if-unchanged"]);
        assert!(has_skip(&args_of(&docs.expect("backup")[0])));
        let (docs, _) = build(&["job", "--pvc", "claim-a", "--skip-if-unchanged=true"]);
        assert!(has_skip(&args_of(&docs.expect("job")[0])));
        let hint_off = |a: &[String]| a.iter().any(|x| x == "--no-parent-hint");
        assert!(!hint_off(&a), "parent hints are on by default: {a:?}");
        let (docs, _) = build(&["job", "--pvc", "claim-a", "--no-parent-hint"]);
        assert!(hint_off(&args_of(&docs.expect("job")[0])));
        let (docs, _) = build(&["prune", "--keep-daily", "7", "--keep-monthly", "6"]);
        let a = args_of(&docs.expect("prune")[0]);
        let forget = [
            "forget",
            "--keep-daily",
            "7",
            "--keep-monthly",
            "6",
            "--prune",
        ];
        assert_eq!(a[..6], forget, "{a:?}");
        let (docs, _) = build(&["prune"]);
        assert!(has_pair(
            &args_of(&docs.expect("prune")[0]),
            "--retry-lock",
            "1h"
        ));
        let (docs, _) = build(&["restore", "--pvc", "claim-a"]);
        assert!(has_pair(
            &args_of(&docs.expect("restore")[0]),
            "--retry-lock",
            "30m"
        ));

        let (docs, _) = build_waiting(
            &["job", "--pvc", "claim-a", "--skip-if-unchanged=false"],
            Some("0s"),
        );
        let a = args_of(&docs.expect("job")[0]);
        assert!(
            !a.iter()
                .any(|x| x == "--retry-lock" || x == "--skip-if-unchanged"),
            "{a:?}"
        );
        let (docs, _) = build_waiting(&["backup", "--pvc", "claim-a"], Some("2h0m0s"));
        assert!(has_pair(
            &args_of(&docs.expect("backup")[0]),
            "--retry-lock",
            "2h0m0s"
        ));
    }

    fn token_of(docs: &[Value]) -> String {
        assert_eq!(docs[0]["kind"], "Secret");
        let b64 = docs[0]["data"]["token"].as_str().expect("token");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn serve_gets_a_new_random_token_and_says_how_to_reach_it() {
        let (docs, notes) = build(&["serve", "-n", "hub2"]);
        let docs = docs.expect("serve");
        let token = token_of(&docs);
        assert_eq!(token.len(), 64, "32 bytes in hex");
        assert!(token.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        let (again, _) = build(&["serve", "-n", "hub2"]);
        assert_ne!(
            token_of(&again.expect("serve")),
            token,
            "a new one each time"
        );
        assert_eq!(
            notes,
            [
                "reach the web view with: kubectl -n hub2 port-forward svc/restash-serve \
                 8080:8080",
                "its token: kubectl -n hub2 get secret restash-serve-token -o \
                 jsonpath='{.data.token}' | base64 -d",
            ]
        );
        assert!(notes.iter().all(|n| !n.contains(&token)));
        // The web view waits for no lock, unless restash's --retry-lock says so.
        assert!(!args_of(&docs[1]).iter().any(|a| a == "--retry-lock"));
        let (docs, _) = build_waiting(&["serve"], Some("1m0s"));
        assert!(has_pair(
            &args_of(&docs.expect("serve")[1]),
            "--retry-lock",
            "1m0s"
        ));
        let docs = docs_of(&["serve"]);
        let res = &container(&docs[1])["resources"];
        assert_eq!(res["requests"]["cpu"], "100m");
        assert_eq!(res["limits"]["memory"], "2Gi");

        let line = [
            "serve",
            "--name",
            "web",
            "--token-secret",
            "tls.keys",
            "--token-key",
            "a.b",
        ];
        let (docs, notes) = build(&line);
        let kinds: Vec<&Value> = docs
            .as_ref()
            .expect("serve")
            .iter()
            .map(|d| &d["kind"])
            .collect();
        assert_eq!(kinds, ["Deployment", "Service"]);
        assert_eq!(
            notes[1],
            "its token: kubectl -n jhub get secret tls.keys -o jsonpath='{.data.a\\.b}' \
             | base64 -d"
        );
        assert!(Cli::try_parse_from(["k8s", "serve", "--token-key", "k"]).is_err());
        assert!(Cli::try_parse_from(["k8s", "serve", "--backoff-limit", "1"]).is_err());
    }

    fn docs_of(args: &[&str]) -> Vec<Value> {
        build(args).0.expect("build")
    }

    #[test]
    fn each_kind_of_job_has_its_defaults() {
        let (docs, notes) = build(&["backup", "--pvc", "claim-a", "--pvc", "claim-b"]);
        let docs = docs.expect("backup");
        assert!(notes.is_empty());
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["kind"], "CronJob");
        let res = &container(&docs[0])["resources"];
        assert_eq!(res["requests"]["cpu"], "200m");
        assert_eq!(res["limits"]["memory"], "1Gi");

        let (docs, _) = build(&["prune", "--cpu-limit", "none"]);
        let docs = docs.expect("prune");
        let res = &container(&docs[0])["resources"];
        assert_eq!(res["requests"]["memory"], "512Mi");
        assert!(res["limits"].get("cpu").is_none(), "{res}");

        let (docs, _) = build(&["job", "--pvc", "claim-a"]);
        let docs = docs.expect("job");
        assert_eq!(docs[0]["kind"], "Job");
        let name = docs[0]["metadata"]["name"].as_str().expect("name");
        assert!(name.ends_with("20240101-000000"), "{name}");
        let (docs, _) = build(&["restore", "--pvc", "claim-a", "--name-suffix", "x1"]);
        let docs = docs.expect("restore");
        assert_eq!(docs[0]["spec"]["activeDeadlineSeconds"], 7200);
    }

    #[test]
    fn requests_that_cannot_be_built_say_why() {
        let (out, _) = build(&["backup"]);
        assert!(out
            .unwrap_err()
            .to_string()
            .starts_with("no PVC given: use --pvc"));
        let (out, _) = build(&["backup", "--pvc", "claim-a", "--env", "NOEQUALS"]);
        assert!(out.unwrap_err().to_string().contains("expected NAME=VALUE"));
        let missing = "/nonexistent/restash-k8s-list";
        let (out, _) = build(&["backup", "--pvc-file", missing]);
        let err = out.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("reading PVC list {missing}: ")),
            "{err}"
        );
    }

    #[test]
    fn crowded_windows_and_secrets_without_a_repository_are_noted() {
        let pvcs: Vec<String> = (0..3).map(|i| format!("--pvc=claim-{i}")).collect();
        let mut args = vec!["backup", "--window", "03:00-03:02"];
        args.extend(pvcs.iter().map(String::as_str));
        let (out, notes) = build(&args);
        assert_eq!(out.expect("backup").len(), 3);
        assert_eq!(
            notes,
            ["3 PVCs in a 2-minute window: some start in the same minute"]
        );

        let dir = std::env::temp_dir().join(format!("restash-k8s-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for key in SECRET_KEYS {
            std::fs::write(dir.join(key), format!("{key}-value\n")).expect("write");
        }
        let d = dir.to_string_lossy().into_owned();
        let (out, notes) = build(&["secret", "--from-file", &d]);
        let doc = out.expect("secret").remove(0);
        assert_eq!(doc["kind"], "Secret");
        assert!(notes[0].contains("no RESTIC_REPOSITORY"), "{notes:?}");
        let twice = format!("RESTIC_PASSWORD={d}/RESTIC_PASSWORD");
        let (out, _) = build(&["secret", "--from-file", &d, "--from-file", &twice]);
        assert!(out.unwrap_err().to_string().contains("given twice"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
