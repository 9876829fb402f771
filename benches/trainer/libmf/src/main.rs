//! LIBMF's best setting of a small grid, cross-validated on exactly the folds
//! `recommender-trainer` uses (the same shuffle, seed and fold boundaries), so
//! `benches/trainer/tune.sh` can put the two side by side in one run.
//!
//! ```text
//! recommender-bench-libmf FILE [--folds 4] [--seed 1] [--threads 2]
//! ```
//!
//! Prints one line per grid point (factors, λ, η, iterations: RMSE, MAE, seconds) and the best.
//! LIBMF has no biases; a rating whose user or item the fold's training set lacks is predicted as
//! the training mean (LIBMF's own `bias`), and every prediction is clipped to the rating scale, as
//! the trainer does.

use std::process::ExitCode;
use std::time::Instant;

use recommender_trainer::cv::{fold_bounds, permutation};
use recommender_trainer::loaders::{FileOptions, load_file};

/// Factors, L2 regularisation (on P and Q), learning rate, iterations.
const GRID: &[(i32, f32, f32, i32)] = &[
    (50, 0.05, 0.1, 20),
    (50, 0.1, 0.1, 20),
    (100, 0.05, 0.1, 20),
    (100, 0.1, 0.1, 20),
    (100, 0.1, 0.05, 40),
    (100, 0.15, 0.1, 20),
    (200, 0.1, 0.1, 20),
    (200, 0.1, 0.05, 40),
];

struct Args {
    file: String,
    folds: usize,
    seed: u64,
    threads: i32,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        file: String::new(),
        folds: 4,
        seed: 1,
        threads: 2,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .and_then(|v| v.parse::<u64>().map_err(|e| format!("{name} {v}: {e}")))
        };
        match arg.as_str() {
            "--folds" => a.folds = value("--folds")? as usize,
            "--seed" => a.seed = value("--seed")?,
            "--threads" => a.threads = value("--threads")? as i32,
            _ if a.file.is_empty() && !arg.starts_with("--") => a.file = arg,
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if a.file.is_empty() || a.folds < 2 {
        return Err(
            "usage: recommender-bench-libmf FILE [--folds N>=2] [--seed S] [--threads T]".into(),
        );
    }
    Ok(a)
}

fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let data = match load_file(std::path::Path::new(&a.file), &FileOptions::default()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let n = data.triples.len();
    let perm = permutation(n, a.seed);
    let bounds = fold_bounds(n, a.folds);
    let wall = Instant::now();
    let mut best: Option<(f64, String)> = None;
    println!("factors lambda eta iterations   RMSE     MAE  seconds");
    for &(factors, lambda, eta, iterations) in GRID {
        let t = Instant::now();
        let (mut se, mut ae) = (0f64, 0f64);
        for test in &bounds {
            let mut train = libmf::Matrix::new();
            let mut user_known = vec![false; data.users.len()];
            let mut item_known = vec![false; data.items.len()];
            for &j in perm[..test.start].iter().chain(&perm[test.end..]) {
                let r = data.triples[j as usize];
                train.push(r.user as i32, r.item as i32, r.rating);
                user_known[r.user as usize] = true;
                item_known[r.item as usize] = true;
            }
            let model = match libmf::Model::params()
                .factors(factors)
                .lambda_p2(lambda)
                .lambda_q2(lambda)
                .learning_rate(eta)
                .iterations(iterations)
                .threads(a.threads)
                .quiet(true)
                .fit(&train)
            {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("error: LIBMF: {e:?}");
                    return ExitCode::from(1);
                }
            };
            for &j in &perm[test.clone()] {
                let r = data.triples[j as usize];
                let known = user_known[r.user as usize] && item_known[r.item as usize];
                let est = if known {
                    model.predict(r.user as i32, r.item as i32)
                } else {
                    model.bias()
                };
                let e = r.rating as f64 - data.scale.clip(est as f64);
                se += e * e;
                ae += e.abs();
            }
        }
        let rmse = (se / n as f64).sqrt();
        let mae = ae / n as f64;
        let line = format!(
            "{factors:>7} {lambda:>6} {eta:>4} {iterations:>10} {rmse:>7.4} {mae:>7.4} {:>8.2}",
            t.elapsed().as_secs_f64()
        );
        println!("{line}");
        if best.as_ref().is_none_or(|(b, _)| rmse < *b) {
            best = Some((rmse, line));
        }
    }
    if let Some((_, line)) = best {
        println!("best: {}", line.trim());
    }
    println!("wall: {:.2} s", wall.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
