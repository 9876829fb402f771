//! Ratings as loaded: string ids interned to dense indices, plus the fingerprint that tells two
//! data sets apart.

use recommender_contract::report::DataFingerprint;
use recommender_model::{IdMap, RatingScale};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::kernel::Triple;

/// A loaded data set.
#[derive(Clone, Debug)]
pub struct Ratings {
    pub users: IdMap,
    pub items: IdMap,
    /// In load order.
    pub triples: Vec<Triple>,
    /// Given by the user, or the smallest and largest rating in the data.
    pub scale: RatingScale,
    pub fingerprint: DataFingerprint,
    /// Each rating's time (epoch seconds, `i64::MIN` when it has none), in load order; only
    /// when [`Selection::timestamps`] asked for them (they cost 8 bytes a rating).
    pub timestamps: Option<Vec<i64>>,
}

/// Which ratings a load keeps, and whether it keeps their times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Keep only ratings strictly newer than this (epoch seconds); ratings without a timestamp
    /// are left out too. Left-out ratings are neither checked nor counted as skipped.
    pub after: Option<i64>,
    /// Keep every rating's timestamp in [`Ratings::timestamps`], for splits by time.
    pub timestamps: bool,
}

/// Collects ratings one at a time from any source.
pub struct RatingsBuilder {
    users: IdMap,
    items: IdMap,
    triples: Vec<Triple>,
    hasher: Sha256,
    max_timestamp: Option<i64>,
    min: f32,
    max: f32,
    given_scale: Option<RatingScale>,
    skipped: u64,
    selection: Selection,
    timestamps: Vec<i64>,
}

impl RatingsBuilder {
    pub fn new(scale: Option<RatingScale>) -> Self {
        Self {
            users: IdMap::new(),
            items: IdMap::new(),
            triples: Vec::new(),
            hasher: Sha256::new(),
            max_timestamp: None,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            given_scale: scale,
            skipped: 0,
            selection: Selection::default(),
            timestamps: Vec::new(),
        }
    }

    /// Loads only what `selection` asks for.
    pub fn select(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Adds one rating; the error text describes what is wrong with it (the caller adds where).
    pub fn push(
        &mut self,
        user: &str,
        item: &str,
        rating: f64,
        timestamp: Option<i64>,
    ) -> Result<(), String> {
        if let Some(after) = self.selection.after
            && timestamp.is_none_or(|t| t <= after)
        {
            return Ok(());
        }
        if user.is_empty() {
            return Err("user id is empty".into());
        }
        if item.is_empty() {
            return Err("item id is empty".into());
        }
        if !rating.is_finite() {
            return Err(format!("rating {rating} is not a finite number"));
        }
        // Ratings are kept as f32: a finite f64 beyond its range would become infinite.
        let r = rating as f32;
        if !r.is_finite() {
            return Err(format!(
                "rating {rating:e} is too large (ratings are stored as 32-bit floats, at most {:e})",
                f32::MAX
            ));
        }
        if let Some(s) = self.given_scale
            && (rating < s.lo || rating > s.hi)
        {
            return Err(format!(
                "rating {rating} is outside the rating scale {},{}",
                s.lo, s.hi
            ));
        }
        if self.triples.len() >= u32::MAX as usize {
            return Err("more than 4 billion ratings are not supported".into());
        }
        let user_ix = self.users.intern(user);
        let item_ix = self.items.intern(item);
        self.triples.push(Triple {
            user: user_ix,
            item: item_ix,
            rating: r,
        });
        self.min = self.min.min(r);
        self.max = self.max.max(r);
        if self.selection.timestamps {
            self.timestamps.push(timestamp.unwrap_or(i64::MIN));
        }
        if let Some(t) = timestamp {
            self.max_timestamp = Some(self.max_timestamp.map_or(t, |m| m.max(t)));
        }
        // Unit separators keep "1","23" and "12","3" apart.
        self.hasher.update(user.as_bytes());
        self.hasher.update([0x1f]);
        self.hasher.update(item.as_bytes());
        self.hasher.update([0x1f]);
        self.hasher.update(r.to_le_bytes());
        self.hasher
            .update(timestamp.unwrap_or(i64::MIN).to_le_bytes());
        Ok(())
    }

    /// Counts a malformed record that was skipped on request.
    pub fn skip(&mut self) {
        self.skipped += 1;
    }

    pub fn len(&self) -> usize {
        self.triples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.triples.is_empty()
    }

    /// Finishes loading; `source` names the data in the error for an empty set.
    pub fn finish(self, source: &str) -> Result<Ratings> {
        if self.triples.is_empty() {
            return Err(Error::InvalidData(format!(
                "{source} holds no ratings{}",
                if self.skipped > 0 {
                    format!(" ({} malformed records skipped)", self.skipped)
                } else {
                    String::new()
                }
            )));
        }
        let scale = self.given_scale.unwrap_or(RatingScale {
            lo: self.min as f64,
            hi: self.max as f64,
        });
        let fingerprint = DataFingerprint {
            rows: self.triples.len() as u64,
            users: self.users.len() as u64,
            items: self.items.len() as u64,
            max_timestamp: self.max_timestamp,
            content_hash: hex::encode(self.hasher.finalize()),
            skipped: self.skipped,
        };
        Ok(Ratings {
            users: self.users,
            items: self.items,
            triples: self.triples,
            scale,
            fingerprint,
            timestamps: self.selection.timestamps.then_some(self.timestamps),
        })
    }
}

/// Parses `LO,HI` (e.g. `0.5,5`).
pub fn parse_scale(text: &str) -> Result<RatingScale> {
    let bad = || {
        Error::Config(format!(
            "--rating-scale must be LO,HI with LO <= HI, got '{text}'"
        ))
    };
    let (lo, hi) = text.split_once(',').ok_or_else(bad)?;
    let lo: f64 = lo.trim().parse().map_err(|_| bad())?;
    let hi: f64 = hi.trim().parse().map_err(|_| bad())?;
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(bad());
    }
    Ok(RatingScale { lo, hi })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_ids_and_fingerprints() {
        let mut b = RatingsBuilder::new(None);
        b.push("u1", "i1", 4.0, Some(10)).unwrap();
        b.push("u2", "i1", 2.0, Some(30)).unwrap();
        b.push("u1", "i2", 5.0, None).unwrap();
        let r = b.finish("test").unwrap();
        assert_eq!((r.users.len(), r.items.len(), r.triples.len()), (2, 2, 3));
        assert_eq!(r.triples[2].user, 0);
        assert_eq!(r.triples[2].item, 1);
        assert_eq!(r.scale, RatingScale { lo: 2.0, hi: 5.0 });
        assert_eq!(r.fingerprint.max_timestamp, Some(30));
        assert_eq!(r.fingerprint.content_hash.len(), 64);
    }

