//! Spec errors people can act on: each names the file, the key path, the bad
//! value and what was expected; TOML syntax errors give line and column.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Dotted key path, e.g. `workload.input-tokens`.
    pub key: Option<String>,
    /// 1-based line and column, for syntax errors.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl Diagnostic {
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            key: Some(key.into()),
            location: None,
            message: message.into(),
        }
    }

    /// Renders the diagnostic for `file`, one line.
    pub fn render(&self, file: &Path) -> String {
        let mut out = file.display().to_string();
        if let Some((line, col)) = self.location {
            out.push_str(&format!(":{line}:{col}"));
        }
        out.push_str(": ");
        if let Some(key) = &self.key {
            out.push_str(&format!("`{key}`: "));
        }
        out.push_str(&self.message);
        out
    }
}

/// Every error a spec file can have.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", Rendered(file, diagnostics))]
    Invalid {
        file: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

impl SpecError {
    /// The individual problems, one rendered line each.
    pub fn lines(&self) -> Vec<String> {
        match self {
            SpecError::Read { .. } => vec![self.to_string()],
            SpecError::Invalid { file, diagnostics } => {
                diagnostics.iter().map(|d| d.render(file)).collect()
            }
        }
    }
}

struct Rendered<'a>(&'a Path, &'a [Diagnostic]);

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.1.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&d.render(self.0))?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "`a`, `b` or `c`"
pub fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let keys = ["input-tokens", "output-tokens", "seed"];
        assert_eq!(did_you_mean("inptu-tokens", &keys), Some("input-tokens"));
        assert_eq!(did_you_mean("sed", &keys), Some("seed"));
        assert_eq!(did_you_mean("temperature", &keys), None);
    }

    #[test]
    fn lists_choices() {
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(one_of(&["a"]), "`a`");
    }
}
