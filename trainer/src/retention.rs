//! `prune`: deletes a model's artifacts outside the retention window the operator computed.
//!
//! Only artifacts of finished runs are candidates (`v<N>.model` and a crashed writer's
//! `.v<N>.model.*.tmp`, with N at most `through_run`); a later run's files are never touched, so
//! a training run that writes meanwhile is safe. Anything else in the folder (a ratings file the
//! model trains from, say) is left alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// The model's folder on the model store (`/models/<model>`).
    pub dir: PathBuf,
    /// Versions to keep (`v3`), whatever their run.
    pub keep: BTreeSet<String>,
    /// Only runs up to this one are candidates.
    pub through_run: u32,
}

/// What a prune did, file names sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deleted: Vec<String>,
    pub kept: Vec<String>,
}

/// The run an artifact (or its writer's temp file) belongs to.
fn run_of(name: &str) -> Option<u32> {
    let stem = match name.strip_suffix(".model") {
        Some(stem) => stem,
        // tempfile names: `.` + artifact name + `.` + random + `.tmp`
        None => {
            name.strip_prefix('.')?
                .strip_suffix(".tmp")?
                .split_once(".model.")?
                .0
        }
    };
    let digits = stem.strip_prefix('v')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn prune(opts: &PruneOptions) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    let entries = match std::fs::read_dir(&opts.dir) {
        Ok(entries) => entries,
        // Nothing was ever written for this model.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(pruned),
        Err(e) => return Err(Error::io(&opts.dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&opts.dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(run) = run_of(&name) else { continue };
        let kept = opts.keep.contains(&format!("v{run}"));
        if kept || run > opts.through_run {
            if name.ends_with(".model") {
                pruned.kept.push(name);
            }
            continue;
        }
        remove(&entry.path())?;
        tracing::info!(file = %name, "deleted");
        pruned.deleted.push(name);
    }
    pruned.deleted.sort();
    pruned.kept.sort();
    Ok(pruned)
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        // Another cleanup got there first.
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_runs() {
        assert_eq!(run_of("v12.model"), Some(12));
        assert_eq!(run_of(".v3.model.a1B2c3.tmp"), Some(3));
        for other in [
            "u.data",
            "v.model",
            "vx.model",
            "v1.model.bak",
            "ratings.model",
            ".v3.tmp",
        ] {
            assert_eq!(run_of(other), None, "{other}");
        }
    }

    #[test]
    fn deletes_finished_runs_outside_the_window_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "v1.model",
            "v2.model",
            "v3.model",
            "v4.model",
            "v6.model",
            ".v5.model.x1y2.tmp",
            ".v7.model.x1y2.tmp",
            "u.data",
        ] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let opts = PruneOptions {
            dir: dir.path().into(),
            keep: ["v2".to_string(), "v4".to_string()].into(),
            through_run: 6,
        };
        let pruned = prune(&opts).unwrap();
        assert_eq!(
            pruned.deleted,
            [".v5.model.x1y2.tmp", "v1.model", "v3.model", "v6.model"]
        );
        assert_eq!(pruned.kept, ["v2.model", "v4.model"]);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [".v7.model.x1y2.tmp", "u.data", "v2.model", "v4.model"]
        );

        assert_eq!(
            prune(&opts).unwrap().deleted,
            Vec::<String>::new(),
            "idempotent"
        );
        let missing = PruneOptions {
            dir: dir.path().join("never-trained"),
            ..opts
        };
        assert_eq!(prune(&missing).unwrap(), Pruned::default());
    }
}
