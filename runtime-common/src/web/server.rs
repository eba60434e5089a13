//! The dashboard's listener: plain threads (the same on both runtimes; it
//! talks to the client only through its [`Commander`]). One request per
//! connection, bounded: at most [`WEB_CONNECTIONS_MAX`] connections at
//! once (one more is answered 503 and closed), a request must arrive
//! whole within [`WEB_READ_TIMEOUT`], and its size is bounded by
//! [`super::http`]'s limits.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use p2p_proto::Request as TrackerRequest;
use p2p_proto::limits::PIECE_LEN;
use serde_json::json;

use super::http::{self, Response};
use super::watch::Watch;
use super::{Gate, Route, action_line, json};
use crate::cli::{self, CliCommand};
use crate::client::{Commander, command, hash_file};

/// Connections served at once (long-polls included).
pub const WEB_CONNECTIONS_MAX: usize = 32;
/// A request must arrive whole within this (from the connection's
/// accept), or the connection is answered 408 and closed.
pub const WEB_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The server's bounds (the constants above by default; tests shrink
/// them).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub connections_max: usize,
    pub read_timeout: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            connections_max: WEB_CONNECTIONS_MAX,
            read_timeout: WEB_READ_TIMEOUT,
        }
    }
}

/// A running dashboard.
pub struct WebServer {
    pub addr: SocketAddr,
    pub token: String,
}

impl WebServer {
    /// The one-click URL: the token travels in the fragment, which the
    /// browser never sends to a server.
    pub fn url(&self) -> String {
        format!("http://{}/#token={}", self.addr, self.token)
    }
}

/// Binds `addr` (port 0: a free port) and serves the dashboard on a
/// thread of its own.
pub fn start(
    addr: SocketAddr,
    c: Commander,
    watch: Arc<Watch>,
    seeder: SocketAddr,
) -> io::Result<WebServer> {
    start_with(addr, c, watch, seeder, Bounds::default())
}

/// [`start`] with other bounds.
pub fn start_with(
    addr: SocketAddr,
    c: Commander,
    watch: Arc<Watch>,
    seeder: SocketAddr,
    bounds: Bounds,
) -> io::Result<WebServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let token = super::new_token();
    let gate = Arc::new(Gate::new(token.clone(), addr));
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("web".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if active.fetch_add(1, Ordering::SeqCst) >= bounds.connections_max {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let r = Response::error(
                        503,
                        format!(
                            "more than {} connections at once; try again",
                            bounds.connections_max
                        ),
                    );
                    let _ = stream.set_write_timeout(Some(bounds.read_timeout));
                    let _ = stream.write_all(&r.to_bytes());
                    continue;
                }
                let conn = Conn {
                    gate: gate.clone(),
                    c: c.clone(),
                    watch: watch.clone(),
                    seeder,
                    active: active.clone(),
                    read_timeout: bounds.read_timeout,
                };
                let spawned = std::thread::Builder::new()
                    .name("web-conn".into())
                    .spawn(move || conn.serve(stream));
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })?;
    Ok(WebServer { addr, token })
}

/// One connection's thread.
struct Conn {
    gate: Arc<Gate>,
    c: Commander,
    watch: Arc<Watch>,
    seeder: SocketAddr,
    active: Arc<AtomicUsize>,
    read_timeout: Duration,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    fn serve(self, mut stream: TcpStream) {
        let _ = stream.set_write_timeout(Some(self.read_timeout));
        let response = match read_request(&mut stream, self.read_timeout) {
            Ok(req) => match self.gate.route(&req) {
                Ok(route) => self.run(route),
                Err(refused) => refused,
            },
            Err(r) => r,
        };
        let _ = stream.write_all(&response.to_bytes());
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }

    fn run(&self, route: Route) -> Response {
        match route {
            Route::Asset(ctype, body) => Response::new(200, ctype, body),
            Route::State => match self.c.snapshot() {
                Some(s) => Response::json(
                    200,
                    &json::state(
                        &s,
                        &self.watch.view(),
                        self.seeder,
                        self.watch.log.last_id(),
                    ),
                ),
                None => Response::error(503, "the client stopped"),
            },
            Route::Events { since, wait_ms } => {
                let events = self.watch.log.since(since, Duration::from_millis(wait_ms));
                Response::json(
                    200,
                    &json!({
                        "events": events.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
                        "last": self.watch.log.last_id(),
                    }),
                )
            }
            Route::Action { name, args } => self.action(&name, &args),
        }
    }

