//! Ratings from PostgreSQL, streamed row by row from the user's query.
//!
//! The query is wrapped so the server casts ids to text, the rating to float8 and a timestamp
//! column to epoch seconds; any column types the query returns therefore work. The password
//! comes from a file or `PGPASSWORD` and is never logged (neither is the URL, which may hold it).
//! TLS (`--pg-sslmode`, `--pg-ca-file`) is rustls through `recommender-pgtls`, which the
//! operator's database probe uses too.

use std::path::PathBuf;
use std::time::Duration;

use postgres::Config;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use recommender_model::RatingScale;
use recommender_pgtls::{SslMode, connector, describe_error as describe};

use crate::data::{Ratings, RatingsBuilder, Selection};
use crate::error::{Error, Result};

/// The Django app's ratings table.
pub const DEFAULT_QUERY: &str = "SELECT user_id, movie_id, value, created_at FROM ratings_rating";

#[derive(Clone, Debug, Default)]
pub struct PgOptions {
    /// `postgres://user@host:port/db` or a key=value string; the flags below override parts.
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: Option<String>,
    /// Read the password from this file (trailing newline ignored); else `PGPASSWORD`.
    pub password_file: Option<PathBuf>,
    /// TLS; when absent, `require` if the URL's `sslmode` says so, else `disable`.
    pub ssl_mode: Option<SslMode>,
    /// PEM CA bundle the server's certificate must chain to (`verify-full`; the system's roots
    /// when absent).
    pub ca_file: Option<PathBuf>,
    /// Returns user, item, rating and optionally a timestamp.
    pub query: String,
    pub skip_bad_rows: bool,
    pub scale: Option<RatingScale>,
    /// Which ratings to keep; `after` becomes a `WHERE` on the timestamp column, so older rows
    /// never leave the server.
    pub select: Selection,
}

/// Renders a postgres error with its causes; server errors show the server's message, TLS
/// failures say what to fix first.
/// The TLS mode asked for, and the connector that does it.
fn tls(opts: &PgOptions, cfg: &mut Config) -> Result<recommender_pgtls::MakeRustlsConnect> {
    let mode = opts.ssl_mode.unwrap_or(
        if cfg.get_ssl_mode() == postgres::config::SslMode::Require {
            SslMode::Require
        } else {
            SslMode::Disable
        },
    );
    if opts.ca_file.is_some() && mode != SslMode::VerifyFull {
        return Err(Error::Config(format!(
            "--pg-ca-file is used with --pg-sslmode verify-full, not {mode}"
        )));
    }
    let ca = match &opts.ca_file {
        Some(file) => Some(std::fs::read(file).map_err(|e| Error::io(file, e))?),
        None => None,
    };
    cfg.ssl_mode(mode.postgres());
    let what = opts
        .ca_file
        .as_ref()
        .map_or("the system's roots".into(), |f| {
            format!("--pg-ca-file {}", f.display())
        });
    connector(mode, ca.as_deref()).map_err(|e| Error::Config(format!("{what}: {e}")))
}

fn config(opts: &PgOptions) -> Result<Config> {
    let mut cfg = match &opts.url {
        // The URL may carry a password, so it is not echoed in the error.
        Some(url) => url.parse::<Config>().map_err(|e| {
            Error::Config(format!(
                "--pg-url is not a valid connection string: {}",
                describe(&e)
            ))
        })?,
        None => Config::new(),
    };
    if let Some(h) = &opts.host {
        cfg.host(h);
    }
    if let Some(p) = opts.port {
        cfg.port(p);
    }
    if let Some(d) = &opts.database {
        cfg.dbname(d);
    }
    if let Some(u) = &opts.user {
        cfg.user(u);
    }
    if cfg.get_hosts().is_empty() {
        cfg.host("localhost");
    }
    if let Some(file) = &opts.password_file {
        let pw = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        cfg.password(pw.trim_end_matches(['\n', '\r']));
    } else if let Some(pw) = std::env::var_os("PGPASSWORD") {
        cfg.password(pw.to_string_lossy().as_bytes());
    }
    cfg.application_name("recommender-trainer");
    cfg.connect_timeout(Duration::from_secs(30));
    Ok(cfg)
}

/// Builds the casting wrapper around `query` once its result columns are known; `after` keeps
/// only rows with a newer timestamp.
fn wrap(query: &str, columns: &[Type], after: Option<i64>) -> Result<String> {
    let ts = match columns.len() {
        3 if after.is_some() => {
            return Err(Error::Config(
                "--pg-query returns no timestamp column, so ratings cannot be selected by time"
                    .into(),
            ));
        }
        3 => "",
        4 if [Type::TIMESTAMPTZ, Type::TIMESTAMP, Type::DATE].contains(&columns[3]) => {
            ", extract(epoch from q.t)::int8"
        }
        4 => ", q.t::int8",
        n => {
            return Err(Error::Config(format!(
                "--pg-query must return user, item, rating[, timestamp]; it returns {n} column(s)"
            )));
        }
    };
    let aliases = if columns.len() == 4 {
        "u, i, r, t"
    } else {
        "u, i, r"
    };
    // `after` is an integer, so writing it into the text cannot change the statement.
    let filter = after.map_or(String::new(), |t| {
        format!(" WHERE ({}) > {t}", ts.trim_start_matches(", "))
    });
    Ok(format!(
        "SELECT q.u::text, q.i::text, q.r::float8{ts} FROM ({query}) AS q({aliases}){filter}"
    ))
}

