"""lm-evaluation-harness against a running `dlm serve` (started by scripts/serve_clients.sh).

A small multiple-choice task with local data (no dataset hub) runs through lm_eval's
`local-completions` model, which scores each answer from `/v1/completions` with `echo` and
`logprobs` and tokenises through the server's `/tokenize` (its remote tokenizer). Every
log-likelihood lm_eval reports must then be the sum of the server's token log-probabilities of
that answer, requested here directly, and the accuracy must follow from them.
"""

import argparse
import importlib.metadata
import json
import math
import os
import pathlib
import tempfile
import urllib.request

import lm_eval
from lm_eval.tasks import TaskManager

TASK = "dlm_words_choice"

# Contexts of the tiny fixture's word vocabulary and four one-word answers each.
DOCS = [
    {"context": "w5 w6 w7", "choices": ["w8", "w9", "w10", "w11"], "answer": 0},
    {"context": "w12 w13", "choices": ["w14", "w3", "w40", "w22"], "answer": 1},
    {"context": "w30 w31 w32 w33", "choices": ["w34", "w35", "w36", "w37"], "answer": 2},
    {"context": "w1 w2", "choices": ["w3 w4", "w20 w21", "w50 w51", "w9 w8"], "answer": 3},
    {"context": "w44", "choices": ["w45", "w46", "w47", "w48"], "answer": 0},
    {"context": "w18 w19 w20", "choices": ["w21", "w2", "w60", "w17"], "answer": 1},
]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def direct_loglikelihood(server: str, model: str, context: str, continuation: str):
    """The answer's log-likelihood and greedy flag from the server's own responses, split at
    the context's tokens as lm_eval splits it."""
    tokenize = lambda text: post(f"{server}/tokenize", {"prompt": text})["tokens"]
    whole = tokenize(context + continuation)
    ctxlen = len(tokenize(context))
    body = {"model": model, "prompt": [whole], "max_tokens": 1, "echo": True, "logprobs": 1,
            "temperature": 0, "seed": 1234}
    logprobs = post(f"{server}/v1/completions", body)["choices"][0]["logprobs"]
    # The prompt, then the one generated token lm_eval drops.
    assert len(logprobs["token_logprobs"]) == len(whole) + 1, (len(logprobs["token_logprobs"]), whole)
    values = logprobs["token_logprobs"][ctxlen:-1]
    tops = logprobs["top_logprobs"][ctxlen:-1]
    greedy = all(v == max(t.values()) for v, t in zip(values, tops))
    return sum(values), greedy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True, help="http://HOST:PORT")
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        data = folder / "docs.jsonl"
        data.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
        (folder / f"{TASK}.yaml").write_text(
            f"task: {TASK}\n"
            "dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
            "test_split: test\n"
            "output_type: multiple_choice\n"
            'doc_to_text: "{{context}}"\n'
            "doc_to_choice: choices\n"
            "doc_to_target: answer\n"
            "metric_list:\n  - metric: acc\n"
        )
        results = lm_eval.simple_evaluate(
            model="local-completions",
            model_args=f"model={args.model},base_url={args.server}/v1/completions,"
            "num_concurrent=1,max_retries=1,max_length=64",
            tasks=[TASK],
            task_manager=TaskManager(include_path=str(folder)),
            log_samples=True,
        )
    accuracy = results["results"][TASK]["acc,none"]
    correct = 0
    for sample in results["samples"][TASK]:
        doc = sample["doc"]
        scores = [resp[0] for resp in sample["resps"]]
        for choice, (loglikelihood, greedy) in zip(doc["choices"], scores):
            expected, expected_greedy = direct_loglikelihood(
                args.server, args.model, doc["context"], " " + choice
            )
            assert math.isclose(float(loglikelihood), expected, rel_tol=1e-9, abs_tol=1e-9), (
                doc, choice, loglikelihood, expected)
            assert bool(greedy) == expected_greedy, (doc, choice, greedy, expected_greedy)
        best = max(range(len(scores)), key=lambda i: float(scores[i][0]))
        correct += best == doc["answer"]
    assert math.isclose(accuracy, correct / len(DOCS)), (accuracy, correct)
    print(
        f"lm_eval {importlib.metadata.version('lm_eval')} local-completions: {TASK}, {len(DOCS)} questions x 4 "
        f"answers, acc {accuracy:.3f}; every log-likelihood is the server's own"
    )


if __name__ == "__main__":
    main()
