//! The built-in web page in a real browser: Debian's headless Chromium, driven over the
//! DevTools protocol (a WebSocket, JSON commands) from the test itself. Each test starts a
//! server, pushes lines, drives the page as a user would (URL, keys, mouse) and saves a
//! screenshot under `target/ui-screenshots/`. Without a browser the tests are skipped with a
//! notice, unless `CI` or `SAWMILL_REQUIRE_BROWSER=1` is set, which makes that a failure.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{get, now_ns, push_json, Server};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// One browser at a time: the tests are light, a machine of two cores is not.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

const BROWSERS: [&str; 3] = [
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];

fn browser_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SAWMILL_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let found = BROWSERS.iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        let required = std::env::var("SAWMILL_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
            || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !required,
            "CI or SAWMILL_REQUIRE_BROWSER=1 but no browser at {BROWSERS:?}: apt-get install -y chromium"
        );
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: skipping the browser tests of the web page: chromium is not installed (apt-get install -y chromium)"
        );
    }
    found
}

/// A headless Chromium with its own profile, and one page driven over the DevTools protocol.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    fn start(exe: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--window-size=1366,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let mut b = Browser::connect(child, profile);
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1366, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
        );
        b.call("Page.enable", json!({}));
        b
    }

    /// Reads the port from `DevToolsActivePort`, finds the page and opens its WebSocket.
    fn connect(mut child: Child, profile: tempfile::TempDir) -> Browser {
        let file = profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        let port = loop {
            if let Ok(s) = std::fs::read_to_string(&file) {
                if let Some(p) = s.lines().next().and_then(|l| l.trim().parse::<u16>().ok()) {
                    break p;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromium exited at start: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromium did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let url = loop {
            let (status, body) = get(&format!("http://127.0.0.1:{port}"), "/json/list", &[]);
            if status == 200 {
                let list: Value = serde_json::from_str(&body).unwrap();
                if let Some(p) = list
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["type"] == "page")
                {
                    break p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no page in chromium"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let (ws, _) = tungstenite::connect(url.as_str()).expect("connect to the page's DevTools");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        Browser {
            child,
            _profile: profile,
            ws,
            next_id: 0,
        }
    }

    /// One DevTools command and its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let m = self.ws.read().expect("read from DevTools");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait(
            "document.readyState === 'complete' && !!window.sawmill",
            "the page to load",
        );
    }

    /// JavaScript in the page (promises awaited); its value as JSON.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {}", e["exception"]["description"]);
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is true in the page (20 s at most).
    #[track_caller]
    fn wait(&mut self, expr: &str, what: &str) {
        let started = Instant::now();
        loop {
            if self.eval(&format!("!!({expr})")) == json!(true) {
                return;
            }
            if started.elapsed() > Duration::from_secs(20) {
                self.screenshot("timeout");
                let status = self.eval("document.getElementById('status').textContent + ' | ' + document.getElementById('err').textContent");
                panic!("waited 20 s for {what} ({expr}); page status: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The centre of the element `sel`, in page coordinates.
    fn centre(&mut self, sel: &str) -> (f64, f64) {
        let v = self.eval(&format!(
            "(() => {{ const r = document.querySelector({sel:?}).getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ));
        (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
    }

    fn mouse(&mut self, kind: &str, x: f64, y: f64) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": if kind == "mouseReleased" { 0 } else { 1 }, "clickCount": 1}),
        );
    }

    /// A real click (press and release) on the element `sel`.
    fn click(&mut self, sel: &str) {
        let (x, y) = self.centre(sel);
        self.mouse("mousePressed", x, y);
        self.mouse("mouseReleased", x, y);
    }

    fn key(&mut self, key: &str, code: &str, vk: u32, modifiers: u32) {
        for kind in ["rawKeyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": vk, "modifiers": modifiers}),
            );
        }
    }

    fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Saves a PNG of the page under `target/ui-screenshots/`.
    fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser and a server with embedded defaults (plus `yaml`), or `None` without a browser.
fn setup(
    yaml: &str,
) -> Option<(
    std::sync::MutexGuard<'static, ()>,
    Browser,
    Server,
    tempfile::TempDir,
)> {
    let exe = browser_path()?;
    let guard = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), yaml);
    let browser = Browser::start(&exe);
    Some((guard, browser, server, dir))
}

/// Pushes `lines` of (app, level, line) spaced `gap_ms` apart, ending `end_ago_ms` before now.
fn push_lines(addr: &str, lines: &[(&str, &str, String)], gap_ms: i64, end_ago_ms: i64) {
    let end = now_ns() - end_ago_ms * 1_000_000;
    let n = lines.len() as i64;
    let streams: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, (app, level, line))| {
            let ts = end - (n - 1 - i as i64) * gap_ms * 1_000_000;
            json!({"stream": {"app": app, "level": level}, "values": [[ts.to_string(), line]]})
        })
        .collect();
    let (status, body) = push_json(addr, &json!({ "streams": streams }).to_string());
    assert_eq!(status, 204, "{body}");
}

