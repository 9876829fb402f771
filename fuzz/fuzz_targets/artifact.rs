//! The model artifact reader (`recommender_model::Artifact::from_bytes`), which the predictor runs
//! on whatever file is at its model path.
//!
//! Input: one mode byte, then
//! - even mode: the file's bytes as they are, so the header, lengths and checksum are fuzzed;
//! - odd mode: `[metadata length: u16 LE][metadata][model]`, sealed here into a file with a right
//!   header, lengths and checksum, so mutations reach the metadata JSON, the postcard model and
//!   `Model::validate` instead of dying at the checksum.
//!
//! Whatever is accepted must be a model the predictor can serve: predictions and rankings of
//! every kind run without panicking, and it encodes back to an equal artifact.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use recommender_fuzz::{split_u16, write_seeds_if_asked};
use recommender_model::artifact::MAGIC;
use recommender_model::fixtures::{self, Shape};
use recommender_model::{
    Artifact, BaselineParams, FORMAT_VERSION, Hyperparameters, Model, Query, Ranker, SvdParams,
};
use sha2::{Digest, Sha256};

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let Some((meta_len, rest)) = split_u16(rest) else {
            return;
        };
        let (meta, model) = rest.split_at(meta_len.min(rest.len()));
        seal(meta, model)
    };
    let Ok(artifact) = Artifact::from_bytes(&bytes, Path::new("fuzz.model")) else {
        return;
    };
    serve(&artifact.model);
    let again = artifact.to_bytes().expect("an accepted artifact encodes");
    let back = Artifact::from_bytes(&again, Path::new("again.model")).expect("re-encoded reads");
    assert_eq!(back, artifact);
});

/// A file around `meta` and `model` with the header, lengths and checksum `save` writes.
fn seal(meta: &[u8], model: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(meta.len() + model.len() + 60);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    out.extend_from_slice(meta);
    out.extend_from_slice(&(model.len() as u64).to_le_bytes());
    out.extend_from_slice(model);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// What the predictor asks of a loaded model: predictions for known and unknown ids, top lists
/// from one user and from blocks of users, at depths around the item count.
fn serve(model: &Model) {
    let user = model.users.ids().first().map_or("nobody", String::as_str);
    let item = model.items.ids().first().map_or("nothing", String::as_str);
    for (u, i) in [(user, item), (user, "?"), ("?", item), ("?", "?")] {
        let p = model.predict(u, i);
        assert!(p.rating >= model.scale.lo && p.rating <= model.scale.hi);
    }
    let ranker = Ranker::new(&model.factors);
    let n_items = model.items.len();
    let users = model.users.len().min(8) as u32;
    for n in [0, 1, n_items.saturating_sub(1), n_items + 1] {
        for u in (0..users).map(Some).chain([None]) {
            let top = model.recommend_ranked(&ranker, u, n);
            assert!(top.len() <= n.min(n_items));
        }
        let queries: Vec<Query> = (0..users as usize)
            .map(|u| Query {
                user: Some(u),
                exclude: model.rated.of(u as u32),
            })
            .collect();
        let many = ranker.top_n_many(&model.factors, &queries, n);
        assert_eq!(many.len(), queries.len());
    }
    let _ = model.recommend(user, 3);
}

fn seeds() -> Vec<Vec<u8>> {
    let shapes = [
        (1, 1, 0),
        (2, 3, 1),
        (3, 4, 2),
        (5, 9, 3),
        (4, 40, 8),
        (1, 17, 16),
    ];
    let mut seeds = Vec::new();
    for (n, &(users, items, factors)) in shapes.iter().enumerate() {
        let rated = (0..users as u32).map(move |u| (u, (u * 7) % items as u32));
        let shape = Shape {
            users,
            items,
            factors,
            seed: n as u64,
        };
        let mut model = fixtures::model(shape, rated);
        let hyperparameters = if factors == 0 {
            Hyperparameters::Baseline(BaselineParams::default())
        } else {
            Hyperparameters::Svd(SvdParams {
                n_factors: factors,
                ..SvdParams::default()
            })
        };
        if n == 2 {
            // Surprise's biased=False: no biases, the global mean only as a fallback.
            model.factors.biased = false;
            model.factors.user_bias.fill(0.0);
            model.factors.item_bias.fill(0.0);
        }
        let artifact = Artifact {
            meta: fixtures::meta(&model, hyperparameters),
            model,
        };
        let file = artifact.to_bytes().expect("fixture encodes");
        seeds.push([&[0u8][..], &file].concat());
        // The sealed form: the two sections, with the metadata's length in front.
        let meta_len = u64::from_le_bytes(file[12..20].try_into().unwrap()) as usize;
        let meta = &file[20..20 + meta_len];
        let model = &file[20 + meta_len + 8..file.len() - 32];
        seeds.push([&[1u8][..], &(meta_len as u16).to_le_bytes(), meta, model].concat());
    }
    seeds
}
