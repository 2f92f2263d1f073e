//! Command line: clap definitions, dispatch, the exit-code table (`exit`)
//! and the signal handling that ends the process (`signals`) — nothing
//! else. Each command is one call into the module that owns its noun.

pub mod exit;
mod key_cmd;
mod lock_cmd;
mod measure_cmd;
mod nightly_cmd;
mod results_cmd;
mod run_cmd;
mod signals;
mod spec_cmd;
mod verify_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::night::NightError;

/// Version line: the crate version and the commit the binary was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("INFERMARK_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "infermark",
    version = VERSION,
    about = "Reproducible benchmarks of LLM inference servers",
    after_help = exit::help()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check experiment specs and list their points.
    #[command(subcommand)]
    Spec(SpecCommand),
    /// Resolve experiments' image tags and model branches into the lockfiles
    /// (`lock [PATHS] [--update]`), or pin one reference by hand (`lock set`).
    Lock(LockArgs),
    /// Run the built-in OpenAI-compatible sim server (known timing, faults).
    ServeSim(SimArgs),
    /// Drive one experiment's points against a server that is already running.
    Bench(BenchArgs),
    /// Measure the client's own timing error against the sim server.
    Calibrate(CalibrateArgs),
    /// Run experiments: start each engine, measure its points, write results.
    Run(RunArgs),
    /// Check a run, a point or a results tree offline: hashes, ids, pins, summaries.
    Audit(AuditArgs),
    /// Re-run a reported run's point here and judge whether its numbers
    /// reproduce (exit 0 REPRODUCED, 5 NOT REPRODUCED, 6 INCONCLUSIVE).
    Verify(VerifyArgs),
    /// The results index (SQLite, derived from the files).
    #[command(subcommand)]
    Index(IndexCommand),
    /// Query the results index.
    #[command(subcommand)]
    Results(ResultsCommand),
    /// Signing keys for statements (Ed25519).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Run this runner's night: its hardware class's experiments, pinned by
    /// the lock, grouped by engine; resumable; writes `nights/<night>/night.json`.
    Nightly(NightlyArgs),
    /// Split the night into scheduler jobs, one per group (engine start).
    Plan(PlanArgs),
    /// Merge result trees from many runners (a union; conflicts reported),
    /// then rebuild the index.
    Collect(CollectArgs),
    /// Build a static site from a results tree: pages with SVG charts, a
    /// JSON API as files, CSV/JSONL exports (works from file://).
    Report(ReportArgs),
    /// Serve the same site and JSON API live from a results tree,
    /// read-only, with queries over its runs (`/api/v1/runs?...`).
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub results: ResultsDirArg,
    /// Address to listen on; port 0 picks a free one (printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Allow a non-loopback --addr (serves to other machines; warned on stderr).
    #[arg(long)]
    pub public: bool,
    /// Public keys (`infermark key generate`) runs' signatures are checked against.
    #[arg(long, value_name = "KEYFILE", num_args = 1..)]
    pub trust: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub results: ResultsDirArg,
    /// The site directory (created; only files it changed are written).
    #[arg(long, value_name = "SITE")]
    pub out: PathBuf,
    /// Public keys (`infermark key generate`) runs' signatures are checked against.
    #[arg(long, value_name = "KEYFILE", num_args = 1..)]
    pub trust: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct NightlyArgs {
    /// Hardware class to run [default: detected on this machine]
    #[arg(long, value_name = "CLASS")]
    pub hardware: Option<String>,
    /// Experiments root; the night runs `<DIR>/<hardware class>/`.
    #[arg(long, value_name = "DIR", default_value = "experiments")]
    pub experiments: PathBuf,
    #[command(flatten)]
    pub results: ResultsDirArg,
    /// Run only these groups (ids from `infermark plan`).
    #[arg(long, value_name = "GROUP", num_args = 1..)]
    pub only: Vec<String>,
    /// Resolve moving references (tags, branches) into the lock first.
    #[arg(long)]
    pub update_locks: bool,
    /// Sign each run's statement with this Ed25519 key (`infermark key generate`).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Night id: re-running a night skips its completed points [default: today's UTC date]
    #[arg(long, value_name = "ID")]
    pub night: Option<String>,
    /// Run even if this machine is not of the hardware class; recorded.
    #[arg(long)]
    pub allow_hardware_mismatch: bool,
    #[command(flatten)]
    pub files: EngineFilesArg,
    #[command(flatten)]
    pub lock: LockDirArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// `{"include":[...]}` for a GitHub Actions `strategy.matrix`.
    GithubMatrix,
    /// An sbatch array-job script (one hardware class per script).
    Slurm,
    /// Kubernetes `batch/v1` Job manifests, one YAML document per group.
    K8s,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[arg(long, value_enum)]
    pub format: PlanFormat,
    /// Hardware classes to plan [default: every class directory under --experiments]
    #[arg(long, value_name = "CLASS", num_args = 1..)]
    pub hardware: Vec<String>,
    /// Experiments root, with one directory per hardware class.
    #[arg(long, value_name = "DIR", default_value = "experiments")]
    pub experiments: PathBuf,
    /// k8s: the container image (it must hold Nix and the repository at --workdir).
    #[arg(long, value_name = "IMAGE", default_value = "nixos/nix")]
    pub image: String,
    /// k8s: the repository checkout inside the image.
    #[arg(long, value_name = "DIR", default_value = "/src")]
    pub workdir: String,
    #[command(flatten)]
    pub lock: LockDirArg,
}

