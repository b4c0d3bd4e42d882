//! The cost of deriving a store key (HMAC-SHA256 of the session id) per
//! request: `cargo bench -p app --bench store_keys`. A request derives one
//! (one more per earlier key id, only when the session is not found under
//! the current one).

use std::hint::black_box;
use std::time::Instant;

use app::store::keys::StoreKeys;

fn main() {
    let rounds: u32 = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let keys = StoreKeys::derive(b"bench secret", "k2", &["k1".into()]);
    let id = "Xk3v9Qm2Lr8Tz1Wc4Yb7Nf0Hd5Sg6Ja2Pe9Ru3Vo8Mi";
    for _ in 0..10_000 {
        black_box(keys.digest(black_box(id)));
    }
    let started = Instant::now();
    for _ in 0..rounds {
        black_box(keys.digest(black_box(id)));
    }
    let per = started.elapsed().as_nanos() as f64 / f64::from(rounds);
    println!(
        "store key derivation (HMAC-SHA256 + base64url of a 43-char id): {per:.0} ns per request ({rounds} rounds)"
    );
    let started = Instant::now();
    for _ in 0..rounds / 10 {
        black_box(StoreKeys::derive(b"bench secret", "k2", &["k1".into()]));
    }
    let per = started.elapsed().as_nanos() as f64 / f64::from(rounds / 10);
    println!("deriving the HMAC keys themselves (HKDF, once per process): {per:.0} ns");
}
