//! Object storage: sealed segments in a bucket of S3 (or any S3-compatible server), GCS or
//! Azure Blob, through the `object_store` crate. The local disk then keeps the WAL, the head
//! and a cache of what queries read from the bucket (`cache`); which segments are live is the
//! bucket's `catalog`.
//!
//! ```text
//! <bucket>/
//!   tenants/t-<hex of tenant id>/
//!     segments/<seq>.seg            a segment, uploaded whole once written (see `segment`);
//!                                   never changed, deleted once no catalog lists it
//!     catalog/<generation>.json     the tenant's live segments (see `catalog`)
//! ```
//!
//! The rest of Sawmill is synchronous (its own threads), and `object_store` is async: the
//! bucket runs its requests on a small runtime of its own and waits for them, so any thread may
//! call it, inside or outside the server's runtime.

pub mod cache;
pub mod catalog;

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use thiserror::Error;

use crate::config::CommonStorage;

#[derive(Debug, Error)]
pub enum BucketError {
    #[error("bucket {bucket}, object {key}: {source}")]
    Request {
        bucket: String,
        key: String,
        source: object_store::Error,
    },
    #[error("object storage: {0}")]
    Config(String),
}

/// One bucket and the runtime its requests run on.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// How the bucket is named in messages: `s3://logs`.
    name: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({})", self.name)
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio refuses inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Bucket {
    /// The bucket `common.storage` names, or `None` for local disk.
    pub fn from_config(cfg: &CommonStorage) -> Result<Option<Bucket>, BucketError> {
        let bad = |e: object_store::Error| BucketError::Config(e.to_string());
        let (store, name): (Arc<dyn ObjectStore>, String) = if let Some(s3) = &cfg.s3 {
            use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
            let mut b = AmazonS3Builder::from_env()
                .with_retry(retries())
                .with_client_options(client_options())
                .with_conditional_put(S3ConditionalPut::ETagMatch)
                .with_bucket_name(&s3.bucketnames);
            for (value, set) in [
                (
                    &s3.region,
                    AmazonS3Builder::with_region as fn(_, String) -> _,
                ),
                (&s3.access_key_id, AmazonS3Builder::with_access_key_id),
                (
                    &s3.secret_access_key,
                    AmazonS3Builder::with_secret_access_key,
                ),
                (&s3.session_token, AmazonS3Builder::with_token),
            ] {
                if !value.is_empty() {
                    b = set(b, value.clone());
                }
            }
            if !s3.endpoint.is_empty() {
                let endpoint = if s3.endpoint.contains("://") {
                    s3.endpoint.clone()
                } else if s3.insecure {
                    format!("http://{}", s3.endpoint)
                } else {
                    format!("https://{}", s3.endpoint)
                };
                b = b
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            if s3.s3forcepathstyle {
                b = b.with_virtual_hosted_style_request(false);
            }
            if s3.bucketnames.is_empty() {
                return Err(BucketError::Config(
                    "common.storage.s3.bucketnames is empty: name the bucket".into(),
                ));
            }
            (
                Arc::new(b.build().map_err(bad)?),
                format!("s3://{}", s3.bucketnames),
            )
        } else if let Some(gcs) = &cfg.gcs {
            use object_store::gcp::GoogleCloudStorageBuilder;
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_retry(retries())
                .with_client_options(client_options())
                .with_bucket_name(&gcs.bucket_name);
            if !gcs.service_account.is_empty() {
                b = b.with_service_account_key(&gcs.service_account);
            }
            (
                Arc::new(b.build().map_err(bad)?),
                format!("gs://{}", gcs.bucket_name),
            )
        } else if let Some(az) = &cfg.azure {
            use object_store::azure::MicrosoftAzureBuilder;
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_retry(retries())
                .with_client_options(client_options())
                .with_container_name(&az.container_name);
            if !az.account_name.is_empty() {
                b = b.with_account(&az.account_name);
            }
            if !az.account_key.is_empty() {
                b = b.with_access_key(&az.account_key);
            }
            if az.endpoint_suffix.contains("://") {
                b = b
                    .with_allow_http(az.endpoint_suffix.starts_with("http://"))
                    .with_endpoint(az.endpoint_suffix.clone());
            } else if !az.endpoint_suffix.is_empty() {
                b = b.with_endpoint(format!(
                    "https://{}.blob.{}",
                    az.account_name,
                    az.endpoint_suffix.trim_start_matches("blob.")
                ));
            }
            (
                Arc::new(b.build().map_err(bad)?),
                format!("azure://{}", az.container_name),
            )
        } else {
            return Ok(None);
        };
        Bucket::new(store, name).map(Some)
    }

    /// A bucket over any `object_store` (tests use the in-memory one).
    pub fn new(store: Arc<dyn ObjectStore>, name: String) -> Result<Bucket, BucketError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sawmill-bucket")
            .enable_all()
            .build()
            .map_err(|e| BucketError::Config(format!("cannot start the bucket's runtime: {e}")))?;
        Ok(Bucket {
            store,
            name,
            runtime: Some(runtime),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on the bucket's runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, object_store::Error>> + Send + 'static,
        key: &str,
    ) -> Result<T, BucketError> {
        let rt = self
            .runtime
            .as_ref()
            .expect("bug: runtime taken before drop");
        let res = futures::executor::block_on(rt.spawn(f)).unwrap_or_else(|join| {
            Err(object_store::Error::Generic {
                store: "sawmill",
                source: Box::new(join),
            })
        });
        res.map_err(|source| BucketError::Request {
            bucket: self.name.clone(),
            key: key.to_string(),
            source,
        })
    }

    /// Checks at start that the bucket answers and the credentials are good: a clear error
    /// now instead of a failing flush later.
    pub fn check(&self) -> Result<(), BucketError> {
        let store = self.store.clone();
        self.run(
            async move {
                let mut list = store.list(Some(&Key::from("tenants")));
                list.try_next().await.map(|_| ())
            },
            "tenants/",
        )
    }

    pub fn get(&self, key: &str) -> Result<Bytes, BucketError> {
        let store = self.store.clone();
        let k = Key::from(key);
        self.run(async move { store.get(&k).await?.bytes().await }, key)
    }

    /// Bytes `range` of the object (one ranged GET).
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, BucketError> {
        let store = self.store.clone();
        let k = Key::from(key);
        self.run(async move { store.get_range(&k, range).await }, key)
    }

    pub fn put(&self, key: &str, data: Bytes) -> Result<(), BucketError> {
        let store = self.store.clone();
        let k = Key::from(key);
        self.run(
            async move { store.put(&k, PutPayload::from(data)).await.map(|_| ()) },
            key,
        )
    }

    /// Creates the object unless it exists (a conditional write, `If-None-Match: *`): `false`
    /// when another writer created it first.
    pub fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, BucketError> {
        let store = self.store.clone();
        let k = Key::from(key);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let res = self.run(
            async move { store.put_opts(&k, PutPayload::from(data), opts).await },
            key,
        );
        match res {
            Ok(_) => Ok(true),
            Err(BucketError::Request {
                source: object_store::Error::AlreadyExists { .. },
                ..
            })
            | Err(BucketError::Request {
                source: object_store::Error::Precondition { .. },
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The keys under `prefix` (a folder, without its trailing slash), with their sizes.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, BucketError> {
        let store = self.store.clone();
        let p = Key::from(prefix);
        self.run(
            async move {
                let metas: Vec<_> = store.list(Some(&p)).try_collect().await?;
                Ok(metas
                    .into_iter()
                    .map(|m| (m.location.to_string(), m.size))
                    .collect())
            },
            prefix,
        )
    }

    /// Deletes the object; one already gone is not an error.
    pub fn delete(&self, key: &str) -> Result<(), BucketError> {
        let store = self.store.clone();
        let k = Key::from(key);
        let res = self.run(async move { store.delete(&k).await }, key);
        match res {
            Err(BucketError::Request {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(()),
            other => other,
        }
    }

    /// Whether the error says the object does not exist.
    pub fn is_not_found(e: &BucketError) -> bool {
        matches!(
            e,
            BucketError::Request {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }
}

/// A request that fails for a reason worth retrying (a 5xx, a dropped connection) is retried a
/// few times within 20 seconds: a bucket that does not answer is an error soon, not a hang.
fn retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: std::time::Duration::from_secs(20),
        ..Default::default()
    }
}

fn client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_connect_timeout(std::time::Duration::from_secs(5))
        .with_timeout(std::time::Duration::from_secs(60))
}

/// Where a tenant's objects live in the bucket.
pub fn tenant_prefix(tenant: &str) -> String {
    format!("tenants/{}", crate::model::tenant::tenant_dir_name(tenant))
}

pub fn segment_key(tenant: &str, seq: u64) -> String {
    format!("{}/segments/{seq:020}.seg", tenant_prefix(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn memory() -> Bucket {
        Bucket::new(
            Arc::new(object_store::memory::InMemory::new()),
            "memory://test".into(),
        )
        .unwrap()
    }

    #[test]
    fn requests_round_trip() {
        let b = memory();
        b.check().unwrap();
        b.put("a/b", Bytes::from_static(b"hello world")).unwrap();
        assert_eq!(&b.get("a/b").unwrap()[..], b"hello world");
        assert_eq!(&b.get_range("a/b", 6..11).unwrap()[..], b"world");
        assert!(b.put_if_absent("a/c", Bytes::from_static(b"1")).unwrap());
        assert!(!b.put_if_absent("a/c", Bytes::from_static(b"2")).unwrap());
        assert_eq!(&b.get("a/c").unwrap()[..], b"1");
        let mut keys = b.list("a").unwrap();
        keys.sort();
        assert_eq!(keys, vec![("a/b".into(), 11), ("a/c".into(), 1)]);
        b.delete("a/b").unwrap();
        b.delete("a/b").unwrap();
        assert!(Bucket::is_not_found(&b.get("a/b").unwrap_err()));
    }

    #[test]
    fn usable_inside_another_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = memory();
            b.put("k", Bytes::from_static(b"v")).unwrap();
            assert_eq!(&b.get("k").unwrap()[..], b"v");
            drop(b);
        });
    }
}
