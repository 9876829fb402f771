//! Issue 23's progressive delivery on the local cluster, flow by flow: a stable model and a
//! candidate in every predictor replica, judged on feedback this test sends. Every expectation
//! is computed here: both models' predictions from their artifacts (the model store's folder on
//! this machine), each user's arm (`recommender_rollout::arm` with the rollout's id and share),
//! and the shadow stage's verdict on exactly the ratings the predictors paired
//! (`recommender_rollout::PairedTest`). The status is read as JSON at the paths of the rollout's
//! API; each replica's own view comes from its `/v1/stats`.
//!
//! - a worse candidate is aborted in the shadow stage, and no answer ever names it;
//! - a better one passes the shadow stage and two canary steps and is promoted, each user on the
//!   same arm on every replica;
//! - a candidate exactly as accurate as the stable model whose suggestions users accept far less
//!   often is aborted in the canary by the acceptance guardrail;
//! - `abort` during a canary returns everyone to the stable model within one config refresh
//!   (measured and printed); `promote` skips the remaining steps;
//! - the operator restarted mid-canary resumes the same stage, step and share.
//!
//! All feedback of a flow goes to one replica, one rating after another, so what the collector
//! summed at any moment is a prefix of what this test sent: the figures in the status can be
//! checked against the same prefix of the test's own sums.

use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use recommender_contract::stats::PairedSums;
use recommender_e2e::*;
use recommender_model::Model;
use recommender_operator::crd::RecommenderModel;
use recommender_operator::labels::{ABORT_ANNOTATION, PROMOTE_ANNOTATION, ROLLOUT_CONFIG_KEY};
use recommender_rollout::{AbortReason, Arm, PairedTest, Share, Verdict, arm};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MODEL: &str = "movies";
/// The operator's collector every 3 s (the default is 30 s), so verdicts follow the evidence
/// promptly.
const COLLECT_EVERY: &str = "extraArgs={--online-interval=3}";
/// One config refresh at most: the kubelet rewrites a pod's ConfigMap volume when it next syncs
/// the pod, every sync period (1 min by default, which tests/cluster/cluster.sh keeps) plus a
/// jitter of up to half of it, and the predictor reads the file within its 2 s poll.
const CONFIG_REFRESH: Duration = Duration::from_secs(60 + 30 + 2);
/// From an annotation, or the figures that decide, to the operator's decision: a collection (3 s)
/// and a reconcile, on a node the suite's other tests share.
const DECIDED: Duration = Duration::from_secs(30);
/// A new stage or share in force on every replica.
const IN_FORCE: Duration = Duration::from_secs(92 + 30 + 30);
/// The predictor Deployment rolled for a rollout's start or end.
const ROLLED: Duration = Duration::from_secs(180);
/// The predictors' default `--accept-threshold`.
const ACCEPT: f64 = 4.0;

/// The flows' model: `replicas` predictors, trained by `query`, behind an offline gate any SVD of
/// these ratings passes: the live feedback, not the gate, is what these flows are about.
fn flow_model(env: &Env, ns: &TestNamespace, replicas: i32, query: String) -> RecommenderModel {
    postgres_model(env, ns, MODEL, |s| {
        s.predictor.replicas = replicas;
        s.source
            .postgres
            .as_mut()
            .expect("a PostgreSQL source")
            .query = query;
        s.promotion.max_rmse = 3.0;
        s.promotion.max_mae = 3.0;
        s.promotion.min_accuracy = 0.0;
    })
}

/// The ratings of half the catalogue (even movie ids): a query that lost the other half.
fn half_catalogue() -> String {
    format!("{QUERY} WHERE movie_id % 2 = 0")
}

/// The shadow stage's settings in every flow.
const SHADOW_MARGIN: f64 = 0.05;
const SHADOW_ALPHA: f64 = 0.05;
const SHADOW_BETA: f64 = 0.05;

/// `spec.rollout` for a flow: a shadow stage of `min_samples` paired ratings at least, and the
/// canary's settings `canary` over short steps and small minimums (this test sends every
/// rating). The latency guardrail gets a wide margin: the node's latency is shared with the
/// suite's other tests, and no flow here is about it.
fn progressive(min_samples: u64, canary: Value) -> Value {
    let mut settings = json!({
        "steps": [{"share": 0.5, "minDuration": "5s"}],
        "minFeedback": 10,
        "minRatedSuggestions": 5,
        "minRequests": 10,
        "accuracy": {"margin": 0.05, "alpha": 0.05},
        "acceptance": {"margin": 0.2, "alpha": 0.05},
        "latency": {"margin": 20.0, "alpha": 0.05},
        "stepTimeout": "10m",
    });
    for (key, value) in canary.as_object().expect("canary settings as an object") {
        settings[key] = value.clone();
    }
    json!({
        "strategy": "Progressive",
        "shadow": {
            "margin": SHADOW_MARGIN,
            "alpha": SHADOW_ALPHA,
            "beta": SHADOW_BETA,
            "minSamples": min_samples,
            "timeout": "10m",
        },
        "canary": settings,
    })
}

/// One flow's namespace, operator and model.
struct Flow {
    env: Env,
    client: Client,
    ns: TestNamespace,
    operator: Operator,
    replicas: usize,
}

