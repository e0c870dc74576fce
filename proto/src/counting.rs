//! An allocator that counts the bytes it holds, for the tests that measure what a table or a
//! mirror of 100,000 devices costs (agent/tests/memory.rs, broker/tests/memory.rs). It lives
//! here, in the crate both use, rather than twice in their tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting live and peak bytes. Install it in a test binary with
/// `#[global_allocator] static A: Counting = Counting;`.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

/// Bytes held now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Most bytes held at once so far; [`reset_peak`] starts a new measurement.
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// The peak from now on starts at what is held now.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Bytes as MiB, for printing.
pub fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
