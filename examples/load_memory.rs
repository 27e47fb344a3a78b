//! Loads an imported checkpoint and reports the load time and the peak resident memory against
//! the size of its weight files (`docs/pretrained.md`; the checkpoint from
//! `scripts/synthetic_checkpoint.py`).
//!
//! ```text
//! cargo run --release --example load_memory -- /tmp/synthetic-1b
//! ```
//! Linux only (the peak is the process's `VmHWM` in `/proc/self/status`).

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use clap::Parser;
use dlm::core::hf::weight_files;
use dlm::core::llama::Pretrained;

#[derive(Parser, Debug)]
struct Args {
    /// The model directory.
    dir: PathBuf,
    /// The burn device.
    #[arg(long)]
    device: Option<String>,
}

/// A field of `/proc/self/status` in kB.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/self/status"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = dlm::device::device_from_cli_or_env(args.device.as_deref())?;
    let (files, _) = weight_files(&args.dir)?;
    let file_bytes: u64 =
        files.iter().map(|f| std::fs::metadata(f).map(|m| m.len())).sum::<Result<_, _>>()?;
    let before = status_kib("VmHWM:")? * 1024;
    let started = Instant::now();
    let pretrained = Pretrained::from_dir(&args.dir, &device)?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:")? * 1024;
    let (anonymous, file_backed) = (status_kib("RssAnon:")? * 1024, status_kib("RssFile:")? * 1024);
    let params = pretrained.model.num_params();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "{:.3} B parameters, files {:.2} GiB; loaded in {seconds:.1} s; peak resident {:.2} GiB \
         ({:.2}× the files; {:.2} GiB before loading); after loading {:.2} GiB anonymous and \
         {:.2} GiB file-backed; f32 weights alone {:.2} GiB",
        params as f64 / 1e9,
        gib(file_bytes),
        gib(peak),
        peak as f64 / file_bytes as f64,
        gib(before),
        gib(anonymous),
        gib(file_backed),
        gib(params as u64 * 4),
    );
    Ok(())
}