impl Flow {
    /// An operator of the flow's own and the model serving v1, trained by `query`.
    async fn serving_v1(prefix: &str, replicas: usize, query: String) -> Self {
        let env = Env::load();
        let client = client().await;
        let ns = TestNamespace::create(&client, &env, prefix).await;
        let operator =
            Operator::install(&client, &env.repo, &ns.name, &ns.name, &[COLLECT_EVERY]).await;
        apply_model(&client, &flow_model(&env, &ns, replicas as i32, query)).await;
        wait_serving(&client, &ns.name, MODEL, "v1").await;
        Self {
            env,
            client,
            ns,
            operator,
            replicas,
        }
    }

    fn ns(&self) -> &str {
        &self.ns.name
    }

    async fn status(&self) -> Value {
        status_json(&self.client, self.ns(), MODEL).await
    }

    async fn wait(&self, timeout: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_status_json(&self.client, self.ns(), MODEL, timeout, what, pred).await
    }

    /// Starts a rollout of v2 with `rollout` as `spec.rollout`, trained by `query` if given;
    /// returns the rollout's id once every replica holds the candidate in the shadow stage.
    async fn rollout_v2(&self, rollout: Value, query: Option<String>) -> (String, Vec<String>) {
        let status = start_rollout(
            &self.client,
            self.ns(),
            MODEL,
            rollout,
            query.as_deref(),
            "v2",
        )
        .await;
        let r = &status["rollout"];
        assert_eq!(
            (
                r["stage"].as_str(),
                r["stableVersion"].as_str(),
                r["share"].as_f64()
            ),
            (Some("Shadow"), Some("v1"), Some(0.0)),
            "a rollout starts in the shadow stage against v1: {r}"
        );
        let id = r["id"].as_str().expect("status.rollout.id").to_string();
        let started = r["startedAt"].as_str().unwrap_or_default();
        let unix = id.rsplit('-').next().and_then(|s| s.parse::<i64>().ok());
        assert_eq!(
            unix,
            started
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| t.as_second()),
            "the id is <model>-<candidate>-<unix seconds at start> ({id}, startedAt {started})"
        );
        assert!(id.starts_with("movies-v2-"), "{id}");
        let urls = self.in_force(&id, "shadow", 0.0, ROLLED).await;
        (id, urls)
    }

    /// Waits until every replica has the rollout `id` at `stage` and `share` in force.
    async fn in_force(&self, id: &str, stage: &str, share: f64, timeout: Duration) -> Vec<String> {
        let want = InForce {
            id: id.into(),
            stage: stage.into(),
            share,
            candidate: Some("v2".into()),
        };
        wait_replicas_in_rollout(
            &self.client,
            self.ns(),
            MODEL,
            &want,
            self.replicas,
            timeout,
        )
        .await
    }

    /// Rolls out a v2 trained like v1 (the same predictions) under `rollout`, sends the shadow
    /// stage ratings near v1's until it passes on its 20 paired ones, and waits for the first
    /// canary step (at `share`) in force on every replica: the rollout's id, the pairs sent,
    /// and the replicas' addresses.
    async fn reach_canary(&self, rollout: Value, share: f64) -> (String, Paired, Vec<String>) {
        let (id, replicas) = self.rollout_v2(rollout, None).await;
        let mut paired = Paired::new(self.model("v1"), self.model("v2"));
        let status = until_shadow_ends(self, &replicas[0], &mut paired, Truth::Stable).await;
        check_shadow_verdict(&status, &paired, 20, Verdict::Pass);
        let replicas = self.in_force(&id, "canary", share, IN_FORCE).await;
        (id, paired, replicas)
    }

    /// A version's artifact, as the trainer wrote it to the model store.
    fn model(&self, version: &str) -> Model {
        let path = self.ns.store.join(MODEL).join(format!("{version}.model"));
        recommender_model::artifact::load(&path)
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
            .model
    }

    async fn service(&self) -> String {
        predictor_url(&self.client, self.ns(), MODEL).await
    }

    /// The status once the rollout ended at `stage` (`Promoted` or `Aborted`) for `reason`.
    async fn ended(&self, stage: &str, reason: &str) -> Value {
        let what = format!("the rollout {stage} ({reason})");
        let status = self
            .wait(DECIDED, &what, |s| {
                rollout_stage(s).is_some_and(|st| st == "Promoted" || st == "Aborted")
            })
            .await;
        let r = &status["rollout"];
        assert_eq!(
            (r["stage"].as_str(), r["endReason"].as_str()),
            (Some(stage), Some(reason)),
            "{}",
            serde_json::to_string_pretty(r).unwrap()
        );
        status
    }

    /// Events of the namespace with that reason, as (type, message).
    async fn events(&self, reason: &str) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), self.ns());
        events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            // kube's recorder folds an event with the reason, action and object of an earlier
            // one into its series (the first note stays): one entry per occurrence.
            .flat_map(|e| {
                let times = e.count.unwrap_or(1).max(1) as usize;
                let one = (e.type_.unwrap_or_default(), e.message.unwrap_or_default());
                std::iter::repeat_n(one, times)
            })
            .collect()
    }

    /// Checks what an ended rollout left: the `RollingOut` condition, the run's record, the
    /// operator's metrics, and the stable or promoted model alone in every replica.
    async fn check_end(&self, status: &Value, reason: &str) {
        let promoted = matches!(reason, "Passed" | "ManualPromote");
        let rolling = json_condition(status, "RollingOut").expect("a RollingOut condition");
        let want = if promoted { "Promoted" } else { "Aborted" };
        assert_eq!(
            (rolling["status"].as_str(), rolling["reason"].as_str()),
            (Some("False"), Some(want)),
            "{rolling}"
        );
        if !promoted {
            assert!(
                rolling["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(reason)),
                "the condition's message names the end reason {reason}: {rolling}"
            );
        }
        let run = status["history"]
            .as_array()
            .and_then(|h| h.iter().find(|r| r["version"] == "v2"))
            .unwrap_or_else(|| panic!("v2's run in status.history: {}", status["history"]));
        let (outcome, why) = if promoted {
            ("Succeeded", "Promoted")
        } else {
            ("Rejected", "RejectedOnline")
        };
        assert_eq!(
            (run["outcome"].as_str(), run["reason"].as_str()),
            (Some(outcome), Some(why)),
            "{run}"
        );
        let promotion = json_condition(status, "Promoted").expect("a Promoted condition");
        assert_eq!(promotion["reason"].as_str(), Some(why), "{promotion}");
        let serving = if promoted { "v2" } else { "v1" };
        let what = format!("{serving} served alone");
        let status = self
            .wait(ROLLED, &what, |s| {
                s["serving"]["version"] == serving && s["predictor"]["version"] == serving
            })
            .await;
        if promoted {
            let models: Vec<&str> = status["models"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["version"].as_str())
                .collect();
            assert_eq!(
                models.last(),
                Some(&"v2"),
                "v2 pushed to status.models: {models:?}"
            );
        }
        wait_replicas_without_rollout(
            &self.client,
            self.ns(),
            MODEL,
            serving,
            self.replicas,
            ROLLED,
        )
        .await;
        let metrics = self.operator.metrics().await;
        let labels = [("namespace", self.ns()), ("name", MODEL)];
        let stage = [labels[0], labels[1], ("stage", want)];
        assert_eq!(
            sample(&metrics, "recommender_rollout_stage", &stage),
            Some(1.0),
            "{metrics}"
        );
        if !promoted {
            let aborted = [labels[0], labels[1], ("reason", reason)];
            assert_eq!(
                sample(&metrics, "recommender_rollout_aborts_total", &aborted),
                Some(1.0),
                "one abort counted: {metrics}"
            );
        }
    }
}

