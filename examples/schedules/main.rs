//! Prints α, σ, log-SNR and the masked-ELBO weight of every noise schedule at a few times, and
//! plots α(t) for all of them: the picture to look at when choosing a schedule.
//!
//! ```text
//! cargo run --release --example schedules -- --out out/schedules.svg
//! ```

mod report;

use std::path::PathBuf;

use clap::Parser;
use dlm::sched::ScheduleKind;

#[derive(Parser)]
#[command(about = "Tabulate and plot every noise schedule")]
struct Args {
    /// Where to write the SVG plot of α(t).
    #[arg(long, default_value = "out/schedules.svg")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let schedules = ScheduleKind::presets()?;
    report::print_table(&schedules);
    report::plot_alpha(&schedules, &args.out)?;
    println!("\nwrote {}", args.out.display());
    Ok(())
}
