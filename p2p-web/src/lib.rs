//! The client dashboard's HTTP layer (`client --web`, issue 19), sans-IO.
//!
//! - [`http`]: request parsing and response bytes, bounded;
//! - this file: [`Gate`], the decision for one request: which [`Route`]
//!   it takes, or the refusal (`Host` and `Origin` checked on every
//!   request, the per-start token on every API call);
//! - `src/assets/`: the page, compiled in with `include_str!`.
//!
//! It is a crate of its own so that the fuzz target for the parser and
//! the gate builds without the drivers (and their TLS stack). The
//! listener, the event log and the command layer the routes run are in
//! `runtime-common/src/web/`.

pub mod http;

use http::{Request, Response};

/// The header that carries the token on API calls.
pub const TOKEN_HEADER: &str = "x-token";

/// The page and its assets (no build step: plain files).
pub const INDEX_HTML: &str = include_str!("assets/index.html");
pub const APP_JS: &str = include_str!("assets/app.js");
pub const APP_CSS: &str = include_str!("assets/app.css");

/// What a request asks for, once it passed the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A static asset: its content type and bytes.
    Asset(&'static str, &'static str),
    /// `GET /api/state`.
    State,
    /// `GET /api/events?since=N[&wait_ms=M]`: events after id `since`,
    /// waiting up to `wait_ms` for one.
    Events { since: u64, wait_ms: u64 },
    /// `POST /api/<action>` with `{"args": [...]}`: the REPL line
    /// `<action> <args...>`.
    Action { name: String, args: Vec<String> },
}

/// The longest an events request waits (a `wait_ms` above it is cut).
pub const EVENTS_WAIT_MAX_MS: u64 = 25_000;

/// The sans-IO gate: who may ask, and what they asked.
#[derive(Debug, Clone)]
pub struct Gate {
    token: String,
    /// `Host` values accepted (the address served, and `localhost:port`
    /// when it is loopback).
    hosts: Vec<String>,
}

impl Gate {
    /// `token`: this start's random token; `addr`: where the server
    /// listens (its `Host` values are the accepted ones).
    pub fn new(token: String, addr: std::net::SocketAddr) -> Self {
        let mut hosts = vec![addr.to_string()];
        if addr.ip().is_loopback() {
            hosts.push(format!("localhost:{}", addr.port()));
        }
        Gate { token, hosts }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Decides one request: its route, or the response that refuses it.
    pub fn route(&self, req: &Request) -> Result<Route, Response> {
        // DNS rebinding: a page of another site that resolved its name to
        // us still sends its own name as Host.
        match req.header("host") {
            Some(h) if self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)) => {}
            Some(h) => {
                return Err(Response::error(
                    421,
                    format!(
                        "Host {h:?} is not this dashboard's address; open {}",
                        self.hosts[0]
                    ),
                ));
            }
            None => return Err(Response::error(400, "no Host header")),
        }
        // Cross-site requests: a browser names the page's origin.
        if let Some(o) = req.header("origin")
            && !self
                .hosts
                .iter()
                .any(|h| o.eq_ignore_ascii_case(&format!("http://{h}")))
        {
            return Err(Response::error(
                403,
                format!("requests from {o:?} are refused; use the dashboard's own page"),
            ));
        }
        let path = req.path.as_str();
        if !path.starts_with("/api/") {
            if req.method != "GET" && req.method != "HEAD" {
                return Err(Response::error(405, "only GET serves the page"));
            }
            return match path {
                "/" | "/index.html" => Ok(Route::Asset("text/html; charset=utf-8", INDEX_HTML)),
                "/app.js" => Ok(Route::Asset("text/javascript; charset=utf-8", APP_JS)),
                "/app.css" => Ok(Route::Asset("text/css; charset=utf-8", APP_CSS)),
                _ => Err(Response::error(404, format!("no page at {path}"))),
            };
        }
        if !self.token_ok(req.header(TOKEN_HEADER)) {
            return Err(Response::error(
                401,
                "missing or wrong X-Token header: use the token printed at start (the URL's #token=...)",
            ));
        }
        let name = &path["/api/".len()..];
        match (req.method.as_str(), name) {
            ("GET", "state") => Ok(Route::State),
            ("GET", "events") => {
                let num = |k: &str, default: u64| -> Result<u64, Response> {
                    match req.query(k) {
                        None => Ok(default),
                        Some(v) => v.parse().map_err(|_| {
                            Response::error(400, format!("{k}={v:?} is not a number"))
                        }),
                    }
                };
                Ok(Route::Events {
                    since: num("since", 0)?,
                    wait_ms: num("wait_ms", EVENTS_WAIT_MAX_MS)?.min(EVENTS_WAIT_MAX_MS),
                })
            }
            ("POST", name) if is_action(name) => Ok(Route::Action {
                name: name.to_string(),
                args: action_args(&req.body)?,
            }),
            ("POST", _) | ("GET", _) => Err(Response::error(
                404,
                format!(
                    "no API call {name:?}: GET state, GET events, or POST one of {}",
                    ACTIONS.join(", ")
                ),
            )),
            (m, _) => Err(Response::error(405, format!("method {m} not allowed"))),
        }
    }

    /// Compares in time independent of where the values differ.
    fn token_ok(&self, given: Option<&str>) -> bool {
        let Some(given) = given else { return false };
        let (a, b) = (given.as_bytes(), self.token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The REPL's commands that the API runs (the console's own — `help`,
/// `exit`, `wait_downloads`, `serve` — are not actions).
pub const ACTIONS: &[&str] = &[
    "create_user",
    "login",
    "logout",
    "create_group",
    "join_group",
    "leave_group",
    "list_groups",
    "list_requests",
    "accept_request",
    "reject_request",
    "upload_file",
    "list_files",
    "list_members",
    "download_file",
    "show_downloads",
    "set_rate",
    "stop_share",
];

/// The REPL's console commands, which act on the console itself and are
/// not [`ACTIONS`].
pub const CONSOLE_ONLY: &[&str] = &["wait_downloads", "serve", "exit", "help"];

fn is_action(name: &str) -> bool {
    ACTIONS.contains(&name)
}

/// The body of an action: `{"args": ["..", ..]}` (or empty: no
/// arguments).
fn action_args(body: &[u8]) -> Result<Vec<String>, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let bad = |why: String| {
        Response::error(
            400,
            format!("{why}; the body must be {{\"args\": [\"...\", ...]}}"),
        )
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("not JSON ({e})")))?;
    let Some(args) = v.get("args") else {
        return Err(bad("no \"args\"".into()));
    };
    let Some(args) = args.as_array() else {
        return Err(bad("\"args\" is not a list".into()));
    };
    args.iter()
        .map(|a| match a {
            serde_json::Value::String(s) => Ok(s.clone()),
            other => Err(bad(format!("argument {other} is not a string"))),
        })
        .collect()
}