/// The value of the series of `metric` with (at least) `labels` in a Prometheus text scrape.
fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (name == metric && all)
                .then(|| value.parse().ok())
                .flatten()
        })
}

/// Whose predictions a flow's ratings follow: that model is the better one on them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Truth {
    Stable,
    Candidate,
}

/// Both models, and the paired errors of every feedback rating this test sent, in order.
struct Paired {
    stable: Model,
    candidate: Model,
    /// `prefix[k]`: the sums over the first `k` ratings sent.
    prefix: Vec<PairedSums>,
}

impl Paired {
    fn new(stable: Model, candidate: Model) -> Self {
        Self {
            stable,
            candidate,
            prefix: vec![PairedSums::default()],
        }
    }

    fn sent(&self) -> u64 {
        self.prefix.len() as u64 - 1
    }

    fn at(&self, n: u64) -> PairedSums {
        *self
            .prefix
            .get(n as usize)
            .unwrap_or_else(|| panic!("{n} ratings counted, {} sent", self.sent()))
    }

    fn predict(&self, by: Arm, user: &str, item: &str) -> f64 {
        match by {
            Arm::Stable => self.stable.predict(user, item).rating,
            Arm::Candidate => self.candidate.predict(user, item).rating,
        }
    }

    /// A rating of `item` by `user` near what `truth` predicts (`noise` stars off), within the
    /// rating scale.
    fn rating(&self, truth: Truth, user: &str, item: &str, noise: f64) -> f64 {
        let by = match truth {
            Truth::Stable => Arm::Stable,
            Truth::Candidate => Arm::Candidate,
        };
        (self.predict(by, user, item) + noise).clamp(1.0, 5.0)
    }

    fn record(&mut self, user: &str, item: &str, rating: f64) {
        let mut next = *self.prefix.last().expect("prefix[0]");
        next.record(
            rating - self.predict(Arm::Stable, user, item),
            rating - self.predict(Arm::Candidate, user, item),
        );
        self.prefix.push(next);
    }

    /// The candidate's mean squared error minus the stable model's over the first `n`.
    fn mean_difference(&self, n: u64) -> f64 {
        let sums = self.at(n);
        sums.sum_difference / sums.n as f64
    }
}

/// The `i`-th (user, item) pair of the shadow stage's ratings and how far off the truth it is
/// rated: MovieLens ids spread over users and the whole catalogue, noise in [-0.5, 0.5).
fn pair(i: usize) -> (String, String, f64) {
    let user = 1 + (i * 37) % 943;
    let item = 1 + (i * 101) % 1682;
    let noise = ((i * 7919) % 1000) as f64 / 1000.0 - 0.5;
    (user.to_string(), item.to_string(), noise)
}

/// Posts one feedback rating to a replica; checks the answer names `version` (the user's arm's)
/// and predicted what that model predicts. Returns the answer.
async fn feedback(base: &str, paired: &mut Paired, by: Arm, version: &str, body: Value) -> Value {
    let (user, item) = (
        body["user"].as_str().unwrap().to_string(),
        body["item"].as_str().unwrap().to_string(),
    );
    let rating = body["rating"].as_f64().unwrap();
    let answer = match post_json(&format!("{base}/v1/feedback"), &body).await {
        Ok((200, answer)) => answer,
        other => panic!("feedback {body} to {base}: {other:?}"),
    };
    assert_eq!(answer["model_version"], version, "{body}: {answer}");
    let predicted = answer["predicted"].as_f64().expect("predicted");
    let ours = paired.predict(by, &user, &item);
    assert!(
        (predicted - ours).abs() < 1e-9,
        "{version} predicted {predicted} for {user}/{item}, its artifact says {ours}"
    );
    paired.record(&user, &item, rating);
    answer
}

