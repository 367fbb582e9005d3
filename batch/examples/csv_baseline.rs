//! The `csv` crate's `ByteRecord` reader in place of the batch's own scanner, feeding the same
//! aggregation: the baseline `bench/batch.sh` measures the hand-written scanner against.
//!
//!     cargo run --release -p srctraffic-batch --example csv_baseline -- DIR
//!
//! Reads every `*.csv` below DIR, one file per rayon task, and prints the lines counted and
//! their bytes (as `aggregate` would count them, without committing anything).

use rayon::prelude::*;
use srctraffic_batch::aggregate::Aggregator;
use srctraffic_batch::header::{self, ColumnNames};
use srctraffic_batch::scan::{Fields, Sink};
use std::sync::Mutex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: csv_baseline DIR")?;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let run = Mutex::new(Aggregator::new(0, i64::MAX, false));
    files
        .par_iter()
        .try_for_each(|path| -> Result<(), String> {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .from_path(path)
                .map_err(|e| e.to_string())?;
            let head: Vec<&[u8]> = reader
                .byte_headers()
                .map_err(|e| e.to_string())?
                .iter()
                .collect();
            let cols = header::parse(&head.join(&b","[..]), &ColumnNames::default())
                .map_err(|e| e.to_string())?;
            let mut agg = Aggregator::new(0, i64::MAX, false);
            let mut rec = csv::ByteRecord::new();
            let mut line = 1;
            while reader
                .read_byte_record(&mut rec)
                .map_err(|e| e.to_string())?
            {
                line += 1;
                let get = |i: usize| rec.get(i).unwrap_or(b"");
                let f = Fields {
                    time: get(cols.time),
                    domain: get(cols.domain),
                    bytes: get(cols.bytes),
                    scheme: cols.scheme.map(get),
                    status: cols.status.map(get),
                    cache: cols.cache.map(get),
                };
                agg.record(&f, line, rec.as_slice());
            }
            let mut guard = run.lock().map_err(|e| e.to_string())?;
            agg.drain_into(&mut guard);
            Ok(())
        })?;
    let run = run.into_inner().map_err(|e| e.to_string())?;
    println!(
        "{} lines counted, {} bytes",
        run.stats.accepted, run.stats.bytes
    );
    Ok(())
}
