//! `reports/schema.json` is the schema the results types derive: regenerate
//! it with `harness schema > reports/schema.json` when they change.

#[test]
fn the_committed_schema_is_the_one_the_results_types_derive() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/schema.json");
    let committed = std::fs::read_to_string(&path).expect("reports/schema.json");
    assert!(
        committed == harness::results::schema(),
        "reports/schema.json is out of date: run `cargo run -p harness -- schema > reports/schema.json`"
    );
}
