//! Every text the dissector takes from the wire is storable in PostgreSQL (issue #29): random
//! bytes (NUL, control characters, invalid UTF-8, valid multi-byte UTF-8) in DNS names, HTTP
//! request lines and headers, TLS server names and ALPN protocols, dissected and written into a
//! real PostgreSQL's `text` columns, then read back unchanged. A seeded generator, so that a
//! failure is repeatable; the seed is in the failure message.
//!
//! Run (after `bash hack/services.sh`): `cargo test -p parser --test storable_text`

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use testkit::batches::{CLIENT, SERVER};
use testkit::frames;
use testkit::postgres::TestDatabase;

const CASES: usize = 3_000;

/// Bytes chosen to hit every class: NUL, other controls, ASCII, UTF-8 lead and continuation bytes.
fn hostile_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    const PICKS: &[u8] = &[
        0, 1, 9, 10, 13, 27, 0x7f, b'a', b'.', b'\\', 0x80, 0xbf, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xff,
    ];
    (0..len)
        .map(|_| {
            if rng.random_bool(0.5) {
                PICKS[rng.random_range(0..PICKS.len())]
            } else {
                rng.random()
            }
        })
        .collect()
}

fn dns_query(rng: &mut StdRng) -> Vec<u8> {
    let mut message = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..rng.random_range(1..4) {
        let len = rng.random_range(1..20);
        message.push(len as u8);
        message.extend(hostile_bytes(rng, len));
    }
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    frames::udp(CLIENT, SERVER, 53, &message)
}

fn http_request(rng: &mut StdRng) -> Vec<u8> {
    let mut request = b"GET /".to_vec();
    // httparse takes path bytes above 0x20 (and not 0x7f): those that reach the path.
    request.extend(
        hostile_bytes(rng, 12)
            .into_iter()
            .map(|b| if b <= 0x20 || b == 0x7f { b'x' } else { b }),
    );
    request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    request.extend(
        hostile_bytes(rng, 16)
            .into_iter()
            .filter(|b| *b != b'\r' && *b != b'\n'),
    );
    request.extend_from_slice(b"\r\nUser-Agent: ");
    request.extend(
        hostile_bytes(rng, 16)
            .into_iter()
            .filter(|b| *b != b'\r' && *b != b'\n'),
    );
    request.extend_from_slice(b"\r\n\r\n");
    frames::tcp(CLIENT, SERVER, 80, 0x18, &request)
}

fn tls_hello(rng: &mut StdRng) -> Vec<u8> {
    // A hello for a placeholder name of the same length, whose bytes are then replaced.
    let len = rng.random_range(1..24);
    let placeholder: String = "p".repeat(len);
    let mut hello = frames::tls_client_hello(&placeholder);
    let at = hello
        .windows(len)
        .position(|w| w == placeholder.as_bytes())
        .expect("the name in the hello");
    hello[at..at + len].copy_from_slice(&hostile_bytes(rng, len));
    frames::tcp(CLIENT, SERVER, 443, 0x18, &hello)
}

/// Every string in the dissection's L7 fields, as the parser would store them.
fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => out.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        serde_json::Value::Object(fields) => fields.values().for_each(|field| strings(field, out)),
        _ => {}
    }
}

#[tokio::test]
async fn dissected_text_from_random_bytes_is_stored_and_read_back_unchanged() {
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut texts = Vec::new();
    let mut dissected = [0usize; 3];
    for case in 0..CASES {
        let kind = case % 3;
        let frame = match kind {
            0 => dns_query(&mut rng),
            1 => http_request(&mut rng),
            _ => tls_hello(&mut rng),
        };
        let dissection = dissect::dissect(&frame);
        if let Some(l7) = &dissection.l7 {
            dissected[kind] += 1;
            strings(&serde_json::to_value(l7).unwrap(), &mut texts);
        }
        texts.push(dissect::info(&dissection));
    }
    // Most cases dissect (an HTTP host may hold bytes httparse refuses in a header value).
    assert!(
        dissected.iter().all(|&n| n > CASES / 3 / 2),
        "seed {seed}: dissected {dissected:?} of {CASES}"
    );
    let database = TestDatabase::create().await;
    let pool = database.pool().await;
    sqlx::query("CREATE TABLE texts (n integer, t text NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let numbers: Vec<i32> = (0..texts.len() as i32).collect();
    sqlx::query("INSERT INTO texts SELECT * FROM unnest($1::integer[], $2::text[])")
        .bind(&numbers)
        .bind(&texts)
        .execute(&pool)
        .await
        .unwrap_or_else(|error| panic!("seed {seed}: PostgreSQL refused dissected text: {error}"));
    let back: Vec<String> = sqlx::query_scalar("SELECT t FROM texts ORDER BY n")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(back, texts, "seed {seed}");
    assert!(
        texts.iter().any(|t| t.contains("\\000")),
        "seed {seed}: a NUL byte shows as \\000 somewhere"
    );
    pool.close().await;
}
