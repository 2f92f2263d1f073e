//! Accept loop, routing and the per-endpoint handlers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::drift;
use super::faults::Draw;
use super::request::{self, Api, GenRequest};
use super::stream::{
    Finish, InjectedDisconnect, Schedule, SimBody, SseBody, StreamPlan, TOKEN,
    far_future_saturating, put_u64,
};
use super::{Counters, SimConfig, SimError, monotonic_ns};
use crate::clock;

/// Largest request body read (a 100k-token id prompt is well under 1 MiB).
const MAX_BODY_BYTES: usize = 32 << 20;

/// Largest output a non-streaming response is built for: its text is held in
/// memory whole, and a request must not be able to make the sim allocate
/// gigabytes. Streams have no such limit.
const MAX_NON_STREAMING_TOKENS: u32 = 1 << 20;

/// How long in-flight responses may take to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Back-off after a failed accept (e.g. out of file descriptors), so the
/// loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// State shared by every connection.
struct Shared {
    config: SimConfig,
    /// The model name as a JSON string literal, quotes included.
    model_json: String,
    started: Instant,
    counters: Arc<Counters>,
}

pub(super) async fn run(
    config: SimConfig,
    counters: Arc<Counters>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError> {
    let model_json = serde_json::Value::from(config.model_name.as_str()).to_string();
    let shared = Arc::new(Shared {
        config,
        model_json,
        started: Instant::now(),
        counters,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    connections.spawn(serve_connection(Arc::clone(&shared), tcp, stop_rx.clone()));
                }
                Err(e) => {
                    tracing::warn!("sim: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    // Receivers may all be gone already; then there is nobody to tell.
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "sim: {} connections still busy after the grace period; closing them",
            connections.len()
        );
        connections.shutdown().await;
    }
    Ok(())
}

async fn serve_connection(shared: Arc<Shared>, tcp: TcpStream, mut stop: watch::Receiver<bool>) {
    // Chunks are small and latency is what is measured: never let Nagle hold one.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("sim: set_nodelay failed: {e}");
    }
    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        // A client going away mid-response is normal for a benchmark target.
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

type HandlerResult = Result<Response<SimBody>, InjectedDisconnect>;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> HandlerResult {
    // The request's clock starts when its head has arrived.
    let start = Instant::now();
    let path = req.uri().path();
    let route = match path {
        "/v1/completions" => Route::Generate(Api::Completions),
        "/v1/chat/completions" => Route::Generate(Api::Chat),
        "/v1/models" => Route::Models,
        "/health" => Route::Health,
        _ => {
            return Ok(error(
                StatusCode::NOT_FOUND,
                &format!("no route for {path}"),
            ));
        }
    };
    let method_ok = match route {
        Route::Generate(_) => req.method() == Method::POST,
        Route::Models | Route::Health => req.method() == Method::GET,
    };
    if !method_ok {
        let message = format!("method {} not allowed on {path}", req.method());
        return Ok(error(StatusCode::METHOD_NOT_ALLOWED, &message));
    }
    match route {
        Route::Generate(api) => generate(&shared, api, start, req).await,
        Route::Models => Ok(models(&shared)),
        Route::Health => Ok(health(&shared).await),
    }
}

#[derive(Clone, Copy)]
enum Route {
    Generate(Api),
    Models,
    Health,
}

fn ready(shared: &Shared) -> bool {
    shared.started.elapsed() >= shared.config.health.ready_after
}

async fn health(shared: &Shared) -> Response<SimBody> {
    let health = &shared.config.health;
    if !health.delay.is_zero() {
        tokio::time::sleep(health.delay).await;
    }
    if !ready(shared) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "loading model");
    }
    // Validated by SimConfig::validate; a bad value cannot reach here.
    let status = StatusCode::from_u16(health.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_success() {
        json_response(status, json!({"status": "ok"}).to_string())
    } else {
        error(status, "unhealthy (configured)")
    }
}

fn models(shared: &Shared) -> Response<SimBody> {
    let body = json!({
        "object": "list",
        "data": [{
            "id": shared.config.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "infermark-sim",
        }],
    });
    json_response(StatusCode::OK, body.to_string())
}

async fn generate(
    shared: &Shared,
    api: Api,
    start: Instant,
    req: Request<Incoming>,
) -> HandlerResult {
    // A declared length over the limit is refused before reading a byte.
    if req.body().size_hint().lower() > MAX_BODY_BYTES as u64 {
        let message = format!("request body larger than {MAX_BODY_BYTES} bytes");
        return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, &message));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            let message = format!("request body larger than {MAX_BODY_BYTES} bytes");
            return Ok(error(StatusCode::PAYLOAD_TOO_LARGE, &message));
        }
        Err(e) => {
            let message = format!("could not read the request body: {e}");
            return Ok(error(StatusCode::BAD_REQUEST, &message));
        }
    };
    if !ready(shared) {
        return Ok(error(StatusCode::SERVICE_UNAVAILABLE, "loading model"));
    }
    let config = &shared.config;
    let gen_req = match request::parse(api, &body, config.default_max_tokens) {
        Ok(r) => r,
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    if !gen_req.stream && gen_req.max_tokens > MAX_NON_STREAMING_TOKENS {
        let message = format!(
            "`max_tokens` above {MAX_NON_STREAMING_TOKENS} is only served with `stream: true`"
        );
        return Ok(error(StatusCode::BAD_REQUEST, &message));
    }
    let seq = shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    let draw = Draw::for_request(&config.faults, config.eos_after, seq);
    if let Some(status) = draw.fail {
        return Ok(error(status, "injected failure"));
    }
    let (output_tokens, finish) = output_length(&gen_req, draw.eos_tokens);
    let timing = &config.timing;
    let nominal_ttft = timing.ttft_base.saturating_add(
        timing
            .ttft_per_prompt_token
            .saturating_mul(gen_req.prompt_tokens),
    );
    // The one place a request's timing is decided: streaming and not, every
    // chunk's deadline follows from these two.
    let speed = config.drift.factor(seq);
    let ttft = drift::scale(nominal_ttft, speed);
    let faults = &config.faults;
    let schedule = Schedule {
        first: far_future_saturating(start, ttft),
        itl: drift::scale(timing.itl, speed),
        tokens_per_chunk: timing.tokens_per_chunk,
        stall: draw
            .stall
            .then_some((faults.stall_after_tokens, faults.stall_for)),
    };
    let id = match api {
        Api::Completions => format!("cmpl-sim-{seq}"),
        Api::Chat => format!("chatcmpl-sim-{seq}"),
    };
    let created = clock::unix_seconds(clock::now());

    if gen_req.stream {
        let object = match api {
            Api::Completions => "text_completion",
            Api::Chat => "chat.completion.chunk",
        };
        let plan = StreamPlan {
            api,
            head: event_head(&id, object, created, &shared.model_json),
            schedule,
            prompt_tokens: gen_req.prompt_tokens,
            output_tokens,
            finish,
            include_usage: gen_req.include_usage,
            continuous_usage: gen_req.continuous_usage,
            malformed_after: draw.malformed.then_some(faults.malformed_after_tokens),
            disconnect_after: draw.disconnect.then_some(faults.disconnect_after_tokens),
        };
        let body = SseBody::new(plan, Arc::clone(&shared.counters));
        let mut response = Response::new(SimBody::Stream(Box::new(body)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(response);
    }

    // Not streaming: answer when the last chunk would have been sent.
    let last = schedule.chunks_for(output_tokens).saturating_sub(1);
    tokio::time::sleep_until(schedule.deadline(last)).await;
    if draw.disconnect {
        // hyper closes the connection without a response.
        return Err(InjectedDisconnect);
    }
    shared.counters.chunks.fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .tokens
        .fetch_add(u64::from(output_tokens), Ordering::Relaxed);
    let text = String::from_utf8_lossy(TOKEN).repeat(output_tokens as usize);
    let choice = match api {
        Api::Completions => json!({
            "index": 0, "text": text, "logprobs": null, "finish_reason": finish.as_str(),
        }),
        Api::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": finish.as_str(),
        }),
    };
    let object = match api {
        Api::Completions => "text_completion",
        Api::Chat => "chat.completion",
    };
    let mut full = json!({
        "id": id,
        "object": object,
        "created": created,
        "model": config.model_name,
        "choices": [choice],
        "usage": {
            "prompt_tokens": gen_req.prompt_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": u64::from(gen_req.prompt_tokens) + u64::from(output_tokens),
        },
    })
    .to_string();
    if draw.malformed {
        // Cut inside the JSON: no longer parseable, still plausibly JSON-ish.
        let mut cut = full.len() / 2;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        full.truncate(cut);
    } else {
        // Stamp last, as for streamed chunks: replace the closing brace.
        full.pop();
        full.push_str(&format!(",\"infermark_sent_ns\":{}}}", monotonic_ns()));
    }
    Ok(json_response(StatusCode::OK, full))
}

