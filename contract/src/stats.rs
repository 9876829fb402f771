//! What one predictor replica reports for aggregation (`GET /v1/stats`), the contract between the
//! predictor and the operator's collector: counters, so replicas are summed before any ratio is
//! taken; a latency histogram, merged bucket by bucket; and distinct users as mergeable
//! HyperLogLog++ sketches, since a user may reach several replicas.

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};
use std::hash::BuildHasher;

mod wire;

/// Precision of the user sketches: 2^14 registers.
pub const USER_SKETCH_PRECISION: u8 = 14;
/// Relative standard error of a distinct-user count from the sketches, 1.04 / sqrt(2^14); small
/// counts (sparse sketches) are close to exact.
pub const USER_COUNT_RELATIVE_ERROR: f64 = 0.0081;

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct PredictorStats {
    /// The version this replica serves, if any.
    pub model_version: Option<String>,
    /// Inference requests (predictions, batches, suggestions) since the replica started.
    pub requests: LatencyHistogram,
    pub feedback: FeedbackSums,
    pub suggestions: SuggestionCounts,
    pub users: UserSketches,
}

/// A cumulative histogram of server-side latency, as Prometheus keeps one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LatencyHistogram {
    pub count: u64,
    pub sum_seconds: f64,
    /// Cumulative counts at each upper bound, ascending; observations above the last bound are
    /// only in `count`.
    pub buckets: Vec<Bucket>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Upper bound in seconds.
    pub le: f64,
    pub count: u64,
}

impl LatencyHistogram {
    /// Adds `other`'s counts; bounds missing on one side are taken from the other.
    pub fn add(&mut self, other: &LatencyHistogram) {
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
            return;
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            if mine.le == theirs.le {
                mine.count += theirs.count;
            }
        }
    }

    /// What was observed since `earlier` (a previous reading of the same replica); `None` when
    /// the replica restarted in between (its counters went down).
    pub fn since(&self, earlier: &LatencyHistogram) -> Option<LatencyHistogram> {
        let count = self.count.checked_sub(earlier.count)?;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (now, then) in self.buckets.iter().zip(&earlier.buckets) {
            buckets.push(Bucket {
                le: now.le,
                count: now.count.checked_sub(then.count)?,
            });
        }
        Some(LatencyHistogram {
            count,
            sum_seconds: (self.sum_seconds - earlier.sum_seconds).max(0.0),
            buckets,
        })
    }

    /// The `q` quantile by linear interpolation inside its bucket (as PromQL's
    /// `histogram_quantile`); `None` without observations. Beyond the last bound it answers that
    /// bound: the latency is at least that.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut lower = (0.0, 0u64);
        for b in &self.buckets {
            if b.count as f64 >= rank {
                let in_bucket = (b.count - lower.1) as f64;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1 as f64) / in_bucket
                } else {
                    0.0
                };
                return Some(lower.0 + (b.le - lower.0) * fraction);
            }
            lower = (b.le, b.count);
        }
        self.buckets.last().map(|b| b.le)
    }
}

/// Feedback on the predictions of the version the replica serves (it starts over when the
/// served version changes).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackSums {
    pub model_version: Option<String>,
    pub n: u64,
    pub sum_squared_error: f64,
    pub sum_absolute_error: f64,
    /// Ratings within one star of their prediction.
    pub within_one: u64,
    pub sum_predicted: f64,
    pub sum_actual: f64,
}

impl FeedbackSums {
    pub fn add(&mut self, other: &FeedbackSums) {
        self.n += other.n;
        self.sum_squared_error += other.sum_squared_error;
        self.sum_absolute_error += other.sum_absolute_error;
        self.within_one += other.within_one;
        self.sum_predicted += other.sum_predicted;
        self.sum_actual += other.sum_actual;
    }
}

/// Suggestions since the replica started, whatever version made them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SuggestionCounts {
    /// Items returned by the suggestion endpoint.
    pub shown: u64,
    /// Feedback ratings on suggested items: suggestions the user went on to rate.
    pub rated: u64,
    /// Of those, rated at or above the acceptance threshold.
    pub accepted: u64,
}

