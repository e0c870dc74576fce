//! The write-loop guard: mirrors that something else keeps changing back.
//!
//! When Asterisk reports a mirror with another value than the one we wrote, the agent puts
//! its value back: usually a late action of a dropped session landed, or someone wrote our
//! name by hand. But when the other value keeps coming (another tool owns the name, or
//! Asterisk alters the value on the way in a way nothing here foresaw), putting it back at once
//! every time is a write loop: thousands of Setvars a second, for as long as the entry lives.
//! So the first override is answered at once, the next ones after a delay that doubles, and
//! after [`MAX_RETRIES`] the target is left alone, with one warning that names it and both
//! values, until its origin sends a new value or it has been quiet for [`QUIET`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Overrides answered before a target is left alone.
pub const MAX_RETRIES: u32 = 5;
/// A target not overridden for this long starts over.
pub const QUIET: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Override {
    count: u32,
    last: Instant,
    /// When the next write is due (None: none scheduled).
    next_try: Option<Instant>,
    given_up: bool,
}

/// What to do about one override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write the mirror again now.
    WriteNow,
    /// A write is scheduled: [`Overrides::due`] returns it when it is time.
    Later,
    /// Stop: the target is left alone from now on (say so, once).
    GiveUp,
    /// Already left alone.
    Ignore,
}

/// The overridden targets of one agent.
#[derive(Debug, Default)]
pub struct Overrides {
    by_target: HashMap<String, Override>,
}

impl Overrides {
    /// Asterisk reported `target` with a value we did not write. `base` is the first delay.
    pub fn on_override(&mut self, target: &str, now: Instant, base: Duration) -> Verdict {
        let o = self.by_target.entry(target.to_string()).or_insert(Override {
            count: 0,
            last: now,
            next_try: None,
            given_up: false,
        });
        if now.duration_since(o.last) > QUIET {
            *o = Override {
                count: 0,
                last: now,
                next_try: None,
                given_up: false,
            };
        }
        o.last = now;
        if o.given_up {
            return Verdict::Ignore;
        }
        o.count += 1;
        match o.count {
            1 => Verdict::WriteNow,
            n if n <= MAX_RETRIES => {
                if o.next_try.is_none() {
                    o.next_try = Some(now + base * (1u32 << (n - 2).min(10)));
                }
                Verdict::Later
            }
            _ => {
                o.given_up = true;
                o.next_try = None;
                Verdict::GiveUp
            }
        }
    }

    /// The targets whose delayed write is due, and those left alone that have been quiet for
    /// [`QUIET`] (whatever fought them stopped: they are written again, and start over).
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        self.by_target.retain(|t, o| {
            if o.given_up && now.duration_since(o.last) > QUIET {
                out.push(t.clone());
                return false;
            }
            if o.next_try.is_some_and(|at| at <= now) {
                o.next_try = None;
                out.push(t.clone());
            }
            true
        });
        out
    }

    /// The target's origin sent a new value: whatever fought the old one, start over.
    pub fn reset(&mut self, target: &str) {
        self.by_target.remove(target);
    }

    /// Whether the target is left alone now.
    pub fn is_given_up(&self, target: &str) -> bool {
        self.by_target.get(target).is_some_and(|o| o.given_up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_at_once_then_later_then_gives_up() {
        let mut o = Overrides::default();
        let t0 = Instant::now();
        let base = Duration::from_millis(100);
        assert_eq!(o.on_override("x", t0, base), Verdict::WriteNow);
        assert_eq!(o.on_override("x", t0, base), Verdict::Later);
        assert!(o.due(t0).is_empty());
        assert_eq!(o.due(t0 + base), ["x"]);
        for _ in 3..=MAX_RETRIES {
            assert_eq!(o.on_override("x", t0, base), Verdict::Later);
        }
        assert_eq!(o.on_override("x", t0, base), Verdict::GiveUp);
        assert_eq!(o.on_override("x", t0, base), Verdict::Ignore);
        assert!(o.is_given_up("x"));
        // Quiet since: written again, and no longer left alone.
        assert!(o.due(t0 + QUIET / 2).is_empty());
        assert_eq!(o.due(t0 + QUIET * 2), ["x"]);
        assert!(!o.is_given_up("x"));
        assert_eq!(o.on_override("x", t0, base), Verdict::WriteNow);
        for _ in 2..=MAX_RETRIES + 1 {
            o.on_override("x", t0, base);
        }
        assert!(o.is_given_up("x"));
        // Quiet for long enough, or a new value from the origin: start over.
        assert_eq!(o.on_override("x", t0 + QUIET * 2, base), Verdict::WriteNow);
        o.reset("x");
        assert!(!o.is_given_up("x"));
        assert_eq!(o.on_override("x", t0, base), Verdict::WriteNow);
    }
}
