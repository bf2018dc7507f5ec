//! `restash k8s …`: prints the Kubernetes manifests that run restash for JupyterHub user
//! volumes (docs/kubernetes.md). Nothing here talks to a cluster: the output goes to
//! `kubectl apply -f -`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use clap::{Args as ClapArgs, Subcommand};
use restash_k8s::{
    default_image, parse_volume_list, unique_volumes, BackupOptions, Common, CronSettings,
    JobSettings, Resources, RestoreOptions, RunAs, SecretEntries, Timing, Volume, Window,
    REPOSITORY_KEY, SECRET_KEYS,
};
use serde_json::Value;

use crate::global::GlobalOpts;

/// `restash k8s`
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// The Secret with RESTIC_PASSWORD, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and RESTIC_REPOSITORY).
    Secret(SecretArgs),
    /// One backup CronJob per PVC, staggered over a daily window (`--one-off`: Jobs).
    Backup(BackupArgs),
    /// One-off backup Jobs (the same as `backup --one-off`).
    Job(BackupArgs),
    /// A one-off Job restoring a snapshot into a PVC.
    Restore(RestoreArgs),
    /// A CronJob running `prune`.
    Prune(PruneArgs),
}

/// Options every job manifest takes.
#[derive(ClapArgs, Debug)]
struct CommonArgs {
    /// Namespace of the objects.
    #[arg(long, short = 'n', default_value = "jhub")]
    namespace: String,
    /// Container image [default: ghcr.io/restash/restash:<this version>].
    #[arg(long)]
    image: Option<String>,
    /// Name of the Secret holding the credentials (see `restash k8s secret`).
    #[arg(long, default_value = "restash")]
    secret: String,
    /// Repository location as a plain env value (default: the Secret's RESTIC_REPOSITORY
    /// file). Never put credentials in it.
    #[arg(long)]
    repository: Option<String>,
    /// CPU request [default: 200m; prune 500m].
    #[arg(long)]
    cpu: Option<String>,
    /// CPU limit, or `none` [default: 1; prune 2].
    #[arg(long)]
    cpu_limit: Option<String>,
    /// Memory request [default: 256Mi; prune 512Mi].
    #[arg(long)]
    memory: Option<String>,
    /// Memory limit, or `none` [default: 1Gi; prune 2Gi].
    #[arg(long)]
    memory_limit: Option<String>,
    /// Retries after a failed pod (exit codes 3, 10 and 12 are final).
    #[arg(long, default_value_t = 2)]
    backoff_limit: u32,
    /// Seconds a job may run before it is stopped [default: 3600; restore 7200; prune 10800].
    #[arg(long)]
    deadline: Option<u64>,
    /// Seconds a finished Job (and its pod's log) is kept.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    ttl: u64,
    /// Extra plain environment variable NAME=VALUE (repeatable), e.g. AWS_DEFAULT_REGION=us-east-1.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
}

/// CronJob options.
#[derive(ClapArgs, Debug)]
struct CronArgs {
    /// Time zone of the schedule (IANA name).
    #[arg(long, default_value = "UTC")]
    time_zone: String,
    /// Create the CronJobs suspended (no runs until `kubectl patch … suspend: false`).
    #[arg(long)]
    suspend: bool,
    /// Skip a run that could not start within this many seconds of its time.
    #[arg(long, default_value_t = 1800)]
    starting_deadline: u64,
    /// Successful Jobs kept per CronJob.
    #[arg(long, default_value_t = 3)]
    successful_history: u32,
    /// Failed Jobs kept per CronJob.
    #[arg(long, default_value_t = 3)]
    failed_history: u32,
}

#[derive(ClapArgs, Debug)]
struct SecretArgs {
    /// Name of the Secret.
    #[arg(long, default_value = "restash")]
    name: String,
    /// Namespace of the Secret.
    #[arg(long, short = 'n', default_value = "jhub")]
    namespace: String,
    /// KEY=PATH, a file (key = its name) or a directory holding RESTIC_PASSWORD,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and RESTIC_REPOSITORY); repeatable.
    /// Trailing newlines are removed.
    #[arg(long = "from-file", value_name = "KEY=PATH|PATH|DIR", required = true)]
    from_file: Vec<String>,
    /// The repository location, stored as RESTIC_REPOSITORY.
    #[arg(long)]
    repository: Option<String>,
}

