//! Ranking speed on synthetic models (100 factors): live top-10 latency for one user against the
//! catalogue size, the reference path it replaced, and the block kernel against sgemm
//! (matrixmultiply, through ndarray) for many users.
//!
//!   cargo run --release -p recommender-model --features fixtures --example rank_bench [REQUESTS]
//!
//! Prints Markdown tables. Latency is of `Model::recommend_ranked` (what the predictor's handler
//! calls for a request its precomputed lists cannot answer), without HTTP or JSON.

use std::hint::black_box;
use std::time::Instant;

use ndarray::{Array2, linalg::general_mat_mul};
use recommender_model::fixtures::{self, Shape};
use recommender_model::{Model, Query, Ranker, best_of, simd};

const K: usize = 100;
const USERS: usize = 2000;
const RATED: u32 = 20;
/// A catalogue just big enough to ask the ranker which precision this CPU gets.
const WIDTH_PROBE: usize = 64;

fn model(items: usize) -> Model {
    let rated = (0..USERS as u32).flat_map(move |u| {
        (0..RATED).map(move |r| {
            (
                u,
                (u.wrapping_mul(2_654_435_761) ^ (r * 7919)) % items as u32,
            )
        })
    });
    let shape = Shape {
        users: USERS,
        items,
        factors: K,
        seed: 7,
    };
    fixtures::model(shape, rated)
}

/// What the predictor ranked with before: every item's score, then the best ten.
fn reference(m: &Model, user: u32, n: usize) -> Vec<(u32, f64)> {
    let f = &m.factors;
    let mut scores = vec![0f32; f.n_items()];
    let base = f.global_mean as f32 + f.user_bias[user as usize];
    let rows = f.item_factors.as_slice().unwrap();
    simd::scores(
        f.user_factors.row(user as usize).as_slice().unwrap(),
        rows,
        K,
        &f.item_bias,
        base,
        &mut scores,
    );
    best_of(scores, m.rated.of(user), n)
        .into_iter()
        .map(|(i, _)| (i, m.predict_indices(Some(user), Some(i))))
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// p50 and p99 in microseconds of `run(user)` over `requests` users in a fixed pseudo-random order.
fn latency(requests: usize, mut run: impl FnMut(u32)) -> (f64, f64) {
    let mut times = Vec::with_capacity(requests);
    for r in 0..requests {
        let user = (r as u32).wrapping_mul(40_503) % USERS as u32;
        let t = Instant::now();
        run(user);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

fn live_curve(requests: usize) {
    println!("| items | ranker p50 µs | ranker p99 µs | reference p50 µs | reference p99 µs |");
    println!("|---|---|---|---|---|");
    for items in [2_000, 5_000, 10_000, 20_000, 40_000, 60_000, 100_000] {
        let m = model(items);
        let ranker = Ranker::new(&m.factors);
        for u in 0..50 {
            assert_eq!(
                m.recommend_ranked(&ranker, Some(u), 10),
                reference(&m, u, 10)
            );
        }
        let (p50, p99) = latency(requests, |u| {
            black_box(m.recommend_ranked(&ranker, Some(u), 10));
        });
        let (r50, r99) = latency(requests, |u| {
            black_box(reference(&m, u, 10));
        });
        println!("| {items} | {p50:.0} | {p99:.0} | {r50:.0} | {r99:.0} |");
    }
}

/// Many users at once, as cross-validation ranks them: microseconds per user.
fn block_compare(items: usize) {
    let m = model(items);
    let f = &m.factors;
    let ranker = Ranker::new(f);
    let queries: Vec<Query> = (0..USERS)
        .map(|u| Query {
            user: Some(u),
            exclude: m.rated.of(u as u32),
        })
        .collect();
    let t = Instant::now();
    let ours = ranker.top_n_many(f, &queries, 10);
    let per_user_ours = t.elapsed().as_secs_f64() * 1e6 / USERS as f64;

    // sgemm for blocks of 80 users (a divisor of USERS) against every item, then the same selection per user.
    let block = 80;
    let t = Instant::now();
    let mut sgemm_top = Vec::with_capacity(USERS);
    let mut c = Array2::<f32>::zeros((block, items));
    for start in (0..USERS).step_by(block) {
        let rows = f.user_factors.slice(ndarray::s![start..start + block, ..]);
        general_mat_mul(1.0, &rows, &f.item_factors.t(), 0.0, &mut c);
        for (b, sums) in c.rows().into_iter().enumerate() {
            let u = start + b;
            let base = f.global_mean as f32 + f.user_bias[u];
            let scores: Vec<f32> = sums
                .iter()
                .zip(&f.item_bias)
                .map(|(g, bi)| base + bi + g)
                .collect();
            sgemm_top.push(best_of(scores, m.rated.of(u as u32), 10));
        }
    }
    let per_user_sgemm = t.elapsed().as_secs_f64() * 1e6 / USERS as f64;
    let same = ours
        .iter()
        .zip(&sgemm_top)
        .filter(|(a, b)| a.iter().map(|p| p.0).eq(b.iter().map(|p| p.0)))
        .count();
    println!("| {items} | {per_user_ours:.1} | {per_user_sgemm:.1} | {same} of {USERS} |");
}

fn main() {
    let requests = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let probe = Ranker::new(&model(WIDTH_PROBE).factors);
    println!(
        "SIMD level: {}, block product in {} ({}; RECOMMENDER_RANK_AMX=0 turns AMX off); {K} \
         factors, {USERS} users, {RATED} rated items each.\n",
        simd::simd_level(),
        probe.precision(),
        probe.kernel()
    );
    println!("### Live top-10 for one user ({requests} requests per size)\n");
    live_curve(requests);
    println!("\n### Top-10 for {USERS} users at once: µs per user\n");
    println!(
        "| items | ranker (blocks of 64) | sgemm (matrixmultiply, blocks of 80) + best_of | same lists |"
    );
    println!("|---|---|---|---|");
    for items in [1_682, 10_000, 60_000] {
        block_compare(items);
    }
}
