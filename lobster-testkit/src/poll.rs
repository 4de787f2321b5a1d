//! Waiting for a condition with a deadline, instead of sleeping a fixed time.
//!
//! The probe runs at once, then after 10 ms, with the interval doubling up to
//! 250 ms: fast conditions are seen quickly, slow ones (a booting guest) are
//! not hammered.

use std::future::Future;
use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(10);
const LONGEST: Duration = Duration::from_millis(250);

/// Polls `probe` until it returns `Some`, for at most `within`; `None` when
/// time ran out.
pub fn within<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    let mut interval = FIRST;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(interval.min(deadline - now));
        interval = (interval * 2).min(LONGEST);
    }
}

/// Like [`within`], but fails the test naming `what` when time runs out.
pub fn until<T>(what: &str, within: Duration, probe: impl FnMut() -> Option<T>) -> T {
    self::within(within, probe)
        .unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

/// [`until`] for an async probe (sleeps on the tokio timer).
pub async fn until_async<T, F: Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    let mut interval = FIRST;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        let now = tokio::time::Instant::now();
        assert!(
            now < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 2).min(LONGEST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_returns_the_first_value_and_none_after_the_deadline() {
        let mut n = 0;
        let got = within(Duration::from_secs(5), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(got, Some(3));
        let started = Instant::now();
        assert_eq!(within(Duration::from_millis(50), || None::<()>), None);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    #[should_panic(expected = "timed out after 20ms waiting for nothing")]
    fn until_names_what_it_waited_for() {
        until("nothing", Duration::from_millis(20), || None::<()>);
    }
}
