//! What users actually did, compared with what the model predicted: online error of the served
//! model, acceptance of suggestions, and active/engaged user counts.
//!
//! Memory does not grow with the number of users. The window's users live only in HyperLogLog
//! sketches (the ones `/v1/stats` sends anyway), one pair per slice of the window in a fixed
//! ring of slots: an event inserts into the current slice's pair, a slot whose slice has left
//! the window is reset when its turn comes round again (amortised O(1) eviction), and a count
//! merges the slots still in the window. The sums have one lock and each slot its own, each held
//! for a bounded amount of work (one insert, one reset, one sketch merge): stats never scan
//! users, and feedback never waits for more than one merge.

use std::{
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use recommender_contract::stats::{FeedbackSums, SuggestionCounts, UserSketch, UserSketches};
use serde::Serialize;

/// Slices per active window. A user counts as active from their feedback until the end of the
/// slice one window later: between one window and 1/24 more (up to 25 h for a 24 h window).
pub const WINDOW_SLICES: u64 = 24;

pub struct FeedbackStats {
    sums: Mutex<Sums>,
    users: UserWindow,
    accept_threshold: f64,
    window: Duration,
}

#[derive(Default, Clone)]
struct Sums {
    /// Version the error sums refer to; feedback predicted by another version is not mixed in.
    model_version: Option<String>,
    /// Without its version: that is the field above.
    errors: FeedbackSums,
    total: u64,
    suggested: u64,
    accepted: u64,
}

/// The window's users as a ring of `WINDOW_SLICES + 1` slots of sketches: the current slice and
/// the whole slices of one window before it.
struct UserWindow {
    origin: Instant,
    slice: Duration,
    slots: Box<[Mutex<Slot>]>,
}

/// The users of one slice: `index` counts slices since `origin`.
#[derive(Default)]
struct Slot {
    index: u64,
    active: UserSketch,
    engaged: UserSketch,
}

/// Poisoning only means another request panicked mid-update; sums and sketches stay usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl UserWindow {
    fn new(window: Duration, origin: Instant) -> Self {
        let slice = (window / WINDOW_SLICES as u32).max(Duration::from_nanos(1));
        UserWindow {
            origin,
            slice,
            slots: (0..=WINDOW_SLICES).map(|_| Mutex::default()).collect(),
        }
    }

    fn slice_of(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.slice.as_nanos()).unwrap_or(u64::MAX)
    }

    fn insert(&self, user: &str, rated_suggestion: bool, now: Instant) {
        let index = self.slice_of(now);
        let mut slot = lock(&self.slots[(index % self.slots.len() as u64) as usize]);
        if slot.index < index {
            // The slot still holds a slice that left the window one ring ago.
            *slot = Slot {
                index,
                ..Slot::default()
            };
        }
        slot.active.insert(user);
        if rated_suggestion {
            slot.engaged.insert(user);
        }
    }

    /// The union of the slices still in the window, merged one slot lock at a time.
    fn sketches(&self, now: Instant) -> (UserSketch, UserSketch) {
        let current = self.slice_of(now);
        let (mut active, mut engaged) = (UserSketch::default(), UserSketch::default());
        for slot in &self.slots {
            let slot = lock(slot);
            if current.saturating_sub(slot.index) > WINDOW_SLICES {
                continue;
            }
            for (into, from) in [(&mut active, &slot.active), (&mut engaged, &slot.engaged)] {
                // Our own sketches share one precision, so a merge cannot be refused.
                if let Err(e) = into.merge(from) {
                    tracing::error!(error = %e, "merging user sketches");
                }
            }
        }
        (active, engaged)
    }
}

/// One feedback event as seen by the accumulator.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    pub user: &'a str,
    pub model_version: &'a str,
    pub predicted: f64,
    pub actual: f64,
    pub suggested: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Version the online error refers to.
    pub model_version: Option<String>,
    pub samples: u64,
    pub rmse: Option<f64>,
    pub mae: Option<f64>,
    pub feedback_total: u64,
    pub suggested_total: u64,
    pub accepted_total: u64,
    pub acceptance_rate: Option<f64>,
    pub accept_threshold: f64,
    /// Distinct users, estimated by the sketches (exact for small counts, 0.81% beyond).
    pub active_users: u64,
    pub engaged_users: u64,
    pub active_window_seconds: u64,
}

