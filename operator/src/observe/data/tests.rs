//! Counting new ratings (the statement, when a count is due) and reading forward-evaluation Jobs.

use super::*;
use crate::crd::{DataStatus, Fingerprint, SecretKeyRef};
use crate::decide::fixtures::{at, record};
use serde_json::json;

fn serving(version: &str, max_timestamp: Option<i64>) -> RecommenderModelStatus {
    let mut model = record(version, 1, 0.94, "2026-11-27T10:00:00Z");
    model.fingerprint = Some(Fingerprint {
        rows: 1000,
        users: 10,
        items: 10,
        content_hash: "ab".into(),
        max_timestamp,
    });
    RecommenderModelStatus {
        serving: Some(model),
        ..RecommenderModelStatus::default()
    }
}

fn counted(version: &str, since: i64, when: &str) -> DataStatus {
    DataStatus {
        version: version.into(),
        since,
        new_ratings: 5,
        new_users: 1,
        new_items: 0,
        newest: Some(since + 9),
        counted_at: at(when),
        exceeded_at: None,
        error: None,
    }
}

#[test]
fn a_count_is_due_per_interval_and_at_once_for_a_new_serving_model() {
    let now = at("2026-11-27T12:00:00Z");
    let every = Duration::from_secs(15);
    assert_eq!(count_due(None, now, every), None, "nothing serves");
    assert_eq!(
        count_due(Some(&serving("v1", None)), now, every),
        None,
        "a snapshot without timestamps cannot be counted against"
    );
    let mut status = serving("v1", Some(500));
    assert_eq!(count_due(Some(&status), now, every), Some(500));
    status.data = Some(counted("v1", 500, "2026-11-27T11:59:50Z"));
    assert_eq!(
        count_due(Some(&status), now, every),
        None,
        "counted 10 s ago"
    );
    status.data = Some(counted("v1", 500, "2026-11-27T11:59:45Z"));
    assert_eq!(count_due(Some(&status), now, every), Some(500), "15 s ago");
    status.data = Some(counted("v0", 400, "2026-11-27T11:59:59Z"));
    assert_eq!(
        count_due(Some(&status), now, every),
        Some(500),
        "counted against the previous model"
    );
}

#[test]
fn the_count_wraps_the_query_and_needs_a_timestamp() {
    let sql = count_sql(
        "SELECT a, b, c, d FROM t",
        &[Type::INT4, Type::INT4, Type::INT2, Type::TIMESTAMPTZ],
    )
    .unwrap();
    assert!(
        sql.contains(
            "extract(epoch from q.t)::int8 AS t FROM (SELECT a, b, c, d FROM t) AS q(u, i, r, t)"
        ),
        "{sql}"
    );
    assert!(sql.contains("FROM users WHERE first > $1"), "{sql}");
    let epoch = count_sql("q", &[Type::TEXT, Type::TEXT, Type::FLOAT8, Type::INT8]).unwrap();
    assert!(epoch.contains("q.t::int8 AS t"), "{epoch}");
    let err = count_sql("q", &[Type::TEXT, Type::TEXT, Type::FLOAT8]).unwrap_err();
    assert!(
        err.starts_with("spec.source.postgres.query returns 3 column(s)"),
        "{err}"
    );
}

#[test]
fn evaluation_jobs() {
    let job = |conditions: serde_json::Value| -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "movies-eval-3",
                "labels": {"recommender.dev/evaluation": "3", "recommender.dev/version": "v2"},
                "annotations": {"recommender.dev/since": "893286638",
                    "recommender.dev/started-at": "2026-11-27T11:00:00Z"}},
            "status": {"conditions": conditions, "completionTime": "2026-11-27T11:01:00Z"}
        }))
        .unwrap()
    };
    let pod = |phase: &str, message: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "movies-eval-3-x", "labels": {"job-name": "movies-eval-3"}},
            "status": {"phase": phase, "containerStatuses": [{"name": "evaluator", "image": "i",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "message": message}}}]}
        }))
        .unwrap()
    };
    let running = observe_evaluation(&job(json!([])), &[]).unwrap();
    assert_eq!(
        (running.number, running.version.as_str(), running.since),
        (3, "v2", 893_286_638)
    );
    assert_eq!(running.state, EvaluationState::Running);
    assert_eq!(running.started_at, Some(at("2026-11-27T11:00:00Z")));

    let report = r#"{"format":1,"outcome":"Succeeded","version":"v2","algorithm":"svd","durations":{"loadSeconds":0,"cvSeconds":0,"fitSeconds":0,"totalSeconds":0.1},"finishedAt":"2026-11-27T11:01:00Z","forward":{"since":893286638,"ratings":20000,"rmse":1.01,"mae":0.8,"accuracy":0.66,"unknownUsers":3,"unknownItems":4}}"#;
    let done = observe_evaluation(
        &job(json!([{"type": "Complete", "status": "True"}])),
        &[pod("Succeeded", report)],
    )
    .unwrap();
    match done.state {
        EvaluationState::Succeeded { report, .. } => {
            assert_eq!(report.unwrap().forward.unwrap().ratings, 20_000);
        }
        other => panic!("{other:?}"),
    }
    let failed = observe_evaluation(
        &job(json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too slow"}])),
        &[],
    )
    .unwrap();
    assert!(
        matches!(failed.state, EvaluationState::Failed { ref message, .. } if message == "DeadlineExceeded: too slow"),
        "{:?}",
        failed.state
    );
    let training: Job = serde_json::from_value(
        json!({"metadata": {"name": "movies-train-1", "labels": {"recommender.dev/run": "1"}}}),
    )
    .unwrap();
    assert!(observe_evaluation(&training, &[]).is_none());
}

