//! Diffusion-LM against MDLM at equal compute (same network size, steps and batch), with an AR
//! model trained alike as the judge, on the Markov source or on Shakespeare's characters. Every
//! sample is scored by the AR judge (generative NLL) and by its unigram entropy, and on the
//! Markov source exactly under the true chain (NLL of its transitions and the fraction of
//! impossible ones). Also the rounding accuracy of Diffusion-LM's predicted `x0` at a few noise
//! levels.
//!
//! ```text
//! cargo run --release --example diffusion_lm
//! scripts/fetch-data.sh shakespeare && cargo run --release --example diffusion_lm -- --source shakespeare
//! ```

use dlm::core::host::token_rows;

use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use dlm::continuous::{
    DiffusionLm, DiffusionLmConfig, DiffusionLmLoss, Distance, GaussianSampler, Update,
    X0Predictor, round_to_tokens,
};
use dlm::core::ar::ArObjective;
use dlm::core::backbone::{DenoiserConfig, DenoiserIo};
use dlm::core::data::{MarkovScore, SequenceDataset};
use dlm::core::eval::{EvalBatches, unigram_entropy};
use dlm::core::sampling::TokenSampler;
use dlm::core::tokenizer::SpecialTokens;
use dlm::core::train::evaluate;
use dlm::discrete::sampler::{MaskedSampler, SamplerState, Unmasking};
use dlm::discrete::{MaskingProcess, Mdlm};
use dlm::sched::{LogLinear, SquareRoot, TimeGrid};
use dlm_support::ladder::LadderArgs;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    ladder: LadderArgs,
    /// Samples per model.
    #[arg(long, default_value_t = 64)]
    samples: usize,
}