impl SuggestionCounts {
    pub fn add(&mut self, other: &SuggestionCounts) {
        self.shown += other.shown;
        self.rated += other.rated;
        self.accepted += other.accepted;
    }
}

/// Users seen in the replica's activity window (active: any feedback; engaged: rated a
/// suggestion at or above the threshold).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct UserSketches {
    pub window_seconds: u64,
    pub active: UserSketch,
    pub engaged: UserSketch,
}

/// A fixed SipHash-1-3 key: sketches from different processes (and builds) must hash a user
/// alike to be merged.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default)]
pub struct StableHasher;

impl BuildHasher for StableHasher {
    type Hasher = siphasher::sip::SipHasher13;

    fn build_hasher(&self) -> Self::Hasher {
        siphasher::sip::SipHasher13::new_with_keys(0x7265_636f_6d6d_656e, 0x6465_722d_7573_6572)
    }
}

/// A distinct count of user ids that merges across replicas. Read only in a form this build could
/// have written (`wire`), so merging or counting a forged one cannot panic.
#[derive(Serialize, Clone, Debug)]
pub struct UserSketch(HyperLogLogPlus<String, StableHasher>);

impl<'de> Deserialize<'de> for UserSketch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = wire::Wire::deserialize(deserializer)?;
        wire.check()
            .map_err(|why| D::Error::custom(format!("not a user sketch: {why}")))?;
        // Checked, the same fields become the sketch they describe.
        let value = serde_json::to_value(&wire).map_err(D::Error::custom)?;
        serde_json::from_value(value)
            .map(Self)
            .map_err(D::Error::custom)
    }
}

impl Default for UserSketch {
    fn default() -> Self {
        Self(
            HyperLogLogPlus::new(USER_SKETCH_PRECISION, StableHasher)
                .expect("a precision within the sketch's bounds"),
        )
    }
}

impl UserSketch {
    pub fn insert(&mut self, user: &str) {
        self.0.insert(user);
    }

    /// Adds `other`'s users; sketches of another precision are refused.
    pub fn merge(&mut self, other: &UserSketch) -> Result<(), String> {
        self.0.merge(&other.0).map_err(|e| format!("{e:?}"))
    }

    pub fn count(&mut self) -> u64 {
        self.0.count().round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(counts: &[u64], above: u64) -> LatencyHistogram {
        let bounds = [0.001, 0.005, 0.01];
        let mut cumulative = 0;
        let buckets = bounds
            .iter()
            .zip(counts)
            .map(|(&le, &c)| {
                cumulative += c;
                Bucket {
                    le,
                    count: cumulative,
                }
            })
            .collect();
        LatencyHistogram {
            count: cumulative + above,
            sum_seconds: 0.0,
            buckets,
        }
    }

    #[test]
    fn quantiles_interpolate_like_histogram_quantile() {
        // 100 requests: 90 under 1 ms, 8 in (1, 5] ms, 2 in (5, 10] ms.
        let h = histogram(&[90, 8, 2], 0);
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.001 * 50.0 / 90.0).abs() < 1e-12, "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 - (0.005 + 0.005 * 0.5)).abs() < 1e-12, "{p99}");
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
        assert_eq!(
            histogram(&[0, 0, 0], 10).quantile(0.99),
            Some(0.01),
            "beyond the last bound"
        );
    }

    #[test]
    fn replicas_add_and_readings_subtract() {
        let mut sum = histogram(&[10, 0, 0], 0);
        sum.add(&histogram(&[0, 0, 10], 0));
        assert_eq!(sum.count, 20);
        assert_eq!(sum.quantile(0.5), Some(0.001));
        let later = histogram(&[15, 5, 0], 0);
        let delta = later.since(&histogram(&[10, 0, 0], 0)).unwrap();
        assert_eq!(
            (delta.count, delta.buckets[0].count, delta.buckets[1].count),
            (10, 5, 10)
        );
        assert_eq!(histogram(&[1, 0, 0], 0).since(&later), None, "a restart");
    }

