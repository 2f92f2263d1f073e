//! Wire → domain: fill every default, check every range and combination, and
//! collect every problem rather than stopping at the first.

use std::collections::BTreeMap;

use super::diag::{Diagnostic, did_you_mean, one_of};
use super::domain::*;
use super::hardware;
use super::reference::{ImageRef, Sha256, is_commit};
use super::wire::*;
use super::{Experiment, MAX_SAFE_INTEGER};

/// Limits, in one place, so messages and checks agree.
const MAX_TOKENS: i64 = 1 << 20;
const MAX_CONCURRENCY: i64 = 100_000;
const MAX_REQUESTS: i64 = 10_000_000;
const MAX_TIMEOUT_S: i64 = 7 * 24 * 3600;
const MAX_RATE: f64 = 1e6;

pub(super) fn convert(w: ExperimentWire) -> Result<Experiment, Vec<Diagnostic>> {
    let mut c = Check::default();
    match w.schema {
        None => c.err(
            "schema",
            "missing; expected `schema = 1` at the top of the file",
        ),
        Some(1) => {}
        Some(v) => c.err(
            "schema",
            format!("{v} is not a schema this infermark knows; expected 1"),
        ),
    }
    let hardware = c.hardware(w.hardware);
    let engine = c.engine(w.engine, hardware.as_ref());
    let kind = engine.as_ref().map(|e| e.kind);
    let model = c.model(w.model, kind);
    let load_mode = w.load.as_ref().and_then(LoadWire::mode_hint);
    let workload = c.workload(w.workload, load_mode);
    let sweep = c.load(w.load);
    let slo = c.slo(w.slo);
    let verify = c.verify(w.verify);
    if !c.diags.is_empty() {
        return Err(c.diags);
    }
    match (hardware, engine, model, workload, sweep, slo, verify) {
        (Some(hardware), Some(engine), Some(model), Some(workload), Some(sweep), slo, verify) => {
            Ok(Experiment {
                name: w.name,
                description: w.description,
                hardware,
                engine,
                model,
                workload,
                sweep,
                slo,
                verify,
            })
        }
        // Every `None` above was reported.
        _ => Err(vec![Diagnostic::at("", "incomplete experiment")]),
    }
}

