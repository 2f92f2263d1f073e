use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use super::*;

fn random_params(api: Api, input_tokens: u32, range_ratio: f64) -> WorkloadParams {
    WorkloadParams {
        api,
        dataset: Dataset::Random {
            token_id_min: 100,
            token_id_max: 31_999,
        },
        input_tokens,
        output_tokens: 16,
        range_ratio,
        ignore_eos: true,
        seed: 42,
        model: "test-model".to_owned(),
    }
}

fn json(request: &PreparedRequest) -> Value {
    serde_json::from_slice(&request.body).expect("request body is JSON")
}

fn prompt_ids(request: &PreparedRequest) -> Vec<u64> {
    json(request)["prompt"]
        .as_array()
        .expect("completions prompt is an array")
        .iter()
        .map(|v| v.as_u64().expect("token ids are integers"))
        .collect()
}

fn chat_text(request: &PreparedRequest) -> String {
    let v = json(request);
    assert_eq!(v["messages"][0]["role"], "user");
    v["messages"][0]["content"]
        .as_str()
        .expect("chat content is a string")
        .to_owned()
}

fn bodies(requests: &[PreparedRequest]) -> Vec<Bytes> {
    requests.iter().map(|r| r.body.clone()).collect()
}

#[test]
fn length_bounds_follow_the_ceiling_of_ratio_times_n() {
    assert_eq!(length_bounds(1024, 0.8), 820..=1024); // 819.2 → 820
    assert_eq!(length_bounds(100, 0.8), 80..=100);
    assert_eq!(length_bounds(100, 1.0), 100..=100);
    assert_eq!(length_bounds(100, 0.0), 1..=100);
    assert_eq!(length_bounds(1, 0.5), 1..=1);
    // 0.07 × 100 is 7.000000000000001 in binary floating point.
    assert_eq!(length_bounds(100, 0.07), 7..=100);
    assert_eq!(length_bounds(10, 0.71), 8..=10); // 7.1 → 8
}

#[test]
fn completion_prompts_have_exactly_the_drawn_length_within_bounds() {
    let params = random_params(Api::Completions, 64, 0.5);
    let requests = generate(&params, 0, 200).expect("generate");
    for request in &requests.measured {
        assert_eq!(prompt_ids(request).len(), request.input_tokens as usize);
        assert!(length_bounds(64, 0.5).contains(&request.input_tokens));
        assert!(length_bounds(16, 0.5).contains(&request.max_output_tokens));
        assert_eq!(json(request)["max_tokens"], request.max_output_tokens);
    }
}

#[test]
fn ratio_one_gives_exactly_the_nominal_lengths() {
    for api in [Api::Completions, Api::Chat] {
        let requests = generate(&random_params(api, 37, 1.0), 3, 50).expect("generate");
        for request in requests.warmup.iter().chain(&requests.measured) {
            assert_eq!(request.input_tokens, 37);
            assert_eq!(request.max_output_tokens, 16);
        }
    }
}

#[test]
fn lengths_hit_both_ends_and_average_one_plus_ratio_over_two() {
    let mut params = random_params(Api::Completions, 100, 0.8);
    params.output_tokens = 200;
    let requests = generate(&params, 0, 4000).expect("generate");
    let inputs: Vec<u32> = requests.measured.iter().map(|r| r.input_tokens).collect();
    let outputs: Vec<u32> = requests
        .measured
        .iter()
        .map(|r| r.max_output_tokens)
        .collect();
    for (values, n) in [(&inputs, 100u32), (&outputs, 200u32)] {
        let lo = (n as f64 * 0.8) as u32;
        assert!(values.iter().all(|v| (lo..=n).contains(v)));
        assert!(values.contains(&lo), "lower end {lo} never drawn");
        assert!(values.contains(&n), "upper end {n} never drawn");
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64;
        // Uniform over [0.8n, n]: mean 0.9n; standard error here is < 0.2% of n.
        assert!(
            (mean - 0.9 * f64::from(n)).abs() < 0.01 * f64::from(n),
            "mean {mean} for n {n}"
        );
    }
}

#[test]
fn token_ids_stay_in_range_and_cover_it() {
    let mut params = random_params(Api::Completions, 200, 1.0);
    params.dataset = Dataset::Random {
        token_id_min: 10,
        token_id_max: 19,
    };
    let requests = generate(&params, 2, 20).expect("generate");
    let mut seen = HashSet::new();
    for request in requests.warmup.iter().chain(&requests.measured) {
        for id in prompt_ids(request) {
            assert!((10..=19).contains(&id), "token id {id} out of range");
            seen.insert(id);
        }
    }
    assert_eq!(seen.len(), 10);
}

