//! Headless Chromium for the site's tests: the browser, checked present,
//! and one headless load of a URL.

use std::process::{Command, Output};

/// The browser's command; fails the test, saying how to install it, when
/// it is missing.
pub fn chromium() -> &'static str {
    let found = Command::new("chromium").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "chromium is missing: apt-get install chromium (.ci/setup installs it)"
    );
    "chromium"
}

/// Loads `url` in a fresh headless profile with `args`, console logged to
/// stderr.
pub fn headless(args: &[&str], url: &str) -> Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs")
}

/// The console lines of a headless load's stderr.
pub fn console_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect()
}
