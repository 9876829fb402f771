//! Command-line flags and the subcommands.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use recommender_contract::defaults::{BASELINE, FOLDS, SVD};
use recommender_contract::report::{Outcome, TrainingReport};
use recommender_pgtls::SslMode;
use recommender_store::{Sha256, StoreArgs, StoreConfig};
use recommender_trainer::baseline::BaselineParams;
use recommender_trainer::blocked::MAX_FIT_THREADS;
use recommender_trainer::challenge::ChallengeOptions;
use recommender_trainer::cv::CvOptions;
use recommender_trainer::data::{Selection, parse_scale};
use recommender_trainer::generate::{GenerateOptions, generate as write_ratings};
use recommender_trainer::history;
use recommender_trainer::loaders::{FileOptions, Format, parse_columns};
use recommender_trainer::model_store::{self, ModelStore, StoredArtifact};
use recommender_trainer::pg::{DEFAULT_QUERY, PgOptions};
use recommender_trainer::retention::PruneOptions;
use recommender_trainer::run::{Output, RunConfig, Source, run};
use recommender_trainer::score::{ScoreConfig, score};
use recommender_trainer::svd::SvdParams;
use recommender_trainer::{Error, Hyperparameters, kernel};

use crate::progress::Reporter;

mod tuning;
pub use tuning::{TrialArgs, TuneArgs, trial, tune};

/// Trains Surprise-compatible SVD recommenders from rating files or PostgreSQL.
///
/// `train` cross-validates, fits on all the data and writes a model artifact and its run record
/// to the model store (`--store`: the model's folder, a directory or s3://BUCKET/PREFIX);
/// `evaluate` only cross-validates; `tune` searches hyperparameters and `trial` runs one trial of
/// a search; `generate` writes synthetic ratings. A compact JSON report
/// goes to `--report` whether the run succeeds (exit 0) or fails (exit 1).
#[derive(Parser, Debug)]
#[command(name = "recommender-trainer")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Cross-validate, train on all ratings, write the model artifact `<VERSION>.model` and the
    /// run record `runs/<VERSION>.json` to --store, each written once.
    ///
    /// Examples:
    ///   recommender-trainer train --source u.data --store /tmp/movies --version v1
    ///   PGPASSWORD=... recommender-trainer train --source postgres \
    ///       --pg-url postgres://app@db:5432/movies --store /models/movies --version v2
    ///   AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... recommender-trainer train \
    ///       --store s3://models/movies --store-endpoint http://s3:8333 --store-path-style \
    ///       --source store:ratings.csv --version v3
    #[command(verbatim_doc_comment)]
    Train(TrainArgs),
    /// Cross-validate only and print the table (no artifact).
    Evaluate(TrainArgs),
    /// Forward accuracy: predict every rating newer than the model's snapshot (which it never
    /// saw) and report RMSE, MAE and accuracy with the count.
    ///
    /// Example:
    ///   recommender-trainer score --store /models/movies --model v3 --model-sha256 HEX \
    ///       --source postgres --pg-host db --pg-database shop --pg-user reader \
    ///       --pg-query "SELECT ..."
    #[command(verbatim_doc_comment)]
    Score(ScoreArgs),
    /// Write synthetic ratings (`user TAB item TAB rating TAB timestamp`) with a known
    /// low-rank structure, for size and speed tests.
    Generate(GenerateArgs),
    /// Delete a model's runs outside its retention window (the operator's cleanup Jobs).
    ///
    /// Deletes `v<N>.model`, `runs/v<N>.json` and `runs/v<N>.verdict.json` in --store for every
    /// run N up to --through-run whose version is not a --keep, and in a directory a crashed
    /// writer's leftovers of those runs; later runs and other objects are left alone. Prints
    /// each deleted key.
    ///
    /// Example:
    ///   recommender-trainer prune --store /models/movies --through-run 7 --keep v5 --keep v7
    #[command(verbatim_doc_comment)]
    Prune(PruneArgs),
    /// Print the run history kept beside a model's artifacts: one line (or JSON record) per
    /// training run, with hyperparameters, metrics mean ± std, durations, outcome and verdict.
    ///
    /// Examples:
    ///   recommender-trainer history --store /models/movies
    ///   recommender-trainer history --store s3://models/movies --store-endpoint https://s3.example
    #[command(verbatim_doc_comment)]
    History(HistoryArgs),
    /// Run one trial of a search plan (what a trial pod of the operator's Indexed Job runs):
    /// cross-validate `trials[--index]` of --plan on the data and write its result to --report.
    ///
    /// Example:
    ///   JOB_COMPLETION_INDEX=3 recommender-trainer trial --plan /plan/plan.json \
    ///       --source store:ratings.csv --store /models/movies --report /dev/termination-log
    #[command(verbatim_doc_comment)]
    Trial(TrialArgs),
    /// Search hyperparameters here, with the plan the operator's trials follow: a progress bar,
    /// then the table of trials, best first (docs/tuning.md).
    ///
    /// Examples:
    ///   recommender-trainer tune --source u.data --spec search.yaml --out search.json
    ///   recommender-trainer tune --source u.data --param lrAll=0.002..0.02:log \
    ///       --param regAll=0.02,0.05,0.1 --trials 20
    ///   recommender-trainer tune --source u.data --spec search.yaml --warm search.json
    #[command(verbatim_doc_comment)]
    Tune(TuneArgs),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Until the operator passes --store: the model's folder, a directory.
    #[arg(long, conflicts_with = "store", hide = true)]
    pub dir: Option<PathBuf>,
    /// Only artifacts of runs up to this one are deleted.
    #[arg(long)]
    pub through_run: u32,
    /// A version to keep (repeat for each).
    #[arg(long, value_name = "VERSION", value_parser = parse_version)]
    pub keep: Vec<String>,
}