/// Sends shadow-stage ratings (following `truth`) to `base` twenty at a time until the stage
/// ends; returns the status then. Every answer comes from the stable model.
async fn until_shadow_ends(flow: &Flow, base: &str, paired: &mut Paired, truth: Truth) -> Value {
    let started = Instant::now();
    loop {
        for _ in 0..20 {
            let (user, item, noise) = pair(paired.sent() as usize);
            let rating = paired.rating(truth, &user, &item, noise);
            let body = json!({"user": user, "item": item, "rating": rating});
            feedback(base, paired, Arm::Stable, "v1", body).await;
        }
        let status = flow.status().await;
        if rollout_stage(&status) != Some("Shadow") {
            return status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "no verdict after {} paired ratings: {}",
            paired.sent(),
            status["rollout"]
        );
    }
}

fn close(what: &str, got: &Value, want: Option<f64>, tolerance: f64) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: absent ({got})"));
    let want = want.unwrap_or_else(|| panic!("{what}: nothing computed"));
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: status {got}, computed {want}"
    );
}

/// The shadow stage's figures in the status are those of the test's own first `samples` ratings,
/// and the verdict `PairedTest` gives on them is `want`. Returns the mean difference.
fn check_shadow_verdict(status: &Value, paired: &Paired, min_samples: u64, want: Verdict) -> f64 {
    let test = &status["rollout"]["test"];
    let samples = test["samples"]
        .as_u64()
        .unwrap_or_else(|| panic!("status.rollout.test.samples: {test}"));
    assert!(
        (min_samples..=paired.sent()).contains(&samples),
        "{samples} paired ratings judged; at least {min_samples}, at most the {} sent",
        paired.sent()
    );
    let test_settings =
        PairedTest::new(SHADOW_MARGIN, SHADOW_ALPHA, SHADOW_BETA, min_samples).unwrap();
    let decision = test_settings.decide(&paired.at(samples));
    assert_eq!(
        decision.verdict, want,
        "on the first {samples} ratings sent: {decision:?}"
    );
    close(
        "meanDifference",
        &test["meanDifference"],
        decision.mean_difference,
        1e-5,
    );
    close(
        "standardError",
        &test["standardError"],
        decision.standard_error,
        1e-5,
    );
    close(
        "logRatioWorse",
        &test["logRatioWorse"],
        decision.log_ratio_worse,
        1e-3,
    );
    close(
        "logRatioNoWorse",
        &test["logRatioNoWorse"],
        decision.log_ratio_no_worse,
        1e-3,
    );
    eprintln!(
        "shadow verdict {want:?} on {samples} paired ratings: candidate MSE minus stable {:+.4}",
        paired.mean_difference(samples)
    );
    paired.mean_difference(samples)
}

/// One user's suggestions from a replica, and who answered.
struct Visit {
    user: String,
    arm: String,
    version: String,
    items: Vec<String>,
}

async fn visit(base: &str, user: &str) -> Visit {
    let url = format!("{base}/v1/users/{user}/recommendations?n=5");
    let answer = get_answer(&url).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.code, 200, "{url}: {:?}", answer.body);
    let items: Vec<String> = answer.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{url}: {:?}", answer.body))
        .iter()
        .filter_map(|i| i["item"].as_str().map(String::from))
        .collect();
    assert!(!items.is_empty(), "no suggestions from {url}");
    assert_eq!(
        answer.body["model_version"].as_str(),
        answer.version.as_deref(),
        "{url}: the body and the header name the same version"
    );
    Visit {
        user: user.into(),
        arm: answer
            .arm
            .unwrap_or_else(|| panic!("{url}: no x-rollout-arm during a rollout")),
        version: answer
            .version
            .unwrap_or_else(|| panic!("{url}: no x-model-version")),
        items,
    }
}

/// Asks every replica for the suggestions of `users`: each user gets the same arm and version
/// from every replica, the arm the rollout's hash gives at `share`, answered by that arm's
/// version. Returns the first replica's visits.
async fn same_arm_on_every_replica(
    replicas: &[String],
    users: impl Iterator<Item = usize>,
    id: &str,
    share: f64,
) -> Vec<Visit> {
    let share = Share::from_fraction(share).unwrap();
    let mut visits = Vec::new();
    for user in users {
        let user = user.to_string();
        let want = arm(&user, id, share);
        let mut seen = Vec::new();
        for base in replicas {
            seen.push(visit(base, &user).await);
        }
        for (base, v) in replicas.iter().zip(&seen) {
            let version = match want {
                Arm::Stable => "v1",
                Arm::Candidate => "v2",
            };
            assert_eq!(
                (v.arm.as_str(), v.version.as_str()),
                (want.as_str(), version),
                "user {user} on {base} in rollout {id} at share {}",
                share.fraction()
            );
        }
        visits.push(seen.swap_remove(0));
    }
    visits
}

/// Both arms have users among `visits`.
fn both_arms(visits: &[Visit]) {
    let on_candidate = visits.iter().filter(|v| v.arm == "candidate").count();
    assert!(
        on_candidate > 0 && on_candidate < visits.len(),
        "both arms among {} users: {on_candidate} on the candidate",
        visits.len()
    );
}

