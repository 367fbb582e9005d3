//! The contract of `DescribeDomainRealTimeSrcTrafficData` and its back-to-origin siblings, shared
//! by the batch job and the API function.
//!
//! - [`api`]: the actions, request parsing and validation, the error codes, JSON and XML
//!   rendering. No I/O.
//! - [`time`]: minutes and days since the Unix epoch, and the API's time format.
//! - [`domain`]: host names as the API and the logs accept them.
//! - [`bucket`]: the per-(domain, UTC day) object of 1,440 minute totals.
//! - [`store`]: the narrow storage port, its local-directory and in-memory implementations, the
//!   object key layout and the ingest watermark.
//! - [`segment`]: one run's cells of one day, immutable, published through the manifest.
//! - [`published`]: what readers see: base buckets plus published segments, one run at a time.
//! - [`query`]: answers a checked request from the store.
//! - [`clock`]: the data clock ("now"), real or fixed.
//! - [`auth`]: request signatures (V1 and V3), nonces, throttling, credentials.

pub mod api;
pub mod auth;
pub mod bucket;
pub mod clock;
pub mod domain;
pub mod logging;
pub mod published;
pub mod query;
pub mod segment;
pub mod store;
pub mod time;

pub use api::action::Action;
pub use api::error::ApiError;
pub use api::request::{Format, Interval, QueryRequest, RawRequest};
pub use clock::Clock;
pub use domain::{DomainList, DomainName};
pub use store::{Store, StoreError};
pub use time::{Day, Minute};
