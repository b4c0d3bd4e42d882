//! Malformed scenario files: each is refused before anything starts, with
//! one error naming the file, the line and column of what is wrong, and why.

use harness::scenario::Scenario;

/// (what is wrong, the file, where the error points, what it says)
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "an unknown key",
        "duration = \"5s\"\n",
        "1:1",
        "unknown field `duration`",
    ),
    (
        "an unknown key in a table",
        "[load]\nduraton = \"5s\"\n",
        "2:1",
        "unknown field `duraton`",
    ),
    (
        "a wrong type",
        "instances = \"two\"\n",
        "1:13",
        "invalid type",
    ),
    ("no instances", "instances = 0\n", "1:13", "at least 1"),
    (
        "nobody",
        "[browsers]\npeople = 0\n",
        "2:10",
        "`people` must be at least 1",
    ),
    (
        "no browsers",
        "[browsers]\nper_person = 0\n",
        "2:14",
        "`per_person` must be at least 1",
    ),
    (
        "a zero duration",
        "[load]\nduration = \"0s\"\n",
        "2:12",
        "longer than zero",
    ),
    (
        "a negative duration",
        "[load]\nduration = \"-5s\"\n",
        "2:12",
        "is not a duration",
    ),
    (
        "a duration without a unit",
        "[load]\nduration = 5\n",
        "2:12",
        "duration string",
    ),
    (
        "think time longer than the run",
        "[load]\nduration = \"2s\"\nthink_time = \"5s\"\n",
        "3:14",
        "longer than the whole run",
    ),
    (
        "think time bounds upside down",
        "[load]\nthink_time = { min = \"2s\", max = \"1s\" }\n",
        "2:14",
        "`min` is above `max`",
    ),
    (
        "an exponential think time of mean zero",
        "[load]\nthink_time = { mean = \"0s\", max = \"1s\" }\n",
        "2:14",
        "`mean` must be above zero",
    ),
    (
        "every weight zero",
        "[mix]\nprofile = 0\ncart_write = 0\n",
        "1:1",
        "every weight is zero",
    ),
    (
        "an action the mix does not know",
        "[mix]\nteleport = 3\n",
        "2:1",
        "unknown field `teleport`",
    ),
    (
        "a negative weight",
        "[mix]\nprofile = -1\n",
        "2:11",
        "invalid value",
    ),
    (
        "an unknown topology",
        "topology = \"option5\"\n",
        "1:12",
        "unknown topology \"option5\"",
    ),
    (
        "a custom topology with an unknown placement",
        "topology = { name = \"x\", session_backend = \"redis\", token_cache = \"everywhere\", concurrency = \"compare-and-set\" }\n",
        "1:67",
        "unknown variant `everywhere`",
    ),
    (
        "a custom topology table missing a field",
        "[topology]\nname = \"x\"\nsession_backend = \"redis\"\ntoken_cache = \"partitioned\"\n",
        "1:1",
        "missing field `concurrency`",
    ),
    (
        "a fault on app-5 of 3",
        "instances = 3\n\n[[faults]]\nat = \"1s\"\naction = \"instance-restart\"\ninstance = 5\n",
        "6:12",
        "there is no app-5",
    ),
    (
        "a Redis fault on a topology without Redis",
        "topology = \"option2\"\ninstances = 2\n\n[[faults]]\nat = \"1s\"\naction = \"redis-pause\"\n",
        "6:10",
        "runs without that store",
    ),
    (
        "a token lifetime too short to measure",
        "[idp]\naccess_token_lifetime = \"1s\"\n",
        "2:25",
        "at least 2s",
    ),
    (
        "a session idle timeout under a second",
        "[app]\nsession_idle_timeout = \"500ms\"\n",
        "2:24",
        "at least 1s",
    ),
    (
        "an unknown key in [app]",
        "[app]\nidle = \"5s\"\n",
        "2:1",
        "unknown field `idle`",
    ),
    (
        "an unknown reuse policy",
        "[idp]\nrefresh_reuse = \"never\"\n",
        "2:17",
        "unknown variant `never`",
    ),
    (
        "both a duration and stages",
        "[load]\nstages = [{ browsers = 2, over = \"5s\" }]\nduration = \"5s\"\n",
        "3:12",
        "either `duration`",
    ),
    (
        "a stage with more browsers than there are",
        "[browsers]\npeople = 2\n\n[load]\nstages = [{ browsers = 9, over = \"5s\" }]\n",
        "5:24",
        "9 browsers",
    ),
    (
        "an unknown hopping policy",
        "[load]\nhopping = \"sideways\"\n",
        "2:11",
        "unknown variant `sideways`",
    ),
    ("a negative seed", "seed = -1\n", "1:8", "invalid value"),
    ("an unterminated string", "topology = \"option4\n", "1:", ""),
    (
        "a duration past the 30 days a scenario may span",
        "[load]\nduration = \"60days\"\n",
        "2:12",
        "30 days",
    ),
];

