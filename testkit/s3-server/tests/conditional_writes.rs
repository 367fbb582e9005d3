//! The server gives S3's conditional-write guarantees under contention, through a real SDK
//! client signing with SigV4: what the exactly-once commit relies on.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use srctraffic_s3_test_server::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY};

fn client(server: &S3Server, secret: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(server.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, secret, None, None, "test"))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

fn precondition_failed<E>(e: &aws_sdk_s3::error::SdkError<E>) -> bool {
    e.raw_response().map(|r| r.status().as_u16()) == Some(412)
}

async fn read_counter(c: &Client) -> (u64, String) {
    let got = c
        .get_object()
        .bucket(BUCKET)
        .key("counter")
        .send()
        .await
        .unwrap();
    let etag = got.e_tag().unwrap().to_owned();
    let bytes = got.body.collect().await.unwrap().into_bytes();
    (std::str::from_utf8(&bytes).unwrap().parse().unwrap(), etag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_match_increments_from_many_clients_lose_nothing() {
    let server = S3Server::start();
    let c = client(&server, SECRET_KEY);
    c.put_object()
        .bucket(BUCKET)
        .key("counter")
        .body(ByteStream::from_static(b"0"))
        .send()
        .await
        .unwrap();
    let (workers, each) = (4, 40);
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < each {
                let (n, etag) = read_counter(&c).await;
                let put = c
                    .put_object()
                    .bucket(BUCKET)
                    .key("counter")
                    .if_match(etag)
                    .body(ByteStream::from((n + 1).to_string().into_bytes()))
                    .send()
                    .await;
                match put {
                    Ok(_) => done += 1,
                    Err(e) if precondition_failed(&e) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(read_counter(&c).await.0, workers * each);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_if_none_match_creates_exactly_one_wins() {
    let server = S3Server::start();
    let c = client(&server, SECRET_KEY);
    for round in 0..20 {
        let key = format!("claim-{round}");
        let mut tasks = Vec::new();
        for who in 0..8 {
            let (c, key) = (c.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let put = c
                    .put_object()
                    .bucket(BUCKET)
                    .key(&key)
                    .if_none_match("*")
                    .body(ByteStream::from(format!("{who}").into_bytes()))
                    .send()
                    .await;
                match put {
                    Ok(_) => true,
                    Err(e) if precondition_failed(&e) => false,
                    Err(e) => panic!("{e:?}"),
                }
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.unwrap());
        }
        assert_eq!(winners, 1, "round {round}");
    }
}

#[tokio::test]
async fn data_outlives_a_restart_and_signatures_are_checked() {
    let mut server = S3Server::start();
    let c = client(&server, SECRET_KEY);
    c.put_object()
        .bucket(BUCKET)
        .key("kept")
        .body(ByteStream::from_static(b"42"))
        .send()
        .await
        .unwrap();
    server.restart();
    let got = c
        .get_object()
        .bucket(BUCKET)
        .key("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], b"42");
    let wrong = client(&server, "not-the-secret");
    let e = wrong
        .get_object()
        .bucket(BUCKET)
        .key("kept")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(403));
}

#[tokio::test]
async fn an_if_match_write_to_a_deleted_object_is_refused_with_404_as_s3_does() {
    let server = S3Server::start();
    let c = client(&server, SECRET_KEY);
    let put = c
        .put_object()
        .bucket(BUCKET)
        .key("gone")
        .body(ByteStream::from_static(b"1"))
        .send()
        .await
        .unwrap();
    let etag = put.e_tag().unwrap().to_owned();
    c.delete_object()
        .bucket(BUCKET)
        .key("gone")
        .send()
        .await
        .unwrap();
    let e = c
        .put_object()
        .bucket(BUCKET)
        .key("gone")
        .if_match(etag)
        .body(ByteStream::from_static(b"2"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));
    let listed = c.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    assert!(
        listed.contents().iter().all(|o| o.key() != Some("gone")),
        "the refused write must not create the object"
    );
}

#[tokio::test]
async fn requests_are_counted_by_kind() {
    use srctraffic_s3_test_server::requests::counts;
    let server = S3Server::start();
    let c = client(&server, SECRET_KEY);
    let before = counts();
    c.put_object()
        .bucket(BUCKET)
        .key("a/b")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    c.get_object()
        .bucket(BUCKET)
        .key("a/b")
        .send()
        .await
        .unwrap();
    c.list_objects_v2()
        .bucket(BUCKET)
        .prefix("a/")
        .send()
        .await
        .unwrap();
    c.delete_object()
        .bucket(BUCKET)
        .key("a/b")
        .send()
        .await
        .unwrap();
    let after = counts();
    // Other tests in this process count too: at least ours.
    assert!(after.put > before.put);
    assert!(after.get > before.get);
    assert!(after.list > before.list);
    assert!(after.delete > before.delete);
}