#[derive(Debug, Clone, Args)]
pub struct CollectArgs {
    /// The results tree to merge into (created when absent).
    #[arg(long, value_name = "DIR")]
    pub into: PathBuf,
    /// Result trees to merge.
    #[arg(required = true, value_name = "SRC")]
    pub sources: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Experiment files, or directories searched for `*.toml`.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Run only the points whose id starts with this.
    #[arg(long, value_name = "ID")]
    pub point: Option<String>,
    #[command(flatten)]
    pub results: ResultsDirArg,
    /// Run even if this machine is not the point's hardware class; the
    /// environment and the statement record the override.
    #[arg(long)]
    pub allow_hardware_mismatch: bool,
    #[command(flatten)]
    pub files: EngineFilesArg,
    #[command(flatten)]
    pub lock: LockDirArg,
    /// Sign each run's statement with this Ed25519 private key (PKCS#8 PEM,
    /// from `infermark key generate`): writes `provenance.dsse.json`.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
}

/// `verify --repeats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatsArg {
    Auto,
    Fixed(u32),
}

fn parse_repeats(s: &str) -> Result<RepeatsArg, String> {
    if s == "auto" {
        return Ok(RepeatsArg::Auto);
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=100).contains(&n) => Ok(RepeatsArg::Fixed(n)),
        _ => Err(format!(
            "`{s}` is neither `auto` nor a number of re-runs from 1 to 100"
        )),
    }
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// A run directory (`points/<id>/runs/<run-id>`), a point directory or a
    /// point id prefix (its newest completed run in `--results`).
    pub target: String,
    /// `auto`: re-run one at a time, judging after the point's `[verify]
    /// repeats` re-runs and after each one more, until every judged metric
    /// is decided or `[verify] max-repeats` were made; `N`: exactly N
    /// re-runs, judged once.
    #[arg(long, value_name = "auto|N", default_value = "auto", value_parser = parse_repeats)]
    pub repeats: RepeatsArg,
    /// The results tree: where a point id is looked up, and where the new
    /// runs go when the target is an id [a run or point directory's own tree
    /// otherwise].
    #[arg(long = "results", value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Re-run even if this machine is not the point's hardware class; the
    /// new runs record the override.
    #[arg(long)]
    pub allow_hardware_mismatch: bool,
    #[command(flatten)]
    pub files: EngineFilesArg,
    /// Directory that relative paths in the point (engine command, model
    /// file, dataset) are resolved against [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub spec_dir: Option<PathBuf>,
    /// Sign the new runs' statements and the verdict with this Ed25519 key.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Require the reported run signed by one of these public keys before
    /// anything is re-run (as `audit --trust`).
    #[arg(long, value_name = "KEYFILE", num_args = 1..)]
    pub trust: Vec<PathBuf>,
}

