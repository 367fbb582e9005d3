//! Integration tests of the function: raw HTTP against `srctraffic-api serve`, and real Lambda
//! event JSON through `lambda_http::request::from_str` into the same router.

mod auth;
mod console;
mod errors;
mod family;
mod helpers;
mod limits;
mod robustness;
mod s3;
mod seed;
mod series;
mod shared_guard;
