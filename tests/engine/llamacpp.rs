//! Against the real CPU engine: llama.cpp's `llama-server` with SmolLM2-135M,
//! both built/fetched from pinned packages by `tests/setup/llama-server.sh`
//! (cached outside the repository).

use std::process::{Command, Stdio};

use std::time::Duration;

use crate::support::{Server, bench, free_port, heavy, llama_engine, wait_healthy};

#[test]
fn four_concurrent_streams_give_exactly_max_tokens_with_usage_equal_to_chunks() {
    let _heavy = heavy();
    let (server, model) = llama_engine();
    let port = free_port();
    let child = Command::new(server)
        .args([
            "-m",
            &model,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["-a", "smollm2-135m", "-c", "4096", "-np", "4", "-t", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("llama-server starts");
    let srv = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    wait_healthy(&format!("{}/health", srv.url), Duration::from_secs(60));
    let b = bench(
        &srv.url,
        "cpu/llamacpp-smollm2.toml",
        &["--concurrency", "4"],
    );
    assert_eq!(b.code, Some(0), "{}", b.stderr);
    let (s, records) = (b.summary, b.records);
    // 8 requests per client, 4 clients.
    assert_eq!(s["counts"]["completed"], 32);
    assert_eq!(s["counts"]["failed"], 0);
    assert_eq!(s["throughput"]["max_concurrent_requests"], 4);
    let mut disagreeing = 0;
    for r in &records {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(
            r["usage_output_tokens"], 32,
            "exactly max_tokens with ignore_eos: {r}"
        );
        assert_eq!(
            r["usage_input_tokens"], 128,
            "token-id prompts reach the engine at exact length"
        );
        let chunk_tokens: u64 = r["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[1].as_u64().unwrap())
            .sum();
        // llama.cpp holds back a token whose bytes end in an incomplete UTF-8
        // sequence and sends it merged with the next one, so a chunk can
        // carry two tokens: never more chunks than tokens, and every
        // difference is counted in the summary rather than hidden.
        assert!(chunk_tokens <= 32, "{r}");
        // The summary counts measured requests only, like every metric.
        if chunk_tokens != 32 && r["warmup"] == false {
            disagreeing += 1;
        }
    }
    assert_eq!(s["counts"]["token_disagreements"], disagreeing);
    assert!(
        disagreeing <= 4,
        "usage and chunk counts agree for nearly every request ({disagreeing} of 16 differ)"
    );
    // 4 streams decode in parallel: the measurement window is well below the
    // serial sum of the requests' latencies.
    let e2el_mean = s["latency"]["e2el"]["mean_ms"].as_f64().unwrap();
    let window = s["window"]["duration_s"].as_f64().unwrap() * 1000.0;
    assert!(
        window < 16.0 * e2el_mean * 0.6,
        "window {window} ms vs e2el {e2el_mean} ms"
    );
}