impl LoadWire {
    fn mode_hint(&self) -> Option<&'static str> {
        match (self.mode.as_deref(), &self.concurrency, &self.rate) {
            (Some("concurrency"), _, _) | (None, Some(_), None) => Some("concurrency"),
            (Some("rate"), _, _) | (None, None, Some(_)) => Some("rate"),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Check {
    diags: Vec<Diagnostic>,
}

impl Check {
    fn err(&mut self, key: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic::at(key, message));
    }

    fn missing_table(&mut self, key: &str, example: &str) {
        self.err(
            key,
            format!("missing table; add `[{key}]` with at least {example}"),
        );
    }

    /// An integer in `[lo, hi]`, or `default` when absent (`None` = required).
    fn int(
        &mut self,
        key: &str,
        v: Option<i64>,
        default: Option<i64>,
        lo: i64,
        hi: i64,
    ) -> Option<i64> {
        match v.or(default) {
            None => {
                self.err(
                    key,
                    format!("missing; expected an integer from {lo} to {hi}"),
                );
                None
            }
            Some(v) if v < lo || v > hi => {
                self.err(
                    key,
                    format!("{v} is out of range; expected an integer from {lo} to {hi}"),
                );
                None
            }
            Some(v) => Some(v),
        }
    }

    /// A finite float in `(lo, hi]` (or `[lo, hi]` when `lo_inclusive`).
    fn float(
        &mut self,
        key: &str,
        v: Option<f64>,
        default: Option<f64>,
        lo: f64,
        lo_inclusive: bool,
        hi: f64,
    ) -> Option<f64> {
        let bracket = if lo_inclusive { "[" } else { "(" };
        match v.or(default) {
            None => {
                self.err(
                    key,
                    format!("missing; expected a number in {bracket}{lo}, {hi}]"),
                );
                None
            }
            Some(v) if !v.is_finite() || v > hi || v < lo || (v == lo && !lo_inclusive) => {
                self.err(
                    key,
                    format!("{v} is out of range; expected a number in {bracket}{lo}, {hi}]"),
                );
                None
            }
            Some(v) => Some(v),
        }
    }

    /// One of a fixed set of names.
    fn choice<T: Copy>(
        &mut self,
        key: &str,
        v: Option<&str>,
        default: Option<T>,
        parse: fn(&str) -> Option<T>,
        names: &[&str],
        what: &str,
    ) -> Option<T> {
        match v {
            None => {
                if default.is_none() {
                    self.err(key, format!("missing; expected {what}: {}", one_of(names)));
                }
                default
            }
            Some(s) => match parse(s) {
                Some(t) => Some(t),
                None => {
                    let hint = did_you_mean(s, names)
                        .map(|m| format!("; did you mean `{m}`?"))
                        .unwrap_or_default();
                    self.err(
                        key,
                        format!(
                            "`{s}` is not {what}; expected one of {}{hint}",
                            one_of(names)
                        ),
                    );
                    None
                }
            },
        }
    }

    fn forbid<T>(&mut self, key: &str, v: &Option<T>, why: &str) {
        if v.is_some() {
            self.err(key, format!("not allowed here: {why}; remove it"));
        }
    }

    fn sha(&mut self, key: &str, v: &str) -> Option<Sha256> {
        Sha256::parse(v)
            .map_err(|m| self.err(key, m.to_string()))
            .ok()
    }

    fn hardware(&mut self, w: Option<HardwareWire>) -> Option<Hardware> {
        let Some(w) = w else {
            self.missing_table("hardware", "`class = \"cpu\"` (or a GPU class)");
            return None;
        };
        let ids = hardware::class_ids();
        let class = self.choice(
            "hardware.class",
            w.class.as_deref(),
            None,
            hardware::class,
            &ids,
            "a hardware class",
        )?;
        let gpus = if class.max_gpus == 0 {
            if matches!(w.gpus, Some(g) if g != 0) {
                self.err(
                    "hardware.gpus",
                    format!("{} GPUs for class `cpu`; a CPU point uses none: remove `gpus` or set it to 0", w.gpus.unwrap_or(0)),
                );
                return None;
            }
            0
        } else {
            self.int(
                "hardware.gpus",
                w.gpus,
                Some(1),
                1,
                i64::from(class.max_gpus),
            )? as u32
        };
        Some(Hardware {
            class: class.id.to_string(),
            gpus,
        })
    }

    fn engine(&mut self, w: Option<EngineWire>, hw: Option<&Hardware>) -> Option<Engine> {
        let Some(w) = w else {
            self.missing_table("engine", "`kind` and `runtime`");
            return None;
        };
        let kind = self.choice(
            "engine.kind",
            w.kind.as_deref(),
            None,
            EngineKind::parse,
            &EngineKind::names(),
            "an engine kind",
        );
        let default_runtime = (kind == Some(EngineKind::Sim)).then_some(Runtime::Process);
        let runtime = self.choice(
            "engine.runtime",
            w.runtime.as_deref(),
            default_runtime,
            Runtime::parse,
            &Runtime::names(),
            "a runtime",
        );
        let (kind, runtime) = (kind?, runtime?);
        let mut ok = true;
        let mut image = None;
        if kind == EngineKind::Sim {
            // The built-in server: nothing to start but infermark itself.
            if runtime != Runtime::Process {
                self.err("engine.runtime", format!("`{runtime}` cannot run the built-in `sim` server; use `runtime = \"process\"` or remove the key"));
                ok = false;
            }
            for (key, v) in [
                ("engine.image", &w.image),
                ("engine.command", &w.command),
                ("engine.command-sha256", &w.command_sha256),
            ] {
                if v.is_some() {
                    self.err(key, "not allowed for `kind = \"sim\"`: the sim server is built into infermark; remove it");
                    ok = false;
                }
            }
        } else if runtime.is_container() {
            match &w.image {
                None => {
                    self.err("engine.image", format!("missing; runtime `{runtime}` needs an image, e.g. `image = \"vllm/vllm-openai:v0.10.2\"`"));
                    ok = false;
                }
                Some(s) => match ImageRef::parse(s) {
                    Ok(r) => image = Some(r),
                    Err(m) => {
                        self.err("engine.image", m.to_string());
                        ok = false;
                    }
                },
            }
            for (key, v) in [
                ("engine.command", &w.command),
                ("engine.command-sha256", &w.command_sha256),
            ] {
                if v.is_some() {
                    self.err(key, format!("not allowed with runtime `{runtime}`: the image's entrypoint runs the server; put extra flags in `engine.args`"));
                    ok = false;
                }
            }
        } else {
            if w.image.is_some() {
                self.err("engine.image", "not allowed with runtime `process`; use `engine.command`, or a container runtime (`docker`, `podman`, `apptainer`)");
                ok = false;
            }
            match w.command.as_deref() {
                None | Some("") => {
                    self.err("engine.command", "missing; runtime `process` needs the server executable, e.g. `command = \"llama-server\"`");
                    ok = false;
                }
                Some(_) => {}
            }
        }
        let command_sha256 = match &w.command_sha256 {
            Some(s) => match self.sha("engine.command-sha256", s) {
                Some(h) => Some(h),
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let env = w.env.unwrap_or_default();
        for name in env.keys() {
            let valid = !name.is_empty()
                && !name.as_bytes()[0].is_ascii_digit()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                self.err(&format!("engine.env.{name}"), "not a valid environment variable name; expected letters, digits and `_`, not starting with a digit");
                ok = false;
            }
        }
        let port = self.int("engine.port", w.port, Some(8000), 1, 65535);
        let gpus = hw.map_or(1, |h| h.gpus.max(1));
        let tp = self.int(
            "engine.tensor-parallel",
            w.tensor_parallel,
            Some(i64::from(gpus)),
            1,
            i64::from(gpus),
        );
        let readiness_path = w.readiness_path.unwrap_or_else(|| "/health".to_string());
        if !readiness_path.starts_with('/') {
            self.err(
                "engine.readiness-path",
                format!("`{readiness_path}` must start with `/`, e.g. `/health`"),
            );
            ok = false;
        }
        let timeout = self.int(
            "engine.readiness-timeout-s",
            w.readiness_timeout_s,
            Some(1800),
            1,
            MAX_TIMEOUT_S,
        );
        if !ok {
            return None;
        }
        Some(Engine {
            kind,
            runtime,
            image,
            command: w.command,
            command_sha256,
            args: w.args.unwrap_or_default(),
            env,
            port: port? as u16,
            tensor_parallel: tp? as u32,
            readiness_path,
            readiness_timeout_s: timeout? as u64,
        })
    }

    fn model(&mut self, w: Option<ModelWire>, kind: Option<EngineKind>) -> Option<Model> {
        let is_sim = kind == Some(EngineKind::Sim);
        let Some(w) = w else {
            if is_sim {
                return Some(Model::None {
                    served_name: "sim".to_string(),
                });
            }
            self.missing_table("model", "`repo` and `revision` (or `file` and `sha256`)");
            return None;
        };
        if let Some(name) = &w.served_name
            && name.is_empty()
        {
            self.err(
                "model.served-name",
                "empty; remove it to use the default name",
            );
            return None;
        }
        match (&w.repo, &w.file) {
            (Some(_), Some(_)) => {
                self.err("model.file", "`repo` and `file` are alternatives; keep one");
                None
            }
            (Some(repo), None) => {
                self.forbid(
                    "model.sha256",
                    &w.sha256,
                    "a hub model's file hashes are recorded in lockfiles/models.lock",
                );
                let valid_repo = repo.split('/').count() == 2
                    && repo.split('/').all(|p| {
                        !p.is_empty()
                            && p.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                    });
                if !valid_repo {
                    self.err(
                        "model.repo",
                        format!("`{repo}` is not a Hugging Face repository; expected `owner/name`"),
                    );
                    return None;
                }
                let revision = w.revision.clone().unwrap_or_else(|| "main".to_string());
                if revision.is_empty() || revision.contains(char::is_whitespace) {
                    self.err("model.revision", format!("`{revision}` is not a revision; expected a branch or tag name, or a 40-hex commit"));
                    return None;
                }
                let revision = if is_commit(&revision) {
                    revision.to_ascii_lowercase()
                } else {
                    revision
                };
                Some(Model::Hub {
                    served_name: w.served_name.clone().unwrap_or_else(|| repo.clone()),
                    repo: repo.clone(),
                    revision,
                })
            }
            (None, Some(file)) => {
                self.forbid(
                    "model.revision",
                    &w.revision,
                    "a local file is pinned by `sha256`, not a revision",
                );
                let sha = match &w.sha256 {
                    None => {
                        self.err("model.sha256", format!("missing; a model file must be pinned: add `sha256 = \"<64 hex>\"` (run `sha256sum {file}`)"));
                        None
                    }
                    Some(s) => self.sha("model.sha256", s),
                };
                if file.is_empty() {
                    self.err(
                        "model.file",
                        "empty; expected the weights file, e.g. `model.gguf`",
                    );
                    return None;
                }
                let stem = std::path::Path::new(file)
                    .file_stem()
                    .map_or_else(|| file.clone(), |s| s.to_string_lossy().into_owned());
                Some(Model::File {
                    served_name: w.served_name.clone().unwrap_or(stem),
                    file: file.clone(),
                    sha256: sha?,
                })
            }
            (None, None) => {
                if is_sim {
                    self.forbid(
                        "model.revision",
                        &w.revision,
                        "the sim server has no weights",
                    );
                    self.forbid("model.sha256", &w.sha256, "the sim server has no weights");
                    return Some(Model::None {
                        served_name: w.served_name.clone().unwrap_or_else(|| "sim".to_string()),
                    });
                }
                self.err("model.repo", "missing; expected `repo = \"owner/name\"` (with `revision`), or `file` with `sha256`");
                None
            }
        }
    }

    fn workload(&mut self, w: Option<WorkloadWire>, load_mode: Option<&str>) -> Option<Workload> {
        let Some(w) = w else {
            self.missing_table("workload", "`input-tokens` and `output-tokens`");
            return None;
        };
        let api = self.choice(
            "workload.api",
            w.api.as_deref(),
            Some(Api::Completions),
            Api::parse,
            &Api::names(),
            "an API",
        );
        let dataset_kind = self.choice(
            "workload.dataset",
            w.dataset.as_deref(),
            Some("random"),
            |s| ["random", "file"].into_iter().find(|k| *k == s),
            &["random", "file"],
            "a dataset",
        );
        let dataset = match dataset_kind {
            Some("file") => {
                for (key, v) in [
                    ("workload.token-id-min", w.token_id_min),
                    ("workload.token-id-max", w.token_id_max),
                ] {
                    self.forbid(key, &v, "token ids apply to `dataset = \"random\"`");
                }
                let path = match &w.dataset_file {
                    Some(p) if !p.is_empty() => Some(p.clone()),
                    _ => {
                        self.err("workload.dataset-file", "missing; `dataset = \"file\"` needs `dataset-file = \"path/to/sharegpt.json\"` (relative to this file)");
                        None
                    }
                };
                let sha = match &w.dataset_sha256 {
                    None => {
                        self.err("workload.dataset-sha256", "missing; a dataset file must be pinned: add `dataset-sha256 = \"<64 hex>\"`");
                        None
                    }
                    Some(s) => self.sha("workload.dataset-sha256", s),
                };
                match (path, sha) {
                    (Some(path), Some(sha256)) => Some(Dataset::File { path, sha256 }),
                    _ => None,
                }
            }
            Some(_) => {
                self.forbid(
                    "workload.dataset-file",
                    &w.dataset_file,
                    "only for `dataset = \"file\"`",
                );
                self.forbid(
                    "workload.dataset-sha256",
                    &w.dataset_sha256,
                    "only for `dataset = \"file\"`",
                );
                if api == Some(Api::Chat) {
                    for (key, v) in [
                        ("workload.token-id-min", w.token_id_min),
                        ("workload.token-id-max", w.token_id_max),
                    ] {
                        self.forbid(key, &v, "token-id prompts are for `api = \"completions\"`; chat prompts are text");
                    }
                }
                let lo = self.int(
                    "workload.token-id-min",
                    w.token_id_min,
                    Some(1000),
                    0,
                    i64::from(i32::MAX),
                );
                let hi = self.int(
                    "workload.token-id-max",
                    w.token_id_max,
                    Some(10000),
                    0,
                    i64::from(i32::MAX),
                );
                match (lo, hi) {
                    (Some(lo), Some(hi)) if lo > hi => {
                        self.err("workload.token-id-max", format!("{hi} is below `token-id-min` ({lo}); expected token-id-min <= token-id-max"));
                        None
                    }
                    (Some(lo), Some(hi)) => Some(Dataset::Random {
                        token_id_min: lo as u32,
                        token_id_max: hi as u32,
                    }),
                    _ => None,
                }
            }
            None => None,
        };
        let input = self.int("workload.input-tokens", w.input_tokens, None, 1, MAX_TOKENS);
        let output = self.int(
            "workload.output-tokens",
            w.output_tokens,
            None,
            1,
            MAX_TOKENS,
        );
        let ratio = self.float(
            "workload.range-ratio",
            w.range_ratio,
            Some(1.0),
            0.0,
            true,
            1.0,
        );
        let seed = self.int("workload.seed", w.seed, Some(0), 0, MAX_SAFE_INTEGER);
        if load_mode == Some("rate") {
            self.forbid(
                "workload.requests-per-client",
                &w.requests_per_client,
                "open-loop (`load.mode = \"rate\"`) points count requests with `load.requests`",
            );
            self.forbid(
                "workload.warmup-per-client",
                &w.warmup_per_client,
                "open-loop (`load.mode = \"rate\"`) points use `load.warmup-requests`",
            );
        }
        let per_client = self.int(
            "workload.requests-per-client",
            w.requests_per_client,
            Some(10),
            1,
            MAX_REQUESTS,
        );
        let warmup = self.int(
            "workload.warmup-per-client",
            w.warmup_per_client,
            Some(2),
            0,
            MAX_REQUESTS,
        );
        let timeout = self.int(
            "workload.request-timeout-s",
            w.request_timeout_s,
            Some(600),
            1,
            MAX_TIMEOUT_S,
        );
        Some(Workload {
            api: api?,
            dataset: dataset?,
            input_tokens: input? as u32,
            output_tokens: output? as u32,
            range_ratio: ratio?,
            ignore_eos: w.ignore_eos.unwrap_or(true),
            seed: seed? as u64,
            requests_per_client: per_client? as u32,
            warmup_per_client: warmup? as u32,
            request_timeout_s: timeout? as u64,
        })
    }

    fn load(&mut self, w: Option<LoadWire>) -> Option<Sweep> {
        let Some(w) = w else {
            self.missing_table("load", "`concurrency = [...]` or `rate = [...]`");
            return None;
        };
        let mode = match (w.mode.as_deref(), &w.concurrency, &w.rate) {
            (None, Some(_), Some(_)) => {
                self.err(
                    "load.rate",
                    "`concurrency` and `rate` are alternatives; keep one, or set `mode`",
                );
                return None;
            }
            (None, None, None) => {
                self.err("load.concurrency", "missing; expected a list of client counts, e.g. `concurrency = [4, 8, 16]` (or `rate = [...]` for open loop)");
                return None;
            }
            (None, Some(_), None) => "concurrency",
            (None, None, Some(_)) => "rate",
            (Some(m), _, _) => self.choice(
                "load.mode",
                Some(m),
                None,
                |s| ["concurrency", "rate"].into_iter().find(|k| *k == s),
                &["concurrency", "rate"],
                "a load mode",
            )?,
        };
        let duration_s = match w.duration_s {
            None => None,
            Some(v) => Some(self.int("load.duration-s", Some(v), None, 1, MAX_TIMEOUT_S)? as u64),
        };
        let levels = if mode == "concurrency" {
            self.forbid("load.rate", &w.rate, "only for `mode = \"rate\"`");
            for (key, present) in [
                ("load.burstiness", w.burstiness.is_some()),
                ("load.max-concurrency", w.max_concurrency.is_some()),
                ("load.requests", w.requests.is_some()),
                ("load.warmup-requests", w.warmup_requests.is_some()),
            ] {
                if present {
                    self.err(key, "only for `mode = \"rate\"` (open loop); closed-loop points use `workload.requests-per-client`; remove it");
                }
            }
            let Some(list) = w.concurrency else {
                self.err(
                    "load.concurrency",
                    "missing; `mode = \"concurrency\"` needs a list, e.g. `concurrency = [4, 8]`",
                );
                return None;
            };
            let list = self.list_ints("load.concurrency", &list, 1, MAX_CONCURRENCY)?;
            list.into_iter()
                .map(|c| LoadLevel::Concurrency {
                    concurrency: c as u32,
                    duration_s,
                })
                .collect()
        } else {
            self.forbid(
                "load.concurrency",
                &w.concurrency,
                "only for `mode = \"concurrency\"`; use `max-concurrency` to cap an open loop",
            );
            let Some(list) = w.rate else {
                self.err("load.rate", "missing; `mode = \"rate\"` needs request rates per second, e.g. `rate = [1.0, 2.0]`");
                return None;
            };
            let burstiness = self.float(
                "load.burstiness",
                w.burstiness,
                Some(1.0),
                0.0,
                false,
                100.0,
            );
            let max_conc = match w.max_concurrency {
                None => Some(None),
                Some(v) => self
                    .int("load.max-concurrency", Some(v), None, 1, MAX_CONCURRENCY)
                    .map(|v| Some(v as u32)),
            };
            let requests = if duration_s.is_some() {
                self.int(
                    "load.requests",
                    w.requests,
                    Some(MAX_REQUESTS),
                    1,
                    MAX_REQUESTS,
                )
            } else {
                match w.requests {
                    None => {
                        self.err("load.requests", "missing; an open-loop point needs `requests = N` (measured requests per rate) or `duration-s`");
                        None
                    }
                    v => self.int("load.requests", v, None, 1, MAX_REQUESTS),
                }
            };
            let warmup = self.int(
                "load.warmup-requests",
                w.warmup_requests,
                Some(0),
                0,
                MAX_REQUESTS,
            );
            let mut rates = Vec::new();
            let mut ok = true;
            for (i, r) in list.iter().enumerate() {
                if !r.is_finite() || *r <= 0.0 || *r > MAX_RATE {
                    self.err(
                        &format!("load.rate[{i}]"),
                        format!(
                            "{r} is out of range; expected requests per second in (0, {MAX_RATE}]"
                        ),
                    );
                    ok = false;
                } else if rates.contains(r) {
                    self.err(
                        &format!("load.rate[{i}]"),
                        format!("{r} is listed twice; each rate is one point"),
                    );
                    ok = false;
                } else {
                    rates.push(*r);
                }
            }
            if list.is_empty() {
                self.err("load.rate", "empty; expected at least one rate");
                ok = false;
            }
            let (burstiness, max_concurrency, requests, warmup) =
                (burstiness?, max_conc?, requests?, warmup?);
            if !ok {
                return None;
            }
            rates
                .into_iter()
                .map(|rate| LoadLevel::Rate {
                    rate,
                    burstiness,
                    max_concurrency,
                    requests: requests as u32,
                    warmup_requests: warmup as u32,
                    duration_s,
                })
                .collect()
        };
        Some(Sweep { levels })
    }

    fn list_ints(&mut self, key: &str, list: &[i64], lo: i64, hi: i64) -> Option<Vec<i64>> {
        if list.is_empty() {
            self.err(key, "empty; expected at least one value");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in list.iter().enumerate() {
            if *v < lo || *v > hi {
                self.err(
                    &format!("{key}[{i}]"),
                    format!("{v} is out of range; expected an integer from {lo} to {hi}"),
                );
                ok = false;
            } else if out.contains(v) {
                self.err(
                    &format!("{key}[{i}]"),
                    format!("{v} is listed twice; each value is one point"),
                );
                ok = false;
            } else {
                out.push(*v);
            }
        }
        ok.then_some(out)
    }

    fn slo(&mut self, w: Option<SloWire>) -> Slo {
        let w = w.unwrap_or_default();
        let mut one = |key: &str, v: Option<f64>| {
            v.and_then(|v| self.float(key, Some(v), None, 0.0, false, 1e9))
        };
        Slo {
            ttft_ms: one("slo.ttft-ms", w.ttft_ms),
            tpot_ms: one("slo.tpot-ms", w.tpot_ms),
            e2el_ms: one("slo.e2el-ms", w.e2el_ms),
        }
    }

    fn verify(&mut self, w: Option<VerifyWire>) -> Verify {
        let w = w.unwrap_or_default();
        let repeats = self
            .int("verify.repeats", w.repeats, Some(3), 1, 100)
            .unwrap_or(3) as u32;
        let max_repeats = self
            .int(
                "verify.max-repeats",
                w.max_repeats,
                Some(i64::from(Verify::DEFAULT_MAX_REPEATS)),
                2,
                100,
            )
            .unwrap_or(i64::from(Verify::DEFAULT_MAX_REPEATS)) as u32;
        if repeats > max_repeats {
            self.err(
                "verify.repeats",
                format!(
                    "{repeats} re-runs before the first judgement exceed `verify.max-repeats` = {max_repeats}; raise max-repeats or lower repeats"
                ),
            );
        }
        let mut tolerance: BTreeMap<String, f64> = VerifyMetric::ALL
            .iter()
            .map(|m| (m.as_str().to_string(), m.default_tolerance()))
            .collect();
        for (name, v) in w.tolerance.unwrap_or_default() {
            let key = format!("verify.tolerance.{name}");
            if VerifyMetric::parse(&name).is_none() {
                let names = VerifyMetric::names();
                let hint = did_you_mean(&name, &names)
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_default();
                self.err(
                    &key,
                    format!("unknown metric; expected one of {}{hint}", one_of(&names)),
                );
                continue;
            }
            if let Some(v) = self.float(&key, Some(v), None, 0.0, false, 1.0) {
                tolerance.insert(name, v);
            }
        }
        Verify {
            repeats,
            max_repeats,
            tolerance,
        }
    }
}
