//! A minimal JSON-over-HTTP/1.1 client for Caddy's admin API: one
//! connection per request (to a unix socket, or a loopback TCP address for
//! an operator-managed Caddy), the whole exchange bounded by a timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::ProxyError;

/// Talks to one Caddy admin address.
#[derive(Debug, Clone)]
pub struct AdminClient {
    admin: String,
    timeout: Duration,
}

/// A raw answer: status and body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl AdminClient {
    /// A client for `admin` (an absolute unix socket path, or `host:port`);
    /// every call waits at most `timeout`.
    pub fn new(admin: &str, timeout: Duration) -> AdminClient {
        AdminClient {
            admin: admin.to_string(),
            timeout,
        }
    }

    /// The admin address.
    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// Sends one request; any status is returned (the caller judges it).
    pub(crate) async fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ProxyError> {
        let exchange = self.exchange(method, path, body);
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ProxyError::Timeout {
                admin: self.admin.clone(),
                method,
                path: path.to_string(),
                timeout_ms: self.timeout.as_millis() as u64,
            }),
        }
    }

    async fn exchange(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ProxyError> {
        let http = |source| ProxyError::Http {
            admin: self.admin.clone(),
            method,
            path: path.to_string(),
            source,
        };
        let unreachable = |source| ProxyError::Unreachable {
            admin: self.admin.clone(),
            source,
        };
        // Caddy accepts only an empty Host on its unix socket.
        let (host, (mut sender, connection)) = if self.admin.starts_with('/') {
            let stream = tokio::net::UnixStream::connect(&self.admin)
                .await
                .map_err(unreachable)?;
            ("", handshake(stream).await.map_err(http)?)
        } else {
            let stream = tokio::net::TcpStream::connect(&self.admin)
                .await
                .map_err(unreachable)?;
            (self.admin.as_str(), handshake(stream).await.map_err(http)?)
        };
        let driver = tokio::spawn(connection);
        let payload = body.map(|v| v.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("static method"))
            .uri(path)
            .header("host", host)
            .header("content-type", "application/json")
            .header("connection", "close")
            .body(Full::new(Bytes::from(payload)))
            .expect("request parts are valid");
        let result = async {
            let response = sender.send_request(request).await.map_err(http)?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(http)?
                .to_bytes();
            Ok(Reply { status, body })
        }
        .await;
        driver.abort();
        result
    }

    /// Sends a request and requires a 2xx status.
    pub(crate) async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ProxyError> {
        let reply = self.send(method, path, body).await?;
        if (200..300).contains(&reply.status) {
            Ok(reply)
        } else {
            Err(self.refused(method, path, &reply))
        }
    }

    /// GETs `path` as JSON (`null` when Caddy has nothing there).
    pub async fn get_json(&self, path: &str) -> Result<Value, ProxyError> {
        let reply = self.call("GET", path, None).await?;
        if reply.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply.body).map_err(|source| ProxyError::BadReply {
            admin: self.admin.clone(),
            path: path.to_string(),
            source,
        })
    }

    pub(crate) fn refused(&self, method: &'static str, path: &str, reply: &Reply) -> ProxyError {
        let text = String::from_utf8_lossy(&reply.body);
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_string());
        ProxyError::Refused {
            admin: self.admin.clone(),
            method,
            path: path.to_string(),
            status: reply.status,
            message,
        }
    }
}

/// An HTTP/1.1 client connection whose driver the caller spawns (boxed, so
/// both stream types give one type).
async fn handshake<S>(stream: S) -> hyper::Result<(Sender, Driver)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    Ok((sender, Box::pin(connection)))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type Driver = std::pin::Pin<Box<dyn std::future::Future<Output = hyper::Result<()>> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server that answers every request with `reply` (or never).
    async fn server(reply: Option<&'static str>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                match reply {
                    Some(text) => {
                        let _ = conn.write_all(text.as_bytes()).await;
                    }
                    None => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_silent_admin_api_times_out_naming_the_address() {
        let addr = server(None).await;
        let client = AdminClient::new(&addr, Duration::from_millis(200));
        let err = client.get_json("/config/").await.unwrap_err();
        assert!(matches!(err, ProxyError::Timeout { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("caddy admin api at {addr}: GET /config/ did not answer within 200 ms")
        );
    }

    #[tokio::test]
    async fn a_refusal_carries_caddys_message_and_the_address() {
        let body = r#"{"error":"loading config: bad"}"#;
        let reply: &'static str = Box::leak(
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let addr = server(Some(reply)).await;
        let client = AdminClient::new(&addr, Duration::from_secs(5));
        let err = client
            .call("POST", "/config/x", Some(&Value::Null))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("caddy admin api at {addr} refused POST /config/x: 400 loading config: bad")
        );
    }

    #[tokio::test]
    async fn a_unix_socket_admin_gets_an_empty_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                conn.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnull")
                .await
                .unwrap();
            String::from_utf8(head).unwrap().to_ascii_lowercase()
        });
        let admin = path.to_str().unwrap();
        let client = AdminClient::new(admin, Duration::from_secs(5));
        assert_eq!(client.get_json("/config/").await.unwrap(), Value::Null);
        // Caddy refuses any other Host on its unix socket.
        assert!(server.await.unwrap().contains("\r\nhost: \r\n"));
        drop(dir);
        let err = client.get_json("/config/").await.unwrap_err();
        assert!(matches!(err, ProxyError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains(admin), "{err}");
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = AdminClient::new(&addr, Duration::from_secs(5))
            .get_json("/config/")
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::Unreachable { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("caddy admin api at {addr} is not reachable")
        );
    }
}
