//! Rate limits of one peer: a token bucket for its messages, and a throttle for the log lines
//! its refused messages cause.
//!
//! 88,500 refused messages a second were 17 MB/s of log, one line each: a peer must not decide
//! how much the broker writes. A throttled peer gets at most one line per [`LOG_PERIOD`], and the
//! lines held back are counted and said with the next one (or at the next tick, when the peer
//! has gone quiet).

use std::time::{Duration, Instant};

/// At most one log line per peer per this period.
pub const LOG_PERIOD: Duration = Duration::from_secs(1);

/// Messages a peer may send: `per_second`, with bursts of as many.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(now: Instant) -> Bucket {
        Bucket {
            tokens: f64::MAX,
            refilled: now,
        }
    }

    /// Takes one message from the bucket; false when the peer is over its rate.
    pub fn admit(&mut self, per_second: u32, now: Instant) -> bool {
        let cap = f64::from(per_second.max(1));
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens.min(cap) + elapsed * cap).min(cap);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// At most one log line per [`LOG_PERIOD`]; the others are counted.
#[derive(Debug, Clone, Default)]
pub struct LogThrottle {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// `Some(lines held back since the last one)` when a line may be written now; otherwise
    /// the line is counted.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if !self.due(now) {
            self.suppressed += 1;
            return None;
        }
        Some(self.said(now))
    }

    /// True when a line may be written now.
    pub fn due(&self, now: Instant) -> bool {
        self.last.is_none_or(|t| now.saturating_duration_since(t) >= LOG_PERIOD)
    }

    /// A line is written now: returns how many were held back before it.
    pub fn said(&mut self, now: Instant) -> u64 {
        self.last = Some(now);
        std::mem::take(&mut self.suppressed)
    }

    /// Lines held back since the last one.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate() {
        let t = Instant::now();
        let mut b = Bucket::new(t);
        assert_eq!((0..20).filter(|_| b.admit(10, t)).count(), 10);
        assert!(!b.admit(10, t + Duration::from_millis(50)));
        assert!(b.admit(10, t + Duration::from_millis(150)));
    }

    #[test]
    fn one_line_per_period_and_a_count_of_the_rest() {
        let t = Instant::now();
        let mut l = LogThrottle::default();
        assert_eq!(l.allow(t), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.allow(t + Duration::from_millis(500)), None);
        }
        assert!(!l.due(t + Duration::from_millis(900)));
        assert_eq!(l.allow(t + LOG_PERIOD), Some(1000));
        l.allow(t + LOG_PERIOD);
        assert_eq!(l.suppressed(), 1);
        assert!(l.due(t + 2 * LOG_PERIOD));
        assert_eq!(l.said(t + 2 * LOG_PERIOD), 1);
    }
}