/// Connects as `opts` say, over TLS when asked.
pub fn connect(opts: &PgOptions) -> Result<postgres::Client> {
    let mut cfg = config(opts)?;
    let tls = tls(opts, &mut cfg)?;
    let hosts: Vec<String> = cfg.get_hosts().iter().map(|h| format!("{h:?}")).collect();
    tracing::info!(
        hosts = hosts.join(","),
        database = cfg.get_dbname().unwrap_or(""),
        user = cfg.get_user().unwrap_or(""),
        sslmode = opts.ssl_mode.map_or("from the URL", SslMode::as_str),
        "connecting to PostgreSQL"
    );
    cfg.connect(tls)
        .map_err(|e| Error::Postgres(format!("cannot connect: {}", describe(&e))))
}

/// Runs the query and loads its rows.
pub fn load_postgres(opts: &PgOptions) -> Result<Ratings> {
    let mut client = connect(opts)?;
    let inner = opts.query.trim().trim_end_matches(';').trim_end();
    let stmt = client
        .prepare(inner)
        .map_err(|e| Error::Postgres(format!("query rejected: {}", describe(&e))))?;
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    let sql = wrap(inner, &types, opts.select.after)?;
    let mut rows = client
        .query_raw(sql.as_str(), std::iter::empty::<&dyn ToSql>())
        .map_err(|e| Error::Postgres(format!("query failed: {}", describe(&e))))?;

    let source = "PostgreSQL query";
    let mut b = RatingsBuilder::new(opts.scale).select(opts.select);
    let mut row_no = 0u64;
    while let Some(row) = rows
        .next()
        .map_err(|e| Error::Postgres(format!("reading row {}: {}", row_no + 1, describe(&e))))?
    {
        row_no += 1;
        let parsed = (|| -> Result<(), String> {
            let get = |k: usize, what: &str| -> Result<String, String> {
                row.try_get::<_, Option<String>>(k)
                    .map_err(|e| format!("{what}: {e}"))?
                    .ok_or_else(|| format!("{what} is NULL"))
            };
            let user = get(0, "user id")?;
            let item = get(1, "item id")?;
            let rating: f64 = row
                .try_get::<_, Option<f64>>(2)
                .map_err(|e| format!("rating: {e}"))?
                .ok_or("rating is NULL")?;
            let ts: Option<i64> = if row.len() > 3 {
                row.try_get(3).map_err(|e| format!("timestamp: {e}"))?
            } else {
                None
            };
            b.push(&user, &item, rating, ts)
        })();
        if let Err(problem) = parsed {
            if !opts.skip_bad_rows {
                return Err(Error::BadLine {
                    file: source.into(),
                    line: row_no,
                    problem,
                });
            }
            b.skip();
            tracing::warn!(row = row_no, problem, "skipping malformed row");
        }
    }
    let ratings = b.finish(source)?;
    tracing::info!(
        ratings = ratings.triples.len(),
        skipped = ratings.fingerprint.skipped,
        "loaded ratings from PostgreSQL"
    );
    Ok(ratings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_casts_columns() {
        let four = [Type::INT4, Type::INT4, Type::INT2, Type::TIMESTAMPTZ];
        let sql = wrap("SELECT a, b, c, d FROM t", &four, None).unwrap();
        assert!(sql.contains("extract(epoch from q.t)::int8"));
        assert!(sql.ends_with("AS q(u, i, r, t)"));
        let sql = wrap("SELECT a, b, c, d FROM t", &four, Some(890)).unwrap();
        assert!(
            sql.ends_with("AS q(u, i, r, t) WHERE (extract(epoch from q.t)::int8) > 890"),
            "{sql}"
        );
        let three = [Type::TEXT, Type::TEXT, Type::FLOAT8];
        let sql = wrap("SELECT a, b, c FROM t", &three, None).unwrap();
        assert!(sql.ends_with("AS q(u, i, r)"));
        assert!(wrap("SELECT a, b, c FROM t", &three, Some(1)).is_err());
        assert!(wrap("SELECT a, b FROM t", &[Type::TEXT, Type::TEXT], None).is_err());
    }

    #[test]
    fn password_file_wins_and_url_is_not_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let cfg = config(&PgOptions {
            url: Some("postgres://alice@db.example:5433/movies".into()),
            password_file: Some(pw),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cfg.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(cfg.get_dbname(), Some("movies"));
        let err = config(&PgOptions {
            url: Some("postgres://bob:hunter2@host:notaport/db".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn tls_mode_comes_from_the_flag_then_the_url() {
        let mode = |opts: PgOptions| {
            let mut cfg = config(&opts).unwrap();
            tls(&opts, &mut cfg).map(|_| cfg.get_ssl_mode())
        };
        let url = |u: &str| PgOptions {
            url: Some(u.into()),
            ..Default::default()
        };
        use postgres::config::SslMode as Wire;
        assert_eq!(mode(url("postgres://a@h/db")).unwrap(), Wire::Disable);
        assert_eq!(
            mode(url("postgres://a@h/db?sslmode=require")).unwrap(),
            Wire::Require
        );
        let flag = PgOptions {
            ssl_mode: Some(SslMode::Require),
            ..url("postgres://a@h/db?sslmode=disable")
        };
        assert_eq!(mode(flag).unwrap(), Wire::Require, "the flag wins");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("ca.crt");
        std::fs::write(&junk, "not a certificate").unwrap();
        let err = mode(PgOptions {
            ssl_mode: Some(SslMode::VerifyFull),
            ca_file: Some(junk.clone()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ca.crt: the CA bundle holds no PEM certificate"),
            "{err}"
        );
        let err = mode(PgOptions {
            ssl_mode: Some(SslMode::Require),
            ca_file: Some(junk),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--pg-ca-file is used with --pg-sslmode verify-full"),
            "{err}"
        );
    }
}
