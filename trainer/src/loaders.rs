//! Rating files: MovieLens 100k / 1M / 10M / latest and generic delimited text, plain or gzip.
//!
//! Every format is a delimited layout (delimiter, header or not, which column holds what), so
//! one parser serves all of them and reports errors the same way: file, 1-based line, problem.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use recommender_model::RatingScale;

use crate::data::{Ratings, RatingsBuilder, Selection};
use crate::error::{Error, Result};

/// Which layout a file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Guess from the first line.
    Auto,
    /// `u.data`: `user TAB item TAB rating TAB timestamp`.
    #[value(name = "ml-100k")]
    Ml100k,
    /// `ratings.dat` of ML-1M / ML-10M: `user::item::rating::timestamp`.
    #[value(name = "ml-1m")]
    Ml1m,
    /// `ratings.csv` of ML-latest / ML-25M: header `userId,movieId,rating,timestamp`.
    #[value(name = "ml-latest")]
    MlLatest,
    /// Any delimited text; see `--delimiter`, `--header`, `--columns`.
    Delimited,
}

/// A column picked by 0-based index or by header name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    Index(usize),
    Name(String),
}

/// The largest 0-based column index `--columns` accepts. Lines are split into at most this many
/// fields plus one, so the count of fields a line needs can never overflow; no ratings export
/// puts its ratings that far to the right.
pub const MAX_COLUMN_INDEX: usize = 65_535;

/// Parses `user,item,rating[,timestamp]`, each a 0-based index or a header name.
pub fn parse_columns(text: &str) -> Result<Vec<Column>> {
    let cols: Vec<Column> = text
        .split(',')
        .map(|c| {
            let c = c.trim();
            if c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(Column::Name(c.to_owned()));
            }
            // All digits: an index, however long, never a header name.
            match c.parse::<usize>() {
                Ok(i) if i <= MAX_COLUMN_INDEX => Ok(Column::Index(i)),
                _ => Err(Error::Config(format!(
                    "--columns index {c} is too large: indices are 0-based and at most \
                     {MAX_COLUMN_INDEX}, got '{text}'"
                ))),
            }
        })
        .collect::<Result<_>>()?;
    if !(3..=4).contains(&cols.len()) || cols.iter().any(|c| *c == Column::Name(String::new())) {
        return Err(Error::Config(format!(
            "--columns must list user,item,rating[,timestamp] (names or 0-based indices), got '{text}'"
        )));
    }
    Ok(cols)
}

/// How to read a rating file.
#[derive(Clone, Debug)]
pub struct FileOptions {
    pub format: Format,
    /// For `delimited` (and `auto` when it falls back to it); default `,`.
    pub delimiter: Option<String>,
    /// For `delimited`: the first line names the columns.
    pub header: bool,
    /// For `delimited`: default `0,1,2` plus `3` when present.
    pub columns: Option<Vec<Column>>,
    pub skip_bad_lines: bool,
    /// Given rating scale; ratings outside it are bad lines. `None`: taken from the data.
    pub scale: Option<RatingScale>,
    /// Which ratings to keep (all by default).
    pub select: Selection,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            format: Format::Auto,
            delimiter: None,
            header: false,
            columns: None,
            skip_bad_lines: false,
            scale: None,
            select: Selection::default(),
        }
    }
}

struct Layout {
    delimiter: String,
    header: bool,
    columns: Vec<Column>,
}

impl Layout {
    fn fixed(delimiter: &str, header: bool, columns: Vec<Column>) -> Self {
        Layout {
            delimiter: delimiter.to_owned(),
            header,
            columns,
        }
    }

    fn indices(n: usize) -> Vec<Column> {
        (0..n).map(Column::Index).collect()
    }

