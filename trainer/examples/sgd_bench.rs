//! Nanoseconds per SGD update: Surprise's default `SVD()` fitted on all of a ratings file
//! (MovieLens 100k by default) at 50, 100 and 200 factors, one thread.
//!
//!   cargo run --release -p recommender-trainer --example sgd_bench -- [FILE] [REPS] [FACTORS...]
//!
//! Each fit's epochs are timed one by one from the training loop's per-epoch callback, so the
//! figure is the update loop alone (no loading, grouping or initialisation); an update is one
//! rating of one epoch. The minimum over every epoch of every repetition is the least disturbed
//! by other processes on a shared machine; the median is printed beside it. The checksum of the
//! fitted model's bits shows whether two builds (or vector units, `RECOMMENDER_NO_SIMD=1`) train
//! the same model. Prints a Markdown table.

use std::path::PathBuf;
use std::time::Instant;

use sha2::{Digest, Sha256};

use recommender_trainer::Hyperparameters;
use recommender_trainer::Model;
use recommender_trainer::kernel::simd_level;
use recommender_trainer::loaders::{FileOptions, Format, load_file};
use recommender_trainer::svd::SvdParams;
use recommender_trainer::train::fit_model;

const FACTORS: [usize; 3] = [50, 100, 200];

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/ml-100k/u.data")
    });
    let reps: usize = args
        .next()
        .map_or(5, |r| r.parse().expect("REPS: a number"));
    let factors: Vec<usize> = args.map(|k| k.parse().expect("FACTORS: numbers")).collect();
    let factors = if factors.is_empty() {
        FACTORS.to_vec()
    } else {
        factors
    };
    let opts = FileOptions {
        format: Format::Auto,
        ..FileOptions::default()
    };
    let data = load_file(&path, &opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = data.triples.len();
    println!(
        "{} ratings ({} users x {} items) from {}, vector unit {}, {reps} fit(s) of 20 epochs per row\n",
        n,
        data.users.len(),
        data.items.len(),
        path.display(),
        simd_level()
    );
    println!("| factors | ns per update (min) | ns per update (median) | model checksum |");
    println!("|---|---|---|---|");
    for k in factors {
        let hp = Hyperparameters::Svd(SvdParams {
            n_factors: k,
            ..SvdParams::default()
        });
        let mut epochs: Vec<f64> = Vec::new();
        let mut sums = Vec::new();
        for _ in 0..reps {
            let mut last: Option<Instant> = None;
            // The first callback comes after the first epoch, whose start is not observed:
            // only the intervals between callbacks are epochs alone.
            let model = fit_model(&data, &hp, &mut |_| {
                let now = Instant::now();
                if let Some(t) = last {
                    epochs.push((now - t).as_secs_f64());
                }
                last = Some(now);
            })
            .expect("fit");
            sums.push(checksum(&model));
        }
        sums.dedup();
        assert_eq!(sums.len(), 1, "fits with the same seed differ");
        epochs.sort_by(f64::total_cmp);
        let ns = |s: f64| s * 1e9 / n as f64;
        println!(
            "| {k} | {:.1} | {:.1} | {} |",
            ns(epochs[0]),
            ns(epochs[epochs.len() / 2]),
            sums[0]
        );
    }
}

/// The first 16 hex digits of SHA-256 over the bits of every trained parameter.
fn checksum(m: &Model) -> String {
    let f = &m.factors;
    let mut h = Sha256::new();
    let params = [&f.user_bias[..], &f.item_bias[..]].into_iter().chain([
        f.user_factors.as_slice().expect("standard layout"),
        f.item_factors.as_slice().expect("standard layout"),
    ]);
    for v in params.flatten() {
        h.update(v.to_bits().to_le_bytes());
    }
    hex::encode(h.finalize())[..16].to_owned()
}
