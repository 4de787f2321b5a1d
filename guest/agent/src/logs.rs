//! Capped, rotated log files with live followers.
//!
//! A [`LogSink`] appends lines to `<name>.log`; when the file reaches its cap
//! it becomes `<name>.log.1` (replacing the previous one), so a chatty
//! workload uses at most twice the cap on disk. Followers get new lines
//! through bounded channels; one that falls behind is dropped (its stream
//! ends) rather than making the writer wait or buffer.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;

use lobster_agent_proto::methods::LogLines;

/// Longest stored line; longer output is split.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// Bytes of log text one reply may carry (leaves room for JSON escaping).
pub const MAX_REPLY_TEXT: usize = 256 * 1024;
/// Lines a follower may lag behind before it is dropped.
const FOLLOWER_BACKLOG: usize = 4096;

/// One log file and its followers.
#[derive(Debug)]
pub struct LogSink {
    path: PathBuf,
    rotated: PathBuf,
    max_bytes: u64,
    inner: Mutex<SinkState>,
}

#[derive(Debug)]
struct SinkState {
    file: Option<File>,
    size: u64,
    followers: Vec<SyncSender<String>>,
}

impl LogSink {
    /// A sink writing `dir/<name>.log` (the directory is created).
    pub fn open(dir: &Path, name: &str, max_bytes: u64) -> std::io::Result<LogSink> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.log"));
        let rotated = dir.join(format!("{name}.log.1"));
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(LogSink {
            path,
            rotated,
            max_bytes: max_bytes.max(1024),
            inner: Mutex::new(SinkState {
                file: Some(file),
                size,
                followers: Vec::new(),
            }),
        })
    }

    /// Appends one line (split if longer than [`MAX_LINE_BYTES`]).
    pub fn append(&self, line: &str) {
        let mut rest = line.trim_end_matches(['\n', '\r']);
        loop {
            let cut = floor_char_boundary(rest, MAX_LINE_BYTES);
            let (piece, tail) = rest.split_at(cut);
            self.append_piece(piece);
            if tail.is_empty() {
                break;
            }
            rest = tail;
        }
    }

    fn append_piece(&self, piece: &str) {
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if state.size >= self.max_bytes {
            // Rotate. If the rename fails, `size` stays high, so the next
            // line retries, and the hard stop below caps the file at twice
            // the limit whatever happens.
            drop(state.file.take());
            if std::fs::rename(&self.path, &self.rotated).is_ok() {
                state.size = 0;
            }
            state.file = open_append(&self.path).ok();
        }
        if state.size < self.max_bytes.saturating_mul(2) {
            if let Some(file) = state.file.as_mut() {
                if file
                    .write_all(piece.as_bytes())
                    .and_then(|_| file.write_all(b"\n"))
                    .is_ok()
                {
                    state.size += piece.len() as u64 + 1;
                }
            }
        }
        state
            .followers
            .retain(|tx| match tx.try_send(piece.to_owned()) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            });
    }

    /// The last `n` lines, oldest first, within [`MAX_REPLY_TEXT`].
    pub fn tail(&self, n: usize) -> LogLines {
        let _state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.tail_locked(n)
    }

    fn tail_locked(&self, n: usize) -> LogLines {
        let mut text = read_lossy(&self.rotated);
        text.push_str(&read_lossy(&self.path));
        let mut lines: Vec<&str> = text.lines().collect();
        let mut truncated = lines.len() > n;
        lines = lines.split_off(lines.len().saturating_sub(n));
        let mut budget = MAX_REPLY_TEXT;
        let mut keep = 0;
        for line in lines.iter().rev() {
            if line.len() + 1 > budget {
                truncated = true;
                break;
            }
            budget -= line.len() + 1;
            keep += 1;
        }
        LogLines {
            lines: lines[lines.len() - keep..]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            truncated,
        }
    }

    /// The last `n` lines and a receiver of every line written after them
    /// (taken atomically, so no line is lost or repeated in between).
    pub fn follow(&self, n: usize) -> (LogLines, Receiver<String>) {
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (tx, rx) = sync_channel(FOLLOWER_BACKLOG);
        state.followers.push(tx);
        (self.tail_locked(n), rx)
    }

    /// Flushes to disk.
    pub fn sync(&self) {
        let state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = state.file.as_ref() {
            let _ = f.sync_all();
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Copies a child's output into `sink` line by line until end of stream.
/// Lines are split at [`MAX_LINE_BYTES`]; invalid UTF-8 is replaced.
pub fn pump(mut from: impl Read, sink: &LogSink) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            sink.append(&String::from_utf8_lossy(&line));
        }
        // Hand over long unterminated output in pieces instead of holding it.
        if pending.len() >= MAX_LINE_BYTES {
            sink.append(&String::from_utf8_lossy(&pending));
            pending.clear();
        }
    }
    if !pending.is_empty() {
        sink.append(&String::from_utf8_lossy(&pending));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_the_last_lines_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::open(dir.path(), "w", 1024).unwrap();
        for i in 0..200 {
            sink.append(&format!("line {i:03}"));
        }
        let tail = sink.tail(3);
        assert_eq!(tail.lines, ["line 197", "line 198", "line 199"]);
        assert!(tail.truncated);
        let on_disk = std::fs::metadata(dir.path().join("w.log")).unwrap().len()
            + std::fs::metadata(dir.path().join("w.log.1")).unwrap().len();
        assert!(on_disk <= 2 * 1024 + 64, "{on_disk} bytes on disk");
    }

    #[test]
    fn long_lines_are_split() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::open(dir.path(), "w", 1 << 20).unwrap();
        sink.append(&"é".repeat(MAX_LINE_BYTES));
        let tail = sink.tail(10);
        assert_eq!(tail.lines.len(), 2);
        assert!(tail.lines.iter().all(|l| l.len() <= MAX_LINE_BYTES));
    }

    #[test]
    fn followers_see_new_lines_and_laggards_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::open(dir.path(), "w", 1 << 20).unwrap();
        sink.append("old");
        let (tail, rx) = sink.follow(10);
        assert_eq!(tail.lines, ["old"]);
        sink.append("new");
        assert_eq!(rx.recv().unwrap(), "new");
        for i in 0..FOLLOWER_BACKLOG + 1 {
            sink.append(&format!("{i}"));
        }
        let received = rx.iter().count();
        assert_eq!(received, FOLLOWER_BACKLOG, "stream ends after the backlog");
    }

    #[test]
    fn pump_splits_output_into_lines() {
        let dir = tempfile::tempdir().unwrap();
        let sink = LogSink::open(dir.path(), "w", 1 << 20).unwrap();
        pump(&b"a\nb\r\nno newline"[..], &sink);
        assert_eq!(sink.tail(10).lines, ["a", "b", "no newline"]);
    }
}