impl FeedbackStats {
    pub fn new(accept_threshold: f64, window: Duration) -> Self {
        FeedbackStats {
            sums: Mutex::default(),
            users: UserWindow::new(window, Instant::now()),
            accept_threshold,
            window,
        }
    }

    /// Starts a fresh online error for a newly served model version.
    pub fn model_changed(&self, version: &str) {
        let mut sums = lock(&self.sums);
        if sums.model_version.as_deref() != Some(version) {
            sums.model_version = Some(version.to_owned());
            sums.errors = FeedbackSums::default();
        }
    }

    /// Records one event; returns whether it counts as an accepted suggestion (`None` when the
    /// item had not been suggested).
    pub fn record(&self, event: Event<'_>, now: Instant) -> Option<bool> {
        let accepted = event
            .suggested
            .then_some(event.actual >= self.accept_threshold);
        {
            let mut sums = lock(&self.sums);
            if sums.model_version.as_deref() == Some(event.model_version) {
                sums.errors.record(event.predicted, event.actual);
            }
            sums.total += 1;
            sums.suggested += u64::from(event.suggested);
            sums.accepted += u64::from(accepted == Some(true));
        }
        // Engaged, as the old app counted it: the user rated a suggestion, whatever the rating.
        self.users.insert(event.user, event.suggested, now);
        accepted
    }