fn arm_of(visit: &Visit) -> Arm {
    match visit.arm.as_str() {
        "candidate" => Arm::Candidate,
        _ => Arm::Stable,
    }
}

/// Rates every suggestion of `visits` on `base` (`suggested: true`) with `rating(visit, item)`;
/// returns per arm (stable, candidate) the suggestions rated and accepted, as the answers say.
async fn rate_suggestions(
    base: &str,
    paired: &mut Paired,
    visits: &[Visit],
    rating: impl Fn(&Paired, &Visit, &str, usize) -> f64,
) -> [(u64, u64); 2] {
    let mut counts = [(0, 0); 2];
    for v in visits {
        for (k, item) in v.items.iter().enumerate() {
            let r = rating(paired, v, item, k);
            let body = json!({"user": v.user, "item": item, "rating": r, "suggested": true});
            let answer = feedback(base, paired, arm_of(v), &v.version, body).await;
            let accepted = answer["accepted"].as_bool();
            assert_eq!(accepted, Some(r >= ACCEPT), "{answer}");
            let slot = &mut counts[usize::from(arm_of(v) == Arm::Candidate)];
            slot.0 += 1;
            slot.1 += u64::from(accepted == Some(true));
        }
    }
    counts
}

/// `kubectl describe` and, where the plugin is built, `kubectl-recommender status`: both name
/// the rollout's end and its reason.
fn check_described(flow: &Flow, words: &[&str]) {
    let (ok, described) = kubectl(&["describe", "recommendermodel", MODEL, "-n", flow.ns()]);
    assert!(ok, "{described}");
    for word in words.iter().chain(&["RollingOut"]) {
        assert!(
            described.contains(word),
            "kubectl describe lacks {word}:\n{described}"
        );
    }
    // TODO(lead): the kubectl-recommender plugin comes from branch s23-plugin; on a tree without
    // it `cargo build --bins` leaves no binary and only `kubectl describe` is checked here. Once
    // it is merged, make its absence a failure.
    let plugin = plugin_binary(&flow.env);
    if !plugin.exists() {
        eprintln!(
            "TODO: no {} in this tree; the plugin's output is not checked",
            plugin.display()
        );
        return;
    }
    let out = std::process::Command::new(&plugin)
        .args(["status", MODEL, "-n", flow.ns()])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", plugin.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {text}{}",
        plugin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    for word in words {
        assert!(
            text.contains(word),
            "kubectl-recommender status lacks {word}:\n{text}"
        );
    }
    println!("{text}");
}

fn plugin_binary(env: &Env) -> PathBuf {
    env.repo.join("target/debug/kubectl-recommender")
}

// Quarantined: in its one run (2026-12-08) a feedback POST to a replica that had reported the
// rollout in force was refused (connect error to its pod address): the Deployment was still
// replacing pods when the test took their addresses. Issue 23 stays open until it passes.
#[ignore = "open: replicas taken while the Deployment still rolled, see the comment"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_candidate_is_aborted_in_the_shadow_stage_and_no_user_ever_gets_its_answers() {
    // v1 learnt the whole catalogue; v2 comes from a query that lost half of it.
    let flow = Flow::serving_v1("e2e-roll-worse", 2, QUERY.into()).await;
    // Users' predictions through the Service from before the rollout until after its end.
    let service = flow.service().await;
    let urls = (1..=10)
        .map(|u| format!("{service}/v1/predict?user={u}&item=50"))
        .collect();
    let stream = RequestStream::start_many(urls, Duration::from_millis(100));

    let rollout = progressive(40, json!({}));
    let (id, replicas) = flow.rollout_v2(rollout, Some(half_catalogue())).await;
    let mut paired = Paired::new(flow.model("v1"), flow.model("v2"));
    // Ratings near what v1 predicts: v2 errs more on them.
    let status = until_shadow_ends(&flow, &replicas[0], &mut paired, Truth::Stable).await;
    let worse = check_shadow_verdict(
        &status,
        &paired,
        40,
        Verdict::Abort {
            reason: AbortReason::WorseAccuracy,
        },
    );
    assert!(worse > 0.0, "the candidate erred more: {worse}");
    let status = flow.ended("Aborted", "WorseAccuracy").await;
    let r = &status["rollout"];
    assert_eq!(
        (r["id"].as_str(), r["share"].as_f64(), r["verdict"].as_str()),
        (Some(id.as_str()), Some(0.0), Some("Abort")),
        "{r}"
    );
    let aborted = flow.events("RolloutAborted").await;
    assert!(
        aborted.iter().any(|(type_, _)| type_ == "Warning"),
        "a Warning Event RolloutAborted: {aborted:?}"
    );
    flow.check_end(&status, "WorseAccuracy").await;
    check_described(&flow, &["Aborted", "WorseAccuracy", "v2"]);

    // Through the whole rollout every answer came from v1, and the replicas were in it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = stream.stop().await;
    let tally = Tally::of(&sent);
    let named: Vec<&Option<String>> = sent
        .iter()
        .filter(|s| s.error.is_none())
        .map(|s| &s.version)
        .collect();
    let in_rollout = sent
        .iter()
        .filter(|s| s.arm.as_deref() == Some("stable"))
        .count();
    eprintln!(
        "{} predictions through the Service during the rollout, {} failed ({:?}), {in_rollout} answered on the stable arm of the rollout",
        tally.sent, tally.failed, tally.examples
    );
    assert!(
        named.iter().all(|v| v.as_deref() == Some("v1")),
        "an answer not from v1: {:?}",
        sent.iter().find(|s| s.version.as_deref() != Some("v1"))
    );
    assert!(
        sent.iter()
            .all(|s| s.arm.as_deref().is_none_or(|a| a == "stable")),
        "an answer on the candidate's arm in the shadow stage"
    );
    assert!(
        in_rollout > 0,
        "no prediction was answered while the replicas held the rollout"
    );
    assert_eq!(
        tally.failed, 0,
        "the stable model serves throughout: {:?}",
        tally.examples
    );
}

