//! The README's first command.
//!
//! For now it shows the noise schedules every diffusion family shares (the `schedules` example);
//! it will train a small masked diffusion model once `dlm-discrete` lands.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

#[path = "schedules/report.rs"]
mod report;

use std::path::Path;

use dlm::sched::ScheduleKind;

fn main() -> anyhow::Result<()> {
    println!("dlm quickstart: the noise schedules of diffusion language models\n");
    let schedules = ScheduleKind::presets()?;
    report::print_table(&schedules);
    let plot = Path::new("out/schedules.svg");
    report::plot_alpha(&schedules, plot)?;
    println!("\nwrote a plot of α(t) for every schedule to {}", plot.display());
    Ok(())
}