/// Where an engine's pinned files and images are found.
#[derive(Debug, Clone, Args)]
pub struct EngineFilesArg {
    /// Pull from a registry on the loopback interface (127.0.0.0/8, ::1,
    /// localhost) over verified TLS, as from any other. By default such a
    /// registry is taken to speak plain HTTP: podman is told so
    /// (`--tls-verify=false`); Docker's daemon decides that by itself.
    #[arg(long)]
    pub loopback_registry_tls: bool,
    /// Also look for model files (`model.file`) here.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Vec<PathBuf>,
    /// Hugging Face cache mounted into containers for `model.repo` points.
    #[arg(long, value_name = "DIR")]
    pub model_cache: Option<PathBuf>,
    /// Content-addressed cache of pinned files (`<dir>/files/<sha256>/<name>`)
    /// [default: $INFERMARK_CACHE, else $XDG_CACHE_HOME/infermark, else ~/.cache/infermark]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl EngineFilesArg {
    /// `--cache-dir`, else the default cache.
    fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(crate::engine::default_cache_dir)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ResultsDirArg {
    /// The results tree.
    #[arg(long = "results", value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// A run directory, a point directory or a results tree.
    pub path: PathBuf,
    /// Require every run signed by one of these public keys (SPKI PEM, the
    /// `.pub` of `key generate`); unsigned, untrusted and invalid are problems.
    #[arg(long, value_name = "KEYFILE", num_args = 1..)]
    pub trust: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an Ed25519 key pair: FILE (private, PKCS#8 PEM, mode 0600) and
    /// FILE.pub (public, SPKI PEM); prints the key id. Never overwrites.
    Generate {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Delete the index and recreate it from the result files alone.
    Rebuild {
        #[command(flatten)]
        results: ResultsDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ResultsCommand {
    /// One line per run, newest first.
    List {
        /// Only runs of points whose id starts with this.
        #[arg(long, value_name = "ID")]
        point: Option<String>,
        /// Only `completed` or `failed` runs.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        results: ResultsDirArg,
    },
    /// Everything the index holds about a run (by run id) or a point (by id prefix).
    Show {
        id: String,
        #[command(flatten)]
        results: ResultsDirArg,
    },
}

#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the first stdout line names it).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Time to first token for an empty prompt, ms.
    #[arg(long, default_value_t = 50.0)]
    pub ttft_ms: f64,
    /// Added to TTFT per prompt token, microseconds.
    #[arg(long, default_value_t = 0.0)]
    pub ttft_per_prompt_token_us: f64,
    /// Gap between chunks, ms (0: as fast as the connection takes it).
    #[arg(long, default_value_t = 10.0)]
    pub itl_ms: f64,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub tokens_per_chunk: u32,
    #[arg(long, default_value = "sim")]
    pub model_name: String,
    /// `max_tokens` when a request sends none.
    #[arg(long, default_value_t = 16)]
    pub default_max_tokens: u32,
    /// Without `ignore_eos`, stop after a seeded length in [1, N].
    #[arg(long)]
    pub eos_after: Option<u32>,
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    /// Share of requests answered with HTTP 500/503.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Share of requests that stall mid-stream.
    #[arg(long, default_value_t = 0.0)]
    pub stall_rate: f64,
    #[arg(long, default_value_t = 0)]
    pub stall_after_tokens: u32,
    #[arg(long, default_value_t = 0.0)]
    pub stall_ms: f64,
    /// Share of requests with one malformed chunk.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    #[arg(long, default_value_t = 0)]
    pub malformed_after_tokens: u32,
    /// Share of requests whose connection is dropped mid-stream.
    #[arg(long, default_value_t = 0.0)]
    pub disconnect_rate: f64,
    #[arg(long, default_value_t = 0)]
    pub disconnect_after_tokens: u32,
    /// Delay of every `/health` answer, ms.
    #[arg(long, default_value_t = 0.0)]
    pub health_delay_ms: f64,
    /// Status `/health` answers once ready.
    #[arg(long, default_value_t = 200)]
    pub health_status: u16,
    /// Answer 503 until this long after start, like a loading engine, ms.
    #[arg(long, default_value_t = 0.0)]
    pub health_ready_after_ms: f64,
    /// Run-to-run speed drift: every timing of a run (TTFT, ITL) is
    /// multiplied by exp(SIGMA·z), z ~ N(0,1) seeded, redrawn every
    /// `--run-requests` requests. 0: off.
    #[arg(long, value_name = "SIGMA", default_value_t = 0.0)]
    pub run_drift: f64,
    /// Requests in one run, counted in arrival order from server start: the
    /// `--run-drift` factor is redrawn every K. For a point re-run by
    /// `verify`, K = its warmup + measured requests ((warmup-per-client +
    /// requests-per-client) × concurrency; or warmup-requests + requests).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub run_requests: Option<u64>,
    /// Per-request speed jitter: each request's TTFT and ITL are multiplied
    /// by its own seeded exp(SIGMA·z). 0: off.
    #[arg(long, value_name = "SIGMA", default_value_t = 0.0)]
    pub request_jitter: f64,
    /// Seeds `--run-drift` and `--request-jitter`; the factors of request i
    /// depend only on the seed and i.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub drift_seed: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Base URL of the running server, e.g. http://127.0.0.1:8000
    #[arg(long)]
    pub url: String,
    /// The experiment whose workload to drive.
    #[arg(long)]
    pub spec: PathBuf,
    /// Drive this many concurrent clients instead of the experiment's sweep.
    #[arg(long, conflicts_with = "point")]
    pub concurrency: Option<u32>,
    /// Drive only the point whose id starts with this.
    #[arg(long)]
    pub point: Option<String>,
    /// Write point.json, requests.jsonl, summary.json and vllm.json into `DIR/<point id>/`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub lock: LockDirArg,
}

#[derive(Debug, Clone, Args)]
pub struct CalibrateArgs {
    /// Concurrent streams per level.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    pub streams: Vec<u32>,
    #[arg(long, default_value_t = 50.0)]
    pub ttft_ms: f64,
    #[arg(long, default_value_t = 10.0)]
    pub itl_ms: f64,
    /// Output tokens per request.
    #[arg(long, default_value_t = 100)]
    pub tokens: u32,
    /// Measured requests per stream (after one warmup each).
    #[arg(long, default_value_t = 2)]
    pub requests_per_stream: u32,
    /// Streams of the flat-out run (ITL 0).
    #[arg(long, default_value_t = 8)]
    pub flat_out_streams: u32,
    /// Tokens per request of the flat-out run.
    #[arg(long, default_value_t = 100_000)]
    pub flat_out_tokens: u32,
    /// Also write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Client and sim on the same CPUs, the sim niced (by default, with two
    /// or more CPUs, the sim gets the last one and the client the others).
    /// Worth trying on a host whose hypervisor takes a large share of the
    /// CPUs: a paused CPU stops a client pinned to it, while a client on
    /// every CPU has its other worker take over its streams.
    #[arg(long, conflicts_with = "split_cpus")]
    pub shared_cpus: bool,
    /// The sim on the last CPU, the client on the others: the default (kept
    /// for scripts).
    #[arg(long, hide = true)]
    pub split_cpus: bool,
    /// Start every stream's requests together and keep them the same length,
    /// so that all streams end and are sent again at once, every time (by
    /// default each stream's first request has a length drawn from
    /// [1, --tokens], which spreads the ends as a steady state does).
    #[arg(long)]
    pub phase_locked: bool,
    /// Talk to the sim over the host's loopback, through whatever packet
    /// filter the host has (by default client and sim get a network
    /// namespace of their own, with only its loopback, where the kernel
    /// allows it; the output says which).
    #[arg(long)]
    pub host_network: bool,
    /// Where the figures are saved as this host's last calibration
    /// (`<dir>/calibration/last.json`), which every run on this host attaches
    /// to its `environment.json`
    /// [default: $INFERMARK_CACHE, else $XDG_CACHE_HOME/infermark, else ~/.cache/infermark]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not save the figures as this host's last calibration.
    #[arg(long)]
    pub no_save: bool,
}

#[derive(Debug, Subcommand)]
pub enum SpecCommand {
    /// Validate experiment files (directories are searched for *.toml);
    /// reports every error of every file, exit 2 if any.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        lock: LockDirArg,
    },
    /// List an experiment's points: full id, short id, load level.
    Points {
        file: PathBuf,
        /// Print each point's canonical JSON, one per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        lock: LockDirArg,
    },
    /// Print one point id per line.
    Id {
        file: PathBuf,
        #[command(flatten)]
        lock: LockDirArg,
    },
}

/// `infermark lock [PATHS...] [--update] [--lock-dir DIR]` or
/// `infermark lock set REF VALUE`. A directory of experiments named `set`
/// is written `./set`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LockArgs {
    #[command(subcommand)]
    pub command: Option<LockCommand>,
    /// Experiment files, or directories searched for `*.toml` [default: experiments]
    pub paths: Vec<PathBuf>,
    /// Resolve every moving reference again, not only those the lock lacks.
    #[arg(long)]
    pub update: bool,
    #[command(flatten)]
    pub lock: LockDirArg,
}

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Pin a reference by hand: `IMAGE:TAG sha256:<digest>`,
    /// `OWNER/MODEL@BRANCH <40-hex commit>` or `COMMAND <sha256 of the executable>`.
    Set {
        reference: String,
        value: String,
        /// Pin in this machine's local overlay (`<lock dir>/local/*.lock`,
        /// ignored by git; it wins over the tracked lockfiles), not in the
        /// tracked lockfiles: for what only this machine has, such as an
        /// image it built itself
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        lock: LockDirArg,
    },
}

#[derive(Debug, Clone, Args)]
pub struct LockDirArg {
    /// Lockfile directory [default: the nearest `lockfiles/` above the experiment, or ./lockfiles]
    #[arg(long, value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
}

/// Parses arguments, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // Die quietly on a closed pipe (`infermark spec id x | head -1`), as
    // Unix filters do, instead of panicking on the failed write.
    // SAFETY: setting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // Warnings (a fact the probe could not read, a calibration not
    // attached) go to stderr; RUST_LOG chooses more or less.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
    let result = match cli.command {
        Command::Spec(cmd) => spec_cmd::spec(cmd),
        Command::Lock(a) => lock_cmd::lock(a),
        Command::ServeSim(a) => measure_cmd::serve_sim(a),
        Command::Bench(a) => measure_cmd::bench(a),
        Command::Calibrate(a) => measure_cmd::calibrate(a),
        Command::Run(a) => run_cmd::run(a),
        Command::Audit(a) => results_cmd::audit(a),
        Command::Verify(a) => verify_cmd::verify(a),
        Command::Index(c) => results_cmd::index(c),
        Command::Results(c) => results_cmd::results(c),
        Command::Key(c) => key_cmd::key(c),
        Command::Nightly(a) => nightly_cmd::nightly(a),
        Command::Plan(a) => nightly_cmd::plan(a),
        Command::Collect(a) => nightly_cmd::collect(a),
        Command::Report(a) => results_cmd::report(a),
        Command::Serve(a) => results_cmd::serve(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code_for(&e))
        }
    }
}

