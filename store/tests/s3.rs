//! The store against a real S3 server (SeaweedFS, tests/cluster/s3.sh): the operations, the
//! write-once rule under a race, verification, bounds, TLS, and each refusal with the server's
//! own words. Each test works under its own prefix of the shared bucket.

mod common;

use bytes::Bytes;
use common::contract;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStoreExt};
use recommender_store::{
    BlockingStore, Credentials, Operation, Reason, Sha256, Store, StoreArgs, StoreError,
};

macro_rules! server_or_skip {
    ($test:literal) => {
        match common::server($test) {
            Some(server) => server,
            None => return,
        }
    };
}

#[tokio::test]
async fn put_get_head_list_delete() {
    let s = server_or_skip!("put_get_head_list_delete");
    let store = s.store("roundtrip");
    contract::put_get_head_list_delete(&store).await;
    let err = store.get("v1/model.bin", 100).await.unwrap_err();
    assert!(err.words().unwrap().starts_with("NoSuchKey"), "{err}");
}

#[tokio::test]
async fn keys_are_written_once_even_under_a_race() {
    let s = server_or_skip!("keys_are_written_once_even_under_a_race");
    let store = s.store("write-once");
    contract::keys_are_written_once(&store).await;
    let err = store
        .put_new("v1/model.bin", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        err.words().unwrap().starts_with("PreconditionFailed"),
        "{err}"
    );
}

#[tokio::test]
async fn an_8_mb_object_round_trips_and_bounds_hold() {
    let s = server_or_skip!("an_8_mb_object_round_trips_and_bounds_hold");
    contract::bounds_hold(&s.store("large"), 8 * 1024 * 1024 + 13).await;
}

#[test]
fn the_blocking_store() {
    let s = server_or_skip!("the_blocking_store");
    let args = s.args(&s.bucket, &s.fresh_prefix("blocking"));
    let store = BlockingStore::open(&s.config(&args, &s.rw)).unwrap();
    contract::blocking(&store);
    s.assert_no_secrets(&format!("{store:?}"));
}

