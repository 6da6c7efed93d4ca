//! A Prometheus histogram with fixed buckets, updated with atomics.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds, in seconds, of the buckets of a latency histogram: 100 µs
/// to 10 s.
pub const SECONDS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Upper bounds of the buckets of a size histogram: powers of two to 4096.
pub const SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

/// Counts observations into buckets; cheap to update from any thread.
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound (not cumulative), then the count above the last.
    buckets: Box<[AtomicU64]>,
    /// The sum of the observations, in units of `unit` (an integer, so one
    /// atomic add records it).
    sum: AtomicU64,
    unit: f64,
}

impl Histogram {
    /// An empty histogram of seconds over `bounds` (ascending), summed in
    /// nanoseconds.
    pub fn seconds(bounds: &'static [f64]) -> Self {
        Self::new(bounds, 1e-9)
    }

    /// An empty histogram of whole counts over `bounds` (ascending).
    pub fn counts(bounds: &'static [f64]) -> Self {
        Self::new(bounds, 1.0)
    }

    fn new(bounds: &'static [f64], unit: f64) -> Self {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self { bounds, buckets, sum: AtomicU64::new(0), unit }
    }

    /// Counts one observation of `value`.
    pub fn observe(&self, value: f64) {
        let index = self.bounds.partition_point(|&bound| bound < value);
        self.buckets[index].fetch_add(1, Relaxed);
        self.sum.fetch_add((value / self.unit).round() as u64, Relaxed);
    }

    /// Counts one observation of `elapsed`, in seconds.
    pub fn observe_duration(&self, elapsed: Duration) {
        let index = self.bounds.partition_point(|&bound| bound < elapsed.as_secs_f64());
        self.buckets[index].fetch_add(1, Relaxed);
        let units = (elapsed.as_nanos() as f64 * 1e-9 / self.unit).round() as u64;
        self.sum.fetch_add(units, Relaxed);
    }

    /// How many observations were counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|bucket| bucket.load(Relaxed)).sum()
    }

    /// Writes the histogram's `_bucket`, `_sum` and `_count` lines for
    /// `name`; `labels` (already rendered, `a="x",b="y"`, or empty) go
    /// before `le`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[self.bounds.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}");
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let sum = self.sum.load(Relaxed) as f64 * self.unit;
        let _ = writeln!(out, "{name}_sum{braces} {sum}\n{name}_count{braces} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_fall_in_the_first_bucket_whose_bound_is_not_below_them() {
        let histogram = Histogram::counts(&[1.0, 2.0]);
        for value in [0.0, 1.0, 2.0, 3.0] {
            histogram.observe(value);
        }
        let mut out = String::new();
        histogram.render(&mut out, "h", "service=\"s\"");
        assert_eq!(
            out,
            "h_bucket{service=\"s\",le=\"1\"} 2\nh_bucket{service=\"s\",le=\"2\"} 3\n\
             h_bucket{service=\"s\",le=\"+Inf\"} 4\nh_sum{service=\"s\"} 6\nh_count{service=\"s\"} 4\n"
        );
        assert_eq!(histogram.count(), 4);
    }

    #[test]
    fn a_histogram_without_labels_renders_only_le() {
        let histogram = Histogram::seconds(&[1.0]);
        histogram.observe_duration(Duration::from_millis(250));
        let mut out = String::new();
        histogram.render(&mut out, "h", "");
        assert_eq!(out, "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.25\nh_count 1\n");
    }
}