/// Invalid input gets 2, an unpinned point 3; everything else that failed gets 1.
fn code_for(e: &anyhow::Error) -> u8 {
    // Unpinned in the plan, or found unpinned when the engine is checked
    // (verify's pin check of a container point without a digest).
    let unpinned = e.chain().any(|c| {
        matches!(run_error(c), Some(crate::run::RunError::Unpinned(_)))
            || matches!(
                c.downcast_ref(),
                Some(crate::engine::EngineError::Unpinned { .. })
            )
    });
    if unpinned {
        return exit::UNPINNED;
    }
    let invalid = e.chain().any(|c| {
        c.is::<crate::spec::SpecError>()
            || c.is::<crate::lock::LockError>()
            || c.is::<InvalidInput>()
            || c.downcast_ref::<crate::run::bench::ChoiceError>()
                .is_some_and(crate::run::bench::ChoiceError::is_invalid_input)
            || c.downcast_ref::<crate::lock::apply::PointsError>()
                .is_some_and(crate::lock::apply::PointsError::is_invalid_input)
            || matches!(run_error(c), Some(crate::run::RunError::NoPoints(_)))
            || c.downcast_ref::<NightError>()
                .is_some_and(NightError::is_invalid_input)
            || c.downcast_ref::<crate::site::SiteError>()
                .is_some_and(crate::site::SiteError::is_invalid_input)
            || c.downcast_ref::<crate::serve::ServeError>()
                .is_some_and(crate::serve::ServeError::is_invalid_input)
    });
    if invalid {
        exit::INVALID
    } else {
        exit::FAILURE
    }
}