    /// Runs an action through the REPL's parser and command layer.
    fn action(&self, name: &str, args: &[String]) -> Response {
        let cmd = match cli::parse_line(&action_line(name, args)) {
            Ok(CliCommand::AskPassword { .. }) => {
                return Response::error(
                    400,
                    format!("{name}: give the password as its second argument"),
                );
            }
            Ok(cmd) => cmd,
            Err(e) => return Response::error(400, e),
        };
        let accepted = match &cmd {
            CliCommand::Tracker(TrackerRequest::AcceptRequest { group, user }) => {
                Some((group.clone(), user.clone()))
            }
            _ => None,
        };
        let hash = |p: &std::path::Path| hash_file(p, PIECE_LEN);
        let result = command::run(&self.c, cmd, &hash);
        // The page refetches the state after an action: poll now (unless
        // the action only read).
        if !name.starts_with("list_") && name != "show_downloads" {
            let user = self.c.snapshot().and_then(|s| s.user);
            self.watch.poll(user);
        }
        match result {
            Ok(ran) => {
                if let Some((g, u)) = accepted {
                    self.watch.accepted(&g, &u);
                }
                Response::json(200, &json::action_ok(&ran.text, &ran.ok))
            }
            Err(e) => Response::error(400, e),
        }
    }
}

/// Reads one request, within `timeout` from now and the size limits; the
/// response that refuses it otherwise.
fn read_request(stream: &mut TcpStream, timeout: Duration) -> Result<http::Request, Response> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match http::parse(&buf) {
            Ok(Some((req, _))) => return Ok(req),
            Ok(None) => {}
            Err(e) => return Err(Response::error(e.status(), e.to_string())),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out = || {
            Response::error(
                408,
                format!("the request did not arrive within {timeout:?}"),
            )
        };
        if left.is_zero() {
            return Err(timed_out());
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Response::error(400, "the connection closed mid-request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Response::error(400, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Commander;

    /// A server over a client that has stopped (no command reaches it).
    fn server(bounds: Bounds) -> WebServer {
        let c = Commander::detached();
        let watch = Watch::start(c.clone(), crate::web::watch::Mode::Dashboard, None);
        let local = "127.0.0.1:0".parse().unwrap();
        start_with(local, c, watch, local, bounds).unwrap()
    }

    fn read_all(s: &mut TcpStream) -> String {
        let mut out = String::new();
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = s.read_to_string(&mut out);
        out
    }

    fn status_of(s: &mut TcpStream) -> String {
        read_all(s).lines().next().unwrap_or_default().to_string()
    }

    /// `connections_max` connections are served; one more is answered
    /// 503; a slot frees when a connection ends.
    #[test]
    fn connections_are_capped_at_the_bound() {
        let bounds = Bounds {
            connections_max: 4,
            read_timeout: Duration::from_secs(10),
        };
        let w = server(bounds);
        let held: Vec<TcpStream> = (0..4)
            .map(|_| TcpStream::connect(w.addr).unwrap())
            .collect();
        // The accept loop counts them in order: the fifth is refused.
        let mut fifth = TcpStream::connect(w.addr).unwrap();
        assert!(status_of(&mut fifth).starts_with("HTTP/1.1 503"));
        drop(held);
        // Freed slots (each thread sees its peer close): served again.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut s = TcpStream::connect(w.addr).unwrap();
            let req = format!("GET /app.css HTTP/1.1\r\nHost: {}\r\n\r\n", w.addr);
            s.write_all(req.as_bytes()).unwrap();
            let line = status_of(&mut s);
            if line.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "slots never freed: {line}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A request that has not arrived whole by the deadline is answered
    /// 408, even if bytes keep trickling in; one whole in time is served.
    #[test]
    fn a_slow_request_is_cut_at_the_read_timeout() {
        let bounds = Bounds {
            connections_max: 4,
            read_timeout: Duration::from_millis(300),
        };
        let w = server(bounds);
        let mut s = TcpStream::connect(w.addr).unwrap();
        let start = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let _ = s.write_all(b"X-A: 1\r\n");
        let line = status_of(&mut s);
        assert!(line.starts_with("HTTP/1.1 408"), "{line}");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let mut s = TcpStream::connect(w.addr).unwrap();
        let req = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", w.addr);
        s.write_all(req.as_bytes()).unwrap();
        assert!(status_of(&mut s).starts_with("HTTP/1.1 200"));
    }
}