fn parse_version(text: &str) -> Result<String, String> {
    let digits = text.strip_prefix('v').unwrap_or_default();
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_string())
    } else {
        Err(format!("{text:?} is not a version such as v3"))
    }
}

pub fn prune(p: PruneArgs) -> ExitCode {
    let config = match &p.dir {
        Some(dir) => StoreArgs {
            store: Some(absolute(dir).display().to_string()),
            ..StoreArgs::default()
        }
        .config(),
        None => p.store.config(),
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = PruneOptions {
        keep: p.keep.into_iter().collect(),
        through_run: p.through_run,
    };
    match recommender_trainer::retention::prune(config, &opts) {
        Ok(pruned) => {
            for name in &pruned.deleted {
                println!("deleted {name}");
            }
            println!("kept {}", pruned.kept.join(" "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// One JSON record per line instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Algorithm {
    /// Biased matrix factorisation by SGD (Surprise's SVD).
    Svd,
    /// Global mean + user and item biases by ALS (Surprise's BaselineOnly).
    Baseline,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Until the operator passes --store: the artifact's path (its folder is the store, its
    /// name the key; the run record goes to the folder's runs/).
    #[arg(long, conflicts_with = "store", hide = true)]
    pub out: Option<PathBuf>,
    /// Version label stored in the artifact and the report, and the artifact's name in the
    /// store, `<LABEL>.model` [default: derived from the time].
    #[arg(long = "version", value_name = "LABEL")]
    pub version_label: Option<String>,
    /// Where to write the JSON run report.
    #[arg(long, default_value = "/dev/termination-log")]
    pub report: PathBuf,
    /// Print the cross-validation result as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// The operator's verdicts on earlier runs, for the run history:
    /// `v3=Rejected:GateFailed,v4=Succeeded:Promoted`.
    #[arg(long, value_name = "VERSION=OUTCOME:REASON,...")]
    pub verdicts: Option<String>,
    /// The tuning search whose best point this run trains (a `SearchRecord`, as `tune --out`
    /// writes it): kept in the run history as `searches/<VERSION>.json`.
    #[arg(long, value_name = "FILE", requires = "store")]
    pub search_record: Option<PathBuf>,

    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub challenge: ChallengeArgs,
}

/// Where the ratings are: `train`, `evaluate`, `score`, `trial` and `tune` read them alike.
#[derive(Args, Debug)]
pub struct DataArgs {
    /// A ratings file (plain or gzip), `store:KEY` for an object in --store, or the word
    /// `postgres` to read from a database.
    #[arg(long)]
    pub source: String,
    /// The largest `store:KEY` source read, in bytes (compressed, for gzip): it is held in memory
    /// while it is parsed.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_SOURCE_MAX_BYTES)]
    pub source_max_bytes: u64,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub pg: PgArgs,
}

impl DataArgs {
    /// The source, `store:KEY` read from `store`.
    fn source(&self, select: Selection, store: Option<&Arc<ModelStore>>) -> Result<Source, Error> {
        source(
            &self.source,
            &self.file,
            &self.pg,
            select,
            store,
            self.source_max_bytes,
        )
    }
}

/// How a model is cross-validated and on how many threads.
#[derive(Args, Debug)]
#[command(next_help_heading = "Model and evaluation")]
pub struct CvArgs {
    /// Cross-validation folds (at least 2).
    #[arg(long, default_value_t = FOLDS as usize)]
    pub folds: usize,
    /// Worker threads for the folds [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Threads within one SVD fit. 1 trains in Surprise's order and the folds in parallel;
    /// more trains the ratings in blocks on that many threads (LIBMF's scheme, the same model
    /// for the same seed and count) and the folds one after another.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_FIT_THREADS as u64))]
    pub fit_threads: usize,
}

impl CvArgs {
    /// Sizes the worker pool; only the first call in a process can.
    pub fn init_pool(&self) {
        if let Some(n) = self.threads {
            let _ = rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build_global();
        }
    }

    /// Cross-validation with these folds and threads, seeded with `seed`.
    pub fn options(&self, seed: u64) -> CvOptions {
        CvOptions {
            folds: self.folds,
            seed,
            fit_threads: self.fit_threads,
            ..CvOptions::default()
        }
    }
}

#[derive(Args, Debug)]
#[command(next_help_heading = "Champion/challenger (train)")]
pub struct ChallengeArgs {
    /// The serving version (`<VERSION>.model` in --store): compare the candidate with it on the
    /// newest ratings after its snapshot, neither having trained on them (the report's
    /// `challenge`). Without --store, until the operator passes it: the artifact's path.
    #[arg(long, value_name = "VERSION")]
    pub challenge: Option<String>,
    /// The sha256 recorded for the serving version's artifact: other bytes are not compared
    /// with (the report's `challenge.fallback` says why).
    #[arg(long, value_name = "HEX", requires = "challenge", value_parser = parse_sha256)]
    pub challenge_sha256: Option<Sha256>,
    /// The champion's snapshot as epoch seconds [default: the newest rating time in its artifact].
    #[arg(long, value_name = "EPOCH_SECONDS", requires = "challenge")]
    pub challenge_since: Option<i64>,
    /// Share of the ratings after the snapshot, the newest, held out for the comparison; the
    /// challenger trains on the rest.
    #[arg(long, default_value_t = 0.5, requires = "challenge")]
    pub holdout: f64,
    /// Fewest held-out ratings for a paired comparison; with fewer the report says why.
    #[arg(long, default_value_t = 1000, requires = "challenge")]
    pub min_compared: u64,
    /// Confidence of the paired bootstrap interval of the RMSE difference.
    #[arg(long, default_value_t = 0.95, requires = "challenge")]
    pub confidence: f64,
    #[arg(long, default_value_t = 2000, requires = "challenge")]
    pub resamples: u32,
}

impl ChallengeArgs {
    fn options(
        &self,
        seed: u64,
        store: Option<&Arc<ModelStore>>,
    ) -> Result<Option<ChallengeOptions>, Error> {
        let Some(champion) = &self.challenge else {
            return Ok(None);
        };
        let champion = stored_artifact(champion, self.challenge_sha256, store)?;
        if !(self.holdout > 0.0 && self.holdout <= 1.0) {
            return Err(Error::Config(format!(
                "--holdout must be in (0, 1], got {}",
                self.holdout
            )));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(Error::Config(format!(
                "--confidence must be in (0, 1), got {}",
                self.confidence
            )));
        }
        Ok(Some(ChallengeOptions {
            champion,
            since: self.challenge_since,
            holdout: self.holdout,
            min_ratings: self.min_compared,
            confidence: self.confidence,
            resamples: self.resamples,
            seed,
        }))
    }
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// The version to score (`<VERSION>.model` in --store). Without --store, until the operator
    /// passes it: the artifact's path.
    #[arg(long, value_name = "VERSION")]
    pub model: String,
    /// The sha256 recorded for the version's artifact: other bytes are refused (reason
    /// StoreCorrupt).
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    pub model_sha256: Option<Sha256>,
    /// Score ratings newer than this (epoch seconds) [default: the newest rating time in the
    /// artifact, i.e. everything the model never saw].
    #[arg(long, value_name = "EPOCH_SECONDS")]
    pub since: Option<i64>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Where to write the JSON run report.
    #[arg(long, default_value = "/dev/termination-log")]
    pub report: PathBuf,
}

#[derive(Args, Debug)]
#[command(next_help_heading = "Rating files")]
pub struct FileArgs {
    /// File layout; `auto` looks at the first line.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Field separator for `--format delimited` (default `,`; `\t` for tab).
    #[arg(long)]
    pub delimiter: Option<String>,
    /// The first line of a delimited file names the columns.
    #[arg(long)]
    pub header: bool,
    /// Which columns hold user,item,rating[,timestamp]: header names or 0-based indices.
    #[arg(long, value_name = "USER,ITEM,RATING[,TS]")]
    pub columns: Option<String>,
    /// Skip malformed lines (or rows) instead of failing; the count is reported.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Rating scale LO,HI for clipping predictions [default: min and max in the data].
    #[arg(long, value_name = "LO,HI")]
    pub rating_scale: Option<String>,
}

#[derive(Args, Debug)]
#[command(next_help_heading = "PostgreSQL (with --source postgres)")]
pub struct PgArgs {
    /// Connection URL, e.g. postgres://user@host:5432/db (put the password elsewhere).
    #[arg(long)]
    pub pg_url: Option<String>,
    #[arg(long)]
    pub pg_host: Option<String>,
    #[arg(long)]
    pub pg_port: Option<u16>,
    #[arg(long)]
    pub pg_database: Option<String>,
    #[arg(long)]
    pub pg_user: Option<String>,
    /// File holding the password; otherwise the PGPASSWORD environment variable is used.
    #[arg(long)]
    pub pg_password_file: Option<PathBuf>,
    /// Query returning user, item, rating[, timestamp].
    #[arg(long, default_value = DEFAULT_QUERY)]
    pub pg_query: String,
    /// TLS: disable, require (encrypted, certificate not checked) or verify-full (the
    /// certificate must chain to --pg-ca-file, or the system's roots, and name the host)
    /// [default: require if the URL's sslmode says so, else disable].
    #[arg(long, value_name = "MODE")]
    pub pg_sslmode: Option<SslMode>,
    /// PEM CA bundle for --pg-sslmode verify-full.
    #[arg(long, value_name = "FILE")]
    pub pg_ca_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(next_help_heading = "Model and evaluation")]
pub struct ModelArgs {
    #[arg(long, value_enum, default_value_t = Algorithm::Svd)]
    pub algorithm: Algorithm,
    #[command(flatten)]
    pub cv: CvArgs,
    /// Seeds the fold shuffle and the factor initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Test ratings at or above this count as relevant for precision/recall/NDCG@10.
    #[arg(long, default_value_t = 4.0)]
    pub relevance_threshold: f64,
    /// Users per fold whose top-10 lists are scored (seeded sample; 0 = all).
    #[arg(long, default_value_t = 2000)]
    pub ranking_users: usize,

    /// SVD: number of latent factors.
    #[arg(long, default_value_t = SVD.factors as usize)]
    pub factors: usize,
    /// SVD and baseline: passes over the training data [default: 20 for svd, 10 for baseline].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// SVD: learning rate of every parameter (overridden by --lr-bu etc.).
    #[arg(long, default_value_t = SVD.lr_all)]
    pub lr_all: f64,
    /// SVD: regularisation of every parameter (overridden by --reg-bu etc.).
    #[arg(long, default_value_t = SVD.reg_all)]
    pub reg_all: f64,
    /// SVD: mean of the initial factors.
    #[arg(long, default_value_t = SVD.init_mean)]
    pub init_mean: f64,
    /// SVD: standard deviation of the initial factors.
    #[arg(long, default_value_t = SVD.init_std)]
    pub init_std: f64,
    /// SVD: use the global mean and biases (false = pure factorisation).
    #[arg(long, default_value_t = SVD.biased, action = clap::ArgAction::Set)]
    pub biased: bool,
    #[arg(long)]
    pub lr_bu: Option<f64>,
    #[arg(long)]
    pub lr_bi: Option<f64>,
    #[arg(long)]
    pub lr_pu: Option<f64>,
    #[arg(long)]
    pub lr_qi: Option<f64>,
    #[arg(long)]
    pub reg_bu: Option<f64>,
    #[arg(long)]
    pub reg_bi: Option<f64>,
    #[arg(long)]
    pub reg_pu: Option<f64>,
    #[arg(long)]
    pub reg_qi: Option<f64>,
    /// Baseline: item bias regularisation.
    #[arg(long, default_value_t = BASELINE.reg_i)]
    pub reg_i: f64,
    /// Baseline: user bias regularisation.
    #[arg(long, default_value_t = BASELINE.reg_u)]
    pub reg_u: f64,
}

impl ModelArgs {
    fn hyperparameters(&self) -> Hyperparameters {
        match self.algorithm {
            Algorithm::Svd => Hyperparameters::Svd(SvdParams {
                n_factors: self.factors,
                n_epochs: self.epochs.unwrap_or(SVD.epochs as usize),
                biased: self.biased,
                init_mean: self.init_mean,
                init_std: self.init_std,
                lr_bu: self.lr_bu.unwrap_or(self.lr_all),
                lr_bi: self.lr_bi.unwrap_or(self.lr_all),
                lr_pu: self.lr_pu.unwrap_or(self.lr_all),
                lr_qi: self.lr_qi.unwrap_or(self.lr_all),
                reg_bu: self.reg_bu.unwrap_or(self.reg_all),
                reg_bi: self.reg_bi.unwrap_or(self.reg_all),
                reg_pu: self.reg_pu.unwrap_or(self.reg_all),
                reg_qi: self.reg_qi.unwrap_or(self.reg_all),
                seed: self.seed,
            }),
            Algorithm::Baseline => Hyperparameters::Baseline(BaselineParams {
                n_epochs: self.epochs.unwrap_or(BASELINE.epochs as usize),
                reg_i: self.reg_i,
                reg_u: self.reg_u,
            }),
        }
    }
}

/// A `store:KEY` source is read whole into memory: at most this many bytes by default.
const DEFAULT_SOURCE_MAX_BYTES: u64 = 2 << 30;

/// Where the ratings are. `store` is the model store, for `store:KEY`; `limit` bounds that read.
fn source(
    name: &str,
    file: &FileArgs,
    pg: &PgArgs,
    select: Selection,
    store: Option<&Arc<ModelStore>>,
    limit: u64,
) -> Result<Source, Error> {
    let scale = file.rating_scale.as_deref().map(parse_scale).transpose()?;
    let file_options = || -> Result<FileOptions, Error> {
        Ok(FileOptions {
            format: file.format,
            // A literal tab is awkward to type in a manifest, so `\t` means tab.
            delimiter: file.delimiter.as_deref().map(|d| d.replace("\\t", "\t")),
            header: file.header,
            columns: file.columns.as_deref().map(parse_columns).transpose()?,
            skip_bad_lines: file.skip_bad_lines,
            scale,
            select,
        })
    };
    if let Some(key) = name.strip_prefix("store:") {
        let store = store.ok_or_else(|| {
            Error::Config(format!(
                "--source {name:?} is an object in the model store: give --store"
            ))
        })?;
        return Ok(Source::Stored {
            store: Arc::clone(store),
            key: key.to_string(),
            limit,
            opts: file_options()?,
        });
    }
    Ok(if name == "postgres" {
        Source::Postgres(PgOptions {
            url: pg.pg_url.clone(),
            host: pg.pg_host.clone(),
            port: pg.pg_port,
            database: pg.pg_database.clone(),
            user: pg.pg_user.clone(),
            password_file: pg.pg_password_file.clone(),
            ssl_mode: pg.pg_sslmode,
            ca_file: pg.pg_ca_file.clone(),
            query: pg.pg_query.clone(),
            skip_bad_rows: file.skip_bad_lines,
            scale,
            select,
        })
    } else {
        Source::File(PathBuf::from(name), file_options()?)
    })
}

fn parse_sha256(text: &str) -> Result<Sha256, String> {
    text.parse()
}

/// `path` made absolute against the working directory, as a directory store needs.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The directory store holding the file at `path`, and the file's name as its key: how the
/// artifact paths the operator passes today map onto the store.
fn folder_of(path: &Path) -> Result<(StoreConfig, String), Error> {
    let path = absolute(path);
    let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Config(format!(
            "{} is not a file's path",
            path.display()
        )));
    };
    let config = StoreConfig::Local {
        root: folder.to_path_buf(),
    };
    Ok((config, name.to_string_lossy().into_owned()))
}

/// The store `--store` names, opened; `None` without the flag. `create` makes a directory
/// store's folder (a model's first version).
fn open_store(args: &StoreArgs, create: bool) -> Result<Option<Arc<ModelStore>>, Error> {
    if args.store.is_none() {
        return Ok(None);
    }
    let config = args.config().map_err(recommender_store::StoreError::from)?;
    let open = if create {
        ModelStore::create
    } else {
        ModelStore::open
    };
    open(config).map(Some)
}

/// A version's artifact in `store`, or, without a store, the artifact at the path `model`.
fn stored_artifact(
    model: &str,
    sha256: Option<Sha256>,
    store: Option<&Arc<ModelStore>>,
) -> Result<StoredArtifact, Error> {
    let (store, key) = match store {
        Some(store) => {
            model_store::check_version(model)?;
            (Arc::clone(store), model_store::artifact_key(model))
        }
        None => {
            let (config, key) = folder_of(Path::new(model))?;
            (ModelStore::open(config)?, key)
        }
    };
    Ok(StoredArtifact { store, key, sha256 })
}

fn config(a: &TrainArgs, write: bool) -> Result<RunConfig, Error> {
    let version = a.version_label.clone().unwrap_or_else(|| {
        jiff::Timestamp::now()
            .strftime("t%Y%m%dT%H%M%SZ")
            .to_string()
    });
    let store = open_store(&a.data.store, write)?;
    let output = match (&a.out, &store) {
        _ if !write => None,
        (Some(out), _) => {
            let (config, artifact) = folder_of(out)?;
            Some(Output {
                store: ModelStore::create(config)?,
                artifact,
            })
        }
        (None, Some(store)) => {
            model_store::check_version(&version)?;
            Some(Output {
                store: Arc::clone(store),
                artifact: model_store::artifact_key(&version),
            })
        }
        (None, None) => {
            return Err(Error::Config(
                "`train` needs --store (the model's folder: a directory or s3://BUCKET/PREFIX) for the artifact (or use `evaluate`)".into(),
            ));
        }
    };
    let challenge = a.challenge.options(a.model.seed, store.as_ref())?;
    // A comparison splits the ratings by time, so it needs their times.
    let select = Selection {
        after: None,
        timestamps: challenge.is_some(),
    };
    let source = a.data.source(select, store.as_ref())?;
    a.model.cv.init_pool();
    let verdicts = a
        .verdicts
        .as_deref()
        .map(history::parse_verdicts)
        .transpose()?
        .unwrap_or_default();
    let search = a
        .search_record
        .as_deref()
        .map(tuning::read_record)
        .transpose()?;
    Ok(RunConfig {
        verdicts,
        search,
        source,
        hyperparameters: a.model.hyperparameters(),
        cv: CvOptions {
            relevance_threshold: a.model.relevance_threshold,
            ranking_users: a.model.ranking_users,
            ..a.model.cv.options(a.model.seed)
        },
        output,
        version,
        challenge,
    })
}

fn write_report(path: &Path, report: &TrainingReport) {
    let json = match report.to_json() {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise the report");
            return;
        }
    };
    if let Err(e) = std::fs::write(path, json) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the report");
    }
}

/// `train` (with `write`) and `evaluate`.
pub fn train(a: TrainArgs, write: bool, tty: bool) -> ExitCode {
    let cfg = match config(&a, write) {
        Ok(c) => c,
        Err(e) => {
            // A usage-level mistake still leaves a report, so the operator can say why.
            let report = failed_report(&a, &e);
            write_report(&a.report, &report);
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        simd = kernel::simd_level(),
        threads = rayon::current_num_threads(),
        "starting"
    );
    let reporter = Reporter::new(tty, cfg.cv.folds, cfg.hyperparameters.epochs());
    let output = run(&cfg, &|p| reporter.report(p));
    reporter.finish();
    write_report(&a.report, &output.report);
    if let Some(cv) = &output.cv {
        if a.json {
            match serde_json::to_string_pretty(cv) {
                Ok(j) => println!("{j}"),
                Err(e) => tracing::error!(error = %e, "cannot print the JSON result"),
            }
        } else {
            println!(
                "{}",
                cv.table(&cfg.hyperparameters.algorithm().to_uppercase())
            );
        }
    }
    match output.report.outcome {
        Outcome::Succeeded => ExitCode::SUCCESS,
        Outcome::Failed => {
            if let Some(e) = &output.report.error {
                eprintln!("error: {}", e.message);
            }
            ExitCode::from(1)
        }
    }
}

fn failed_report(a: &TrainArgs, e: &Error) -> TrainingReport {
    TrainingReport {
        finished_at: jiff::Timestamp::now().to_string(),
        error: Some(e.to_run_error()),
        ..TrainingReport::failed(
            a.version_label.clone().unwrap_or_default(),
            a.model.hyperparameters().algorithm().to_owned(),
        )
    }
}

/// `score`: exit 0 with a report, 1 when scoring failed (the report says why), 2 for usage
/// (with a report too, so the operator can say why).
pub fn score_command(a: ScoreArgs) -> ExitCode {
    let config = open_store(&a.data.store, false).and_then(|store| {
        Ok(ScoreConfig {
            model: stored_artifact(&a.model, a.model_sha256, store.as_ref())?,
            since: a.since,
            source: a.data.source(Selection::default(), store.as_ref())?,
        })
    });
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            let report = TrainingReport {
                finished_at: jiff::Timestamp::now().to_string(),
                error: Some(e.to_run_error()),
                ..TrainingReport::failed(String::new(), String::new())
            };
            write_report(&a.report, &report);
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = score(&config);
    write_report(&a.report, &report);
    match (&report.forward, &report.error) {
        (Some(f), _) => {
            println!(
                "{} ratings after {}: RMSE {:.4}, MAE {:.4}, accuracy {:.4} ({} unknown users, {} unknown items)",
                f.ratings, f.since, f.rmse, f.mae, f.accuracy, f.unknown_users, f.unknown_items
            );
            ExitCode::SUCCESS
        }
        (None, error) => {
            if let Some(e) = error {
                eprintln!("error: {}", e.message);
            }
            ExitCode::from(1)
        }
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[arg(long)]
    pub users: usize,
    #[arg(long)]
    pub items: usize,
    #[arg(long)]
    pub ratings: usize,
    /// Rank of the hidden factor structure.
    #[arg(long, default_value_t = 10)]
    pub rank: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Standard deviation of the noise added before rounding to whole stars.
    #[arg(long, default_value_t = 0.5)]
    pub noise: f64,
    /// Output file (`-` for stdout); a `.gz` name is gzip-compressed.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn generate(g: GenerateArgs) -> ExitCode {
    let opts = GenerateOptions {
        users: g.users,
        items: g.items,
        ratings: g.ratings,
        rank: g.rank,
        seed: g.seed,
        noise: g.noise,
    };
    let result = (|| -> Result<(), Error> {
        if g.out.as_os_str() == "-" {
            return write_ratings(&opts, &mut BufWriter::new(std::io::stdout().lock()));
        }
        let f = File::create(&g.out).map_err(|e| Error::Io {
            path: g.out.clone(),
            source: e,
        })?;
        if g.out.extension().is_some_and(|e| e == "gz") {
            let mut gz =
                flate2::write::GzEncoder::new(BufWriter::new(f), flate2::Compression::fast());
            write_ratings(&opts, &mut gz)?;
            gz.finish()
                .and_then(|mut w| w.flush())
                .map_err(|e| Error::Io {
                    path: g.out.clone(),
                    source: e,
                })
        } else {
            write_ratings(&opts, &mut BufWriter::new(f))
        }
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `history`: the run records of one model, as a table or JSON lines.
pub fn history(a: HistoryArgs) -> ExitCode {
    let records = open_store(&a.store, false).and_then(|store| match store {
        Some(store) => history::read(&store),
        None => Err(Error::Config(
            "--store is required (the model's folder: a directory or s3://BUCKET/PREFIX)".into(),
        )),
    });
    let records = match records {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if a.json {
        for r in &records {
            match serde_json::to_string(r) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    } else {
        print!("{}", history::table(&records));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parsed(extra: &[&str]) -> ModelArgs {
        let args = ["recommender-trainer", "evaluate", "--source", "x.csv"];
        match Cli::try_parse_from(args.iter().chain(extra))
            .unwrap()
            .command
        {
            Command::Evaluate(a) => a.model,
            other => panic!("parsed {other:?}"),
        }
    }

    /// A flag left out trains what the table says, which is also what the operator and the CRD
    /// assume.
    #[test]
    fn parsed_defaults_are_the_table() {
        let svd = parsed(&[]);
        assert_eq!(svd.cv.folds, FOLDS as usize);
        let Hyperparameters::Svd(p) = svd.hyperparameters() else {
            panic!("svd is the default algorithm");
        };
        assert_eq!(
            (p.n_factors, p.n_epochs),
            (SVD.factors as usize, SVD.epochs as usize)
        );
        assert_eq!(
            (p.biased, p.init_mean, p.init_std),
            (SVD.biased, SVD.init_mean, SVD.init_std)
        );
        assert!(
            [p.lr_bu, p.lr_bi, p.lr_pu, p.lr_qi]
                .iter()
                .all(|&lr| lr == SVD.lr_all)
        );
        assert!(
            [p.reg_bu, p.reg_bi, p.reg_pu, p.reg_qi]
                .iter()
                .all(|&r| r == SVD.reg_all)
        );
        assert_eq!(p, SvdParams::default());

        let baseline = parsed(&["--algorithm", "baseline"]);
        assert_eq!(baseline.cv.folds, FOLDS as usize);
        let Hyperparameters::Baseline(p) = baseline.hyperparameters() else {
            panic!("asked for baseline");
        };
        assert_eq!(p.n_epochs, BASELINE.epochs as usize);
        assert_eq!((p.reg_i, p.reg_u), (BASELINE.reg_i, BASELINE.reg_u));
        assert_eq!(p, BaselineParams::default());
    }

    #[test]
    fn prune_takes_versions_only() {
        let parse = |args: &[&str]| {
            let base = [
                "recommender-trainer",
                "prune",
                "--store",
                "/models/m",
                "--through-run",
                "4",
            ];
            Cli::try_parse_from(base.iter().chain(args))
        };
        match parse(&["--keep", "v2", "--keep", "v4"]).unwrap().command {
            Command::Prune(p) => {
                assert_eq!((p.through_run, p.keep), (4, vec!["v2".into(), "v4".into()]))
            }
            other => panic!("parsed {other:?}"),
        }
        let err = parse(&["--keep", "latest"]).unwrap_err().to_string();
        assert!(
            err.contains("\"latest\" is not a version such as v3"),
            "{err}"
        );
    }

    /// The epochs default differs per algorithm, so clap cannot show it; the help text says it
    /// and must say the table's numbers.
    #[test]
    fn help_states_the_table_epochs() {
        let cmd = Cli::command();
        let epochs = cmd
            .find_subcommand("train")
            .and_then(|train| train.get_arguments().find(|a| a.get_id() == "epochs"))
            .unwrap();
        let help = epochs.get_help().unwrap().to_string();
        let said = format!("{} for svd, {} for baseline", SVD.epochs, BASELINE.epochs);
        assert!(help.contains(&said), "{help}");
    }
}
