//! Requests served, by kind, for measuring what each way of running the batch costs on S3
//! (S3 bills GET-class and PUT-class requests apart).

use std::sync::atomic::{AtomicU64, Ordering};

static GET: AtomicU64 = AtomicU64::new(0);
static HEAD: AtomicU64 = AtomicU64::new(0);
static PUT: AtomicU64 = AtomicU64::new(0);
static LIST: AtomicU64 = AtomicU64::new(0);
static DELETE: AtomicU64 = AtomicU64::new(0);
static OTHER: AtomicU64 = AtomicU64::new(0);

/// Counts one request by its method and target.
pub fn count(method: &http::Method, uri: &http::Uri) {
    let query = uri.query().unwrap_or("");
    // Path-style: `/bucket` is the bucket, `/bucket/key` an object.
    let on_object = uri
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    let counter = match *method {
        http::Method::GET if on_object => &GET,
        http::Method::GET if query.contains("list-type") || query.contains("prefix") => &LIST,
        http::Method::HEAD => &HEAD,
        http::Method::PUT if on_object => &PUT,
        http::Method::DELETE => &DELETE,
        http::Method::POST if query.contains("delete") => &DELETE,
        _ => &OTHER,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Requests served so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Object reads.
    pub get: u64,
    /// Object metadata reads.
    pub head: u64,
    /// Object writes.
    pub put: u64,
    /// Listings.
    pub list: u64,
    /// Deletions (free on S3).
    pub delete: u64,
    /// Anything else (bucket calls).
    pub other: u64,
}

/// Requests served so far by every server in this process.
pub fn counts() -> Counts {
    Counts {
        get: GET.load(Ordering::Relaxed),
        head: HEAD.load(Ordering::Relaxed),
        put: PUT.load(Ordering::Relaxed),
        list: LIST.load(Ordering::Relaxed),
        delete: DELETE.load(Ordering::Relaxed),
        other: OTHER.load(Ordering::Relaxed),
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{\"get\":{},\"head\":{},\"put\":{},\"list\":{},\"delete\":{},\"other\":{}}}",
            self.get, self.head, self.put, self.list, self.delete, self.other
        )
    }
}
