//! External string ids and the dense indices training and scoring work on.
//!
//! Users and items keep the string ids of the data (Surprise's convention) and are mapped at the
//! edge; everything inside the model is indexed densely.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

type FastMap = HashMap<String, u32, foldhash::fast::RandomState>;

/// Bidirectional map between external string ids and dense indices `0..len`.
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    ids: Vec<String>,
    index: FastMap,
}

impl IdMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from ids in index order; `None` if an id repeats.
    pub fn from_ids(ids: Vec<String>) -> Option<Self> {
        let mut index = FastMap::with_capacity_and_hasher(ids.len(), Default::default());
        for (i, id) in ids.iter().enumerate() {
            if index.insert(id.clone(), i as u32).is_some() {
                return None;
            }
        }
        Some(Self { ids, index })
    }

    /// The index of `id`, adding it at the end if it is new.
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.index.get(id) {
            return i;
        }
        let i = self.ids.len() as u32;
        self.ids.push(id.to_owned());
        self.index.insert(id.to_owned(), i);
        i
    }

    #[inline]
    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// The id at `index`; panics if out of range, like slice indexing.
    #[inline]
    pub fn id(&self, index: u32) -> &str {
        &self.ids[index as usize]
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl PartialEq for IdMap {
    fn eq(&self, other: &Self) -> bool {
        self.ids == other.ids
    }
}

impl Serialize for IdMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.ids.serialize(s)
    }
}

impl<'de> Deserialize<'de> for IdMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ids = Vec::<String>::deserialize(d)?;
        IdMap::from_ids(ids).ok_or_else(|| serde::de::Error::custom("duplicate id in id map"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_map_rejects_duplicates() {
        assert!(IdMap::from_ids(vec!["a".into(), "a".into()]).is_none());
        let mut m = IdMap::new();
        assert_eq!(m.intern("q"), 0);
        assert_eq!(m.intern("r"), 1);
        assert_eq!(m.intern("q"), 0);
        assert_eq!(m.id(1), "r");
    }
}
