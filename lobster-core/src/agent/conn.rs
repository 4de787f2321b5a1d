//! One authenticated connection to an agent port.
//!
//! Reads go through the protocol's [`LineFramer`], so a guest that sends an
//! endless line costs at most [`MAX_MESSAGE_BYTES`] of host memory before
//! the connection is dropped. Callers bound every operation with a timeout.

use std::net::SocketAddr;

use lobster_agent_proto::methods::{Hello, HelloParams, HelloResult, Secret};
use lobster_agent_proto::{
    encode_line, LineFramer, Method, Reply, ReplyBody, Request, MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::AgentError;

/// A connection handed over after an upgrading method's `ok` line.
#[derive(Debug)]
pub(crate) struct Upgraded {
    /// The raw connection.
    pub(crate) stream: TcpStream,
    /// Bytes read past the reply line (the first frames' bytes).
    pub(crate) rest: Vec<u8>,
    /// The agent's address.
    pub(crate) addr: SocketAddr,
}

/// An open, authenticated connection.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    framer: LineFramer,
    next_id: u64,
    addr: SocketAddr,
}

impl Conn {
    /// Connects and performs the `hello` handshake.
    pub(crate) async fn open(
        addr: SocketAddr,
        token: &Secret,
    ) -> Result<(Conn, HelloResult), AgentError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| AgentError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            framer: LineFramer::new(MAX_MESSAGE_BYTES),
            next_id: 1,
            addr,
        };
        let params = HelloParams {
            protocol: PROTOCOL_VERSION,
            token: token.clone(),
            client: format!("lobster-core {}", env!("CARGO_PKG_VERSION")),
        };
        let hello = conn.call::<Hello>(&params).await?;
        if hello.protocol != PROTOCOL_VERSION {
            return Err(AgentError::Protocol {
                addr,
                detail: format!("agent answered hello with protocol {}", hello.protocol),
            });
        }
        Ok((conn, hello))
    }

    /// The agent's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `M` and waits for its single reply.
    pub(crate) async fn call<M: Method>(
        &mut self,
        params: &M::Params,
    ) -> Result<M::Output, AgentError> {
        let id = self.send::<M>(params).await?;
        match self.read_reply(id, M::NAME).await? {
            ReplyBody::Ok(value) => self.decode::<M::Output>(M::NAME, value),
            ReplyBody::Event(_) => {
                Err(self.protocol(format!("{} answered with a stream event", M::NAME)))
            }
            ReplyBody::Error(e) => Err(AgentError::Remote {
                method: M::NAME,
                code: e.code,
                message: super::sanitize_for_terminal(&e.message),
            }),
        }
    }

    /// Sends a request for `M`; returns its id.
    pub(crate) async fn send<M: Method>(&mut self, params: &M::Params) -> Result<u64, AgentError> {
        let id = self.next_id;
        self.next_id += 1;
        let params = serde_json::to_value(params)
            .map_err(|e| self.protocol(format!("encoding {} params: {e}", M::NAME)))?;
        let request = Request {
            id,
            method: M::NAME.to_owned(),
            params,
            token: None,
        };
        let line = encode_line(&request).map_err(|e| self.protocol(format!("{}: {e}", M::NAME)))?;
        self.stream
            .write_all(&line)
            .await
            .map_err(|source| AgentError::Io {
                context: format!("sending {} to agent {}", M::NAME, self.addr),
                source,
            })?;
        Ok(id)
    }

    /// Reads the next reply for request `id`.
    pub(crate) async fn read_reply(
        &mut self,
        id: u64,
        method: &'static str,
    ) -> Result<ReplyBody, AgentError> {
        let line = self.read_line(method).await?;
        let reply: Reply = serde_json::from_slice(&line)
            .map_err(|e| self.protocol(format!("{method}: undecodable reply: {e}")))?;
        match reply {
            Reply { id: got, body } if got == id => Ok(body),
            Reply {
                id: 0,
                body: ReplyBody::Error(e),
            } => Err(AgentError::Remote {
                method,
                code: e.code,
                message: super::sanitize_for_terminal(&e.message),
            }),
            Reply { id: got, .. } => {
                Err(self.protocol(format!("{method}: reply for request {got}, expected {id}")))
            }
        }
    }

    async fn read_line(&mut self, method: &'static str) -> Result<Vec<u8>, AgentError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.framer.next_line() {
                Ok(Some(line)) => return Ok(line),
                Ok(None) => {}
                Err(e) => return Err(self.protocol(format!("{method}: {e}"))),
            }
            let n = read_some(&mut self.stream, &mut chunk, self.addr, method).await?;
            self.framer.push(&chunk[..n]);
        }
    }

    /// Reads the one reply line of request `id` and hands over the raw
    /// stream with the bytes the agent sent after that line: what an
    /// upgrading method (`exec.start`) speaks from then on.
    pub(crate) async fn read_line_and_rest(
        mut self,
        id: u64,
        method: &'static str,
    ) -> Result<(ReplyBody, Upgraded), AgentError> {
        if self.framer.buffered() != 0 {
            return Err(self.protocol(format!("{method}: unrequested bytes before the reply")));
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let newline = loop {
            if let Some(at) = buf.iter().position(|&b| b == b'\n') {
                break at;
            }
            if buf.len() > MAX_MESSAGE_BYTES {
                return Err(
                    self.protocol(format!("{method}: reply exceeds {MAX_MESSAGE_BYTES} bytes"))
                );
            }
            let n = read_some(&mut self.stream, &mut chunk, self.addr, method).await?;
            buf.extend_from_slice(&chunk[..n]);
        };
        if newline > MAX_MESSAGE_BYTES {
            return Err(self.protocol(format!("{method}: reply exceeds {MAX_MESSAGE_BYTES} bytes")));
        }
        let rest = buf.split_off(newline + 1);
        self.framer.push(&buf);
        let body = self.read_reply(id, method).await?;
        keep_alive(&self.stream).map_err(|source| AgentError::Io {
            context: format!(
                "setting keepalive on the {method} session of agent {}",
                self.addr
            ),
            source,
        })?;
        Ok((
            body,
            Upgraded {
                stream: self.stream,
                rest,
                addr: self.addr,
            },
        ))
    }

    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        value: Value,
    ) -> Result<T, AgentError> {
        serde_json::from_value(value)
            .map_err(|e| self.protocol(format!("{method}: unexpected result: {e}")))
    }

    fn protocol(&self, detail: String) -> AgentError {
        AgentError::Protocol {
            addr: self.addr,
            detail: super::sanitize_for_terminal(&detail),
        }
    }
}