    #[test]
    fn user_sketches_count_distinct_users_across_replicas() {
        let (mut a, mut b) = (UserSketch::default(), UserSketch::default());
        for u in 0..3000 {
            a.insert(&format!("user-{u}"));
        }
        for u in 2000..5000 {
            b.insert(&format!("user-{u}"));
        }
        // Over the wire and back, as the operator receives them.
        let b: UserSketch = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        a.merge(&b).unwrap();
        let n = a.count() as f64;
        assert!(
            (n - 5000.0).abs() / 5000.0 < 3.0 * USER_COUNT_RELATIVE_ERROR,
            "5000 distinct users counted as {n}"
        );
        let mut small = UserSketch::default();
        for u in ["a", "b", "a", "c"] {
            small.insert(u);
        }
        assert_eq!(small.count(), 3, "small sets are exact");
    }

    /// `sketch` as JSON, changed by `forge`, read back.
    fn forged(
        sketch: &UserSketch,
        forge: impl FnOnce(&mut serde_json::Value),
    ) -> Result<UserSketch, String> {
        let mut value = serde_json::to_value(sketch).unwrap();
        forge(&mut value);
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    fn sketch_of(users: std::ops::Range<u32>) -> UserSketch {
        let mut sketch = UserSketch::default();
        for u in users {
            sketch.insert(&format!("user-{u}"));
        }
        sketch
    }

    #[test]
    fn genuine_sketches_read_back_sparse_and_dense() {
        for users in [0..0, 0..50, 0..500, 0..20_000] {
            let n = users.len();
            let mut sketch = sketch_of(users.clone());
            let mut back = forged(&sketch, |_| {}).unwrap();
            assert_eq!(back.count(), sketch.count(), "{n} users");
        }
    }

    #[test]
    fn forged_sketches_are_refused_with_the_reason_and_never_panic() {
        let sparse = sketch_of(0..500);
        let dense = sketch_of(0..20_000);
        assert!(serde_json::to_value(&dense).unwrap()["registers"].is_object());
        type Forge = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(&UserSketch, &str, Forge)> = vec![
            (
                &sparse,
                "precision",
                Box::new(|v| v["precision"] = 4.into()),
            ),
            (
                &sparse,
                "counts",
                Box::new(|v| v["counts"][0] = 1_000_000.into()),
            ),
            (
                &sparse,
                "runs past the end",
                Box::new(|v| v["sparse"]["buf"].as_array_mut().unwrap().push(0x80.into())),
            ),
            (
                &sparse,
                "exceeds 32 bits",
                Box::new(|v| {
                    v["sparse"]["buf"] = serde_json::json!([255, 255, 255, 255, 255, 1]);
                    v["sparse"]["count"] = 1.into();
                }),
            ),
            (
                &sparse,
                "overflow",
                Box::new(|v| {
                    v["sparse"]["buf"] = serde_json::json!([254, 255, 255, 255, 15, 2]);
                    v["sparse"]["count"] = 2.into();
                }),
            ),
            (
                &sparse,
                "claims",
                Box::new(|v| v["sparse"]["count"] = 7.into()),
            ),
            (
                &sparse,
                "leading zeros",
                Box::new(|v| v["tmpset"] = serde_json::json!([127])),
            ),
            (
                &sparse,
                "unmerged",
                Box::new(|v| v["tmpset"] = (0..1000u32).map(|c| c * 2).collect()),
            ),
            (
                &dense,
                "registers in",
                Box::new(|v| v["registers"]["count"] = 100_000.into()),
            ),
            (
                &dense,
                "registers in",
                Box::new(|v| v["registers"]["buf"].as_array_mut().unwrap().truncate(10)),
            ),
            (
                &dense,
                "zero registers",
                Box::new(|v| v["registers"]["zeros"] = 0.into()),
            ),
            (
                &dense,
                "beside a sparse list",
                Box::new(|v| v["tmpset"] = serde_json::json!([2])),
            ),
        ];
        for (sketch, why, forge) in cases {
            let err = forged(sketch, forge).unwrap_err();
            assert!(
                err.contains("not a user sketch") && err.contains(why),
                "{why}: {err}"
            );
        }
    }
}
