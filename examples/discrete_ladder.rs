//! AR vs MDLM vs D3PM (absorbing, uniform) vs SEDD (absorbing, uniform) at equal budget — same network size, steps,
//! batch and data — on the Markov source, each measured against the exact entropy, or on
//! Shakespeare's characters, against the AR model.
//!
//! ```text
//! cargo run --release --example discrete_ladder
//! scripts/fetch-data.sh shakespeare && cargo run --release --example discrete_ladder -- --source shakespeare
//! ```
//!
//! Every model has `d_model` 128, 4 heads and 2 layers (`--d-model` and `--n-layers` change
//! them).
//!
//! The AR figure is an exact NLL of positions 2..L (position 1 has no context), against the exact
//! conditional entropy of those positions; the diffusion figures are upper bounds (NELBO) on
//! whole sequences, estimated with several time samples per test sequence, against the exact
//! entropy of a whole sequence per token (on Shakespeare: against the AR model's NLL).

use clap::Parser;
use dlm::core::backbone::{DenoiserConfig, DenoiserIo};
use dlm::core::data::MarkovScore;
use dlm::core::tokenizer::SpecialTokens;
use dlm::discrete::d3pm::{D3pm, Transition, mutual_information_schedule};
use dlm::discrete::sedd::{Graph, MarkovBayesScore, Sedd, TweedieSampler};
use dlm::sched::{Geometric, LogLinear, NoiseSchedule};
use dlm_support::ladder::LadderArgs;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

/// A rung of the ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Model {
    Ar,
    Mdlm,
    D3pmAbsorbing,
    D3pmUniform,
    SeddAbsorbing,
    SeddUniform,
}

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    ladder: LadderArgs,
    /// The models to train (on Shakespeare, the bounds are compared with the AR model's NLL
    /// only when it is among them).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ar,mdlm,d3pm-absorbing,d3pm-uniform,sedd-absorbing,sedd-uniform"
    )]
    models: Vec<Model>,
    /// Width of every model.
    #[arg(long, default_value_t = 128)]
    d_model: usize,
    /// Transformer layers of every model.
    #[arg(long, default_value_t = 2)]
    n_layers: usize,
}

const SEQ_LEN: usize = 64;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.ladder.device.as_deref())?;
    let mut ladder = args.ladder.ladder("discrete_ladder", SEQ_LEN, device)?;
    let vocab = ladder.data.vocab_size;
    let mask_id = SpecialTokens::reserved().mask;
    let base = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: vocab, tie_embeddings: false },
        SEQ_LEN,
    )
    .with_d_model(args.d_model)
    .with_n_heads(4)
    .with_n_layers(args.n_layers);
    let conditioned = base.clone().with_cond_dim(Some(args.d_model));

    let ar_nll = if args.models.contains(&Model::Ar) { Some(ladder.ar(&base)?) } else { None };
    if args.models.contains(&Model::Mdlm) {
        ladder.mdlm(&base, mask_id, ar_nll)?;
    }

    let frequencies = ladder.data.train.token_frequencies();
    for (rung, name, transition, lambda) in [
        (Model::D3pmAbsorbing, "D3PM absorbing", Transition::Absorbing { mask_id }, 0.01),
        (Model::D3pmUniform, "D3PM uniform", Transition::Uniform, 0.0),
    ] {
        if !args.models.contains(&rung) {
            continue;
        }
        let schedule = mutual_information_schedule(transition, &frequencies, 1000)?;
        let d3pm = D3pm::new(transition, schedule, vocab, lambda)?;
        let file = name.replace(' ', "_");
        let (model, seconds) = ladder.train(&file, d3pm.clone(), &conditioned)?;
        let nelbo = d3pm.evaluate(&model, &ladder.data.test, 64, 8, 0)?.nats_per_token;
        ladder.add_bound(name, nelbo, ar_nll, seconds, "NELBO, T = 1000");
    }
    if args.models.contains(&Model::SeddAbsorbing) {
        let sedd = Sedd::new(Graph::Absorbing { mask_id }, LogLinear::default(), vocab, 1e-3)?;
        sedd_rung(&mut ladder, "SEDD absorbing", sedd, &conditioned, ar_nll)?;
    }
    if args.models.contains(&Model::SeddUniform) {
        let sedd = Sedd::new(Graph::Uniform, Geometric::default(), vocab, 1e-3)?;
        sedd_rung(&mut ladder, "SEDD uniform", sedd, &conditioned, ar_nll)?;
    }
    let result = json!({
        "source": args.ladder.source.name(),
        "steps": args.ladder.steps,
        "seq_len": SEQ_LEN,
        "exact_entropy_whole_sequence_and_positions_2_to_l": ladder.data.exact(),
        "rows": ladder.table.into_rows(),
        "mdlm_integrand": ladder.integrand,
    });
    std::fs::write(ladder.out.join("result.json"), serde_json::to_string_pretty(&result)?)?;
    Ok(())
}

/// A SEDD rung: trained, scored by its DWDSE bound (8 time samples per test sequence), on the
/// Markov source also the exact score's bound with the same estimator and noise; and 64
/// samples by Tweedie τ-leaping (64 steps) scored by the source, when there is one.
fn sedd_rung<S: NoiseSchedule + Clone + Sync + std::fmt::Debug>(
    ladder: &mut dlm_support::ladder::Ladder,
    name: &str,
    sedd: Sedd<S>,
    config: &DenoiserConfig,
    ar_nll: Option<f64>,
) -> anyhow::Result<()> {
    let file = name.replace(' ', "_");
    let (model, seconds) = ladder.train(&file, sedd.clone(), config)?;
    let score = sedd.score_network(&model);
    let bound = sedd.evaluate(&score, &ladder.data.test, 64, 8, 0)?.nats_per_token;
    ladder.add_bound(name, bound, ar_nll, seconds, "DWDSE bound");
    if let Some(source) = ladder.data.markov.clone() {
        let exact = MarkovBayesScore {
            source: &source,
            graph: sedd.graph(),
            schedule: sedd.schedule(),
            vocab_size: sedd.vocab_size(),
            device: ladder.device.clone(),
        };
        let floor = sedd.evaluate(&exact, &ladder.data.test, 64, 8, 0)?.nats_per_token;
        let kind = "DWDSE bound of the exact score";
        ladder.add_bound(&format!("{name}, exact score"), floor, ar_nll, 0.0, kind);
        let sampler = TweedieSampler::new(64)?;
        let samples = sampler.sample(&sedd, &score, 64, SEQ_LEN, &mut StdRng::seed_from_u64(5))?;
        let scores: MarkovScore =
            dlm::core::host::token_rows(samples).iter().map(|row| source.score(row)).sum();
        println!(
            "{name}: 64 τ-leaping samples of {SEQ_LEN} tokens, {} model calls: {:.1} % impossible \
             transitions, NLL {:.3} per possible one",
            sampler.nfe(),
            100.0 * scores.impossible_fraction(),
            scores.nll_of_possible(),
        );
    }
    Ok(())
}
