//! Step-level batching measured: `dlm serve`'s engine with one decoding worker against `--batch`
//! workers whose steps share forward passes, on the same checkpoint and the same closed loop of
//! clients, without HTTP in between (`docs/benchmarks.md`; a checkpoint from
//! `scripts/synthetic_checkpoint.py`).
//!
//! ```text
//! cargo run --release --example serve_batching -- /tmp/syn-a2d [--clients 8] [--batch 8] \
//!     [--seconds 10] [--tokens 32] [--block-length 8]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use burn::tensor::Device;
use clap::Parser;
use dlm::generate::{Checkpoint, GenerateSettings};
use dlm::serve::{Engine, Event, PromptInput, Request};

#[derive(Parser, Debug)]
struct Args {
    /// The model directory.
    dir: PathBuf,
    /// Clients, each sending its next request when the last one ends.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Decoding workers of the batched engine.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Seconds per engine.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Tokens per request (one per step).
    #[arg(long, default_value_t = 32)]
    tokens: usize,
    /// Semi-autoregressive block length.
    #[arg(long, default_value_t = 8)]
    block_length: usize,
}

/// What one engine did in the time given.
struct Measured {
    requests: usize,
    tokens: usize,
    seconds: f64,
    latencies: Vec<f64>,
    passes: u64,
    rows: u64,
}

fn measure(args: &Args, batch: usize, device: &Device) -> anyhow::Result<Measured> {
    let checkpoint = Checkpoint::load(&args.dir, device, None)?;
    let settings = GenerateSettings {
        gen_length: args.tokens,
        steps: args.tokens,
        block_length: Some(args.block_length),
        temperature: 1.0,
        ..GenerateSettings::default()
    };
    let engine =
        Arc::new(Engine::start(checkpoint, "m".into(), settings.clone(), args.clients, batch)?);
    let prompt = engine.encode(&PromptInput::Text("w5 w6 w7 w8".into()))?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let clients: Vec<_> = (0..args.clients)
        .map(|client| {
            let (engine, prompt, settings) = (engine.clone(), prompt.clone(), settings.clone());
            thread::spawn(move || -> anyhow::Result<(Vec<f64>, usize)> {
                let (mut latencies, mut tokens) = (Vec::new(), 0);
                for n in 0.. {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let sent = Instant::now();
                    let seed = (client * 100_000 + n) as u64;
                    let request = Request {
                        prompt: prompt.clone(),
                        settings: GenerateSettings { seed, ..settings.clone() },
                        steps: false,
                        likelihood: None,
                    };
                    let mut events = engine.submit(request)?;
                    let finished = loop {
                        match events.blocking_recv() {
                            Some(Event::Done(result)) => break result?,
                            Some(_) => {}
                            None => anyhow::bail!("the engine stopped"),
                        }
                    };
                    tokens += finished.generated.tokens.len();
                    latencies.push(sent.elapsed().as_secs_f64());
                }
                Ok((latencies, tokens))
            })
        })
        .collect();
    let (mut latencies, mut tokens) = (Vec::new(), 0);
    for client in clients {
        let (l, t) = client.join().map_err(|_| anyhow::anyhow!("a client panicked"))??;
        latencies.extend(l);
        tokens += t;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let stats = engine.batch_stats();
    Ok(Measured {
        requests: latencies.len(),
        tokens,
        seconds,
        latencies,
        passes: stats.forward_calls(),
        rows: stats.rows(),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = Device::flex();
    println!(
        "{} clients, {} tokens per request ({} steps, blocks of {}), {} s per engine",
        args.clients, args.tokens, args.tokens, args.block_length, args.seconds
    );
    let mut rates = Vec::new();
    for batch in [1, args.batch] {
        let m = measure(&args, batch, &device)?;
        anyhow::ensure!(!m.latencies.is_empty(), "no request finished in {} s", args.seconds);
        let quantile = |q: f64| m.latencies[((m.latencies.len() - 1) as f64 * q) as usize] * 1e3;
        println!(
            "--batch {batch}: {} requests, {:.1} requests/s, {:.0} tokens/s; latency p50 {:.0} ms, \
             p90 {:.0} ms; {} forward passes, {:.2} rows per pass",
            m.requests,
            m.requests as f64 / m.seconds,
            m.tokens as f64 / m.seconds,
            quantile(0.5),
            quantile(0.9),
            m.passes,
            m.rows as f64 / m.passes.max(1) as f64,
        );
        rates.push(m.tokens as f64 / m.seconds);
    }
    println!("throughput of --batch {} over --batch 1: {:.2}×", args.batch, rates[1] / rates[0]);
    Ok(())
}
