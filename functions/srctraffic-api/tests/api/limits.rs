//! A flood of idle, half-sent connections (more than the server process may hold descriptors
//! for) does not starve a real request: headers have a deadline and connections a cap.

use crate::helpers::*;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

fn set_nofile(limit: u64) -> std::io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads the struct we pass; nothing else is touched.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One real request: `Some(status)` if answered within `wait`, `None` if the connection was
/// closed or timed out first.
fn try_request(addr: &str, wait: Duration) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(wait)).ok()?;
    s.write_all(
        format!(
            "GET /?Action=DescribeDomainRealTimeSrcTrafficData&DomainName=example.com&StartTime=2019-12-10T20:00:00Z&EndTime=2019-12-10T20:01:00Z HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_idle_half_sent_connections_than_descriptors_do_not_starve_a_real_request() {
    const SERVER_FDS: u64 = 20_000;
    const ATTACKERS: usize = 24_000;
    let dir = seed_store().await;
    let mut command = Server::command(dir.path().as_os_str(), &["--auth", "off"]);
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe { command.pre_exec(|| set_nofile(SERVER_FDS)) };
    let mut server = Server::spawn(command);
    let addr = server.addr.clone();
    assert_eq!(try_request(&addr, Duration::from_secs(5)), Some(200));

    // More connections than one process may hold here: two helper processes (this test binary
    // again, running `flood_helper`) hold 12,000 each, from their own source addresses.
    let started = Instant::now();
    let mut helpers = Vec::new();
    for source in ["127.0.0.2", "127.0.0.3"] {
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "limits::flood_helper",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("SRCTRAFFIC_FLOOD_TARGET", &addr)
            .env("SRCTRAFFIC_FLOOD_SOURCE", source)
            .env("SRCTRAFFIC_FLOOD_COUNT", (ATTACKERS / 2).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The harness prints its own words on the same line: look for ours.
        let mut line = String::new();
        let mut out = std::io::BufReader::new(helper.stdout.take().unwrap());
        let n = loop {
            line.clear();
            if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
                break 0;
            }
            if let Some((_, n)) = line.split_once("held ") {
                break n.trim().parse().unwrap_or(0);
            }
        };
        helpers.push((helper, n));
    }
    let held: usize = helpers.iter().map(|h| h.1).sum();
    eprintln!(
        "{held} of {ATTACKERS} attacking connections made in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        held as u64 > SERVER_FDS,
        "the flood must pass the server's limit"
    );

    let asked = Instant::now();
    let answered = tokio::task::spawn_blocking(move || {
        while asked.elapsed() < Duration::from_secs(30) {
            if let Some(status) = try_request(&addr, Duration::from_secs(2)) {
                return Some((status, asked.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    })
    .await
    .unwrap();
    let still_running = server.is_running();
    drop(server);
    for (mut helper, _) in helpers {
        drop(helper.stdin.take());
        let _ = helper.wait();
    }
    let (status, took) = answered.expect("a real request was never answered");
    eprintln!(
        "a real request was answered {:.1} s into the flood",
        took.as_secs_f64()
    );
    assert_eq!(status, 200);
    assert!(took <= Duration::from_secs(15), "answered after {took:?}");
    assert!(still_running, "the server died under the flood");
}

/// Not a test on its own: run by the test above as a separate process (its descriptors are
/// its own) to open `SRCTRAFFIC_FLOOD_COUNT` connections from `SRCTRAFFIC_FLOOD_SOURCE`, send
/// half a request on each, say how many it holds, and hold them until its input closes.
#[tokio::test]
async fn flood_helper() {
    let Ok(target) = std::env::var("SRCTRAFFIC_FLOOD_TARGET") else {
        return;
    };
    let source: std::net::SocketAddr =
        format!("{}:0", std::env::var("SRCTRAFFIC_FLOOD_SOURCE").unwrap())
            .parse()
            .unwrap();
    let count: usize = std::env::var("SRCTRAFFIC_FLOOD_COUNT")
        .unwrap()
        .parse()
        .unwrap();
    let target: std::net::SocketAddr = target.parse().unwrap();
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            break;
        };
        if socket.bind(source).is_err() {
            break;
        }
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_millis(500), socket.connect(target)).await
        else {
            continue;
        };
        let _ = stream
            .write_all(b"GET /?Action=DescribeDomainRealTimeSrcTrafficData HTTP/1.1\r\nHost: x\r\n")
            .await;
        held.push(stream);
    }
    println!("held {}", held.len());
    // The harness prints its result on this line after the test returns.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}
