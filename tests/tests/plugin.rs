//! The kubectl plugin on the local cluster: the binary built by `cargo build --bins`, copied onto a
//! PATH of its own and run as `kubectl recommender ...`, the way a user installs it. Its tree and
//! table name what the status holds, its actions change what serves, its errors are one line with
//! exit code 1 (2 for usage), and RBAC decides who may act (impersonated users with and without
//! a Role).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use recommender_e2e::*;
use recommender_operator::crd::{
    RecommenderModelStatus, RolloutEndReason, RolloutStage, RolloutStrategy, RunOutcome,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A folder holding only the plugin, as a user's `~/bin` would: kubectl finds it there by name.
fn install_plugin(env: &Env, ns: &str) -> PathBuf {
    let built = env.repo.join("target/debug/kubectl-recommender");
    assert!(
        built.exists(),
        "{} is missing: `cargo build --bins` builds it (tests/e2e.sh does)",
        built.display()
    );
    let dir = std::env::temp_dir().join(format!("{ns}-plugin-bin"));
    std::fs::create_dir_all(&dir).expect("a folder for the plugin");
    std::fs::copy(&built, dir.join("kubectl-recommender")).expect("copying the plugin");
    dir
}

/// `kubectl recommender args...` with the plugin's folder first on PATH.
fn plugin_command(bin: &Path, args: &[&str]) -> Command {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("kubectl");
    command.arg("recommender").args(args).env("PATH", path);
    command
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn plugin(bin: &Path, args: &[&str]) -> Ran {
    let Output {
        status,
        stdout,
        stderr,
    } = plugin_command(bin, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl (is it on PATH?): {e}"));
    let ran = Ran {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into(),
        stderr: String::from_utf8_lossy(&stderr).into(),
    };
    println!(
        "$ kubectl recommender {}\n{}{}",
        args.join(" "),
        ran.stdout,
        ran.stderr
    );
    ran
}

/// Runs and expects success; returns stdout.
fn ok(bin: &Path, args: &[&str]) -> String {
    let ran = plugin(bin, args);
    assert_eq!(
        ran.code,
        Some(0),
        "kubectl recommender {args:?} failed: {}",
        ran.stderr
    );
    ran.stdout
}

/// Runs and expects exit code `code` with exactly one line on stderr; returns it.
fn fails(bin: &Path, args: &[&str], code: i32) -> String {
    let ran = plugin(bin, args);
    assert_eq!(
        ran.code,
        Some(code),
        "kubectl recommender {args:?}: {}",
        ran.stdout
    );
    assert_eq!(ran.stdout, "", "nothing on stdout when {args:?} fails");
    if code == 1 {
        assert_eq!(ran.stderr.lines().count(), 1, "one line: {}", ran.stderr);
    }
    ran.stderr
}

/// The line of `text` that starts (after indentation) with `label`.
fn line<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in\n{text}"))
}

/// The value of a `Label:   value` line.
fn value<'a>(text: &'a str, label: &str) -> &'a str {
    line(text, label)[label.len()..].trim()
}

