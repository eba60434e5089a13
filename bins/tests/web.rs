//! The web dashboard end to end (issue 19), in headless Chromium driven
//! through chromedriver's WebDriver HTTP API, against a real swarm on
//! 127.0.0.1: alice's client runs with `--web`; the API is used through
//! curl (create_user, the events, refusals without the token or from a
//! foreign Origin); on the page alice logs in, accepts carol's join
//! request, sees the group's members, downloads the file carol then
//! shares, and sees it complete with the piece map filled; then alice
//! shares a file through the API, carol downloads it, and the state and
//! the page show what alice's share served. A screenshot of the page at
//! the end is saved as `target/web-dashboard-<runtime>.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (CI installs them,
//! see `.ci/run`); without them the test fails saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[macro_use]
mod common;
use common::{Mix, Proc, Rt, Swarm, free_port, random_file};

on_both_runtimes!(the_dashboard_accepts_a_member_and_downloads_a_file);

/// How long the page may take to show what the test waits for (a join
/// request needs one watcher poll, 2 s).
const PAGE_WAIT: Duration = Duration::from_secs(20);

/// The WebDriver element key (W3C).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver and one browser session; both end on drop.
struct Browser {
    base: String,
    session: String,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
    }
}

fn need(bin: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{bin} not found: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver), as .ci/run does"
    );
}

