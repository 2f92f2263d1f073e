//! Command line: clap definitions, dispatch and the exit-code table — nothing
//! else. Each command's work lives in the module that owns its noun.

mod spec_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The exit codes of every infermark command, in one place (README mirrors it).
pub mod exit {
    /// Success; for `verify`, REPRODUCED.
    pub const OK: u8 = 0;
    /// A run, engine, I/O or network failure.
    pub const FAILURE: u8 = 1;
    /// Invalid input: a spec, lockfile or command-line argument is wrong.
    pub const INVALID: u8 = 2;
    /// A point still has a moving reference (tag, branch, unhashed executable).
    pub const UNPINNED: u8 = 3;
    /// `audit` found a problem.
    pub const AUDIT_FAILED: u8 = 4;
    /// `verify`: NOT REPRODUCED.
    pub const NOT_REPRODUCED: u8 = 5;
    /// `verify`: INCONCLUSIVE.
    pub const INCONCLUSIVE: u8 = 6;

    /// (code, meaning) rows, for `--help` and the README.
    pub const TABLE: &[(u8, &str)] = &[
        (OK, "success (verify: REPRODUCED)"),
        (FAILURE, "a run, engine, I/O or network failure"),
        (INVALID, "invalid input: spec, lockfile or arguments"),
        (UNPINNED, "a point has a reference not pinned by the lock"),
        (AUDIT_FAILED, "audit found a problem"),
        (NOT_REPRODUCED, "verify: NOT REPRODUCED"),
        (INCONCLUSIVE, "verify: INCONCLUSIVE"),
    ];
}

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
    after_help = "Exit codes: 0 success (verify: REPRODUCED), 1 failure, 2 invalid input, 3 unpinned reference, 4 audit failed, 5 NOT REPRODUCED, 6 INCONCLUSIVE"
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
    /// Edit lockfiles.
    #[command(subcommand)]
    Lock(LockCommand),
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

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Pin a reference by hand: `IMAGE:TAG sha256:<digest>`,
    /// `OWNER/MODEL@BRANCH <40-hex commit>` or `COMMAND <sha256 of the executable>`.
    Set {
        reference: String,
        value: String,
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
    let result = match cli.command {
        Command::Spec(cmd) => spec_cmd::spec(cmd),
        Command::Lock(cmd) => spec_cmd::lock(cmd),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code_for(&e))
        }
    }
}

/// Invalid input gets 2; everything else that failed gets 1.
fn code_for(e: &anyhow::Error) -> u8 {
    let invalid = e.chain().any(|c| {
        c.is::<crate::spec::SpecError>()
            || c.is::<crate::lock::LockError>()
            || c.is::<InvalidInput>()
    });
    if invalid {
        exit::INVALID
    } else {
        exit::FAILURE
    }
}

/// A command-line value that is wrong in a way clap cannot see.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);
