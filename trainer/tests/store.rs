//! The binary against the model store, as the operator's Jobs run it: `train` writes the artifact
//! and its run record once, `train --challenge` and `score` read the serving version verified
//! against its sha256, `history` reads the records, `prune` deletes runs with their records. Once
//! with a directory (a claim's mount) and once with the real S3 server of tests/cluster/s3.sh
//! (skipped without its environment, except in CI).

use std::path::Path;
use std::process::{Command, Output};

use recommender_contract::report::{Outcome, TrainingReport};
use recommender_store::testing::{Server, server};
use recommender_store::{BlockingStore, Sha256, StoreConfig};

/// How a test reaches its store: the flags and the environment of the trainer.
struct Target {
    flags: Vec<String>,
    env: Vec<(&'static str, String)>,
}

fn trainer(target: &Target, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_recommender-trainer"));
    command.args(args).args(&target.flags);
    command.env_remove("AWS_ACCESS_KEY_ID");
    command.env_remove("AWS_SECRET_ACCESS_KEY");
    command.envs(target.env.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

/// `train --source SOURCE --version VERSION` with the small hyperparameters, in `target`.
fn train_version(target: &Target, source: &str, version: &str) -> Command {
    let mut command = trainer(target, &["train", "--source", source, "--version", version]);
    command.args(SMALL);
    command
}

/// Runs and returns the output and the report it left.
fn run(command: &mut Command, report: &Path) -> (Output, TrainingReport) {
    let _ = std::fs::remove_file(report);
    let out = command.arg("--report").arg(report).output().unwrap();
    let text = std::fs::read_to_string(report).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, TrainingReport::parse(&text).unwrap())
}

fn succeeded(out: &Output, report: &TrainingReport) {
    assert!(
        out.status.success() && report.outcome == Outcome::Succeeded,
        "{report:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ratings(dir: &Path) -> Vec<u8> {
    let data = dir.join("ratings.tsv");
    let st = Command::new(env!("CARGO_BIN_EXE_recommender-trainer"))
        .args(["generate", "--users", "120", "--items", "60", "--ratings"])
        .args(["3000", "--rank", "3", "--seed", "5", "--out"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(data).unwrap()
}

const SMALL: [&str; 6] = ["--factors", "4", "--epochs", "5", "--folds", "2"];

fn keys(store: &BlockingStore) -> Vec<String> {
    store
        .list("", 1000)
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// The whole life of two versions in one store, which `store` reads behind the trainer's back.
/// The ratings are the object `ratings.tsv` in the store.
fn versions_in(target: &Target, store: &BlockingStore, work: &Path) {
    let report = work.join("report.json");
    let source = "store:ratings.tsv";

    let mut train = train_version(target, source, "v1");
    let (out, v1) = run(train.args(["--format", "ml-100k"]), &report);
    succeeded(&out, &v1);
    assert_eq!(v1.data.as_ref().unwrap().rows, 3000);
    let bytes = store.get("v1.model", 1 << 30).unwrap();
    assert_eq!(v1.artifact_bytes, Some(bytes.len() as u64));
    assert_eq!(
        v1.artifact_sha256.as_deref(),
        Some(Sha256::of(&bytes).to_string().as_str())
    );
    assert!(v1.artifact.as_deref().unwrap().ends_with("/v1.model"));
    let sha1 = v1.artifact_sha256.clone().unwrap();

    // The same version again is refused before any training, and v1 stays as it was.
    let (out, again) = run(&mut train_version(target, source, "v1"), &report);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(again.error.unwrap().reason, "StoreAlreadyExists");
    assert_eq!(again.data, None);
    assert_eq!(store.get("v1.model", 1 << 30).unwrap(), bytes);

    // v2 challenges v1, read and verified from the store, and records the verdict on v1.
    let mut train = train_version(target, source, "v2");
    train.args(["--challenge", "v1", "--challenge-sha256", &sha1]);
    let (out, v2) = run(train.args(["--verdicts", "v1=Succeeded:Promoted"]), &report);
    succeeded(&out, &v2);
    let challenge = v2.challenge.unwrap();
    assert_eq!(challenge.champion, "v1");
    assert!(
        !challenge
            .fallback
            .as_deref()
            .unwrap_or_default()
            .contains("cannot read"),
        "{challenge:?}"
    );
    let sha2 = v2.artifact_sha256.clone().unwrap();

    // A champion with other bytes than recorded is not compared with.
    let wrong = Sha256::of(b"another artifact").to_string();
    let mut train = train_version(target, source, "v3");
    let (out, v3) = run(
        train.args(["--challenge", "v1", "--challenge-sha256", &wrong]),
        &report,
    );
    succeeded(&out, &v3);
    let why = v3.challenge.unwrap().fallback.unwrap();
    assert!(why.contains("is corrupt") && why.contains(&sha1), "{why}");

    assert_eq!(
        keys(store),
        [
            "ratings.tsv",
            "runs/v1.json",
            "runs/v1.verdict.json",
            "runs/v2.json",
            "runs/v3.json",
            "v1.model",
            "v2.model",
            "v3.model",
        ]
    );

    let history = trainer(target, &["history", "--json"]).output().unwrap();
    assert!(history.status.success(), "{history:?}");
    let lines: Vec<serde_json::Value> = String::from_utf8(history.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["version"], "v1");
    assert_eq!(lines[0]["verdict"]["reason"], "Promoted");
    assert_eq!(lines[1]["artifact"]["sha256"], sha2.as_str());

    // score: the serving version, verified; other bytes are refused.
    let score = |sha: &str| {
        run(
            &mut trainer(
                target,
                &[
                    "score",
                    "--model",
                    "v2",
                    "--model-sha256",
                    sha,
                    "--since",
                    "0",
                    "--source",
                    source,
                ],
            ),
            &report,
        )
    };
    let (out, scored) = score(&sha2);
    succeeded(&out, &scored);
    assert_eq!(scored.version, "v2");
    assert_eq!(scored.forward.unwrap().ratings, 3000);
    let (out, refused) = score(&sha1);
    assert_eq!(out.status.code(), Some(1));
    let error = refused.error.unwrap();
    assert_eq!(error.reason, "StoreCorrupt");
    assert!(error.message.contains(&sha1), "{}", error.message);

    // prune: v1 and v3 go with their records and verdict; the kept v2 and the ratings stay.
    let pruned = trainer(target, &["prune", "--through-run", "3", "--keep", "v2"])
        .output()
        .unwrap();
    assert!(pruned.status.success(), "{pruned:?}");
    let said = String::from_utf8(pruned.stdout).unwrap();
    assert!(said.contains("deleted runs/v1.verdict.json"), "{said}");
    assert!(said.contains("kept v2.model"), "{said}");
    assert_eq!(keys(store), ["ratings.tsv", "runs/v2.json", "v2.model"]);
}

#[test]
fn versions_in_a_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("movies");
    // The first run creates the model's folder; the ratings are put there first here.
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("ratings.tsv"), ratings(dir.path())).unwrap();
    let target = Target {
        flags: vec!["--store".into(), folder.display().to_string()],
        env: Vec::new(),
    };
    let store = BlockingStore::open(&StoreConfig::Local {
        root: folder.clone(),
    })
    .unwrap();
    versions_in(&target, &store, dir.path());
}

#[test]
fn train_creates_the_folder_of_a_models_first_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ratings.tsv");
    std::fs::write(&data, ratings(dir.path())).unwrap();
    let folder = dir.path().join("models/movies");
    let target = Target {
        flags: vec!["--store".into(), folder.display().to_string()],
        env: Vec::new(),
    };
    let (out, report) = run(
        &mut train_version(&target, data.to_str().unwrap(), "v1"),
        &dir.path().join("r.json"),
    );
    succeeded(&out, &report);
    assert!(folder.join("v1.model").is_file());
    assert!(folder.join("runs/v1.json").is_file());
}

fn s3_target(s: &Server, prefix: &str, keys: &(String, String)) -> Target {
    Target {
        flags: s.flags(prefix),
        env: Server::key_env(keys).to_vec(),
    }
}

#[test]
fn versions_in_an_s3_store() {
    let Some(s) = server("versions_in_an_s3_store") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = s.fresh_prefix("trainer");
    let store = BlockingStore::open(&s.config(&s.args(&s.bucket, &prefix), &s.rw)).unwrap();
    store.put_new("ratings.tsv", ratings(dir.path())).unwrap();
    versions_in(&s3_target(&s, &prefix, &s.rw), &store, dir.path());
}

/// A store that refuses the trainer fails the run in seconds, before the training, with the
/// store's reason and the server's words, and no credential in the report.
#[test]
fn a_refusing_s3_store_fails_the_run_before_training() {
    let Some(s) = server("a_refusing_s3_store_fails_the_run_before_training") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ratings.tsv");
    std::fs::write(&data, ratings(dir.path())).unwrap();
    let prefix = s.fresh_prefix("trainer-refused");
    let wrong = (s.rw.0.clone(), "not-the-secret".to_string());
    let cases = [
        (
            s3_target(&s, &prefix, &wrong),
            "StoreCredentialsRefused",
            "SignatureDoesNotMatch",
        ),
        (
            Target {
                flags: s
                    .flags(&prefix)
                    .into_iter()
                    .map(|f| f.replace(&s.bucket, "no-such-bucket-here"))
                    .collect(),
                env: Server::key_env(&s.rw).to_vec(),
            },
            "StoreBucketMissing",
            "NoSuchBucket",
        ),
    ];
    for (target, reason, words) in cases {
        let (out, report) = run(
            &mut train_version(&target, data.to_str().unwrap(), "v1"),
            &dir.path().join("r.json"),
        );
        assert_eq!(out.status.code(), Some(1));
        let error = report.error.clone().unwrap();
        assert_eq!(error.reason, reason, "{}", error.message);
        assert!(error.message.contains(words), "{}", error.message);
        assert_eq!(report.data, None, "refused before loading the ratings");
        s.assert_no_secrets(&format!(
            "{report:?}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    // The read-only key pair reads and lists, so the run trains, and its artifact is refused.
    let (out, report) = run(
        trainer(
            &s3_target(&s, &prefix, &s.readonly),
            &[
                "train",
                "--source",
                data.to_str().unwrap(),
                "--version",
                "v1",
            ],
        )
        .args(SMALL),
        &dir.path().join("r.json"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report.error.unwrap().reason, "StoreReadOnly");
    assert_eq!(report.artifact, None);
}
