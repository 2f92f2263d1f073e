//! Spec tests: error messages (snapshots), canonical-form invariance and
//! sensitivity (property tests).

use std::path::Path;

use proptest::prelude::*;

use super::*;

fn parse_str(text: &str) -> Result<Experiment, SpecError> {
    parse(Path::new("experiments/x.toml"), text)
}

fn ids(text: &str) -> Vec<String> {
    parse_str(text)
        .unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
        .points(&NoPins)
        .unwrap()
        .iter()
        .map(|p| p.id().to_string())
        .collect()
}

fn errors(text: &str) -> String {
    match parse_str(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const BASE: &str = r#"
schema = 1
name = "t"
[hardware]
class = "nvidia-h200-sxm"
gpus = 8
[engine]
kind = "sglang"
runtime = "docker"
image = "lmsysorg/sglang:v0.5.12-cu130"
args = ["--tp", "8"]
[model]
repo = "deepseek-ai/DeepSeek-R1-0528"
revision = "main"
[workload]
input-tokens = 8192
output-tokens = 1024
range-ratio = 0.8
[load]
concurrency = [4, 8]
"#;

#[test]
fn the_same_experiment_written_two_ways_has_the_same_ids() {
    let other = r#"
# keys reordered, comments, defaults spelled out, dotted keys, inline tables
load = { mode = "concurrency", concurrency = [4, 8] }
model.revision = "main"            # a branch until locked
model.repo = "deepseek-ai/DeepSeek-R1-0528"
schema = 1
name = "another label"
description = "labels never change an id"

[workload]
output-tokens   =   1024
input-tokens = 8_192
range-ratio = 0.80
api = "completions"
dataset = "random"
ignore-eos = true
seed = 0
requests-per-client = 10
warmup-per-client = 2
token-id-min = 1000
token-id-max = 10000
request-timeout-s = 600

[engine]
env = {}
args = [ "--tp",
  "8" ]
image = "docker.io/lmsysorg/sglang:v0.5.12-cu130"
runtime = "docker"
kind = "sglang"
port = 8000
tensor-parallel = 8
readiness-path = "/health"
readiness-timeout-s = 1800

[hardware]
gpus = 8
class = "nvidia-h200-sxm"

[verify]
repeats = 3
tolerance = { output-throughput = 0.05, median-ttft = 0.1 }
"#;
    assert_eq!(ids(BASE), ids(other));
    let longer = BASE.replace("input-tokens = 8192", "input-tokens = 8000");
    let changed = ids(&longer);
    assert_ne!(ids(BASE)[0], changed[0]);
    assert_ne!(ids(BASE)[1], changed[1]);
}

#[test]
fn points_pin_through_the_lock() {
    struct Lock;
    impl Pins for Lock {
        fn image_digest(&self, tagged: &str) -> Option<Sha256> {
            (tagged == "docker.io/lmsysorg/sglang:v0.5.12-cu130")
                .then(|| Sha256::parse(&"a".repeat(64)).unwrap())
        }
        fn model_commit(&self, repo: &str, rev: &str) -> Option<String> {
            (repo == "deepseek-ai/DeepSeek-R1-0528" && rev == "main").then(|| "b".repeat(40))
        }
        fn file_sha256(&self, _: &str) -> Option<Sha256> {
            None
        }
    }
    let e = parse_str(BASE).unwrap();
    let unlocked = e.points(&NoPins).unwrap();
    let keys: Vec<&str> = unlocked[0].unpinned().iter().map(|u| u.key).collect();
    assert_eq!(keys, ["engine.image", "model.revision"]);
    insta::assert_snapshot!(unlocked[0].unpinned()[0].to_string(), @"`engine.image`: `docker.io/lmsysorg/sglang:v0.5.12-cu130` is not pinned; run `infermark lock set docker.io/lmsysorg/sglang:v0.5.12-cu130 sha256:<digest>` (or write the digest into the spec)");
    let locked = e.points(&Lock).unwrap();
    assert!(locked[0].unpinned().is_empty());
    // A spec that writes the pins itself gives the very same point.
    let pinned_in_spec = BASE
        .replace(":v0.5.12-cu130", &format!("@sha256:{}", "A".repeat(64)))
        .replace(
            "revision = \"main\"",
            &format!("revision = \"{}\"", "b".repeat(40)),
        );
    assert_eq!(
        ids(&pinned_in_spec),
        locked
            .iter()
            .map(|p| p.id().to_string())
            .collect::<Vec<_>>()
    );
}

#[test]
fn canonical_bytes_read_back_into_the_same_point() {
    let points = parse_str(BASE).unwrap().points(&NoPins).unwrap();
    for p in points {
        let back = Point::from_canonical(p.canonical_bytes()).unwrap();
        assert_eq!(back.id(), p.id());
        let mut pretty = serde_json::to_vec_pretty(&p.spec).unwrap();
        assert!(Point::from_canonical(&pretty).is_err());
        pretty.clear();
    }
}

#[test]
fn error_messages() {
    insta::assert_snapshot!(errors(&BASE.replace("input-tokens", "inptu-tokens")), @"
    experiments/x.toml: `workload.inptu-tokens`: unknown key; did you mean `input-tokens`? keys allowed in [workload]: `api`, `dataset`, `dataset-file`, `dataset-sha256`, `input-tokens`, `output-tokens`, `range-ratio`, `ignore-eos`, `seed`, `requests-per-client`, `warmup-per-client`, `token-id-min`, `token-id-max` or `request-timeout-s`
    experiments/x.toml: `workload.input-tokens`: missing; expected an integer from 1 to 1048576
    ");
    insta::assert_snapshot!(errors(&BASE.replace("output-tokens = 1024", "output-tokens = 0")), @"experiments/x.toml: `workload.output-tokens`: 0 is out of range; expected an integer from 1 to 1048576");
    insta::assert_snapshot!(errors(&BASE.replace("kind = \"sglang\"", "kind = \"sglng\"")), @"experiments/x.toml: `engine.kind`: `sglng` is not an engine kind; expected one of `vllm`, `sglang`, `trtllm`, `llamacpp`, `sim` or `openai`; did you mean `sglang`?");
    insta::assert_snapshot!(errors(&BASE.replace("gpus = 8", "gpus = 9")), @"experiments/x.toml: `hardware.gpus`: 9 is out of range; expected an integer from 1 to 8");
    insta::assert_snapshot!(errors(&BASE.replace("[hardware]", "[hardware")), @"experiments/x.toml:4:10: TOML syntax error: unclosed table, expected `]`");
    insta::assert_snapshot!(errors(&BASE.replace("range-ratio = 0.8", "range-ratio = nan\nseed = 9007199254740993")), @r"
    experiments/x.toml: `workload.range-ratio`: NaN is not a finite number; NaN and infinities are not allowed
    experiments/x.toml: `workload.seed`: 9007199254740993 is beyond 2^53 - 1 = 9007199254740991, which canonical JSON cannot hold exactly; use a smaller value
    ");
    insta::assert_snapshot!(errors(&BASE.replace("input-tokens = 8192", "input-tokens = \"8k\"")), @r#"experiments/x.toml: `workload.input-tokens`: wrong type: string "8k", expected an integer"#);
    insta::assert_snapshot!(errors(&BASE.replace("concurrency = [4, 8]", "rate = [1.0]\nburstiness = 0")), @r"
    experiments/x.toml: `load.burstiness`: 0 is out of range; expected a number in (0, 100]
    experiments/x.toml: `load.requests`: missing; an open-loop point needs `requests = N` (measured requests per rate) or `duration-s`
    ");
    insta::assert_snapshot!(errors(&BASE.replace("runtime = \"docker\"", "runtime = \"process\"")), @r#"
    experiments/x.toml: `engine.image`: not allowed with runtime `process`; use `engine.command`, or a container runtime (`docker`, `podman`, `apptainer`)
    experiments/x.toml: `engine.command`: missing; runtime `process` needs the server executable, e.g. `command = "llama-server"`
    "#);
}

#[test]
fn every_error_of_a_file_is_reported() {
    let text = BASE
        .replace("input-tokens", "inptu-tokens")
        .replace("gpus = 8", "gpus = 0\ncolour = \"red\"")
        .replace("[4, 8]", "[4, 0, 4]");
    insta::assert_snapshot!(errors(&text), @r"
    experiments/x.toml: `hardware.colour`: unknown key; keys allowed in [hardware]: `class` or `gpus`
    experiments/x.toml: `workload.inptu-tokens`: unknown key; did you mean `input-tokens`? keys allowed in [workload]: `api`, `dataset`, `dataset-file`, `dataset-sha256`, `input-tokens`, `output-tokens`, `range-ratio`, `ignore-eos`, `seed`, `requests-per-client`, `warmup-per-client`, `token-id-min`, `token-id-max` or `request-timeout-s`
    experiments/x.toml: `hardware.gpus`: 0 is out of range; expected an integer from 1 to 8
    experiments/x.toml: `workload.input-tokens`: missing; expected an integer from 1 to 1048576
    experiments/x.toml: `load.concurrency[1]`: 0 is out of range; expected an integer from 1 to 100000
    experiments/x.toml: `load.concurrency[2]`: 4 is listed twice; each value is one point
    ");
}

// ---- property tests ------------------------------------------------------

/// A random experiment: values that matter, as (table, key, TOML value).
#[derive(Debug, Clone)]
struct Gen {
    gpus: u32,
    kind: &'static str,
    tag: String,
    input: u32,
    output: u32,
    ratio_tenths: u32,
    seed: u64,
    conc: Vec<u32>,
    args: Vec<String>,
    ignore_eos: bool,
}

fn experiments() -> impl Strategy<Value = Gen> {
    (
        1u32..=8,
        prop::sample::select(vec!["vllm", "sglang", "trtllm"]),
        "[a-z0-9]{1,6}",
        1u32..=100_000,
        1u32..=100_000,
        0u32..=10,
        0u64..=(1u64 << 53) - 1,
        prop::collection::btree_set(1u32..=512, 1..5),
        prop::collection::vec("[a-z-]{1,8}", 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(gpus, kind, tag, input, output, ratio_tenths, seed, conc, args, ignore_eos)| Gen {
                gpus,
                kind,
                tag,
                input,
                output,
                ratio_tenths,
                seed,
                conc: conc.into_iter().collect(),
                args,
                ignore_eos,
            },
        )
}

/// Rendering choices that must never change an id.
#[derive(Debug, Clone)]
struct Style {
    /// Per table: 0 = `[table]`, 1 = dotted keys, 2 = inline table.
    forms: Vec<u8>,
    /// Seeds for shuffling keys and tables.
    shuffle: u64,
    comments: bool,
    defaults: bool,
    short_image: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (
        prop::collection::vec(0u8..3, 5),
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(forms, shuffle, comments, defaults, short_image)| Style {
            forms,
            shuffle,
            comments,
            defaults,
            short_image,
        })
}

fn quote_list<T: std::fmt::Display>(items: &[T], quote: bool) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|i| {
            if quote {
                format!("\"{i}\"")
            } else {
                i.to_string()
            }
        })
        .collect();
    format!("[{}]", inner.join(", "))
}

fn render(g: &Gen, s: &Style) -> String {
    let image = if s.short_image {
        format!("vllm/vllm-openai:{}", g.tag)
    } else {
        format!("docker.io/vllm/vllm-openai:{}", g.tag)
    };
    let ratio = if g.ratio_tenths == 10 {
        "1".to_string()
    } else {
        format!("0.{}", g.ratio_tenths)
    };
    let mut tables: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "hardware",
            vec![
                ("class".into(), "\"nvidia-b200\"".into()),
                ("gpus".into(), g.gpus.to_string()),
            ],
        ),
        (
            "engine",
            vec![
                ("kind".into(), format!("\"{}\"", g.kind)),
                ("runtime".into(), "\"podman\"".into()),
                ("image".into(), format!("\"{image}\"")),
                ("args".into(), quote_list(&g.args, true)),
            ],
        ),
        (
            "model",
            vec![
                ("repo".into(), "\"openai/gpt-oss-120b\"".into()),
                ("revision".into(), "\"main\"".into()),
            ],
        ),
        (
            "workload",
            vec![
                ("input-tokens".into(), g.input.to_string()),
                ("output-tokens".into(), g.output.to_string()),
                ("range-ratio".into(), ratio),
                ("seed".into(), g.seed.to_string()),
                ("ignore-eos".into(), g.ignore_eos.to_string()),
            ],
        ),
        (
            "load",
            vec![("concurrency".into(), quote_list(&g.conc, false))],
        ),
    ];
    if s.defaults {
        tables[1].1.extend([
            ("port".to_string(), "8000".to_string()),
            ("env".to_string(), "{}".to_string()),
            ("tensor-parallel".to_string(), g.gpus.to_string()),
            ("readiness-path".to_string(), "\"/health\"".to_string()),
        ]);
        tables[3].1.extend([
            ("api".to_string(), "\"completions\"".to_string()),
            ("dataset".to_string(), "\"random\"".to_string()),
            ("requests-per-client".to_string(), "10".to_string()),
            ("warmup-per-client".to_string(), "2".to_string()),
            ("token-id-min".to_string(), "1000".to_string()),
        ]);
        tables[4]
            .1
            .push(("mode".to_string(), "\"concurrency\"".to_string()));
        tables.push(("verify", vec![("repeats".into(), "3".into())]));
    }
    let mut rng = crate::rng::Rng::new(s.shuffle, 0);
    let mut shuffle = |n: usize| -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            idx.swap(i, rng.range_inclusive(0, i as u64) as usize);
        }
        idx
    };
    let order = shuffle(tables.len());
    let mut top = String::from("schema = 1\n");
    let mut headed = String::new();
    for t in order {
        let (name, keys) = &tables[t];
        let form = s.forms.get(t).copied().unwrap_or(0);
        let key_order = shuffle(keys.len());
        let comment = if s.comments { "   # note\n" } else { "\n" };
        match form {
            1 => {
                for k in key_order {
                    top.push_str(&format!("{name}.{} = {}{comment}", keys[k].0, keys[k].1));
                }
            }
            2 => {
                let inner: Vec<String> = key_order
                    .iter()
                    .map(|k| format!("{} = {}", keys[*k].0, keys[*k].1))
                    .collect();
                top.push_str(&format!("{name} = {{ {} }}{comment}", inner.join(", ")));
            }
            _ => {
                headed.push_str(&format!("\n[{name}]{comment}"));
                for k in key_order {
                    if s.comments {
                        headed.push_str("# a comment line\n");
                    }
                    headed.push_str(&format!("{}  =  {}\n", keys[k].0, keys[k].1));
                }
            }
        }
    }
    top + &headed
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn presentation_never_changes_an_id(g in experiments(), a in style(), b in style()) {
        prop_assert_eq!(ids(&render(&g, &a)), ids(&render(&g, &b)));
    }

    #[test]
    fn a_changed_measurement_value_always_changes_the_id(g in experiments(), s in style(), which in 0usize..8) {
        let mut h = g.clone();
        match which {
            0 => h.gpus = if g.gpus == 8 { 7 } else { g.gpus + 1 },
            1 => h.kind = if g.kind == "vllm" { "sglang" } else { "vllm" },
            2 => h.tag.push('x'),
            3 => h.input = if g.input == 1 { 2 } else { g.input - 1 },
            4 => h.output = if g.output == 1 { 2 } else { g.output - 1 },
            5 => h.ratio_tenths = (g.ratio_tenths + 1) % 11,
            6 => h.seed = g.seed ^ 1,
            _ => h.args.push("--x".to_string()),
        }
        let before = ids(&render(&g, &s));
        let after = ids(&render(&h, &s));
        for (x, y) in before.iter().zip(&after) {
            prop_assert_ne!(x, y);
        }
    }
}