    fn for_format(opts: &FileOptions, first_line: &str, file: &str) -> Result<Self> {
        Ok(match opts.format {
            Format::Ml100k => Self::fixed("\t", false, Self::indices(4)),
            Format::Ml1m => Self::fixed("::", false, Self::indices(4)),
            Format::MlLatest => Self::fixed(
                ",",
                true,
                ["userId", "movieId", "rating", "timestamp"]
                    .map(|n| Column::Name(n.into()))
                    .to_vec(),
            ),
            Format::Delimited => {
                let delimiter = opts.delimiter.clone().unwrap_or_else(|| ",".into());
                if delimiter.is_empty() {
                    return Err(Error::Config("--delimiter must not be empty".into()));
                }
                let columns = match &opts.columns {
                    Some(c) => c.clone(),
                    None => {
                        let n = first_line.split(delimiter.as_str()).count();
                        Self::indices(if n >= 4 { 4 } else { 3 })
                    }
                };
                Layout {
                    delimiter,
                    header: opts.header,
                    columns,
                }
            }
            Format::Auto => {
                let lower = first_line.to_ascii_lowercase();
                if first_line.contains("::") {
                    Self::fixed("::", false, Self::indices(4))
                } else if first_line.contains('\t') {
                    let n = first_line.split('\t').count();
                    Self::fixed("\t", false, Self::indices(n.clamp(3, 4)))
                } else if lower.starts_with("userid,movieid,rating") {
                    return Self::for_format(
                        &FileOptions {
                            format: Format::MlLatest,
                            ..opts.clone()
                        },
                        first_line,
                        file,
                    );
                } else if first_line.contains(',') {
                    let fields: Vec<&str> = first_line.split(',').collect();
                    let header = fields
                        .get(2)
                        .is_none_or(|r| r.trim().parse::<f64>().is_err());
                    Self::fixed(",", header, Self::indices(fields.len().clamp(3, 4)))
                } else {
                    return Err(Error::BadLine {
                        file: file.into(),
                        line: 1,
                        problem: "cannot tell the file format from this line; pass --format".into(),
                    });
                }
            }
        })
    }

    /// Resolves column names against the header line into indices.
    fn resolve(&self, header: Option<&str>, file: &str) -> Result<Vec<usize>> {
        self.columns
            .iter()
            .map(|c| match c {
                Column::Index(i) => Ok(*i),
                Column::Name(name) => {
                    let Some(header) = header else {
                        return Err(Error::Config(format!(
                            "column '{name}' is given by name but the file has no header (use --header or indices)"
                        )));
                    };
                    header
                        .split(self.delimiter.as_str())
                        .position(|h| h.trim().trim_matches('"').eq_ignore_ascii_case(name))
                        .ok_or_else(|| Error::BadLine {
                            file: file.into(),
                            line: 1,
                            problem: format!("header has no column named '{name}'"),
                        })
                }
            })
            .collect()
    }
}

/// Buffers `input`, decompressing gzip when it starts with gzip's magic bytes.
fn decompressed<'a>(input: impl Read + 'a, file: &str) -> Result<Box<dyn BufRead + 'a>> {
    const BUF: usize = 1 << 16;
    let mut buffered = BufReader::with_capacity(BUF, input);
    let head = buffered.fill_buf().map_err(|e| Error::io(file, e))?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(BUF, MultiGzDecoder::new(buffered)))
    } else {
        Box::new(buffered)
    })
}

/// One data line's fields, or what is wrong with it.
fn parse_line(
    line: &str,
    delimiter: &str,
    cols: &[usize],
    b: &mut RatingsBuilder,
) -> Result<(), String> {
    let mut picked: [Option<&str>; 4] = [None; 4];
    let mut n_fields = 0;
    for (k, field) in line.split(delimiter).enumerate() {
        n_fields = k + 1;
        for (slot, &c) in cols.iter().enumerate() {
            if c == k {
                picked[slot] = Some(field.trim());
            }
        }
    }
    let need = cols.iter().max().map_or(0, |m| m + 1);
    if n_fields < need {
        return Err(format!(
            "expected at least {need} fields separated by '{}', found {n_fields}",
            delimiter.escape_default()
        ));
    }
    let [user, item, rating, ts] = picked;
    let (user, item, rating) = (user.unwrap_or(""), item.unwrap_or(""), rating.unwrap_or(""));
    let value: f64 = rating
        .parse()
        .map_err(|_| format!("rating '{rating}' is not a number"))?;
    let timestamp = match ts {
        Some(t) if !t.is_empty() => Some(
            t.parse::<i64>()
                .map_err(|_| format!("timestamp '{t}' is not an integer"))?,
        ),
        _ => None,
    };
    b.push(user, item, value, timestamp)
}

