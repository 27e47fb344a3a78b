//! Step-level batching: the model calls of concurrent requests run as one batch.
//!
//! Each request decodes in its own worker thread through [`Batched`], a view of the network.
//! A plain call (token ids, full attention, no cache: every step of the masked sampler without
//! the Fast-dLLM caches) is sent to one executor thread and waits; the executor takes every call
//! pending at that moment, stacks their rows into one forward pass (shorter sequences padded at
//! the end, the padding blocked as keys), and hands each caller its rows. A request therefore joins the running batch at its next denoising step and
//! leaves it when it is done, whatever step the others are at. Calls that carry more (a KV cache,
//! a block-causal mask: SDAR, the prefix and dual caches) run in their worker, beside the batch.
//!
//! A row's result does not depend on the rows beside it: the network treats rows independently
//! and its matrix products reduce each output element in the same order whatever the batch
//! (tested: calls of one length stacked equal the calls one by one, bit for bit, on flex). A
//! padded row attends to the same keys as alone, so it agrees up to float rounding (the
//! reductions run over longer, zero-weighted rows; tested within 1e-5) — enough to flip a near
//! tie of a greedy or threshold decision now and then, so a padded request's tokens can differ
//! from its decoding alone. Other backends' kernels may depend on the batch's shape.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use dlm_core::backbone::{AttentionMask, DenoiserInput, DenoiserOutput, TokenModel};

/// One caller's rows: token ids `[rows, n]`, their times, and where the result goes.
struct Call {
    tokens: Tensor<2, Int>,
    time: Option<Tensor<1>>,
    reply: Sender<Result<Tensor<3>, String>>,
}

/// What the executor has run: model calls, and the callers' calls and rows they held.
#[derive(Debug, Default)]
pub struct BatchStats {
    forward_calls: AtomicU64,
    stacked_calls: AtomicU64,
    rows: AtomicU64,
}

impl BatchStats {
    /// Forward passes the executor ran.
    pub fn forward_calls(&self) -> u64 {
        self.forward_calls.load(Ordering::Relaxed)
    }

    /// Callers' calls those passes served (more than the passes when calls were stacked).
    pub fn stacked_calls(&self) -> u64 {
        self.stacked_calls.load(Ordering::Relaxed)
    }

    /// Rows those passes read.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

/// The executor thread: it owns nothing but a handle on the shared network.
#[derive(Debug, Clone)]
pub struct Executor {
    calls: Sender<Call>,
    stats: Arc<BatchStats>,
}

impl Executor {
    /// Starts the thread that runs the stacked calls of the network `network(&owner)` (the
    /// workers share `owner`).
    ///
    /// # Errors
    /// As [`thread::Builder::spawn`].
    pub fn start<T, M>(owner: Arc<T>, network: fn(&T) -> &M) -> std::io::Result<Self>
    where
        T: Send + Sync + 'static,
        M: TokenModel + ?Sized + 'static,
    {
        let (calls, pending) = channel::<Call>();
        let stats = Arc::new(BatchStats::default());
        let counts = stats.clone();
        thread::Builder::new()
            .name("dlm-batch".into())
            .spawn(move || run(network(&owner), &pending, &counts))?;
        Ok(Self { calls, stats })
    }

