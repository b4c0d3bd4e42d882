//! The report opened in a real headless chromium (Debian's `chromium`,
//! driven over the DevTools protocol): no console errors, no request leaves
//! the file, every chart present and visible, and a screenshot saved as
//! `reports/screenshots/report.png` for a person to look at. Without
//! chromium this fails (`.ci/run` installs it): a skipped browser check
//! would pass on the machines where it matters most.
//!
//! A control page with a script error and a remote image is run through the
//! same checks first, so the checks are shown to catch what they look for.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Chromium, as `CHROMIUM` names it or on the PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("chromium is not installed: `apt-get install -y chromium` (.ci/run does it)");
}

/// A headless chromium and a DevTools connection to its page.
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events seen so far (console, exceptions, log entries, requests).
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn start() -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let browser_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium's DevTools address");
        let port = browser_url
            .trim_start_matches("ws://")
            .split(['/', ':'])
            .nth(1)
            .expect("port")
            .to_owned();
        let targets: Value = reqwest::blocking::get(format!("http://127.0.0.1:{port}/json/list"))
            .expect("targets")
            .json()
            .expect("json");
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (socket, _) = tungstenite::connect(page).expect("DevTools socket");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
        }
        let mut browser = Self {
            child,
            socket,
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        };
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            browser.call(domain, json!({}));
        }
        browser
    }

    fn read(&mut self) -> Value {
        loop {
            match self.socket.read().expect("DevTools message") {
                Message::Text(text) => return serde_json::from_str(&text).expect("json"),
                Message::Close(_) => panic!("DevTools closed"),
                _ => {}
            }
        }
    }

    /// Sends a command and waits for its answer, keeping events seen meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let text = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(text)).expect("send");
        loop {
            let message = self.read();
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    /// Opens `path` and waits for its load event and a moment after.
    fn open(&mut self, path: &Path) {
        self.events.clear();
        let url = format!("file://{}", path.display());
        self.call("Page.navigate", json!({ "url": url }));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .events
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired")
        {
            assert!(Instant::now() < deadline, "no load event");
            let event = self.read();
            self.events.push(event);
        }
        // Late console messages or requests would come now.
        self.call(
            "Runtime.evaluate",
            json!({"expression": "new Promise(r => setTimeout(r, 300))", "awaitPromise": true}),
        );
    }

    /// Console errors, uncaught exceptions and error log entries.
    fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| {
                (e["method"] == "Runtime.consoleAPICalled"
                    && matches!(e["params"]["type"].as_str(), Some("error" | "assert")))
                    || e["method"] == "Runtime.exceptionThrown"
                    || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["level"] == "error")
            })
            .map(Value::to_string)
            .collect()
    }

    /// URLs requested that are not the file itself (or inline data).
    fn requests_out(&self, page: &Path) -> Vec<String> {
        let own = format!("file://{}", page.display());
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str())
            .filter(|url| *url != own && !url.starts_with("data:"))
            .map(str::to_owned)
            .collect()
    }

    fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_report_opens_in_headless_chromium_with_nothing_fetched_and_every_chart_shown() {
    let dir = tempfile::tempdir().expect("dir");
    let mut browser = Browser::start();

    // The checks catch what they look for.
    let control = dir.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/x.png\">\
         <script>console.error('boom')</script></body></html>",
    )
    .expect("write");
    browser.open(&control);
    assert!(!browser.errors().is_empty(), "a console error is seen");
    assert!(
        browser
            .requests_out(&control)
            .iter()
            .any(|u| u.starts_with("http://127.0.0.1:9/")),
        "a request out is seen"
    );

    let fixtures = repo().join("harness/tests/fixtures");
    let files: Vec<PathBuf> = ["option1", "option2", "option3", "option4"]
        .iter()
        .map(|o| fixtures.join(format!("short-{o}.json")))
        .collect();
    let page = dir.path().join("report.html");
    harness::report::write(&files, &page).expect("report");
    browser.open(&page);
    assert_eq!(browser.errors(), Vec::<String>::new(), "console errors");
    assert_eq!(
        browser.requests_out(&page),
        Vec::<String>::new(),
        "requests out"
    );

    // Every chart: an SVG with drawn content, laid out at a real size and not hidden.
    let charts = browser.evaluate(
        "Array.from(document.querySelectorAll('figure[data-chart]')).map(f => {
            const svg = f.querySelector('svg');
            const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
            const style = svg ? getComputedStyle(svg) : {};
            return {key: f.dataset.chart, width: box.width, height: box.height,
                    visible: style.visibility === 'visible' && style.display !== 'none',
                    shapes: svg ? svg.querySelectorAll('path, polyline, rect, circle').length : 0,
                    texts: svg ? svg.querySelectorAll('text').length : 0};
        })",
    );
    let charts = charts.as_array().expect("charts").clone();
    let count = |key: &str| charts.iter().filter(|c| c["key"] == key).count();
    assert_eq!(count("latency-distribution"), 4);
    assert_eq!(count("latency-over-time"), 4);
    for key in ["idp-calls", "store-bytes", "rss", "projection"] {
        assert_eq!(count(key), 1, "{key}");
    }
    for chart in &charts {
        assert!(chart["width"].as_f64() > Some(300.0), "{chart}");
        assert!(chart["height"].as_f64() > Some(100.0), "{chart}");
        assert_eq!(chart["visible"], true, "{chart}");
        assert!(chart["shapes"].as_u64() > Some(3), "{chart}");
        assert!(chart["texts"].as_u64() > Some(3), "axis labels: {chart}");
    }
    let matrix_cells = browser.evaluate("document.querySelectorAll('table.matrix td').length");
    assert_eq!(matrix_cells, 32, "8 claims x 4 options");

    // A full-page screenshot for a person to look at.
    let metrics = browser.call("Page.getLayoutMetrics", json!({}));
    let size = &metrics["cssContentSize"];
    let shot = browser.call(
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true, "clip": {
            "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("data"))
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let out = repo().join("reports/screenshots");
    std::fs::create_dir_all(&out).expect("dir");
    std::fs::write(out.join("report.png"), &png).expect("write");
    std::fs::copy(&page, out.join("report.html")).expect("copy");
}
