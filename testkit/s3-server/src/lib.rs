//! The S3-compatible server the tests run on 127.0.0.1: s3s-fs (SigV4 signatures checked,
//! objects kept as files, so they survive a restart) with conditional writes made atomic as on
//! Amazon S3 (see [`atomic_writes`]).
//!
//! [`S3Server`] runs it inside the test process on a free port, with a bucket ready, and can stop
//! and restart it on the same port and data; the `s3-test-server` binary runs it on its own.

pub mod atomic_writes;
mod key_locks;
pub mod requests;

use atomic_writes::AtomicWrites;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::path::Path;
use tokio::net::TcpListener;

/// The access key [`S3Server`] accepts.
pub const ACCESS_KEY: &str = "AKIDTESTSRCTRAFFIC";
/// The secret key [`S3Server`] accepts.
pub const SECRET_KEY: &str = "test-secret-not-for-production";
/// The bucket [`S3Server::start`] creates.
pub const BUCKET: &str = "srctraffic-test";

/// Serves S3 over `listener` from the buckets under `root` until the task is dropped. With a key
/// pair, every request must carry a valid SigV4 signature made with it.
pub async fn serve(
    listener: TcpListener,
    root: &Path,
    keys: Option<(&str, &str)>,
) -> std::io::Result<()> {
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let mut builder = S3ServiceBuilder::new(AtomicWrites::new(fs, root));
    if let Some((ak, sk)) = keys {
        builder.set_auth(SimpleAuth::from_single(ak, sk));
    }
    let service = builder.build();
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of descriptors and the like: the next accept may work.
            Err(_) => continue,
        };
        let inner = service.clone();
        let counted =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                requests::count(req.method(), req.uri());
                hyper::service::Service::call(&inner, req)
            });
        let conn = http
            .serve_connection(TokioIo::new(socket), counted)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// A running server for one test: its own data directory, a free port on 127.0.0.1, the
/// [`BUCKET`] bucket, [`ACCESS_KEY`] / [`SECRET_KEY`]. Stops when dropped.
pub struct S3Server {
    port: u16,
    root: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
}

impl S3Server {
    /// Starts a server with an empty [`BUCKET`].
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().expect("temporary directory for the S3 server");
        std::fs::create_dir(root.path().join(BUCKET)).expect("bucket directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        let mut server = S3Server {
            port,
            root,
            runtime: None,
        };
        server.run();
        server
    }

    fn run(&mut self) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-test-server")
            .enable_all()
            .build()
            .expect("runtime for the S3 server");
        let root = self.root.path().to_owned();
        // Bound here, without the runtime (tests call this from async code too), so the port
        // takes connections as soon as `start` or `restart` returns.
        let listener = self.bind();
        runtime.spawn(async move {
            let served = match TcpListener::from_std(listener) {
                Ok(l) => serve(l, &root, Some((ACCESS_KEY, SECRET_KEY))).await,
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                eprintln!("s3-test-server: {e}");
            }
        });
        self.runtime = Some(runtime);
    }

    fn bind(&self) -> std::net::TcpListener {
        for _ in 0..200 {
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", self.port))
                && l.set_nonblocking(true).is_ok()
            {
                return l;
            }
            // A restart can race the old sockets' teardown.
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("cannot listen on 127.0.0.1:{} again", self.port);
    }

    /// Stops serving: the listener and every open connection close at once, as when the
    /// server's process dies. The data stays.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Serves again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The data directory: one subdirectory per bucket, one file per object.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Settings for an S3 store in this process to reach the server.
    pub fn settings(&self) -> srctraffic::store::S3Settings {
        srctraffic::store::S3Settings {
            endpoint: Some(self.endpoint()),
            region: "us-east-1".into(),
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
            path_style: true,
        }
    }

    /// The standard AWS settings that point an SDK client in a child process here, plus
    /// `SRCTRAFFIC_S3_PATH_STYLE`, with profiles and instance metadata kept out.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("SRCTRAFFIC_S3_PATH_STYLE", "1".to_owned()),
            ("AWS_CONFIG_FILE", "/nonexistent".to_owned()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
