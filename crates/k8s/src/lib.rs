//! Kubernetes manifests that run restash for JupyterHub user volumes, as JSON values, and a
//! small YAML emitter for them. The builders are pure functions: no I/O, no clock, no
//! cluster access. A [`request::Request`] (the flags of `restash k8s …`) builds them with
//! each job's defaults, reading only the PVC lists and secret files it names.
//!
//! * [`secret`]: the Secret holding `RESTIC_PASSWORD`, `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY` (and optionally `RESTIC_REPOSITORY`).
//! * [`backup_cronjobs`]: one CronJob per PVC, start times staggered over a daily window;
//!   [`backup_job`]: the same backup once.
//! * [`restore_job`]: a one-off restore of a snapshot into the same or another PVC.
//! * [`prune_cronjob`]: a scheduled `prune` (no PVC).
//! * [`serve_manifests`]: a Deployment and a Service running the read-only web view
//!   (`restash serve`), and the Secret with its access token.
//!
//! Every pod runs the restash image with a read-only root filesystem, no privilege
//! escalation, all capabilities dropped, the RuntimeDefault seccomp profile, an emptyDir at
//! `/tmp`, the Secret as read-only files under `/secrets` (never in env or args), and the
//! PVC at `/data` (the web view mounts none). By default it runs as jovyan (uid 1000, gid 100, as Zero to JupyterHub's
//! user pods); [`RunAs::Root`] runs as uid 0 with only the capability the job needs, for
//! files jovyan cannot read.
//!
//! ```
//! use restash_k8s::*;
//!
//! let common = Common::new("jhub", "ghcr.io/restash/restash:0.1.0");
//! let vols = vec![Volume::parse("claim-alice")?, Volume::parse("claim-bob=bob")?];
//! let timing = Timing::Window(Window::parse("03:00-04:00")?);
//! let cronjobs = backup_cronjobs(
//!     &common,
//!     &CronSettings::default(),
//!     &timing,
//!     &vols,
//!     &BackupOptions::default(),
//! )?;
//! assert_eq!(cronjobs[1]["spec"]["schedule"], "30 3 * * *");
//! let pod = &cronjobs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
//! assert_eq!(pod["containers"][0]["args"][3], "claim-alice"); // --host
//! assert_eq!(pod["securityContext"]["runAsUser"], 1000);
//! let yaml = to_yaml_stream(&cronjobs);
//! assert!(yaml.starts_with("---\napiVersion: \"batch/v1\"\nkind: \"CronJob\"\n"));
//! # Ok::<(), K8sError>(())
//! ```
#![forbid(unsafe_code)]

mod build;
mod manifests;
mod names;
mod pod;
pub mod request;
mod schedule;
mod serve;
#[cfg(test)]
mod tests;
mod volume;
mod yaml;

pub use manifests::{
    backup_args, backup_cronjobs, backup_job, list, prune_cronjob, restore_args, restore_job,
    secret, SecretEntries,
};
pub use names::{check_quantity, check_schedule, check_time_zone};
pub use schedule::{daily_cron, Window};
pub use serve::{serve_manifests, ServeOptions, TokenSource};
pub use volume::{parse_volume_list, unique_volumes, Volume};
pub use yaml::{to_yaml, to_yaml_stream};

