//! Feedback memory does not grow with the number of users: every allocation of this test binary
//! is counted while far more unique users send feedback than the bound could hold as ids. One
//! test per binary, so no other test's allocations are counted.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
    time::Duration,
};

use recommender_predictor::feedback::{Event, FeedbackStats, WINDOW_SLICES};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// What the feedback state may take, whatever the users: 25 slots of two sketches of 13 KiB of
/// registers each at most (precision 14), with room for the sparse form's buffers.
const BOUND: isize = 2 << 20;

#[test]
fn unique_users_beyond_any_cap_leave_memory_bounded_and_the_oldest_leave_first() {
    let window = Duration::from_secs(2_400);
    let slice = window / WINDOW_SLICES as u32;
    let before = live();
    let stats = FeedbackStats::new(4.0, window);
    let t0 = std::time::Instant::now();
    stats.model_changed("v1");
    // 720,000 users with 256-byte ids (184 MB as ids), spread over three windows so every slot
    // of the ring is filled past its sparse form and reset twice.
    const USERS: u64 = 720_000;
    let slices = 3 * WINDOW_SLICES;
    let per_slice = USERS / slices;
    let mut peak = 0;
    for n in 0..USERS {
        let user = format!("{n:0>256}");
        let at = t0 + slice * (n / per_slice).min(slices - 1) as u32;
        stats.record(
            Event {
                user: &user,
                model_version: "v1",
                predicted: 3.0,
                actual: 4.0,
                suggested: n % 10 == 0,
            },
            at,
        );
        if n % 1_000 == 0 {
            peak = peak.max(live() - before);
        }
    }
    let end = t0 + slice * (slices - 1) as u32;
    let snapshot = stats.snapshot(end);
    peak = peak.max(live() - before);
    eprintln!("feedback state at its largest: {peak} bytes");
    assert!(peak < BOUND, "feedback state took {peak} bytes");

    // Only the last window's users count: the current slice and the 24 before it.
    let in_window = (per_slice * (WINDOW_SLICES + 1)) as f64;
    let active = snapshot.active_users as f64;
    assert!(
        (active - in_window).abs() / in_window < 0.03,
        "{active} active, {in_window} expected"
    );
    assert_eq!(snapshot.feedback_total, USERS);
    // One slice further on, the oldest slice of the window has left it.
    let later = stats.snapshot(end + slice).active_users as f64;
    let expected = (per_slice * WINDOW_SLICES) as f64;
    assert!(
        (later - expected).abs() / expected < 0.03,
        "{later} active one slice later, {expected} expected"
    );
}