/// Against the test database (tests/cluster/postgres.sh; RECOMMENDER_TEST_PG_URL): MovieLens
/// 100k counted from a snapshot time, checked against the same numbers computed here from the
/// ratings file, plus a query without a timestamp and a wrong password.
#[tokio::test]
async fn counts_new_ratings_in_postgres() {
    let Some((pg, password)) = test_database() else {
        return;
    };
    let timeout = Duration::from_secs(20);
    let rows = ml100k();
    let since = {
        let mut times: Vec<i64> = rows.iter().map(|r| r.2).collect();
        times.sort_unstable();
        times[times.len() * 9 / 10]
    };
    let want = expected(&rows, since);
    let got = count_new_ratings(&pg, &credentials(&password), since, timeout)
        .await
        .unwrap();
    assert_eq!(got, want);

    let no_time = PostgresSource {
        query: "SELECT user_id, movie_id, value FROM ratings_rating".into(),
        ..pg.clone()
    };
    let err = count_new_ratings(&no_time, &credentials(&password), since, timeout)
        .await
        .unwrap_err();
    assert!(err.contains("returns 3 column(s)"), "{err}");
    let err = count_new_ratings(&pg, &credentials("wrong-password"), since, timeout)
        .await
        .unwrap_err();
    assert!(!err.contains("wrong-password"), "{err}");
    let writes = PostgresSource {
        // nextval() writes; a read-only transaction refuses it.
        query: "SELECT user_id, movie_id, value, created_at FROM ratings_rating \
                WHERE nextval('ratings_rating_id_seq') > 0"
            .into(),
        ..pg.clone()
    };
    let err = count_new_ratings(&writes, &credentials(&password), since, timeout)
        .await
        .unwrap_err();
    assert!(err.contains("read-only"), "the count cannot write: {err}");
}

fn test_database() -> Option<(PostgresSource, String)> {
    let url = match std::env::var("RECOMMENDER_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ if std::env::var_os("CI").is_some() => {
            panic!("RECOMMENDER_TEST_PG_URL must be set in CI (a server holding ml-100k)")
        }
        _ => {
            eprintln!("skipped: set RECOMMENDER_TEST_PG_URL to run the PostgreSQL tests");
            return None;
        }
    };
    let config: tokio_postgres::Config = url.parse().expect("a postgres:// URL");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("a TCP host in {url}"),
    };
    let pg = PostgresSource {
        ssl_mode: Default::default(),
        ca_secret_ref: None,
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        database: config.get_dbname().unwrap_or("recommender").into(),
        user: config.get_user().unwrap_or("recommender").into(),
        password_secret_ref: SecretKeyRef {
            name: "unused".into(),
            key: "password".into(),
        },
        query: "SELECT user_id, movie_id, value, created_at FROM ratings_rating".into(),
        probe_interval_seconds: 15,
    };
    let password = String::from_utf8_lossy(config.get_password().expect("a password")).into();
    Some((pg, password))
}

/// `(user, item, time)` of u.data.
fn ml100k() -> Vec<(String, String, i64)> {
    let path = std::env::var("RECOMMENDER_ML100K").unwrap_or_else(|_| {
        format!(
            "{}/../../shared/datasets/ml-100k/u.data",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].into(), f[1].into(), f[3].parse().unwrap())
        })
        .collect()
}

fn expected(rows: &[(String, String, i64)], since: i64) -> NewRatings {
    use std::collections::HashMap;
    let first = |key: fn(&(String, String, i64)) -> &String| {
        let mut first: HashMap<&String, i64> = HashMap::new();
        for r in rows {
            let e = first.entry(key(r)).or_insert(r.2);
            *e = (*e).min(r.2);
        }
        first.values().filter(|&&t| t > since).count() as u64
    };
    let new: Vec<_> = rows.iter().filter(|r| r.2 > since).collect();
    NewRatings {
        since,
        ratings: new.len() as u64,
        users: first(|r| &r.0),
        items: first(|r| &r.1),
        newest: new.iter().map(|r| r.2).max(),
    }
}

fn credentials(password: &str) -> crate::observe::database::Credentials {
    crate::observe::database::Credentials {
        password: password.into(),
        ca: None,
    }
}
