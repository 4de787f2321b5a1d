//! Following a log file by its path, as `tail -F` does: lines appended to
//! it, across rotation (the file renamed away and a new one created) and
//! truncation (`copytruncate`), without losing lines written just before
//! a rotation.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::sanitize_for_terminal;
use crate::config::Config;
use crate::error::Result;

/// How often [`LogFileFollow::next_lines`] looks for new lines.
const POLL: Duration = Duration::from_millis(200);

/// A line longer than this is cut there (the rest follows as more lines):
/// a writer that never ends its line cannot grow the follower's memory.
const MAX_LINE: usize = 64 * 1024;

/// A log file being followed. Lines come sanitised for a terminal.
#[derive(Debug)]
pub struct LogFileFollow {
    path: PathBuf,
    /// The file being read and its (device, inode); `None` while the path
    /// does not exist.
    file: Option<(File, (u64, u64))>,
    /// Bytes of `file` consumed.
    pos: u64,
    /// The start of a line whose end is not written yet.
    partial: Vec<u8>,
}

impl LogFileFollow {
    /// Opens `path` and returns its last `tail` lines and a follower that
    /// goes on from there. A missing file is an error.
    /// Only the end of the file is read, however long it has grown.
    pub fn open(path: &Path, tail: usize) -> io::Result<(Vec<String>, LogFileFollow)> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let start = tail_start(&mut file, meta.len(), tail)?;
        file.seek(SeekFrom::Start(start))?;
        let mut follow = LogFileFollow {
            path: path.to_path_buf(),
            file: Some((file, file_id(&meta))),
            pos: start,
            partial: Vec::new(),
        };
        let mut lines = follow.drain()?;
        lines.drain(..lines.len().saturating_sub(tail));
        Ok((lines, follow))
    }

    /// The complete lines written since the last call (none yet: empty),
    /// following the path to a new file once the old one is read to its
    /// end. Blocking (but never waits).
    pub fn read_new(&mut self) -> io::Result<Vec<String>> {
        let mut lines = self.drain()?;
        let now = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            // Between the rename and the new file: keep the old one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(lines),
            Err(e) => return Err(e),
        };
        let same = self
            .file
            .as_ref()
            .is_some_and(|(_, id)| *id == file_id(&now));
        if same && now.len() >= self.pos {
            return Ok(lines);
        }
        // Rotated (the old file is read to its end) or truncated: the rest
        // of an unfinished line is lost with it.
        if !self.partial.is_empty() {
            lines.push(sanitize_for_terminal(&String::from_utf8_lossy(
                &self.partial,
            )));
            self.partial.clear();
        }
        if same {
            if let Some((file, _)) = &mut self.file {
                file.seek(SeekFrom::Start(0))?;
            }
        } else {
            let file = match File::open(&self.path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(lines),
                Err(e) => return Err(e),
            };
            let id = file_id(&file.metadata()?);
            self.file = Some((file, id));
        }
        self.pos = 0;
        lines.extend(self.drain()?);
        Ok(lines)
    }

    /// Waits for new lines (looking every 200 ms) and returns them.
    pub async fn next_lines(&mut self) -> io::Result<Vec<String>> {
        loop {
            let lines = self.read_new()?;
            if !lines.is_empty() {
                return Ok(lines);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Reads the current file to its end; returns the complete lines.
    fn drain(&mut self) -> io::Result<Vec<String>> {
        let Some((file, _)) = &mut self.file else {
            return Ok(Vec::new());
        };
        let mut lines = Vec::new();
        loop {
            let start = self.partial.len();
            let room = (MAX_LINE + 1).saturating_sub(start) as u64;
            let read = file.take(room.max(1)).read_to_end(&mut self.partial)?;
            self.pos += read as u64;
            match self.partial[start..].iter().rposition(|&b| b == b'\n') {
                Some(end) => {
                    let rest = self.partial.split_off(start + end + 1);
                    let done = std::mem::replace(&mut self.partial, rest);
                    lines.extend(
                        String::from_utf8_lossy(&done)
                            .lines()
                            .map(sanitize_for_terminal),
                    );
                }
                None if self.partial.len() > MAX_LINE => {
                    let rest = self.partial.split_off(MAX_LINE);
                    let cut = std::mem::replace(&mut self.partial, rest);
                    lines.push(sanitize_for_terminal(&String::from_utf8_lossy(&cut)));
                }
                None => {}
            }
            if read == 0 {
                return Ok(lines);
            }
        }
    }
}

/// Where the last `tail` lines of `file` (`len` bytes) begin: its end is
/// read backwards in growing windows until enough line ends are seen.
fn tail_start(file: &mut File, len: u64, tail: usize) -> io::Result<u64> {
    let mut window: u64 = 64 * 1024;
    loop {
        let from = len.saturating_sub(window);
        if from == 0 {
            return Ok(0);
        }
        file.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::new();
        file.by_ref().take(len - from).read_to_end(&mut buf)?;
        let ends = buf.iter().filter(|&&b| b == b'\n').count();
        if ends > tail {
            // Start after the first line end in the window (a whole line).
            let first = buf.iter().position(|&b| b == b'\n').unwrap_or(0);
            return Ok(from + first as u64 + 1);
        }
        window = window.saturating_mul(4);
    }
}

fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// The last `tail` lines of the detached watchdog's log and a follower of
/// what it writes next (across rotation). Blocking.
pub fn follow_watch_log(config: &Config, tail: usize) -> Result<(Vec<String>, LogFileFollow)> {
    let path = super::watch_log_path(config);
    LogFileFollow::open(&path, tail).map_err(|source| {
        super::HealthError::Io {
            context: "no watchdog log (start one with `lobsterd watch -d`; under systemd read `journalctl -u lobsterd-watch`) at",
            path,
            source,
        }
        .into()
    })
}

/// The last `lines` lines of the detached watchdog's log. Blocking.
pub(crate) fn log_tail(config: &Config, lines: usize) -> Result<Vec<String>> {
    follow_watch_log(config, lines).map(|(tail, _)| tail)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn tail_then_new_lines_whole_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("watch.log");
        append(&log, "one\ntwo\nthree\n");
        let (tail, mut follow) = LogFileFollow::open(&log, 2).unwrap();
        assert_eq!(tail, ["two", "three"]);
        assert!(follow.read_new().unwrap().is_empty());
        append(&log, "four\nfi");
        assert_eq!(follow.read_new().unwrap(), ["four"]);
        append(&log, "ve\n");
        assert_eq!(follow.read_new().unwrap(), ["five"]);
    }

    #[test]
    fn rotation_by_rename_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("watch.log");
        append(&log, "old\n");
        let (_, mut follow) = LogFileFollow::open(&log, 10).unwrap();
        // Written to the old file after the last read, then rotated away.
        append(&log, "late\n");
        std::fs::rename(&log, dir.path().join("watch.log.1")).unwrap();
        assert_eq!(follow.read_new().unwrap(), ["late"]);
        // The new file is longer than the old one was read: still found.
        append(&log, "a much longer first line of the new file\nsecond\n");
        assert_eq!(
            follow.read_new().unwrap(),
            ["a much longer first line of the new file", "second"]
        );
        append(&log, "third\n");
        assert_eq!(follow.read_new().unwrap(), ["third"]);
    }

    #[test]
    fn a_long_log_is_tailed_from_its_end_and_an_endless_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("watch.log");
        let body: String = (0..100_000).map(|i| format!("event {i}\n")).collect();
        append(&log, &body);
        let (tail, mut follow) = LogFileFollow::open(&log, 3).unwrap();
        assert_eq!(tail, ["event 99997", "event 99998", "event 99999"]);
        // Only the end is read: the tail starts within the last window.
        let mut file = File::open(&log).unwrap();
        let start = tail_start(&mut file, body.len() as u64, 3).unwrap();
        assert!(body.len() as u64 - start <= 64 * 1024, "{start}");
        assert_eq!(&body[start as usize..start as usize + 6], "event ");
        append(&log, &"x".repeat(3 * MAX_LINE));
        let cut = follow.read_new().unwrap();
        assert_eq!(cut.len(), 2, "two whole pieces out, the rest pending");
        assert!(cut.iter().all(|l| l.len() == MAX_LINE));
        assert!(follow.partial.len() <= MAX_LINE);
    }

    #[test]
    fn truncation_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("watch.log");
        append(&log, "first run, a long line\n");
        let (_, mut follow) = LogFileFollow::open(&log, 10).unwrap();
        std::fs::write(&log, "").unwrap();
        append(&log, "new\n");
        assert_eq!(follow.read_new().unwrap(), ["new"]);
    }

    #[tokio::test]
    async fn next_lines_waits_for_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("watch.log");
        append(&log, "");
        let (tail, mut follow) = LogFileFollow::open(&log, 10).unwrap();
        assert!(tail.is_empty());
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                append(&log, "\x1b[31mred\n");
            })
        };
        let lines = tokio::time::timeout(Duration::from_secs(10), follow.next_lines())
            .await
            .expect("a line within 10 s")
            .unwrap();
        writer.await.unwrap();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].ends_with("red") && !lines[0].contains('\x1b'),
            "{lines:?}"
        );
    }
}