    /// What this replica adds to the aggregate over all replicas: sums, not ratios, and the
    /// window's users as sketches (a user may reach several replicas).
    pub fn stats(&self, now: Instant) -> (FeedbackSums, SuggestionCounts, UserSketches) {
        let sums = lock(&self.sums).clone();
        let feedback = FeedbackSums {
            model_version: sums.model_version,
            ..sums.errors
        };
        let suggestions = SuggestionCounts {
            shown: 0,
            rated: sums.suggested,
            accepted: sums.accepted,
        };
        let (active, engaged) = self.users.sketches(now);
        let users = UserSketches {
            window_seconds: self.window.as_secs(),
            active,
            engaged,
        };
        (feedback, suggestions, users)
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let sums = lock(&self.sums).clone();
        let (mut active, mut engaged) = self.users.sketches(now);
        let e = &sums.errors;
        let n = e.n as f64;
        Snapshot {
            model_version: sums.model_version,
            samples: e.n,
            rmse: (e.n > 0).then(|| (e.sum_squared_error / n).sqrt()),
            mae: (e.n > 0).then(|| e.sum_absolute_error / n),
            feedback_total: sums.total,
            suggested_total: sums.suggested,
            accepted_total: sums.accepted,
            acceptance_rate: (sums.suggested > 0)
                .then(|| sums.accepted as f64 / sums.suggested as f64),
            accept_threshold: self.accept_threshold,
            active_users: active.count(),
            engaged_users: engaged.count(),
            active_window_seconds: self.window.as_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(user: &'a str, predicted: f64, actual: f64, suggested: bool) -> Event<'a> {
        Event {
            user,
            model_version: "v1",
            predicted,
            actual,
            suggested,
        }
    }

    #[test]
    fn online_error_and_acceptance() {
        let stats = FeedbackStats::new(4.0, Duration::from_secs(3600));
        stats.model_changed("v1");
        let t = Instant::now();
        assert_eq!(stats.record(event("a", 3.0, 4.0, true), t), Some(true));
        assert_eq!(stats.record(event("a", 3.0, 1.0, true), t), Some(false));
        assert_eq!(stats.record(event("b", 3.0, 3.0, false), t), None);
        let s = stats.snapshot(t);
        assert_eq!(s.samples, 3);
        // Only "a" rated a suggestion; "b" rated something it found alone.
        // errors 1, -2, 0
        assert!((s.rmse.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((s.mae.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!((s.suggested_total, s.accepted_total), (2, 1));
        assert_eq!(s.acceptance_rate, Some(0.5));
        assert_eq!((s.active_users, s.engaged_users), (2, 1));
    }

    #[test]
    fn engaged_means_rated_a_suggestion_even_below_the_threshold() {
        let stats = FeedbackStats::new(4.0, Duration::from_secs(3600));
        stats.model_changed("v1");
        let t = Instant::now();
        assert_eq!(stats.record(event("c", 3.0, 2.0, true), t), Some(false));
        stats.record(event("d", 3.0, 5.0, false), t);
        let s = stats.snapshot(t);
        assert_eq!((s.active_users, s.engaged_users), (2, 1));
        let (_, _, mut users) = stats.stats(t);
        assert_eq!((users.active.count(), users.engaged.count()), (2, 1));
    }

    #[test]
    fn a_new_model_starts_a_new_online_error() {
        let stats = FeedbackStats::new(4.0, Duration::from_secs(3600));
        stats.model_changed("v1");
        let t = Instant::now();
        stats.record(event("a", 1.0, 5.0, false), t);
        stats.model_changed("v2");
        // Predicted by v1 but reported after the swap: not v2's error.
        stats.record(event("a", 1.0, 5.0, false), t);
        let s = stats.snapshot(t);
        assert_eq!(s.model_version.as_deref(), Some("v2"));
        assert_eq!((s.samples, s.rmse), (0, None));
        assert_eq!(s.feedback_total, 2);
    }

    #[test]
    fn stats_are_sums_and_sketches() {
        let stats = FeedbackStats::new(4.0, Duration::from_secs(3600));
        stats.model_changed("v1");
        let t = Instant::now();
        stats.record(event("a", 3.0, 4.0, true), t);
        stats.record(event("a", 3.0, 1.0, true), t);
        stats.record(event("b", 2.5, 3.0, false), t);
        let (sums, suggestions, mut users) = stats.stats(t);
        assert_eq!((sums.n, sums.within_one), (3, 2));
        assert_eq!(
            (sums.sum_squared_error, sums.sum_absolute_error),
            (5.25, 3.5)
        );
        assert_eq!((sums.sum_predicted, sums.sum_actual), (8.5, 8.0));
        assert_eq!((suggestions.rated, suggestions.accepted), (2, 1));
        assert_eq!((users.active.count(), users.engaged.count()), (2, 1));
    }

    #[test]
    fn users_leave_the_window() {
        let stats = FeedbackStats::new(4.0, Duration::from_secs(60));
        let t0 = Instant::now();
        stats.record(event("a", 3.0, 5.0, true), t0);
        stats.record(event("b", 3.0, 5.0, false), t0 + Duration::from_secs(50));
        let s = stats.snapshot(t0 + Duration::from_secs(90));
        assert_eq!((s.active_users, s.engaged_users), (1, 0));
        assert_eq!(s.rmse, None, "no model version yet, so no online error");
    }

    #[test]
    fn a_user_counts_for_one_window_and_at_most_one_slice_more() {
        let window = Duration::from_secs(240);
        let slice = window / WINDOW_SLICES as u32;
        let stats = FeedbackStats::new(4.0, window);
        let t0 = stats.users.origin;
        stats.record(event("a", 3.0, 5.0, true), t0);
        let at = |t| stats.snapshot(t).active_users;
        assert_eq!(at(t0 + window), 1, "still inside its window");
        assert_eq!(at(t0 + window + slice - Duration::from_nanos(1)), 1);
        assert_eq!(at(t0 + window + slice), 0, "one slice past the window");
    }

    #[test]
    fn slots_are_reused_round_the_ring_and_only_the_window_counts() {
        let window = Duration::from_secs(240);
        let slice = window / WINDOW_SLICES as u32;
        let stats = FeedbackStats::new(4.0, window);
        let t0 = stats.users.origin;
        // Three windows of ten new users per slice: every slot is overwritten twice.
        let slices = 3 * WINDOW_SLICES;
        for s in 0..slices {
            for u in 0..10 {
                let user = format!("user-{s}-{u}");
                stats.record(event(&user, 3.0, 4.0, u == 0), t0 + slice * s as u32);
            }
        }
        let now = t0 + slice * (slices - 1) as u32;
        let s = stats.snapshot(now);
        // The current slice and the whole window before it: 25 slices.
        let in_window = (WINDOW_SLICES + 1) as f64;
        assert!(
            (s.active_users as f64 - 10.0 * in_window).abs() <= 2.0,
            "{}",
            s.active_users
        );
        assert_eq!(s.engaged_users, in_window as u64);
        assert_eq!(s.feedback_total, 10 * slices);
    }
}
