#!/usr/bin/env bash
# Starts `dlm serve` on loopback with the tiny LLaDA fixture and runs real clients against it:
# curl (whole, streamed, bad requests), the page in headless Chromium, the `openai` Python
# package (scripts/serve_clients.py), lm-evaluation-harness scoring a multiple-choice task
# (scripts/serve_lm_eval.py), then a bounded load test. CI runs it.
#
# Usage: scripts/serve_clients.sh [LOAD_CLIENTS [LOAD_SECONDS]]   (defaults 32 and 5)
# The binary is $DLM_BIN when set (CI passes the one `cargo test` built), else the debug build
# (built here); DLM_PROFILE=release for measuring; DLM_BATCH the server's --batch (default 8).
# The Python is $DLM_CLIENT_PYTHON, default the torch venv of scripts/setup-torch.sh; `openai` is
# installed into it when missing, and so is `lm_eval`.
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${1:-32}"
seconds="${2:-5}"
python="${DLM_CLIENT_PYTHON:-${DLM_TORCH_VENV:-$HOME/.cache/dlm-torch-venv}/bin/python}"
if ! "$python" -c "import openai" 2>/dev/null; then
  "$python" -m pip install -q "openai==2.54.0"
fi
if ! "$python" -c "import lm_eval, aiohttp, tenacity" 2>/dev/null; then
  "$python" -m pip install -q "lm_eval[api]==0.4.13"
fi
profile="${DLM_PROFILE:-debug}"
if [ -n "${DLM_BIN:-}" ]; then
  bin="$DLM_BIN"
else
  if [ "$profile" = release ]; then cargo build -q --release --bin dlm; else cargo build -q --bin dlm; fi
  bin="${CARGO_TARGET_DIR:-target}/$profile/dlm"
fi
log="$(mktemp)"
"$bin" serve --model crates/dlm-core/tests/fixtures/llama/llada --port 0 --queue 8 \
  --batch "${DLM_BATCH:-8}" --steps 4 --gen-length 8 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q '^serving' "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
url="$(grep -o 'http://[0-9.:]*' "$log")"
echo "dlm serve at $url"

expect() { # expect WHAT STATUS curl-args...: the status and a JSON body
  local what="$1" status="$2"; shift 2
  local got
  got="$(curl -s -o /tmp/dlm-serve-body.$$ -w '%{http_code}' "$@")"
  if [ "$got" != "$status" ]; then
    echo "$what: HTTP $got, expected $status: $(cat /tmp/dlm-serve-body.$$)"; exit 1
  fi
  echo "curl $what: HTTP $got $(head -c 160 /tmp/dlm-serve-body.$$)"
}
expect health 200 "$url/health"
expect completion 200 "$url/v1/completions" -d '{"prompt": "w5 w6 w7", "max_tokens": 8}'
expect "unknown field" 400 "$url/v1/completions" -d '{"prompt": "w5", "temprature": 1}'
expect "not JSON" 400 "$url/v1/completions" -d 'prompt=w5'
expect "prompt beyond the context" 400 "$url/v1/completions" -d '{"prompt": "w5", "max_tokens": 999}'
stream="$(curl -s -N "$url/v1/completions" -d '{"prompt": "w5", "max_tokens": 8, "block_length": 4, "stream": true}')"
[ "$(grep -c '^data: ' <<<"$stream")" -ge 3 ] && grep -q '^data: \[DONE\]' <<<"$stream" \
  || { echo "bad stream: $stream"; exit 1; }
echo "curl stream: $(grep -c '^data: ' <<<"$stream") events, ends with [DONE]"
rm -f /tmp/dlm-serve-body.$$

# The page, in a real browser: headless Chromium (the Debian package, installed when missing)
# loads it, runs a generation, and the text it shows must be the API's for the same settings.
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
settings='"prompt": "w5 w6 w7", "max_tokens": 16, "block_length": 4, "steps": 8'
expected="$(curl -s "$url/v1/completions" -d "{$settings}" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["choices"][0]["text"])')"
page="$url/?prompt=w5%20w6%20w7&max_tokens=16&block_length=4&steps=8&autorun=1"
browser=(chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=20000)
shown="$("${browser[@]}" --dump-dom "$page" 2>/dev/null | sed -n 's:.*<div id="text">\(.*\)</div>.*:\1:p')"
[ "$shown" = "$expected" ] || { echo "the page shows '$shown', the API gave '$expected'"; exit 1; }
screenshot="${CARGO_TARGET_DIR:-target}/serve-page.png"
"${browser[@]}" --window-size=1100,520 --screenshot="$screenshot" "$page" >/dev/null 2>&1
echo "page in headless Chromium: shows the API's text '$expected'; screenshot $screenshot"

"$python" scripts/serve_lm_eval.py --server "$url" --model llada
"$python" scripts/serve_clients.py --base-url "$url/v1" --model llada \
  --load-clients "$clients" --load-seconds "$seconds"
# The server survived everything.
expect "health after the load" 200 "$url/health"