    #[test]
    fn hash_depends_on_content_and_boundaries() {
        let hash = |rows: &[(&str, &str, f64)]| {
            let mut b = RatingsBuilder::new(None);
            for (u, i, r) in rows {
                b.push(u, i, *r, None).unwrap();
            }
            b.finish("t").unwrap().fingerprint.content_hash
        };
        let a = hash(&[("1", "23", 4.0)]);
        assert_eq!(a, hash(&[("1", "23", 4.0)]));
        assert_ne!(a, hash(&[("12", "3", 4.0)]));
        assert_ne!(a, hash(&[("1", "23", 4.5)]));
    }

    #[test]
    fn empty_data_and_bad_values_are_errors() {
        let b = RatingsBuilder::new(None);
        assert!(
            matches!(b.finish("empty.csv"), Err(Error::InvalidData(m)) if m.contains("empty.csv"))
        );
        let mut b = RatingsBuilder::new(Some(RatingScale { lo: 1.0, hi: 5.0 }));
        assert!(b.push("u", "i", 6.0, None).unwrap_err().contains("outside"));
        assert!(b.push("u", "i", f64::NAN, None).is_err());
        assert!(b.push("", "i", 3.0, None).is_err());
    }

    #[test]
    fn selection_keeps_newer_ratings_and_their_times() {
        let rows = [("u1", 10), ("u2", 20), ("u3", 30)];
        let mut b = RatingsBuilder::new(None).select(Selection {
            after: Some(10),
            timestamps: true,
        });
        for (u, t) in rows {
            b.push(u, "i", 3.0, Some(t)).unwrap();
        }
        b.push("u4", "i", 3.0, None).unwrap();
        b.push("", "i", 3.0, Some(5)).unwrap(); // older: left out before it is checked
        let r = b.finish("t").unwrap();
        assert_eq!(r.timestamps, Some(vec![20, 30]));
        assert_eq!((r.fingerprint.rows, r.fingerprint.skipped), (2, 0));
        assert_eq!(r.users.get("u1"), None);

        let mut b = RatingsBuilder::new(None);
        b.push("u", "i", 3.0, Some(1)).unwrap();
        assert_eq!(b.finish("t").unwrap().timestamps, None, "not asked for");
    }

    #[test]
    fn scale_parsing() {
        assert_eq!(
            parse_scale("0.5, 5").unwrap(),
            RatingScale { lo: 0.5, hi: 5.0 }
        );
        assert!(parse_scale("5,1").is_err());
        assert!(parse_scale("x").is_err());
    }
}
