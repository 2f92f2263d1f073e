//! Hand-built records with round numbers, whose figures are worked out by
//! hand in the tests. Latencies stay below 2048 µs so the HDR histogram
//! holds them exactly.
//!
//! Times are µs after `S` = 1 s (origin-relative ns in the records):
//!
//! | index | role            | sched | sent | chunks (µs: tokens)        | end       | usage out |
//! |-------|-----------------|-------|------|----------------------------|-----------|-----------|
//! | 0     | warmup          | −1 s  | −1 s | −1 s + 100: 1              | −1 s + 200| 1         |
//! | 1     | ok              | 0     | 100  | 1100,1300,1500,1700,1900: 1| 1900      | 5         |
//! | 2     | ok, 3-tok chunk | 0     | 300  | 1200: 1, 1800: 3, 2100: 1  | 2200      | 5         |
//! | 3     | ok, usage ≠ 3   | 0     | 200  | 700, 900, 1100: 1          | 1150      | 4         |
//! | 4     | timeout         | 0     | 50   | —                          | 2 000 000 | —         |
//! | 5     | http 503        | 0     | 0    | —                          | 20        | —         |
//!
//! Hence TTFT {1000, 900, 500} µs, E2EL {1800, 1900, 950}, TPOT
//! {200, 250, 150}, queue delay {100, 300, 200}, chunk gaps
//! {200×4, 600, 300, 200×2}, window S → S + 2 s.

use crate::loadgen::record::{Chunk, ErrorKind, RequestError, RequestRecord};

pub(crate) const S: u64 = 1_000_000_000;

pub(crate) fn us(t: u64) -> u64 {
    S + t * 1_000
}

fn ok(index: u64, sent: u64, chunks: &[(u64, u32)], end: u64, usage_out: u32) -> RequestRecord {
    RequestRecord {
        index,
        slot: index as u32,
        warmup: false,
        scheduled_ns: S,
        sent_ns: us(sent),
        stale_sent_ns: None,
        first_token_ns: chunks.first().map(|&(t, _)| us(t)),
        end_ns: us(end),
        chunks: chunks
            .iter()
            .map(|&(t, tokens)| Chunk {
                t_ns: us(t),
                tokens,
                server_ns: None,
            })
            .collect(),
        input_tokens: 100 * index as u32,
        max_output_tokens: 5,
        usage_input_tokens: Some(100 * index as u32),
        usage_output_tokens: Some(usage_out),
        http_status: Some(200),
        error: None,
    }
}

fn failed(index: u64, sent: u64, end: u64, kind: ErrorKind) -> RequestRecord {
    RequestRecord {
        index,
        slot: index as u32,
        warmup: false,
        scheduled_ns: S,
        sent_ns: us(sent),
        stale_sent_ns: None,
        first_token_ns: None,
        end_ns: us(end),
        chunks: Vec::new(),
        input_tokens: 100,
        max_output_tokens: 5,
        usage_input_tokens: None,
        usage_output_tokens: None,
        http_status: (kind == ErrorKind::Http).then_some(503),
        error: Some(RequestError {
            kind,
            message: format!("{kind:?}"),
        }),
    }
}

/// The six records of the table above, in index order.
pub(crate) fn records() -> Vec<RequestRecord> {
    let warmup = RequestRecord {
        index: 0,
        slot: 0,
        warmup: true,
        scheduled_ns: 0,
        sent_ns: 0,
        stale_sent_ns: None,
        first_token_ns: Some(100_000),
        end_ns: 200_000,
        chunks: vec![Chunk {
            t_ns: 100_000,
            tokens: 1,
            server_ns: None,
        }],
        input_tokens: 7,
        max_output_tokens: 1,
        usage_input_tokens: Some(7),
        usage_output_tokens: Some(1),
        http_status: Some(200),
        error: None,
    };
    let mut r2 = ok(2, 300, &[(1200, 1), (1800, 3), (2100, 1)], 2200, 5);
    // No usage for the prompt: the generated length counts instead.
    r2.usage_input_tokens = None;
    vec![
        warmup,
        ok(
            1,
            100,
            &[(1100, 1), (1300, 1), (1500, 1), (1700, 1), (1900, 1)],
            1900,
            5,
        ),
        r2,
        ok(3, 200, &[(700, 1), (900, 1), (1100, 1)], 1150, 4),
        failed(4, 50, 2_000_000, ErrorKind::Timeout),
        failed(5, 0, 20, ErrorKind::Http),
    ]
}
