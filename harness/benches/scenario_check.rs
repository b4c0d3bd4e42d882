//! How long reading and checking a large scenario file takes: schedules of
//! 10,000, 40,000 and 100,000 fault entries, parsed and checked against
//! option4 with 3 instances. The target: 100,000 entries in about a second,
//! growing linearly with the file.
//!
//! `cargo bench -p harness --bench scenario_check`

use std::num::NonZeroUsize;
use std::time::Instant;

use app::topology::Topology;
use harness::scenario::Scenario;

/// A schedule of `entries` faults, cycling through every kind of entry.
fn schedule(entries: usize) -> String {
    let kinds = [
        "action = \"redis-pause\"\nfor = \"500ms\"",
        "action = \"instance-restart\"\ninstance = 2",
        "action = \"network\"\nstore = \"redis\"\ninstances = [1, 3]\nset = { latency = \"20ms\", jitter = \"5ms\" }\nfor = \"1s\"",
        "action = \"idp\"\nset = { errors = { rate = 0.1, status = 503 } }\nfor = \"2s\"",
        "action = \"postgres-restart\"",
    ];
    let mut text = String::with_capacity(entries * 90);
    for i in 0..entries {
        text += &format!(
            "[[faults]]\nat = \"{}ms\"\n{}\n\n",
            i * 10,
            kinds[i % kinds.len()]
        );
    }
    text
}

fn main() {
    let topology = Topology::named("option4").expect("preset");
    let instances = NonZeroUsize::new(3).expect("3");
    println!("scenario check: parse + validate + check against option4 x 3");
    let mut per_entry = Vec::new();
    for entries in [10_000, 40_000, 100_000] {
        let text = schedule(entries);
        let started = Instant::now();
        let scenario = Scenario::parse(&text, "bench.toml").expect("valid");
        scenario.check(&topology, instances).expect("fits");
        let elapsed = started.elapsed();
        assert_eq!(scenario.faults.faults.len(), entries);
        let micros = elapsed.as_secs_f64() * 1e6 / entries as f64;
        per_entry.push(micros);
        println!(
            "{entries:>7} entries ({:>5.1} MB): {:>7.3} s, {micros:.1} us per entry",
            text.len() as f64 / 1e6,
            elapsed.as_secs_f64()
        );
    }
    let growth = per_entry[2] / per_entry[0];
    println!(
        "cost per entry at 100,000 vs 10,000: {growth:.2}x ({})",
        if growth < 2.0 { "linear" } else { "NOT linear" }
    );
}
