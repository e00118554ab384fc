//! The admin routes that the sniffer, parser and operator serve on their own listener (and the API
//! in its router), probed over a real socket with what an outside tester sends: garbage, oversized
//! and cut-short requests, odd methods and paths, NUL bytes. Each gets an answer or a closed
//! connection, never a crash: the server answers `/healthz` after every probe.

use std::time::Duration;

use service::admin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` and returns the status code of the answer, if any (None: closed without one).
async fn send(address: std::net::SocketAddr, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(address).await.expect("the server is up");
    // The server may close before reading everything it was sent: that is an answer too.
    let _ = stream.write_all(request).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "no answer and no close within 10 s to {:?}",
        String::from_utf8_lossy(&request[..request.len().min(60)])
    );
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

#[tokio::test]
async fn malformed_requests_get_an_answer_and_the_server_keeps_serving() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    admin::spawn(
        listener,
        admin::routes(
            || "# EOF\n".to_owned(),
            || -> admin::Readiness { Box::pin(async { Ok(()) }) },
        ),
    );
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(send(address, &healthz).await, Some(200));

    let long_path = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
    let huge_header = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1 << 20)
    );
    let many_headers: String = (0..500).map(|i| format!("X-{i}: v\r\n")).collect();
    let many_headers = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n");
    let probes: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        ("garbage", b"\x00\x01\x02\xff\xfe garbage \r\n\r\n".to_vec(), Some(400)),
        ("a cut-short request", b"GET /metr".to_vec(), None),
        (
            "POST /metrics",
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            Some(405),
        ),
        (
            "DELETE /readyz",
            b"DELETE /readyz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Some(405),
        ),
        (
            "an unknown path",
            b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Some(404),
        ),
        (
            "a NUL in the query",
            b"GET /metrics?x=%00 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Some(200),
        ),
        (
            "a raw NUL in the path",
            b"GET /met\x00rics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Some(400),
        ),
        ("a 100 kB path", long_path.into_bytes(), None),
        ("a 1 MiB header", huge_header.into_bytes(), None),
        ("500 headers", many_headers.into_bytes(), None),
        ("an HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), None),
        (
            "a lying Content-Length",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nshort".to_vec(),
            None,
        ),
        ("HTTP/0.9", b"GET /metrics\r\n".to_vec(), None),
    ];
    for (what, request, expected) in probes {
        let status = send(address, &request).await;
        if let Some(expected) = expected {
            assert_eq!(status, Some(expected), "{what}");
        }
        // A 5xx is never the answer to what the client sent.
        assert!(status.is_none_or(|s| s < 500), "{what}: {status:?}");
        assert_eq!(send(address, &healthz).await, Some(200), "still serving after {what}");
    }
}