const SEQ_LEN: usize = 64;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.ladder.device.as_deref())?;
    let ladder = args.ladder.ladder("diffusion_lm", SEQ_LEN, device.clone())?;
    let data = &ladder.data;
    let vocab = data.vocab_size;
    let mask_id = SpecialTokens::reserved().mask;
    let base = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: vocab, tie_embeddings: false },
        SEQ_LEN,
    )
    .with_d_model(128)
    .with_n_heads(4)
    .with_n_layers(2);

    // The AR judge, MDLM and Diffusion-LM (the same width and depth, embeddings of 16), at the
    // ladder's budget.
    let (judge, _) = ladder.train("ar_judge", ArObjective::default(), &base)?;
    let mdlm = Mdlm::new(MaskingProcess::new(LogLinear::default(), mask_id), 1e-3)?;
    let (mdlm_model, mdlm_seconds) = ladder.train("mdlm", mdlm.clone(), &base)?;
    let schedule = SquareRoot::default();
    let config = DiffusionLmConfig::new(vocab, SEQ_LEN)
        .with_embed_dim(16)
        .with_d_model(128)
        .with_n_heads(4)
        .with_n_layers(2);
    device.seed(0);
    let model = config.init(&device.clone().autodiff())?;
    let objective = DiffusionLmLoss::new(schedule, 2000)?;
    let (diffusion_lm, dlm_seconds): (DiffusionLm, f64) =
        ladder.budget().train_model("diffusion_lm", objective, model, &config)?;

    // Rounding accuracy of x̂0 at a few noise levels.
    let indices: Vec<usize> = (0..256).collect();
    let x0_tokens = data.test.batch(&indices, &device);
    let mut rounding = Vec::new();
    for t in [0.01, 0.1, 0.3, 0.6] {
        let emb = diffusion_lm.embed(x0_tokens.clone());
        let alpha = dlm::sched::NoiseSchedule::alpha(&schedule, t);
        let noise =
            Tensor::<3>::random(emb.dims(), burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let z = emb.mul_scalar(alpha.sqrt()) + noise.mul_scalar((1.0 - alpha).sqrt());
        let x0_hat = diffusion_lm.predict_x0(
            z,
            Tensor::from_data(TensorData::new(vec![t as f32; 256], [256]), &device),
            None,
        );
        let rounded = round_to_tokens(x0_hat, diffusion_lm.embeddings(), Distance::L2);
        let accuracy = rounded.equal(x0_tokens.clone()).int().float().mean().into_scalar::<f64>();
        println!("rounding accuracy of x̂0 at t = {t}: {accuracy:.3}");
        rounding.push(json!({"t": t, "accuracy": accuracy}));
    }

    let mut rows = Vec::new();
    let mut report = |name: &str,
                      tokens: Tensor<2, Int>,
                      nfe: usize,
                      seconds: f64|
     -> anyhow::Result<()> {
        let samples = token_rows(tokens);
        let entropy =
            samples.iter().map(|row| unigram_entropy(row)).sum::<f64>() / samples.len() as f64;
        let judged = SequenceDataset::new(SEQ_LEN, vocab, samples.concat())?;
        let judge_nll = evaluate(
            &ArObjective::default(),
            &judge,
            &judged,
            EvalBatches { batch_size: 64, max_batches: None, seed: 0 },
        )?;
        println!(
            "{name:<28} AR-judge NLL {judge_nll:.4}, unigram entropy {entropy:.3}, {nfe} calls, {seconds:.1} s"
        );
        let mut row = json!({"sampler": name, "judge_nll": judge_nll, "unigram_entropy": entropy, "nfe": nfe, "seconds": seconds});
        if let Some(source) = &data.markov {
            let score: MarkovScore = samples.iter().map(|row| source.score(row)).sum();
            let (chain_nll, invalid) = (score.nll_of_possible(), score.impossible_fraction());
            println!(
                "{:<28} true-chain NLL {chain_nll:.4} (of possible transitions), impossible {:.2} %",
                "",
                100.0 * invalid
            );
            row["true_chain_nll"] = json!(chain_nll);
            row["impossible_fraction"] = json!(invalid);
        }
        if let Some(tokenizer) = &data.tokenizer {
            let text = tokenizer.decode(&samples[0])?;
            println!("{:<28} {text:?}", "");
            row["first_sample"] = json!(text);
        }
        rows.push(row);
        Ok(())
    };
    let test_tokens = data.test.batch(&(0..args.samples).collect::<Vec<_>>(), &device);
    report("test data", test_tokens, 0, 0.0)?;
    for (update, steps) in [(Update::Ddpm, 200), (Update::Ddim { eta: 0.0 }, 50)] {
        let sampler = GaussianSampler::new(update, TimeGrid::uniform(steps, 0.0)?)?
            .with_clamping(Distance::L2);
        let started = std::time::Instant::now();
        let out = sampler.sample(
            &diffusion_lm,
            &schedule,
            args.samples,
            SEQ_LEN,
            None,
            &mut StdRng::seed_from_u64(1),
        )?;
        report(
            &format!("Diffusion-LM {update:?} {steps}"),
            out.tokens,
            out.nfe,
            started.elapsed().as_secs_f64(),
        )?;
    }
    let ancestral = MaskedSampler::new(Unmasking::ancestral(mdlm.process())?, 64)?
        .with_proposal(TokenSampler::new(1.0)?);
    let started = std::time::Instant::now();
    let out = ancestral.sample(
        &mdlm.denoiser(&mdlm_model),
        SamplerState::all_masked(&mdlm.denoiser(&mdlm_model), args.samples, SEQ_LEN)?,
        &mut StdRng::seed_from_u64(1),
    )?;
    report("MDLM ancestral 64", out.tokens, out.nfe, started.elapsed().as_secs_f64())?;
    let result = json!({
        "source": args.ladder.source.name(),
        "steps": args.ladder.steps,
        "entropy_rate": data.markov.as_ref().map(|m| m.entropy_rate()),
        "train_seconds": {"diffusion_lm": dlm_seconds, "mdlm": mdlm_seconds},
        "rounding_accuracy": rounding,
        "samples": rows,
    });
    std::fs::write(ladder.out.join("result.json"), serde_json::to_string_pretty(&result)?)?;
    Ok(())
}
