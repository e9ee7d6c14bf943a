//! The server's own limits and its stop: SIGTERM ends `/events` streams and
//! the process exits at once; open generations get a bounded drain; a client
//! that sends its headers too slowly is cut off while others are served.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use support::Neuron;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sigterm(n: &Neuron) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &n.child.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Seconds until the neuron process exits, or `None` past `bound`.
fn exits_within(n: &mut Neuron, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if let Ok(Some(_)) = n.child.process.try_wait() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test]
async fn sigterm_ends_event_streams_and_the_neuron_exits() {
    let mut n = Neuron::start(&[]);
    let r = n.http.get(n.at("/events")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    // The stream is live: a subscriber gets the current stats at once.
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("a first event")
        .expect("stream open")
        .expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("device_stats"));
    // Keep reading, as a follower does, until the stream ends.
    let follower = tokio::spawn(async move {
        let mut events = 0;
        while let Some(Ok(_)) = body.next().await {
            events += 1;
        }
        events
    });

    sigterm(&n);
    let took = exits_within(&mut n, Duration::from_secs(4))
        .expect("the neuron exits within 4 s of SIGTERM with /events open");
    // Well before the 5 s drain bound: the stream ended, it was not cut.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    tokio::time::timeout(Duration::from_secs(2), follower)
        .await
        .expect("the /events stream ended")
        .unwrap();
}

#[tokio::test]
async fn an_open_generation_gets_a_bounded_drain() {
    let mut n = Neuron::start(&[]);
    n.load("smol", "embedded").await;
    let stream = n.long_stream("smol", 8000).await;
    sigterm(&n);
    let took = exits_within(&mut n, Duration::from_secs(9))
        .expect("the neuron exits within the 5 s drain (and a margin)");
    assert!(took >= Duration::from_millis(100), "took {took:?}");
    drop(stream);
}

#[tokio::test]
async fn a_slow_header_is_cut_off_while_normal_requests_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("neuron.toml");
    std::fs::write(&config, "header_read_timeout = \"500ms\"\n").unwrap();
    let n = Neuron::start(&["--config", config.to_str().unwrap()]);
    let addr = n.child.addr().unwrap();

    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: neuron\r\nX-Slow: ")
        .await
        .unwrap();
    // Meanwhile an ordinary client is served.
    let (status, body) = n.get("/health").await;
    assert_eq!(status, 200, "{body}");

    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("the server closes the slow connection within 5 s");
    let took = start.elapsed();
    // Closed (EOF or reset), with no answer to the half request.
    match read {
        Ok(0) | Err(_) => {}
        Ok(got) => {
            let text = String::from_utf8_lossy(&buf[..got]);
            assert!(!text.contains(" 200 "), "answered: {text}");
        }
    }
    assert!(
        took >= Duration::from_millis(400),
        "closed too soon: {took:?}"
    );

    // On a new connection: the first request's pooled one has been idle as
    // long as the header timeout, which closes idle keep-alive connections
    // too, so reusing it would race the server's close.
    let status = reqwest::get(n.at("/health")).await.expect("GET").status();
    assert_eq!(status, 200);
}
