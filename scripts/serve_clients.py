"""Real clients against a running `dlm serve` (started by scripts/serve_clients.sh).

The `openai` package from PyPI, as an application would use it: completions and chat, whole
and streamed, a bad request, and with --load a bounded load test (many concurrent streaming
clients for a fixed time) that reports latency percentiles and throughput and checks that every
request either completed or was refused with a 503.
"""

import argparse
import asyncio
import statistics
import sys
import time

import openai


def check_clients(base_url: str, model: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == [model]

    settings = dict(max_tokens=8, seed=5, temperature=1.0, extra_body={"block_length": 4})
    whole = client.completions.create(model=model, prompt="w5 w6 w7", **settings)
    text = whole.choices[0].text
    assert whole.choices[0].finish_reason in ("stop", "length"), whole
    assert whole.usage.prompt_tokens == 3, whole.usage
    streamed = client.completions.create(model=model, prompt="w5 w6 w7", stream=True, **settings)
    pieces = [chunk.choices[0].text for chunk in streamed]
    assert "".join(pieces) == text, (pieces, text)
    assert sum(1 for p in pieces if p) == 2, pieces  # one chunk per block of 4
    print(f"completions: {text!r}, streamed in {len(pieces)} chunks")

    messages = [{"role": "user", "content": "w9 w10"}]
    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=8)
    reply = chat.choices[0].message.content
    assert chat.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=8, stream=True
    )
    deltas = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(deltas) == reply, (deltas, reply)
    print(f"chat: {reply!r}, streamed in {len(deltas)} chunks")

    try:
        client.completions.create(model=model, prompt="w5", extra_body={"temprature": 1})
        raise AssertionError("an unknown field was accepted")
    except openai.BadRequestError as err:
        assert err.status_code == 400
        assert err.body["param"] == "temprature", err.body
    print("bad request: 400 naming the field")


async def load(base_url: str, model: str, clients: int, seconds: float) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    latencies, first_chunk, refused, failed, tokens = [], [], 0, [], 0
    deadline = time.monotonic() + seconds

    async def one_client(index: int) -> None:
        nonlocal refused, tokens
        n = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            first = None
            try:
                stream = await client.completions.create(
                    model=model, prompt="w5 w6 w7", max_tokens=16, stream=True,
                    seed=index * 1000 + n, temperature=1.0,
                    extra_body={"block_length": 4, "steps": 4},
                )
                finish = None
                async for chunk in stream:
                    if first is None:
                        first = time.monotonic() - started
                    finish = chunk.choices[0].finish_reason or finish
                    if chunk.usage is not None:
                        tokens += chunk.usage.completion_tokens
                if finish is None:
                    failed.append("a stream ended without a finish reason")
                latencies.append(time.monotonic() - started)
                first_chunk.append(first)
            except openai.APIStatusError as err:
                if err.status_code == 503:
                    refused += 1
                    await asyncio.sleep(0.01)
                else:
                    failed.append(f"{err.status_code}: {err.message}")
            except Exception as err:  # a lost request: connection dropped, bad stream
                failed.append(repr(err))
            n += 1

    started = time.monotonic()
    await asyncio.gather(*(one_client(i) for i in range(clients)))
    elapsed = time.monotonic() - started
    if failed:
        sys.exit(f"lost requests: {failed[:5]} ({len(failed)} in all)")
    quantiles = statistics.quantiles(latencies, n=100)
    first_q = statistics.quantiles(first_chunk, n=100)
    print(
        f"load: {clients} streaming clients for {seconds:.0f} s: {len(latencies)} completed, "
        f"{refused} refused (503, queue full), 0 lost; {len(latencies) / elapsed:.1f} requests/s, "
        f"{tokens / elapsed:.0f} tokens/s; latency p50 {quantiles[49] * 1e3:.1f} ms, "
        f"p90 {quantiles[89] * 1e3:.1f} ms, p99 {quantiles[98] * 1e3:.1f} ms; first chunk p50 "
        f"{first_q[49] * 1e3:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--load-clients", type=int, default=0)
    parser.add_argument("--load-seconds", type=float, default=5.0)
    args = parser.parse_args()
    check_clients(args.base_url, args.model)
    if args.load_clients > 0:
        asyncio.run(load(args.base_url, args.model, args.load_clients, args.load_seconds))


if __name__ == "__main__":
    main()
