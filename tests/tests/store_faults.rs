//! The model store failing under a run (issue 22): full (a tmpfs with one page to spare mounted
//! over the namespace's store folder on the node, holding what the store held) and read-only (the
//! same folder bind-mounted read-only). Each time the run fails with the reason that names the
//! store's state, nothing under a final name is partial (the run records included: each is whole
//! JSON or absent), no staging file is left, and the serving model keeps serving.
//!
//! The mounts are made on the machine, where the nodes' kubelets bind the local PersistentVolume's
//! folder into the trainer pod when it starts; the predictor, started before, keeps the folder as
//! it was (and its model in memory).

use recommender_e2e::*;
use recommender_operator::crd::{RecommenderModelStatus, RunOutcome};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TRAIN: Duration = Duration::from_secs(240);
const PAGE: u64 = 4096;

/// A mount on the machine, undone (lazily, so a pod still holding it does not block) on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file under `dir`, relative, with its size.
fn files(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .display()
                    .to_string();
                out.push((rel, meta.len()));
            }
        }
    }
    out.sort();
    out
}

/// A tmpfs over `store` holding what it held, with `spare` bytes free: full for any artifact.
fn fill(store: &Path, spare: u64) -> Mount {
    let held = std::env::temp_dir().join(format!("e2e-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&held);
    sh(
        "cp",
        &[
            "-a",
            &store.display().to_string(),
            &held.display().to_string(),
        ],
    );
    let used: u64 = files(&held)
        .iter()
        .map(|(_, n)| n.div_ceil(PAGE) * PAGE)
        .sum();
    let meta = std::fs::metadata(store).unwrap();
    let options = format!(
        "size={},uid={},gid={},mode={:o}",
        used + spare,
        meta.uid(),
        meta.gid(),
        meta.mode() & 0o7777
    );
    let target = store.display().to_string();
    sh("mount", &["-t", "tmpfs", "-o", &options, "tmpfs", &target]);
    let mount = Mount(store.to_path_buf());
    sh("cp", &["-a", &format!("{}/.", held.display()), &target]);
    std::fs::remove_dir_all(&held).unwrap();
    mount
}

/// `store` bind-mounted over itself, read-only.
fn read_only(store: &Path) -> Mount {
    let target = store.display().to_string();
    sh("mount", &["--bind", &target, &target]);
    let mount = Mount(store.to_path_buf());
    sh("mount", &["-o", "remount,bind,ro", &target]);
    mount
}

/// Nothing partial under a final name: no staging file (`key#N`), no artifact of `version`,
/// and every run record whole JSON.
fn nothing_partial(store: &Path, version: &str) {
    let listing = files(store);
    println!("the store after the failed {version}: {listing:?}");
    for (file, _) in &listing {
        assert!(
            !file.contains('#'),
            "a staging file is left: {file} in {listing:?}"
        );
        assert!(
            !file.ends_with(&format!("/{version}.model")),
            "an artifact of the failed run: {file}"
        );
        if file.ends_with(".json") {
            let text = std::fs::read_to_string(store.join(file)).unwrap();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{file} is not whole JSON ({e}): {text:?}"));
        }
    }
}

/// Suspends the model and waits until no run is in flight, so that every run started after a
/// fault is in place sees it; returns the status then.
async fn quiet(client: &kube::Client, ns: &str) -> RecommenderModelStatus {
    update_spec(client, ns, "movies", |s| s.suspend = true).await;
    wait_status(
        &models(client, ns),
        "movies",
        TRAIN,
        "no run in flight",
        |s| s.runs.active.is_none() && s.runs.last == s.runs.last_completed,
    )
    .await
}

#[tokio::test]
async fn a_full_or_read_only_store_fails_the_run_saying_so_and_the_model_keeps_serving() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-storefault").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    apply_model(&client, &postgres_model(&env, &ns, "movies", |_| {})).await;
    wait_serving(&client, &ns.name, "movies", "v1").await;

    for (fault, reason, words) in [
        ("full", "StoreFull", "No space left on device"),
        ("read-only", "StoreReadOnly", "Read-only file system"),
    ] {
        let before = quiet(&client, &ns.name).await;
        let serving = serving_version(&before).unwrap().to_string();
        let artifact = ns.store.join(format!("movies/{serving}.model"));
        let bytes = std::fs::read(&artifact).unwrap();
        let mount = match fault {
            "full" => fill(&ns.store, PAGE),
            _ => read_only(&ns.store),
        };
        let run = before.runs.last + 1;
        update_spec(&client, &ns.name, "movies", |s| s.suspend = false).await;
        request_retrain(&client, &ns.name, "movies", fault).await;
        let status = wait_status(
            &models(&client, &ns.name),
            "movies",
            TRAIN,
            &format!("run {run} recorded"),
            |s| s.history.iter().any(|r| r.run == run),
        )
        .await;
        let record = status.history.iter().find(|r| r.run == run).unwrap();
        println!("{fault}: {record:?}");
        assert_eq!(
            (record.outcome, record.reason.as_str()),
            (RunOutcome::Failed, reason),
            "{record:?}"
        );
        assert!(
            record.message.contains(words),
            "the system's own words: {record:?}"
        );
        nothing_partial(&ns.store, &format!("v{run}"));
        assert_eq!(serving_version(&status), Some(serving.as_str()));
        assert!(condition_is(&status, "Serving", "True"), "{status:?}");
        assert_served_by(&client, &ns.name, "movies", &serving).await;
        quiet(&client, &ns.name).await;
        drop(mount);
        // What serves is still there, byte for byte, once the fault is gone.
        assert_eq!(std::fs::read(&artifact).unwrap(), bytes);
        nothing_partial(&ns.store, &format!("v{run}"));
        update_spec(&client, &ns.name, "movies", |s| s.suspend = false).await;
    }
}
