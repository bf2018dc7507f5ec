//! What a user asks for, as the flags of `restash k8s …` (clap derives them, so the
//! command line and a program build the same requests), and how a request becomes
//! manifests: defaults per job, inputs read from files, checks.

use clap::{Args as ClapArgs, Subcommand};

/// What to generate: the `restash k8s` subcommands.
#[derive(Subcommand, Debug)]
pub enum Request {
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
    /// A Deployment and a ClusterIP Service running the read-only web view (`restash serve`),
    /// and the Secret with its access token.
    Serve(ServeArgs),
}

/// Options every pod takes: where it runs, the repository settings, resources.
#[derive(ClapArgs, Debug)]
pub struct PodArgs {
    /// Namespace of the objects.
    #[arg(long, short = 'n', default_value = "jhub")]
    pub namespace: String,
    /// Container image [default: ghcr.io/restash/restash:<this version>].
    #[arg(long)]
    pub image: Option<String>,
    /// Name of the Secret holding the credentials (see `restash k8s secret`).
    #[arg(long, default_value = "restash")]
    pub secret: String,
    /// Repository location as a plain env value (default: the Secret's RESTIC_REPOSITORY
    /// file). Never put credentials in it.
    #[arg(long)]
    pub repository: Option<String>,
    /// CPU request [default: 200m; prune 500m; serve 100m].
    #[arg(long)]
    pub cpu: Option<String>,
    /// CPU limit, or `none` [default: 1; prune 2].
    #[arg(long)]
    pub cpu_limit: Option<String>,
    /// Memory request [default: 256Mi; prune 512Mi].
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory limit, or `none` [default: 1Gi; prune and serve 2Gi].
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Extra plain environment variable NAME=VALUE (repeatable), e.g. AWS_DEFAULT_REGION=us-east-1.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Secret holding the CA bundle that signs the object store's certificate; mounted
    /// read-only and given to restash as RESTIC_CACERT.
    #[arg(long, value_name = "NAME", conflicts_with = "ca_configmap")]
    pub ca_secret: Option<String>,
    /// ConfigMap holding that CA bundle (e.g. one filled by a trust-manager Bundle).
    #[arg(long, value_name = "NAME")]
    pub ca_configmap: Option<String>,
    /// Key of the CA bundle in the --ca-secret or --ca-configmap.
    #[arg(long, value_name = "KEY", default_value = crate::CA_KEY)]
    pub ca_key: String,
    /// How long a run waits for another process's lock, from restash's global
    /// `--retry-lock` (e.g. `30m`; `0` fails at once with exit 11) [default: 30m; prune 1h;
    /// serve none].
    #[arg(skip)]
    pub retry_lock: Option<String>,
}

/// Options every job manifest takes.
#[derive(ClapArgs, Debug)]
pub struct CommonArgs {
    /// What every pod takes.
    #[command(flatten)]
    pub pod: PodArgs,
    /// Retries after a failed pod (exit codes 3, 10 and 12 are final).
    #[arg(long, default_value_t = 2)]
    pub backoff_limit: u32,
    /// Seconds a job may run before it is stopped [default: 3600; restore 7200; prune 10800].
    #[arg(long)]
    pub deadline: Option<u64>,
    /// Seconds a finished Job (and its pod's log) is kept.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    pub ttl: u64,
}

/// CronJob options.
#[derive(ClapArgs, Debug)]
pub struct CronArgs {
    /// Time zone of the schedule (IANA name).
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// Create the CronJobs suspended (no runs until `kubectl patch … suspend: false`).
    #[arg(long)]
    pub suspend: bool,
    /// Skip a run that could not start within this many seconds of its time.
    #[arg(long, default_value_t = 1800)]
    pub starting_deadline: u64,
    /// Successful Jobs kept per CronJob.
    #[arg(long, default_value_t = 3)]
    pub successful_history: u32,
    /// Failed Jobs kept per CronJob.
    #[arg(long, default_value_t = 3)]
    pub failed_history: u32,
}

/// `restash k8s secret`.
#[derive(ClapArgs, Debug)]
pub struct SecretArgs {
    /// Name of the Secret.
    #[arg(long, default_value = "restash")]
    pub name: String,
    /// Namespace of the Secret.
    #[arg(long, short = 'n', default_value = "jhub")]
    pub namespace: String,
    /// KEY=PATH, a file (key = its name) or a directory holding RESTIC_PASSWORD,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and RESTIC_REPOSITORY); repeatable.
    /// Trailing newlines are removed.
    #[arg(long = "from-file", value_name = "KEY=PATH|PATH|DIR", required = true)]
    pub from_file: Vec<String>,
    /// The repository location, stored as RESTIC_REPOSITORY.
    #[arg(long)]
    pub repository: Option<String>,
}

