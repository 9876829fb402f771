//! Which items each user rated: excluded from their suggestions.

use serde::{Deserialize, Serialize};

/// Each user's rated item indices, sorted, in one flat array (CSR).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RatedItems {
    offsets: Vec<u64>,
    items: Vec<u32>,
}

impl RatedItems {
    /// Builds from `(user, item)` pairs; duplicates are kept once.
    pub fn from_pairs(n_users: usize, pairs: impl Iterator<Item = (u32, u32)> + Clone) -> Self {
        let mut counts = vec![0u64; n_users + 1];
        for (u, _) in pairs.clone() {
            counts[u as usize + 1] += 1;
        }
        for j in 1..counts.len() {
            counts[j] += counts[j - 1];
        }
        let mut fill = counts.clone();
        let mut items = vec![0u32; *counts.last().unwrap_or(&0) as usize];
        for (u, i) in pairs {
            let at = &mut fill[u as usize];
            items[*at as usize] = i;
            *at += 1;
        }
        // Sort and dedup each row, compacting in place.
        let mut offsets = Vec::with_capacity(n_users + 1);
        offsets.push(0u64);
        let mut write = 0usize;
        for u in 0..n_users {
            let (s, e) = (counts[u] as usize, counts[u + 1] as usize);
            items[s..e].sort_unstable();
            let mut last = None;
            for r in s..e {
                let it = items[r];
                if last != Some(it) {
                    items[write] = it;
                    write += 1;
                    last = Some(it);
                }
            }
            offsets.push(write as u64);
        }
        items.truncate(write);
        Self { offsets, items }
    }

    /// Sorted item indices the user rated; empty for an out-of-range user.
    #[inline]
    pub fn of(&self, user: u32) -> &[u32] {
        let u = user as usize;
        match (self.offsets.get(u), self.offsets.get(u + 1)) {
            (Some(&s), Some(&e)) => &self.items[s as usize..e as usize],
            _ => &[],
        }
    }

    pub fn n_users(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub(crate) fn validate(&self, n_users: usize, n_items: usize) -> Result<(), String> {
        if self.offsets.len() != n_users + 1 || self.offsets.first() != Some(&0) {
            return Err("rated-items offsets do not match the user count".into());
        }
        if self.offsets.windows(2).any(|w| w[0] > w[1])
            || self.offsets.last().copied() != Some(self.items.len() as u64)
        {
            return Err("rated-items offsets are not monotone".into());
        }
        for u in 0..n_users as u32 {
            let row = self.of(u);
            if row.windows(2).any(|w| w[0] >= w[1]) || row.iter().any(|&i| i as usize >= n_items) {
                return Err(format!(
                    "rated items of user {u} are unsorted or out of range"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rated_items_are_sorted_and_deduplicated() {
        let r = RatedItems::from_pairs(3, [(2u32, 5u32), (0, 3), (2, 1), (2, 5)].into_iter());
        assert_eq!(r.of(0), &[3]);
        assert_eq!(r.of(1), &[] as &[u32]);
        assert_eq!(r.of(2), &[1, 5]);
        assert_eq!(r.of(7), &[] as &[u32]);
        r.validate(3, 6).unwrap();
        assert!(r.validate(3, 5).is_err());
    }
}