/// Where the PVC is mounted in the pod.
pub const DATA_DIR: &str = "/data";
/// Where the Secret's keys appear as files.
pub const SECRETS_DIR: &str = "/secrets";
/// The writable emptyDir (the root filesystem is read-only).
pub const TMP_DIR: &str = "/tmp";
/// The termination message file restash writes its short result to.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// The container's name in every pod.
pub const CONTAINER_NAME: &str = "restash";
/// Secret keys every job reads (as `<KEY>_FILE` environment variables pointing at files).
pub const SECRET_KEYS: [&str; 3] = [
    "RESTIC_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];
/// Where a CA bundle (`--ca-secret`, `--ca-configmap`) is mounted.
pub const CA_DIR: &str = "/etc/restash/ca";
/// The default key of the CA bundle, and the file name it is mounted as in [`CA_DIR`]
/// (cert-manager's and trust-manager's name for it).
pub const CA_KEY: &str = "ca.crt";
/// The optional Secret key holding the repository location.
pub const REPOSITORY_KEY: &str = "RESTIC_REPOSITORY";
/// The port `restash serve` listens on in its pod, and the Service's port.
pub const SERVE_PORT: u16 = 8080;
/// Where the web view's token Secret is mounted.
pub const TOKEN_DIR: &str = "/etc/restash/token";
/// The default key of the token in its Secret, and the file name it is mounted as in
/// [`TOKEN_DIR`].
pub const TOKEN_KEY: &str = "token";

/// The image of this version: `ghcr.io/restash/restash:<version>`.
pub fn default_image() -> String {
    format!("ghcr.io/restash/restash:{}", env!("CARGO_PKG_VERSION"))
}

/// What cannot be turned into a manifest the API server would accept.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// A name, quantity, schedule or other value breaks the API server's rules.
    #[error("invalid {what} {value:?}: must be {rule}")]
    Invalid {
        /// What the value is for (e.g. "pvc", "time zone").
        what: String,
        /// The value as given.
        value: String,
        /// The rule it breaks.
        rule: String,
    },
    /// The same PVC was given twice with different users.
    #[error("pvc {pvc:?} is given twice, with users {a:?} and {b:?}")]
    ConflictingUser {
        /// The PVC.
        pvc: String,
        /// One user.
        a: String,
        /// The other.
        b: String,
    },
    /// The Secret lacks keys the jobs read.
    #[error("the secret lacks {0}: every job reads it from /secrets")]
    MissingSecretKeys(String),
    /// A Secret key's value is empty.
    #[error("secret key {0} is empty")]
    EmptySecretValue(String),
    /// An extra environment variable would override or leak what the manifests set.
    #[error("environment variable {0} cannot be set with --env: {1}")]
    ReservedEnv(String, &'static str),
    /// Nothing to generate.
    #[error("no PVC given")]
    NoVolumes,
    /// A request that cannot be carried out as given (flags that contradict or lack
    /// something); the message says what to give instead.
    #[error("{0}")]
    Usage(String),
    /// A file the request names could not be read.
    #[error("{context}: {source}")]
    Input {
        /// What was being read.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A PVC list holds an entry that is not a PVC.
    #[error("in PVC list {list}: {source}")]
    InList {
        /// The list's file name (`-`: stdin).
        list: String,
        /// What is wrong with the entry.
        #[source]
        source: Box<K8sError>,
    },
}

/// Which identity the job's process has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunAs {
    /// uid 1000, gid 100, fsGroup 100: jovyan, who owns the files in Zero to JupyterHub.
    /// No capabilities; files jovyan cannot read are reported (backup exits 3).
    #[default]
    Jovyan,
    /// uid 0 with all capabilities dropped but the one the job needs: `DAC_READ_SEARCH`
    /// to back up, `CHOWN`, `FOWNER`, `FSETID`, `DAC_OVERRIDE` to restore owners and modes.
    /// Kubernetes only widens the bounding set with `capabilities.add`, so a non-root
    /// process would not get them; hence root.
    Root,
}

/// CPU and memory requests and limits of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// CPU request, e.g. `200m`.
    pub cpu_request: String,
    /// CPU limit, if any.
    pub cpu_limit: Option<String>,
    /// Memory request, e.g. `256Mi`.
    pub memory_request: String,
    /// Memory limit, if any.
    pub memory_limit: Option<String>,
}

impl Resources {
    /// For backing up or restoring a volume of a few GB.
    pub fn for_volume() -> Self {
        Resources {
            cpu_request: "200m".into(),
            cpu_limit: Some("1".into()),
            memory_request: "256Mi".into(),
            memory_limit: Some("1Gi".into()),
        }
    }

    /// For `prune`, which holds the whole repository index in memory.
    pub fn for_prune() -> Self {
        Resources {
            cpu_request: "500m".into(),
            cpu_limit: Some("2".into()),
            memory_request: "512Mi".into(),
            memory_limit: Some("2Gi".into()),
        }
    }

    /// For `serve`: idle most of the time, but it loads the repository index to browse
    /// and to download, as prune does.
    pub fn for_serve() -> Self {
        Resources {
            cpu_request: "100m".into(),
            cpu_limit: Some("1".into()),
            memory_request: "256Mi".into(),
            memory_limit: Some("2Gi".into()),
        }
    }
}

/// Job-level settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// Retries after a failed pod (`backoffLimit`).
    pub backoff_limit: u32,
    /// Seconds before a running job is stopped (`activeDeadlineSeconds`).
    pub active_deadline_seconds: u64,
    /// Seconds a finished job (and its pod and log) stays (`ttlSecondsAfterFinished`).
    pub ttl_seconds_after_finished: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            backoff_limit: 2,
            active_deadline_seconds: 3600,
            ttl_seconds_after_finished: 7 * 24 * 3600,
        }
    }
}

