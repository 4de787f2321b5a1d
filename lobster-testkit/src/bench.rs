//! Sample statistics for the bench binaries (which print numbers and assert
//! nothing about them).

use std::time::Duration;

/// The value at quantile `p` (0.0 to 1.0) of `samples`: the nearest rank,
/// rounding half up, so `percentile(s, 0.5)` is [`median`]. Panics on no samples.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The median of `samples` (the upper one of an even count).
pub fn median(samples: Vec<Duration>) -> Duration {
    percentile(&samples, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_is_the_middle_and_the_upper_of_two_middles() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(median(ms(&[9, 1, 5])), Duration::from_millis(5));
        assert_eq!(median(ms(&[4, 1, 3, 2])), Duration::from_millis(3));
        assert_eq!(percentile(&ms(&[3, 1, 2]), 1.0), Duration::from_millis(3));
        assert_eq!(percentile(&ms(&[3, 1, 2]), 0.0), Duration::from_millis(1));
    }
}