/// Loads a rating file.
pub fn load_file(path: &Path, opts: &FileOptions) -> Result<Ratings> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    load_reader(file, &path.display().to_string(), opts)
}

/// Loads ratings held in memory (an object read from the model store), plain or gzip; `name`
/// says where they came from in errors.
pub fn load_bytes(bytes: &[u8], name: &str, opts: &FileOptions) -> Result<Ratings> {
    load_reader(bytes, name, opts)
}

/// Loads ratings from `input`, plain or gzip; `file` names it in errors.
pub fn load_reader(input: impl Read, file: &str, opts: &FileOptions) -> Result<Ratings> {
    let file = file.to_owned();
    let mut reader = decompressed(input, &file)?;
    let mut b = RatingsBuilder::new(opts.scale).select(opts.select);
    let mut buf = Vec::with_capacity(256);
    let mut line_no = 0u64;
    let mut layout: Option<(Layout, Vec<usize>)> = None;
    let mut saw_text = false;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(&file, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let bad = |problem: String| Error::BadLine {
            file: file.clone(),
            line: line_no,
            problem,
        };
        let parsed = std::str::from_utf8(&buf)
            .map(|s| s.trim_end_matches(['\n', '\r']))
            .map_err(|e| format!("line is not valid UTF-8 ({e})"));
        let text = match parsed {
            Ok(t) => t,
            Err(problem) if opts.skip_bad_lines && layout.is_some() => {
                skipped(&mut b, &file, line_no, &problem);
                continue;
            }
            Err(problem) => return Err(bad(problem)),
        };
        if text.trim().is_empty() {
            continue;
        }
        saw_text = true;
        let decides_layout = layout.is_none();
        let (lay, cols) = match &layout {
            Some(l) => l,
            None => {
                let lay = Layout::for_format(opts, text, &file)?;
                if lay.header {
                    let cols = lay.resolve(Some(text), &file)?;
                    layout = Some((lay, cols));
                    continue;
                }
                let cols = lay.resolve(None, &file)?;
                layout.insert((lay, cols))
            }
        };
        if let Err(problem) = parse_line(text, &lay.delimiter, cols, &mut b) {
            if opts.skip_bad_lines {
                skipped(&mut b, &file, line_no, &problem);
                // A skipped line must not decide the layout (the format `auto` guesses, the
                // columns `delimited` counts): a short first line would drop every timestamp.
                if decides_layout {
                    layout = None;
                }
            } else {
                return Err(bad(problem));
            }
        }
    }
    if !saw_text {
        return Err(Error::InvalidData(format!("{file} is empty")));
    }
    let ratings = b.finish(&file)?;
    tracing::info!(
        file,
        ratings = ratings.triples.len(),
        skipped = ratings.fingerprint.skipped,
        "loaded ratings"
    );
    Ok(ratings)
}