#[tokio::test]
async fn the_plugin_reads_and_steers_a_model() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-plugin").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let bin = install_plugin(&env, &ns.name);
    let n = ns.name.as_str();
    apply_model(&client, &postgres_model(&env, &ns, "movies", |_| {})).await;
    let status = wait_serving(&client, n, "movies", "v1").await;

    // The tree says what the status holds.
    let tree = ok(&bin, &["status", "movies", "-n", n]);
    let v1 = status.serving.as_ref().expect("v1 serves");
    assert_eq!(value(&tree, "Name:"), "movies");
    assert_eq!(value(&tree, "Namespace:"), n);
    assert_eq!(value(&tree, "Phase:"), "Serving");
    assert!(
        value(&tree, "Serving:").starts_with("v1 (run 1, trained "),
        "{tree}"
    );
    assert!(
        value(&tree, "Metrics:").starts_with(&format!(
            "RMSE {:.4}  MAE {:.4}  accuracy {:.4}",
            v1.metrics.rmse, v1.metrics.mae, v1.metrics.accuracy
        )),
        "{tree}"
    );
    assert_eq!(value(&tree, "Predictor:"), "v1, 1/1 replicas available");
    let ready = condition(&status, "Ready").expect("a Ready condition");
    let conditions: Vec<&str> = tree.lines().skip_while(|l| *l != "Conditions:").collect();
    assert!(
        conditions.iter().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.len() >= 3
                && cells[..3] == ["Ready", ready.status.as_str(), ready.reason.as_str()]
        }),
        "{tree}"
    );

    // `-o json` is the status object.
    let printed: RecommenderModelStatus =
        serde_json::from_str(&ok(&bin, &["status", "movies", "-n", n, "-o", "json"]))
            .expect("the status as JSON");
    assert_eq!(printed.serving.map(|m| m.version), Some("v1".into()));

    // The namespace comes from the context when -n is absent: a context of this namespace.
    let kubeconfig = namespaced_kubeconfig(n);
    let tree = ok(
        &bin,
        &[
            "status",
            "movies",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
    assert_eq!(value(&tree, "Namespace:"), n);

    // `status --watch` redraws when the model changes: v2 appears in a later drawing.
    let watch_file = std::env::temp_dir().join(format!("{n}-watch.txt"));
    let mut watch = spawn_watch(&bin, n, &watch_file);
    let retrain = ok(&bin, &["retrain", "movies", "-n", n]);
    assert!(
        retrain.starts_with(&format!(
            "{n}/movies: training run requested (recommender.dev/retrain="
        )),
        "{retrain}"
    );
    wait_serving(&client, n, "movies", "v2").await;
    wait_until(
        Duration::from_secs(30),
        "the watch to draw v2 serving",
        || async {
            std::fs::read_to_string(&watch_file).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.starts_with("Serving:") && l.contains(" v2 (run 2,"))
            })
        },
    )
    .await;
    let _ = watch.kill();
    let _ = watch.wait();
    let drawn = std::fs::read_to_string(&watch_file).unwrap_or_default();
    assert!(
        drawn.lines().filter(|l| l.starts_with("Name:")).count() >= 2,
        "several drawings: {drawn}"
    );
    assert!(
        drawn
            .lines()
            .any(|l| l.starts_with("Serving:") && l.contains(" v1 (run 1,")),
        "the first drawing had v1: {drawn}"
    );

    // history: both runs, oldest first, with the status's figures.
    let status = model_status(&client, n, "movies").await;
    let table = ok(&bin, &["history", "movies", "-n", n]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), status.history.len(), "{table}");
    for (row, record) in rows.iter().zip(&status.history) {
        assert_eq!(row[0], record.run.to_string(), "{table}");
        assert_eq!(row[1], record.version, "{table}");
        assert_eq!(row[3], record.outcome.as_str(), "{table}");
        let rmse = record.metrics.as_ref().map(|m| format!("{:.4}", m.rmse));
        assert!(
            rmse.is_none_or(|rmse| row.contains(&rmse.as_str())),
            "{table}"
        );
    }
    assert!(
        status
            .history
            .iter()
            .any(|r| r.version == "v2" && r.outcome == RunOutcome::Succeeded)
    );

    // rollback: an unknown version is refused naming those there are; a known one serves.
    let err = fails(&bin, &["rollback", "movies", "v9", "-n", n], 1);
    assert_eq!(
        err.trim(),
        format!("error: {n}/movies has no promoted version v9; it can be rolled back to: v1, v2")
    );
    ok(&bin, &["rollback", "movies", "v1", "-n", n]);
    wait_serving(&client, n, "movies", "v1").await;
    assert_served_by(&client, n, "movies", "v1").await;
    let tree = ok(&bin, &["status", "movies", "-n", n]);
    assert_eq!(
        value(&tree, "Pinned:"),
        "v1 (spec.pinnedVersion, serving it)"
    );
    let cleared = ok(&bin, &["rollback", "movies", "--clear", "-n", n]);
    assert_eq!(
        cleared.trim(),
        format!("{n}/movies: pin removed; v2 serves once the predictor has rolled over")
    );
    wait_serving(&client, n, "movies", "v2").await;

    // Without a rollout there is nothing to promote or abort, and nothing is written.
    let before = models(&client, n)
        .get("movies")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let err = fails(&bin, &["abort", "movies", "-n", n], 1);
    assert_eq!(
        err.trim(),
        format!(
            "error: no rollout is running on {n}/movies, nothing to abort \
             (spec.rollout.strategy is Immediate: candidates are promoted at the gate)"
        )
    );
    let after = models(&client, n)
        .get("movies")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let annotations = models(&client, n)
        .get("movies")
        .await
        .unwrap()
        .metadata
        .annotations;
    assert!(
        annotations.is_none_or(|a| !a.contains_key("recommender.dev/abort")),
        "no abort annotation written ({before:?} -> {after:?})"
    );

    // Errors: a missing model, a usage error.
    let err = fails(&bin, &["status", "nothere", "-n", n], 1);
    assert_eq!(
        err.trim(),
        format!("error: RecommenderModel {n}/nothere not found")
    );
    fails(&bin, &["rollback", "movies", "-n", n], 2);

    // RBAC: a user with no Role may not read; one who may only read may not write.
    let reader = format!("{n}-reader");
    let stranger = format!("{n}-stranger");
    apply_json(
        &client,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "model-reader", "namespace": n},
            "rules": [{"apiGroups": ["recommender.dev"], "resources": ["recommendermodels"],
                "verbs": ["get", "list", "watch"]}]}),
    )
    .await;
    apply_json(
        &client,
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "model-reader", "namespace": n},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "model-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": reader}]}),
    )
    .await;
    let err = fails(&bin, &["status", "movies", "-n", n, "--as", &stranger], 1);
    assert!(
        err.starts_with(&format!(
            "error: forbidden: you may not get recommendermodels.recommender.dev in namespace {n} (RBAC): "
        )),
        "{err}"
    );
    // The binding may take a moment to reach the authorizer's cache.
    wait_until(
        Duration::from_secs(30),
        "the reader's Role to apply",
        || async { plugin(&bin, &["status", "movies", "-n", n, "--as", &reader]).code == Some(0) },
    )
    .await;
    let err = fails(&bin, &["retrain", "movies", "-n", n, "--as", &reader], 1);
    assert!(
        err.starts_with(&format!(
            "error: forbidden: you may not patch recommendermodels.recommender.dev in namespace {n} (RBAC): "
        )),
        "{err}"
    );
}