/// Fuzz bodies shared by `fuzz/` targets (and run as tests here).
pub mod fuzzing {
    use super::{Gate, http};

    /// Bytes as a request: parsing never panics, a parsed request uses no
    /// more bytes than given and stays within the limits, and the gate
    /// decides it without panicking.
    pub fn web_request(data: &[u8]) {
        let Ok(Some((req, used))) = http::parse(data) else {
            return;
        };
        assert!(used <= data.len());
        assert!(req.body.len() <= http::WEB_BODY_MAX);
        assert!(used - req.body.len() <= http::WEB_HEAD_MAX);
        let gate = Gate::new("t0k3n".into(), ([127, 0, 0, 1], 8080).into());
        let _ = gate.route(&req);
    }

    /// Seed inputs for the corpus.
    pub fn web_request_samples() -> Vec<Vec<u8>> {
        [
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            "GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Token: t0k3n\r\n\r\n",
            "GET /api/events?since=3&wait_ms=0 HTTP/1.1\r\nHost: localhost:8080\r\nX-Token: t0k3n\r\nOrigin: http://localhost:8080\r\n\r\n",
            "POST /api/accept_request HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Token: t0k3n\r\nContent-Length: 24\r\n\r\n{\"args\":[\"g1\",\"bob%20\"]}",
            "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Token: t0k3n\r\nContent-Length: 2\r\n\r\n{}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    #[test]
    fn the_samples_run() {
        for s in web_request_samples() {
            web_request(&s);
            for n in 0..s.len() {
                web_request(&s[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new("t0k3n".into(), "127.0.0.1:8080".parse().unwrap())
    }

    fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
        let mut raw = format!("{method} {path} HTTP/1.1\r\n");
        for (n, v) in headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        http::parse(raw.as_bytes()).unwrap().unwrap().0
    }

    const HOST: (&str, &str) = ("Host", "127.0.0.1:8080");
    const TOKEN: (&str, &str) = ("X-Token", "t0k3n");

    #[test]
    fn routes() {
        let g = gate();
        let r = |m, p, b| g.route(&req(m, p, &[HOST, TOKEN], b));
        assert!(matches!(r("GET", "/", ""), Ok(Route::Asset(_, INDEX_HTML))));
        assert!(matches!(
            r("GET", "/app.js", ""),
            Ok(Route::Asset(_, APP_JS))
        ));
        assert_eq!(r("GET", "/api/state", ""), Ok(Route::State));
        assert_eq!(
            r("GET", "/api/events?since=5&wait_ms=100", ""),
            Ok(Route::Events {
                since: 5,
                wait_ms: 100
            })
        );
        assert_eq!(
            r("GET", "/api/events", ""),
            Ok(Route::Events {
                since: 0,
                wait_ms: EVENTS_WAIT_MAX_MS
            })
        );
        assert_eq!(
            r("GET", "/api/events?wait_ms=99999999", ""),
            Ok(Route::Events {
                since: 0,
                wait_ms: EVENTS_WAIT_MAX_MS
            })
        );
        assert_eq!(
            r("POST", "/api/accept_request", r#"{"args":["g1","bob"]}"#),
            Ok(Route::Action {
                name: "accept_request".into(),
                args: vec!["g1".into(), "bob".into()]
            })
        );
        assert_eq!(
            r("POST", "/api/logout", ""),
            Ok(Route::Action {
                name: "logout".into(),
                args: vec![]
            })
        );
        let status = |x: Result<Route, Response>| x.unwrap_err().status;
        assert_eq!(status(r("GET", "/nope", "")), 404);
        assert_eq!(status(r("POST", "/", "")), 405);
        assert_eq!(status(r("POST", "/api/serve", "")), 404);
        assert_eq!(status(r("POST", "/api/exit", "")), 404);
        assert_eq!(status(r("DELETE", "/api/state", "")), 405);
        assert_eq!(status(r("GET", "/api/events?since=x", "")), 400);
        assert_eq!(status(r("POST", "/api/login", "[1]")), 400);
        assert_eq!(status(r("POST", "/api/login", r#"{"args":[1]}"#)), 400);
        assert_eq!(status(r("POST", "/api/login", "{")), 400);
    }

    /// The token on every API call; the page itself needs none (it holds
    /// no secret: the token comes with the URL's fragment).
    #[test]
    fn the_api_wants_the_token() {
        let g = gate();
        let status = |h: &[(&str, &str)], p| g.route(&req("GET", p, h, "")).map_err(|r| r.status);
        assert_eq!(status(&[HOST], "/api/state"), Err(401));
        assert_eq!(
            status(&[HOST, ("X-Token", "t0k3m")], "/api/state"),
            Err(401)
        );
        assert_eq!(
            status(&[HOST, ("X-Token", "t0k3n2")], "/api/state"),
            Err(401)
        );
        assert_eq!(status(&[HOST, ("X-Token", "")], "/api/events"), Err(401));
        assert_eq!(status(&[HOST, TOKEN], "/api/state"), Ok(Route::State));
        assert!(status(&[HOST], "/").is_ok());
    }

    /// Another site's page (Origin) or name (Host, DNS rebinding) is
    /// refused even with the token.
    #[test]
    fn host_and_origin_are_checked() {
        let g = gate();
        let status = |h: &[(&str, &str)]| {
            g.route(&req("GET", "/api/state", h, ""))
                .map_err(|r| r.status)
        };
        assert_eq!(status(&[TOKEN]), Err(400));
        assert_eq!(status(&[("Host", "evil.example:8080"), TOKEN]), Err(421));
        assert_eq!(status(&[("Host", "127.0.0.1:8081"), TOKEN]), Err(421));
        assert_eq!(
            status(&[HOST, TOKEN, ("Origin", "http://evil.example")]),
            Err(403)
        );
        assert_eq!(
            status(&[HOST, TOKEN, ("Origin", "https://127.0.0.1:8080")]),
            Err(403)
        );
        assert_eq!(status(&[HOST, TOKEN, ("Origin", "null")]), Err(403));
        assert_eq!(
            status(&[HOST, TOKEN, ("Origin", "http://127.0.0.1:8080")]),
            Ok(Route::State)
        );
        assert_eq!(
            status(&[
                ("Host", "localhost:8080"),
                TOKEN,
                ("Origin", "http://localhost:8080")
            ]),
            Ok(Route::State)
        );
        // A non-loopback address answers only to its own name.
        let far = Gate::new("t".into(), "10.0.0.5:80".parse().unwrap());
        let r = req("GET", "/", &[("Host", "localhost:80")], "");
        assert_eq!(far.route(&r).unwrap_err().status, 421);
    }
}
