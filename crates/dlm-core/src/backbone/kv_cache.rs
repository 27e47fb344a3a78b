//! [`KvCache`]: keys and values of a processed prefix, per layer.

use burn::tensor::Tensor;

/// Keys and values of one layer for the cached positions.
#[derive(Debug, Clone)]
pub(crate) struct LayerKv {
    /// Rotated keys, `[batch, n_heads, len, d_head]`.
    pub(crate) key: Tensor<4>,
    /// Values, `[batch, n_heads, len, d_head]`.
    pub(crate) value: Tensor<4>,
}

/// Keys and values of every layer for a prefix of positions `[0, len)`, as returned by a forward
/// pass with [`DenoiserInput::keep_cache`](super::DenoiserInput::keep_cache). Feeding it back
/// runs the next chunk of positions against the prefix without recomputing it. This is exact
/// when the prefix's keys and values would not change if recomputed with the chunk: a causal or
/// block-causal mask, a prefix ending on a block boundary, and (for a time-conditioned model) the
/// prefix computed at the same time `t` as the chunk — or at the time it is meant to be seen at,
/// as BD3LM's clean blocks are.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
}

impl KvCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |layer| layer.key.dims()[2])
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the last `len` cached positions (a sliding window over a long generation; the
    /// caller then passes explicit positions, since the cache no longer starts at position 0).
    /// A `len` beyond the cache keeps everything.
    pub fn keep_last(self, len: usize) -> Self {
        let total = self.len();
        if len >= total {
            return self;
        }
        let layers = self
            .layers
            .into_iter()
            .map(|kv| LayerKv {
                key: kv.key.narrow(2, total - len, len),
                value: kv.value.narrow(2, total - len, len),
            })
            .collect();
        Self { layers }
    }

    /// Concatenates the positions of `self` and `other` (e.g. a prefix and a suffix cache for a
    /// chunk to attend to; under full attention the order of keys does not matter, since every
    /// key carries its rotary position).
    ///
    /// # Panics
    /// If the caches come from models of different depth or batch size.
    pub fn concat(self, other: KvCache) -> Self {
        assert_eq!(self.layers.len(), other.layers.len(), "caches of models of another depth");
        let layers = self
            .layers
            .into_iter()
            .zip(other.layers)
            .map(|(a, b)| LayerKv {
                key: Tensor::cat(vec![a.key, b.key], 2),
                value: Tensor::cat(vec![a.value, b.value], 2),
            })
            .collect();
        Self { layers }
    }

    /// The cached positions `[start, start + len)`.
    ///
    /// # Panics
    /// If the range exceeds the cache or is empty.
    pub fn slice(&self, start: usize, len: usize) -> Self {
        let layers = self
            .layers
            .iter()
            .map(|kv| LayerKv {
                key: kv.key.clone().narrow(2, start, len),
                value: kv.value.clone().narrow(2, start, len),
            })
            .collect();
        Self { layers }
    }

    /// Keeps only the first `len` cached positions (e.g. to drop a block that is being
    /// re-decoded). A `len` beyond the cache keeps everything.
    pub fn truncate(self, len: usize) -> Self {
        if len >= self.len() {
            return self;
        }
        let layers = self
            .layers
            .into_iter()
            .map(|kv| LayerKv { key: kv.key.narrow(2, 0, len), value: kv.value.narrow(2, 0, len) })
            .collect();
        Self { layers }
    }
}
