//! Latency and speed distributions: recorded in an hdrhistogram, shipped as a
//! [`HistogramSnapshot`] (count, percentiles and explicit buckets) in the
//! status document and the event stream.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Values are recorded in thousandths of the unit (e.g. microseconds for a
/// millisecond histogram) so fractional values keep three decimals.
const SCALE: f64 = 1000.0;

/// Bucket bounds for time-to-first-token, milliseconds.
pub const TTFT_MS_BUCKETS: &[f64] = &[
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

/// Bucket bounds for decode speed, tokens per second.
pub const TOK_S_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 500.0,
];

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Upper bound, inclusive; `f64::INFINITY` is written as `null`.
    pub le: Option<f64>,
    /// Values in this bucket only (not cumulative).
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    pub count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub percentiles: Percentiles,
    pub buckets: Vec<Bucket>,
}

/// A distribution of one quantity with fixed bucket bounds for display.
#[derive(Debug, Clone)]
pub struct Distribution {
    hist: Histogram<u64>,
    bounds: &'static [f64],
}

impl Distribution {
    /// A distribution tracking values up to `max_value` (in the unit) with
    /// three significant digits.
    pub fn new(bounds: &'static [f64], max_value: f64) -> Self {
        let high = ((max_value * SCALE) as u64).max(2);
        // 1..high with 3 significant figures is always a valid configuration.
        let hist = Histogram::new_with_bounds(1, high, 3)
            .unwrap_or_else(|_| Histogram::new(3).expect("3 significant figures is valid"));
        Distribution { hist, bounds }
    }

    pub fn ttft_ms() -> Self {
        Self::new(TTFT_MS_BUCKETS, 3_600_000.0)
    }

    pub fn tok_s() -> Self {
        Self::new(TOK_S_BUCKETS, 1_000_000.0)
    }

    /// Records one value; negatives and NaN are ignored, values past the
    /// maximum are clamped.
    pub fn record(&mut self, value: f64) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        let scaled = ((value * SCALE) as u64).max(1);
        self.hist.saturating_record(scaled);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn percentile(&self, q: f64) -> Option<f64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(q) as f64 / SCALE)
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        if self.hist.is_empty() {
            return HistogramSnapshot {
                buckets: self
                    .bounds
                    .iter()
                    .map(|b| Some(*b))
                    .chain(std::iter::once(None))
                    .map(|le| Bucket { le, count: 0 })
                    .collect(),
                ..Default::default()
            };
        }
        let mut buckets = Vec::with_capacity(self.bounds.len() + 1);
        let mut below = 0u64;
        for bound in self.bounds {
            let cumulative = self.hist.count_between(0, (bound * SCALE) as u64);
            buckets.push(Bucket {
                le: Some(*bound),
                count: cumulative.saturating_sub(below),
            });
            below = cumulative;
        }
        buckets.push(Bucket {
            le: None,
            count: self.hist.len().saturating_sub(below),
        });
        HistogramSnapshot {
            count: self.hist.len(),
            min: Some(self.hist.min() as f64 / SCALE),
            max: Some(self.hist.max() as f64 / SCALE),
            mean: Some(self.hist.mean() / SCALE),
            percentiles: Percentiles {
                p50: self.percentile(0.5),
                p90: self.percentile(0.9),
                p99: self.percentile(0.99),
            },
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_buckets_follow_the_data() {
        let mut d = Distribution::ttft_ms();
        for v in 1..=100 {
            d.record(v as f64);
        }
        let s = d.snapshot();
        assert_eq!(s.count, 100);
        let p50 = s.percentiles.p50.unwrap();
        assert!((49.0..=51.0).contains(&p50), "p50 {p50}");
        let p99 = s.percentiles.p99.unwrap();
        assert!((98.0..=100.0).contains(&p99), "p99 {p99}");
        // 1..=5 in the first bucket, 6..=10 in the second, 51..=100 in ≤100.
        assert_eq!(s.buckets[0].count, 5);
        assert_eq!(s.buckets[1].count, 5);
        assert_eq!(s.buckets[4].count, 50);
        assert_eq!(s.buckets.iter().map(|b| b.count).sum::<u64>(), 100);
        assert_eq!(s.buckets.last().unwrap().le, None);
    }

    #[test]
    fn empty_and_bad_values() {
        let mut d = Distribution::tok_s();
        d.record(f64::NAN);
        d.record(-1.0);
        let s = d.snapshot();
        assert_eq!(s.count, 0);
        assert_eq!(s.percentiles.p50, None);
        assert_eq!(s.buckets.len(), TOK_S_BUCKETS.len() + 1);
    }
}