#[test]
fn a_full_u32_token_range_works() {
    let mut params = random_params(Api::Completions, 5, 1.0);
    params.dataset = Dataset::Random {
        token_id_min: 0,
        token_id_max: u32::MAX,
    };
    let requests = generate(&params, 0, 3).expect("generate");
    assert_eq!(prompt_ids(&requests.measured[2]).len(), 5);
    // One digit of base 2^32 carries the whole salt: 2·2 + 0 for measured #2.
    assert_eq!(prompt_ids(&requests.measured[2])[0], 4);
}

#[test]
fn same_seed_gives_byte_identical_bodies() {
    for api in [Api::Completions, Api::Chat] {
        let params = random_params(api, 50, 0.8);
        let a = generate(&params, 4, 30).expect("generate");
        let b = generate(&params, 4, 30).expect("generate");
        assert_eq!(bodies(&a.warmup), bodies(&b.warmup));
        assert_eq!(bodies(&a.measured), bodies(&b.measured));
    }
}

#[test]
fn a_different_seed_gives_different_bodies() {
    for api in [Api::Completions, Api::Chat] {
        let params = random_params(api, 50, 0.8);
        let other = WorkloadParams {
            seed: 43,
            ..params.clone()
        };
        let a = generate(&params, 0, 10).expect("generate");
        let b = generate(&other, 0, 10).expect("generate");
        for (x, y) in a.measured.iter().zip(&b.measured) {
            assert_ne!(x.body, y.body);
        }
    }
}

#[test]
fn warmup_count_does_not_change_measured_requests() {
    let params = random_params(Api::Completions, 50, 0.8);
    let none = generate(&params, 0, 20).expect("generate");
    let some = generate(&params, 7, 20).expect("generate");
    assert_eq!(bodies(&none.measured), bodies(&some.measured));
}

#[test]
fn request_i_does_not_depend_on_the_request_count() {
    let params = random_params(Api::Chat, 50, 0.8);
    let short = generate(&params, 3, 5).expect("generate");
    let long = generate(&params, 9, 40).expect("generate");
    assert_eq!(bodies(&short.measured), bodies(&long.measured[..5]));
    assert_eq!(bodies(&short.warmup), bodies(&long.warmup[..3]));
}

#[test]
fn every_prompt_starts_with_a_distinct_salt() {
    for api in [Api::Completions, Api::Chat] {
        let requests = generate(&random_params(api, 20, 1.0), 50, 300).expect("generate");
        let firsts: HashSet<String> = requests
            .warmup
            .iter()
            .chain(&requests.measured)
            .map(|r| match api {
                Api::Completions => format!("{:?}", &prompt_ids(r)[..3]),
                Api::Chat => chat_text(r)
                    .split(' ')
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(" "),
            })
            .collect();
        assert_eq!(firsts.len(), 350, "{api:?}: salts collide");
    }
}

#[test]
fn salt_is_fixed_width_little_endian() {
    assert_eq!(salt_digits(0, 256), vec![0, 0, 0, 0]);
    assert_eq!(salt_digits(0x0102_0304, 256), vec![4, 3, 2, 1]);
    assert_eq!(salt_digits(u32::MAX, 32_000).len(), 3);
    assert_eq!(salt_digits(5, 2).len(), 32);
    assert!(salt_digits(5, 1).is_empty());
}

#[test]
fn measured_and_warmup_salts_never_coincide() {
    assert_eq!(Phase::Measured.salt(0), 0);
    assert_eq!(Phase::Warmup.salt(0), 1);
    assert_eq!(Phase::Measured.salt(3), 6);
    assert_eq!(Phase::Warmup.salt(3), 7);
}

#[test]
fn chat_word_count_equals_the_target_length() {
    let requests = generate(&random_params(Api::Chat, 300, 0.5), 0, 50).expect("generate");
    let vocabulary: HashSet<&str> = words::WORDS.iter().copied().collect();
    for request in &requests.measured {
        let text = chat_text(request);
        let words: Vec<&str> = text.split(' ').collect();
        assert_eq!(words.len(), request.input_tokens as usize);
        assert!(
            words.iter().all(|w| vocabulary.contains(w)),
            "word outside the list in {text}"
        );
    }
}

