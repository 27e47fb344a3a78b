//! AntiBERTy (26M parameters: 8 layers, hidden 512, 8 heads) on every compared backend: one
//! forward pass over a batch of heavy chains, and CDR-H3 infilling of trastuzumab with each
//! masked sampler (the wall time of a whole infill; the NFE of each is printed in the setup).
//!
//! With `data/antiberty` present (`scripts/fetch-data.sh antiberty`) the real weights are used;
//! without it, a randomly initialised model of the same configuration (the forward pass costs
//! the same; the samplers' NFE then differ, and the setup says so).
//!
//! ```text
//! cargo bench --bench antiberty --features ndarray               # flex and ndarray
//! ```

use std::path::Path;

use burn::tensor::{Int, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlm::core::bert::{BertConfig, BertMlm};
use dlm::core::sampling::Confidence;
use dlm::core::tokenizer::HfTokenizer;
use dlm::device::{bench_backends, parse_device};
use dlm::discrete::BertSubs;
use dlm::discrete::sampler::{MaskedSampler, SamplerState, TimeAgnostic, Unmasking};
use dlm::sched::{LogLinear, ScheduleKind};
use dlm_support::antibody::{HEAVY_CHAINS, antibody_ids, cdr_h3, special_ids};
use rand::SeedableRng;
use rand::rngs::StdRng;

const BATCH: usize = 8;
const MODEL: &str = "data/antiberty";

/// AntiBERTy's `config.json`, for when the weights are absent.
fn antiberty_config() -> BertConfig {
    BertConfig {
        vocab_size: 25,
        hidden_size: 512,
        num_hidden_layers: 8,
        num_attention_heads: 8,
        intermediate_size: 2048,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        position_embedding_type: "absolute".into(),
        tie_word_embeddings: true,
    }
}

/// The vocabulary AntiBERTy ships: five special tokens, then the 20 amino acids.
fn tokenizer() -> HfTokenizer {
    let path = Path::new(MODEL).join("vocab.txt");
    if path.is_file() {
        return HfTokenizer::from_wordpiece_vocab(&path).expect("AntiBERTy's vocabulary");
    }
    let scratch = std::env::temp_dir().join(format!("dlm-antiberty-vocab-{}", std::process::id()));
    let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .into_iter()
        .map(String::from)
        .chain("ACDEFGHIKLMNPQRSTVWY".chars().map(String::from))
        .collect::<Vec<_>>();
    std::fs::write(&scratch, tokens.join("\n")).expect("a scratch file");
    HfTokenizer::from_wordpiece_vocab(&scratch).expect("a vocabulary")
}

fn antiberty(c: &mut Criterion) {
    let tokenizer = tokenizer();
    let mask = tokenizer.special().mask;
    let (name, chain) = HEAVY_CHAINS[0];
    let ids = antibody_ids(&tokenizer, chain).expect("amino acids");
    let n = ids.len();
    let loop_range = cdr_h3(chain).expect("a CDR-H3");
    // Token positions are residue positions shifted by [CLS].
    let masked: Vec<i64> = ids
        .iter()
        .enumerate()
        .map(|(p, &t)| if loop_range.contains(&(p.wrapping_sub(1))) { mask } else { t })
        .map(i64::from)
        .collect();
    let len = loop_range.len();
    let schedule = ScheduleKind::LogLinear(LogLinear::default());
    let samplers = [
        ("ancestral_cached", Unmasking::Ancestral { schedule }, len),
        ("top1", Unmasking::TopK { confidence: Confidence::TokenProbability }, len),
        ("threshold_0.9", Unmasking::threshold(Confidence::TokenProbability, 0.9).unwrap(), 1),
    ];

    let mut group = c.benchmark_group("antiberty");
    group.sample_size(10);
    for backend in bench_backends().expect("BURN_DEVICE names compiled backends") {
        let device = parse_device(&backend).expect("a compiled backend");
        let model = if Path::new(MODEL).join("pytorch_model.bin").is_file() {
            BertMlm::from_pretrained(MODEL, &device).expect("AntiBERTy loads")
        } else {
            println!("{MODEL} is absent: a randomly initialised model of the same size");
            antiberty_config().init(&device).expect("a valid config")
        };
        let denoiser = BertSubs::new(&model, mask, &special_ids(&tokenizer)).expect("valid ids");

        let input: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
        let tokens = Tensor::<1, Int>::from_ints(input.as_slice(), &device)
            .reshape([1, n])
            .expand([BATCH, n]);
        group.throughput(Throughput::Elements((BATCH * n) as u64));
        group.bench_function(format!("{backend}/forward_{BATCH}x{n}"), |b| {
            // Reading one number back synchronises the device.
            b.iter(|| model.forward(tokens.clone(), None).sum().into_scalar::<f32>())
        });

        group.throughput(Throughput::Elements(len as u64));
        let start = Tensor::<1, Int>::from_ints(masked.as_slice(), &device).reshape([1, n]);
        for (label, unmasking, steps) in &samplers {
            let sampler = MaskedSampler::new(unmasking.clone(), *steps).expect("valid sampler");
            let infill = || {
                let state = SamplerState::infill(&denoiser, start.clone()).expect("a masked loop");
                let rng = &mut StdRng::seed_from_u64(0);
                if matches!(unmasking, Unmasking::Ancestral { .. }) {
                    let cached = TimeAgnostic::new(denoiser.clone()).expect("time-agnostic");
                    sampler.sample_reusing(&cached, state, rng)
                } else {
                    sampler.sample(&denoiser, state, rng)
                }
                .expect("a valid state")
            };
            println!("{backend}/{label}: {name} CDR-H3 ({len} residues), NFE {}", infill().nfe);
            group.bench_function(format!("{backend}/infill_{label}"), |b| {
                b.iter(|| infill().tokens.sum().into_scalar::<i64>())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, antiberty);
criterion_main!(benches);
