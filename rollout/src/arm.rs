//! Which arm a user is on.
//!
//! A user's position is SipHash-1-3 with a fixed key of `rollout id ‖ 0xFF ‖ user id`, mapped to
//! one of a million buckets by `bucket = ⌊position · 10⁶ / 2⁶⁴⌋`; the user is on the candidate
//! when `bucket < share in millionths`. So:
//! - every replica, build and platform puts a user on the same arm (SipHash is specified
//!   byte for byte; `0xFF` never occurs in UTF-8, so no two (rollout, user) pairs hash the same
//!   bytes);
//! - raising the share only moves users from the stable arm to the candidate, never back;
//! - each rollout id draws its own users, so the same people are not the first to see every
//!   candidate.

use std::hash::Hasher;

use serde::Serialize;
use siphasher::sip::SipHasher13;

/// The fixed key: changing it moves users between arms mid-rollout.
const KEY: (u64, u64) = (0x7265_636f_6d6d_656e, 0x6465_722d_6172_6d73);
const BUCKETS: u64 = 1_000_000;

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Arm {
    Stable,
    Candidate,
}

impl Arm {
    pub const ALL: [Arm; 2] = [Arm::Stable, Arm::Candidate];

    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Stable => "stable",
            Arm::Candidate => "candidate",
        }
    }
}

/// The share of users on the candidate, in millionths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Share(u32);

impl Share {
    pub const NONE: Share = Share(0);
    pub const ALL: Share = Share(BUCKETS as u32);

    /// A fraction in `0..=1`, rounded to the nearest millionth.
    pub fn from_fraction(fraction: f64) -> Result<Share, String> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(format!("a share is between 0 and 1, got {fraction}"));
        }
        Ok(Share((fraction * BUCKETS as f64).round() as u32))
    }

    pub fn fraction(self) -> f64 {
        f64::from(self.0) / BUCKETS as f64
    }
}

/// The user's bucket in `0..1_000_000` for this rollout.
pub fn bucket(user: &str, rollout_id: &str) -> u32 {
    let mut hasher = SipHasher13::new_with_keys(KEY.0, KEY.1);
    // Raw bytes only: `Hash for str` and `write_usize` are not promised to stay the same.
    hasher.write(rollout_id.as_bytes());
    hasher.write(&[0xff]);
    hasher.write(user.as_bytes());
    let position = hasher.finish();
    ((u128::from(position) * u128::from(BUCKETS)) >> 64) as u32
}

/// The arm of `user` in rollout `rollout_id` when `share` of the users are on the candidate.
pub fn arm(user: &str, rollout_id: &str, share: Share) -> Arm {
    if bucket(user, rollout_id) < share.0 {
        Arm::Candidate
    } else {
        Arm::Stable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The hash is part of the contract between replicas of different builds: these buckets
    /// must never change.
    #[test]
    fn buckets_are_fixed_forever() {
        let got: Vec<u32> = [("u1", "r1"), ("u2", "r1"), ("u1", "r2"), ("", "r1")]
            .iter()
            .map(|(u, r)| bucket(u, r))
            .collect();
        assert_eq!(got, PINNED);
    }
    const PINNED: [u32; 4] = [952_250, 580_619, 531_736, 286_708];

    #[test]
    fn shares_are_what_they_say() {
        let users = 100_000;
        for fraction in [0.0, 0.05, 0.25, 0.5, 1.0] {
            let share = Share::from_fraction(fraction).unwrap();
            let on = (0..users)
                .filter(|u| arm(&format!("user-{u}"), "r1", share) == Arm::Candidate)
                .count() as f64;
            // Four standard deviations of a binomial count.
            let sd = (users as f64 * fraction * (1.0 - fraction)).sqrt();
            assert!(
                (on - users as f64 * fraction).abs() <= 4.0 * sd,
                "{fraction}: {on}"
            );
        }
        assert!(Share::from_fraction(1.01).is_err());
        assert!(Share::from_fraction(f64::NAN).is_err());
        assert_eq!(Share::from_fraction(0.05).unwrap().fraction(), 0.05);
    }

    #[test]
    fn rollouts_draw_different_users() {
        let share = Share::from_fraction(0.1).unwrap();
        let on = |rollout: &str| -> Vec<bool> {
            (0..2000)
                .map(|u| arm(&format!("user-{u}"), rollout, share) == Arm::Candidate)
                .collect()
        };
        let (a, b) = (on("r1"), on("r2"));
        let both = a.iter().zip(&b).filter(|(x, y)| **x && **y).count();
        // Independent draws share about 1% of the users (20), the same draw 10% (200).
        assert!(both < 60, "{both} users on the candidate in both rollouts");
    }

    proptest! {
        /// Raising the share never moves a user back to the stable arm.
        #[test]
        fn monotone_in_the_share(user in ".{0,40}", rollout in "[a-z0-9-]{1,20}", a in 0.0..=1.0f64, b in 0.0..=1.0f64) {
            let (low, high) = (a.min(b), a.max(b));
            let (low, high) = (Share::from_fraction(low).unwrap(), Share::from_fraction(high).unwrap());
            if arm(&user, &rollout, low) == Arm::Candidate {
                prop_assert_eq!(arm(&user, &rollout, high), Arm::Candidate);
            }
            prop_assert_eq!(arm(&user, &rollout, Share::NONE), Arm::Stable);
            prop_assert_eq!(arm(&user, &rollout, Share::ALL), Arm::Candidate);
        }
    }
}