impl Browser {
    fn start(dir: &Path) -> Browser {
        let driver_bin = need("chromedriver");
        let chromium = need("chromium");
        let port = free_port();
        let driver = Proc::spawn(
            "chromedriver",
            driver_bin.to_str().unwrap(),
            &[&format!("--port={port}")],
            dir,
        );
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = ureq::get(&format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium.to_str().unwrap(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1100,1400",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }}}});
        let v: Value = ureq::post(&format!("{base}/session"))
            .send_json(&caps)
            .expect("a browser session")
            .body_mut()
            .read_json()
            .unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Browser {
            base,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.try_post(path, body)
            .unwrap_or_else(|v| panic!("WebDriver {path}: {v}"))
    }

    fn try_post(&self, path: &str, body: Value) -> Result<Value, Value> {
        let mut r = ureq::post(&self.url(path))
            .config()
            .http_status_as_error(false)
            .build()
            .send_json(&body)
            .unwrap();
        let ok = r.status().is_success();
        let v: Value = r.body_mut().read_json().unwrap();
        match ok {
            true => Ok(v["value"].clone()),
            false => Err(v),
        }
    }

    fn get(&self, path: &str) -> Value {
        let v: Value = ureq::get(&self.url(path))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        v["value"].clone()
    }

    fn open(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// Runs JavaScript in the page; its return value.
    fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Waits for an element matching `css`; its id.
    fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let found = self.post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            );
            if let Some(e) = found.as_array().and_then(|a| a.first()) {
                return e[ELEMENT].as_str().unwrap().to_string();
            }
            if Instant::now() > deadline {
                let page = self.js("return document.body.innerText");
                panic!("no {css:?} on the page within {PAGE_WAIT:?}; the page says:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the JavaScript expression `cond` is true in the page.
    fn wait_until(&self, cond: &str) {
        let deadline = Instant::now() + PAGE_WAIT;
        while self.js(&format!("return !!({cond})")) != Value::Bool(true) {
            if Instant::now() > deadline {
                let page = self.js("return document.body.innerText");
                panic!("{cond} not true within {PAGE_WAIT:?}; the page says:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element matching `css`; found again if the page
    /// re-rendered it between finding and clicking (a bounded number of
    /// times).
    fn click(&self, css: &str) {
        for _ in 0..20 {
            let e = self.wait_for(css);
            match self.try_post(&format!("/element/{e}/click"), json!({})) {
                Ok(_) => return,
                Err(v) if v["value"]["error"] == "stale element reference" => continue,
                Err(v) => panic!("clicking {css}: {v}"),
            }
        }
        panic!("{css} kept being re-rendered under the click");
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css);
        self.post(&format!("/element/{e}/clear"), json!({}));
        self.post(&format!("/element/{e}/value"), json!({ "text": text }));
    }

    fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let b64 = self.get("/screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::write(to, png).unwrap();
    }
}

/// curl against the dashboard: (HTTP status, JSON body).
fn curl(method: &str, url: &str, headers: &[&str], body: Option<&str>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "30", "-w", "\n%{http_code}", "-X", method, url]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (json_text, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = code.trim().parse().unwrap_or(0);
    (
        status,
        serde_json::from_str(json_text).unwrap_or(Value::Null),
    )
}

fn the_dashboard_accepts_a_member_and_downloads_a_file(mix: Mix) {
    let s = Swarm::start(mix);
    let dir = s.dir.path();
    let mut alice = s.client_with("alice", 0, "127.0.0.1:0", mix.leechers, &["--web"]);
    let line = alice.expect("web dashboard: ", 20);
    let url = line
        .split("web dashboard: ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let (base, token) = url.split_once("/#token=").unwrap();
    assert!(base.starts_with("http://127.0.0.1:"), "{url}");
    let token_h = format!("X-Token: {token}");
    let api = |m: &str, path: &str, body: Option<&str>| {
        curl(m, &format!("{base}/api/{path}"), &[&token_h], body)
    };

    // The API through curl; refusals first.
    let (st, v) = curl("GET", &format!("{base}/api/state"), &[], None);
    assert_eq!(st, 401, "no token: {v}");
    let evil = ["Origin: http://evil.example", &token_h];
    let (st, _) = curl("GET", &format!("{base}/api/state"), &evil, None);
    assert_eq!(st, 403, "a foreign Origin is refused even with the token");
    let wrong = format!("Host: evil.example:{}", base.rsplit(':').next().unwrap());
    let (st, _) = curl(
        "GET",
        &format!("{base}/api/state"),
        &[&wrong, &token_h],
        None,
    );
    assert_eq!(st, 421, "another Host (DNS rebinding) is refused");
    let (st, v) = api(
        "POST",
        "create_user",
        Some(r#"{"args":["alice","pw-alice"]}"#),
    );
    assert_eq!(
        (st, v["text"].as_str()),
        (200, Some("user alice created")),
        "{v}"
    );
    let (st, v) = api("GET", "state", None);
    assert_eq!(st, 200);
    assert_eq!(v["user"], Value::Null);

    // The page: log in.
    let browser = Browser::start(dir);
    browser.open(&url);
    browser.type_into("#login-user", "alice");
    browser.type_into("#login-pass", "pw-alice");
    browser.click("#login-btn");
    browser.wait_for("#who[data-user=alice]");
    browser.type_into("#group-name", "films");
    browser.click("#create-group-btn");
    browser.wait_for("[data-group=films]");

    // carol asks to join; alice accepts on the page.
    let mut carol = s.seeder("carol", 1);
    carol.run("create_user carol pw-carol", "user carol created");
    carol.run("login carol pw-carol", "logged in as carol");
    carol.run("join_group films", "join request sent");
    // The owner's client says so too (stderr for a script, above the
    // prompt when interactive).
    alice.expect("note: carol asks to join films", 20);
    browser.click("[data-group=films] .request[data-user=carol] button.accept");
    browser.wait_until(
        "document.querySelector('[data-group=films] h3').innerText.includes('2 member(s)')",
    );
    // The members, on the page (the owner marked) and through the API.
    browser.wait_until(
        "[...document.querySelectorAll('[data-group=films] .member')]\
         .map(m => m.innerText).join(',') === 'alice (owner),carol'",
    );
    let (st, v) = api("POST", "list_members", Some(r#"{"args":["films"]}"#));
    assert_eq!((st, &v["result"]), (200, &json!(["alice", "carol"])), "{v}");
    let (_, v) = api("GET", "state", None);
    assert_eq!(
        v["groups"][0]["member_list"],
        json!(["alice", "carol"]),
        "{v}"
    );
    let (_, v) = api("GET", "events?since=0&wait_ms=0", None);
    let events = v["events"].as_array().unwrap();
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    let has = |t: &str| {
        events
            .iter()
            .any(|e| e["type"] == t && e["data"]["user"] == "carol")
    };
    assert!(has("join_request") && has("request_accepted"), "{v}");

    // carol shares a file; alice downloads it from the page.
    let file = dir.join("clip.bin");
    let data = random_file(&file, 3 * 512 * 1024 + 777, 19);
    carol.run(
        &format!("upload_file films {}", file.display()),
        "sharing clip.bin",
    );
    let downloads = dir.join("alice-downloads");
    std::fs::create_dir(&downloads).unwrap();
    browser.type_into("#dest", downloads.to_str().unwrap());
    browser.click("[data-group=films] tr.file[data-file='clip.bin'] button.download");
    browser.wait_for(".download[data-state=complete]");
    let map = browser.js(
        "const m = document.querySelector('.download[data-state=complete] .pieces');\
         return [m.children.length, m.querySelectorAll('.have').length];",
    );
    assert_eq!(map, json!([4, 4]), "the piece map is filled");
    assert_eq!(std::fs::read(downloads.join("clip.bin")).unwrap(), data);

    // The state through curl agrees, and the events say it completed.
    let (_, v) = api("GET", "state", None);
    let d = &v["downloads"][0];
    assert_eq!(d["state"], "complete", "{v}");
    assert_eq!(d["pieces"], "1111");
    assert_eq!(d["peers"][0]["user"], "carol");
    assert_eq!(v["user"], "alice");
    assert!(v["tracker_status"]["in_sync"].is_boolean(), "{v}");
    let (_, v) = api("GET", "events?since=0&wait_ms=0", None);
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(kinds.contains(&"download_complete"), "{kinds:?}");
    assert!(kinds.contains(&"download_progress"), "{kinds:?}");

    // alice shares a file through the API; carol downloads it; the state
    // and the page say what that share served.
    let notes = dir.join("notes.bin");
    let notes_data = random_file(&notes, 2 * 512 * 1024 + 5, 23);
    let body = json!({ "args": ["films", notes.to_str().unwrap()] }).to_string();
    let (st, v) = api("POST", "upload_file", Some(&body));
    assert_eq!(st, 200, "{v}");
    let carol_dl = dir.join("carol-downloads");
    std::fs::create_dir(&carol_dl).unwrap();
    carol.run(
        &format!("download_file films notes.bin {}", carol_dl.display()),
        "in the background",
    );
    carol.run("wait_downloads 60", "all downloads ended");
    assert_eq!(
        std::fs::read(carol_dl.join("notes.bin")).unwrap(),
        notes_data
    );
    let (_, v) = api("GET", "state", None);
    let shares = v["shares"].as_array().unwrap();
    let share = shares
        .iter()
        .find(|s| s["file"] == "notes.bin")
        .unwrap_or_else(|| panic!("notes.bin among alice's shares: {v}"));
    assert_eq!(
        share["served"],
        json!({ "pieces": 3, "bytes": notes_data.len() }),
        "{v}"
    );
    browser.wait_until(
        "[...document.querySelectorAll('#shares td')].some(td => td.innerText.startsWith('3 pieces'))",
    );
    let shot = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(format!("web-dashboard-{}.png", mix.leechers.arg()));
    browser.screenshot(&shot);

    // The rest of the REPL's actions from the page: a rate limit, then
    // log out.
    browser.type_into("#rate-up", "5M");
    browser.click("#rate-btn");
    browser.wait_until(
        "document.querySelector('#message').innerText === 'upload rate limited to 5.0 MiB/s'",
    );
    // The selector picks which of the four limits the form sets.
    browser.js("const s = document.querySelector('#rate-which'); \
         s.value = 'down-per-peer'; s.dispatchEvent(new Event('change')); return true");
    browser.type_into("#rate-up", "1K");
    browser.click("#rate-btn");
    browser.wait_until(
        "document.querySelector('#message').innerText === 'download rate per peer limited to 1.0 KiB/s'",
    );
    let (_, v) = api("GET", "state", None);
    assert_eq!(v["rates"]["down_per_peer"], 1024, "{v}");
    assert_eq!(v["rates"]["up"], 5 * 1024 * 1024, "{v}");
    browser.click("#logout-btn");
    browser.wait_for("#who[data-user='']");
    let (_, v) = api("GET", "state", None);
    assert_eq!(v["user"], Value::Null, "{v}");
}
