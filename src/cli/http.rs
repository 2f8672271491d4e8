//! A minimal HTTP/1.1 GET over a tokio `TcpStream`: enough to read a member's debug endpoint
//! (plain `http://`, `Connection: close`, a bounded body, a timeout) without an HTTP client crate.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response read: a snapshot or an events ring is far smaller.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// A GET that failed: the answer's status when there was an HTTP answer (the caller may explain
/// some), and a message that names the URL.
#[derive(Debug)]
pub(super) struct GetError {
    pub(super) status: Option<u16>,
    pub(super) message: String,
}

impl From<GetError> for String {
    fn from(e: GetError) -> String {
        e.message
    }
}

/// A failure before any HTTP status was read.
fn failed(message: impl Into<String>) -> GetError {
    GetError { status: None, message: message.into() }
}

/// An `http://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HttpUrl {
    /// `host:port`, as connected to and sent in `Host`.
    authority: String,
    /// The path without a trailing `/` (may be empty).
    base_path: String,
}

impl HttpUrl {
    /// Parses `url`, refusing what this client cannot fetch (another scheme, user info).
    pub(super) fn parse(url: &str) -> Result<HttpUrl, String> {
        let bad = |why: &str| format!("malformed URL {url:?}: {why}");
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains spaces or control characters"));
        }
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(bad("only http:// URLs are supported"));
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (addr, after) = v6.split_once(']').ok_or_else(|| bad("'[' without ']'"))?;
                let port = match after {
                    "" => "80",
                    after => after.strip_prefix(':').ok_or_else(|| bad("unexpected text after ']'"))?,
                };
                (format!("[{addr}]"), port)
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host.to_owned(), port),
                None => (authority.to_owned(), "80"),
            },
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("no host"));
        }
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number from 0 to 65535"))?;
        if path.starts_with('?') {
            return Err(bad("a query belongs after the endpoint's path"));
        }
        Ok(HttpUrl { authority: format!("{host}:{port}"), base_path: path.trim_end_matches('/').to_owned() })
    }

    /// The URL of `path` (which starts with `/`) under this one.
    pub(super) fn join(&self, path: &str) -> String {
        format!("http://{}{}{path}", self.authority, self.base_path)
    }

    /// `GET {base}{path}`: the body of a 200 answer, else an error naming the URL.
    pub(super) async fn get(&self, path: &str, timeout: Duration) -> Result<Vec<u8>, GetError> {
        let url = self.join(path);
        match tokio::time::timeout(timeout, self.exchange(path)).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(e)) => Err(GetError { status: e.status, message: format!("GET {url}: {}", e.message) }),
            Err(_) => Err(failed(format!("GET {url}: no answer within {timeout:?}"))),
        }
    }

    async fn exchange(&self, path: &str) -> Result<Vec<u8>, GetError> {
        let mut stream =
            TcpStream::connect(&self.authority).await.map_err(|e| failed(format!("cannot connect: {e}")))?;
        let request = format!(
            "GET {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json, application/x-ndjson\r\nConnection: close\r\nUser-Agent: kgroup\r\n\r\n",
            self.base_path, self.authority
        );
        stream.write_all(request.as_bytes()).await.map_err(|e| failed(format!("cannot send: {e}")))?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE + 1)
            .read_to_end(&mut response)
            .await
            .map_err(|e| failed(format!("cannot read the answer: {e}")))?;
        if response.len() as u64 > MAX_RESPONSE {
            return Err(failed(format!("the answer is larger than {MAX_RESPONSE} bytes")));
        }
        parse_response(&response)
    }
}

/// The body of a complete HTTP/1.1 response read to its end (`Connection: close`).
fn parse_response(response: &[u8]) -> Result<Vec<u8>, GetError> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| failed("the answer is not HTTP (no header end)"))?;
    let head = String::from_utf8_lossy(&response[..end]);
    let body = &response[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).filter(|_| status.starts_with("HTTP/1.")).and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200) => {}
        Some(code) => {
            let message = format!("answered {:?}", status.chars().take(100).collect::<String>());
            return Err(GetError { status: Some(code), message });
        }
        None => return Err(failed("the answer is not HTTP/1.x")),
    }
    let header = |name: &str| {
        lines
            .clone()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(body).map_err(failed);
    }
    match header("content-length") {
        Some(length) => {
            let length: usize = length.parse().map_err(|_| failed(format!("bad Content-Length {length:?}")))?;
            body.get(..length).map(<[u8]>::to_vec).ok_or_else(|| failed("the answer ended before its Content-Length"))
        }
        None => Ok(body.to_vec()),
    }
}

/// Joins the chunks of a chunked body (extensions and trailers ignored).
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or("a chunk size line has no end")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or("the answer ended inside a chunk")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or("the answer ended after a chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_refused_clearly() {
        let url = HttpUrl::parse("http://127.0.0.1:8080/debug/").unwrap();
        assert_eq!(url.join("/snapshot"), "http://127.0.0.1:8080/debug/snapshot");
        assert_eq!(HttpUrl::parse("http://localhost").unwrap().join("/x"), "http://localhost:80/x");
        assert_eq!(HttpUrl::parse("http://[::1]:9/").unwrap().join("/x"), "http://[::1]:9/x");
        for bad in ["https://h:1", "h:1", "http://", "http://h:port", "http://u@h:1", "http://h:1 /x", "http://h:99999"]
        {
            let e = HttpUrl::parse(bad).unwrap_err();
            assert!(e.starts_with("malformed URL") && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn bodies_by_length_chunks_or_close_and_errors_by_status() {
        let ok = |s: &str| parse_response(s.as_bytes());
        assert_eq!(ok("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi!").unwrap(), b"hi");
        assert_eq!(
            ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1;x\r\n!\r\n0\r\n\r\n").unwrap(),
            b"hi!"
        );
        assert_eq!(ok("HTTP/1.0 200 OK\r\n\r\nall").unwrap(), b"all");
        let not_found = ok("HTTP/1.1 404 Not Found\r\n\r\n").unwrap_err();
        assert!(not_found.status == Some(404) && not_found.message.contains("404"), "{not_found:?}");
        assert!(ok("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhi").is_err());
        assert!(ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\nhi").is_err());
        assert_eq!(ok("SSH-2.0").unwrap_err().status, None);
    }
}
