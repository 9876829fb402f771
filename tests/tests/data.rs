//! Issue 13 on the local cluster: the operator judges models on the ratings that arrive after
//! them. A table of this test's own (so the other tests keep their 100 000 ratings) holds
//! MovieLens 100k up to a date; v1 trains on it. The later ratings are inserted: `status.data`
//! counts them, `Stale` turns true with `NewData`, a forward evaluation scores v1 on them, and v2
//! trains. Then a bad import (`6 - rating`) followed by correct ratings: v2's forward RMSE rises,
//! `AccuracyDegraded` fires, and the challenger trained on the bad import loses to v2 on the
//! newest (correct) ratings, so the gate refuses it while v2 keeps serving.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use recommender_e2e::*;
use recommender_operator::crd::{
    ComparisonBasis, ComparisonVerdict, ForwardEvaluation, RecommenderModelStatus, RunOutcome,
    RunTrigger,
};
use std::time::Duration;
use tokio_postgres::{Client as Db, NoTls};

const TRAIN: Duration = Duration::from_secs(300);

async fn database() -> Db {
    let url = std::env::var("RECOMMENDER_TEST_PG_URL")
        .expect("RECOMMENDER_TEST_PG_URL (tests/cluster/postgres.sh env)");
    let (db, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test database: {e}"));
    tokio::spawn(connection);
    db
}

async fn sql(db: &Db, statement: &str) -> u64 {
    db.execute(statement, &[])
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"))
}

/// The epoch second below which `share` of MovieLens 100k's ratings lie.
async fn quantile(db: &Db, share: f64) -> i64 {
    let row = db
        .query_one(
            "SELECT extract(epoch FROM percentile_disc($1::float8) WITHIN GROUP (ORDER BY created_at))::int8 \
             FROM ratings_rating",
            &[&share],
        )
        .await
        .expect("a quantile of the ratings' times");
    row.get(0)
}

/// Copies the ratings of `(after, until]`, flipped to `6 - value` when `corrupt`.
async fn insert(db: &Db, table: &str, after: i64, until: i64, corrupt: bool) -> u64 {
    let value = if corrupt { "6 - value" } else { "value" };
    sql(
        db,
        &format!(
            "INSERT INTO {table} (user_id, movie_id, value, created_at) \
             SELECT user_id, movie_id, {value}, created_at FROM ratings_rating \
             WHERE created_at > to_timestamp({after}) AND created_at <= to_timestamp({until})"
        ),
    )
    .await
}

fn data_of<'a>(
    s: &'a RecommenderModelStatus,
    version: &str,
) -> Option<&'a recommender_operator::crd::DataStatus> {
    s.data
        .as_ref()
        .filter(|d| d.version == version && d.error.is_none())
}

