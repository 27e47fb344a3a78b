//! What the examples and benchmarks of `dlm` share, and nothing a library user needs: the data
//! and equal-budget training of the likelihood ladders ([`ladder`]), the antibody sequences of the
//! AntiBERTy example and bench ([`antibody`]), and the benchmarked model sizes
//! ([`bench_configs`]). Not published; every method they call lives in the library crates.

pub mod antibody;
pub mod bench_configs;
pub mod ladder;
