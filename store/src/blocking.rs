//! [`Store`] for synchronous callers (the trainer): each call runs on a runtime of its own, one
//! thread, so it must not be called from inside an async runtime (Tokio refuses to block there).

use bytes::Bytes;

use crate::config::StoreConfig;
use crate::digest::Sha256;
use crate::error::{Operation, Reason, StoreError};
use crate::store::{ObjectInfo, Store, Written};

#[derive(Debug)]
pub struct BlockingStore {
    store: Store,
    runtime: tokio::runtime::Runtime,
}

impl BlockingStore {
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Failed {
                op: Operation::Open,
                reason: Reason::Other,
                key: String::new(),
                store: config.to_string(),
                words: format!("cannot start an I/O runtime: {e}"),
            })?;
        // The HTTP client is built inside the runtime it will run on.
        let store = {
            let _inside = runtime.enter();
            Store::open(config)?
        };
        Ok(Self { store, runtime })
    }

    /// The async store, to hand to code that has a runtime.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn put_new(&self, key: &str, bytes: impl Into<Bytes>) -> Result<Written, StoreError> {
        self.runtime.block_on(self.store.put_new(key, bytes.into()))
    }

    pub fn get(&self, key: &str, limit: u64) -> Result<Bytes, StoreError> {
        self.runtime.block_on(self.store.get(key, limit))
    }

    pub fn get_verified(
        &self,
        key: &str,
        expected: Sha256,
        limit: u64,
    ) -> Result<Bytes, StoreError> {
        self.runtime
            .block_on(self.store.get_verified(key, expected, limit))
    }

    pub fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.runtime.block_on(self.store.head(key))
    }

    pub fn list(&self, prefix: &str, limit: usize) -> Result<Vec<ObjectInfo>, StoreError> {
        self.runtime.block_on(self.store.list(prefix, limit))
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.runtime.block_on(self.store.delete(key))
    }
}