#[test]
fn word_list_has_256_distinct_lowercase_words() {
    let distinct: HashSet<&str> = words::WORDS.iter().copied().collect();
    assert_eq!(distinct.len(), 256);
    assert!(
        words::WORDS
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
    );
}

#[test]
fn prompts_shorter_than_the_salt_keep_its_first_digits() {
    let requests = generate(&random_params(Api::Completions, 1, 1.0), 0, 3).expect("generate");
    let firsts: Vec<u64> = requests.measured.iter().map(|r| prompt_ids(r)[0]).collect();
    assert_eq!(firsts, vec![100, 102, 104]); // token_id_min + 2·index
}

#[test]
fn invalid_parameters_are_rejected_naming_the_key() {
    let cases: Vec<(WorkloadParams, &str)> = vec![
        (
            random_params(Api::Completions, 10, 1.5),
            "workload.range-ratio",
        ),
        (
            random_params(Api::Completions, 10, f64::NAN),
            "workload.range-ratio",
        ),
        (
            random_params(Api::Completions, 0, 1.0),
            "workload.input-tokens",
        ),
        (
            WorkloadParams {
                output_tokens: 0,
                ..random_params(Api::Chat, 10, 1.0)
            },
            "workload.output-tokens",
        ),
        (
            WorkloadParams {
                dataset: Dataset::Random {
                    token_id_min: 5,
                    token_id_max: 4,
                },
                ..random_params(Api::Completions, 10, 1.0)
            },
            "workload.token-id-min",
        ),
        (
            WorkloadParams {
                dataset: Dataset::File {
                    path: "x.json".into(),
                    sha256: "ABC".into(),
                },
                ..random_params(Api::Chat, 10, 1.0)
            },
            "workload.sha256",
        ),
    ];
    for (params, key) in cases {
        let err = generate(&params, 0, 1).expect_err("invalid parameters");
        assert!(err.to_string().contains(key), "{err} does not name {key}");
    }
}

#[test]
fn first_request_body_is_frozen() {
    // Any change to generation (streams, salt, word list, body keys) changes
    // every published point's requests and must show up here.
    let mut params = random_params(Api::Completions, 8, 1.0);
    params.output_tokens = 4;
    let completions = generate(&params, 1, 1).expect("generate");
    params.api = Api::Chat;
    let chat = generate(&params, 1, 1).expect("generate");
    let text = |r: &PreparedRequest| String::from_utf8(r.body.to_vec()).expect("UTF-8 body");
    insta::assert_snapshot!("completions_measured_0", text(&completions.measured[0]));
    insta::assert_snapshot!("completions_warmup_0", text(&completions.warmup[0]));
    insta::assert_snapshot!("chat_measured_0", text(&chat.measured[0]));
}

// ---- dataset files ----

const SHAREGPT: &str = r#"[
  {"id": "a", "conversations": [{"from": "human", "value": "What is the capital of France?"}, {"from": "gpt", "value": "Paris."}]},
  {"id": "b", "conversations": [{"from": "human", "value": "only one turn"}]},
  {"id": 3, "conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "Name a prime."}, {"from": "gpt", "value": "7"}]},
  {"id": "d", "conversations": []},
  {"id": "e", "conversations": [{"from": "human", "value": "Tell me a joke about cats."}, {"from": "gpt", "value": "..."}], "extra": true}
]"#;

const USABLE: [&str; 3] = [
    "What is the capital of France?",
    "Name a prime.",
    "Tell me a joke about cats.",
];

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write dataset");
    path
}

fn file_params(api: Api, path: PathBuf, sha256: String) -> WorkloadParams {
    WorkloadParams {
        dataset: Dataset::File { path, sha256 },
        ..random_params(api, 100, 1.0)
    }
}

fn dataset_prompt(api: Api, request: &PreparedRequest) -> String {
    match api {
        Api::Completions => json(request)["prompt"]
            .as_str()
            .expect("prompt is a string")
            .to_owned(),
        Api::Chat => chat_text(request),
    }
}

#[test]
fn dataset_with_the_right_hash_gives_its_usable_first_human_turns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "share.json", SHAREGPT);
    let sha = sha256_file(&path).expect("hash");
    for api in [Api::Completions, Api::Chat] {
        let requests =
            generate(&file_params(api, path.clone(), sha.clone()), 0, 6).expect("generate");
        let prompts: Vec<String> = requests
            .measured
            .iter()
            .map(|r| dataset_prompt(api, r))
            .collect();
        // Each usable prompt once per cycle through the seeded order.
        let first_cycle: HashSet<&str> = prompts[..3].iter().map(String::as_str).collect();
        assert_eq!(first_cycle, USABLE.into_iter().collect());
        assert_eq!(prompts[..3], prompts[3..]);
        for request in &requests.measured {
            let text = dataset_prompt(api, request);
            assert_eq!(request.input_tokens, dataset::estimate_tokens(&text));
            assert_eq!(request.max_output_tokens, 16);
        }
    }
}

