//! Every name in a results tree, in one place.
//!
//! ```text
//! <root>/points/<point-id>/point.json                  canonical bytes of the point
//! <root>/points/<point-id>/runs/<run-id>/              a result:
//!     requests.jsonl summary.json environment.json engine.log
//!     provenance.json                                  the statement over them and point.json
//!     provenance.dsse.json                             its signature envelope, when signed
//! <root>/points/<point-id>/failed/<run-id>/            a failed run: failure.json + what was written
//! <root>/points/<point-id>/verdicts/<verdict-id>/      verdict.json (and its envelope) of `verify`
//! <root>/nights/<night>/night.json                     the record of one night
//! <root>/.tmp/                                         runs in progress, engine logs: never a result
//! <root>/index.sqlite                                  derived from the files; rebuildable
//! ```
//!
//! A leaf: constants and the rule for a name in the tree, importing nothing. Every module that reads or
//! writes the tree takes its names from here, including `provenance`
//! (which names the files its statement covers) and `report` (the night
//! records), although `store` itself sits above them in the data flow: the
//! layout is a fact about the tree, not a step of the pipeline, and one
//! spelling of each name is what keeps the readers and the writers agreed.

/// Directory of the points under the root.
pub const POINTS_DIR: &str = "points";
/// The point's canonical bytes, in its point directory (two levels above a
/// run directory).
pub const POINT_FILE: &str = "point.json";
/// Completed runs of a point.
pub const RUNS_DIR: &str = "runs";
/// Failed runs of a point.
pub const FAILED_DIR: &str = "failed";
/// Verdicts of `verify` about a point's runs; a verdict is not a run.
pub const VERDICTS_DIR: &str = "verdicts";
/// Runs in progress (and the logs of engine starts): never a result.
pub const TMP_DIR: &str = ".tmp";
/// The index, derived from the files.
pub const INDEX_FILE: &str = "index.sqlite";
/// Night records, one directory per night.
pub const NIGHTS_DIR: &str = "nights";
/// The record's file name inside `nights/<night>/`.
pub const NIGHT_FILE: &str = "night.json";

/// A run's raw per-request records.
pub const REQUESTS_FILE: &str = "requests.jsonl";
/// A run's summary, derived from its records alone.
pub const SUMMARY_FILE: &str = "summary.json";
/// What a run observed about where it ran.
pub const ENVIRONMENT_FILE: &str = "environment.json";
/// The engine's output over the run.
pub const ENGINE_LOG_FILE: &str = "engine.log";
/// The run's provenance statement.
pub const STATEMENT_FILE: &str = "provenance.json";
/// The statement's signature envelope (see `provenance::sign::envelope_path`).
pub const RUN_ENVELOPE_FILE: &str = "provenance.dsse.json";
/// The run directory's files the statement covers, besides `point.json`.
pub const RUN_FILES: [&str; 4] = [
    REQUESTS_FILE,
    SUMMARY_FILE,
    ENVIRONMENT_FILE,
    ENGINE_LOG_FILE,
];
/// What a completed run directory holds: its files and their statement
/// (and, when signed, [`RUN_ENVELOPE_FILE`]).
pub const RUN_DIR_FILES: [&str; 5] = [
    REQUESTS_FILE,
    SUMMARY_FILE,
    ENVIRONMENT_FILE,
    ENGINE_LOG_FILE,
    STATEMENT_FILE,
];
/// Why a run failed, in its `failed/<run-id>/` directory.
pub const FAILURE_FILE: &str = "failure.json";
/// A verdict's file in `verdicts/<verdict-id>/`.
pub const VERDICT_FILE: &str = "verdict.json";

/// Whether `name` can be a directory name of the tree (a night id) or a
/// path component derived from one: ASCII letters, digits, `.`, `_` and
/// `-`, at most `max` bytes, and not `.` or `..`.
pub fn is_plain_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