    /// What the executor has run so far.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }
}

/// Rows of one forward pass at most; more pending calls wait for the next pass.
const MAX_ROWS_PER_PASS: usize = 64;

/// Takes the calls pending, runs them as passes of at most [`MAX_ROWS_PER_PASS`] rows (calls with
/// times apart from calls without), repeats. A pass that fails is rerun call by call, so only
/// the call at fault fails.
fn run<M: TokenModel + ?Sized>(model: &M, pending: &Receiver<Call>, stats: &BatchStats) {
    while let Ok(first) = pending.recv() {
        let (timed, untimed): (Vec<Call>, Vec<Call>) =
            std::iter::once(first).chain(pending.try_iter()).partition(|c| c.time.is_some());
        for group in [timed, untimed] {
            let mut pass = Vec::new();
            let mut rows = 0;
            for call in group {
                let n = call.tokens.dims()[0];
                if rows + n > MAX_ROWS_PER_PASS && !pass.is_empty() {
                    run_or_split(model, std::mem::take(&mut pass), stats);
                    rows = 0;
                }
                rows += n;
                pass.push(call);
            }
            if !pass.is_empty() {
                run_or_split(model, pass, stats);
            }
        }
    }
}

/// One pass over `calls`; if it panics, each call alone, so that the others still get theirs.
fn run_or_split<M: TokenModel + ?Sized>(model: &M, calls: Vec<Call>, stats: &BatchStats) {
    let stacked = calls.len() > 1;
    let Err(calls) = stack(model, calls, stats) else { return };
    if stacked {
        for call in calls {
            if let Err(mut alone) = stack(model, vec![call], stats) {
                let call = alone.pop().expect("one call");
                let _ = call.reply.send(Err("the forward pass panicked".to_string()));
            }
        }
    } else {
        for call in calls {
            let _ = call.reply.send(Err("the forward pass panicked".to_string()));
        }
    }
}

/// Runs `calls` as one pass: shorter sequences padded at the end to the longest, the padding
/// blocked as keys (no real position attends to it); each caller gets its own rows and
/// positions back. The calls again if anything in it panicked.
fn stack<M: TokenModel + ?Sized>(
    model: &M,
    calls: Vec<Call>,
    stats: &BatchStats,
) -> Result<(), Vec<Call>> {
    let shapes: Vec<[usize; 2]> = calls.iter().map(|c| c.tokens.dims()).collect();
    let hidden = catch_unwind(AssertUnwindSafe(|| {
        let longest = shapes.iter().map(|[_, n]| *n).max().unwrap_or(0);
        let device = calls[0].tokens.device();
        let padded: Vec<Tensor<2, Int>> = calls
            .iter()
            .zip(&shapes)
            .map(|(call, &[rows, n])| match longest - n {
                0 => call.tokens.clone(),
                pad => {
                    Tensor::cat(vec![call.tokens.clone(), Tensor::zeros([rows, pad], &device)], 1)
                }
            })
            .collect();
        let mut input = DenoiserInput::tokens(Tensor::cat(padded, 0));
        if shapes.iter().any(|&[_, n]| n != longest) {
            input = input.with_mask(AttentionMask::custom(padding_mask(&shapes, longest, &device)));
        }
        if let Some(times) = calls.iter().map(|c| c.time.clone()).collect::<Option<Vec<_>>>() {
            input = input.with_time(Tensor::cat(times, 0));
        }
        let hidden = model.forward_hidden(input).output;
        let mut start = 0;
        shapes
            .iter()
            .map(|&[rows, n]| {
                let own = hidden.clone().narrow(0, start, rows).narrow(1, 0, n);
                start += rows;
                own
            })
            .collect::<Vec<_>>()
    }));
    let Ok(outputs) = hidden else { return Err(calls) };
    let rows: usize = shapes.iter().map(|[rows, _]| rows).sum();
    stats.forward_calls.fetch_add(1, Ordering::Relaxed);
    stats.stacked_calls.fetch_add(calls.len() as u64, Ordering::Relaxed);
    stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
    for (call, output) in calls.into_iter().zip(outputs) {
        // A caller that is gone (its request failed) needs nothing.
        let _ = call.reply.send(Ok(output));
    }
    Ok(())
}

/// `true` where a key is padding: key `k ≥ n` of every row of a call of length `n`, built on
/// the device from the lengths.
///
/// # Shapes
/// - returns `[Σ rows, longest, longest]`
fn padding_mask(shapes: &[[usize; 2]], longest: usize, device: &Device) -> Tensor<3, Bool> {
    let lengths: Vec<i64> =
        shapes.iter().flat_map(|&[rows, n]| std::iter::repeat_n(n as i64, rows)).collect();
    let total = lengths.len();
    let lengths = Tensor::<1, Int>::from_data(TensorData::new(lengths, [total]), device);
    let keys = Tensor::<1, Int>::arange(0..longest as i64, device);
    let blocked = keys.unsqueeze_dim::<2>(0).greater_equal(lengths.unsqueeze_dim::<2>(1));
    blocked.unsqueeze_dim::<3>(1).expand([total, longest, longest])
}

/// The network seen through the executor: plain calls are stacked with the other requests',
/// the rest run here.
#[derive(Debug, Clone, Copy)]
pub struct Batched<'a, M: ?Sized> {
    /// The network (the head, the sizes, and the calls that are not stacked).
    pub model: &'a M,
    /// Where stacked calls go.
    pub executor: &'a Executor,
}