/// 600 lines over the last 50 minutes: api and web, every tenth an error.
fn push_hour(addr: &str) {
    let lines: Vec<(&str, &str, String)> = (0..600)
        .map(|i| {
            let app = if i % 3 == 0 { "web" } else { "api" };
            let level = if i % 10 == 0 { "error" } else if i % 7 == 0 { "warn" } else { "info" };
            let line = format!(
                r#"{{"level":"{level}","msg":"handled request {i}","status":{},"duration_ms":{},"request_id":"req-{i:04}"}}"#,
                if level == "error" { 500 } else { 200 },
                i % 97
            );
            (app, level, line)
        })
        .collect();
    push_lines(addr, &lines, 5_000, 1_000);
}

fn url(server: &Server, path_and_query: &str) -> String {
    format!("{}{path_and_query}", server.addr())
}

fn enc(s: &str) -> String {
    percent_encode(s)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const ROWS: &str = "document.querySelectorAll('#logs .r').length";

#[test]
fn page_loads_and_runs_a_log_query_from_the_url() {
    let Some((_g, mut b, server, _dir)) = setup("") else {
        return;
    };
    push_hour(&server.addr());
    // The page and its assets, as a browser gets them.
    let (status, html) = get(&server.addr(), "/", &[]);
    assert_eq!(status, 200);
    assert!(html.contains("/ui/app.js"), "{html}");

    b.goto(&url(
        &server,
        &format!("/?query={}&since=1h", enc(r#"{app="api"} |= "error""#)),
    ));
    b.wait(
        &format!("{ROWS} > 0 && !window.sawmill.state.running"),
        "the lines of the query",
    );
    let n = b
        .eval("window.sawmill.state.entries.length")
        .as_u64()
        .unwrap();
    // 600 lines, api = i % 3 != 0, errors = i % 10 == 0: 40 lines.
    assert_eq!(n, 40, "lines shown");
    let first = b.eval("document.querySelector('#logs .r .m').textContent");
    assert!(
        first.as_str().unwrap().contains("handled request 590"),
        "newest first: {first}"
    );
    b.wait(
        "document.querySelector('#hist-legend').textContent.includes('error 40')",
        "the histogram's legend",
    );
    assert_eq!(
        b.eval("document.querySelector('#q').value"),
        json!(r#"{app="api"} |= "error""#)
    );

    // Keyboard first: `/` focuses the editor, Ctrl-Enter runs what is typed.
    b.eval("document.activeElement.blur()");
    b.key("/", "Slash", 191, 0);
    assert_eq!(b.eval("document.activeElement.id"), json!("q"));
    b.eval("document.querySelector('#q').select()");
    b.type_text(r#"{app="web"} |= "request 3""#);
    b.key("Enter", "Enter", 13, 2);
    b.wait("location.search.includes('web') && !window.sawmill.state.running && window.sawmill.state.entries.length > 0", "the typed query to run");
    // web = i % 3 == 0, "request 3..." = 3, 30..39, 300..399: 3, 30, 33, 36, 39 and 300..399 step 3.
    let n = b
        .eval("window.sawmill.state.entries.length")
        .as_u64()
        .unwrap();
    assert_eq!(n, 39);

    // A line opens into its labels and fields; a field click adds a filter and runs it.
    b.click("#logs .r");
    b.wait("document.querySelector('#logs .d')", "the line's details");
    let details = b.eval("document.querySelector('#logs .d').textContent");
    let details = details.as_str().unwrap();
    assert!(
        details.contains("Stream labels") && details.contains("duration_ms"),
        "{details}"
    );
    b.click("#logs .d span.val[data-k='status']");
    b.wait("document.querySelector('#q').value.includes('| json | status=\"200\"') && !window.sawmill.state.running", "the field's filter");
    b.screenshot("log-query");

    // Completion: label names, then values, then pipeline stages, from the server's labels.
    b.eval("document.querySelector('#q').value = ''; document.querySelector('#q').focus()");
    b.type_text("{");
    b.wait("!document.querySelector('#ac').hidden && [...document.querySelectorAll('#ac li span')].map(s => s.textContent).join() === 'app,level'", "label names");
    b.type_text("app=\"");
    b.wait("[...document.querySelectorAll('#ac li span')].map(s => s.textContent).join() === 'api,web'", "label values");
    b.key("ArrowDown", "ArrowDown", 40, 0);
    b.key("Enter", "Enter", 13, 0);
    assert_eq!(
        b.eval("document.querySelector('#q').value"),
        json!(r#"{app="web"#)
    );
    b.type_text("\"} | ");
    b.wait(
        "[...document.querySelectorAll('#ac li span')].some(s => s.textContent === 'logfmt')",
        "pipeline stages",
    );
    b.screenshot("completion");
    b.key("Escape", "Escape", 27, 0);

    // A parse error: the server's message, and a marker at its column.
    b.eval("document.querySelector('#q').select()");
    b.type_text(r#"{app="api"} |= "x" | foo"#);
    b.key("Enter", "Enter", 13, 2);
    b.wait("!document.querySelector('#err').hidden", "the error");
    let err = b.eval("document.querySelector('#err').textContent");
    assert!(
        err.as_str().unwrap().contains("parse error at line 1, col"),
        "{err}"
    );
    b.wait("document.querySelector('#hl .mark')", "the error marker");
    b.screenshot("parse-error");

    // Speed figures, printed (never asserted).
    let paint = b.eval("JSON.stringify(performance.getEntriesByType('paint').map(p => [p.name, Math.round(p.startTime)]))");
    eprintln!("first paint (ms since navigation): {paint}");
}

#[test]
fn metric_query_draws_a_chart_with_a_legend_and_a_table() {
    let Some((_g, mut b, server, _dir)) = setup("") else {
        return;
    };
    push_hour(&server.addr());
    let q = r#"sum by (level) (count_over_time({app=~"api|web"}[5m]))"#;
    b.goto(&url(&server, &format!("/?query={}&since=1h", enc(q))));
    b.wait("window.sawmill.state.series.length > 0", "the series");
    let legend =
        b.eval("[...document.querySelectorAll('#chart-legend span')].map(s => s.textContent)");
    assert_eq!(
        legend,
        json!([
            r#"{level="error"}"#,
            r#"{level="info"}"#,
            r#"{level="warn"}"#
        ])
    );
    // The chart has lines: pixels of the series' colours on the canvas.
    let coloured = b.eval(
        "(() => { const c = document.querySelector('#chart-c'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]) > 60) n++; return n; })()",
    );
    assert!(
        coloured.as_u64().unwrap() > 200,
        "coloured pixels: {coloured}"
    );
    b.screenshot("metric-chart");
    b.click("#tabs button[data-view='table']");
    b.wait(
        "document.querySelectorAll('#table tbody tr').length === 3",
        "the table",
    );
    let errors = b.eval("[...document.querySelectorAll('#table tbody tr')].find(r => r.textContent.includes('error')).textContent");
    assert!(
        errors.as_str().unwrap().contains("level=\"error\""),
        "{errors}"
    );
    assert!(b
        .eval("location.search")
        .as_str()
        .unwrap()
        .contains("view=table"));
    b.screenshot("metric-table");
}

#[test]
fn dragging_across_the_histogram_zooms_the_range() {
    let Some((_g, mut b, server, _dir)) = setup("") else {
        return;
    };
    push_hour(&server.addr());
    b.goto(&url(
        &server,
        &format!("/?query={}&since=1h", enc(r#"{app="api"}"#)),
    ));
    b.wait(
        "document.querySelector('#hist-legend').textContent.includes('info')",
        "the histogram",
    );
    let before = b
        .eval("window.sawmill.state.entries.length")
        .as_u64()
        .unwrap();
    let r = b.eval("(() => { const r = document.querySelector('#hist-c').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()");
    let (left, top, width, height) = (
        r[0].as_f64().unwrap(),
        r[1].as_f64().unwrap(),
        r[2].as_f64().unwrap(),
        r[3].as_f64().unwrap(),
    );
    // From 40% to 60% of the hour.
    let y = top + height / 2.0;
    b.mouse("mousePressed", left + width * 0.4, y);
    for k in 1..=10 {
        b.mouse("mouseMoved", left + width * (0.4 + 0.02 * k as f64), y);
    }
    b.mouse("mouseReleased", left + width * 0.6, y);
    b.wait("location.search.includes('from=') && location.search.includes('to=') && !window.sawmill.state.running", "the zoomed range");
    let range =
        b.eval("(() => { const r = window.sawmill.state.range; return [r.from, r.to]; })()");
    let (from, to) = (range[0].as_f64().unwrap(), range[1].as_f64().unwrap());
    let span_min = (to - from) / 60_000.0;
    assert!(
        (10.0..14.0).contains(&span_min),
        "zoomed to {span_min} minutes"
    );
    b.wait(
        "document.querySelector('#hist-legend').textContent.includes('info')",
        "the zoomed histogram",
    );
    let after = b
        .eval("window.sawmill.state.entries.length")
        .as_u64()
        .unwrap();
    assert!(
        after > 0 && after < before,
        "lines before {before}, after {after}"
    );
    let inside = b.eval(&format!(
        "window.sawmill.state.entries.every(e => e.ms >= {from} && e.ms <= {to})"
    ));
    assert_eq!(inside, json!(true), "every line inside the zoomed range");
    assert_eq!(
        b.eval("document.querySelector('#zoom-out').hidden"),
        json!(false)
    );
    b.screenshot("histogram-zoom");
    // The link reproduces the page: the same absolute range, the query run on load.
    let link = b.eval("location.href").as_str().unwrap().to_string();
    b.call("Page.navigate", json!({"url": "about:blank"}));
    b.wait("location.href === 'about:blank'", "a blank page");
    b.goto(&link);
    b.wait(
        "window.sawmill.state.entries.length > 0 && !window.sawmill.state.running",
        "the linked page",
    );
    assert_eq!(
        b.eval("window.sawmill.state.entries.length")
            .as_u64()
            .unwrap(),
        after
    );
    assert_eq!(
        b.eval("window.sawmill.state.range.from").as_f64().unwrap(),
        from
    );
    // The picker: a relative range, then absolute times typed in.
    b.click("#range-btn");
    b.click("#rel button[data-r='15m']");
    b.wait(
        "location.search.includes('since=15m') && !window.sawmill.state.running",
        "the relative range",
    );
    assert_eq!(
        b.eval("document.querySelector('#range-btn').textContent"),
        json!("Last 15m")
    );
    b.click("#range-btn");
    let (f, t) = (from + 60_000.0, to - 60_000.0);
    b.eval(&format!(
        "document.querySelector('#from').value = new Date({f}).toISOString(); document.querySelector('#to').value = new Date({t}).toISOString()"
    ));
    b.click("#range-apply");
    b.wait(
        &format!("window.sawmill.state.range.from === {f} && !window.sawmill.state.running"),
        "the absolute range",
    );
    let n = b
        .eval("window.sawmill.state.entries.length")
        .as_u64()
        .unwrap();
    assert!(
        n > 0 && n < after,
        "{n} lines in the narrower range, {after} in the zoomed one"
    );
}

#[test]
fn live_tail_follows_pushed_lines_with_pause_and_resume() {
    let Some((_g, mut b, server, _dir)) = setup("") else {
        return;
    };
    let addr = server.addr();
    b.goto(&url(
        &server,
        &format!("/?query={}&since=1h", enc(r#"{app="tailed"}"#)),
    ));
    b.wait("!window.sawmill.state.running", "the first run");
    b.click("#live");
    b.wait(
        "window.sawmill.state.tail && window.sawmill.state.tail.ws.readyState === 1",
        "the tail to connect",
    );
    for i in 0..5 {
        push_lines(&addr, &[("tailed", "info", format!("tail line {i}"))], 1, 0);
        std::thread::sleep(Duration::from_millis(30));
    }
    b.wait(
        "window.sawmill.state.entries.length === 5",
        "five tailed lines",
    );
    // Newest first, once the rows are drawn (on the next animation frame).
    b.wait(
        "document.querySelector('#logs .r .m') && document.querySelector('#logs .r .m').textContent === 'tail line 4'",
        "the newest tailed line first",
    );

    b.click("#tail-pause");
    assert_eq!(b.eval("window.sawmill.state.tail.paused"), json!(true));
    for i in 5..8 {
        push_lines(&addr, &[("tailed", "warn", format!("tail line {i}"))], 1, 0);
    }
    b.wait(
        "window.sawmill.state.tail.held.length === 3",
        "three lines held while paused",
    );
    assert_eq!(b.eval("window.sawmill.state.entries.length"), json!(5));
    b.wait(
        "document.querySelector('#tail-state').textContent.includes('3 held')",
        "the held count",
    );
    assert_eq!(
        b.eval("document.querySelector('#tail-dropped').textContent"),
        json!("0 dropped")
    );
    b.screenshot("live-tail-paused");
    b.click("#tail-pause");
    b.wait(
        "window.sawmill.state.entries.length === 8",
        "the held lines after resume",
    );
    assert!(b
        .eval("location.search")
        .as_str()
        .unwrap()
        .contains("live=1"));
    b.screenshot("live-tail");
    b.click("#tail-stop");
    b.wait("!window.sawmill.state.tail", "the tail to stop");
}

#[test]
fn a_request_id_in_a_line_opens_its_timeline() {
    let Some((_g, mut b, server, _dir)) = setup("") else {
        return;
    };
    let addr = server.addr();
    push_hour(&addr);
    // One request across three services over 120 ms, with an error in the middle.
    let lines: Vec<(&str, &str, String)> = vec![
        (
            "gateway",
            "info",
            r#"{"level":"info","msg":"request in","request_id":"req-7f3a"}"#.into(),
        ),
        (
            "auth",
            "info",
            "level=info msg=\"token ok\" request_id=req-7f3a".into(),
        ),
        (
            "orders",
            "info",
            r#"{"level":"info","msg":"loading cart","request_id":"req-7f3a"}"#.into(),
        ),
        (
            "orders",
            "error",
            r#"{"level":"error","msg":"database timeout","request_id":"req-7f3a"}"#.into(),
        ),
        (
            "gateway",
            "error",
            r#"{"level":"error","msg":"request out: 504","request_id":"req-7f3a"}"#.into(),
        ),
    ];
    push_lines(&addr, &lines, 30, 100);
    b.goto(&url(
        &server,
        &format!("/?query={}&since=1h", enc(r#"{app="orders"}"#)),
    ));
    b.wait(&format!("{ROWS} === 2"), "the orders lines");
    b.click("#logs .r a.id");
    b.wait(
        "document.querySelector('#timeline svg') && !window.sawmill.state.running",
        "the timeline",
    );
    assert!(b
        .eval("location.search")
        .as_str()
        .unwrap()
        .contains("id=req-7f3a"));
    let lanes = b.eval(
        "[...document.querySelectorAll('#timeline svg > text:not(.axis)')].map(t => t.textContent)",
    );
    assert_eq!(
        lanes,
        json!(["gateway", "auth", "orders"]),
        "one lane per service, in order of first line"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#timeline circle').length"),
        json!(5)
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#timeline circle.bad').length"),
        json!(2),
        "errors in red"
    );
    let offsets = b.eval("[...document.querySelectorAll('#timeline tbody tr td:first-child')].map(t => t.textContent)");
    assert_eq!(offsets[0], json!("+0 µs"));
    assert_eq!(offsets[4], json!("+120 ms"));
    b.screenshot("request-timeline");

    // Dark mode, as a user toggles it.
    b.click("#theme");
    assert_eq!(
        b.eval("document.documentElement.classList.contains('dark')"),
        json!(true)
    );
    b.screenshot("request-timeline-dark");

    // Typed, the same view; an unknown ID says so.
    b.eval("document.querySelector('#idin').value = 'req-none'");
    b.click("#idform button");
    b.wait(
        "document.querySelector('#timeline').textContent.includes('No lines carry this ID')",
        "the empty timeline",
    );
}

#[test]
fn with_auth_enabled_the_page_asks_for_the_tenant() {
    let Some((_g, mut b, server, _dir)) = setup("auth_enabled: true\n") else {
        return;
    };
    let addr = server.addr();
    for (tenant, line) in [("team-a", "only for team a"), ("team-b", "only for team b")] {
        let body = json!({"streams": [{"stream": {"app": "api"}, "values": [[now_ns().to_string(), line]]}]});
        let (status, text) = common::push_with(
            &addr,
            &[
                ("Content-Type", "application/json"),
                ("X-Scope-OrgID", tenant),
            ],
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 204, "{text}");
    }
    b.goto(&url(
        &server,
        &format!("/?query={}&since=1h", enc(r#"{app="api"}"#)),
    ));
    b.wait(
        "!document.querySelector('#tenant-pop').hidden",
        "the tenant prompt",
    );
    b.screenshot("tenant-prompt");
    b.eval("document.querySelector('#tenant-in').value = 'team-a'");
    b.click("#tenant-form button");
    b.wait(&format!("{ROWS} === 1"), "team a's line");
    assert_eq!(
        b.eval("document.querySelector('#logs .r .m').textContent"),
        json!("only for team a")
    );
    // Another tenant: nothing of the first stays.
    b.eval("window.sawmill.setTenant('team-b')");
    b.wait("document.querySelector('#logs .r .m') && document.querySelector('#logs .r .m').textContent === 'only for team b'", "team b's line");
    assert_eq!(b.eval(ROWS), json!(1));
    // The live tail carries the tenant too (a WebSocket has no headers).
    b.click("#live");
    b.wait(
        "window.sawmill.state.entries.length === 1 && window.sawmill.state.tail.received === 1",
        "team b's tail",
    );
    // The rows are drawn on the next animation frame after the state changes.
    b.wait(
        "document.querySelector('#logs .r .m') && document.querySelector('#logs .r .m').textContent === 'only for team b'",
        "team b's tailed line on screen",
    );
    assert_eq!(b.eval(ROWS), json!(1));
}

#[test]
fn ten_thousand_lines_render_only_what_is_visible() {
    let Some((_g, mut b, server, _dir)) = setup("") else {
        return;
    };
    let addr = server.addr();
    for chunk in 0..10 {
        let lines: Vec<(&str, &str, String)> = (0..1000)
            .map(|i| {
                (
                    "bulk",
                    "info",
                    format!(
                        "bulk line {} with some text to make it longer",
                        chunk * 1000 + i
                    ),
                )
            })
            .collect();
        push_lines(&addr, &lines, 1, 60_000 * (10 - chunk));
    }
    b.goto(&url(
        &server,
        &format!("/?query={}&since=1h", enc(r#"{app="bulk"}"#)),
    ));
    b.wait(
        "window.sawmill.state.entries.length === 1000 && !window.sawmill.state.running",
        "the first page",
    );
    for _ in 0..9 {
        let n = b
            .eval("window.sawmill.state.entries.length")
            .as_u64()
            .unwrap();
        b.click("#older");
        b.wait(
            &format!("window.sawmill.state.entries.length > {n} && !window.sawmill.state.running"),
            "an older page",
        );
    }
    assert_eq!(b.eval("window.sawmill.state.entries.length"), json!(10000));
    assert_eq!(
        b.eval("document.querySelector('#older').disabled"),
        json!(false)
    );
    let rows = b.eval(ROWS).as_u64().unwrap();
    assert!(rows < 100, "{rows} rows in the DOM for 10,000 lines");
    // Scrolling through all of them: frames timed by the page, printed as a figure.
    let frames = b.eval(
        "new Promise(done => { const el = document.querySelector('#logs'); const times = []; let last = performance.now(); const end = el.scrollHeight - el.clientHeight; const stepPx = end / 240; const tick = () => { const now = performance.now(); times.push(now - last); last = now; if (el.scrollTop >= end - 1) { times.sort((a, b) => a - b); setTimeout(() => done([times.length, times[Math.floor(times.length / 2)], times[Math.floor(times.length * 0.99)], [...document.querySelectorAll('#logs .r .m')].pop().textContent]), 100); return; } el.scrollTop += stepPx; requestAnimationFrame(tick); }; requestAnimationFrame(tick); })",
    );
    eprintln!("scrolling 10,000 lines: [frames, median ms, p99 ms, last row] = {frames}");
    assert_eq!(
        frames[3],
        json!("bulk line 0 with some text to make it longer"),
        "the oldest line at the bottom"
    );
    b.screenshot("ten-thousand-lines");
}

#[test]
fn ui_disabled_answers_404() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), "  ui_enabled: false\n");
    for path in ["/", "/ui/", "/ui/app.js"] {
        let (status, _) = get(&server.addr(), path, &[]);
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = get(&server.addr(), "/ready", &[]);
    assert_eq!(status, 200);
}

#[test]
fn assets_are_served_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), "");
    for (path, ty) in [
        ("/", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = ureq::get(&format!("{}{path}", server.addr()))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(ty), "{path}");
    }
}

/// Speed figures of the page, printed: first paint, server answer to lines drawn for
/// `{app="api-gateway"} |= "error"`, and a scroll through 10,000 lines. It runs against a
/// server already holding the storage workload (1,000,000 lines in the last hour, from the
/// bench data generator):
/// `SAWMILL_UI_BENCH_URL=http://127.0.0.1:3100 cargo test --test ui speed -- --ignored --nocapture`
#[test]
#[ignore]
fn speed_figures_against_a_running_server() {
    let Ok(addr) = std::env::var("SAWMILL_UI_BENCH_URL") else {
        eprintln!("set SAWMILL_UI_BENCH_URL to a server holding the workload");
        return;
    };
    let Some(exe) = browser_path() else { return };
    let _g = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = Browser::start(&exe);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut paints = Vec::new();
    for _ in 0..7 {
        b.goto(&format!("{addr}/"));
        b.wait(
            "performance.getEntriesByName('first-contentful-paint').length",
            "first paint",
        );
        paints.push(
            b.eval("performance.getEntriesByName('first-contentful-paint')[0].startTime")
                .as_f64()
                .unwrap(),
        );
    }
    eprintln!(
        "first contentful paint, ms after navigation start (7 loads): median {:.0}, all {paints:?}",
        median(paints.clone())
    );
    let q = r#"{app="api-gateway"} |= "error""#;
    let (mut first, mut page, mut server, mut rows) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        b.goto(&format!("{addr}/?query={}&since=1h", enc(q)));
        b.wait("performance.getEntriesByName('sawmill:answer-to-lines').length >= 2 && !window.sawmill.state.running", "both pages of lines");
        let m =
            b.eval("performance.getEntriesByName('sawmill:answer-to-lines').map(m => m.duration)");
        first.push(m[0].as_f64().unwrap());
        page.push(m[1].as_f64().unwrap());
        let m =
            b.eval("performance.getEntriesByName('sawmill:answer-to-rows').map(m => m.duration)");
        rows.push(m[0].as_f64().unwrap());
        let r = b.eval("performance.getEntriesByType('resource').filter(r => r.name.includes('query_range') && !r.name.includes('sum')).map(r => r.responseEnd - r.requestStart)");
        server.push(r[0].as_f64().unwrap());
    }
    let shown = b.eval("window.sawmill.state.entries.length");
    eprintln!(
        "{q}: server answer to rows in the page, first {PAGE_FIRST} lines median {:.1} ms {rows:?}; to the frame showing them median {:.1} ms {first:?}; next page ({shown} lines in all) median {:.1} ms; request to answer (server) median {:.0} ms",
        median(rows.clone()),
        median(first.clone()),
        median(page.clone()),
        median(server.clone())
    );
    b.screenshot("speed-search");
    // The README's picture: a line opened, in a window of a laptop's size.
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": false}),
    );
    b.eval("window.dispatchEvent(new Event('resize'))");
    b.click("#logs .r:nth-child(3) .t");
    b.wait("document.querySelector('#logs .d')", "the opened line");
    b.screenshot("readme");
}

const PAGE_FIRST: u32 = 100;