/// `restash k8s backup` and `restash k8s job`.
#[derive(ClapArgs, Debug)]
pub struct BackupArgs {
    /// PVC to back up, `claim-x` or `claim-x=username` (repeatable).
    #[arg(long = "pvc", value_name = "PVC[=USER]")]
    pub pvc: Vec<String>,
    /// File with one PVC per line (`-`: stdin); `persistentvolumeclaim/claim-x` lines from
    /// `kubectl get pvc -o name` are accepted.
    #[arg(long = "pvc-file", value_name = "FILE")]
    pub pvc_file: Vec<String>,
    /// Daily window the start times are spread over, in --time-zone.
    #[arg(long, default_value = "03:00-04:00", conflicts_with = "schedule")]
    pub window: String,
    /// One cron schedule for every PVC instead of the window (e.g. `*/10 * * * *` to test).
    #[arg(long)]
    pub schedule: Option<String>,
    /// One-off Jobs instead of CronJobs.
    #[arg(long)]
    pub one_off: bool,
    /// Name suffix of one-off Jobs [default: the current UTC time, YYYYMMDD-HHMMSS].
    #[arg(long)]
    pub name_suffix: Option<String>,
    /// Exclude a pattern (repeatable), passed to `backup --exclude`.
    #[arg(long = "exclude", short = 'e', value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// After the backup, forget this volume's older snapshots.
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Save no snapshot when nothing changed since the last one (restic's
    /// --skip-if-unchanged). Off by default: a snapshot every run shows that the volume was
    /// backed up, while with it an idle volume looks like one whose backups stopped.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub skip_if_unchanged: bool,
    /// Give the backups `--no-parent-hint`: each Job then reads every volume's snapshots
    /// and the whole index to find its parent, as restic does. By default a Job reads its
    /// own volume's parent hint, so its cost does not grow with the fleet.
    #[arg(long)]
    pub no_parent_hint: bool,
    /// Run as root with only DAC_READ_SEARCH, to read files jovyan cannot.
    #[arg(long)]
    pub privileged_read: bool,
    /// What every job manifest takes.
    #[command(flatten)]
    pub common: CommonArgs,
    /// How the CronJobs run.
    #[command(flatten)]
    pub cron: CronArgs,
}

/// `restash k8s restore`.
#[derive(ClapArgs, Debug)]
pub struct RestoreArgs {
    /// PVC whose snapshots are restored (`--host <pvc>`), `claim-x[=username]`.
    #[arg(long = "pvc", value_name = "PVC[=USER]")]
    pub pvc: String,
    /// `latest` or a snapshot id.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// Restore into this PVC instead (e.g. a new, empty one), `pvc[=username]`.
    #[arg(long = "target-pvc", value_name = "PVC[=USER]")]
    pub target_pvc: Option<String>,
    /// Restore only this directory of the volume (relative, e.g. `work/project`).
    #[arg(long)]
    pub path: Option<String>,
    /// Name suffix of the Job [default: the current UTC time, YYYYMMDD-HHMMSS].
    #[arg(long)]
    pub name_suffix: Option<String>,
    /// Run as root with CHOWN, DAC_OVERRIDE, FOWNER, FSETID to restore owners and modes.
    #[arg(long)]
    pub privileged_read: bool,
    /// What every job manifest takes.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `restash k8s prune`.
#[derive(ClapArgs, Debug)]
pub struct PruneArgs {
    /// Cron schedule of the prune run (in --time-zone).
    #[arg(long, default_value = "0 5 * * 0")]
    pub schedule: String,
    /// Forget every volume's older snapshots before pruning (`forget --keep-… --prune`):
    /// retention for the whole fleet in one weekly pass.
    #[command(flatten)]
    pub keep: KeepArgs,
    /// What every job manifest takes.
    #[command(flatten)]
    pub common: CommonArgs,
    /// How the CronJobs run.
    #[command(flatten)]
    pub cron: CronArgs,
}

/// `restash k8s serve`.
#[derive(ClapArgs, Debug)]
pub struct ServeArgs {
    /// Name of the Deployment and the Service (and prefix of the token Secret's name).
    #[arg(long, default_value = "restash-serve")]
    pub name: String,
    /// An existing Secret holding the access token, instead of printing `<name>-token`
    /// with a new random one (which `kubectl apply` would put in place of the old).
    #[arg(long, value_name = "NAME")]
    pub token_secret: Option<String>,
    /// Key of the token in --token-secret.
    #[arg(long, value_name = "KEY", default_value = crate::TOKEN_KEY, requires = "token_secret")]
    pub token_key: String,
    /// When a host's last snapshot is flagged stale (`restash serve --stale-after`, Go
    /// duration, e.g. `26h`) [default: serve's].
    #[arg(long, value_name = "DURATION")]
    pub stale_after: Option<String>,
    /// What every pod takes.
    #[command(flatten)]
    pub pod: PodArgs,
}

/// Retention rules: a backup's for its own volume, the prune's for every volume (restic
/// applies them to each host and paths apart).
#[derive(ClapArgs, Debug, Default, Clone)]
pub struct KeepArgs {
    /// Forget snapshots beyond N daily ones.
    #[arg(long)]
    pub keep_daily: Option<u32>,
    /// … beyond N weekly ones.
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    /// … beyond N monthly ones.
    #[arg(long)]
    pub keep_monthly: Option<u32>,
}

impl KeepArgs {
    /// The rules given.
    pub fn keep(&self) -> crate::Keep {
        crate::Keep {
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
        }
    }
}
