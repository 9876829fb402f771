//! The binary as the operator's Jobs run it: exit codes, report file, artifact.

use std::path::Path;
use std::process::Command;

use recommender_contract::report::{Outcome, TrainingReport};
use recommender_trainer::artifact;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_recommender-trainer"))
}

/// `generate --users U --items I --ratings R [EXTRA...] --out DATA`, which must succeed.
fn generate(data: &Path, [users, items, ratings]: [&str; 3], extra: &[&str]) {
    let status = bin()
        .args([
            "generate",
            "--users",
            users,
            "--items",
            items,
            "--ratings",
            ratings,
        ])
        .args(extra)
        .arg("--out")
        .arg(data)
        .status()
        .unwrap();
    assert!(status.success(), "generate {data:?}: {status}");
}

/// `evaluate --json --source DATA --report REPORT ARGS...`, which must succeed; its JSON.
fn evaluate_json(data: &Path, report: &Path, args: &[&str]) -> serde_json::Value {
    let out = bin()
        .args(["evaluate", "--json", "--source"])
        .arg(data)
        .arg("--report")
        .arg(report)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn generate_then_train_writes_artifact_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synthetic.tsv.gz");
    generate(
        &data,
        ["200", "100", "6000"],
        &["--rank", "4", "--seed", "3"],
    );

    let model = dir.path().join("v1.model");
    let report = dir.path().join("report.json");
    let out = bin()
        .args(["train", "--source"])
        .arg(&data)
        .args([
            "--version",
            "v1",
            "--factors",
            "8",
            "--epochs",
            "10",
            "--folds",
            "3",
            "--store",
        ])
        .arg(dir.path())
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("RMSE (testset)") && table.contains("Fold 3"),
        "{table}"
    );

    let r = TrainingReport::parse(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(r.version, "v1");
    assert_eq!(r.data.as_ref().unwrap().rows, 6000);
    let m = r.metrics.unwrap();
    assert_eq!(m.folds, 3);
    // The low-rank structure is learnable: far better than the 1..5 spread.
    assert!(m.rmse < 1.0, "rmse {}", m.rmse);
    let a = artifact::load(&model).unwrap();
    assert_eq!(a.meta.version, "v1");
    assert_eq!(a.meta.algorithm, "svd");
    assert_eq!(a.model.factors.n_factors(), 8);

    // The same run with each fit on two threads, in blocks.
    let v = evaluate_json(
        &data,
        &dir.path().join("blocked.json"),
        &[
            "--factors",
            "8",
            "--epochs",
            "10",
            "--folds",
            "3",
            "--fit-threads",
            "2",
        ],
    );
    let folds = v["folds"].as_array().unwrap();
    let rmse = folds
        .iter()
        .map(|f| f["rmse"].as_f64().unwrap())
        .sum::<f64>()
        / 3.0;
    assert!(
        (rmse - m.rmse).abs() < 0.05,
        "blocked {rmse} vs serial {}",
        m.rmse
    );
}

#[test]
fn evaluate_prints_json_and_baseline_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("r.tsv");
    generate(&data, ["50", "40", "1500"], &[]);
    let v = evaluate_json(
        &data,
        &dir.path().join("r.json"),
        &["--algorithm", "baseline"],
    );
    assert_eq!(v["folds"].as_array().unwrap().len(), 4);
}

#[test]
fn failure_exits_1_with_a_failed_report() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.data");
    std::fs::write(&bad, "1\t2\t3\t4\n1\t2\tthree\t4\n").unwrap();
    let report = dir.path().join("report.json");
    let out = bin()
        .args([
            "train",
            "--format",
            "ml-100k",
            "--version",
            "v9",
            "--source",
        ])
        .arg(&bad)
        .arg("--store")
        .arg(dir.path())
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r = TrainingReport::parse(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert_eq!(e.reason, "InvalidData");
    assert!(e.message.contains("bad.data:2:"), "{}", e.message);
    assert!(!dir.path().join("v9.model").exists());
    // The failed run is recorded; only a successful one writes an artifact.
    assert!(dir.path().join("runs/v9.json").is_file());
}

/// What the operator passes until it moves onto the store: artifact paths and a folder.
#[test]
fn the_operators_artifact_paths_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("r.tsv");
    generate(&data, ["50", "40", "1500"], &[]);
    let folder = dir.path().join("movies");
    let report = dir.path().join("report.json");
    let train = |version: &str, extra: &[&str]| {
        bin()
            .args([
                "train",
                "--epochs",
                "3",
                "--folds",
                "2",
                "--version",
                version,
                "--source",
            ])
            .arg(&data)
            .arg("--out")
            .arg(folder.join(format!("{version}.model")))
            .arg("--report")
            .arg(&report)
            .args(extra)
            .status()
            .unwrap()
    };
    assert!(train("v1", &[]).success());
    let champion = folder.join("v1.model");
    assert!(train("v2", &["--challenge", champion.to_str().unwrap()]).success());
    let r = TrainingReport::parse(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r.challenge.unwrap().champion, "v1");
    assert!(folder.join("runs/v2.json").is_file());
    let score = bin()
        .args(["score", "--since", "0", "--model"])
        .arg(folder.join("v2.model"))
        .arg("--source")
        .arg(&data)
        .arg("--report")
        .arg(&report)
        .status()
        .unwrap();
    assert!(score.success());
    let prune = bin()
        .args(["prune", "--through-run", "2", "--keep", "v2", "--dir"])
        .arg(&folder)
        .output()
        .unwrap();
    assert!(prune.status.success(), "{prune:?}");
    assert!(!champion.exists() && !folder.join("runs/v1.json").exists());
    assert!(folder.join("v2.model").is_file());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = bin()
        .args(["train", "--source", "x.csv", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--store"));
    let r = TrainingReport::parse(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(
        bin().args(["train", "--bogus"]).status().unwrap().code(),
        Some(2)
    );
    for n in ["0", "257"] {
        let out = bin()
            .args(["evaluate", "--source", "x.csv", "--fit-threads", n])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--fit-threads") && err.contains("1..=256"),
            "{err}"
        );
    }
}
