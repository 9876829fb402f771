//! The ratings loaders (`recommender_trainer::loaders`): every format the trainer reads, with the
//! options of its command line, plain or gzip.
//!
//! Input: one byte of options, then three NUL-terminated option texts and the file:
//! `[flags][--delimiter]\0[--columns]\0[--rating-scale]\0[file...]`. Flags, low bits first:
//! format (3 bits: auto, ml-100k, ml-1m, ml-latest, delimited), `--header`, `--skip-bad-lines`,
//! gzip the file here (so the decoder sees valid streams; a raw gzip file in the input reaches the
//! decoder's errors), keep timestamps, keep only ratings after timestamp 0. Empty option texts
//! are the defaults; texts the command line would refuse are skipped.
//!
//! Whatever loads must be ratings training can use: finite, inside the scale, ids non-empty and
//! indices in range, a fingerprint that counts them.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use recommender_fuzz::write_seeds_if_asked;
use recommender_trainer::data::{Selection, parse_scale};
use recommender_trainer::loaders::{FileOptions, Format, load_reader, parse_columns};

const FORMATS: [Format; 5] = [
    Format::Auto,
    Format::Ml100k,
    Format::Ml1m,
    Format::MlLatest,
    Format::Delimited,
];

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(4, |&b| b == 0);
    let (Some(delimiter), Some(columns), Some(scale), Some(file)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(delimiter), Ok(columns), Ok(scale)) = (
        std::str::from_utf8(delimiter),
        std::str::from_utf8(columns),
        std::str::from_utf8(scale),
    ) else {
        return;
    };
    let Ok(columns) = (!columns.is_empty()).then(|| parse_columns(columns)).transpose() else {
        return;
    };
    let Ok(scale) = (!scale.is_empty()).then(|| parse_scale(scale)).transpose() else {
        return;
    };
    let bit = |n: u8| flags & (1 << n) != 0;
    let opts = FileOptions {
        format: FORMATS[(flags & 7) as usize % FORMATS.len()],
        delimiter: (!delimiter.is_empty()).then(|| delimiter.replace("\\t", "\t")),
        header: bit(3),
        columns,
        skip_bad_lines: bit(4),
        scale,
        select: Selection {
            after: bit(7).then_some(0),
            timestamps: bit(6),
        },
    };
    let gzipped;
    let file = if bit(5) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(file).expect("in memory");
        gzipped = gz.finish().expect("in memory");
        &gzipped[..]
    } else {
        file
    };
    let Ok(r) = load_reader(file, "fuzz.data", &opts) else {
        return;
    };
    assert!(!r.triples.is_empty());
    assert!(r.scale.lo.is_finite() && r.scale.hi.is_finite() && r.scale.lo <= r.scale.hi);
    for t in &r.triples {
        assert!((t.user as usize) < r.users.len() && (t.item as usize) < r.items.len());
        assert!(t.rating.is_finite(), "rating {} is not finite", t.rating);
        // At the precision ratings are stored in (a rating just inside a given scale may round
        // onto its f32 bound).
        let (lo, hi) = (r.scale.lo as f32, r.scale.hi as f32);
        assert!(t.rating >= lo && t.rating <= hi, "rating {} outside {:?}", t.rating, r.scale);
    }
    assert!(r.users.ids().iter().chain(r.items.ids()).all(|id| !id.is_empty()));
    let f = &r.fingerprint;
    assert_eq!(f.rows as usize, r.triples.len());
    assert_eq!((f.users as usize, f.items as usize), (r.users.len(), r.items.len()));
    if let Some(times) = &r.timestamps {
        assert_eq!(times.len(), r.triples.len());
    }
});

fn seeds() -> Vec<Vec<u8>> {
    let seed = |flags: u8, delimiter: &str, columns: &str, scale: &str, file: &str| {
        [
            &[flags][..],
            delimiter.as_bytes(),
            b"\0",
            columns.as_bytes(),
            b"\0",
            scale.as_bytes(),
            b"\0",
            file.as_bytes(),
        ]
        .concat()
    };
    vec![
        seed(
            0,
            "",
            "",
            "",
            "196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
        ),
        seed(1, "", "", "1,5", "1\t2\t3\t4\n1\t3\tfive\t5\n"),
        seed(
            1 | 1 << 4,
            "",
            "",
            "",
            "1\t2\t3\t4\nbroken\n1\t3\tx\t5\n2\t2\t5\t6\n",
        ),
        seed(
            2,
            "",
            "",
            "",
            "1::1193::5::978300760\n1::661::3::978302109\n",
        ),
        seed(
            0,
            "",
            "",
            "",
            "1::1193::5::978300760\r\n2::661::3::978302109\r\n",
        ),
        seed(
            3,
            "",
            "",
            "",
            "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n",
        ),
        seed(
            1 << 6, // auto, keep timestamps
            "",
            "",
            "",
            "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n",
        ),
        seed(
            4 | 1 << 3,
            ";",
            "who,what,score,when",
            "",
            "when;score;who;what\n100;4;alice;matrix\n200;2;bob;heat\n",
        ),
        seed(4, "|", "2,0,1", "0.5,5", "4.5|a|x\n1|b|y\n"),
        seed(4, "\\t", "", "", "a\tx\t3\nb\ty\t4\n"),
        // Auto, gzipped here.
        seed(1 << 5, "", "", "", "1\t2\t3\t4\n5\t6\t4\t8\n"),
        // Auto, only ratings after timestamp 0.
        seed(1 << 7, "", "", "", "1,2,3,0\n1,3,4,100\n2,3,5\n"),
        seed(0, "", "", "", "user,item,rating\nu1,i1,3\n\nu2,i1,1e3\n"),
    ]
}