#[derive(ClapArgs, Debug)]
struct BackupArgs {
    /// PVC to back up, `claim-x` or `claim-x=username` (repeatable).
    #[arg(long = "pvc", value_name = "PVC[=USER]")]
    pvc: Vec<String>,
    /// File with one PVC per line (`-`: stdin); `persistentvolumeclaim/claim-x` lines from
    /// `kubectl get pvc -o name` are accepted.
    #[arg(long = "pvc-file", value_name = "FILE")]
    pvc_file: Vec<String>,
    /// Daily window the start times are spread over, in --time-zone.
    #[arg(long, default_value = "03:00-04:00", conflicts_with = "schedule")]
    window: String,
    /// One cron schedule for every PVC instead of the window (e.g. `*/10 * * * *` to test).
    #[arg(long)]
    schedule: Option<String>,
    /// One-off Jobs instead of CronJobs.
    #[arg(long)]
    one_off: bool,
    /// Name suffix of one-off Jobs [default: the current UTC time, YYYYMMDD-HHMMSS].
    #[arg(long)]
    name_suffix: Option<String>,
    /// Exclude a pattern (repeatable), passed to `backup --exclude`.
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    exclude: Vec<String>,
    /// After the backup, forget this volume's snapshots beyond N daily ones.
    #[arg(long)]
    keep_daily: Option<u32>,
    /// … beyond N weekly ones.
    #[arg(long)]
    keep_weekly: Option<u32>,
    /// … beyond N monthly ones.
    #[arg(long)]
    keep_monthly: Option<u32>,
    /// Run as root with only DAC_READ_SEARCH, to read files jovyan cannot.
    #[arg(long)]
    privileged_read: bool,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    cron: CronArgs,
}

#[derive(ClapArgs, Debug)]
struct RestoreArgs {
    /// PVC whose snapshots are restored (`--host <pvc>`), `claim-x[=username]`.
    #[arg(long = "pvc", value_name = "PVC[=USER]")]
    pvc: String,
    /// `latest` or a snapshot id.
    #[arg(long, default_value = "latest")]
    snapshot: String,
    /// Restore into this PVC instead (e.g. a new, empty one), `pvc[=username]`.
    #[arg(long = "target-pvc", value_name = "PVC[=USER]")]
    target_pvc: Option<String>,
    /// Restore only this directory of the volume (relative, e.g. `work/project`).
    #[arg(long)]
    path: Option<String>,
    /// Name suffix of the Job [default: the current UTC time, YYYYMMDD-HHMMSS].
    #[arg(long)]
    name_suffix: Option<String>,
    /// Run as root with CHOWN, DAC_OVERRIDE, FOWNER, FSETID to restore owners and modes.
    #[arg(long)]
    privileged_read: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(ClapArgs, Debug)]
struct PruneArgs {
    /// Cron schedule of the prune run (in --time-zone).
    #[arg(long, default_value = "0 5 * * 0")]
    schedule: String,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    cron: CronArgs,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<()> {
    let docs = match a.what {
        What::Secret(s) => vec![secret(&s)?],
        What::Backup(b) => backup(b, false)?,
        What::Job(b) => backup(b, true)?,
        What::Restore(r) => vec![restore(r)?],
        What::Prune(p) => vec![prune(p)?],
    };
    let text = if g.json {
        let mut s = serde_json::to_string_pretty(&restash_k8s::list(docs))?;
        s.push('\n');
        s
    } else {
        restash_k8s::to_yaml_stream(&docs)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Which job the defaults are for.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Backup,
    Restore,
    Prune,
}

fn limit(flag: Option<&String>, default: Option<String>) -> Option<String> {
    match flag.map(String::as_str) {
        Some("none") | Some("") => None,
        Some(v) => Some(v.to_string()),
        None => default,
    }
}

fn common(a: &CommonArgs, kind: Kind, privileged: bool) -> anyhow::Result<Common> {
    let image = a.image.clone().unwrap_or_else(default_image);
    let mut c = Common::new(&a.namespace, &image);
    c.secret_name = a.secret.clone();
    c.repository = a.repository.clone();
    c.run_as = if privileged {
        RunAs::Root
    } else {
        RunAs::Jovyan
    };
    let d = if kind == Kind::Prune {
        Resources::for_prune()
    } else {
        Resources::for_volume()
    };
    c.resources = Resources {
        cpu_request: a.cpu.clone().unwrap_or(d.cpu_request),
        cpu_limit: limit(a.cpu_limit.as_ref(), d.cpu_limit),
        memory_request: a.memory.clone().unwrap_or(d.memory_request),
        memory_limit: limit(a.memory_limit.as_ref(), d.memory_limit),
    };
    let deadline = match kind {
        Kind::Backup => 3600,
        Kind::Restore => 7200,
        Kind::Prune => 3 * 3600,
    };
    c.job = JobSettings {
        backoff_limit: a.backoff_limit,
        active_deadline_seconds: a.deadline.unwrap_or(deadline),
        ttl_seconds_after_finished: a.ttl,
    };
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env {kv:?}: expected NAME=VALUE");
        };
        c.extra_env.push((k.to_string(), v.to_string()));
    }
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

fn name_suffix(given: &Option<String>) -> String {
    given
        .clone()
        .unwrap_or_else(|| chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string())
}

fn read_list(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the PVC list from stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading PVC list {path}"))
    }
}

