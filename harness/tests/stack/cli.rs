//! The `harness` command with scenario files: `validate` reads them, `up --faults`
//! refuses a bad one before starting anything and runs a good one.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("harness runs")
}

/// `harness up ...` running, with what it printed so far.
struct Running {
    child: std::process::Child,
    lines: Vec<String>,
}

impl Running {
    /// Starts `harness` with `args` (and `env`) and reads its output up to
    /// and including the first line that starts with `until`.
    fn start(args: &[&str], env: &[(&str, &std::path::Path)], until: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_harness"));
        command
            .args(args)
            .env_remove("REDIS_URL")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            let last = line.starts_with(until);
            lines.push(line);
            if last {
                break;
            }
        }
        Self { child, lines }
    }

    /// The value printed after `label` (`redis`, `app-1`, ...).
    fn printed(&self, label: &str) -> Option<String> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(label))
            .map(|rest| rest.trim().to_owned())
    }

    /// Ctrl-C, then whether it exited cleanly.
    fn interrupt(mut self) -> bool {
        kill(
            Pid::from_raw(i32::try_from(self.child.id()).expect("pid")),
            Signal::SIGINT,
        )
        .expect("SIGINT");
        self.child.wait().expect("exits").success()
    }
}

/// A committed fixture's path, as the command is given it.
fn fixture(name: &str) -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/").to_owned() + name
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[test]
fn validate_describes_a_good_file() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/faults-option4.toml"
    );
    let out = harness(&["validate", example]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    // `check`, its old name, is an alias (scripts and notes use it).
    let alias = harness(&["check", example]);
    assert_eq!(alias.stdout, out.stdout, "{alias:?}");
    assert!(
        stdout.contains("faults, fine for option4 with 3 instances"),
        "{stdout}"
    );
    assert!(stdout.contains("redis-pause"), "{stdout}");
    assert!(
        stdout.contains("postgres-crash (down until started)"),
        "{stdout}"
    );
}

#[test]
fn bad_files_are_refused_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("dir");
    let syntax = write(&dir, "syntax.toml", "\n[[faults]]\nat = 1s\n");
    let out = harness(&["validate", &syntax]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "bad input exits 2");
    assert!(stderr.contains(&format!("{syntax}:3:6:")), "{stderr}");

    let unknown = write(
        &dir,
        "unknown.toml",
        "[[faults]]\nat = \"1s\"\naction = \"redis-pase\"\n",
    );
    let out = harness(&["up", "--topology", "option1", "--faults", &unknown]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{unknown}:3:10: unknown variant `redis-pase`")),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing was brought up: {:?}",
        out.stdout
    );

    let missing = harness(&["validate", "/nonexistent/faults.toml"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/faults.toml")
    );
    let device = harness(&["validate", "/dev/zero"]);
    assert!(
        String::from_utf8_lossy(&device.stderr).contains("/dev/zero is not a regular file"),
        "{device:?}"
    );
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/faults-option4.toml"
    );
    let none = harness(&["validate", example, "--instances", "0"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("--instances"),
        "{none:?}"
    );
    let no_such = harness(&["up", "--topology", "option9"]);
    assert_eq!(no_such.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_such.stderr).contains("unknown topology \"option9\""));
}

/// A custom combination from a file: the harness brings up exactly its
/// stores (Redis, no Postgres) and the instances run that topology.
#[test]
fn up_brings_a_custom_topology_up_with_exactly_its_stores() {
    let topology = fixture("redis-only.toml");
    let faults = fixture("scenarios/redis-flush.toml");
    let refused = harness(&[
        "validate",
        &faults,
        "--topology-file",
        &topology,
        "--instances",
        "1",
    ]);
    assert!(
        refused.status.success(),
        "redis-only has Redis: {refused:?}"
    );
    let up = Running::start(
        &["up", "--topology-file", &topology, "--instances", "1"],
        &[],
        "ready",
    );
    let base = up.printed("app-1").expect("app-1's URL printed");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let profile = runtime.block_on(async {
        let browser = contract::Browser::new(
            &contract::HttpClient::new(),
            std::time::Duration::from_secs(10),
        );
        browser.sign_in(&base, "alice").await.expect("sign in");
        browser.profile(&base).await.expect("profile")
    });
    let text = up.lines.join("\n");
    assert!(up.interrupt(), "clean exit");
    assert!(text.contains("topology redis-only"), "{text}");
    assert!(text.contains("\nredis "), "Redis brought up: {text}");
    assert!(!text.contains("\npostgres "), "no Postgres: {text}");
    assert_eq!(profile.status, 200, "{:?}", profile.outcome);
}

#[test]
fn up_with_faults_runs_the_schedule_then_waits_for_ctrl_c() {
    let faults = fixture("scenarios/restart-app-1.toml");
    let up = Running::start(
        &[
            "up",
            "--topology",
            "option1",
            "--instances",
            "1",
            "--faults",
            &faults,
        ],
        &[],
        "fault schedule done",
    );
    let text = up.lines.join("\n");
    assert!(up.interrupt(), "clean exit: {text}");
    assert!(
        text.contains("instance-restart app-1: ok"),
        "the step ran: {text}"
    );
    assert!(
        text.contains("fault schedule done: 1 steps, 0 failed"),
        "{text}"
    );
}

