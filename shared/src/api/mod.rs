//! The HTTP-facing contract: parameters in, checked request or [`error::ApiError`] out, and the
//! JSON and XML documents that answer it. Pure functions; the function crate does the I/O.

pub mod action;
pub mod error;
pub mod params;
pub mod render;
pub mod request;
