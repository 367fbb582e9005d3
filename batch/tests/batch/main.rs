//! Integration tests of `srctraffic-batch`: the real binary against real files and a store on
//! disk, checked against ground truth.

mod e2e;
mod exactly_once;
mod fixtures;
mod formats;
mod hardening;
mod helpers;
mod lambda;
mod s3;