// Quarantined with the worse-candidate flow, for the same reason: in its second run (2026-12-08)
// a feedback POST to a replica that had reported the rollout in force was refused at connect.
// (Its first run also counted RolloutAdvanced events by object, not occurrence: fixed.)
#[ignore = "open: replicas taken while the Deployment still rolled, see the worse-candidate flow"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_better_candidate_passes_shadow_and_canary_steps_and_is_promoted() {
    // v1 learnt half the catalogue; v2, the whole of it.
    let flow = Flow::serving_v1("e2e-roll-better", 2, half_catalogue()).await;
    let steps = [0.3, 0.6];
    let rollout = progressive(
        40,
        json!({"steps": steps.iter().map(|s| json!({"share": s, "minDuration": "5s"})).collect::<Vec<_>>()}),
    );
    let (id, replicas) = flow.rollout_v2(rollout, Some(QUERY.into())).await;
    let mut paired = Paired::new(flow.model("v1"), flow.model("v2"));
    // Ratings near what v2 predicts: it errs less on them.
    let status = until_shadow_ends(&flow, &replicas[0], &mut paired, Truth::Candidate).await;
    let better = check_shadow_verdict(&status, &paired, 40, Verdict::Pass);
    assert!(better < 0.0, "the candidate erred less: {better}");

    let mut users = 1..;
    for (step, share) in steps.iter().enumerate() {
        let what = format!("canary step {step}");
        flow.wait(DECIDED, &what, |s| {
            s["rollout"]["stage"] == "Canary" && s["rollout"]["step"] == step
        })
        .await;
        let started = Instant::now();
        let replicas = flow.in_force(&id, "canary", *share, IN_FORCE).await;
        eprintln!(
            "canary step {step} ({share}) in force on every replica {:.1} s after the operator wrote it",
            started.elapsed().as_secs_f64()
        );
        let visits =
            same_arm_on_every_replica(&replicas, users.by_ref().take(40), &id, *share).await;
        both_arms(&visits);
        let counts = rate_suggestions(&replicas[0], &mut paired, &visits, |p, v, item, k| {
            p.rating(Truth::Candidate, &v.user, item, pair(k).2)
        })
        .await;
        eprintln!(
            "step {step}: rated/accepted suggestions, stable {:?}, candidate {:?}",
            counts[0], counts[1]
        );
        let next = format!("canary step {step} passed");
        flow.wait(DECIDED + Duration::from_secs(5), &next, |s| {
            s["rollout"]["stage"] == "Promoted" || s["rollout"]["step"].as_u64() > Some(step as u64)
        })
        .await;
    }
    let status = flow.ended("Promoted", "Passed").await;
    let guardrails = &status["rollout"]["guardrails"];
    for g in ["accuracy", "acceptance", "latency"] {
        assert_eq!(guardrails[g]["failed"], false, "{guardrails}");
    }
    assert!(
        guardrails["accuracy"]["estimate"]
            .as_f64()
            .is_some_and(|e| e < 0.0),
        "the candidate's paired errors smaller through the canary: {guardrails}; computed {:+.4}",
        paired.mean_difference(paired.sent())
    );
    assert!(paired.mean_difference(paired.sent()) < 0.0);
    let advanced = flow.events("RolloutAdvanced").await;
    assert_eq!(
        advanced.len(),
        steps.len(),
        "one RolloutAdvanced per step: {advanced:?}"
    );
    flow.check_end(&status, "Passed").await;
}

