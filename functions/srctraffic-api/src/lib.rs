//! The back-to-origin API function (`DescribeDomainRealTimeSrcTrafficData` and its siblings):
//! one handler behind an axum [`Router`], served by `lambda_http` under AWS Lambda and by
//! `axum::serve` on a local address otherwise; [`console`] is the page that draws it.
//!
//! [`Router`]: axum::Router

pub mod config;
pub mod console;
pub mod handler;
pub mod server;
pub mod shared_guard;

pub use config::{Cli, Settings};
pub use handler::{AppState, router};
