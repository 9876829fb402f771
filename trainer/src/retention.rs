//! `prune`: deletes the runs outside the retention window the operator computed, each run's
//! artifact, record, verdict and search together (crate::model_store has the keys).
//!
//! Only finished runs are candidates (a version `v<N>` with N at most `through_run`); a later
//! run's objects are never touched, so a training run that writes meanwhile is safe. Anything else
//! in the folder (a ratings file the model trains from, say) is left alone. In a directory store it
//! also removes what a writer that died mid-write left for those runs: the store's staging files
//! (`<key>#<n>`, which listings never show) and the previous trainer's temp files
//! (`.v<N>.model.*.tmp`, `runs/.v<N>.json.tmp`).

use std::collections::BTreeSet;
use std::path::Path;

use recommender_store::StoreConfig;

use crate::error::{Error, Result};
use crate::model_store::{self, Kind, ModelStore, RUNS};

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Versions to keep (`v3`), whatever their run.
    pub keep: BTreeSet<String>,
    /// Only runs up to this one are candidates.
    pub through_run: u32,
}

impl PruneOptions {
    /// Whether the objects of `version` go.
    fn prunes(&self, version: &str) -> bool {
        model_store::run_number(version)
            .is_some_and(|run| run <= self.through_run && !self.keep.contains(version))
    }
}

/// What a prune did: keys deleted and artifacts kept, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deleted: Vec<String>,
    pub kept: Vec<String>,
}

/// Prunes the model's folder in the store `config` names.
pub fn prune(config: StoreConfig, opts: &PruneOptions) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    if let StoreConfig::Local { root } = &config
        && !root.exists()
    {
        // Nothing was ever written for this model.
        return Ok(pruned);
    }
    let store = ModelStore::open(config)?;
    for object in store.list("")? {
        let Some((kind, version)) = model_store::parse_key(&object.key) else {
            continue;
        };
        if !opts.prunes(version) {
            if kind == Kind::Artifact && model_store::run_number(version).is_some() {
                pruned.kept.push(object.key);
            }
            continue;
        }
        store.delete(&object.key)?;
        tracing::info!(key = %object.key, "deleted");
        pruned.deleted.push(object.key);
    }
    if let StoreConfig::Local { root } = store.config() {
        pruned.deleted.extend(leftovers(root, opts)?);
    }
    pruned.deleted.sort();
    pruned.kept.sort();
    Ok(pruned)
}

/// Removes the leftovers of pruned runs from a directory store; returns their names, relative to
/// the model's folder.
fn leftovers(root: &Path, opts: &PruneOptions) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for (folder, prefix) in [(root.to_path_buf(), ""), (root.join(RUNS), "runs/")] {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&folder, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&folder, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = leftover_of(&name) else {
                continue;
            };
            let prunes = model_store::parse_key(&format!("{prefix}{key}"))
                .is_some_and(|(_, version)| opts.prunes(version));
            if !prunes {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                // Another cleanup got there first.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(entry.path(), e));
                }
                _ => {}
            }
            tracing::info!(file = %name, "deleted a crashed writer's leftover");
            removed.push(format!("{prefix}{name}"));
        }
    }
    Ok(removed)
}

/// The name a leftover file was being written as, if `name` is one.
fn leftover_of(name: &str) -> Option<String> {
    // The store's staging file: `<name>#<n>`.
    if let Some((target, n)) = name.rsplit_once('#')
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return Some(target.to_string());
    }
    // The previous trainer's: `.<name>.<random>.tmp` for artifacts, `.<name>.tmp` for records.
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    match inner.split_once(".model.") {
        Some((stem, _)) => Some(format!("{stem}.model")),
        None => inner.ends_with(".json").then(|| inner.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_map_to_what_they_were_written_as() {
        assert_eq!(leftover_of("v12.model#1").as_deref(), Some("v12.model"));
        assert_eq!(
            leftover_of("v3.verdict.json#23").as_deref(),
            Some("v3.verdict.json")
        );
        assert_eq!(
            leftover_of(".v3.model.a1B2c3.tmp").as_deref(),
            Some("v3.model")
        );
        assert_eq!(leftover_of(".v3.json.tmp").as_deref(), Some("v3.json"));
        for other in [
            "v3.model",
            "u.data",
            "v1#x",
            "a#",
            ".v3.tmp",
            "v1.model.bak",
        ] {
            assert_eq!(leftover_of(other), None, "{other}");
        }
    }

    fn names(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for (folder, prefix) in [
            (root.to_path_buf(), ""),
            (root.join("runs"), "runs/"),
            (root.join("searches"), "searches/"),
        ] {
            for entry in std::fs::read_dir(folder).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_file() {
                    out.push(format!("{prefix}{}", entry.file_name().to_string_lossy()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn deletes_finished_runs_outside_the_window_with_their_records_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("runs")).unwrap();
        std::fs::create_dir_all(root.join("searches")).unwrap();
        std::fs::create_dir_all(root.join("ratings")).unwrap();
        let mut files: Vec<String> = Vec::new();
        for n in 1..=7 {
            files.push(format!("v{n}.model"));
            files.push(format!("runs/v{n}.json"));
        }
        files.retain(|f| f != "v5.model" && f != "v7.model"); // v5 failed; v7 is being written
        files.extend(
            [
                "runs/v2.verdict.json",
                "runs/v3.verdict.json",
                "searches/v3.json",
                "searches/v4.json",
                "searches/notes.json.txt",
                "v5.model#1",
                "v7.model#1",
                ".v6.model.x1y2.tmp",
                "runs/.v1.json.tmp",
                "runs/v3.json#2",
                "u.data",
                "my ratings.csv",
                "ratings/v1.model",
                "runs/notes.txt",
                "t20261109T100000Z.model",
            ]
            .map(String::from),
        );
        for name in &files {
            std::fs::write(root.join(name), name).unwrap();
        }
        let config = StoreConfig::Local {
            root: root.to_path_buf(),
        };
        let opts = PruneOptions {
            keep: ["v2".to_string(), "v4".to_string()].into(),
            through_run: 6,
        };
        let pruned = prune(config.clone(), &opts).unwrap();
        assert_eq!(
            pruned.deleted,
            [
                ".v6.model.x1y2.tmp",
                "runs/.v1.json.tmp",
                "runs/v1.json",
                "runs/v3.json",
                "runs/v3.json#2",
                "runs/v3.verdict.json",
                "runs/v5.json",
                "runs/v6.json",
                "searches/v3.json",
                "v1.model",
                "v3.model",
                "v5.model#1",
                "v6.model",
            ]
        );
        assert_eq!(pruned.kept, ["v2.model", "v4.model"]);
        assert_eq!(
            names(root),
            [
                "my ratings.csv",
                "runs/notes.txt",
                "runs/v2.json",
                "runs/v2.verdict.json",
                "runs/v4.json",
                "runs/v7.json",
                "searches/notes.json.txt",
                "searches/v4.json",
                "t20261109T100000Z.model",
                "u.data",
                "v2.model",
                "v4.model",
                "v7.model#1",
            ]
        );
        assert!(root.join("ratings/v1.model").exists());

        assert_eq!(
            prune(config, &opts).unwrap().deleted,
            Vec::<String>::new(),
            "idempotent"
        );
        let missing = StoreConfig::Local {
            root: root.join("never-trained"),
        };
        assert_eq!(prune(missing, &opts).unwrap(), Pruned::default());
    }
}