/// The run error `c` is or wraps transparently (a night's).
fn run_error<'a>(c: &'a (dyn std::error::Error + 'static)) -> Option<&'a crate::run::RunError> {
    c.downcast_ref::<crate::run::RunError>().or_else(|| {
        c.downcast_ref::<NightError>()
            .and_then(NightError::run_error)
    })
}

/// A command-line value that is wrong in a way clap cannot see.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

#[cfg(test)]
mod exit_code_tests {
    use super::*;
    use crate::engine::EngineError;
    use crate::verify::reproduce::ReproduceError;

    #[test]
    fn an_engine_found_unpinned_exits_3_and_a_pin_missing_here_exits_1() {
        let unpinned = anyhow::Error::new(ReproduceError::PinUnavailable(EngineError::Unpinned {
            key: "engine.image".into(),
            reference: "vllm/vllm-openai:latest".into(),
            fix: "run `infermark lock`".into(),
        }))
        .context("verify");
        assert_eq!(code_for(&unpinned), exit::UNPINNED);
        let missing = anyhow::Error::new(ReproduceError::PinUnavailable(EngineError::NotFound {
            what: "model file".into(),
            tried: Vec::new(),
            hint: "pass --model-dir".into(),
        }));
        assert_eq!(code_for(&missing), exit::FAILURE);
        assert_eq!(
            code_for(&anyhow::Error::new(InvalidInput("x".into()))),
            exit::INVALID
        );
    }
}
