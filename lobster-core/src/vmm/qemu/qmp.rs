//! A minimal QMP client (QEMU Machine Protocol) over a unix socket.
//!
//! Protocol: QEMU greets with `{"QMP": ...}`; the client sends
//! `{"execute": "qmp_capabilities"}`; afterwards each command
//! `{"execute": name, "arguments": {...}, "id": n}` is answered by
//! `{"return": ..., "id": n}` or `{"error": {"class", "desc"}, "id": n}`,
//! with asynchronous `{"event": ...}` lines interleaved (skipped here).
//! Every read and write is bounded by the client's timeout. File
//! descriptors travel with `getfd` as SCM_RIGHTS ancillary data.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::UnixStream;

use crate::vmm::{Result, VmmError};

/// One QMP session.
#[derive(Debug)]
pub struct Qmp {
    vm: String,
    reader: BufReader<UnixStream>,
    timeout: Duration,
    next_id: u64,
}

impl Qmp {
    /// Connects, reads the greeting and negotiates capabilities.
    pub async fn connect(vm: &str, socket: &Path, timeout: Duration) -> Result<Qmp> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(socket))
            .await
            .map_err(|_| VmmError::Timeout {
                vm: vm.to_string(),
                operation: format!("connecting to qmp socket {}", socket.display()),
                after: timeout,
            })?
            .map_err(|source| VmmError::Io {
                context: format!("cannot connect to qmp socket {}", socket.display()),
                source,
            })?;
        let mut qmp = Qmp {
            vm: vm.to_string(),
            reader: BufReader::new(stream),
            timeout,
            next_id: 1,
        };
        let greeting = qmp.read_message("greeting").await?;
        if greeting.get("QMP").is_none() {
            return Err(qmp.protocol("greeting", format!("unexpected {greeting}")));
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Runs `command` and returns its `return` value.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            request["arguments"] = args;
        }
        let mut line = serde_json::to_vec(&request).expect("json serialises");
        line.push(b'\n');
        let write = self.reader.get_mut().write_all(&line);
        bounded(&self.vm, self.timeout, command, write).await?;
        self.answer(command, id).await
    }

    /// Hands `fd` to QEMU under `name` (`getfd`), for `fd:<name>` URIs.
    pub async fn send_fd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "execute": "getfd", "arguments": { "fdname": name }, "id": id });
        let mut line = serde_json::to_vec(&request).expect("json serialises");
        line.push(b'\n');
        let stream = self.reader.get_ref();
        let raw = fd.as_raw_fd();
        let send = async {
            loop {
                stream.writable().await?;
                match stream.try_io(Interest::WRITABLE, || {
                    crate::sys::scm::send_with_fd(stream.as_raw_fd(), &line, raw)
                }) {
                    Ok(n) if n == line.len() => return Ok(()),
                    Ok(n) => {
                        return Err(std::io::Error::other(format!(
                            "short write of getfd ({n} of {} bytes)",
                            line.len()
                        )))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        bounded(&self.vm, self.timeout, "getfd", send).await?;
        self.answer("getfd", id).await.map(drop)
    }

    async fn answer(&mut self, command: &str, id: u64) -> Result<Value> {
        loop {
            let message = self.read_message(command).await?;
            if message.get("event").is_some() {
                tracing::trace!(vm = %self.vm, %message, "qmp event");
                continue;
            }
            if message.get("id").and_then(Value::as_u64) != Some(id) {
                return Err(self.protocol(command, format!("answer without id {id}: {message}")));
            }
            if let Some(error) = message.get("error") {
                return Err(VmmError::Qmp {
                    vm: self.vm.clone(),
                    command: command.to_string(),
                    class: error["class"].as_str().unwrap_or("?").to_string(),
                    desc: error["desc"].as_str().unwrap_or("?").to_string(),
                });
            }
            return Ok(message.get("return").cloned().unwrap_or(Value::Null));
        }
    }

    async fn read_message(&mut self, command: &str) -> Result<Value> {
        let mut line = String::new();
        let n = bounded(
            &self.vm,
            self.timeout,
            command,
            self.reader.read_line(&mut line),
        )
        .await?;
        if n == 0 {
            return Err(self.protocol(command, "qemu closed the qmp connection".into()));
        }
        serde_json::from_str(&line)
            .map_err(|e| self.protocol(command, format!("malformed json ({e}): {}", line.trim())))
    }

    fn protocol(&self, command: &str, detail: String) -> VmmError {
        VmmError::Protocol {
            vm: self.vm.clone(),
            what: format!("qmp {command}"),
            detail,
        }
    }
}

/// Runs one read or write of `command` under the session's timeout.
async fn bounded<T>(
    vm: &str,
    timeout: Duration,
    command: &str,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(VmmError::Timeout {
            vm: vm.to_string(),
            operation: format!("qmp {command}"),
            after: timeout,
        }),
        Ok(Err(source)) => Err(VmmError::Io {
            context: format!("vm {vm}: qmp {command}"),
            source,
        }),
        Ok(Ok(v)) => Ok(v),
    }
}
