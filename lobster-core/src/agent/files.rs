//! Copying files and directories to and from the guest: `files.put` and
//! `files.get`, each a tar archive
//! ([`archive`](lobster_agent_proto::archive)) over a connection upgraded
//! to frames ([`stream`](super::stream)).
//!
//! The host packs ([`Agent::put_path`]) and unpacks ([`Agent::get_path`])
//! in a blocking thread joined to the frames by a bounded channel, so a
//! copy holds at most a few frames of it in memory. The archive rules are
//! the agent's: one top-level entry, only files, directories and links,
//! file content capped by `max_bytes` (on both ends), nothing placed
//! unless all of it arrived.
//!
//! - `put`: the archive goes as `Stdin` frames within the credit window,
//!   then `StdinClose`; the agent places it and answers `End`. A failure to
//!   pack on the host drops the connection before `StdinClose`: the agent
//!   then places nothing.
//! - `get`: the agent sends `Stdout` frames and `End`; the host unpacks
//!   into a staging directory beside the destination as they come and
//!   places the result (one `rename(2)`) only after `End`. An `Error`
//!   frame, a broken connection or the host's own cap removes the staging
//!   directory: nothing is placed.
//!
//! Each wait for the agent (credit, the next frame, `End`) and each frame
//! write is bounded by the call timeout.

use std::io::{self, Read, Write};
use std::path::Path;

use lobster_agent_proto::archive::{self, ArchiveError, Summary, UnpackOptions};
use lobster_agent_proto::methods::{self as m, FilesGetParams, FilesPutParams};
use lobster_agent_proto::stream::{Frame, MAX_FRAME_PAYLOAD};
use lobster_agent_proto::{ErrorCode, Method};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::stream::{self, FrameReceiver, Incoming};
use super::{Agent, AgentError};

/// Chunks in flight between the blocking tar side and the frames.
const CHANNEL_CHUNKS: usize = 8;
/// Bytes the agent may send after the archive's end marker (padding).
const TRAILER_BYTES: usize = 1 << 20;

