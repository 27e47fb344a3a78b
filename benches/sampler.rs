//! Sampling from a trained masked diffusion model: one token per step (LLaDA top-1 with
//! `steps = seq_len`) against Fast-dLLM's confidence threshold (τ = 0.9), in one run. Before
//! timing, the setup trains a small MDLM on the words task (4-token words in which one token
//! determines the word: the redundancy threshold decoding exploits) and prints, for each sampler,
//! the model calls (NFE) and the exact validity of its samples (in the best word alignment,
//! `WordsTask::score_best_phase`), so speed and quality come from the same model.
//!
//! ```text
//! cargo bench --bench sampler --features ndarray
//! ```

use burn::module::Module;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlm::core::backbone::{DenoiserConfig, DenoiserIo};
use dlm::core::data::{SequenceDataset, WordsTask, WordsTaskConfig};
use dlm::core::host::token_rows;
use dlm::core::sampling::{Confidence, TokenSampler};
use dlm::core::tokenizer::SpecialTokens;
use dlm::core::train::{TrainConfig, Trainer};
use dlm::device::{bench_backends, parse_device};
use dlm::discrete::sampler::{MaskedSampler, SamplerState, Unmasking};
use dlm::discrete::{MaskingProcess, Mdlm};
use dlm::sched::LogLinear;
use rand::SeedableRng;
use rand::rngs::StdRng;

const SEQ_LEN: usize = 32;
const BATCH: usize = 16;

fn samplers(c: &mut Criterion) {
    let task =
        WordsTask::new(WordsTaskConfig { n_words: 16, word_len: 4, seed: 0 }).expect("valid task");
    let vocab = task.vocab_size();
    let mask_id = SpecialTokens::reserved().mask;
    let data = SequenceDataset::generate(4096, SEQ_LEN, vocab, 1, |len, rng| task.sample(len, rng))
        .expect("valid data");
    let config = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: vocab, tie_embeddings: false },
        SEQ_LEN,
    )
    .with_d_model(96)
    .with_n_heads(4)
    .with_n_layers(2);
    let train_device = parse_device("flex").expect("flex");
    let objective =
        Mdlm::new(MaskingProcess::new(LogLinear::default(), mask_id), 1e-3).expect("valid");
    let mut trainer = Trainer::new(
        TrainConfig::new(1500, 64).with_learning_rate(2e-3).with_warmup_steps(100),
        config.init(&train_device.autodiff()).expect("valid config"),
        objective.clone(),
    )
    .expect("valid trainer");
    while !trainer.is_done() {
        trainer.step(&data).expect("enough data");
    }
    let trained = trainer.eval_model();

    let one_per_step =
        MaskedSampler::new(Unmasking::TopK { confidence: Confidence::TokenProbability }, SEQ_LEN)
            .expect("valid");
    let threshold = MaskedSampler::new(
        Unmasking::threshold(Confidence::TokenProbability, 0.9).expect("valid"),
        1,
    )
    .expect("valid");
    let proposal = TokenSampler::new(1.0).expect("valid");

    let mut group = c.benchmark_group("sampler");
    group.throughput(Throughput::Elements((BATCH * SEQ_LEN) as u64));
    group.sample_size(10);
    for backend in bench_backends().expect("BURN_DEVICE names compiled backends") {
        let device = parse_device(&backend).expect("a compiled backend");
        let model = trained.clone().to_device(&device);
        let subs = objective.denoiser(&model);
        for (name, sampler) in
            [("one-token-per-step", &one_per_step), ("threshold-0.9", &threshold)]
        {
            let sampler = sampler.clone().with_proposal(proposal);
            let state = || SamplerState::all_masked(&subs, BATCH, SEQ_LEN).expect("a valid state");
            let sample = || sampler.sample(&subs, state(), &mut StdRng::seed_from_u64(0));
            let out = sample().expect("a valid state");
            let (valid, total) = token_rows(out.tokens)
                .iter()
                .map(|s| task.score_best_phase(s))
                .fold((0, 0), |(v, t), s| (v + s.valid, t + s.total));
            println!(
                "{backend}/{name}: NFE {} for {BATCH}×{SEQ_LEN} tokens, validity {:.3}",
                out.nfe,
                valid as f64 / total as f64
            );
            group.bench_function(format!("{backend}/{name}"), |b| b.iter(sample));
        }
    }
    group.finish();
}

criterion_group!(benches, samplers);
criterion_main!(benches);