#[test]
fn postgres_data_can_live_in_the_run_folder_instead_of_memory() {
    let dir = tempfile::tempdir().expect("dir");
    let run_dir = dir.path().join("run");
    let run_arg = run_dir.display().to_string();
    let up = Running::start(
        &[
            "up",
            "--topology",
            "option2",
            "--instances",
            "1",
            "--run-dir",
            &run_arg,
        ],
        &[("HARNESS_PG_DIR", &run_dir)],
        "ready",
    );
    let url = up.printed("postgres");
    let url = url.expect("a private postgres printed");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let data: String = runtime.block_on(async {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query_scalar("SHOW data_directory")
            .fetch_one(&mut connection)
            .await
            .expect("show")
    });
    assert!(up.interrupt(), "clean exit");
    assert!(
        std::path::Path::new(&data).starts_with(&run_dir),
        "{data} in {}",
        run_dir.display()
    );
    assert!(
        !std::path::Path::new(&data).exists(),
        "the data dir goes with the server"
    );
    assert!(run_dir.join("postgres.log").is_file(), "logs stay");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        }
        found.push(path);
    }
    found.sort();
    found
}

/// A target's or a topology's name becomes part of the results file's
/// name: one that would lead out of `--out` is refused before anything
/// runs, and nothing is written anywhere.
#[test]
fn a_name_that_would_escape_out_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("dir");
    let target = write(
        &dir,
        "escaping-target.toml",
        "name = \"x/../../escaped\"\ninstances = [\"http://127.0.0.1:9\"]\nidp = \"http://127.0.0.1:9\"\n",
    );
    let topology = write(
        &dir,
        "escaping-topology.toml",
        "name = \"../../escaped\"\nsession_backend = \"memory\"\ntoken_cache = \"instance-wide\"\n\
         concurrency = \"last-writer-wins\"\n",
    );
    let scenario = write(&dir, "quiet.toml", "[load]\nduration = \"1s\"\n");
    let out = dir.path().join("o").join("t25");
    let out_arg = out.display().to_string();
    let before = files_under(dir.path());
    for (flag, file, column) in [("--target", &target, 8), ("--topology-file", &topology, 8)] {
        let run = harness(&[
            "bench",
            flag,
            file,
            "--scenario",
            &scenario,
            "--out",
            &out_arg,
            "--history",
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: {file}:1:{column}: "))
                && stderr.contains("cannot be a name"),
            "{flag}: {stderr}"
        );
        assert_eq!(files_under(dir.path()), before, "{flag}: nothing written");
        let parent = dir.path().parent().expect("temp parent");
        assert!(
            !parent.join("escaped").exists()
                && std::fs::read_dir(parent)
                    .expect("temp")
                    .flatten()
                    .all(|e| !e.file_name().to_string_lossy().starts_with("escaped")),
            "{flag}: nothing beside the folder either"
        );
    }
}

/// `validate` and `bench` resolve the instances in one place: a scenario that
/// names no count gets the same default from both.
#[test]
fn validate_and_bench_agree_on_the_default_instance_count() {
    let dir = tempfile::tempdir().expect("dir");
    let third = write(
        &dir,
        "third.toml",
        "[load]\nduration = \"1s\"\n\n[[faults]]\nat = \"1s\"\naction = \"instance-restart\"\ninstance = 3\n",
    );
    let check = harness(&["validate", &third]);
    let bench = harness(&[
        "bench",
        "option1",
        "--scenario",
        &third,
        "--out",
        &dir.path().join("out").display().to_string(),
    ]);
    for (what, out) in [("validate", &check), ("bench", &bench)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("there is no app-3: the stack has 2 instances"),
            "{what}: {stderr}"
        );
    }
    let second = write(
        &dir,
        "second.toml",
        "[load]\nduration = \"1s\"\n\n[[faults]]\nat = \"1s\"\naction = \"instance-restart\"\ninstance = 2\n",
    );
    let check = harness(&["validate", &second]);
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("fine for option4 with 2 instances"),
        "{check:?}"
    );
}

/// `validate` speaks as the file does: durations as `50ms`, policies by their
/// names, the memory the run needs; never Rust's debug text.
#[test]
fn validate_says_durations_and_policies_as_written_and_the_memory_needed() {
    let smoke = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/smoke.toml");
    let out = harness(&["validate", smoke]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("think time { min = \"20ms\", max = \"80ms\" }, hopping sticky"),
        "{stdout}"
    );
    assert!(stdout.contains("memory: about "), "{stdout}");
    assert!(stdout.contains("at 4s: instance-restart"), "{stdout}");
    for debug in ["Fixed", "Uniform", "Sticky", "Duration", "{ each", "ms }"] {
        assert!(!stdout.contains(debug), "{debug:?} in {stdout}");
    }
}

/// The OS's reason is said once, with the path.
#[test]
fn an_os_error_is_said_once_with_its_path() {
    let out = harness(&["validate", "/nonexistent/scenario.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr.trim_end(),
        "error: cannot read /nonexistent/scenario.toml: No such file or directory (os error 2)"
    );
}
