//! What users actually did, compared with what the model predicted: online error of the served
//! model, acceptance of suggestions, and active/engaged user counts.
//!
//! Feedback is far rarer than predictions, so one mutex is cheaper to reason about than a set of
//! atomics that would have to stay consistent with each other.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use recommender_contract::stats::{FeedbackSums, SuggestionCounts, UserSketch, UserSketches};
use serde::Serialize;

/// Beyond this many distinct users in the window, new users are not tracked (counts saturate)
/// so a flood of made-up ids cannot exhaust memory.
const MAX_TRACKED_USERS: usize = 1_000_000;

pub struct FeedbackStats {
    inner: Mutex<Inner>,
    accept_threshold: f64,
    window: Duration,
}

#[derive(Default)]
struct Inner {
    /// Version the error sums refer to; feedback predicted by another version is not mixed in.
    model_version: Option<String>,
    errors: ErrorSums,
    total: u64,
    suggested: u64,
    accepted: u64,
    users: HashMap<Box<str>, UserActivity>,
}

#[derive(Default, Clone, Copy)]
struct ErrorSums {
    n: u64,
    sum_sq: f64,
    sum_abs: f64,
    within_one: u64,
    sum_predicted: f64,
    sum_actual: f64,
}

struct UserActivity {
    last_seen: Instant,
    last_rated_suggestion: Option<Instant>,
}

/// One feedback event as seen by the accumulator.
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
    pub active_users: u64,
    pub engaged_users: u64,
    pub active_window_seconds: u64,
}

impl FeedbackStats {
    pub fn new(accept_threshold: f64, window: Duration) -> Self {
        FeedbackStats {
            inner: Mutex::new(Inner::default()),
            accept_threshold,
            window,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Poisoning only means another request panicked mid-update; the sums stay usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a fresh online error for a newly served model version.
    pub fn model_changed(&self, version: &str) {
        let mut inner = self.lock();
        if inner.model_version.as_deref() != Some(version) {
            inner.model_version = Some(version.to_owned());
            inner.errors = ErrorSums::default();
        }
    }

    /// Records one event; returns whether it counts as an accepted suggestion (`None` when the
    /// item had not been suggested).
    pub fn record(&self, event: Event<'_>, now: Instant) -> Option<bool> {
        let accepted = event
            .suggested
            .then_some(event.actual >= self.accept_threshold);
        let mut inner = self.lock();
        if inner.model_version.as_deref() == Some(event.model_version) {
            let err = event.actual - event.predicted;
            let e = &mut inner.errors;
            e.n += 1;
            e.sum_sq += err * err;
            e.sum_abs += err.abs();
            e.within_one += u64::from(err.abs() <= 1.0);
            e.sum_predicted += event.predicted;
            e.sum_actual += event.actual;
        }
        inner.total += 1;
        if event.suggested {
            inner.suggested += 1;
        }
        if accepted == Some(true) {
            inner.accepted += 1;
        }
        // Engaged, as the old app counted it: the user rated a suggestion, whatever the rating.
        let rated_suggestion_at = event.suggested.then_some(now);
        if let Some(activity) = inner.users.get_mut(event.user) {
            activity.last_seen = now;
            activity.last_rated_suggestion = rated_suggestion_at.or(activity.last_rated_suggestion);
        } else {
            if inner.users.len() >= MAX_TRACKED_USERS {
                self.prune(&mut inner, now);
            }
            if inner.users.len() < MAX_TRACKED_USERS {
                inner.users.insert(
                    event.user.into(),
                    UserActivity {
                        last_seen: now,
                        last_rated_suggestion: rated_suggestion_at,
                    },
                );
            }
        }
        accepted
    }

    fn prune(&self, inner: &mut Inner, now: Instant) {
        let window = self.window;
        inner
            .users
            .retain(|_, a| now.saturating_duration_since(a.last_seen) <= window);
    }

    /// What this replica adds to the aggregate over all replicas: sums, not ratios, and the
    /// window's users as sketches (a user may reach several replicas).
    pub fn stats(&self, now: Instant) -> (FeedbackSums, SuggestionCounts, UserSketches) {
        let mut inner = self.lock();
        self.prune(&mut inner, now);
        let (mut active, mut engaged) = (UserSketch::default(), UserSketch::default());
        for (user, activity) in &inner.users {
            active.insert(user);
            if activity
                .last_rated_suggestion
                .is_some_and(|t| now.saturating_duration_since(t) <= self.window)
            {
                engaged.insert(user);
            }
        }
        let e = inner.errors;
        let sums = FeedbackSums {
            model_version: inner.model_version.clone(),
            n: e.n,
            sum_squared_error: e.sum_sq,
            sum_absolute_error: e.sum_abs,
            within_one: e.within_one,
            sum_predicted: e.sum_predicted,
            sum_actual: e.sum_actual,
        };
        let suggestions = SuggestionCounts {
            shown: 0,
            rated: inner.suggested,
            accepted: inner.accepted,
        };
        let users = UserSketches {
            window_seconds: self.window.as_secs(),
            active,
            engaged,
        };
        (sums, suggestions, users)
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let mut inner = self.lock();
        self.prune(&mut inner, now);
        let window = self.window;
        let engaged = inner
            .users
            .values()
            .filter(|a| {
                a.last_rated_suggestion
                    .is_some_and(|t| now.saturating_duration_since(t) <= window)
            })
            .count() as u64;
        let e = inner.errors;
        let n = e.n as f64;
        Snapshot {
            model_version: inner.model_version.clone(),
            samples: e.n,
            rmse: (e.n > 0).then(|| (e.sum_sq / n).sqrt()),
            mae: (e.n > 0).then(|| e.sum_abs / n),
            feedback_total: inner.total,
            suggested_total: inner.suggested,
            accepted_total: inner.accepted,
            acceptance_rate: (inner.suggested > 0)
                .then(|| inner.accepted as f64 / inner.suggested as f64),
            accept_threshold: self.accept_threshold,
            active_users: inner.users.len() as u64,
            engaged_users: engaged,
            active_window_seconds: window.as_secs(),
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
}