#[tokio::test]
async fn an_object_changed_behind_the_stores_back_is_corrupt() {
    let s = server_or_skip!("an_object_changed_behind_the_stores_back_is_corrupt");
    let prefix = s.fresh_prefix("corrupt");
    let store = Store::open(&s.config(&s.args(&s.bucket, &prefix), &s.rw)).unwrap();
    let original = vec![5u8; 100_000];
    let written = store
        .put_new("v1/model.bin", Bytes::from(original.clone()))
        .await
        .unwrap();

    // Someone with write access overwrites it with one byte flipped (the store never overwrites).
    let mut flipped = original;
    flipped[4242] ^= 0x80;
    let raw = AmazonS3Builder::new()
        .with_endpoint(&s.endpoint)
        .with_bucket_name(&s.bucket)
        .with_region(&s.region)
        .with_access_key_id(&s.rw.0)
        .with_secret_access_key(&s.rw.1)
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap();
    raw.put(
        &Path::from(format!("{prefix}/v1/model.bin")),
        flipped.clone().into(),
    )
    .await
    .unwrap();

    let err = store
        .get_verified("v1/model.bin", written.sha256, 1 << 20)
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.reason(), Reason::Corrupt);
    match &err {
        StoreError::Corrupt {
            key,
            expected,
            actual,
            ..
        } => {
            assert_eq!(
                (key.as_str(), *expected, *actual),
                ("v1/model.bin", written.sha256, Sha256::of(&flipped))
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_key_pairs_say_what_the_server_said() {
    let s = server_or_skip!("refused_key_pairs_say_what_the_server_said");
    let args = s.args(&s.bucket, &s.fresh_prefix("refused"));
    let unknown_key = (format!("{}X", s.rw.0), s.rw.1.clone());
    let wrong_secret = (s.rw.0.clone(), format!("{}X", s.rw.1));
    for (keys, code) in [
        (unknown_key, "InvalidAccessKeyId"),
        (wrong_secret, "SignatureDoesNotMatch"),
    ] {
        let store = Store::open(&s.config(&args, &keys)).unwrap();
        for (op, err) in contract::every_operation_fails(&store).await {
            assert_eq!(err.reason(), Reason::CredentialsRefused, "{err}");
            // A HEAD answer has no body: refused all the same, in HTTP's words.
            let words = if op == Operation::Head {
                "403 Forbidden"
            } else {
                code
            };
            assert!(err.words().unwrap().contains(words), "{err}");
            s.assert_no_secrets(&format!("{err} {err:?} {store:?} {store}"));
        }
    }
}

#[tokio::test]
async fn a_missing_bucket_is_named() {
    let s = server_or_skip!("a_missing_bucket_is_named");
    let args = s.args("no-such-bucket-for-store-tests", "p");
    let store = Store::open(&s.config(&args, &s.rw)).unwrap();
    for (_, err) in contract::every_operation_fails(&store).await {
        assert_eq!(err.reason(), Reason::BucketMissing, "{err}");
        assert!(err.words().unwrap().starts_with("NoSuchBucket"), "{err}");
        assert!(
            err.to_string()
                .contains("s3://no-such-bucket-for-store-tests/p at "),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_read_only_key_pair_reads_and_cannot_write() {
    let s = server_or_skip!("a_read_only_key_pair_reads_and_cannot_write");
    let args = s.args(&s.bucket, &s.fresh_prefix("read-only"));
    let writer = Store::open(&s.config(&args, &s.rw)).unwrap();
    let reader = Store::open(&s.config(&args, &s.readonly)).unwrap();
    let written = contract::weights(&writer, "v1/model.bin").await;
    let read = reader
        .get_verified("v1/model.bin", written.sha256, 100)
        .await
        .unwrap();
    assert_eq!(read, Bytes::from_static(b"weights"));
    assert_eq!(reader.list("v1", 10).await.unwrap().len(), 1);
    for err in [
        reader
            .put_new("v2/model.bin", Bytes::from_static(b"x"))
            .await
            .unwrap_err(),
        reader.delete("v1/model.bin").await.unwrap_err(),
    ] {
        eprintln!("{err}");
        assert_eq!(err.reason(), Reason::ReadOnly, "{err}");
        assert!(err.words().unwrap().starts_with("AccessDenied"), "{err}");
        s.assert_no_secrets(&format!("{err} {err:?}"));
    }
    assert_eq!(
        writer.head("v1/model.bin").await.unwrap().size,
        7,
        "the refused delete deleted"
    );
}

#[tokio::test]
async fn tls_with_the_stores_ca_bundle() {
    let s = server_or_skip!("tls_with_the_stores_ca_bundle");
    let tls = |ca_file: Option<&str>| StoreArgs {
        endpoint: Some(s.tls_endpoint.clone()),
        ca_file: ca_file.map(Into::into),
        ..s.args(&s.bucket, &s.fresh_prefix("tls"))
    };
    let store = Store::open(&s.config(&tls(Some(&s.ca_file)), &s.rw)).unwrap();
    contract::weights(&store, "v1/model.bin").await;

    // Without the bundle the server's certificate is not trusted: no request is sent.
    let untrusting = Store::open(&s.config(&tls(None), &s.rw)).unwrap();
    let err = untrusting.get("v1/model.bin", 100).await.unwrap_err();
    eprintln!("{err}");
    assert_eq!(err.reason(), Reason::Unreachable, "{err}");
    assert!(err.words().unwrap().contains("certificate"), "{err}");
}

#[test]
fn config_and_store_never_print_credentials() {
    let s = server_or_skip!("config_and_store_never_print_credentials");
    let args = s.args(&s.bucket, "p");
    let config = args
        .config_with(|| Credentials::new(s.rw.0.clone(), s.rw.1.clone()))
        .unwrap();
    let store = Store::open(&config).unwrap();
    s.assert_no_secrets(&format!(
        "{config:?} {config:#?} {config} {store:?} {store}"
    ));
}