impl Agent {
    /// Copies the host file or directory `src` to the guest path `dest`
    /// (absolute; an existing directory receives it inside, as
    /// `dest/<name of src>`), with at most `max_bytes` of file content.
    /// Modes, numeric owners and modification times travel with it.
    ///
    /// # Errors
    /// [`AgentError::TooLarge`] past `max_bytes` (on either end; nothing is
    /// placed), [`AgentError::Archive`] when `src` cannot be packed (a
    /// device, socket or fifo in it, or it vanished), [`AgentError::Remote`]
    /// when the agent refuses the destination (`bad_request`, `not_found`,
    /// `invalid_state` for a non-empty directory in the way, `busy`).
    pub async fn put_path(
        &self,
        src: &Path,
        dest: &str,
        max_bytes: u64,
    ) -> Result<Summary, AgentError> {
        const METHOD: &str = m::FilesPut::NAME;
        let params = FilesPutParams {
            dest: dest.to_owned(),
            max_bytes,
        };
        let (_, upgraded) = self.upgrade::<m::FilesPut>(&params).await?;
        let (sender, mut receiver) = stream::split(upgraded, METHOD, self.timeouts.call);
        let idle = self.timeouts.call;

        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CHANNEL_CHUNKS);
        let src_owned = src.to_owned();
        let packer = tokio::task::spawn_blocking(move || {
            let mut writer = io::BufWriter::with_capacity(MAX_FRAME_PAYLOAD, ChannelWriter(tx));
            let summary = archive::pack(&src_owned, max_bytes, &mut writer)?;
            writer
                .flush()
                .map_err(ArchiveError::Write)
                .map(|()| summary)
        });
        let send = async {
            while let Some(chunk) = rx.recv().await {
                tokio::time::timeout(idle, sender.write_stdin(&chunk))
                    .await
                    .map_err(|_| AgentError::Timeout {
                        addr: self.rpc,
                        method: METHOD,
                        after: idle,
                    })??;
            }
            drop(rx);
            let packed = packer.await.map_err(|e| AgentError::Io {
                context: format!("packing {} for {METHOD}", src.display()),
                source: io::Error::other(e.to_string()),
            })?;
            packed.map_err(|e| archive_error(METHOD, &format!("packing {}", src.display()), e))?;
            sender.send(&Frame::StdinClose).await
        };
        let receive = async {
            match receiver.next().await? {
                Incoming::End(value) => end::<m::FilesPutResult>(&receiver, value),
                Incoming::Stdout(_) | Incoming::Stderr(_) => {
                    Err(receiver.protocol("output frame during a put".into()))
                }
            }
        };
        tokio::pin!(receive);
        let sent = tokio::select! {
            biased;
            result = &mut receive => return result.map(summary_of).map_err(too_large(METHOD)),
            sent = send => sent,
        };
        if let Err(e @ (AgentError::TooLarge { .. } | AgentError::Archive { .. })) = sent {
            // Packing failed on the host: the connection goes before
            // `StdinClose`, so the agent places nothing.
            return Err(e);
        }
        // The archive is out (or the connection broke): the agent's answer
        // decides, within the call bound.
        match (sent, tokio::time::timeout(idle, &mut receive).await) {
            (_, Ok(answer)) => answer.map(summary_of).map_err(too_large(METHOD)),
            (Err(e), Err(_)) => Err(e),
            (Ok(()), Err(_)) => Err(AgentError::Timeout {
                addr: self.rpc,
                method: METHOD,
                after: idle,
            }),
        }
    }

    /// Copies the guest file or directory `src` (absolute) to the host
    /// path `dest` (an existing directory receives it inside, as
    /// `dest/<name of src>`), with at most `max_bytes` of file content,
    /// placed only once the whole archive arrived.
    ///
    /// # Errors
    /// [`AgentError::TooLarge`] past `max_bytes` (nothing is placed),
    /// [`AgentError::Remote`] when the agent refuses (`not_found` for a
    /// missing `src`, `bad_request`), [`AgentError::Protocol`] for an
    /// archive the host refuses (hostile or broken), [`AgentError::Archive`]
    /// when the destination is in the way or cannot be written.
    pub async fn get_path(
        &self,
        src: &str,
        dest: &Path,
        max_bytes: u64,
        options: UnpackOptions,
    ) -> Result<Summary, AgentError> {
        const METHOD: &str = m::FilesGet::NAME;
        let params = FilesGetParams {
            path: src.to_owned(),
            max_bytes,
        };
        let (_, upgraded) = self.upgrade::<m::FilesGet>(&params).await?;
        let (_sender, mut receiver) = stream::split(upgraded, METHOD, self.timeouts.call);
        let idle = self.timeouts.call;

        let (tx, rx) = mpsc::channel::<Vec<u8>>(CHANNEL_CHUNKS);
        let dest_owned = dest.to_owned();
        let stager = tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader {
                rx,
                chunk: Vec::new(),
                at: 0,
            };
            archive::stage(&mut reader, &dest_owned, max_bytes, options)
        });
        let context = format!("unpacking to {}", dest.display());
        // An archive the host refuses is the guest's doing.
        let unpack_error = |receiver: &FrameReceiver, e: ArchiveError| match e {
            ArchiveError::Refused { .. } => receiver.protocol(format!("{context}: {e}")),
            ArchiveError::Read(cause) => {
                receiver.protocol(format!("{context}: reading the archive: {cause}"))
            }
            e => archive_error(METHOD, &context, e),
        };
        let mut tx = Some(tx);
        let mut stager = Some(stager);
        let mut staged = None;
        let mut trailer = 0usize;
        let result = loop {
            let incoming = tokio::select! {
                biased;
                done = async { stager.as_mut().expect("guarded").await }, if stager.is_some() => {
                    // The archive ended (or was refused) before the agent did.
                    stager = None;
                    match joined(done, METHOD) {
                        Ok(s) => { staged = Some(s); tx = None; continue; }
                        Err(e) => break Err(unpack_error(&receiver, e)),
                    }
                }
                incoming = receiver.next_within(idle) => incoming,
            };
            match incoming {
                Err(e) => break Err(too_large(METHOD)(e)),
                Ok(Incoming::Stdout(bytes)) => match &tx {
                    Some(sender) => {
                        if sender.send(bytes).await.is_err() {
                            tx = None;
                        }
                    }
                    None => {
                        trailer += bytes.len();
                        if trailer > TRAILER_BYTES || bytes.iter().any(|&b| b != 0) {
                            break Err(receiver.protocol("data after the archive's end".into()));
                        }
                    }
                },
                Ok(Incoming::Stderr(_)) => {
                    break Err(receiver.protocol("stderr frame during a get".into()))
                }
                Ok(Incoming::End(value)) => {
                    if let Err(e) = end::<m::FilesGetResult>(&receiver, value) {
                        break Err(e);
                    }
                    drop(tx.take());
                    let done = match (staged.take(), stager.take()) {
                        (Some(s), _) => Ok(s),
                        (None, Some(handle)) => joined(handle.await, METHOD),
                        (None, None) => {
                            Err(ArchiveError::Read(io::ErrorKind::UnexpectedEof.into()))
                        }
                    };
                    break match done {
                        Ok(s) => {
                            let commit = tokio::task::spawn_blocking(move || s.commit()).await;
                            joined(commit, METHOD).map_err(|e| unpack_error(&receiver, e))
                        }
                        Err(e) => Err(unpack_error(&receiver, e)),
                    };
                }
            }
        };
        if result.is_err() {
            // Ends the staging thread's input; dropping what it staged
            // removes it.
            drop(tx);
            drop(receiver);
            if let Some(handle) = stager {
                let _ = handle.await;
            }
        }
        result
    }
}