/// CronJob-level settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSettings {
    /// IANA time zone of the schedule (`timeZone`).
    pub time_zone: String,
    /// Whether the CronJob starts suspended.
    pub suspend: bool,
    /// A run missed by more than this many seconds is skipped.
    pub starting_deadline_seconds: u64,
    /// Finished jobs kept.
    pub successful_jobs_history_limit: u32,
    /// Failed jobs kept.
    pub failed_jobs_history_limit: u32,
}

impl Default for CronSettings {
    fn default() -> Self {
        CronSettings {
            time_zone: "UTC".into(),
            suspend: false,
            starting_deadline_seconds: 1800,
            successful_jobs_history_limit: 3,
            failed_jobs_history_limit: 3,
        }
    }
}

/// What every manifest of one deployment shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// Namespace of every object (JupyterHub's, usually `jhub`).
    pub namespace: String,
    /// Container image.
    pub image: String,
    /// Name of the Secret mounted at `/secrets`.
    pub secret_name: String,
    /// Repository location as a plain env value; `None` reads it from the Secret's
    /// `RESTIC_REPOSITORY` file (`RESTIC_REPOSITORY_FILE`).
    pub repository: Option<String>,
    /// The process's identity.
    pub run_as: RunAs,
    /// Container resources.
    pub resources: Resources,
    /// Job settings.
    pub job: JobSettings,
    /// Extra plain environment variables (e.g. `AWS_DEFAULT_REGION`); never credentials.
    pub extra_env: Vec<(String, String)>,
    /// A CA bundle to trust instead of the system roots, for an object store whose
    /// certificate a private CA signed.
    pub ca: Option<CaBundle>,
    /// restic's `--retry-lock` for every run (Go duration syntax, e.g. `30m`): a backup
    /// that meets the weekly prune waits for it instead of failing with exit 11. The
    /// caller checks the syntax (the binary parses it with the engine's duration rule).
    pub retry_lock: Option<String>,
}

/// Where the CA bundle of a private object store comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// A Secret of this name.
    Secret(String),
    /// A ConfigMap of this name.
    ConfigMap(String),
}

/// A PEM CA bundle in a Secret or ConfigMap, mounted read-only as `ca.crt` in
/// [`CA_DIR`] and named by `RESTIC_CACERT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// The Secret or ConfigMap.
    pub source: CaSource,
    /// Its key holding the PEM bundle.
    pub key: String,
}

impl Common {
    /// Defaults for a volume job in `namespace` with `image`, Secret `restash`.
    pub fn new(namespace: &str, image: &str) -> Self {
        Common {
            namespace: namespace.into(),
            image: image.into(),
            secret_name: "restash".into(),
            repository: None,
            run_as: RunAs::Jovyan,
            resources: Resources::for_volume(),
            job: JobSettings::default(),
            extra_env: Vec::new(),
            ca: None,
            retry_lock: None,
        }
    }
}

/// When the backup CronJobs run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timing {
    /// Daily, start times spread evenly over the window (in the CronJob's time zone).
    Window(Window),
    /// The same cron schedule for every PVC (e.g. `*/5 * * * *` while testing).
    Schedule(String),
}

/// Retention rules (restic's `--keep-daily` …); none set means keep everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keep {
    /// `--keep-daily`.
    pub daily: Option<u32>,
    /// `--keep-weekly`.
    pub weekly: Option<u32>,
    /// `--keep-monthly`.
    pub monthly: Option<u32>,
}

/// What a backup does besides reading `/data`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupOptions {
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// The `--forget` run after the backup (this host only); none without rules.
    pub keep: Keep,
    /// `--skip-if-unchanged`: an idle volume adds no snapshot (its last one stays its
    /// latest, and the run still reports success). Off unless asked for: the age of a
    /// volume's latest snapshot then no longer says whether its backups still run.
    pub skip_if_unchanged: bool,
    /// `--no-parent-hint`: every Job reads all snapshots and the whole index, as restic
    /// does, instead of its volume's parent hint (see docs/kubernetes.md, "A fleet").
    pub no_parent_hint: bool,
}

/// A restore of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    /// The volume whose snapshots are read (`--host <pvc>`).
    pub source: Volume,
    /// The volume written to; `None` writes back into `source`.
    pub target: Option<Volume>,
    /// `latest` or a snapshot id (prefix).
    pub snapshot: String,
    /// A sub-directory of the volume to restore alone (relative, e.g. `work/project`).
    pub path: Option<String>,
}
