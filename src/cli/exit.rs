//! The exit codes of every infermark command, in one place: `--help` and
//! the README's table are both renderings of [`TABLE`] (a unit test holds
//! the README to it).

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
/// Stopped by SIGINT, as shells report it (128 + 2).
pub const SIGINT: u8 = 130;
/// Stopped by SIGTERM, as shells report it (128 + 15).
pub const SIGTERM: u8 = 143;

/// (codes, meaning) rows, in Markdown (backticks mark commands).
pub const TABLE: &[(&[u8], &str)] = &[
    (&[OK], "success (`verify`: REPRODUCED)"),
    (&[FAILURE], "a run, engine, I/O or network failure"),
    (
        &[INVALID],
        "invalid input: spec, lockfile or command-line arguments",
    ),
    (
        &[UNPINNED],
        "a point has a reference not pinned by the lock (also when `verify` finds the point's \
         container image without a digest)",
    ),
    (&[AUDIT_FAILED], "`audit` found a problem"),
    (&[NOT_REPRODUCED], "`verify`: NOT REPRODUCED"),
    (&[INCONCLUSIVE], "`verify`: INCONCLUSIVE"),
    (
        &[SIGINT, SIGTERM],
        "`run` or `nightly` stopped by SIGINT / SIGTERM: the engine was stopped, the point in \
         flight recorded as failed",
    ),
];

/// The exit code after the signal named `why` (`SIGINT` or `SIGTERM`).
pub fn after_signal(why: &str) -> u8 {
    if why == "SIGINT" { SIGINT } else { SIGTERM }
}

fn codes(codes: &[u8]) -> String {
    codes
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table as the README shows it.
pub fn markdown() -> String {
    let mut s = String::from("| code | meaning |\n|---|---|\n");
    for (c, meaning) in TABLE {
        s.push_str(&format!("| {} | {meaning} |\n", codes(c)));
    }
    s
}

/// The table for `--help`.
pub fn help() -> String {
    let mut s = String::from("Exit codes:\n");
    for (c, meaning) in TABLE {
        s.push_str(&format!("  {:<9} {}\n", codes(c), meaning.replace('`', "")));
    }
    s.truncate(s.trim_end().len());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_code_including_the_signals() {
        let help = help();
        for (c, _) in TABLE {
            assert!(help.contains(&format!("  {}", codes(c))), "{help}");
        }
        assert!(help.contains("130, 143"), "{help}");
        assert!(!help.contains('`'), "{help}");
    }
}
