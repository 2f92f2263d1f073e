//! JSON Schemas (draft 2020-12) of the API documents and the OpenAPI 3.1
//! document describing the API, written beside the documents under
//! `api/v1/schema/` and `api/v1/openapi.json`.
//!
//! Built here in code, beside [`super::api`], so a field added to a
//! document is added to its schema in the same change; every schema is
//! self-contained (no `$ref`), so it can be embedded in the OpenAPI
//! document's components unchanged. Objects the API owns refuse unknown
//! properties, so a document that drifts from its schema fails the tests.

use serde_json::{Value, json};

use super::api::API_VERSION;

const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

fn nullable(t: &str) -> Value {
    json!({ "type": [t, "null"] })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

/// An object whose every listed property is required and no other allowed:
/// the documents write each field, `null` when it has no value.
fn object(props: Value) -> Value {
    let required: Vec<&String> = props
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

fn figures() -> Value {
    let mut f = object(json!({
        "output_tok_s_per_gpu": { "type": "number", "description": "output tokens/s per GPU (per machine for a CPU point)" },
        "tok_s_per_user": { "type": "number", "description": "median interactivity, 1000 / TPOT" },
        "median_e2el_ms": { "type": "number" },
    }));
    f["type"] = json!(["object", "null"]);
    f
}

fn pins() -> Value {
    let types = [
        json!({ "type": "string" }),
        json!({ "type": "integer", "minimum": 0 }),
        json!({ "type": "string" }),
        json!({ "type": "string" }),
        nullable("string"),
        nullable("string"),
        json!({ "type": "string" }),
        nullable("string"),
        json!({ "type": "integer", "minimum": 0 }),
        json!({ "type": "integer", "minimum": 0 }),
        json!({ "type": "string" }),
    ];
    object(Value::Object(
        super::api::PIN_KEYS
            .iter()
            .map(|k| k.to_string())
            .zip(types)
            .collect(),
    ))
}

fn header(id: &str, title: &str, mut schema: Value) -> Value {
    schema["$schema"] = json!(DRAFT);
    schema["$id"] = json!(format!("https://infermark.dev/api/v1/schema/{id}"));
    schema["title"] = json!(title);
    schema
}

fn api_field() -> Value {
    json!({ "const": API_VERSION })
}

/// A point's description: the fields every one starts with (as
/// `api::point_head` writes them), then `rest`.
fn point_object(rest: Value) -> Value {
    let mut props = json!({
        "id": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
        "pins": pins(),
        "config": { "type": "string" },
        "config_label": { "type": "string" },
        "series": { "type": "string" },
        "workload": { "type": "string" },
    });
    if let (Some(p), Value::Object(rest)) = (props.as_object_mut(), rest) {
        p.extend(rest);
    }
    object(props)
}

/// `schema/index.json`.
pub fn index() -> Value {
    let point = point_object(json!({
        "completed_runs": { "type": "integer", "minimum": 0 },
        "failed_runs": { "type": "integer", "minimum": 0 },
        "latest_run": nullable("string"),
        "latest_figures": figures(),
        "href": { "type": "string" },
    }));
    let night = object(json!({
        "night": { "type": "string" },
        "hardware_classes": strings(),
        "completed": { "type": "integer", "minimum": 0 },
        "failed": { "type": "integer", "minimum": 0 },
        "href": { "type": "string" },
    }));
    let workload = object(json!({
        "workload": { "type": "string" },
        "page": { "type": "string" },
        "points": strings(),
    }));
    header(
        "index.json",
        "infermark API v1: index",
        object(json!({
            "api": api_field(),
            "points": { "type": "array", "items": point },
            "nights": { "type": "array", "items": night },
            "workloads": { "type": "array", "items": workload },
        })),
    )
}

/// `schema/night.json`.
pub fn night() -> Value {
    let mut previous = object(json!({
        "night": nullable("string"),
        "run_id": { "type": "string" },
        "figures": figures(),
    }));
    previous["type"] = json!(["object", "null"]);
    let point = object(json!({
        "id": { "type": "string" },
        "group": { "type": "string" },
        "hardware": { "type": "string" },
        "experiment": { "type": "string" },
        "load": { "type": "string" },
        "status": { "enum": ["completed", "failed"] },
        "run_id": nullable("string"),
        "reason": nullable("string"),
        "figures": figures(),
        "previous": previous,
    }));
    header(
        "night.json",
        "infermark API v1: night",
        object(json!({
            "api": api_field(),
            "night": { "type": "string" },
            "hardware_classes": strings(),
            "locks": { "type": "object", "additionalProperties": { "type": "string" } },
            "updated_at": { "type": "string" },
            "points": { "type": "array", "items": point },
        })),
    )
}

/// `schema/point.json`.
pub fn point() -> Value {
    let run = object(json!({
        "run_id": { "type": "string" },
        "status": { "enum": ["completed", "failed"] },
        "night": nullable("string"),
        "figures": figures(),
        "href": { "type": "string" },
    }));
    let mut interval = object(json!({ "lo": { "type": "number" }, "hi": { "type": "number" } }));
    interval["type"] = json!(["object", "null"]);
    let metric = object(json!({
        "metric": { "type": "string" },
        "unit": { "type": "string" },
        "reported": nullable("number"),
        "remeasured": nullable("number"),
        "ratio": nullable("number"),
        "interval": interval,
        "band": nullable("number"),
        "verdict": { "enum": ["REPRODUCED", "NOT REPRODUCED", "INCONCLUSIVE", null] },
    }));
    let verdict = object(json!({
        "verdict_id": { "type": "string" },
        "result": { "enum": ["REPRODUCED", "NOT REPRODUCED", "INCONCLUSIVE"] },
        "time_verified": { "type": "string" },
        "reported_run": { "type": "string" },
        "reruns": { "type": "integer", "minimum": 0 },
        "file": { "type": "string" },
        "metrics": { "type": "array", "items": metric },
    }));
    header(
        "point.json",
        "infermark API v1: point",
        point_object(json!({
            "api": api_field(),
            "canonical": { "type": "object", "description": "the point's canonical JSON (point.json)" },
            "point_file": { "type": "string" },
            "reproduce": { "type": "string" },
            "runs": { "type": "array", "items": run },
            "verdicts": { "type": "array", "items": verdict },
        })),
    )
}

/// `schema/run.json`.
pub fn run() -> Value {
    let numbers = json!({ "type": "array", "items": { "type": "number" } });
    header(
        "run.json",
        "infermark API v1: run",
        object(json!({
            "api": api_field(),
            "run_id": { "type": "string" },
            "point_id": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
            "status": { "enum": ["completed", "failed"] },
            "night": nullable("string"),
            "started_at": { "type": "string" },
            "finished_at": { "type": "string" },
            "reason": nullable("string"),
            "figures": figures(),
            "summary": {
                "type": ["object", "null"],
                "description": "summary.json as stored (infermark.summary.v1; docs/metrics.md)",
                "required": ["format", "point_id", "counts", "throughput", "latency", "interactivity"],
                "properties": { "format": { "const": "infermark.summary.v1" } },
            },
            "provenance": object(
                json!({
                    "statement_sha256": nullable("string"),
                    "signature": { "enum": ["unsigned", "signed", "trusted", "invalid"] },
                    "keyids": strings(),
                    "signature_problem": nullable("string"),
                    "harness": {
                        "type": ["object", "null"],
                        "properties": { "version": { "type": "string" }, "commit": { "type": "string" } },
                        "required": ["version", "commit"],
                        "additionalProperties": false,
                    },
                }),
            ),
            "audit": object(
                json!({
                    "status": { "enum": ["clean", "problems", "not_audited"] },
                    "problems": strings(),
                }),
            ),
            "cdf_ms": object(
                json!({ "ttft": numbers, "itl": numbers, "e2el": numbers }),
            ),
            "files": strings(),
        })),
    )
}

/// Every schema file: (name under `api/v1/schema/`, schema).
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("index.json", index()),
        ("night.json", night()),
        ("point.json", point()),
        ("run.json", run()),
    ]
}

