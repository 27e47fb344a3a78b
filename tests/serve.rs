//! `dlm serve`'s routes on the tiny LLaDA fixture: responses are the library's own generations,
//! streams add up to the whole text, bad requests get a 4xx naming the field, a full queue a 503
//! with no accepted request lost. (`scripts/serve_clients.sh` runs curl and the `openai` Python
//! client against the binary on loopback.)

#![cfg(feature = "serve")]

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use burn::tensor::Device;
use dlm::generate::{Checkpoint, GenerateSettings};
use dlm::serve::{Engine, Event, PromptInput, Request as EngineRequest, router};
use dlm_discrete::likelihood::LikelihoodSplit;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn checkpoint() -> Checkpoint {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dlm-core/tests/fixtures/llama/llada");
    Checkpoint::load(&dir, &Device::flex(), None).unwrap()
}

fn defaults() -> GenerateSettings {
    GenerateSettings { steps: 4, gen_length: 8, ..GenerateSettings::default() }
}

fn engine(queue: usize) -> Arc<Engine> {
    batched_engine(queue, 1)
}

fn batched_engine(queue: usize, batch: usize) -> Arc<Engine> {
    Arc::new(Engine::start(checkpoint(), "llada".into(), defaults(), queue, batch).unwrap())
}

/// Status and body of one request.
async fn call(
    engine: &Arc<Engine>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = router(engine.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn json_call(engine: &Arc<Engine>, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, text) = call(engine, "POST", path, Some(body)).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

/// The `data:` payloads of an event stream, `[DONE]` excluded, and whether `[DONE]` ended it.
fn events(stream: &str) -> (Vec<Value>, bool) {
    let data: Vec<&str> = stream.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
    let done = data.last() == Some(&"[DONE]");
    let values = data.iter().filter(|d| **d != "[DONE]").map(|d| serde_json::from_str(d).unwrap());
    (values.collect(), done)
}

#[tokio::test]
async fn health_models_and_unknown_routes() {
    let engine = engine(4);
    let (status, body) = call(&engine, "GET", "/health", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"status":"ok"}"#));
    let (status, body) = call(&engine, "GET", "/v1/models", None).await;
    assert_eq!(status, StatusCode::OK);
    let models: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(models["data"][0]["id"], "llada");
    let (status, body) = call(&engine, "GET", "/v1/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("not_found_error"), "{body}");
}

#[tokio::test]
async fn completions_are_the_librarys_generations_whole_or_streamed() {
    let engine = engine(4);
    let settings =
        GenerateSettings { block_length: Some(4), seed: 3, temperature: 1.0, ..defaults() };
    let expected = checkpoint().generate("w5 w6 w7", &settings, &mut |_| {}).unwrap();
    let request = json!({
        "model": "llada", "prompt": "w5 w6 w7", "max_tokens": 8, "block_length": 4,
        "seed": 3, "temperature": 1.0,
    });
    let (status, whole) = json_call(&engine, "/v1/completions", request.clone()).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["object"], "text_completion");
    assert_eq!(whole["choices"][0]["text"], expected.text.as_str());
    assert_eq!(whole["choices"][0]["finish_reason"], "length");
    assert_eq!(whole["usage"]["prompt_tokens"], 3);
    assert_eq!(whole["usage"]["completion_tokens"], expected.tokens.len());
    assert_eq!(whole["dlm"]["nfe"], expected.nfe);

    // Streamed: one chunk per final block (two blocks of 4), adding up to the same text.
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let (status, stream) = call(&engine, "POST", "/v1/completions", Some(streamed)).await;
    assert_eq!(status, StatusCode::OK);
    let (chunks, done) = events(&stream);
    assert!(done, "{stream}");
    let texts: Vec<&str> =
        chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(texts.concat(), expected.text);
    assert_eq!(texts.iter().filter(|t| !t.is_empty()).count(), 2, "{texts:?}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["usage"]["completion_tokens"], expected.tokens.len());
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));

    // Echo puts the prompt in front.
    let mut echoed = request;
    echoed["echo"] = json!(true);
    let (_, whole) = json_call(&engine, "/v1/completions", echoed).await;
    assert_eq!(whole["choices"][0]["text"], format!("w5 w6 w7{}", expected.text));
}

#[tokio::test]
async fn the_page_and_its_step_events() {
    let engine = engine(4);
    let (status, page) = call(&engine, "GET", "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"canvas\"") && page.contains("stream_steps"), "{page}");
    let request = json!({
        "prompt": "w5 w6 w7", "max_tokens": 8, "block_length": 4, "steps": 2, "stream": true,
        "stream_steps": true,
    });
    let (status, stream) = call(&engine, "POST", "/v1/completions", Some(request)).await;
    assert_eq!(status, StatusCode::OK);
    // Named `step` events: every generated position committed once (top-k never remasks),
    // positions counted from the start of the generation, the model calls counting up.
    let steps: Vec<Value> = stream
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("event: step\ndata: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    assert_eq!(steps.len(), 4, "two blocks of two steps: {stream}");
    let mut positions: Vec<u64> = steps
        .iter()
        .flat_map(|s| {
            s["committed"].as_array().unwrap().iter().map(|c| c["position"].as_u64().unwrap())
        })
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, (0..8).collect::<Vec<u64>>());
    let nfe: Vec<u64> = steps.iter().map(|s| s["nfe"].as_u64().unwrap()).collect();
    assert_eq!(nfe, [1, 2, 3, 4]);
    let (chunks, done) = events(&stream);
    assert!(done);
    assert_eq!(chunks.last().unwrap()["dlm"]["nfe"], 4);
    // Token editing's replacements come as `edited`, and the canvas ends as the text does.
    let request = json!({
        "prompt": "w5 w6 w7", "max_tokens": 8, "policy": "threshold", "threshold": 0.05,
        "edit_threshold": 0.05, "stream": true, "stream_steps": true,
    });
    let (status, stream) = call(&engine, "POST", "/v1/completions", Some(request)).await;
    assert_eq!(status, StatusCode::OK, "{stream}");
    let mut canvas = vec![String::new(); 8];
    let mut edits = 0;
    for data in stream.split("\n\n").filter_map(|e| e.strip_prefix("event: step\ndata: ")) {
        let step: Value = serde_json::from_str(data).unwrap();
        for change in
            step["committed"].as_array().unwrap().iter().chain(step["edited"].as_array().unwrap())
        {
            let position = change["position"].as_u64().unwrap() as usize;
            canvas[position] = change["text"].as_str().unwrap().to_string();
        }
        edits += step["edited"].as_array().unwrap().len();
    }
    assert!(edits > 0, "a random model at threshold 0.05 edits: {stream}");
    let (chunks, _) = events(&stream);
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(canvas.concat(), text.replace(' ', ""), "the canvas is the text");
    // Steps without a stream are refused.
    let request = json!({"prompt": "w5", "stream_steps": true});
    let (status, error) = json_call(&engine, "/v1/completions", request).await;
    assert_eq!(
        (status, &error["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("stream_steps"))
    );
}

#[tokio::test]
async fn stop_strings_cut_the_text_and_finish_with_stop() {
    let engine = engine(4);
    let expected = checkpoint().generate("w5 w6 w7", &defaults(), &mut |_| {}).unwrap();
    // The text's second word, as a stop string: the completion is the first word.
    let words: Vec<&str> = expected.text.split(' ').collect();
    assert!(words.len() > 2, "{}", expected.text);
    let stop = format!(" {}", words[1]);
    let cut = &expected.text[..expected.text.find(&stop).unwrap()];
    for stream in [false, true] {
        let request = json!({"prompt": "w5 w6 w7", "stop": [stop], "stream": stream});
        let (status, body) = call(&engine, "POST", "/v1/completions", Some(request)).await;
        assert_eq!(status, StatusCode::OK);
        let chunks =
            if stream { events(&body).0 } else { vec![serde_json::from_str(&body).unwrap()] };
        let text: String =
            chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap().to_string()).collect();
        assert_eq!(text, cut);
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }
}

#[tokio::test]
async fn chat_renders_the_checkpoints_template() {
    let engine = engine(4);
    let checkpoint = checkpoint();
    let prompt = checkpoint.chat_prompt("w9 w10").unwrap();
    let expected = checkpoint.generate(&prompt, &defaults(), &mut |_| {}).unwrap();
    let request = json!({"messages": [{"role": "user", "content": "w9 w10"}]});
    let (status, whole) = json_call(&engine, "/v1/chat/completions", request.clone()).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    assert_eq!(whole["choices"][0]["message"]["content"], expected.text.as_str());
    let mut streamed = request;
    streamed["stream"] = json!(true);
    let (_, stream) = call(&engine, "POST", "/v1/chat/completions", Some(streamed)).await;
    let (chunks, done) = events(&stream);
    assert!(done);
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, expected.text);
}