// Quarantined: in its one run (2026-12-08) the replicas answered 415 users on the candidate's arm,
// yet status.rollout.arms kept the shadow stage's figures (candidate feedback 0, requests 0) and
// the step never had its minimum evidence: the collector's per-arm sums, or the predictor's
// per-arm counting in the canary, is wrong. Issue 23 stays open until it passes.
#[ignore = "open: the canary's per-arm figures did not reach status.rollout, see the comment"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_whose_suggestions_are_accepted_far_less_is_aborted_by_the_acceptance_guardrail()
 {
    // v2 is trained on the same ratings with the same seed: exactly v1's predictions.
    let flow = Flow::serving_v1("e2e-roll-accept", 1, QUERY.into()).await;
    let rollout = progressive(
        20,
        json!({
            "steps": [{"share": 0.5, "minDuration": "5s"}],
            // The step cannot pass before acceptance is compared (20 rated suggestions per arm).
            "minFeedback": 200,
            "minRatedSuggestions": 20,
            "acceptance": {"margin": 0.1, "alpha": 0.05},
        }),
    );
    let (id, mut paired, replicas) = flow.reach_canary(rollout, 0.5).await;

    // Users on the stable arm rate its suggestions 4 (accepted), those on the candidate's 3.
    let mut totals = [(0, 0); 2];
    let mut users = 1..;
    loop {
        let visits = same_arm_on_every_replica(&replicas, users.by_ref().take(10), &id, 0.5).await;
        let counts = rate_suggestions(&replicas[0], &mut paired, &visits, |_, v, _, _| {
            if v.arm == "candidate" { 3.0 } else { 4.0 }
        })
        .await;
        for (total, c) in totals.iter_mut().zip(counts) {
            *total = (total.0 + c.0, total.1 + c.1);
        }
        let status = flow.status().await;
        if rollout_stage(&status) != Some("Canary") {
            break;
        }
        assert!(
            totals[1].0 < 400,
            "no verdict after {totals:?} rated/accepted: {}",
            status["rollout"]
        );
    }
    let (stable_rate, candidate_rate) = (
        totals[0].1 as f64 / totals[0].0 as f64,
        totals[1].1 as f64 / totals[1].0 as f64,
    );
    // Accuracy is fine by the same paired comparison the guardrail makes.
    let accuracy = paired.mean_difference(paired.sent());
    eprintln!(
        "acceptance: stable {stable_rate} of {}, candidate {candidate_rate} of {}; candidate MSE minus stable {accuracy:+.6}",
        totals[0].0, totals[1].0
    );
    assert!(
        accuracy.abs() < 0.05 / 10.0,
        "as accurate as the stable model: {accuracy}"
    );
    let status = flow.ended("Aborted", "LowerAcceptance").await;
    let g = &status["rollout"]["guardrails"];
    assert_eq!(
        (
            g["acceptance"]["failed"].as_bool(),
            g["accuracy"]["failed"].as_bool()
        ),
        (Some(true), Some(false)),
        "{g}"
    );
    // Every stable-arm suggestion accepted, no candidate one, whatever prefix was judged.
    close(
        "acceptance estimate",
        &g["acceptance"]["estimate"],
        Some(stable_rate - candidate_rate),
        1e-6,
    );
    let arms = &status["rollout"]["arms"];
    close(
        "stable acceptedOfRated",
        &arms["stable"]["acceptedOfRated"],
        Some(stable_rate),
        1e-4,
    );
    close(
        "candidate acceptedOfRated",
        &arms["candidate"]["acceptedOfRated"],
        Some(candidate_rate),
        1e-4,
    );
    assert!(
        g["accuracy"]["estimate"]
            .as_f64()
            .is_some_and(|e| e.abs() < 0.05),
        "the accuracy guardrail saw no difference: {g}"
    );
    flow.check_end(&status, "LowerAcceptance").await;
    check_described(&flow, &["Aborted", "LowerAcceptance"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_during_the_canary_returns_everyone_to_the_stable_model_within_one_config_refresh()
{
    let flow = Flow::serving_v1("e2e-roll-abort", 2, QUERY.into()).await;
    let steps = json!([
        {"share": 0.5, "minDuration": "5s"},
        {"share": 0.75, "minDuration": "5s"},
        {"share": 1.0, "minDuration": "5s"},
    ]);
    // No step passes by itself: the abort comes from a person.
    let (id, _, replicas) = flow
        .reach_canary(
            progressive(20, json!({"steps": steps, "minFeedback": 100000})),
            0.5,
        )
        .await;

    // The candidate's users, as the hash puts them and every replica agrees.
    let candidates: Vec<usize> = (1..=200)
        .filter(|u| arm(&u.to_string(), &id, Share::from_fraction(0.5).unwrap()) == Arm::Candidate)
        .take(8)
        .collect();
    same_arm_on_every_replica(&replicas, candidates.iter().copied().chain(1..=8), &id, 0.5).await;
    let service = flow.service().await;
    let urls = candidates
        .iter()
        .map(|u| format!("{service}/v1/users/{u}/recommendations?n=5"))
        .collect();
    let stream = RequestStream::start_many(urls, Duration::from_millis(50));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let aborted_at = stream.now();
    annotate_model(&flow.client, flow.ns(), MODEL, ABORT_ANNOTATION, &id).await;
    let status = flow.ended("Aborted", "ManualAbort").await;
    let decided = stream.now() - aborted_at;
    wait_replicas_without_rollout(
        &flow.client,
        flow.ns(),
        MODEL,
        "v1",
        flow.replicas,
        CONFIG_REFRESH + ROLLED,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent = stream.stop().await;

    let tally = Tally::of(&sent);
    let before = sent
        .iter()
        .filter(|s| s.at < aborted_at && s.version.as_deref() == Some("v2"))
        .count();
    let last_candidate = sent
        .iter()
        .filter(|s| s.version.as_deref() == Some("v2"))
        .map(|s| s.at)
        .max()
        .unwrap_or_default();
    let back_after = last_candidate.saturating_sub(aborted_at);
    eprintln!(
        "abort: the operator decided {:.1} s after the annotation; the candidate's users were all back on v1 {:.1} s after it (last v2 answer); {} requests for 8 candidate users, {before} answered by v2 before the abort, {} failed ({:?})",
        decided.as_secs_f64(),
        back_after.as_secs_f64(),
        tally.sent,
        tally.failed,
        tally.examples
    );
    assert!(
        before > 0,
        "the candidate's users were on v2 before the abort"
    );
    assert!(
        back_after <= CONFIG_REFRESH + Duration::from_secs(10),
        "everyone back on v1 within one config refresh ({CONFIG_REFRESH:?}) of the abort, took {back_after:?}"
    );
    assert!(
        sent.iter()
            .filter(|s| s.at > last_candidate)
            .all(|s| s.error.is_some() || s.version.as_deref() == Some("v1")),
        "after the last v2 answer, every answer from v1"
    );
    assert_eq!(tally.failed, 0, "{:?}", tally.examples);
    flow.check_end(&status, "ManualAbort").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_during_the_canary_skips_the_remaining_steps() {
    let flow = Flow::serving_v1("e2e-roll-promote", 1, QUERY.into()).await;
    let steps = json!([
        {"share": 0.3, "minDuration": "5s"},
        {"share": 0.6, "minDuration": "5s"},
        {"share": 1.0, "minDuration": "5s"},
    ]);
    let (id, _, _) = flow
        .reach_canary(
            progressive(20, json!({"steps": steps, "minFeedback": 100000})),
            0.3,
        )
        .await;

    let promoted_at = Instant::now();
    annotate_model(&flow.client, flow.ns(), MODEL, PROMOTE_ANNOTATION, &id).await;
    // Until v2 serves alone, the rollout's ConfigMap never holds the next steps' shares.
    let configs: Api<ConfigMap> = Api::namespaced(flow.client.clone(), flow.ns());
    let mut shares = Vec::new();
    let status = loop {
        if let Some(cm) = configs.get_opt(&format!("{MODEL}-rollout")).await.unwrap() {
            let text = cm
                .data
                .unwrap_or_default()
                .remove(ROLLOUT_CONFIG_KEY)
                .unwrap_or_default();
            if let Ok(config) = serde_json::from_str::<Value>(&text)
                && let Some(share) = config["candidateShare"].as_f64()
                && !shares.contains(&share)
            {
                shares.push(share);
            }
        }
        let status = flow.status().await;
        if status["serving"]["version"] == "v2" {
            break status;
        }
        assert!(
            promoted_at.elapsed() < ROLLED,
            "v2 not serving {ROLLED:?} after the promote: {}",
            status["rollout"]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "promote: v2 serving {:.1} s after the annotation; the rollout's config held the shares {shares:?}",
        promoted_at.elapsed().as_secs_f64()
    );
    assert!(
        !shares.contains(&0.6),
        "the second step's share was never in force: {shares:?}"
    );
    let r = &status["rollout"];
    assert_eq!(
        (
            r["stage"].as_str(),
            r["endReason"].as_str(),
            r["step"].as_u64()
        ),
        (Some("Promoted"), Some("ManualPromote"), Some(0)),
        "{r}"
    );
    let advanced = flow.events("RolloutAdvanced").await;
    assert_eq!(
        advanced.len(),
        1,
        "only the shadow stage's pass advanced the rollout: {advanced:?}"
    );
    flow.check_end(&status, "ManualPromote").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_restarted_mid_canary_resumes_the_same_stage_and_share() {
    let flow = Flow::serving_v1("e2e-roll-restart", 2, QUERY.into()).await;
    let rollout = progressive(
        20,
        json!({"steps": [{"share": 0.4, "minDuration": "5s"}], "minFeedback": 20}),
    );
    let (id, mut paired, replicas) = flow.reach_canary(rollout, 0.4).await;
    let before = flow.status().await["rollout"].clone();
    let pods: Api<Pod> = Api::namespaced(flow.client.clone(), flow.ns());
    let uids = |list: Vec<Pod>| {
        let mut uids: Vec<String> = list
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.uid())
            .collect();
        uids.sort();
        uids
    };
    let selector = ListParams::default().labels("app.kubernetes.io/component=predictor");
    let predictors = uids(pods.list(&selector).await.unwrap().items);

    let killed = Instant::now();
    let new = flow.operator.kill().await;
    // The new operator exports the rollout's gauges once it has looked at the model.
    let labels = [("namespace", flow.ns()), ("name", MODEL)];
    let canary = [labels[0], labels[1], ("stage", "Canary")];
    let metrics = wait_for(
        DECIDED + Duration::from_secs(30),
        "the new operator's rollout gauges",
        || async {
            let text = flow.operator.metrics().await;
            (sample(&text, "recommender_rollout_stage", &canary) == Some(1.0)).then_some(text)
        },
    )
    .await;
    eprintln!(
        "operator pod {} took over {:.1} s after the kill",
        new.name_any(),
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(
        sample(&metrics, "recommender_rollout_candidate_share", &labels),
        Some(0.4),
        "{metrics}"
    );
    let after = flow.status().await["rollout"].clone();
    for field in [
        "id",
        "stage",
        "step",
        "share",
        "startedAt",
        "stepStartedAt",
        "stepStartFeedback",
    ] {
        assert_eq!(
            after[field], before[field],
            "status.rollout.{field} after the restart"
        );
    }
    // Nothing was rolled: the same predictor pods, with the same config in force.
    assert_eq!(uids(pods.list(&selector).await.unwrap().items), predictors);
    flow.in_force(&id, "canary", 0.4, Duration::from_secs(5))
        .await;

    // And it goes on from there: the step passes on the candidate users' feedback.
    let visits = same_arm_on_every_replica(&replicas, 1..=40, &id, 0.4).await;
    both_arms(&visits);
    rate_suggestions(&replicas[0], &mut paired, &visits, |p, v, item, k| {
        p.rating(Truth::Stable, &v.user, item, pair(k).2)
    })
    .await;
    let status = flow.ended("Promoted", "Passed").await;
    assert_eq!(status["rollout"]["id"].as_str(), Some(id.as_str()));
    flow.check_end(&status, "Passed").await;
}