#[test]
fn every_malformed_file_is_one_error_at_its_place_with_the_reason() {
    assert!(CASES.len() >= 20);
    let dir = tempfile::tempdir().expect("dir");
    let mut failures = Vec::new();
    for (index, (what, text, place, reason)) in CASES.iter().enumerate() {
        let path = dir.path().join(format!("case{index}.toml"));
        std::fs::write(&path, text).expect("write");
        match Scenario::from_file(&path) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(error) => {
                let message = error.to_string();
                let expected_place = format!("{}:{place}", path.display());
                if !message.starts_with(&expected_place) || !message.contains(reason) {
                    failures.push(format!(
                        "{what}: wanted {expected_place} ... {reason:?}, got {message}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_app_table_hands_a_session_idle_timeout_and_leave_is_a_mix_action() {
    let scenario = Scenario::parse(
        "[app]\nsession_idle_timeout = \"15s\"\n\n[mix]\nprofile = 9\nleave = 1\n",
        "s.toml",
    )
    .expect("valid");
    assert_eq!(
        scenario.workload.session_idle_timeout,
        Some(std::time::Duration::from_secs(15))
    );
    assert!(
        scenario
            .workload
            .mix
            .contains(&(harness::scenario::workload::Action::Leave, 1))
    );
    // Absent: the app keeps its own.
    let plain = Scenario::parse("seed = 1\n", "s.toml").expect("valid");
    assert_eq!(plain.workload.session_idle_timeout, None);
    assert_eq!(plain.workload.session_absolute_timeout, None);
}

#[test]
fn the_app_table_hands_an_absolute_timeout_no_shorter_than_the_idle_one() {
    let scenario = Scenario::parse(
        "[app]\nsession_idle_timeout = \"15s\"\nsession_absolute_timeout = \"40.5s\"\n",
        "s.toml",
    )
    .expect("valid");
    assert_eq!(
        scenario.workload.session_absolute_timeout,
        Some(std::time::Duration::from_secs(40)),
        "whole seconds, as the apps take it"
    );
    let short = Scenario::parse(
        "[app]\nsession_idle_timeout = \"15s\"\nsession_absolute_timeout = \"10s\"\n",
        "s.toml",
    )
    .expect_err("shorter than the idle timeout")
    .to_string();
    assert!(
        short.starts_with("s.toml:3:28:") && short.contains("shorter than the session idle"),
        "{short}"
    );
    // Without an idle timeout, the app's default (30 min) is the floor.
    let default_idle = Scenario::parse("[app]\nsession_absolute_timeout = \"60s\"\n", "s.toml")
        .expect_err("below the default idle timeout")
        .to_string();
    assert!(
        default_idle.contains("set `session_idle_timeout` too"),
        "{default_idle}"
    );
    let zero = Scenario::parse("[app]\nsession_absolute_timeout = \"0s\"\n", "s.toml")
        .expect_err("zero")
        .to_string();
    assert!(zero.contains("at least 1s"), "{zero}");
}

#[test]
fn the_shipped_scenarios_read_and_say_what_they_are_for() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for name in [
        "smoke",
        "claims",
        "restart-storm",
        "redis-outage",
        "hop-heavy",
        "hop-40",
        "idp-throttling",
        "race",
        "cluster-failover",
    ] {
        let path = folder.join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path).expect("shipped");
        assert!(
            text.starts_with("# "),
            "{name}.toml opens with a comment saying what it is for"
        );
        let scenario = Scenario::from_file(&path).expect("valid");
        for option in app::topology::Topology::PRESETS {
            let topology = app::topology::Topology::named(option).expect("preset");
            let instances = scenario
                .instances
                .unwrap_or(std::num::NonZeroUsize::new(2).expect("2"));
            let fits = scenario.check(&topology, instances);
            if scenario.topology.is_none() || name == "claims" {
                fits.unwrap_or_else(|e| panic!("{name} on {option}: {e}"));
            }
        }
    }
}

/// Every shipped scenario stays under the reference app's cart limit, even
/// were every request instant (each step takes at least the shortest think
/// time; a burst writes two items): a `cart_full` refusal would change what
/// the runs measure.
#[test]
fn no_shipped_scenario_can_fill_a_cart_past_the_reference_apps_limit() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&folder).expect("scenarios").flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let workload = Scenario::from_file(&path).expect("valid").workload;
        let items = workload
            .cart_items_bound()
            .unwrap_or_else(|| panic!("{}: a pause can be zero", path.display()));
        let bytes = workload.cart_bytes_bound().expect("bounded");
        assert!(
            items <= contract::CART_MAX_ITEMS as u64 && bytes <= contract::CART_MAX_BYTES as u64,
            "{}: up to {items} items, {bytes} bytes",
            path.display()
        );
    }
    assert!(seen >= 7, "{seen} scenarios");
    // claims: 45 s at 20 ms at least a step, bursts of two.
    let claims = Scenario::from_file(&folder.join("claims.toml")).expect("claims");
    assert_eq!(claims.workload.cart_items_bound(), Some(4502));
}