fn volumes(a: &BackupArgs) -> anyhow::Result<Vec<Volume>> {
    let mut vols = Vec::new();
    for p in &a.pvc {
        vols.push(Volume::parse(p)?);
    }
    for f in &a.pvc_file {
        let text = read_list(f)?;
        vols.extend(parse_volume_list(&text).with_context(|| format!("in PVC list {f}"))?);
    }
    if vols.is_empty() {
        bail!("no PVC given: use --pvc claim-<user> or --pvc-file FILE (- for stdin)");
    }
    Ok(unique_volumes(vols)?)
}

fn backup(a: BackupArgs, one_off: bool) -> anyhow::Result<Vec<Value>> {
    let c = common(&a.common, Kind::Backup, a.privileged_read)?;
    let vols = volumes(&a)?;
    let opts = BackupOptions {
        excludes: a.exclude.clone(),
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
    };
    if one_off || a.one_off {
        let suffix = name_suffix(&a.name_suffix);
        return vols
            .iter()
            .map(|v| Ok(restash_k8s::backup_job(&c, v, &opts, &suffix)?))
            .collect();
    }
    let timing = match &a.schedule {
        Some(s) => Timing::Schedule(s.clone()),
        None => {
            let w = Window::parse(&a.window)?;
            if vols.len() > usize::from(w.minutes()) {
                eprintln!(
                    "note: {} PVCs in a {}-minute window: some start in the same minute",
                    vols.len(),
                    w.minutes()
                );
            }
            Timing::Window(w)
        }
    };
    Ok(restash_k8s::backup_cronjobs(
        &c,
        &cron(&a.cron),
        &timing,
        &vols,
        &opts,
    )?)
}

fn restore(a: RestoreArgs) -> anyhow::Result<Value> {
    let c = common(&a.common, Kind::Restore, a.privileged_read)?;
    let r = RestoreOptions {
        source: Volume::parse(&a.pvc)?,
        target: a.target_pvc.as_deref().map(Volume::parse).transpose()?,
        snapshot: a.snapshot.clone(),
        path: a.path.clone(),
    };
    Ok(restash_k8s::restore_job(
        &c,
        &r,
        &name_suffix(&a.name_suffix),
    )?)
}

fn prune(a: PruneArgs) -> anyhow::Result<Value> {
    let c = common(&a.common, Kind::Prune, false)?;
    Ok(restash_k8s::prune_cronjob(&c, &cron(&a.cron), &a.schedule)?)
}

/// Secret file contents without trailing newlines (`echo secret > file` adds one).
fn read_value(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut v = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        v.pop();
    }
    Ok(v)
}

fn add_entry(m: &mut BTreeMap<String, Vec<u8>>, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
    if m.insert(key.to_string(), value).is_some() {
        bail!("secret key {key} is given twice");
    }
    Ok(())
}

fn secret(a: &SecretArgs) -> anyhow::Result<Value> {
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
                bail!(
                    "directory {spec} holds none of {}, {REPOSITORY_KEY}",
                    SECRET_KEYS.join(", ")
                );
            }
        } else {
            let key = path.file_name().and_then(|n| n.to_str()).with_context(|| {
                format!("--from-file {spec:?}: no usable file name; use KEY=PATH")
            })?;
            add_entry(&mut m, key, read_value(path)?)?;
        }
    }
    if let Some(r) = &a.repository {
        add_entry(&mut m, REPOSITORY_KEY, r.as_bytes().to_vec())?;
    }
    if !m.contains_key(REPOSITORY_KEY) {
        eprintln!(
            "note: the secret has no {REPOSITORY_KEY}: give the jobs --repository, or add \
             --repository here"
        );
    }
    Ok(restash_k8s::secret(
        &a.namespace,
        &a.name,
        &SecretEntries(m),
    )?)
}
