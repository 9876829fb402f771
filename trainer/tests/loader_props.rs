//! Properties of the ratings loaders over generated files (proptest), for every format, plain and
//! gzip: a file of good lines loads every rating; one bad line anywhere in it is refused with the
//! file's name and that line's 1-based number (what the run report and `kubectl describe` show),
//! or with `--skip-bad-lines` is counted and the rest kept. The fuzz target
//! `fuzz/fuzz_targets/loaders.rs` searches the same parser with coverage guidance
//! (docs/fuzzing.md); these run in the unit suite.

use std::io::Write;

use proptest::prelude::*;
use recommender_trainer::data::{Ratings, Selection};
use recommender_trainer::loaders::{
    Column, FileOptions, Format, MAX_COLUMN_INDEX, load_reader, parse_columns,
};
use recommender_trainer::{Error, RatingScale};

/// A format the trainer reads, how it spells a line, and the header it needs.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Ml100k,
    Ml1m,
    MlLatest,
    Csv,
}

impl Layout {
    fn format(self) -> Format {
        match self {
            Layout::Ml100k => Format::Ml100k,
            Layout::Ml1m => Format::Ml1m,
            Layout::MlLatest => Format::MlLatest,
            Layout::Csv => Format::Delimited,
        }
    }

    fn delimiter(self) -> &'static str {
        match self {
            Layout::Ml100k => "\t",
            Layout::Ml1m => "::",
            Layout::MlLatest | Layout::Csv => ",",
        }
    }

    fn header(self) -> Option<&'static str> {
        matches!(self, Layout::MlLatest).then_some("userId,movieId,rating,timestamp")
    }

    fn line(self, fields: [&str; 4]) -> Vec<u8> {
        format!("{}\n", fields.join(self.delimiter())).into_bytes()
    }
}

fn layouts() -> impl Strategy<Value = Layout> {
    prop_oneof![
        Just(Layout::Ml100k),
        Just(Layout::Ml1m),
        Just(Layout::MlLatest),
        Just(Layout::Csv),
    ]
}

/// A good rating: ids without the delimiters, a rating in the scale 0.5 to 5, a timestamp.
#[derive(Clone, Debug)]
struct Rating {
    user: String,
    item: String,
    rating: f64,
    timestamp: i64,
}

fn ratings() -> impl Strategy<Value = Vec<Rating>> {
    let rating = (
        "[a-z0-9é_-]{1,8}",
        "[a-z0-9é_-]{1,8}",
        1u32..=10,
        0i64..2_000_000_000,
    );
    proptest::collection::vec(
        rating.prop_map(|(user, item, halves, timestamp)| Rating {
            user,
            item,
            rating: f64::from(halves) / 2.0,
            timestamp,
        }),
        1..40,
    )
}

/// What can be wrong with one line, each a different check of the parser.
#[derive(Clone, Copy, Debug)]
enum Bad {
    NotANumber,
    TooFewFields,
    BeyondF32,
    NotFinite,
    OutsideScale,
    EmptyUser,
    TimestampNotAnInteger,
    NotUtf8,
}

fn bads() -> impl Strategy<Value = Bad> {
    prop_oneof![
        Just(Bad::NotANumber),
        Just(Bad::TooFewFields),
        Just(Bad::BeyondF32),
        Just(Bad::NotFinite),
        Just(Bad::OutsideScale),
        Just(Bad::EmptyUser),
        Just(Bad::TimestampNotAnInteger),
        Just(Bad::NotUtf8),
    ]
}

impl Bad {
    fn line(self, layout: Layout) -> Vec<u8> {
        match self {
            Bad::NotANumber => layout.line(["u", "i", "five", "1"]),
            Bad::TooFewFields => format!("u{}i\n", layout.delimiter()).into_bytes(),
            Bad::BeyondF32 => layout.line(["u", "i", "1e39", "1"]),
            Bad::NotFinite => layout.line(["u", "i", "NaN", "1"]),
            Bad::OutsideScale => layout.line(["u", "i", "7", "1"]),
            Bad::EmptyUser => layout.line(["", "i", "3", "1"]),
            Bad::TimestampNotAnInteger => layout.line(["u", "i", "3", "noon"]),
            Bad::NotUtf8 => [&b"u\xff\xfe"[..], &layout.line(["", "i", "3", "1"])].concat(),
        }
    }
}

