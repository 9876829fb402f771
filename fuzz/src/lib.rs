//! What the fuzz targets share: where a target writes its seed inputs when asked, and the sample
//! values those seeds are made of.
//!
//! Seeds are made from the project's own types rather than kept as opaque files, so a change of
//! format gives new seeds with `run.sh seed TARGET`; the corpora committed under `corpus/` grew from
//! them.

use std::path::PathBuf;

/// With `RECOMMENDER_FUZZ_SEEDS=DIR` set, writes `seeds()` into `DIR` as `seed-NNN` and exits, so
/// `run.sh seed` can run a target's binary for it. Called from each target's `init`.
pub fn write_seeds_if_asked(seeds: impl FnOnce() -> Vec<Vec<u8>>) {
    let Some(dir) = std::env::var_os("RECOMMENDER_FUZZ_SEEDS").map(PathBuf::from) else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("seed folder");
    for (i, seed) in seeds().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), seed).expect("seed file");
    }
    std::process::exit(0);
}

/// A little-endian u16 at the front of `data`, and the rest; `None` when `data` is shorter.
pub fn split_u16(data: &[u8]) -> Option<(usize, &[u8])> {
    let (head, rest) = data.split_first_chunk::<2>()?;
    Some((u16::from_le_bytes(*head) as usize, rest))
}
