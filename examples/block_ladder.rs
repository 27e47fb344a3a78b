//! BD3LM with block sizes 4, 8 and 16 against MDLM and AR at equal budget, on the Markov source
//! (each against the exact entropy) or on Shakespeare's characters (against the AR model).
//! BD3LM's paper orders them AR < BD3LM(4) < BD3LM(8) < BD3LM(16) < MDLM in perplexity; this
//! measures what we get. Then BD3LM's variance search ranks clipped training schedules
//! `U[β, ω]` on the trained `L′ = 4` model.
//!
//! ```text
//! cargo run --release --example block_ladder
//! scripts/fetch-data.sh shakespeare && cargo run --release --example block_ladder -- --source shakespeare
//! ```

use clap::Parser;
use dlm::block::Bd3lm;
use dlm::core::backbone::{DenoiserConfig, DenoiserIo};
use dlm::core::tokenizer::SpecialTokens;
use dlm::sched::{LogLinear, TimeSampler};
use dlm_support::ladder::LadderArgs;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    ladder: LadderArgs,
}

const SEQ_LEN: usize = 64;

fn main() -> anyhow::Result<()> {
    let Args { ladder: args } = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    let mut ladder = args.ladder("block_ladder", SEQ_LEN, device)?;
    let mask_id = SpecialTokens::reserved().mask;
    let config = DenoiserConfig::new(
        DenoiserIo::Tokens { vocab_size: ladder.data.vocab_size, tie_embeddings: false },
        SEQ_LEN,
    )
    .with_d_model(128)
    .with_n_heads(4)
    .with_n_layers(2);
    let likelihood_times = TimeSampler::antithetic(1e-3)?;

    let nll = ladder.ar(&config)?;
    let mut search = None;
    for block_size in [4, 8, 16] {
        let bd3lm = Bd3lm::new(LogLinear::default(), mask_id, block_size, likelihood_times)?;
        let name = format!("BD3LM L'={block_size}");
        let file = name.replace(['\'', '='], "").replace(' ', "_");
        let (model, seconds) = ladder.train(&file, bd3lm.clone(), &config)?;
        let nelbo = bd3lm.evaluate(&model, &ladder.data.test, 64, 8, 0)?.nats_per_token;
        ladder.add_bound(&name, nelbo, Some(nll), seconds, "NELBO, t ~ U[1e-3, 1]");
        if block_size == 4 {
            let candidates = [(0.001, 1.0), (0.3, 0.8), (0.45, 0.95), (0.5, 1.0), (0.2, 0.7)];
            search = Some(bd3lm.variance_search(&model, &ladder.data.valid, &candidates, 2, 0)?);
        }
    }
    ladder.mdlm(&config, mask_id, Some(nll))?;

    let search = search.expect("searched on L' = 4");
    println!("\nclipped schedules for L' = 4, by variance of the per-sequence loss on validation:");
    for c in &search {
        println!(
            "  U[{:.3}, {:.3}]: mean {:.4}, variance {:.5}",
            c.beta, c.omega, c.mean, c.variance
        );
    }
    let result = json!({
        "source": args.source.name(),
        "steps": args.steps,
        "seq_len": SEQ_LEN,
        "exact_entropy_whole_sequence_and_positions_2_to_l": ladder.data.exact(),
        "rows": ladder.table.into_rows(),
        "mdlm_integrand": ladder.integrand,
        "clip_search_block_4": search.iter().map(|c| json!({"beta": c.beta, "omega": c.omega, "mean": c.mean, "variance": c.variance})).collect::<Vec<_>>(),
    });
    std::fs::write(ladder.out.join("result.json"), serde_json::to_string_pretty(&result)?)?;
    Ok(())
}
