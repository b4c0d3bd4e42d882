//! Hostile and mistaken input, table-driven: every file under
//! `fixtures/malformed/` is one case (a scenario, topology, target or
//! results file that is wrong, or a run that fails at run time), and
//! `fixtures/malformed/cases.toml` says what the `harness` command must do
//! with it: the exit code, the first line of what it says, and the
//! `line:column` that line points at. No case may panic or hang.
//!
//! Case files are copied into a temporary folder first, with the ports of
//! small servers this test runs filled in (`{refused}`: nothing listens;
//! `{silent}`: accepts and never answers; `{ok}`: answers 200; `{notfound}`:
//! 404; `{garbage}`: not HTTP). A case named `DIR` or `FIFO` in the table is
//! made as a folder or a FIFO there.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    /// The command of each kind of case, by the file name's first letter.
    defaults: BTreeMap<String, Vec<String>>,
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    file: String,
    /// `malformed` (refused before anything starts) or `runtime`.
    kind: String,
    /// `file` (default), `folder` or `fifo`: what the case is on disk.
    #[serde(default)]
    make: Option<String>,
    run: Option<Vec<String>>,
    exit: i32,
    /// Where the first line points, `line:column`, when it names a place in the file.
    at: Option<String>,
    /// The first line after `error: FILE:AT: ` (or `error: `); a final `…`
    /// makes it a prefix.
    says: String,
    /// Text the lines after the first must hold (a failed step's log).
    also: Option<String>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/malformed")
}

/// Small servers whose ports the run-time cases name.
struct Servers {
    ports: BTreeMap<&'static str, u16>,
    _silent: TcpListener,
}

impl Servers {
    fn start() -> Self {
        let refused = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut ports = BTreeMap::from([
            ("refused", refused),
            ("silent", silent.local_addr().expect("addr").port()),
        ]);
        for (name, reply) in [
            (
                "ok",
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
            ),
            (
                "notfound",
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            ),
            ("garbage", "SSH-2.0-OpenSSH_9.2p1\r\n"),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            ports.insert(name, listener.local_addr().expect("addr").port());
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let mut stream = stream;
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buffer = [0u8; 2048];
                    let _ = stream.read(&mut buffer);
                    let _ = stream.write_all(reply.as_bytes());
                }
            });
        }
        Self {
            ports,
            _silent: silent,
        }
    }

    fn fill(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (name, port) in &self.ports {
            text = text.replace(&format!("{{{name}}}"), &port.to_string());
        }
        text
    }
}

/// The case's file in `dir`, made as the table says.
fn make(case: &Case, dir: &Path, servers: &Servers) -> PathBuf {
    let path = dir.join(&case.file);
    match case.make.as_deref() {
        Some("folder") => std::fs::create_dir_all(&path).expect("folder"),
        Some("fifo") => {
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        }
        None | Some("file") => {
            let bytes = std::fs::read(fixtures().join(&case.file))
                .unwrap_or_else(|e| panic!("{}: {e}", case.file));
            let bytes = match String::from_utf8(bytes) {
                Ok(text) => servers.fill(&text).into_bytes(),
                Err(raw) => raw.into_bytes(),
            };
            std::fs::write(&path, bytes).expect("copy");
        }
        Some(other) => panic!("{}: unknown make {other:?}", case.file),
    }
    path
}