#[tokio::test]
async fn bad_requests_get_4xx_naming_the_field() {
    let engine = engine(4);
    let cases = [
        ("/v1/completions", json!({"prompt": "w5", "temprature": 1}), 400, Some("temprature")),
        (
            "/v1/completions",
            json!({"prompt": "w5", "max_tokens": "eight"}),
            400,
            Some("max_tokens"),
        ),
        ("/v1/completions", json!({"prompt": "w5", "max_tokens": 0}), 400, Some("max_tokens")),
        ("/v1/completions", json!({"prompt": "w5", "n": 2}), 400, Some("n")),
        ("/v1/completions", json!({"prompt": "w5", "top_p": 0.9}), 400, Some("top_p")),
        ("/v1/completions", json!({"prompt": "w5", "temperature": -1}), 400, Some("temperature")),
        ("/v1/completions", json!({"prompt": "w5", "logprobs": 9}), 400, Some("logprobs")),
        (
            "/v1/completions",
            json!({"prompt": "w5", "logprobs": 1, "stream": true}),
            400,
            Some("logprobs"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "w5", "logprobs": 1, "stop": ["x"]}),
            400,
            Some("logprobs"),
        ),
        ("/v1/completions", json!({"prompt": "w5", "nelbo_from": 1}), 400, Some("nelbo_from")),
        (
            "/v1/completions",
            json!({"prompt": "w5 w6", "logprobs": 1, "nelbo_from": 1}),
            400,
            Some("nelbo_from"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "w5 w6", "logprobs": 1, "echo": true, "nelbo_from": 50}),
            400,
            Some("nelbo_from"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "w5 w6", "logprobs": 1, "echo": true, "nelbo_from": 1, "nelbo_samples": 0}),
            400,
            Some("nelbo_samples"),
        ),
        ("/v1/completions", json!({"prompt": [5, 999_999]}), 400, Some("prompt")),
        ("/v1/completions", json!({"prompt": [[5], [6]]}), 400, Some("prompt")),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "logprobs": true}),
            400,
            Some("logprobs"),
        ),
        ("/tokenize", json!({"text": "w5"}), 400, Some("text")),
        ("/detokenize", json!({"tokens": [999_999]}), 400, Some("tokens")),
        ("/v1/completions", json!({"prompt": "w5", "stop": [""]}), 400, Some("stop")),
        ("/v1/completions", json!({"prompt": ["a", "b"]}), 400, Some("prompt")),
        ("/v1/completions", json!({}), 400, Some("prompt")),
        ("/v1/completions", json!({"prompt": "w5", "policy": "best"}), 400, Some("policy")),
        ("/v1/completions", json!({"prompt": "w5", "model": "gpt-4"}), 404, None),
        // The sampler's own checks, found when decoding starts: still a 400, streamed or not.
        ("/v1/completions", json!({"prompt": "w5", "max_tokens": 500}), 400, None),
        // Refused before anything of that size is allocated.
        ("/v1/completions", json!({"prompt": "w5", "max_tokens": 1_000_000_000_000u64}), 400, None),
        ("/v1/completions", json!({"prompt": "w5", "steps": 2_000_000}), 400, None),
        // One request may not hold the only decoding thread for a million model calls.
        (
            "/v1/completions",
            json!({"prompt": "w5", "policy": "ancestral", "steps": 1_000_000}),
            400,
            Some("steps"),
        ),
        ("/v1/completions", json!({"prompt": "w5", "steps": 0, "stream": true}), 400, None),
        ("/v1/completions", json!({"prompt": "w5", "cache": "exact"}), 400, None),
        (
            "/v1/completions",
            json!({"prompt": "w5", "threshold": 2.0, "policy": "threshold"}),
            400,
            None,
        ),
        ("/v1/chat/completions", json!({"messages": []}), 400, Some("messages")),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            400,
            Some("messages"),
        ),
        ("/v1/chat/completions", json!({"prompt": "w5"}), 400, Some("prompt")),
        ("/v1/chat/completions", json!({"messages": [{"role": "user"}]}), 400, Some("messages[0]")),
    ];
    for (path, body, status, param) in cases {
        let (got, error) = json_call(&engine, path, body.clone()).await;
        assert_eq!(got.as_u16(), status, "{body}: {error}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
        if let Some(param) = param {
            assert_eq!(error["error"]["param"], param, "{body}: {error}");
        }
    }
    // A block longer than anything still decodes (one block).
    let body = json!({"prompt": "w5", "block_length": u64::MAX});
    assert_eq!(json_call(&engine, "/v1/completions", body).await.0, StatusCode::OK);
    // Not JSON at all.
    let (status, body) = call(&engine, "POST", "/v1/completions", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The server still serves after all of them.
    let (status, _) = json_call(&engine, "/v1/completions", json!({"prompt": "w5"})).await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn a_full_queue_refuses_with_503_and_loses_no_accepted_request() {
    let engine = engine(1);
    let slow = GenerateSettings { steps: 64, gen_length: 48, ..defaults() };
    // One decodes, one waits: at most two of a burst are accepted before the first is done.
    let prompt = engine.encode(&PromptInput::Text("w5 w6".into())).unwrap();
    let request = EngineRequest { prompt, settings: slow, steps: false, likelihood: None };
    let outcomes: Vec<_> = (0..6).map(|_| engine.submit(request.clone())).collect();
    let refused = outcomes.iter().filter(|o| o.is_err()).count();
    assert!(refused >= 4, "{refused} of 6 refused");
    for outcome in &outcomes {
        if let Err(err) = outcome {
            assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(err.message.contains("queue is full"), "{}", err.message);
        }
    }
    for mut events in outcomes.into_iter().flatten() {
        let finished = loop {
            match events.blocking_recv().expect("every accepted request ends") {
                Event::Text(_) | Event::Step(_) => {}
                Event::Done(result) => break result.unwrap(),
            }
        };
        assert_eq!(finished.generated.tokens.len(), 48);
    }
}

#[tokio::test]
async fn logprobs_are_the_library_token_likelihoods_for_text_and_token_prompts() {
    // What lm-evaluation-harness sends to score a continuation: the prompt as ids, `echo`,
    // `logprobs`, one token to generate. Each returned value is the library's own
    // `token_likelihoods` of the prompt and the generated token.
    let engine = engine(4);
    let library = checkpoint();
    let prompt = library.tokenizer.encode("w5 w6 w7 w8").unwrap();
    let body = |prompt: Value, extra: Value| {
        let mut body = json!({"prompt": prompt, "max_tokens": 1, "echo": true, "logprobs": 2});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let (status, text_reply) =
        json_call(&engine, "/v1/completions", body(json!("w5 w6 w7 w8"), json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{text_reply}");
    let (_, ids_reply) =
        json_call(&engine, "/v1/completions", body(json!([prompt]), json!({}))).await;
    let logprobs = &text_reply["choices"][0]["logprobs"];
    assert_eq!(logprobs, &ids_reply["choices"][0]["logprobs"]);
    assert_eq!(text_reply["choices"][0]["text"], ids_reply["choices"][0]["text"]);
    let generated = library
        .generate("w5 w6 w7 w8", &GenerateSettings { gen_length: 1, ..defaults() }, &mut |_| {})
        .unwrap();
    // The prompt, the generated token and, if the model ended the text, its end-of-text token:
    // one entry more than the prompt, as a harness expects.
    let tokens = [prompt.as_slice(), &generated.tokens, generated.end_token.as_slice()].concat();
    assert_eq!(tokens.len(), prompt.len() + 1);
    let expected = library
        .token_likelihoods(&tokens, LikelihoodSplit::Chain { from: 0 }, 2, defaults().seed)
        .unwrap();
    let values: Vec<Option<f64>> =
        serde_json::from_value(logprobs["token_logprobs"].clone()).unwrap();
    assert_eq!(values.len(), tokens.len());
    for (got, want) in values.iter().zip(&expected.logprobs) {
        assert!((got.unwrap() - want.unwrap()).abs() < 1e-9, "{got:?} vs {want:?}");
    }
    // The harness's greedy check reads the alternatives: the best is at least the token's own.
    for (i, top) in logprobs["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let best =
            top.as_object().unwrap().values().map(|v| v.as_f64().unwrap()).fold(f64::MIN, f64::max);
        assert!(best >= values[i].unwrap() - 1e-12);
        assert!(top.as_object().unwrap().len() <= 2);
    }
    assert_eq!(text_reply["dlm"]["scored_rows"], tokens.len());
    // Without echo only the generated token is returned.
    let (_, plain) = json_call(
        &engine,
        "/v1/completions",
        json!({"prompt": "w5 w6 w7 w8", "max_tokens": 1, "logprobs": 0}),
    )
    .await;
    let plain = &plain["choices"][0]["logprobs"]["token_logprobs"];
    assert_eq!(plain.as_array().unwrap().len(), 1);
    assert!((plain[0].as_f64().unwrap() - values[tokens.len() - 1].unwrap()).abs() < 1e-9);
    // The bound of the prompt's tokens after the first two, given them (the prompt alone is
    // scored: nulls before, the library's bound after, null for the generated token).
    let extra = json!({"nelbo_from": 2, "nelbo_samples": 8});
    let (status, nelbo) = json_call(&engine, "/v1/completions", body(json!([prompt]), extra)).await;
    assert_eq!(status, StatusCode::OK, "{nelbo}");
    let split = LikelihoodSplit::Nelbo { context: 2, samples: 8 };
    let expected = library.token_likelihoods(&prompt, split, 2, defaults().seed).unwrap();
    let values: Vec<Option<f64>> =
        serde_json::from_value(nelbo["choices"][0]["logprobs"]["token_logprobs"].clone()).unwrap();
    assert_eq!(values.len(), prompt.len() + 1);
    assert!(values[..2].iter().all(Option::is_none) && values[prompt.len()].is_none());
    for (got, want) in values.iter().zip(&expected.logprobs).skip(2) {
        assert!((got.unwrap() - want.unwrap()).abs() < 1e-9, "{got:?} vs {want:?}");
    }
}

#[tokio::test]
async fn the_tokenizer_routes_round_trip() {
    // vLLM's routes, which lm-evaluation-harness uses to tokenise as the server does.
    let engine = engine(4);
    let library = checkpoint();
    let (status, tokens) =
        json_call(&engine, "/tokenize", json!({"prompt": "w5 w6", "add_special_tokens": false}))
            .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let ids = library.tokenizer.encode("w5 w6").unwrap();
    assert_eq!(tokens["tokens"], json!(ids));
    assert_eq!(tokens["count"], ids.len());
    let (_, text) = json_call(&engine, "/detokenize", json!({"tokens": ids})).await;
    assert_eq!(text["prompt"], library.tokenizer.decode(&ids).unwrap());
    let (status, info) = call(&engine, "GET", "/tokenizer_info", None).await;
    assert_eq!(status, StatusCode::OK);
    let info: Value = serde_json::from_str(&info).unwrap();
    let eos = library.tokenizer.id_to_token(library.eos_ids[0]).unwrap();
    assert_eq!(info["eos_token"], eos);
    assert_eq!(library.tokenizer.encode(&eos).unwrap(), vec![library.eos_ids[0]]);
}

#[test]
fn concurrent_requests_share_model_calls_and_decode_as_the_library_does() {
    // Four requests of one length at once on four workers: their steps are stacked into shared
    // forward passes (fewer passes than the requests' model calls), and each request's tokens and
    // model calls are those of the library decoding it alone with the same settings (padded
    // passes of mixed lengths agree to rounding only: `serve::batch`'s tests).
    let engine = batched_engine(8, 4);
    let library = checkpoint();
    let prompts = ["w5 w6", "w7 w8", "w9 w10", "w11 w12"];
    let settings = |seed: u64| GenerateSettings {
        steps: 24,
        gen_length: 24,
        temperature: 1.0,
        seed,
        ..defaults()
    };
    let receivers: Vec<_> = prompts
        .iter()
        .zip(0..)
        .map(|(text, seed)| {
            let prompt = engine.encode(&PromptInput::Text(text.to_string())).unwrap();
            let request =
                EngineRequest { prompt, settings: settings(seed), steps: false, likelihood: None };
            engine.submit(request).unwrap()
        })
        .collect();
    let mut calls = 0;
    for ((text, seed), mut events) in prompts.iter().zip(0..).zip(receivers) {
        let finished = loop {
            if let Event::Done(result) = events.blocking_recv().expect("every request ends") {
                break result.unwrap();
            }
        };
        let alone = library.generate(text, &settings(seed), &mut |_| {}).unwrap();
        assert_eq!(finished.generated.tokens, alone.tokens, "{text}");
        assert_eq!(finished.generated.nfe, alone.nfe, "{text}");
        calls += alone.nfe as u64;
    }
    let stats = engine.batch_stats();
    assert_eq!(stats.stacked_calls(), calls);
    assert!(stats.forward_calls() < calls, "{} passes for {calls} calls", stats.forward_calls());
}
