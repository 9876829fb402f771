//! The backend contract (common/contract.rs) against a directory, as a claim's mount is used; the
//! directory's own cases (staging files, a byte flipped on disk) are in src/store/tests.rs.

mod common;

use common::contract;
use recommender_store::{BlockingStore, Store, StoreConfig};

fn local() -> (tempfile::TempDir, StoreConfig) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::Local {
        root: dir.path().to_path_buf(),
    };
    (dir, config)
}

#[tokio::test]
async fn put_get_head_list_delete() {
    let (_dir, config) = local();
    contract::put_get_head_list_delete(&Store::open(&config).unwrap()).await;
}

#[tokio::test]
async fn keys_are_written_once() {
    let (dir, config) = local();
    contract::keys_are_written_once(&Store::open(&config).unwrap()).await;
    // The refused writes left nothing behind, not even their staging files.
    for folder in ["v1", "v2"] {
        assert_eq!(
            std::fs::read_dir(dir.path().join(folder)).unwrap().count(),
            1,
            "{folder}"
        );
    }
}

#[tokio::test]
async fn bounds_hold() {
    let (_dir, config) = local();
    contract::bounds_hold(&Store::open(&config).unwrap(), 1024 * 1024 + 13).await;
}

#[test]
fn blocking() {
    let (_dir, config) = local();
    contract::blocking(&BlockingStore::open(&config).unwrap());
}