/// Reads what agent `addr` sent next during `method` into `chunk`; the end
/// of the stream is [`AgentError::Closed`].
pub(super) async fn read_some(
    reader: &mut (impl AsyncRead + Unpin),
    chunk: &mut [u8],
    addr: SocketAddr,
    method: &'static str,
) -> Result<usize, AgentError> {
    let n = reader.read(chunk).await.map_err(|source| AgentError::Io {
        context: format!("reading {method} from agent {addr}"),
        source,
    })?;
    if n == 0 {
        return Err(AgentError::Closed { addr, method });
    }
    Ok(n)
}

/// TCP keepalive for an upgraded session: it may rightly be silent for
/// hours (no idle bound), but a guest that vanished (evicted, its TAP
/// gone) ends it with a timeout within about a minute: 30 s idle, then 3
/// probes 10 s apart.
fn keep_alive(stream: &TcpStream) -> std::io::Result<()> {
    use rustix::net::sockopt;
    sockopt::set_socket_keepalive(stream, true)?;
    sockopt::set_tcp_keepidle(stream, std::time::Duration::from_secs(30))?;
    sockopt::set_tcp_keepintvl(stream, std::time::Duration::from_secs(10))?;
    sockopt::set_tcp_keepcnt(stream, 3)?;
    Ok(())
}

#[cfg(test)]
mod keepalive_tests {
    use lobster_agent_proto::{encode_line, LineFramer, Reply, MAX_MESSAGE_BYTES};
    use rustix::net::sockopt;
    use tokio::io::AsyncWriteExt;

    use super::Conn;

    #[tokio::test]
    async fn an_upgraded_session_probes_a_silent_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut agent, _) = listener.accept().await.unwrap();
        let mut line = encode_line(&Reply::ok(1, serde_json::json!({}))).unwrap();
        line.extend_from_slice(b"first frame");
        agent.write_all(&line).await.unwrap();
        assert!(!sockopt::socket_keepalive(&stream).unwrap());

        let conn = Conn {
            stream,
            framer: LineFramer::new(MAX_MESSAGE_BYTES),
            next_id: 2,
            addr,
        };
        let (_, upgraded) = conn.read_line_and_rest(1, "exec.start").await.unwrap();
        assert_eq!(upgraded.rest, b"first frame");
        let s = &upgraded.stream;
        assert!(sockopt::socket_keepalive(s).unwrap());
        assert_eq!(sockopt::tcp_keepidle(s).unwrap().as_secs(), 30);
        assert_eq!(sockopt::tcp_keepintvl(s).unwrap().as_secs(), 10);
        assert_eq!(sockopt::tcp_keepcnt(s).unwrap(), 3);
    }
}
