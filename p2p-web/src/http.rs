//! HTTP/1.1 at the byte boundary, sans-IO: [`parse`] turns the bytes read
//! so far into a [`Request`] (or says it needs more, or that the bytes are
//! refused), and [`Response::to_bytes`] is what to write back. The head is
//! parsed by `httparse`; what we read ourselves (the body's length, the
//! target's path and query) is bounded and checked here. One request per
//! connection: every response says `Connection: close`.

use std::fmt::Write as _;

/// Largest request head (request line and headers) accepted.
pub const WEB_HEAD_MAX: usize = 8 * 1024;
/// Largest request body accepted (an action's JSON arguments).
pub const WEB_BODY_MAX: usize = 16 * 1024;
/// Most headers in a request.
pub const WEB_HEADERS_MAX: usize = 32;

/// A request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The target's path, as sent (not percent-decoded: every route is
    /// plain ASCII).
    pub path: String,
    /// The query's `key=value` pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Headers, names lowercased; values that are not UTF-8 are dropped.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of that (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why the bytes are refused; each maps to a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("the request head is longer than {WEB_HEAD_MAX} bytes")]
    HeadTooLarge,
    #[error("the request body is longer than {WEB_BODY_MAX} bytes")]
    BodyTooLarge,
    #[error("malformed request: {0}")]
    Malformed(String),
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::Malformed(_) => 400,
        }
    }
}

/// Parses the bytes read so far: `Ok(None)` while the request is
/// incomplete (read more), `Ok(Some((request, used)))` once it is whole,
/// `Err` when it is refused (answer with [`HttpError::status`] and close).
/// Never reads past a limit: a head past [`WEB_HEAD_MAX`] or a declared
/// body past [`WEB_BODY_MAX`] is refused before the rest arrives.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; WEB_HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > WEB_HEAD_MAX => {
            return Err(HttpError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::Malformed(format!(
                "more than {WEB_HEADERS_MAX} headers"
            )));
        }
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if head_len > WEB_HEAD_MAX {
        return Err(HttpError::HeadTooLarge);
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter_map(|h| {
            let v = std::str::from_utf8(h.value).ok()?;
            Some((h.name.to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(HttpError::Malformed(
            "chunked bodies are not accepted; send Content-Length".into(),
        ));
    }
    let mut lengths = headers.iter().filter(|(n, _)| n == "content-length");
    let body_len = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(_), Some(_)) => {
            return Err(HttpError::Malformed("more than one Content-Length".into()));
        }
        (Some((_, v)), None) => {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 12 {
                return Err(HttpError::Malformed(format!("bad Content-Length {v:?}")));
            }
            let n: usize = v
                .parse()
                .map_err(|_| HttpError::Malformed(format!("bad Content-Length {v:?}")))?;
            if n > WEB_BODY_MAX {
                return Err(HttpError::BodyTooLarge);
            }
            n
        }
    };
    let Some(body) = buf.get(head_len..head_len + body_len) else {
        return Ok(None);
    };
    let (path, query) = split_target(target)?;
    Ok(Some((
        Request {
            method,
            path,
            query,
            headers,
            body: body.to_vec(),
        },
        head_len + body_len,
    )))
}

/// `/a/b?x=1&y=%20` into the path and the decoded query pairs. Only
/// origin-form targets (starting with `/`) are accepted.
fn split_target(target: &str) -> Result<(String, Vec<(String, String)>), HttpError> {
    if !target.starts_with('/') {
        return Err(HttpError::Malformed(format!(
            "the target {target:?} does not start with /"
        )));
    }
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let mut query = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok((path.to_string(), query))
}

/// Decodes `%XX` escapes and `+` (a space in a query); the result must be
/// UTF-8.
pub fn percent_decode(s: &str) -> Result<String, HttpError> {
    let bad = || HttpError::Malformed(format!("bad percent-encoding in {s:?}"));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// A response to write back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Response::new(status, "application/json", v.to_string())
    }

    /// `{"ok": false, "error": msg}` with that status.
    pub fn error(status: u16, msg: impl Into<String>) -> Self {
        Response::json(
            status,
            &serde_json::json!({ "ok": false, "error": msg.into() }),
        )
    }

    /// The bytes on the wire: status line, headers, body. No caching,
    /// no sniffing, no framing by other sites, one request per connection.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = String::new();
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n\
             Connection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"GET /api/events?since=7&x=a%20b+c HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Token: abc\r\n\r\n";

    #[test]
    fn a_request_parses_with_its_query_and_headers() {
        let (r, used) = parse(GET).unwrap().unwrap();
        assert_eq!(used, GET.len());
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/api/events");
        assert_eq!(r.query("since"), Some("7"));
        assert_eq!(r.query("x"), Some("a b c"));
        assert_eq!(r.header("host"), Some("127.0.0.1:8080"));
        assert_eq!(r.header("x-token"), Some("abc"));
        assert!(r.body.is_empty());
    }

    /// Fed one byte at a time, every strict prefix needs more, then the
    /// whole request parses (h11's test).
    #[test]
    fn every_prefix_needs_more() {
        let post = b"POST /api/login HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
        for n in 0..post.len() {
            assert_eq!(parse(&post[..n]), Ok(None), "prefix of {n}");
        }
        let (r, used) = parse(post).unwrap().unwrap();
        assert_eq!((r.body.as_slice(), used), (&b"hello"[..], post.len()));
    }

    /// The limits, at their bound and one past it.
    #[test]
    fn limits_hold_at_the_bound() {
        let head = |extra: usize| {
            let base = "GET / HTTP/1.1\r\nX-Pad: \r\n\r\n";
            let mut s = String::from("GET / HTTP/1.1\r\nX-Pad: ");
            s.push_str(&"a".repeat(WEB_HEAD_MAX - base.len() + extra));
            s.push_str("\r\n\r\n");
            s
        };
        assert_eq!(head(0).len(), WEB_HEAD_MAX);
        assert!(parse(head(0).as_bytes()).unwrap().is_some());
        assert_eq!(parse(head(1).as_bytes()), Err(HttpError::HeadTooLarge));
        // An unfinished head past the bound is refused before it ends.
        let open = format!("GET / HTTP/1.1\r\nX-Pad: {}", "a".repeat(WEB_HEAD_MAX));
        assert_eq!(parse(open.as_bytes()), Err(HttpError::HeadTooLarge));
        // A body at the bound is read; one past it is refused from the
        // header alone.
        let body = |n: usize| format!("POST /x HTTP/1.1\r\nContent-Length: {n}\r\n\r\n");
        let mut at = body(WEB_BODY_MAX).into_bytes();
        assert_eq!(parse(&at), Ok(None));
        at.extend(vec![b'x'; WEB_BODY_MAX]);
        assert_eq!(parse(&at).unwrap().unwrap().0.body.len(), WEB_BODY_MAX);
        assert_eq!(
            parse(body(WEB_BODY_MAX + 1).as_bytes()),
            Err(HttpError::BodyTooLarge)
        );
        let many: String = (0..=WEB_HEADERS_MAX)
            .map(|i| format!("H{i}: v\r\n"))
            .collect();
        let e = parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for bad in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "GET http://evil/ HTTP/1.1\r\n\r\n",
            "GET /?a=%zz HTTP/1.1\r\n\r\n",
            "GET /?a=%ff HTTP/1.1\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_response_is_framed_and_closes() {
        let r = Response::new(200, "text/plain", "hi").to_bytes();
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nhi"));
    }
}