impl<M: TokenModel + ?Sized> TokenModel for Batched<'_, M> {
    /// # Shapes
    /// - tokens `[batch, n]` → `[batch, n, hidden]`
    ///
    /// # Panics
    /// As the network's `forward_hidden`, and when the executor has stopped or its pass
    /// panicked (the worker's request then fails with a 500).
    fn forward_hidden(&self, input: DenoiserInput) -> DenoiserOutput {
        match input.into_plain_tokens() {
            Ok((tokens, time)) => {
                let (reply, result) = channel();
                self.executor
                    .calls
                    .send(Call { tokens, time, reply })
                    .unwrap_or_else(|_| panic!("the batch executor has stopped"));
                let output = result
                    .recv()
                    .unwrap_or_else(|_| Err("the batch executor has stopped".into()))
                    .unwrap_or_else(|err| panic!("{err}"));
                DenoiserOutput { output, cache: None }
            }
            Err(input) => self.model.forward_hidden(input),
        }
    }

    fn head_rows(&self, hidden: Tensor<2>) -> Tensor<2> {
        self.model.head_rows(hidden)
    }

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn max_seq_len(&self) -> usize {
        self.model.max_seq_len()
    }

    fn is_time_conditioned(&self) -> bool {
        self.model.is_time_conditioned()
    }

    fn device(&self) -> Device {
        self.model.device()
    }

    fn supports_kv_cache(&self) -> bool {
        self.model.supports_kv_cache()
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;
    use dlm_core::backbone::DenoiserConfig;

    use super::*;

    /// Sends calls of `shapes` (`[rows, n]`) to a fresh executor loop, runs it until they are
    /// answered, and returns, per call, the stacked result and the call alone.
    /// A call's result stacked with the others, and alone.
    type Pair = (Vec<f32>, Vec<f32>);

    fn stacked_and_alone(shapes: &[(usize, usize)]) -> (BatchStats, Vec<Pair>) {
        let device = Device::flex();
        let config = DenoiserConfig::tokens(11, 16).with_d_model(32).with_n_heads(2);
        let model = config.with_n_layers(2).init(&device).unwrap();
        let (calls, pending) = channel::<Call>();
        let inputs: Vec<Tensor<2, Int>> = shapes
            .iter()
            .map(|&(rows, n)| {
                Tensor::<2>::random([rows, n], Distribution::Uniform(0.0, 11.0), &device).int()
            })
            .collect();
        let replies: Vec<_> = inputs
            .iter()
            .map(|tokens| {
                let (reply, result) = channel();
                calls.send(Call { tokens: tokens.clone(), time: None, reply }).unwrap();
                result
            })
            .collect();
        drop(calls);
        let stats = BatchStats::default();
        run(&model, &pending, &stats);
        let results = inputs
            .into_iter()
            .zip(replies)
            .map(|(tokens, result)| {
                let stacked = result.recv().unwrap().unwrap();
                let alone = model.forward_hidden(DenoiserInput::tokens(tokens)).output;
                assert_eq!(stacked.dims(), alone.dims());
                (
                    stacked.into_data().iter::<f32>().collect(),
                    alone.into_data().iter::<f32>().collect(),
                )
            })
            .collect();
        (stats, results)
    }

    #[test]
    fn calls_of_one_length_stacked_give_each_caller_its_rows_bit_for_bit() {
        let (stats, results) = stacked_and_alone(&[(2, 6), (1, 6), (3, 6)]);
        assert_eq!((stats.forward_calls(), stats.stacked_calls(), stats.rows()), (1, 3, 6));
        for (stacked, alone) in results {
            assert!(stacked.iter().zip(&alone).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    #[test]
    fn shorter_calls_are_padded_and_see_none_of_the_padding() {
        // Without the padding blocked as keys, the short rows would attend to it and differ by
        // far more than rounding.
        let (stats, results) = stacked_and_alone(&[(2, 6), (1, 3), (3, 5)]);
        assert_eq!((stats.forward_calls(), stats.stacked_calls(), stats.rows()), (1, 3, 6));
        for (stacked, alone) in results {
            let worst = stacked.iter().zip(&alone).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-5, "{worst}");
        }
    }

    #[test]
    fn calls_with_a_cache_or_a_mask_are_not_stacked() {
        let device = Device::flex();
        let tokens = Tensor::<2, Int>::from_ints([[1, 2, 3]], &device);
        assert!(DenoiserInput::tokens(tokens.clone()).into_plain_tokens().is_ok());
        assert!(DenoiserInput::tokens(tokens.clone()).keep_cache().into_plain_tokens().is_err());
        let positions = Tensor::<1, Int>::from_ints([4, 5, 6], &device);
        assert!(
            DenoiserInput::tokens(tokens).with_positions(positions).into_plain_tokens().is_err()
        );
    }
}