#[tokio::test]
async fn new_ratings_forward_accuracy_and_the_champion_challenger_gate() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-data").await;
    let db = database().await;
    let table = format!("ratings_{}", ns.name.replace('-', "_"));
    let (d1, d2, d3, last) = (
        quantile(&db, 0.70).await,
        quantile(&db, 0.85).await,
        quantile(&db, 0.925).await,
        quantile(&db, 1.0).await,
    );
    sql(&db, &format!("DROP TABLE IF EXISTS {table}")).await;
    sql(
        &db,
        &format!(
            "CREATE TABLE {table} AS SELECT user_id, movie_id, value, created_at \
             FROM ratings_rating WHERE created_at <= to_timestamp({d1})"
        ),
    )
    .await;
    let snapshot_rows: u64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get::<_, i64>(0) as u64;

    let operator = Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    let model = postgres_model(&env, &ns, "movies", |s| {
        let pg = s.source.postgres.as_mut().unwrap();
        pg.query = format!(
            "SELECT user_id::text, movie_id::text, value::float8, \
             extract(epoch from created_at)::bigint FROM {table}"
        );
        s.freshness.max_new_ratings = Some(IntOrString::String("10%".into()));
        s.freshness.forward_evaluation = Some(ForwardEvaluation {
            min_ratings: 500,
            interval: "1m".into(),
            ..ForwardEvaluation::default()
        });
        // The bad import below raises the candidates' CV error too; the gate's thresholds are
        // loose so that the champion/challenger comparison is what decides.
        s.promotion.max_rmse = 1.5;
        s.promotion.max_mae = 1.2;
        s.promotion.min_accuracy = 0.5;
    });
    apply_model(&client, &model).await;
    let api = models(&client, &ns.name);
    let status = wait_status(
        &api,
        "movies",
        TRAIN,
        "v1 served and its data counted",
        |s| serves(s, "v1") && data_of(s, "v1").is_some(),
    )
    .await;
    let v1 = status.serving.clone().unwrap();
    assert_eq!(v1.fingerprint.as_ref().unwrap().rows, snapshot_rows);
    assert_eq!(v1.fingerprint.as_ref().unwrap().max_timestamp, Some(d1));
    assert_eq!(data_of(&status, "v1").unwrap().new_ratings, 0);
    assert!(condition_is(&status, "Stale", "False"));

    // The later ratings arrive.
    let later = insert(&db, &table, d1, d2, false).await;
    assert!(later * 10 > snapshot_rows, "{later} new ratings pass 10%");
    let status = wait_status(
        &api,
        "movies",
        TRAIN,
        "the new ratings counted, Stale NewData",
        |s| {
            data_of(s, "v1").is_some_and(|d| d.new_ratings == later)
                && condition(s, "Stale")
                    .is_some_and(|c| c.status == "True" && c.reason == "NewData")
        },
    )
    .await;
    let data = data_of(&status, "v1").unwrap();
    assert!(data.new_users > 0 && data.newest == Some(d2), "{data:?}");
    assert!(data.exceeded_at.is_some());

    let status = wait_status(
        &api,
        "movies",
        TRAIN,
        "v1 scored forward and v2 trained on the new data",
        |s| {
            serves(s, "v2")
                && s.models
                    .iter()
                    .any(|m| m.version == "v1" && m.forward.is_some())
        },
    )
    .await;
    let forward = status.models[0].forward.clone().unwrap();
    assert_eq!((forward.since, forward.ratings), (d1, later));
    assert!(forward.rmse > 0.8 && forward.rmse < 1.3, "{forward:?}");
    let v2_run = status.history.iter().find(|r| r.version == "v2").unwrap();
    assert_eq!(v2_run.trigger, RunTrigger::NewData);
    let status = wait_status(
        &api,
        "movies",
        TRAIN,
        "the data recounted against v2",
        |s| data_of(s, "v2").is_some(),
    )
    .await;
    assert_eq!(data_of(&status, "v2").unwrap().new_ratings, 0);
    assert!(condition_is(&status, "Stale", "False"));

    // From now on a candidate must beat the serving model on the newest ratings.
    update_spec(&client, &ns.name, "movies", |s| {
        s.promotion.must_beat_serving = true;
        s.promotion.challenge.min_ratings = 1000;
    })
    .await;
    // A bad import flips half of the next ratings; the newest arrive correct.
    let corrupt = insert(&db, &table, d2, d3, true).await;
    let clean = insert(&db, &table, d3, last, false).await;
    let status = wait_status(
        &api,
        "movies",
        TRAIN,
        "v2's forward accuracy degraded",
        |s| {
            s.serving.as_ref().is_some_and(|m| {
                m.version == "v2"
                    && m.forward
                        .as_ref()
                        .is_some_and(|f| f.ratings == corrupt + clean)
            }) && condition_is(s, "AccuracyDegraded", "True")
        },
    )
    .await;
    let v2 = status.serving.clone().unwrap();
    let f = v2.forward.unwrap();
    assert!(
        f.rmse > v2.metrics.rmse + 0.1,
        "{f:?} vs cv {}",
        v2.metrics.rmse
    );
    // Half the new ratings flipped may push the forward RMSE past maxRmse (1.5) itself; the
    // reason must name the limit the number crossed.
    let degraded = condition(&status, "AccuracyDegraded").unwrap();
    let crossed = if f.rmse > 1.5 {
        "AboveMaxRmse"
    } else {
        "AboveCvRmse"
    };
    assert_eq!(degraded.reason, crossed, "{}", degraded.message);

    let status = wait_status(
        &api,
        "movies",
        TRAIN,
        "a challenger refused on the newest ratings",
        |s| {
            s.history
                .iter()
                .any(|r| r.run > 2 && r.outcome == RunOutcome::Rejected)
        },
    )
    .await;
    let refused = status.history.iter().find(|r| r.run > 2).unwrap();
    assert_eq!(refused.reason.as_str(), "NotBetter", "{}", refused.message);
    let comparison = refused
        .comparison
        .clone()
        .expect("the comparison is recorded");
    assert_eq!(
        comparison.basis,
        ComparisonBasis::NewestRatings,
        "{comparison:?}"
    );
    assert_eq!(comparison.verdict, ComparisonVerdict::NotBetter);
    assert_eq!(comparison.champion, "v2");
    assert!(comparison.ratings >= 1000, "{comparison:?}");
    assert!(
        comparison.high.unwrap() >= 0.0 && comparison.challenger_rmse > comparison.champion_rmse,
        "{comparison:?}"
    );
    let promoted = condition(&status, "Promoted").unwrap();
    assert!(
        promoted
            .message
            .contains("newest ratings neither was trained on"),
        "{}",
        promoted.message
    );
    assert_eq!(serving_version(&status), Some("v2"));
    assert!(condition_is(&status, "AccuracyDegraded", "True"));
    assert_served_by(&client, &ns.name, "movies", "v2").await;

    // The alert's series: the operator exports the condition.
    let metrics = operator.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("recommender_model_condition{")
                && l.contains("type=\"AccuracyDegraded\"")
                && l.contains("status=\"True\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    sql(&db, &format!("DROP TABLE {table}")).await;
}
