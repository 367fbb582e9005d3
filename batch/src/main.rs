//! `srctraffic-batch`: parses the command line and runs a subcommand.

use anyhow::Context;
use clap::Parser;
use srctraffic::Clock;
use srctraffic::store::Patience;
use srctraffic_batch::aggregate_cmd::{self, AggregateError, AggregateOptions};
use srctraffic_batch::cli::{AggregateArgs, Cli, Command};
use srctraffic_batch::header::ColumnNames;
use srctraffic_batch::{compact, follow, genlogs, ops};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let on_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    srctraffic::logging::init("warn", on_lambda);
    if on_lambda {
        return match srctraffic_batch::lambda::serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        };
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Prints a line to standard output. A reader that has gone away (`... | head -1`) is no error:
/// the work is done, so the program ends as it would have, quietly.
fn say(text: impl std::fmt::Display) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The runtime store calls run on; `aggregate` makes its own for the run itself.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?)
}

fn clock(now: Option<&str>) -> anyhow::Result<Clock> {
    match now {
        None => Ok(Clock::System),
        Some(s) => Clock::fixed(s).with_context(|| {
            format!("--now / SRCTRAFFIC_NOW must be yyyy-MM-ddTHH:mm:ssZ, got {s:?}")
        }),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Aggregate(args) => {
            let AggregateArgs {
                store,
                now,
                rejects,
                max_bad_ratio,
                time_column,
                domain_column,
                bytes_column,
                scheme_column,
                status_column,
                cache_status_column,
                format_flags,
                lease,
                threads,
                max_line_bytes,
                compact_after,
                verify,
                follow,
                interval,
                settle,
                inputs,
            } = *args;
            if let Some(n) = threads {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build_global()
                    .context("setting --threads")?;
            }
            let rt = runtime()?;
            let opened = rt
                .block_on(srctraffic::store::open(&store, Patience::Run))
                .with_context(|| format!("opening store {store}"))?;
            let opts = AggregateOptions {
                inputs,
                clock: clock(now.as_deref())?,
                rejects,
                max_bad_ratio,
                columns: ColumnNames {
                    time: time_column,
                    domain: domain_column,
                    bytes: bytes_column,
                    scheme: scheme_column,
                    status: status_column,
                    cache: cache_status_column,
                },
                formats: srctraffic_batch::lines::FormatSpec::from_flags(&format_flags)
                    .map_err(|e| anyhow::anyhow!(e))?,
                lease: Duration::from_secs(lease),
                progress: std::io::stderr().is_terminal(),
                max_line_bytes: max_line_bytes as usize,
                compact_after,
                verify,
                settle: settle
                    .or(follow.then_some(1.0))
                    .map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0))),
            };
            if follow {
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                {
                    let stop = stop.clone();
                    rt.spawn(async move {
                        let mut term = match tokio::signal::unix::signal(
                            tokio::signal::unix::SignalKind::terminate(),
                        ) {
                            Ok(t) => t,
                            Err(_) => return,
                        };
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term.recv() => {}
                        }
                        stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    });
                }
                let opts = AggregateOptions {
                    progress: false,
                    ..opts
                };
                let every = Duration::from_secs_f64(interval.clamp(0.05, 86_400.0));
                let done = follow::follow(&rt, opened, &opts, every, &stop, |line| {
                    let _ = say(line);
                });
                say(&done)?;
                return Ok(ExitCode::SUCCESS);
            }
            match aggregate_cmd::run(&rt, opened, &opts) {
                Ok(summary) => {
                    say(&summary)?;
                    if summary.has_unreadable() {
                        eprintln!(
                            "error: some inputs were unreadable and not committed; fix them and run again"
                        );
                        return Ok(ExitCode::from(3));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    if let AggregateError::TooManyBad { summary, .. } = &e {
                        say(summary)?;
                        eprintln!("error: {e}");
                        return Ok(ExitCode::from(2));
                    }
                    Err(e.into())
                }
            }
        }
        Command::GenLogs {
            out,
            domains,
            rows,
            day,
            gzip,
            seed,
            bad_ratio,
            files,
            truth,
            format,
            scheme_column,
        } => {
            let day = srctraffic::Day::parse(&day)
                .with_context(|| format!("--day must be YYYY-MM-DD, got {day:?}"))?;
            let opts = genlogs::GenOptions {
                out,
                domains,
                rows,
                day,
                gzip,
                seed,
                bad_ratio,
                files,
                truth,
                format,
                scheme_column,
            };
            let report = genlogs::generate(&opts).context("generating logs")?;
            say(&report)?;
            match format {
                srctraffic_batch::formats::Format::Nginx => say(format!(
                    "read with: --format nginx --nginx-log-format '{}'",
                    srctraffic_batch::genformats::NGINX_LOG_FORMAT
                ))?,
                srctraffic_batch::formats::Format::Jsonl => {
                    let flags: Vec<String> = srctraffic_batch::genformats::JSONL_KEYS
                        .iter()
                        .map(|(f, k)| format!("{f} {k}"))
                        .collect();
                    say(format!("read with: --format jsonl {}", flags.join(" ")))?
                }
                _ => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            store,
            domain,
            day,
            nonzero,
        } => {
            let rt = runtime()?;
            let opened = rt
                .block_on(srctraffic::store::open(&store, Patience::Run))
                .with_context(|| format!("opening store {store}"))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let done = rt
                .block_on(ops::inspect(
                    opened.as_ref(),
                    &domain,
                    &day,
                    nonzero,
                    &mut out,
                ))
                .and_then(|()| Ok(out.flush()?));
            ops::unless_closed_pipe(done)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { store } => {
            let rt = runtime()?;
            let opened = rt
                .block_on(srctraffic::store::open(&store, Patience::Run))
                .with_context(|| format!("opening store {store}"))?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let done = rt
                .block_on(ops::export(opened.as_ref(), &mut out))
                .and_then(|_| Ok(out.flush()?));
            ops::unless_closed_pipe(done)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compact { store, lease } => {
            let rt = runtime()?;
            let opened = rt
                .block_on(srctraffic::store::open(&store, Patience::Run))
                .with_context(|| format!("opening store {store}"))?;
            let ledger = srctraffic_batch::commit::Ledger::new(opened, Duration::from_secs(lease));
            let done = rt.block_on(compact::compact_all(&ledger))?;
            say(format_args!(
                "compacted {} days: {} segments into {} buckets{}",
                done.folded_days,
                done.segments,
                done.objects,
                if done.busy > 0 {
                    format!(
                        " ({} days left to another compaction in progress)",
                        done.busy
                    )
                } else {
                    String::new()
                }
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune { store, now } => {
            let rt = runtime()?;
            let opened = rt
                .block_on(srctraffic::store::open(&store, Patience::Run))
                .with_context(|| format!("opening store {store}"))?;
            let (days, objects) = rt.block_on(ops::prune(
                opened.as_ref(),
                clock(now.as_deref())?.now_unix(),
            ))?;
            say(format_args!("pruned {days} days, {objects} objects"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
