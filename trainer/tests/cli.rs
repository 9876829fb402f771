//! The binary as the operator's Jobs run it: exit codes, report file, artifact; `tune` and
//! `trial` as a search runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use recommender_contract::report::{Outcome, TrainingReport};
use recommender_contract::tuning::{
    self, SearchRecord, SearchSpace, Strategy, TrialPlan, TrialResult, TuningSpec, Values,
};
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

/// 6000 ratings of 200 users and 100 items, rank 4, as `dir/name` (a `.gz` name is compressed).
fn small_set(dir: &Path, name: &str) -> PathBuf {
    let data = dir.join(name);
    generate(
        &data,
        ["200", "100", "6000"],
        &["--rank", "4", "--seed", "3"],
    );
    data
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
    let data = small_set(dir.path(), "synthetic.tsv.gz");

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

/// `tune --args...` on DATA: its exit code, stdout and stderr.
fn tune(data: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin()
        .args(["tune", "--folds", "3", "--source"])
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A search where half the points diverge records them with the reason, completes, and picks
/// the best of the rest; a retrain with the record starts from its best point.
#[test]
fn tune_lists_every_trial_and_survives_a_diverging_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_set(dir.path(), "synthetic.tsv");
    let record = dir.path().join("search.json");
    let search = [
        "--param",
        "lrAll=0.005,50",
        "--param",
        "factors=4",
        "--param",
        "epochs=10,20",
        "--trials",
        "4",
        "--seed",
        "2",
    ];
    let (code, table, err) = tune(
        &data,
        &[&search[..], &["--out", record.to_str().unwrap()]].concat(),
    );
    assert_eq!(code, Some(0), "{err}");
    let rec = SearchRecord::parse(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(rec.trials.len(), 4, "the whole 2 x 2 grid");
    assert_eq!(rec.failed(), 2, "{table}");
    for t in &rec.trials {
        let diverging = t.params.lr_all == Some(50.0);
        assert_eq!(t.error.is_some(), diverging, "{t:?}");
        if let Some(e) = &t.error {
            assert_eq!(e.reason, "Diverged");
        }
        // Every trial is a row of the table.
        let row = table
            .lines()
            .find(|l| l.get(1..5).is_some_and(|c| c.trim() == t.index.to_string()))
            .unwrap_or_else(|| panic!("trial {} not in\n{table}", t.index));
        assert_eq!(row.contains("failed"), diverging, "{row}");
    }
    let best = rec.best.clone().unwrap();
    assert_eq!(best.params.lr_all, Some(0.005));
    let best_row = table.lines().find(|l| l.starts_with('*')).unwrap();
    assert!(
        best_row.contains(&format!("{:.4}", best.score.unwrap().rmse)),
        "{table}"
    );
    assert_eq!(table.matches("Diverged").count(), 2, "{table}");

    // Warm: the same space, a quarter of the budget (one trial), the previous best first.
    let (code, table, err) = tune(
        &data,
        &[&search[..], &["--warm", record.to_str().unwrap(), "--json"]].concat(),
    );
    assert_eq!(code, Some(0), "{err}\n{table}");
    let warm: SearchRecord = serde_json::from_str(&table).unwrap();
    assert!(warm.warm);
    assert_eq!(warm.trials.len(), 1);
    assert_eq!(warm.trials[0].params, best.params);
    // Another space starts cold, and says so.
    let (code, _, err) = tune(
        &data,
        &[
            "--param",
            "lrAll=0.005,0.01",
            "--param",
            "factors=4",
            "--param",
            "epochs=10",
            "--warm",
            record.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("cold start"), "{err}");
}

/// The run that trains a search's best point keeps the search beside its record, and `history`
/// shows it; a record that is not one is refused before anything runs.
#[test]
fn a_trained_search_is_kept_in_the_run_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_set(dir.path(), "synthetic.tsv");
    let record = dir.path().join("search.json");
    let spec = dir.path().join("search.yaml");
    std::fs::write(
        &spec,
        "space: {lrAll: {values: [0.005, 50]}, factors: {values: [4]}, epochs: {values: [10]}}\n\
         strategy: grid\ntrials: 2\n",
    )
    .unwrap();
    let (spec, out) = (spec.to_str().unwrap(), record.to_str().unwrap());
    let (code, _, err) = tune(&data, &["--spec", spec, "--out", out]);
    assert_eq!(code, Some(0), "{err}");
    let search = SearchRecord::parse(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let store = dir.path().join("movies");
    let train = |search_record: &Path, version: &str| {
        bin()
            .args(["train", "--folds", "3", "--source"])
            .arg(&data)
            .arg("--store")
            .arg(&store)
            .args(["--version", version, "--report"])
            .arg(dir.path().join("report.json"))
            .args(search.best.as_ref().unwrap().params.train_args())
            .arg("--search-record")
            .arg(search_record)
            .output()
            .unwrap()
    };
    let out = train(&record, "v1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(store.join("searches/v1.json").exists());

    let history = |json: bool| {
        let out = bin()
            .arg("history")
            .arg("--store")
            .arg(&store)
            .args(json.then_some("--json"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let line: serde_json::Value = serde_json::from_str(history(true).trim()).unwrap();
    let kept: SearchRecord = serde_json::from_value(line["search"].clone()).unwrap();
    assert_eq!(kept, search);
    let table = history(false);
    assert!(table.contains("2 trials, 1 failed, best cvRmse"), "{table}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"format\": 1}").unwrap();
    let out = train(&bad, "v2");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json"), "{err}");
    assert!(!store.join("v2.model").exists());
}

#[test]
fn tune_refuses_a_bad_spec_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("search.yaml");
    std::fs::write(&spec, "space:\n  lrAll: {min: 0, max: 0.1, scale: log}\n").unwrap();
    let (code, _, err) = tune(&spec, &["--spec", spec.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("search.yaml: space.lrAll.min: must be a number above 0, got 0"),
        "{err}"
    );
    std::fs::write(
        &spec,
        "space:\n  lrAll: {min: 0.001, max: 0.1}\n  regAl: {values: [1]}\n",
    )
    .unwrap();
    let (code, _, err) = tune(&spec, &["--spec", spec.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("regAl") && err.contains("line 3"), "{err}");
    let (code, _, err) = tune(&spec, &["--param", "lrAl=0.1"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no parameter \"lrAl\""), "{err}");
}

/// `trial` as a pod of the Indexed Job runs it: the completion index from the environment, the
/// result in the termination log, exit 1 for a failed trial, 2 for a plan it cannot use.
#[test]
fn trial_runs_the_plans_trial_at_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_set(dir.path(), "synthetic.tsv");
    let spec = TuningSpec {
        strategy: Strategy::Grid,
        trials: 4,
        ..TuningSpec::new(SearchSpace {
            lr_all: Some(Values::list(&[0.005, 50.0])),
            factors: Some(Values::list(&[4.0])),
            epochs: Some(Values::list(&[10.0])),
            ..SearchSpace::default()
        })
    };
    let plan = TrialPlan::new(spec.clone(), tuning::plan(&spec, &[]));
    let plan_file = dir.path().join("plan.json");
    std::fs::write(&plan_file, plan.to_json()).unwrap();
    let report = dir.path().join("termination-log");
    let run = |index: Option<&str>, plan_file: &Path| {
        let mut cmd = bin();
        cmd.args(["trial", "--folds", "3", "--plan"])
            .arg(plan_file)
            .arg("--source")
            .arg(&data)
            // As the operator runs a model's first search: its folder in the store does not
            // exist yet, and a file source does not need it.
            .arg("--store")
            .arg(dir.path().join("never-trained"))
            .arg("--report")
            .arg(&report)
            .env_remove("JOB_COMPLETION_INDEX");
        if let Some(i) = index {
            cmd.env("JOB_COMPLETION_INDEX", i);
        }
        cmd.output().unwrap()
    };
    let out = run(Some("0"), &plan_file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = TrialResult::parse(&std::fs::read_to_string(&report).unwrap()).unwrap();
    result.check(&plan.trials[0]).unwrap();
    assert!(result.score.unwrap().rmse < 1.5);

    let out = run(Some("1"), &plan_file);
    assert_eq!(out.status.code(), Some(1));
    let result = TrialResult::parse(&std::fs::read_to_string(&report).unwrap()).unwrap();
    result.check(&plan.trials[1]).unwrap();
    assert_eq!(result.error.unwrap().reason, "Diverged");

    std::fs::remove_file(&report).unwrap();
    let out = run(Some("2"), &plan_file);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--index: 2 is past the plan's 2 trials (0 to 1)"),
        "{err}"
    );
    assert!(!report.exists(), "no trial, no result");
    let out = run(None, &plan_file);
    assert_eq!(out.status.code(), Some(2), "no index at all");

    let mut outside = plan.clone();
    outside.trials[0].params.lr_all = Some(0.02);
    let bad = dir.path().join("bad-plan.json");
    std::fs::write(&bad, outside.to_json()).unwrap();
    let out = run(Some("0"), &bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad-plan.json: plan.trials[0].params: lrAll=0.02 is outside the space"),
        "{err}"
    );
    std::fs::write(&bad, "{\"spec\": ").unwrap();
    let out = run(Some("0"), &bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the plan is not valid JSON"));
}