fn skipped(b: &mut RatingsBuilder, file: &str, line: u64, problem: &str) {
    b.skip();
    tracing::warn!(file, line, problem, "skipping malformed line");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn bad_line(err: Error) -> (String, u64, String) {
        match err {
            Error::BadLine {
                file,
                line,
                problem,
            } => (file, line, problem),
            other => panic!("expected a bad-line error, got {other}"),
        }
    }

    #[test]
    fn reads_ml_100k_and_detects_it() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            &d,
            "u.data",
            "196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
        );
        for format in [Format::Auto, Format::Ml100k] {
            let r = load_file(
                &p,
                &FileOptions {
                    format,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(r.triples.len(), 2);
            assert_eq!(r.users.id(1), "186");
            assert_eq!(r.fingerprint.max_timestamp, Some(891717742));
        }
    }

    #[test]
    fn ml_100k_error_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "u.data", "1\t2\t3\t4\n1\t3\tfive\t5\n");
        let opts = FileOptions {
            format: Format::Ml100k,
            ..Default::default()
        };
        let (file, line, problem) = bad_line(load_file(&p, &opts).unwrap_err());
        assert!(file.ends_with("u.data"));
        assert_eq!(line, 2);
        assert!(problem.contains("'five'"), "{problem}");
    }

    #[test]
    fn ml_1m_errors_on_missing_fields() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            &d,
            "ratings.dat",
            "1::1193::5::978300760\n1::661::3::978302109\n1::914\n",
        );
        let opts = FileOptions {
            format: Format::Ml1m,
            ..Default::default()
        };
        let (_, line, problem) = bad_line(load_file(&p, &opts).unwrap_err());
        assert_eq!(line, 3);
        assert!(problem.contains("expected at least 4 fields"), "{problem}");
        let ok = write(
            &d,
            "ok.dat",
            "1::1193::5::978300760\n2::661::3::978302109\n",
        );
        let r = load_file(&ok, &FileOptions::default()).unwrap();
        assert_eq!((r.users.len(), r.items.len()), (2, 2));
    }

    #[test]
    fn ml_latest_has_header_half_stars_and_line_errors() {
        let d = tempfile::tempdir().unwrap();
        let text = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n";
        let p = write(&d, "ratings.csv", text);
        let r = load_file(&p, &FileOptions::default()).unwrap();
        assert_eq!(r.triples.len(), 2);
        assert_eq!(r.scale, RatingScale { lo: 0.5, hi: 4.0 });
        let bad = write(&d, "bad.csv", &format!("{text}2,5,4.5,notatime\n"));
        let opts = FileOptions {
            format: Format::MlLatest,
            ..Default::default()
        };
        let (_, line, problem) = bad_line(load_file(&bad, &opts).unwrap_err());
        assert_eq!(line, 4);
        assert!(problem.contains("timestamp"), "{problem}");
    }

    #[test]
    fn delimited_by_names_and_indices() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            &d,
            "r.txt",
            "when;score;who;what\n100;4;alice;matrix\n200;2;bob;heat\n",
        );
        let by_name = FileOptions {
            format: Format::Delimited,
            delimiter: Some(";".into()),
            header: true,
            columns: Some(parse_columns("who,what,score,when").unwrap()),
            ..Default::default()
        };
        let r = load_file(&p, &by_name).unwrap();
        assert_eq!(r.users.id(0), "alice");
        assert_eq!(r.items.id(1), "heat");
        assert_eq!(r.triples[1].rating, 2.0);
        assert_eq!(r.fingerprint.max_timestamp, Some(200));
        let by_index = FileOptions {
            columns: Some(parse_columns("2,3,1").unwrap()),
            ..by_name.clone()
        };
        let r2 = load_file(&p, &by_index).unwrap();
        assert_eq!(r2.triples, r.triples);
        let unknown = FileOptions {
            columns: Some(parse_columns("who,what,stars").unwrap()),
            ..by_name.clone()
        };
        let (_, line, problem) = bad_line(load_file(&p, &unknown).unwrap_err());
        assert_eq!(line, 1);
        assert!(problem.contains("'stars'"));
        let no_header = FileOptions {
            header: false,
            ..by_name
        };
        assert!(matches!(load_file(&p, &no_header), Err(Error::Config(_))));
        assert!(parse_columns("a,b").is_err());
    }

    #[test]
    fn a_column_index_that_would_overflow_is_a_config_error() {
        for huge in ["18446744073709551615", "99999999999999999999999", "65536"] {
            match parse_columns(&format!("0,1,{huge}")) {
                Err(Error::Config(why)) => {
                    assert!(
                        why.starts_with(&format!("--columns index {huge} is too large")),
                        "{why}"
                    );
                    assert!(why.contains(&format!("'0,1,{huge}'")), "{why}");
                }
                other => panic!("{huge}: {other:?}"),
            }
        }
        let widest = parse_columns(&format!("0,1,{MAX_COLUMN_INDEX}")).unwrap();
        assert_eq!(widest[2], Column::Index(MAX_COLUMN_INDEX));
    }

    #[test]
    fn delimited_error_has_line_number() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "r.txt", "a|x|3\nb|y|\n");
        let opts = FileOptions {
            format: Format::Delimited,
            delimiter: Some("|".into()),
            ..Default::default()
        };
        let (_, line, problem) = bad_line(load_file(&p, &opts).unwrap_err());
        assert_eq!(line, 2);
        assert!(problem.contains("rating ''"), "{problem}");
    }

    #[test]
    fn gzip_is_read_transparently() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("u.data.whatever");
        let mut gz =
            flate2::write::GzEncoder::new(File::create(&p).unwrap(), flate2::Compression::fast());
        gz.write_all(b"1\t2\t3\t4\n5\t6\t4\t8\n").unwrap();
        gz.finish().unwrap();
        let r = load_file(&p, &FileOptions::default()).unwrap();
        assert_eq!(r.triples.len(), 2);

        // The same bytes from memory (an object of the model store) load the same ratings.
        let bytes = std::fs::read(&p).unwrap();
        let m = load_bytes(&bytes, "store:u.data", &FileOptions::default()).unwrap();
        assert_eq!(m.fingerprint, r.fingerprint);
        let plain = load_bytes(b"1\t2\t3\t4\n", "x", &FileOptions::default()).unwrap();
        assert_eq!(plain.triples.len(), 1);
        let err = load_bytes(b"1\t2\tx\t4\n", "store:bad.data", &FileOptions::default());
        let (file, line, _) = bad_line(err.unwrap_err());
        assert_eq!((file.as_str(), line), ("store:bad.data", 1));
    }

    #[test]
    fn skip_bad_lines_counts_them() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "u.data", "1\t2\t3\t4\nbroken\n1\t3\tx\t5\n2\t2\t5\t6\n");
        let opts = FileOptions {
            format: Format::Ml100k,
            skip_bad_lines: true,
            ..Default::default()
        };
        let r = load_file(&p, &opts).unwrap();
        assert_eq!(r.triples.len(), 2);
        assert_eq!(r.fingerprint.skipped, 2);
    }

    #[test]
    fn empty_file_and_all_bad_lines_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "empty.data", "");
        assert!(
            load_file(&p, &FileOptions::default())
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let p = write(&d, "bad.data", "x\ty\n");
        let opts = FileOptions {
            format: Format::Ml100k,
            skip_bad_lines: true,
            ..Default::default()
        };
        let err = load_file(&p, &opts).unwrap_err().to_string();
        assert!(
            err.contains("no ratings") && err.contains("1 malformed"),
            "{err}"
        );
    }

    #[test]
    fn rating_outside_given_scale_is_a_bad_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "u.data", "1\t2\t3\t4\n1\t3\t9\t5\n");
        let opts = FileOptions {
            scale: Some(RatingScale { lo: 1.0, hi: 5.0 }),
            ..Default::default()
        };
        let (_, line, problem) = bad_line(load_file(&p, &opts).unwrap_err());
        assert_eq!(line, 2);
        assert!(problem.contains("outside"));
    }

    /// Found by the loaders' property test (trainer/tests/loader_props.rs): a short first line,
    /// skipped, still decided that the delimited file had three columns, so every timestamp
    /// after it was dropped.
    #[test]
    fn a_skipped_first_line_does_not_decide_the_layout() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "r.csv", "1,2\n1,2,3,100\n2,2,4,200\n");
        let opts = FileOptions {
            format: Format::Delimited,
            skip_bad_lines: true,
            select: Selection {
                after: None,
                timestamps: true,
            },
            ..Default::default()
        };
        let r = load_file(&p, &opts).unwrap();
        assert_eq!(r.fingerprint.skipped, 1);
        assert_eq!(r.timestamps, Some(vec![100, 200]));
        assert_eq!(r.fingerprint.max_timestamp, Some(200));
    }

    /// Found by the fuzzer (fuzz/corpus): a finite rating beyond f32 became an infinite one.
    #[test]
    fn rating_beyond_f32_is_a_bad_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "r.csv", "1,2,3,5\n1,2,31e193,5\n");
        let (_, line, problem) = bad_line(load_file(&p, &FileOptions::default()).unwrap_err());
        assert_eq!(line, 2);
        assert!(problem.contains("3.1e194 is too large"), "{problem}");
        let p = write(&d, "r.csv", "1,2,-1e39\n");
        let opts = FileOptions {
            skip_bad_lines: true,
            ..Default::default()
        };
        assert!(
            load_file(&p, &opts)
                .unwrap_err()
                .to_string()
                .contains("1 malformed")
        );
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let err =
            load_file(Path::new("/no/such/ratings.csv"), &FileOptions::default()).unwrap_err();
        assert!(err.to_string().contains("/no/such/ratings.csv"));
    }
}
