//! `history NAME`: `status.history` as a table, oldest first like `kubectl rollout history`.

use super::format::{age, metric, table};
use jiff::Timestamp;
use recommender_operator::crd::{RecommenderModelStatus, RunRecord};

pub fn table_of(status: Option<&RecommenderModelStatus>, now: Timestamp) -> String {
    let history = status.map(|s| s.history.as_slice()).unwrap_or_default();
    if history.is_empty() {
        return "no training runs recorded yet\n".into();
    }
    let mut rows = vec![
        [
            "RUN", "VERSION", "TRIGGER", "OUTCOME", "REASON", "FINISHED", "RMSE", "MAE", "SEARCH",
            "MESSAGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    rows.extend(history.iter().map(|r| row(r, now)));
    table("", &rows)
}

fn row(r: &RunRecord, now: Timestamp) -> Vec<String> {
    let (rmse, mae) = r.metrics.as_ref().map_or_else(
        || ("-".into(), "-".into()),
        |m| (metric(m.rmse), metric(m.mae)),
    );
    vec![
        r.run.to_string(),
        r.version.clone(),
        r.trigger.to_string(),
        r.outcome.as_str().into(),
        r.reason.to_string(),
        format!("{} ago", age(now, r.finished_at)),
        rmse,
        mae,
        r.search.map_or_else(|| "-".into(), |s| s.to_string()),
        r.message.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{now, serving_model};

    #[test]
    fn runs_are_listed_oldest_first_with_their_figures() {
        let m = serving_model();
        let text = table_of(m.status.as_ref(), now());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "RUN  VERSION  TRIGGER    OUTCOME    REASON            FINISHED  RMSE    MAE     SEARCH  MESSAGE",
                "1    v1       NoModel    Succeeded  Promoted          4d ago    0.9403  0.7412  -       v1 promoted: rmse 0.9403, mae 0.7412",
                "2    v2       Stale      Succeeded  Promoted          3d ago    0.9312  0.7412  1       v2 promoted: rmse 0.9312, mae 0.7412",
                "3    v3       Requested  Failed     DeadlineExceeded  25m ago   -       -       -       Job was active longer than specified deadline",
            ]
        );
    }

    #[test]
    fn no_runs_is_a_sentence_not_an_empty_table() {
        assert_eq!(table_of(None, now()), "no training runs recorded yet\n");
    }
}
