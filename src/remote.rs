//! Object storage (`s3://`, `gs://`, `az://`, `file://` URLs for `--in`, `--out`): the one door to
//! the `object_store` crate, shared by `source` (listing and reading inputs) and `sink` (the
//! output's lock, uploads and commit), as `fsops.rs` is for local folders. The rest of the tool
//! sees blocking calls on [`Location`] with plain names relative to it; the async calls run on one
//! small tokio runtime kept for the whole process.
//!
//! Credentials, regions and endpoints come from the environment the way each provider's own tools
//! read them: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP` (and the instance and web-identity chains) for S3;
//! `GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_APPLICATION_CREDENTIALS` for GCS; `AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN` and the others `object_store` reads
//! for Azure. Built without the cargo feature `cloud`, every URL is refused with a message that
//! names the feature.

use std::path::Path;

/// Whether a `--in`/`--out`/`--errors-to`/`--archive` value is a URL (`scheme://...`) rather than
/// a local path: config files must not make a URL relative to their folder, and the runs choose
/// the object store backend by it.
pub fn is_url(path: &Path) -> bool {
    let Some(text) = path.to_str() else {
        return false;
    };
    match text.split_once("://") {
        Some((scheme, _)) => {
            scheme.len() > 1
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// One object under a [`Location`], as a listing gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's key relative to the location, with `/` separators.
    pub relative: String,
    /// The object's size in bytes.
    pub size: u64,
    /// Last modification, nanoseconds since 1970 (what `--incremental` records as its time).
    pub modified: u128,
}

#[cfg(feature = "cloud")]
pub use imp::{runtime, Location};

#[cfg(not(feature = "cloud"))]
pub use stub::Location;

#[cfg(feature = "cloud")]
mod imp {
    use std::io::{self, Read};
    use std::ops::Range;
    use std::sync::{Arc, OnceLock};

    use anyhow::{bail, Context, Result};
    use futures::stream::{BoxStream, StreamExt};
    use object_store::path::Path as Key;
    use object_store::{
        aws::AmazonS3Builder, azure::MicrosoftAzureBuilder, gcp::GoogleCloudStorageBuilder,
        local::LocalFileSystem, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode, PutOptions,
        PutPayload, WriteMultipart,
    };
    use url::Url;

    use super::ObjectInfo;

    /// Bytes per uploaded part (and per request of a streamed read); S3 wants at least 5 MiB.
    const UPLOAD_PART_BYTES: usize = 8 << 20;

    /// Parts of one upload in flight at once: bounds an upload's memory to a few parts.
    const UPLOAD_PARTS_IN_FLIGHT: usize = 4;

    /// The process's I/O runtime: two threads drive every request (parsing stays on the worker
    /// threads, which wait on it). The Delta kernel's engine runs its tasks here too, so a
    /// connection pool never outlives the runtime that opened it.
    pub fn runtime() -> &'static tokio::runtime::Runtime {
        static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("fhir2table-io")
                .enable_all()
                .build()
                .expect("the system can start the I/O runtime's threads")
        })
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        runtime().block_on(future)
    }

    /// A folder-like prefix on an object store: `s3://bucket/prefix`. Names given to its methods
    /// are relative to it, `/`-separated.
    #[derive(Debug, Clone)]
    pub struct Location {
        store: Arc<dyn ObjectStore>,
        /// The prefix inside the bucket (empty for the bucket's root).
        prefix: Key,
        /// The URL without a trailing `/`, for messages and for the Delta kernel.
        url: String,
    }

    impl Location {
        /// Connects to the store a URL names, with credentials and endpoint from the environment.
        pub fn parse(text: &str) -> Result<Location> {
            let url = Url::parse(text).with_context(|| format!("{text} is not a valid URL"))?;
            let (scheme, prefix) =
                ObjectStoreScheme::parse(&url).with_context(|| format!("{text}: not an object store URL"))?;
            let connect = format!("cannot connect to {text} (check the credentials in the environment)");
            let store: Arc<dyn ObjectStore> = match scheme {
                ObjectStoreScheme::AmazonS3 => Arc::new(
                    AmazonS3Builder::from_env()
                        .with_url(text)
                        .build()
                        .context(connect)?,
                ),
                ObjectStoreScheme::GoogleCloudStorage => Arc::new(
                    GoogleCloudStorageBuilder::from_env()
                        .with_url(text)
                        .build()
                        .context(connect)?,
                ),
                ObjectStoreScheme::MicrosoftAzure => Arc::new(
                    MicrosoftAzureBuilder::from_env()
                        .with_url(text)
                        .build()
                        .context(connect)?,
                ),
                ObjectStoreScheme::Local => Arc::new(LocalFileSystem::new()),
                other => {
                    bail!("{text}: {other:?} URLs are not supported (use s3://, gs://, az:// or file://)")
                }
            };
            Ok(Location {
                store,
                prefix,
                url: text.trim_end_matches('/').to_owned(),
            })
        }

        /// Whether `other` is on the same store (scheme and bucket or container), so objects can be
        /// copied between the two without passing through this machine.
        pub fn same_store(&self, other: &Location) -> bool {
            let root = |url: &str| {
                let (scheme, rest) = url.split_once("://").unwrap_or((url, ""));
                format!("{scheme}://{}", rest.split('/').next().unwrap_or_default())
            };
            root(&self.url) == root(&other.url)
        }

        /// Copies the object `relative` of this location to the name `to` of `target` (on the
        /// same store: see [`Location::same_store`]).
        pub fn copy_to(&self, relative: &str, target: &Location, to: &str) -> Result<()> {
            block_on(self.store.copy(&self.key(relative), &target.key(to)))
                .with_context(|| format!("cannot copy {} to {}", self.display(relative), target.display(to)))
        }

        /// The location `relative` (a `/`-separated name) below this one.
        pub fn child(&self, relative: &str) -> Location {
            Location {
                store: self.store.clone(),
                prefix: self.key(relative),
                url: self.display(relative),
            }
        }

        /// The location this one is in, and this one's last name (a single-object `--in`).
        pub fn split_last(&self) -> Option<(Location, String)> {
            let parts: Vec<_> = self.prefix.parts().collect();
            let (last, parent) = parts.split_last()?;
            let url = self.url.rsplit_once('/')?.0.to_owned();
            let location = Location {
                store: self.store.clone(),
                prefix: Key::from_iter(parent.iter().cloned()),
                url,
            };
            Some((location, last.as_ref().to_owned()))
        }

        /// The URL of a name below the location (the location's own URL for an empty name).
        pub fn display(&self, relative: &str) -> String {
            match relative.is_empty() {
                true => self.url.clone(),
                false => format!("{}/{relative}", self.url),
            }
        }

        /// The URL of the location with a trailing `/`: a folder URL (Delta table roots).
        pub fn folder_url(&self) -> Result<Url> {
            Url::parse(&format!("{}/", self.url)).with_context(|| format!("{} is not a valid URL", self.url))
        }

        /// The store itself, for the Delta kernel's engine (which takes URLs, not names).
        pub fn store(&self) -> Arc<dyn ObjectStore> {
            self.store.clone()
        }

        /// The key of a name below the location. Names are taken as they are (as listed): a
        /// name that is not a valid key part (`.`, `..`) is percent-encoded instead.
        fn key(&self, relative: &str) -> Key {
            let parts = relative.split('/').filter(|part| !part.is_empty());
            let joined: Vec<&str> = std::iter::once(self.prefix.as_ref())
                .filter(|prefix| !prefix.is_empty())
                .chain(parts.clone())
                .collect();
            Key::parse(joined.join("/"))
                .unwrap_or_else(|_| parts.fold(self.prefix.clone(), |key, part| key.clone().join(part)))
        }

        fn relative_of(&self, key: &Key) -> Option<String> {
            let parts: Vec<String> = key
                .prefix_match(&self.prefix)?
                .map(|p| p.as_ref().to_owned())
                .collect();
            Some(parts.join("/"))
        }

        /// Every object below `relative` (recursively), with names relative to the location.
        pub fn list(&self, relative: &str) -> Result<Vec<ObjectInfo>> {
            let base = self.key(relative);
            let listing: Vec<_> = block_on(self.store.list(Some(&base)).collect());
            let mut objects = Vec::new();
            for meta in listing {
                let meta = meta.with_context(|| format!("cannot list {}", self.display(relative)))?;
                let Some(name) = self.relative_of(&meta.location) else {
                    continue;
                };
                objects.push(ObjectInfo {
                    relative: name,
                    size: meta.size,
                    modified: meta
                        .last_modified
                        .timestamp_nanos_opt()
                        .map_or(0, |n| n.max(0) as u128),
                });
            }
            Ok(objects)
        }

        /// Whether any object lies below the location (one listing request, not the whole list).
        pub fn has_objects(&self) -> Result<bool> {
            let mut listing = self.store.list(Some(&self.prefix));
            match block_on(listing.next()) {
                None => Ok(false),
                Some(Ok(_)) => Ok(true),
                Some(Err(error)) => Err(error).with_context(|| format!("cannot list {}", self.url)),
            }
        }

        /// The names of the "folders" right below `relative` (common prefixes), sorted.
        pub fn folders(&self, relative: &str) -> Result<Vec<String>> {
            let base = self.key(relative);
            let listing = block_on(self.store.list_with_delimiter(Some(&base)))
                .with_context(|| format!("cannot list {}", self.display(relative)))?;
            let mut names: Vec<String> = listing
                .common_prefixes
                .iter()
                .filter_map(|key| key.filename().map(str::to_owned))
                .collect();
            names.sort();
            Ok(names)
        }

        /// The object's size and time, or `None` when there is no such object.
        pub fn head(&self, relative: &str) -> Result<Option<ObjectInfo>> {
            match block_on(self.store.head(&self.key(relative))) {
                Ok(meta) => Ok(Some(ObjectInfo {
                    relative: relative.to_owned(),
                    size: meta.size,
                    modified: meta
                        .last_modified
                        .timestamp_nanos_opt()
                        .map_or(0, |n| n.max(0) as u128),
                })),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => {
                    Err(error).with_context(|| format!("cannot look at {}", self.display(relative)))
                }
            }
        }

        /// A reader streaming the object (or the byte `range` of it): bytes arrive as the
        /// request delivers them, so memory stays at one network chunk whatever the size.
        pub fn reader(&self, relative: &str, range: Option<Range<u64>>) -> io::Result<Box<dyn Read + Send>> {
            let options = object_store::GetOptions::new().with_range(range);
            let result = block_on(self.store.get_opts(&self.key(relative), options)).map_err(io_error)?;
            Ok(Box::new(StreamReader {
                stream: result.into_stream(),
                chunk: bytes::Bytes::new(),
            }))
        }

        /// The whole object, or `None` when there is none (small files: the state, a footer).
        pub fn get(&self, relative: &str) -> Result<Option<Vec<u8>>> {
            let key = self.key(relative);
            let fetched = block_on(async { self.store.get(&key).await?.bytes().await });
            match fetched {
                Ok(bytes) => Ok(Some(bytes.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(error).with_context(|| format!("cannot read {}", self.display(relative))),
            }
        }

        /// The bytes `range` of an object.
        pub fn get_range(&self, relative: &str, range: Range<u64>) -> Result<Vec<u8>> {
            let bytes = block_on(self.store.get_range(&self.key(relative), range))
                .with_context(|| format!("cannot read {}", self.display(relative)))?;
            Ok(bytes.to_vec())
        }

        /// Writes a small object whole (replacing any): readers see the old or the new one.
        pub fn put(&self, relative: &str, content: &[u8]) -> Result<()> {
            let payload = PutPayload::from(content.to_vec());
            block_on(self.store.put(&self.key(relative), payload))
                .with_context(|| format!("cannot write {}", self.display(relative)))?;
            Ok(())
        }

        /// Writes a small object only if there is none (a conditional PUT): `false` when one
        /// exists. The output's lock is taken with it.
        pub fn put_new(&self, relative: &str, content: &[u8]) -> Result<bool> {
            let payload = PutPayload::from(content.to_vec());
            let options = PutOptions::from(PutMode::Create);
            match block_on(self.store.put_opts(&self.key(relative), payload, options)) {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                Err(error) => Err(error).with_context(|| format!("cannot create {}", self.display(relative))),
            }
        }

        /// Uploads a local file as the object `relative`, streamed in parts (a multipart upload
        /// for a large file), so the object appears whole when the upload completes, or not at
        /// all; memory stays at a few parts.
        pub fn upload(&self, relative: &str, local: &std::path::Path) -> Result<()> {
            let mut file = std::fs::File::open(local).with_context(|| {
                format!("cannot upload {} to {}", local.display(), self.display(relative))
            })?;
            self.upload_from(relative, &mut file)
                .with_context(|| format!("cannot upload {}", local.display()))
        }

        /// [`Location::upload`] of what a reader gives: content up to one part goes up in one
        /// PUT, more in a multipart upload.
        pub fn upload_from(&self, relative: &str, content: &mut dyn Read) -> Result<()> {
            let failed = || format!("cannot upload to {}", self.display(relative));
            let mut first = Vec::with_capacity(UPLOAD_PART_BYTES);
            content
                .take(UPLOAD_PART_BYTES as u64 + 1)
                .read_to_end(&mut first)
                .with_context(failed)?;
            if first.len() <= UPLOAD_PART_BYTES {
                return self.put(relative, &first);
            }
            let key = self.key(relative);
            block_on(async {
                let upload = self.store.put_multipart(&key).await?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_BYTES);
                writer.write(&first);
                let mut buffer = vec![0u8; UPLOAD_PART_BYTES];
                let fed: object_store::Result<()> = async {
                    loop {
                        let read =
                            content
                                .read(&mut buffer)
                                .map_err(|error| object_store::Error::Generic {
                                    store: "upload source",
                                    source: Box::new(error),
                                })?;
                        if read == 0 {
                            return Ok(());
                        }
                        writer.wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT).await?;
                        writer.write(&buffer[..read]);
                    }
                }
                .await;
                match fed {
                    Ok(()) => writer.finish().await.map(|_| ()),
                    Err(error) => {
                        // No half-uploaded parts left behind (they cost storage on S3).
                        let _ = writer.abort().await;
                        Err(error)
                    }
                }
            })
            .with_context(failed)
        }

        /// Copies an object inside the store (server-side, no bytes through this machine).
        pub fn copy(&self, from: &str, to: &str) -> Result<()> {
            block_on(self.store.copy(&self.key(from), &self.key(to)))
                .with_context(|| format!("cannot copy {} to {}", self.display(from), self.display(to)))
        }

        /// Deletes an object; one already gone is no error (steps are replayed after a crash).
        pub fn delete(&self, relative: &str) -> Result<()> {
            match block_on(self.store.delete(&self.key(relative))) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(error).with_context(|| format!("cannot delete {}", self.display(relative))),
            }
        }

        /// Deletes every object below `relative`.
        pub fn delete_all(&self, relative: &str) -> Result<()> {
            for object in self.list(relative)? {
                self.delete(&object.relative)?;
            }
            Ok(())
        }
    }

    /// A blocking [`Read`] over a GET request's body stream.
    struct StreamReader {
        stream: BoxStream<'static, object_store::Result<bytes::Bytes>>,
        /// What is left of the chunk the stream gave last (shared with the stream's buffer, not
        /// copied).
        chunk: bytes::Bytes,
    }

    impl Read for StreamReader {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            while self.chunk.is_empty() {
                match block_on(self.stream.next()) {
                    None => return Ok(0),
                    Some(Ok(bytes)) => self.chunk = bytes,
                    Some(Err(error)) => return Err(io_error(error)),
                }
            }
            let count = buffer.len().min(self.chunk.len());
            buffer[..count].copy_from_slice(&self.chunk.split_to(count));
            Ok(count)
        }
    }

    fn io_error(error: object_store::Error) -> io::Error {
        match error {
            object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, error),
            other => io::Error::other(other),
        }
    }
}

