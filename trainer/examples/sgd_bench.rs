//! Nanoseconds per SGD update: Surprise's default `SVD()` fitted on all of a ratings file
//! (MovieLens 100k by default) at 50, 100 and 200 factors, and the speed-up of a fit on several
//! threads (`--fit-threads`) over one.
//!
//!   cargo run --release -p recommender-trainer --example sgd_bench -- [FILE] [--reps N]
//!       [--factors 50,100,200] [--fit-threads 1,2] [--epochs 20]
//!
//! Each fit's epochs are timed one by one from the training loop's per-epoch callback, so the
//! figure is the update loop alone (no loading, grouping or initialisation); an update is one
//! rating of one epoch, and on several threads the figure is wall time over all updates. The
//! minimum over every epoch of every repetition is the least disturbed by other processes on a
//! shared machine; the median is printed beside it. On Linux the process's time on a CPU is shown
//! too (all its threads, `CLOCK_PROCESS_CPUTIME_ID`): it leaves out the time other processes
//! held the cores, though not what they did to the caches. The checksum of the fitted model's
//! bits
//! shows whether two builds (or vector units, `RECOMMENDER_NO_SIMD=1`) train the same model.
//! Prints a Markdown table.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use recommender_trainer::kernel::simd_level;
use recommender_trainer::loaders::{FileOptions, Format, load_file};
use recommender_trainer::svd::SvdParams;
use recommender_trainer::train::fit_model;
use recommender_trainer::{Hyperparameters, Model};
use sha2::{Digest, Sha256};

#[derive(Parser)]
struct Args {
    /// Ratings in any format the trainer loads [default: ../shared/datasets/ml-100k/u.data
    /// next to the repository].
    #[arg(env = "ML100K")]
    file: Option<PathBuf>,
    /// Fits per row of the table.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    #[arg(long, value_delimiter = ',', default_value = "50,100,200")]
    factors: Vec<usize>,
    /// Threads within each fit; rows above 1 also show the speed-up over the first count.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    fit_threads: Vec<usize>,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
}

fn main() {
    let args = Args::parse();
    let path = args.file.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/ml-100k/u.data")
    });
    let opts = FileOptions {
        format: Format::Auto,
        ..FileOptions::default()
    };
    let data = load_file(&path, &opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = data.triples.len();
    println!(
        "{n} ratings ({} users x {} items) from {}, vector unit {}, {} fit(s) of {} epochs per row, \
         rayon pool of {} thread(s)\n",
        data.users.len(),
        data.items.len(),
        path.display(),
        simd_level(),
        args.reps,
        args.epochs,
        rayon::current_num_threads()
    );
    println!(
        "| factors | fit threads | ns per update (min) | ns per update (median) | speed-up (min) | on-CPU ns per update (min) | model checksum |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &k in &args.factors {
        let hp = Hyperparameters::Svd(SvdParams {
            n_factors: k,
            n_epochs: args.epochs,
            ..SvdParams::default()
        });
        let mut first: Option<f64> = None;
        for &threads in &args.fit_threads {
            let mut epochs: Vec<f64> = Vec::new();
            let mut on_cpu: Vec<f64> = Vec::new();
            let mut sums = Vec::new();
            for _ in 0..args.reps {
                let mut last: Option<(Instant, Option<u64>)> = None;
                // The first callback comes after the first epoch, whose start is not observed:
                // only the intervals between callbacks are epochs alone.
                let model = fit_model(&data, &hp, threads, &mut |_| {
                    let now = (Instant::now(), cpu_ns());
                    if let Some((t, cpu)) = last {
                        epochs.push((now.0 - t).as_secs_f64());
                        if let (Some(a), Some(b)) = (cpu, now.1) {
                            on_cpu.push((b - a) as f64 * 1e-9);
                        }
                    }
                    last = Some(now);
                })
                .expect("fit");
                sums.push(checksum(&model));
            }
            sums.dedup();
            assert_eq!(sums.len(), 1, "fits with the same seed differ");
            epochs.sort_by(f64::total_cmp);
            let cpu = on_cpu
                .iter()
                .copied()
                .min_by(f64::total_cmp)
                .map_or("n/a".to_owned(), |s| format!("{:.1}", s * 1e9 / n as f64));
            let ns = |s: f64| s * 1e9 / n as f64;
            let min = epochs[0];
            let speed_up = first.map_or("1.00x".to_owned(), |f| format!("{:.2}x", f / min));
            first.get_or_insert(min);
            println!(
                "| {k} | {threads} | {:.1} | {:.1} | {speed_up} | {cpu} | {} |",
                ns(min),
                ns(epochs[epochs.len() / 2]),
                sums[0]
            );
        }
    }
}

/// Nanoseconds all of this process's threads have spent on a CPU.
fn cpu_ns() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: the call only writes the timespec it is given.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
            return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
        }
    }
    None
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