#[test]
fn dataset_warmup_takes_prompts_from_the_other_end_of_the_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "share.json", SHAREGPT);
    let params = file_params(Api::Chat, path.clone(), sha256_file(&path).expect("hash"));
    let requests = generate(&params, 1, 2).expect("generate");
    let warm = chat_text(&requests.warmup[0]);
    let measured: Vec<String> = requests.measured.iter().map(chat_text).collect();
    assert!(
        !measured.contains(&warm),
        "warmup {warm:?} repeats a measured prompt"
    );
    let without_warmup = generate(&params, 0, 2).expect("generate");
    assert_eq!(bodies(&without_warmup.measured), bodies(&requests.measured));
}

#[test]
fn dataset_with_a_wrong_hash_is_refused_naming_both_hashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "share.json", SHAREGPT);
    let actual = sha256_file(&path).expect("hash");
    let wrong = "0".repeat(64);
    let err = generate(&file_params(Api::Chat, path, wrong.clone()), 0, 1).expect_err("wrong hash");
    assert!(matches!(err, WorkloadError::DatasetHashMismatch { .. }));
    let message = err.to_string();
    assert!(message.contains("share.json"), "{message}");
    assert!(message.contains(&wrong), "{message}");
    assert!(message.contains(&actual), "{message}");
}

#[test]
fn malformed_dataset_json_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "broken.json",
        r#"[{"conversations": [{"from": "human", "value": 5}]}]"#,
    );
    let sha = sha256_file(&path).expect("hash");
    let err = generate(&file_params(Api::Chat, path, sha), 0, 1).expect_err("malformed");
    let message = err.to_string();
    assert!(matches!(err, WorkloadError::ParseDataset { .. }));
    assert!(message.contains("broken.json"), "{message}");
    // The JSON path of the offending value.
    assert!(message.contains("[0].conversations[0].value"), "{message}");
}

#[test]
fn trailing_garbage_after_the_dataset_array_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "tail.json", &format!("{SHAREGPT} x"));
    let sha = sha256_file(&path).expect("hash");
    let err = generate(&file_params(Api::Chat, path, sha), 0, 1).expect_err("trailing characters");
    assert!(matches!(err, WorkloadError::ParseDataset { .. }), "{err}");
}

#[test]
fn dataset_without_usable_conversations_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "empty.json",
        r#"[{"conversations": [{"from": "human", "value": "hi"}]}]"#,
    );
    let sha = sha256_file(&path).expect("hash");
    let err = generate(&file_params(Api::Chat, path, sha), 0, 1).expect_err("no usable");
    assert!(
        matches!(err, WorkloadError::NoUsableConversations { entries: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("empty.json"));
}

#[test]
fn missing_dataset_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.json");
    let err = generate(&file_params(Api::Chat, path, "0".repeat(64)), 0, 1).expect_err("missing");
    assert!(matches!(err, WorkloadError::ReadDataset { .. }));
    assert!(err.to_string().contains("absent.json"));
}

#[test]
fn error_messages_read_as_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shown = |err: WorkloadError| {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text.replace(&dir.path().display().to_string(), "[dir]")
    };
    let good = write(dir.path(), "share.json", SHAREGPT);
    let broken = write(
        dir.path(),
        "broken.json",
        r#"[{"conversations": {"from": "human"}}]"#,
    );
    let lonely = write(
        dir.path(),
        "lonely.json",
        r#"[{"conversations": [{"from": "human", "value": "hi"}]}]"#,
    );
    let hash = |p: &Path| sha256_file(p).expect("hash");
    let messages: Vec<String> = vec![
        generate(&random_params(Api::Chat, 10, 1.25), 0, 1),
        generate(&file_params(Api::Chat, good.clone(), "f".repeat(64)), 0, 1),
        generate(&file_params(Api::Chat, broken.clone(), hash(&broken)), 0, 1),
        generate(&file_params(Api::Chat, lonely.clone(), hash(&lonely)), 0, 1),
    ]
    .into_iter()
    .map(|result| shown(result.expect_err("each case is an error")))
    .collect();
    insta::assert_snapshot!(messages.join("\n"));
}