/// Decodes the `End` value of `M`.
fn end<T: DeserializeOwned>(
    receiver: &FrameReceiver,
    value: serde_json::Value,
) -> Result<T, AgentError> {
    serde_json::from_value(value).map_err(|e| receiver.protocol(format!("undecodable end: {e}")))
}

fn summary_of(result: m::FilesPutResult) -> Summary {
    Summary {
        entries: result.entries,
        bytes: result.bytes,
    }
}

/// The result of a joined blocking archive task.
fn joined<T>(
    done: Result<Result<T, ArchiveError>, tokio::task::JoinError>,
    method: &'static str,
) -> Result<T, ArchiveError> {
    done.unwrap_or_else(|e| {
        Err(ArchiveError::Write(io::Error::other(format!(
            "{method}: the archive task failed: {e}"
        ))))
    })
}

/// An archive failure on the host, the cap as [`AgentError::TooLarge`].
fn archive_error(method: &'static str, context: &str, source: ArchiveError) -> AgentError {
    match source {
        ArchiveError::TooLarge { .. } => AgentError::TooLarge {
            method,
            detail: source.to_string(),
        },
        source => AgentError::Archive {
            context: format!("{method}: {context}"),
            source,
        },
    }
}

/// Turns the agent's `too_large` refusal into [`AgentError::TooLarge`].
fn too_large(method: &'static str) -> impl Fn(AgentError) -> AgentError {
    move |e| match e {
        AgentError::Remote {
            code: ErrorCode::TooLarge,
            message,
            ..
        } => AgentError::TooLarge {
            method,
            detail: message,
        },
        other => other,
    }
}

/// The writing end of the channel, for the blocking packer.
struct ChannelWriter(mpsc::Sender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(buf.to_vec())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading end of the channel, for the blocking unpacker; the end of
/// the channel is the end of the archive.
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