/// How many tokens to generate and why generation ends.
fn output_length(req: &GenRequest, eos_tokens: Option<u32>) -> (u32, Finish) {
    match eos_tokens {
        Some(n) if !req.ignore_eos && n < req.max_tokens => (n, Finish::Stop),
        _ => (req.max_tokens, Finish::Length),
    }
}

/// `data: {"id":"ID","object":"OBJECT","created":N,"model":MODEL,`
fn event_head(id: &str, object: &str, created: u64, model_json: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(96 + id.len() + model_json.len());
    buf.put_slice(br#"data: {"id":""#);
    // The id is ours ("cmpl-sim-N"): nothing to escape.
    buf.put_slice(id.as_bytes());
    buf.put_slice(br#"","object":""#);
    buf.put_slice(object.as_bytes());
    buf.put_slice(br#"","created":"#);
    put_u64(&mut buf, created);
    buf.put_slice(br#","model":"#);
    buf.put_slice(model_json.as_bytes());
    buf.put_u8(b',');
    buf.freeze()
}

fn json_response(status: StatusCode, body: String) -> Response<SimBody> {
    let mut response = Response::new(SimBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error in the OpenAI shape: `{"error":{"message","type","code"}}`.
fn error(status: StatusCode, message: &str) -> Response<SimBody> {
    let kind = match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "invalid_request_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable_error",
        _ => "server_error",
    };
    let body = json!({"error": {"message": message, "type": kind, "code": status.as_u16()}});
    json_response(status, body.to_string())
}