#[cfg(not(feature = "cloud"))]
mod stub {
    use std::io::{self, Read};
    use std::ops::Range;

    use anyhow::{bail, Result};

    use super::ObjectInfo;

    /// Object storage in a build without the cargo feature `cloud`: no location can be made, so
    /// every method is unreachable.
    #[derive(Debug, Clone)]
    pub enum Location {}

    impl Location {
        /// Refuses every URL, naming the missing feature.
        pub fn parse(text: &str) -> Result<Location> {
            bail!("{text}: this fhir2table was built without object storage support (cargo feature `cloud`)")
        }
        /// Unreachable: no location exists in this build.
        pub fn child(&self, _relative: &str) -> Location {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn split_last(&self) -> Option<(Location, String)> {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn display(&self, _relative: &str) -> String {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn list(&self, _relative: &str) -> Result<Vec<ObjectInfo>> {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn has_objects(&self) -> Result<bool> {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn folders(&self, _relative: &str) -> Result<Vec<String>> {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn head(&self, _relative: &str) -> Result<Option<ObjectInfo>> {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn reader(
            &self,
            _relative: &str,
            _range: Option<Range<u64>>,
        ) -> io::Result<Box<dyn Read + Send>> {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn same_store(&self, _other: &Location) -> bool {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn copy_to(&self, _relative: &str, _target: &Location, _to: &str) -> Result<()> {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn delete(&self, _relative: &str) -> Result<()> {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn put(&self, _relative: &str, _content: &[u8]) -> Result<()> {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn upload_from(&self, _relative: &str, _content: &mut dyn Read) -> Result<()> {
            match *self {}
        }
        /// Unreachable: no location exists in this build.
        pub fn get(&self, _relative: &str) -> Result<Option<Vec<u8>>> {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        for url in [
            "s3://bucket/prefix",
            "gs://b",
            "az://container/x",
            "file:///tmp/x",
            "s3a://b/c",
        ] {
            assert!(is_url(Path::new(url)), "{url}");
        }
        for path in ["/data/in", "data/in", "C:\\data", "./s3://x", "weird:name/x", ""] {
            assert!(!is_url(Path::new(path)), "{path}");
        }
    }
}
