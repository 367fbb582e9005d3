//! s3s-fs with S3's atomic writes and reads.
//!
//! s3s-fs 0.14.1 checks `If-Match` / `If-None-Match` and then writes, with nothing stopping a
//! second writer in between: four clients doing 40 `If-Match` increments each all got 200 and
//! the counter ended at 94, not 160. It also renames the new content into place before it
//! stores the new checksum, so a read in between gets new bytes with the old checksum (which
//! the SDK rejects). Amazon S3 makes each of these one step, and the exactly-once commit relies
//! on that, so here every write of an object holds that object's lock across s3s-fs's check and
//! write, and a read holds it (shared) while s3s-fs opens the object. Listings go straight
//! through. And where s3s-fs answers 412 to an `If-Match` write on an object that does not
//! exist, S3 answers 404 `NoSuchKey`: so does this server, so clients meet that case here.

use s3s::s3_error;
use std::path::{Path, PathBuf};

use crate::key_locks::KeyLocks;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};
use std::future::Future;
use std::pin::Pin;

/// An S3 implementation whose object writes and reads are atomic per object.
pub struct AtomicWrites<S> {
    inner: S,
    locks: KeyLocks,
    root: PathBuf,
}

impl<S> AtomicWrites<S> {
    /// Wraps `inner`, an s3s-fs serving the buckets under `root`.
    pub fn new(inner: S, root: &Path) -> Self {
        AtomicWrites {
            inner,
            locks: KeyLocks::default(),
            root: root.to_path_buf(),
        }
    }

    /// Whether the object exists (s3s-fs keeps it at `root/bucket/key`).
    fn exists(&self, bucket: &str, key: &str) -> bool {
        let safe = |s: &str| !s.split('/').any(|p| p == ".." || p == ".");
        safe(bucket) && safe(key) && self.root.join(bucket).join(key).is_file()
    }
}

// `#[async_trait]` rewrites the `async fn`s it sees before macros expand, so these spell out
// the signature it gives the trait's methods.

/// Passes calls through; one marked `(write)` or `(read)` holds that lock of the object it
/// touches (`bucket`, `key`) for the call.
macro_rules! delegate {
    ($($name:ident $(($mode:ident))?: $input:ty => $output:ty;)*) => {$(
        fn $name<'life0, 'async_trait>(
            &'life0 self,
            req: S3Request<$input>,
        ) -> Pin<Box<dyn Future<Output = S3Result<S3Response<$output>>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                $(let _guard = self.locks.$mode(&req.input.bucket, &req.input.key).await;)?
                self.inner.$name(req).await
            })
        }
    )*};
}

#[async_trait::async_trait]
impl<S: S3> S3 for AtomicWrites<S> {
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let _guard = self.locks.write(&req.input.bucket, &req.input.key).await;
        if matches!(req.input.if_match, Some(ETagCondition::ETag(_)))
            && !self.exists(&req.input.bucket, &req.input.key)
        {
            return Err(s3_error!(NoSuchKey));
        }
        self.inner.put_object(req).await
    }

    delegate! {
        copy_object (write): CopyObjectInput => CopyObjectOutput;
        delete_object (write): DeleteObjectInput => DeleteObjectOutput;
        complete_multipart_upload (write): CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
        // The body streams after the call returns, from the file s3s-fs opened under the lock:
        // a later rename does not change what that handle reads.
        get_object (read): GetObjectInput => GetObjectOutput;
        head_object (read): HeadObjectInput => HeadObjectOutput;
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let keys: Vec<&str> = req
            .input
            .delete
            .objects
            .iter()
            .map(|o| o.key.as_str())
            .collect();
        let _guards = self.locks.write_all(&req.input.bucket, &keys).await;
        self.inner.delete_objects(req).await
    }

    delegate! {
        create_bucket: CreateBucketInput => CreateBucketOutput;
        delete_bucket: DeleteBucketInput => DeleteBucketOutput;
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
        head_bucket: HeadBucketInput => HeadBucketOutput;
        list_buckets: ListBucketsInput => ListBucketsOutput;
        list_objects: ListObjectsInput => ListObjectsOutput;
        list_objects_v2: ListObjectsV2Input => ListObjectsV2Output;
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
        upload_part: UploadPartInput => UploadPartOutput;
        upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
        list_parts: ListPartsInput => ListPartsOutput;
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
    }
}