/// The file's bytes: header if the layout has one, `good` lines, and `bad` at `at` among them.
fn file(layout: Layout, good: &[Rating], bad: Option<(usize, Bad)>) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = good
        .iter()
        .map(|r| {
            let (rating, timestamp) = (r.rating.to_string(), r.timestamp.to_string());
            layout.line([&r.user, &r.item, &rating, &timestamp])
        })
        .collect();
    if let Some((at, bad)) = bad {
        lines.insert(at, bad.line(layout));
    }
    if let Some(header) = layout.header() {
        lines.insert(0, format!("{header}\n").into_bytes());
    }
    lines.concat()
}

fn options(layout: Layout, skip_bad_lines: bool) -> FileOptions {
    FileOptions {
        format: layout.format(),
        skip_bad_lines,
        scale: Some(RatingScale { lo: 0.5, hi: 5.0 }),
        select: Selection {
            after: None,
            timestamps: true,
        },
        ..FileOptions::default()
    }
}

fn load(bytes: &[u8], gzip: bool, opts: &FileOptions) -> Result<Ratings, Error> {
    if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        load_reader(&gz.finish().unwrap()[..], "data/ratings.txt", opts)
    } else {
        load_reader(bytes, "data/ratings.txt", opts)
    }
}

/// The loaded ratings are `good`, in order.
fn assert_loaded(r: &Ratings, good: &[Rating]) {
    assert_eq!(r.triples.len(), good.len());
    let times = r.timestamps.as_ref().expect("asked for");
    for ((t, g), &time) in r.triples.iter().zip(good).zip(times) {
        assert_eq!(r.users.ids()[t.user as usize], g.user);
        assert_eq!(r.items.ids()[t.item as usize], g.item);
        assert_eq!(f64::from(t.rating), g.rating);
        assert_eq!(time, g.timestamp);
    }
}

proptest! {
    #[test]
    fn good_files_load_every_rating(
        layout in layouts(),
        good in ratings(),
        gzip in any::<bool>(),
    ) {
        let r = load(&file(layout, &good, None), gzip, &options(layout, false)).unwrap();
        assert_loaded(&r, &good);
        prop_assert_eq!(r.fingerprint.skipped, 0);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line(
        layout in layouts(),
        good in ratings(),
        at in any::<prop::sample::Index>(),
        bad in bads(),
        gzip in any::<bool>(),
    ) {
        let at = at.index(good.len() + 1);
        let bytes = file(layout, &good, Some((at, bad)));
        let line = (at + 1 + usize::from(layout.header().is_some())) as u64;
        match load(&bytes, gzip, &options(layout, false)) {
            Err(Error::BadLine { file, line: found, problem }) => {
                prop_assert_eq!(&file, "data/ratings.txt");
                prop_assert_eq!(found, line, "{:?}: {}", bad, problem);
                let shown = Error::BadLine { file, line, problem }.to_string();
                prop_assert!(shown.starts_with(&format!("data/ratings.txt:{line}: ")), "{}", shown);
            }
            other => prop_assert!(false, "{:?} on line {}: {:?}", bad, line, other.map(|r| r.triples.len())),
        }
        let skipping = load(&bytes, gzip, &options(layout, true));
        if line == 1 && matches!(bad, Bad::NotUtf8) {
            // The first line decides the layout (the delimited format counts its columns), so
            // one that is not text is an error even when skipping.
            let first_line = matches!(skipping, Err(Error::BadLine { line: 1, .. }));
            prop_assert!(first_line, "{:?}", skipping.map(|r| r.triples.len()));
            return Ok(());
        }
        let r = skipping.unwrap();
        assert_loaded(&r, &good);
        prop_assert_eq!(r.fingerprint.skipped, 1);
    }

    #[test]
    fn a_column_index_past_the_bound_is_refused_naming_the_flag(
        index in (MAX_COLUMN_INDEX as u128 + 1)..=u128::MAX,
        at in 0usize..3,
    ) {
        let mut cols = ["0", "1", "2"].map(String::from);
        cols[at] = index.to_string();
        let text = cols.join(",");
        match parse_columns(&text) {
            Err(Error::Config(why)) => {
                prop_assert!(why.starts_with(&format!("--columns index {index} is too large")), "{}", why);
            }
            other => prop_assert!(false, "{}: {:?}", text, other),
        }
    }

    #[test]
    fn a_column_index_within_the_bound_is_kept(index in 0..=MAX_COLUMN_INDEX) {
        let cols = parse_columns(&format!("{index},user,item")).unwrap();
        prop_assert_eq!(&cols[0], &Column::Index(index));
    }
}