/// `status --watch` in the background, its drawings (separated by blank lines: not a terminal)
/// going to `file`.
fn spawn_watch(bin: &Path, ns: &str, file: &Path) -> Child {
    let out = std::fs::File::create(file).expect("the watch's output file");
    plugin_command(bin, &["status", "movies", "-n", ns, "--watch"])
        .stdout(Stdio::from(out))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the watch")
}

/// A copy of KUBECONFIG whose current context's namespace is `ns`.
fn namespaced_kubeconfig(ns: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{ns}-kubeconfig"));
    let source = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    std::fs::copy(&source, &path).expect("copying the kubeconfig");
    let (done, text) = kubectl(&[
        "config",
        "set-context",
        "--current",
        "--namespace",
        ns,
        "--kubeconfig",
        path.to_str().unwrap(),
    ]);
    assert!(done, "{text}");
    path
}

/// A progressive rollout steered from the plugin: its status section while it shadows, pause
/// and resume, then abort, after which the stable model serves everyone and the candidate is
/// recorded as rejected online. No feedback is sent, so no verdict comes before the abort.
#[tokio::test]
async fn the_plugin_pauses_and_aborts_a_rollout() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-plugin-rollout").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let bin = install_plugin(&env, &ns.name);
    let n = ns.name.as_str();
    let model = postgres_model(&env, &ns, "movies", |s| {
        s.rollout.strategy = RolloutStrategy::Progressive;
        // Long enough that the shadow stage neither decides nor times out during the test.
        s.rollout.shadow.timeout = "30m".into();
        s.rollout.shadow.min_samples = 100_000;
    });
    apply_model(&client, &model).await;
    wait_serving(&client, n, "movies", "v1").await;

    let err = fails(&bin, &["promote", "movies", "-n", n], 1);
    assert_eq!(
        err.trim(),
        format!("error: no rollout is running on {n}/movies, nothing to promote")
    );

    request_retrain(&client, n, "movies", "candidate").await;
    let api = models(&client, n);
    let status = wait_status(
        &api,
        "movies",
        TRAIN_TIMEOUT,
        "v2's rollout in Shadow",
        |s| {
            s.rollout
                .as_ref()
                .is_some_and(|r| r.candidate_version == "v2" && r.stage == RolloutStage::Shadow)
        },
    )
    .await;
    let id = status.rollout.as_ref().unwrap().id.clone();

    let tree = ok(&bin, &["status", "movies", "-n", n]);
    assert_eq!(value(&tree, "Rollout:"), id);
    assert!(
        value(&tree, "Candidate:").starts_with("v2 (stable v1), started "),
        "{tree}"
    );
    assert!(
        value(&tree, "Stage:").starts_with("Shadow, no user sees the candidate, started "),
        "{tree}"
    );
    assert_eq!(
        value(&tree, "Verdict:"),
        "Continue (not enough evidence either way yet)"
    );

    let paused = ok(&bin, &["pause", "movies", "-n", n]);
    assert_eq!(
        paused.trim(),
        format!("{n}/movies: rollout {id} paused at Shadow (spec.rollout.paused=true)")
    );
    wait_status(
        &api,
        "movies",
        Duration::from_secs(60),
        "the rollout paused",
        |s| {
            s.rollout.as_ref().is_some_and(|r| r.paused_at.is_some())
                && condition(s, "RollingOut").is_some_and(|c| c.reason == "Paused")
        },
    )
    .await;
    let tree = ok(&bin, &["status", "movies", "-n", n]);
    assert!(
        value(&tree, "Paused:").ends_with("(spec.rollout.paused)"),
        "{tree}"
    );
    ok(&bin, &["resume", "movies", "-n", n]);
    wait_status(
        &api,
        "movies",
        Duration::from_secs(60),
        "the rollout resumed",
        |s| s.rollout.as_ref().is_some_and(|r| r.paused_at.is_none()),
    )
    .await;

    let aborted = ok(&bin, &["abort", "movies", "-n", n]);
    assert!(
        aborted.starts_with(&format!(
            "{n}/movies: abort of rollout {id} (Shadow) requested (recommender.dev/abort)"
        )),
        "{aborted}"
    );
    let status = wait_status(
        &api,
        "movies",
        Duration::from_secs(60),
        "the rollout aborted",
        |s| {
            s.rollout
                .as_ref()
                .is_some_and(|r| r.stage == RolloutStage::Aborted)
        },
    )
    .await;
    let rollout = status.rollout.as_ref().unwrap();
    assert_eq!(rollout.end_reason, Some(RolloutEndReason::ManualAbort));
    assert_eq!(serving_version(&status), Some("v1"));
    let tree = ok(&bin, &["status", "movies", "-n", n]);
    assert!(
        value(&tree, "Ended:").starts_with("Aborted: ManualAbort"),
        "{tree}"
    );
    let err = fails(&bin, &["abort", "movies", "-n", n], 1);
    assert!(
        err.contains(&format!("(the last, {id}, ended Aborted: ManualAbort)")),
        "{err}"
    );
    let v2 = status.history.iter().find(|r| r.version == "v2");
    assert!(
        v2.is_some_and(
            |r| r.outcome == RunOutcome::Rejected && r.reason.as_str() == "RejectedOnline"
        ),
        "{:?}",
        status.history
    );
    let table = ok(&bin, &["history", "movies", "-n", n]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..5]
                == ["2", "v2", "Requested", "Rejected", "RejectedOnline"]),
        "{table}"
    );
    // Only the stable version's pods remain.
    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    wait_until(
        Duration::from_secs(120),
        "no candidate args left on the predictor",
        || async {
            pods.list(&ListParams::default().labels("app.kubernetes.io/component=predictor"))
                .await
                .is_ok_and(|list| {
                    list.items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .all(|p| !args_of(p).iter().any(|a| a == "--candidate-version"))
                })
        },
    )
    .await;
    assert_served_by(&client, n, "movies", "v1").await;
}

fn args_of(pod: &Pod) -> Vec<String> {
    let value: Value = serde_json::to_value(pod).unwrap_or_default();
    value["spec"]["containers"][0]["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