/// Runs one case; `Err` says how it went wrong.
fn run(case: &Case, table: &Table, dir: &Path, servers: &Servers) -> Result<(), String> {
    let path = make(case, dir, servers);
    let file = path.display().to_string();
    let prefix = case.file.get(..1).unwrap_or_default();
    let args = case
        .run
        .clone()
        .or_else(|| table.defaults.get(prefix).cloned())
        .ok_or_else(|| format!("{}: no `run` and no default for {prefix:?}", case.file))?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let fill = |text: &str| {
        servers.fill(
            &text
                .replace("FILE", &file)
                .replace("{dir}", &dir.display().to_string())
                .replace("{fixtures}", &fixtures().display().to_string())
                .replace("{scenarios}", &repo.join("scenarios").display().to_string()),
        )
    };
    let args: Vec<String> = args.iter().map(|a| fill(a)).collect();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(&args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .output()
        .map_err(|e| format!("{}: harness did not run: {e}", case.file))?;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or_default().to_owned();
    let says = fill(&case.says);
    let expected = match &case.at {
        Some(at) => format!("error: {file}:{at}: {says}"),
        None => format!("error: {says}"),
    };
    let matches = match expected.strip_suffix('…') {
        Some(start) => first.starts_with(start),
        None => first == expected,
    };
    let mut wrong = Vec::new();
    if output.status.code() != Some(case.exit) {
        wrong.push(format!(
            "exit {:?}, wanted {}",
            output.status.code(),
            case.exit
        ));
    }
    if !matches {
        wrong.push(format!("first line\n    {first}\n  wanted\n    {expected}"));
    }
    if let Some(also) = &case.also
        && !stderr
            .lines()
            .skip(1)
            .any(|line| line.contains(also.as_str()))
    {
        wrong.push(format!("no line after the first says {also:?}:\n{stderr}"));
    }
    if stderr.contains("panicked") {
        wrong.push(format!("it panicked:\n{stderr}"));
    }
    if !output.stdout.is_empty() && case.kind == "malformed" {
        wrong.push(format!(
            "it said something on stdout before refusing: {}",
            String::from_utf8_lossy(&output.stdout)
        ));
    }
    if case.kind == "malformed" && took > Duration::from_secs(5) {
        wrong.push(format!("refusing it took {took:?}"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} ({}): {}",
            case.file,
            args.join(" "),
            wrong.join("; ")
        ))
    }
}

fn table() -> Table {
    let text = std::fs::read_to_string(fixtures().join("cases.toml")).expect("cases.toml");
    toml::from_str(&text).unwrap_or_else(|e| panic!("cases.toml: {e}"))
}

#[test]
fn the_corpus_has_a_case_for_every_file_and_enough_of_each_kind() {
    let table = table();
    let listed: std::collections::BTreeSet<&str> =
        table.case.iter().map(|c| c.file.as_str()).collect();
    assert_eq!(listed.len(), table.case.len(), "a file listed twice");
    let on_disk: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "cases.toml" && name != "quiet.toml")
        .collect();
    for name in &on_disk {
        assert!(listed.contains(name.as_str()), "{name} has no case");
    }
    let kinds = |kind: &str| table.case.iter().filter(|c| c.kind == kind).count();
    assert!(
        kinds("malformed") >= 60,
        "{} malformed files",
        kinds("malformed")
    );
    assert!(
        kinds("runtime") >= 10,
        "{} run-time failures",
        kinds("runtime")
    );
    assert_eq!(kinds("malformed") + kinds("runtime"), table.case.len());
}

#[test]
fn every_malformed_file_is_refused_as_the_table_says() {
    let table = table();
    let dir = tempfile::tempdir().expect("dir");
    let servers = Servers::start();
    let failures: Vec<String> = table
        .case
        .iter()
        .filter(|c| c.kind == "malformed")
        .filter_map(|case| run(case, &table, dir.path(), &servers).err())
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn every_run_time_failure_names_its_cause_as_the_table_says() {
    let table = table();
    let dir = tempfile::tempdir().expect("dir");
    let servers = Servers::start();
    // Side by side: most wait out a readiness timeout.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = table
            .case
            .iter()
            .filter(|c| c.kind == "runtime")
            .map(|case| {
                let (table, dir, servers) = (&table, dir.path(), &servers);
                scope.spawn(move || {
                    // Each in a folder of its own: `bench` writes there.
                    let own = dir.join(case.file.replace('.', "_"));
                    std::fs::create_dir_all(&own).expect("folder");
                    run(case, table, &own, servers).err()
                })
            })
            .collect();
        runs.into_iter()
            .filter_map(|r| r.join().expect("case thread"))
            .collect()
    });
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}