/// `api/v1/openapi.json`: the four documents as GET operations of a
/// read-only API whose server is the site's `api/v1/` directory.
pub fn openapi() -> Value {
    let mut components = serde_json::Map::new();
    for (name, mut schema) in all() {
        if let Some(o) = schema.as_object_mut() {
            o.remove("$schema");
        }
        components.insert(name.trim_end_matches(".json").to_string(), schema);
    }
    let op = |id: &str, summary: &str, schema: &str, params: Value| {
        json!({
            "get": {
                "operationId": id,
                "summary": summary,
                "parameters": params,
                "responses": {
                    "200": {
                        "description": summary,
                        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } },
                    },
                    "404": { "description": "no such document" },
                },
            }
        })
    };
    let param = |name: &str, description: &str| {
        json!([{
            "name": name,
            "in": "path",
            "required": true,
            "description": description,
            "schema": { "type": "string", "pattern": "^[A-Za-z0-9._-]+$" },
        }])
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "infermark results API",
            "version": "1",
            "description": "Static JSON documents built by `infermark report` from a results tree. Paths are stable within v1; fields are only added. A breaking change is published as v2 beside v1.",
        },
        "jsonSchemaDialect": DRAFT,
        "servers": [{ "url": "./", "description": "the site's api/v1/ directory" }],
        "paths": {
            "/index.json": op("getIndex", "every point, night and model × workload", "index", json!([])),
            "/nights/{night}.json": op("getNight", "one night's points against the previous night", "night", param("night", "night id, e.g. 2026-11-24")),
            "/points/{pointId}.json": op("getPoint", "one point: pins, runs, verdicts", "point", param("pointId", "the 64-hex point id")),
            "/runs/{runId}.json": op("getRun", "one run: summary, provenance, audit, CDFs", "run", param("runId", "the run id")),
        },
        "components": { "schemas": components },
    })
}
