//! What every backend must do, run against each: tests/local.rs (a directory) and tests/s3.rs
//! (SeaweedFS). Each function takes an empty store.

use bytes::Bytes;
use recommender_store::{
    BlockingStore, ObjectInfo, Operation, Reason, Sha256, Store, StoreError, Written,
};

fn keys(list: Vec<ObjectInfo>) -> Vec<String> {
    list.into_iter().map(|o| o.key).collect()
}

/// Puts `weights` under `key` and reads them back verified.
pub async fn weights(store: &Store, key: &str) -> Written {
    let written = store
        .put_new(key, Bytes::from_static(b"weights"))
        .await
        .unwrap();
    assert_eq!(written.sha256, Sha256::of(b"weights"));
    let read = store.get_verified(key, written.sha256, 100).await.unwrap();
    assert_eq!(read, Bytes::from_static(b"weights"));
    written
}

pub async fn put_get_head_list_delete(store: &Store) {
    let written = weights(store, "v1/model.bin").await;
    assert_eq!((written.key.as_str(), written.size), ("v1/model.bin", 7));
    store
        .put_new("v1/run.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    store
        .put_new("v10/model.bin", Bytes::from_static(b"other"))
        .await
        .unwrap();

    let head = store.head("v1/model.bin").await.unwrap();
    assert_eq!((head.key.as_str(), head.size), ("v1/model.bin", 7));
    assert!(head.last_modified > jiff::Timestamp::UNIX_EPOCH);
    // A prefix is a folder: "v1" does not take "v10".
    assert_eq!(
        keys(store.list("v1", 10).await.unwrap()),
        ["v1/model.bin", "v1/run.json"]
    );
    assert_eq!(
        keys(store.list("", 10).await.unwrap()),
        ["v1/model.bin", "v1/run.json", "v10/model.bin"]
    );
    assert!(store.list("v2", 10).await.unwrap().is_empty());

    store.delete("v1/model.bin").await.unwrap();
    assert_eq!(
        store.get("v1/model.bin", 100).await.unwrap_err().reason(),
        Reason::NotFound
    );
    assert_eq!(
        store.head("v1/model.bin").await.unwrap_err().reason(),
        Reason::NotFound
    );
    // Deleting what is gone is not an error (S3 does not tell).
    store.delete("v1/model.bin").await.unwrap();
}

pub async fn keys_are_written_once(store: &Store) {
    store
        .put_new("v1/model.bin", Bytes::from_static(b"first"))
        .await
        .unwrap();
    let err = store
        .put_new("v1/model.bin", Bytes::from_static(b"second"))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.reason(), Reason::AlreadyExists, "{err}");
    assert!(
        err.to_string()
            .starts_with(r#""v1/model.bin" already exists in "#),
        "{err}"
    );
    assert_eq!(
        store.get("v1/model.bin", 100).await.unwrap(),
        Bytes::from_static(b"first")
    );
    assert_eq!(store.list("v1", 10).await.unwrap().len(), 1);

    // Eight writers, one key: exactly one gets through, and its bytes are what is stored.
    let writers = (0..8u8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .put_new("v2/model.bin", Bytes::from(vec![i; 256 * 1024]))
                .await
        })
    });
    let results: Vec<_> = futures::future::join_all(writers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for loser in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(loser.reason(), Reason::AlreadyExists, "{loser}");
    }
    let stored = store
        .get_verified("v2/model.bin", winners[0].sha256, 1 << 20)
        .await
        .unwrap();
    assert_eq!(stored.len(), 256 * 1024);
}

/// An object of `size` bytes, read back byte for byte, and the bounds of `get` and `list`.
pub async fn bounds_hold(store: &Store, size: usize) {
    let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let written = store
        .put_new("v1/model.bin", Bytes::from(bytes.clone()))
        .await
        .unwrap();
    assert_eq!(written.size, size as u64);
    let read = store
        .get_verified("v1/model.bin", Sha256::of(&bytes), size as u64)
        .await
        .unwrap();
    assert!(read == bytes[..], "the object came back different");
    assert_eq!(store.head("v1/model.bin").await.unwrap().size, size as u64);

    let err = store
        .get("v1/model.bin", size as u64 - 1)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Reason::TooLarge);
    let limit = size - 1;
    assert!(
        err.to_string()
            .ends_with(&format!("is {size} bytes, more than the limit of {limit}")),
        "{err}"
    );

    for i in 0..3 {
        store
            .put_new(&format!("many/{i}"), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    assert_eq!(store.list("many", 3).await.unwrap().len(), 3);
    let err = store.list("many", 2).await.unwrap_err();
    assert_eq!(err.reason(), Reason::TooLarge);
    assert!(
        err.to_string()
            .starts_with(r#"more than 2 objects under "many" in "#),
        "{err}"
    );
}

/// The same calls without a runtime, as the trainer makes them.
pub fn blocking(store: &BlockingStore) {
    let written = store.put_new("v1/model.bin", b"weights".to_vec()).unwrap();
    assert_eq!(
        store
            .get_verified("v1/model.bin", written.sha256, 100)
            .unwrap(),
        Bytes::from_static(b"weights")
    );
    assert_eq!(store.head("v1/model.bin").unwrap().size, 7);
    assert_eq!(store.list("v1", 10).unwrap().len(), 1);
    assert_eq!(
        store
            .put_new("v1/model.bin", b"again".to_vec())
            .unwrap_err()
            .reason(),
        Reason::AlreadyExists
    );
    store.delete("v1/model.bin").unwrap();
    assert!(store.list("", 10).unwrap().is_empty());
}

/// Each operation once, on a store that refuses them all (wrong keys, no bucket, no server): the
/// errors, each printed for the test's log, with the operation that failed.
pub async fn every_operation_fails(store: &Store) -> Vec<(Operation, StoreError)> {
    let errors = vec![
        (
            Operation::Put,
            store
                .put_new("v1/model.bin", Bytes::from_static(b"x"))
                .await
                .unwrap_err(),
        ),
        (
            Operation::Get,
            store.get("v1/model.bin", 10).await.unwrap_err(),
        ),
        (
            Operation::Head,
            store.head("v1/model.bin").await.unwrap_err(),
        ),
        (Operation::List, store.list("v1", 10).await.unwrap_err()),
        (
            Operation::Delete,
            store.delete("v1/model.bin").await.unwrap_err(),
        ),
    ];
    for (_, err) in &errors {
        eprintln!("{err}");
    }
    errors
}
