//! A trainer killed with SIGKILL while it writes to a directory store (a claim's mount) leaves
//! nothing under a final name (issue 22): the real binary, killed at many points from the moment
//! its first staging file (`key#N`) appears, each time followed by a listing in which every
//! artifact loads and every run record is whole JSON, or is absent. Only staging files may be
//! left, which the store's listings never show.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use recommender_store::{BlockingStore, StoreConfig};

const KILLS: u32 = 24;
/// The first kill comes this long after the staging file appeared, each next one 40% later (the
/// last about a second later): from the artifact's first bytes to after the run record.
const FIRST: Duration = Duration::from_micros(500);

fn trainer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_recommender-trainer"))
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Whether a staging file of `version` (its artifact's or its record's) exists.
fn staging(dir: &Path, version: &str) -> bool {
    let prefix = format!("{version}.");
    files(dir)
        .iter()
        .any(|f| f.contains('#') && f.rsplit('/').next().is_some_and(|n| n.starts_with(&prefix)))
}

/// Whatever is under a final name is whole.
fn nothing_partial(folder: &Path, after: &str) {
    for file in files(folder) {
        if file.contains('#') {
            continue;
        }
        let path = folder.join(&file);
        if file.ends_with(".model") {
            recommender_model::artifact::load(&path)
                .unwrap_or_else(|e| panic!("{after}: {file} is under its final name but {e}"));
        } else if file.ends_with(".json") {
            let bytes = std::fs::read(&path).unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_else(|e| {
                panic!("{after}: {file} is under its final name but not whole JSON: {e}")
            });
        }
    }
}

#[test]
fn a_trainer_killed_while_writing_leaves_nothing_partial_under_a_final_name() {
    // On disk (the target folder), not a tmpfs: the fsyncs take real time, as on a volume.
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = work.path().join("ratings.tsv");
    let generated = trainer()
        .args([
            "generate",
            "--users",
            "3000",
            "--items",
            "1500",
            "--ratings",
            "30000",
        ])
        .args(["--rank", "3", "--seed", "5", "--out"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(generated.success());
    let folder: PathBuf = work.path().join("movies");

    let (mut mid_write, mut finished, mut before_any_write) = (0, 0, 0);
    for i in 0..KILLS {
        let version = format!("v{}", i + 1);
        // Large factors, one epoch: training is short and the artifact (about 5 MB) long to write.
        let mut child = trainer()
            .args(["train", "--source"])
            .arg(&data)
            .args(["--version", &version, "--store"])
            .arg(&folder)
            .args(["--factors", "300", "--epochs", "1", "--folds", "2"])
            .arg("--report")
            .arg(work.path().join("report.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let seen = loop {
            if staging(&folder, &version) {
                break true;
            }
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{version} takes too long"
            );
            std::thread::sleep(Duration::from_micros(100));
        };
        if seen {
            std::thread::sleep(FIRST.mul_f64(1.4f64.powi(i as i32)));
        }
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        let status = child.wait().unwrap();
        match (seen, running) {
            (true, true) => mid_write += 1,
            (_, false) => finished += 1,
            (false, true) => before_any_write += 1,
        }
        let after = format!("{version} killed (status {status:?})");
        nothing_partial(&folder, &after);
        let store = BlockingStore::open(&StoreConfig::Local {
            root: folder.clone(),
        })
        .unwrap();
        let listed: Vec<String> = store
            .list("", 10_000)
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert!(
            listed.iter().all(|k| !k.contains('#')),
            "{after}: a listing shows a staging file: {listed:?}"
        );
    }
    println!(
        "{KILLS} runs: {mid_write} killed while writing, {finished} finished first, \
         {before_any_write} killed before writing; left: {:?}",
        files(&folder)
    );
    assert!(
        mid_write > 0,
        "no kill landed while a staging file existed: the test showed nothing"
    );
}
