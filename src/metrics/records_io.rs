//! Files the summary is read from and written to: `requests.jsonl` (one
//! [`RequestRecord`] JSON object per line, `\n`-terminated) and
//! `summary.json`. Errors name the file, and for records the 1-based line
//! and key path.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use crate::loadgen::record::RequestRecord;

use super::summary::Summary;
use super::{MetricsError, parse_json};

/// Reads every record of a `requests.jsonl`. A blank line is an error like
/// any malformed one: audited data is never silently skipped.
pub fn read_records(path: &Path) -> Result<Vec<RequestRecord>, MetricsError> {
    let read_error = |source| MetricsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read_error)?;
        records.push(parse_record(path, i, &line)?);
    }
    Ok(records)
}

/// The records of a `requests.jsonl` already read into memory (by a
/// bounded reader); `path` names it in errors.
pub fn records_from_text(path: &Path, text: &str) -> Result<Vec<RequestRecord>, MetricsError> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split('\n')
        .enumerate()
        .map(|(i, line)| parse_record(path, i, line))
        .collect()
}

fn parse_record(path: &Path, i: usize, line: &str) -> Result<RequestRecord, MetricsError> {
    parse_json(line).map_err(|(key, source)| MetricsError::RecordLine {
        path: path.to_path_buf(),
        line: i + 1,
        key,
        source,
    })
}

/// Writes `records` as `requests.jsonl`, replacing any existing file.
pub fn write_records(path: &Path, records: &[RequestRecord]) -> Result<(), MetricsError> {
    let write_error = |source| MetricsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(write_error)?);
    for record in records {
        serde_json::to_writer(&mut out, record).map_err(|source| MetricsError::Serialize {
            what: "request record",
            source,
        })?;
        out.write_all(b"\n").map_err(write_error)?;
    }
    out.into_inner()
        .map_err(|e| write_error(e.into_error()))?
        .sync_all()
        .map_err(write_error)
}

/// Reads `summary.json` (see [`Summary::from_json`]).
pub fn read_summary(path: &Path) -> Result<Summary, MetricsError> {
    let text = std::fs::read_to_string(path).map_err(|source| MetricsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Summary::from_json(&text).map_err(|e| MetricsError::SummaryFile {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

/// Writes `summary.json` as [`Summary::to_json`] renders it.
pub fn write_summary(path: &Path, summary: &Summary) -> Result<(), MetricsError> {
    std::fs::write(path, summary.to_json()?).map_err(|source| MetricsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::record::{Chunk, ErrorKind, RequestError};

    fn record(index: u64) -> RequestRecord {
        RequestRecord {
            index,
            slot: 0,
            warmup: false,
            scheduled_ns: 1,
            sent_ns: 2,
            stale_sent_ns: None,
            first_token_ns: Some(3),
            end_ns: 4,
            chunks: vec![
                Chunk {
                    t_ns: 3,
                    tokens: 1,
                    server_ns: None,
                },
                Chunk {
                    t_ns: 4,
                    tokens: 2,
                    server_ns: Some(4),
                },
            ],
            input_tokens: 5,
            max_output_tokens: 3,
            usage_input_tokens: Some(5),
            usage_output_tokens: Some(3),
            http_status: Some(200),
            error: None,
        }
    }

    #[test]
    fn records_round_trip_through_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        let mut failed = record(1);
        failed.error = Some(RequestError {
            kind: ErrorKind::Http,
            message: "503".into(),
        });
        let records = vec![record(0), failed];
        write_records(&path, &records).expect("write");
        let text = std::fs::read_to_string(&path).expect("read back");
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with("}\n"));
        assert_eq!(read_records(&path).expect("read"), records);
    }

    #[test]
    fn a_resent_request_keeps_its_first_attempt_and_others_are_written_as_before() {
        // Sent once: no key at all, so records of runs from before the
        // field are the same bytes (and still read).
        let once = serde_json::to_string(&record(0)).expect("serialize");
        assert!(!once.contains("stale_sent_ns"), "{once}");
        assert!(
            once.contains("\"sent_ns\":2,\"first_token_ns\":3"),
            "{once}"
        );
        let mut resent = record(1);
        resent.stale_sent_ns = Some(1);
        let line = serde_json::to_string(&resent).expect("serialize");
        assert!(
            line.contains("\"sent_ns\":2,\"stale_sent_ns\":1,"),
            "{line}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        std::fs::write(&path, format!("{once}\n{line}\n")).expect("write");
        assert_eq!(read_records(&path).expect("read"), vec![record(0), resent]);
    }

    #[test]
    fn a_malformed_line_is_reported_with_file_line_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        let good = serde_json::to_string(&record(0)).expect("serialize");
        let bad = good.replace("\"slot\":0", "\"slot\":\"zero\"");
        std::fs::write(&path, format!("{good}\n{bad}\n")).expect("write");
        let message = read_records(&path).expect_err("must fail").to_string();
        assert!(message.starts_with("failed to read "), "{message}");
        assert!(
            message.contains("requests.jsonl: line 2: `slot`: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn a_blank_line_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("requests.jsonl");
        let good = serde_json::to_string(&record(0)).expect("serialize");
        std::fs::write(&path, format!("{good}\n\n{good}\n")).expect("write");
        let message = read_records(&path).expect_err("must fail").to_string();
        assert!(message.contains("line 2: EOF while parsing"), "{message}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.jsonl");
        let message = read_records(&path).expect_err("must fail").to_string();
        assert!(message.contains("absent.jsonl"), "{message}");
    }
}
