//! Tar archives of file copies (`files.put`, `files.get`), shared by the
//! agent and the host so both ends pack and unpack the same way.
//!
//! An archive holds exactly one top-level entry, named after the copied
//! file or directory, and below it only regular files, directories and
//! symbolic links (GNU headers; long names as GNU long-name entries). Each
//! entry keeps its mode, numeric owner and modification time, so packing
//! an unpacked tree gives the same archive again.
//!
//! [`pack`] stores symbolic links below the top as links, never following
//! them, and refuses devices, sockets and fifos naming the path.
//!
//! [`unpack`] treats the archive as hostile: every entry must lie under the
//! single top-level name with no `..` or absolute path; no entry may go
//! through a symbolic link (not even one the archive made); hard links,
//! devices, fifos and pax headers are refused; file content counts against
//! `max_bytes`, and a header declaring more than what is left is refused
//! before its content is read. Entries are written into a private staging
//! directory (mode 0700, `.lobster-put-*`) in the directory that will hold
//! the result, then renamed into place with one `rename(2)`. On any error
//! the staging directory is removed: nothing is left.
//!
//! Placement (like `cp`): when `dest` is an existing directory, the
//! top-level entry goes *inside* it, as `dest/<top name>`; otherwise it
//! becomes `dest` itself (whose parent must exist). An existing file there
//! is replaced atomically; an existing non-empty directory is refused.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use filetime::FileTime;
use tar::{Builder, EntryType, Header};

use crate::ErrorCode;

/// The longest path or link target an archive may name (Linux `PATH_MAX`).
pub const MAX_NAME_BYTES: u64 = 4096;

/// Prefix of the staging directory's name.
pub const STAGING_PREFIX: &str = ".lobster-put-";

/// Mode and owner bits that survive a copy.
const MODE_BITS: u32 = 0o7777;
const SETID_BITS: u32 = 0o6000;

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Regular files, directories and symbolic links.
    pub entries: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Who owns what [`unpack`] creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OwnerPolicy {
    /// The uid and gid the archive names (needs root: the agent in a guest).
    Archive,
    /// This uid and gid for everything.
    Fixed(u32, u32),
    /// Whoever runs the unpacking (a host user).
    #[default]
    Process,
}

/// How [`unpack`] places entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Owner of created entries.
    pub owner: OwnerPolicy,
    /// Keep setuid and setgid bits (dropped by default).
    pub keep_setid: bool,
}

/// Why a copy failed; nothing was placed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The archive or the source holds something a copy does not carry.
    #[error("{path}: {reason}")]
    Refused {
        /// The entry or file, as named by the archive or on disk.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// File content exceeds the limit.
    #[error("the copy exceeds its limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The source, or the destination's parent, does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// Something is in the way at the destination.
    #[error("{}: {reason}", path.display())]
    Exists {
        /// The destination.
        path: PathBuf,
        /// What is there.
        reason: &'static str,
    },
    /// The archive is not a readable tar stream (or it ended early).
    #[error("reading the archive")]
    Read(#[source] io::Error),
    /// Writing the archive failed (the receiver went away).
    #[error("writing the archive")]
    Write(#[source] io::Error),
    /// A file system operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// The operation, e.g. `creating`.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ArchiveError {
    /// The protocol error code this failure is reported as.
    pub fn code(&self) -> ErrorCode {
        match self {
            ArchiveError::Refused { .. } | ArchiveError::Read(_) => ErrorCode::BadRequest,
            ArchiveError::TooLarge { .. } => ErrorCode::TooLarge,
            ArchiveError::NotFound { .. } => ErrorCode::NotFound,
            ArchiveError::Exists { .. } => ErrorCode::InvalidState,
            ArchiveError::Write(_) | ArchiveError::Io { .. } => ErrorCode::Internal,
        }
    }

    fn refused(path: impl AsRef<[u8]>, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Refused {
            path: String::from_utf8_lossy(path.as_ref()).into_owned(),
            reason: reason.into(),
        }
    }

    fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
        move |source| {
            if source.kind() == io::ErrorKind::NotFound {
                ArchiveError::NotFound {
                    path: path.to_owned(),
                }
            } else {
                ArchiveError::Io {
                    what,
                    path: path.to_owned(),
                    source,
                }
            }
        }
    }
}

type Result<T> = std::result::Result<T, ArchiveError>;

/// Writes `path` (a file, or a directory and everything below it) to
/// `writer` as a tar archive whose single top-level entry is its base name.
/// A symbolic link at `path` itself is followed; below it, links are stored
/// as links. Refuses devices, sockets and fifos, and more than `max_bytes`
/// of file content, before writing their header.
pub fn pack<W: Write>(path: &Path, max_bytes: u64, writer: W) -> Result<Summary> {
    let top = path
        .file_name()
        .ok_or_else(|| ArchiveError::refused(path.as_os_str().as_bytes(), "names no file"))?;
    let meta = fs::metadata(path).map_err(ArchiveError::io("reading", path))?;
    let mut builder = Builder::new(writer);
    let mut summary = Summary::default();
    let mut pending = vec![(path.to_owned(), PathBuf::from(top), meta)];
    while let Some((on_disk, name, meta)) = pending.pop() {
        let mut header = Header::new_gnu();
        header.set_mode(meta.mode() & MODE_BITS);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        header.set_mtime(meta.mtime().max(0) as u64);
        let kind = meta.file_type();
        if kind.is_dir() {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, &name, io::empty())
                .map_err(ArchiveError::Write)?;
            let mut children = Vec::new();
            for child in fs::read_dir(&on_disk).map_err(ArchiveError::io("listing", &on_disk))? {
                let child = child.map_err(ArchiveError::io("listing", &on_disk))?;
                let child_path = child.path();
                let child_meta = fs::symlink_metadata(&child_path)
                    .map_err(ArchiveError::io("reading", &child_path))?;
                children.push((child_path, name.join(child.file_name()), child_meta));
            }
            // Popped in name order.
            children.sort_by(|a, b| b.1.cmp(&a.1));
            pending.extend(children);
        } else if kind.is_file() {
            let len = meta.len();
            if len > max_bytes - summary.bytes {
                return Err(ArchiveError::TooLarge { limit: max_bytes });
            }
            let file = File::open(&on_disk).map_err(ArchiveError::io("opening", &on_disk))?;
            header.set_entry_type(EntryType::Regular);
            header.set_size(len);
            let content = ExactReader {
                inner: file.take(len),
                left: len,
            };
            builder
                .append_data(&mut header, &name, content)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => ArchiveError::Io {
                        what: "reading",
                        path: on_disk.clone(),
                        source: e,
                    },
                    _ => ArchiveError::Write(e),
                })?;
            summary.bytes += len;
        } else if kind.is_symlink() {
            let target = fs::read_link(&on_disk).map_err(ArchiveError::io("reading", &on_disk))?;
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, &name, &target)
                .map_err(ArchiveError::Write)?;
        } else {
            return Err(ArchiveError::refused(
                on_disk.as_os_str().as_bytes(),
                "a device, socket or fifo cannot be copied (only files, directories and symbolic links)",
            ));
        }
        summary.entries += 1;
    }
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(ArchiveError::Write)?;
    Ok(summary)
}

/// Reads exactly `left` bytes from `inner`: a file that shrank while it
/// was packed is an error, not a short entry.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was copied",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Unpacks the archive `reader` brings to `dest` (see the module docs for
/// placement) with at most `max_bytes` of file content.
pub fn unpack<R: Read>(
    reader: R,
    dest: &Path,
    max_bytes: u64,
    options: UnpackOptions,
) -> Result<Summary> {
    stage(reader, dest, max_bytes, options)?.commit()
}

/// Unpacks into the staging directory only; [`Staged::commit`] places the
/// result, dropping it removes everything. For callers that must see the
/// end of the transfer confirmed before placing it.
pub fn stage<R: Read>(
    reader: R,
    dest: &Path,
    max_bytes: u64,
    options: UnpackOptions,
) -> Result<Staged> {
    let inside = fs::metadata(dest).map(|m| m.is_dir()).unwrap_or(false);
    let (parent, final_name) = if inside {
        (dest.to_owned(), None)
    } else {
        let name = dest
            .file_name()
            .ok_or_else(|| ArchiveError::refused(dest.as_os_str().as_bytes(), "names no file"))?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        match fs::metadata(&parent) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ArchiveError::Exists {
                    path: parent,
                    reason: "is not a directory",
                })
            }
            Err(e) => return Err(ArchiveError::io("reading", &parent)(e)),
        }
        (parent, Some(name.to_owned()))
    };
    let staging = make_staging(&parent)?;
    let mut staged = Staged {
        staging,
        parent,
        final_name,
        top: None,
        summary: Summary::default(),
        committed: false,
    };
    staged.fill(reader, max_bytes, options)?;
    Ok(staged)
}

/// Creates a new private directory `parent/.lobster-put-*`.
fn make_staging(parent: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    for attempt in 0..64u128 {
        // Unpredictable enough; exclusive creation is what makes it private.
        let tag = (seed ^ (u128::from(std::process::id()) << 64)).wrapping_add(attempt * 7919);
        let path = parent.join(format!("{STAGING_PREFIX}{:016x}", tag as u64));
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(ArchiveError::io("creating a staging directory in", parent)(
                    e,
                ))
            }
        }
    }
    Err(ArchiveError::Exists {
        path: parent.to_owned(),
        reason: "holds too many staging directories",
    })
}

/// An archive unpacked into its staging directory, not yet placed.
#[derive(Debug)]
pub struct Staged {
    staging: PathBuf,
    parent: PathBuf,
    final_name: Option<OsString>,
    top: Option<OsString>,
    summary: Summary,
    committed: bool,
}

/// A directory whose mode and owner are set once everything below it is
/// written (so a read-only directory can still be filled).
struct DirMeta {
    path: PathBuf,
    mode: u32,
    owner: Option<(u32, u32)>,
    mtime: FileTime,
}

impl Staged {
    /// What was unpacked.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// Where [`commit`](Self::commit) places the result.
    pub fn destination(&self) -> PathBuf {
        let name = self
            .final_name
            .as_deref()
            .or(self.top.as_deref())
            .unwrap_or(OsStr::new(""));
        self.parent.join(name)
    }

    /// Renames the result into place (one `rename(2)`) and removes the
    /// staging directory.
    pub fn commit(mut self) -> Result<Summary> {
        let top = self.top.clone().expect("fill sets the top");
        let to = self.destination();
        fs::rename(self.staging.join(&top), &to).map_err(|e| match e.kind() {
            io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists => {
                ArchiveError::Exists {
                    path: to.clone(),
                    reason: "is a directory that is not empty",
                }
            }
            io::ErrorKind::IsADirectory => ArchiveError::Exists {
                path: to.clone(),
                reason: "is a directory; a file cannot replace it",
            },
            io::ErrorKind::NotADirectory => ArchiveError::Exists {
                path: to.clone(),
                reason: "is not a directory; a directory cannot replace it",
            },
            _ => ArchiveError::io("placing", &to)(e),
        })?;
        self.committed = true;
        let _ = fs::remove_dir(&self.staging);
        Ok(self.summary)
    }

    fn fill<R: Read>(&mut self, reader: R, max_bytes: u64, options: UnpackOptions) -> Result<()> {
        let mut input = EofWatch {
            inner: reader,
            eof: false,
        };
        self.fill_from(&mut input, max_bytes, options)?;
        // The end marker is a zero block, read without reaching the end of
        // the input; an archive cut short between two entries reaches it.
        if input.eof {
            return Err(ArchiveError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends without its end marker",
            )));
        }
        Ok(())
    }

    fn fill_from<R: Read>(
        &mut self,
        reader: R,
        max_bytes: u64,
        options: UnpackOptions,
    ) -> Result<()> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(ArchiveError::Read)?.raw(true);
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut dirs: Vec<DirMeta> = Vec::new();
        for entry in entries {
            let mut entry = entry.map_err(ArchiveError::Read)?;
            let header = entry.header().clone();
            let kind = header.entry_type();
            let name = long_name
                .take()
                .unwrap_or_else(|| header.path_bytes().into_owned());
            match kind {
                EntryType::GNULongName => {
                    long_name = Some(read_name(&mut entry, &name)?);
                    continue;
                }
                EntryType::GNULongLink => {
                    long_link = Some(read_name(&mut entry, &name)?);
                    continue;
                }
                EntryType::Regular | EntryType::Continuous => {}
                EntryType::Directory | EntryType::Symlink => {}
                EntryType::Link => return Err(ArchiveError::refused(&name, "hard links are refused")),
                EntryType::XHeader | EntryType::XGlobalHeader => {
                    return Err(ArchiveError::refused(&name, "pax headers are not supported"))
                }
                other => {
                    return Err(ArchiveError::refused(
                        &name,
                        format!("{other:?} entries are refused (only files, directories and symbolic links)"),
                    ))
                }
            }
            let target = self.place(&name)?;
            let number = |v: io::Result<u64>| {
                v.ok()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| ArchiveError::refused(&name, "bad owner in the header"))
            };
            let mut mode = header
                .mode()
                .map_err(|_| ArchiveError::refused(&name, "bad mode in the header"))?
                & MODE_BITS;
            if !options.keep_setid {
                mode &= !SETID_BITS;
            }
            let mtime = FileTime::from_unix_time(
                header
                    .mtime()
                    .ok()
                    .and_then(|t| i64::try_from(t).ok())
                    .ok_or_else(|| ArchiveError::refused(&name, "bad time in the header"))?,
                0,
            );
            let owner = match options.owner {
                OwnerPolicy::Archive => Some((number(header.uid())?, number(header.gid())?)),
                OwnerPolicy::Fixed(uid, gid) => Some((uid, gid)),
                OwnerPolicy::Process => None,
            };
            match kind {
                EntryType::Directory => {
                    match fs::symlink_metadata(&target) {
                        Ok(m) if m.is_dir() => {}
                        Ok(_) => return Err(ArchiveError::refused(&name, "appears twice")),
                        Err(_) => make_dir(&target)?,
                    }
                    dirs.push(DirMeta {
                        path: target,
                        mode,
                        owner,
                        mtime,
                    });
                }
                EntryType::Symlink => {
                    let link = long_link
                        .take()
                        .or_else(|| header.link_name_bytes().map(|l| l.into_owned()))
                        .filter(|l| !l.is_empty())
                        .ok_or_else(|| ArchiveError::refused(&name, "a link to nothing"))?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target).map_err(|e| {
                        match e.kind() {
                            io::ErrorKind::AlreadyExists => {
                                ArchiveError::refused(&name, "appears twice")
                            }
                            _ => ArchiveError::io("creating", &target)(e),
                        }
                    })?;
                    if let Some((uid, gid)) = owner {
                        std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                            .map_err(ArchiveError::io("setting the owner of", &target))?;
                    }
                    filetime::set_symlink_file_times(&target, mtime, mtime)
                        .map_err(ArchiveError::io("setting the time of", &target))?;
                }
                _ => {
                    let size = entry.size();
                    let left = max_bytes - self.summary.bytes;
                    if size > left {
                        return Err(ArchiveError::TooLarge { limit: max_bytes });
                    }
                    let mut file = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&target)
                        .map_err(|e| match e.kind() {
                            io::ErrorKind::AlreadyExists => {
                                ArchiveError::refused(&name, "appears twice")
                            }
                            _ => ArchiveError::io("creating", &target)(e),
                        })?;
                    let written = io::copy(&mut (&mut entry).take(left + 1), &mut file)
                        .map_err(ArchiveError::Read)?;
                    if written > left {
                        return Err(ArchiveError::TooLarge { limit: max_bytes });
                    }
                    if written != size {
                        return Err(ArchiveError::Read(io::ErrorKind::UnexpectedEof.into()));
                    }
                    self.summary.bytes += written;
                    if let Some((uid, gid)) = owner {
                        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                            .map_err(ArchiveError::io("setting the owner of", &target))?;
                    }
                    file.set_permissions(fs::Permissions::from_mode(mode))
                        .map_err(ArchiveError::io("setting the mode of", &target))?;
                    filetime::set_file_handle_times(&file, Some(mtime), Some(mtime))
                        .map_err(ArchiveError::io("setting the time of", &target))?;
                }
            }
            if long_link.is_some() {
                return Err(ArchiveError::refused(
                    &name,
                    "a long link name for a non-link",
                ));
            }
            self.summary.entries += 1;
        }
        if self.top.is_none() {
            return Err(ArchiveError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive holds no entry",
            )));
        }
        // Deepest first: a directory's own mode cannot block its children.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for dir in dirs {
            if let Some((uid, gid)) = dir.owner {
                std::os::unix::fs::lchown(&dir.path, Some(uid), Some(gid))
                    .map_err(ArchiveError::io("setting the owner of", &dir.path))?;
            }
            filetime::set_symlink_file_times(&dir.path, dir.mtime, dir.mtime)
                .map_err(ArchiveError::io("setting the time of", &dir.path))?;
            fs::set_permissions(&dir.path, fs::Permissions::from_mode(dir.mode))
                .map_err(ArchiveError::io("setting the mode of", &dir.path))?;
        }
        Ok(())
    }

    /// Checks an entry's name and makes its missing parents; where it goes
    /// in the staging directory.
    fn place(&mut self, name: &[u8]) -> Result<PathBuf> {
        let mut parts: Vec<&OsStr> = Vec::new();
        for part in Path::new(OsStr::from_bytes(name)).components() {
            match part {
                Component::Normal(p) => parts.push(p),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(ArchiveError::refused(name, "a `..` in the path"))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(ArchiveError::refused(name, "an absolute path"))
                }
            }
        }
        let Some(first) = parts.first() else {
            return Err(ArchiveError::refused(name, "an empty path"));
        };
        match &self.top {
            None => self.top = Some(first.to_os_string()),
            Some(top) if top.as_os_str() == *first => {}
            Some(top) => {
                return Err(ArchiveError::refused(
                    name,
                    format!(
                        "outside the archive's single top-level entry `{}`",
                        top.to_string_lossy()
                    ),
                ))
            }
        }
        let mut path = self.staging.clone();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            if i + 1 == parts.len() {
                break;
            }
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(ArchiveError::refused(name, "goes through a symbolic link"))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(ArchiveError::refused(name, "goes through a file")),
                Err(_) => make_dir(&path)?,
            }
        }
        Ok(path)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            remove_tree(&self.staging);
        }
    }
}

/// A reader that notes whether it reached the end of its input.
struct EofWatch<R> {
    inner: R,
    eof: bool,
}

impl<R: Read> Read for EofWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        Ok(n)
    }
}

/// A directory the unpacking itself may write into (its mode comes later).
fn make_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(ArchiveError::io("creating", path))
}

/// Reads a GNU long name, refusing one longer than [`MAX_NAME_BYTES`]
/// before reading it.
fn read_name<R: Read>(entry: &mut tar::Entry<'_, R>, name: &[u8]) -> Result<Vec<u8>> {
    if entry.size() > MAX_NAME_BYTES {
        return Err(ArchiveError::refused(
            name,
            format!("a name longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(ArchiveError::Read)?;
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    Ok(bytes)
}

/// Removes `path` and everything below it, never following a link, first
/// making its directories writable (their modes may be set already).
fn remove_tree(path: &Path) {
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        let Ok(children) = fs::read_dir(&dir) else {
            continue;
        };
        for child in children.flatten() {
            if child.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                pending.push(child.path());
            }
        }
    }
    let _ = fs::remove_dir_all(path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const MIB: u64 = 1024 * 1024;

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & MODE_BITS
    }

    /// A tree with files and directories of several modes and a link.
    fn sample_tree(root: &Path) -> PathBuf {
        let top = root.join("tree");
        fs::create_dir_all(top.join("sub/deeper")).unwrap();
        fs::write(top.join("plain"), b"hello\n").unwrap();
        fs::write(top.join("secret"), vec![7u8; 70_000]).unwrap();
        fs::write(top.join("sub/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::write(top.join("sub/deeper/empty"), b"").unwrap();
        symlink("../plain", top.join("sub/link")).unwrap();
        symlink("/etc/hostname", top.join("abs-link")).unwrap();
        let long = "n".repeat(150);
        fs::write(top.join(&long), b"long name").unwrap();
        fs::set_permissions(top.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(top.join("sub/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(top.join("sub/deeper"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(top.join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
        top
    }

    /// Every path below `root` with its kind, mode and content (or target).
    fn listing(root: &Path) -> Vec<(PathBuf, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pending = vec![root.to_owned()];
        while let Some(p) = pending.pop() {
            let meta = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            let content = if meta.file_type().is_symlink() {
                fs::read_link(&p).unwrap().into_os_string().into_vec()
            } else if meta.is_dir() {
                for c in fs::read_dir(&p).unwrap() {
                    pending.push(c.unwrap().path());
                }
                b"<dir>".to_vec()
            } else {
                fs::read(&p).unwrap()
            };
            let kind = meta.mode() & 0o170000;
            out.push((rel, kind | (meta.mode() & MODE_BITS), content));
        }
        out.sort();
        out
    }

    use std::os::unix::ffi::OsStringExt;

    fn packed(path: &Path) -> Vec<u8> {
        let mut bytes = Vec::new();
        pack(path, u64::MAX, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_tree_with_modes_and_links_round_trips_byte_identical() {
        let src = tempfile::tempdir().unwrap();
        let top = sample_tree(src.path());
        let archive = packed(&top);
        let dst = tempfile::tempdir().unwrap();
        let dest = dst.path().join("copy");
        let summary = unpack(&archive[..], &dest, 10 * MIB, UnpackOptions::default()).unwrap();
        assert_eq!(listing(&top), listing(&dest));
        assert_eq!(summary.entries, 10);
        assert_eq!(summary.bytes, 6 + 70_000 + 18 + 9);
        assert_eq!(mode_of(&dest.join("sub/deeper")), 0o700);
        assert_eq!(mode_of(&dest.join("secret")), 0o600);
        assert!(fs::symlink_metadata(dest.join("sub/link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(only_child(dst.path()), "copy", "no staging directory left");
    }

    #[test]
    fn packing_an_unpacked_tree_gives_the_same_archive() {
        let src = tempfile::tempdir().unwrap();
        let top = sample_tree(src.path());
        filetime::set_symlink_file_times(top.join("sub/link"), FileTime::zero(), FileTime::zero())
            .unwrap();
        let archive = packed(&top);
        let dst = tempfile::tempdir().unwrap();
        unpack(&archive[..], dst.path(), 10 * MIB, UnpackOptions::default()).unwrap();
        assert!(archive == packed(&dst.path().join("tree")));
    }

    #[test]
    fn into_an_existing_directory_the_top_entry_goes_inside_it() {
        let src = tempfile::tempdir().unwrap();
        let top = sample_tree(src.path());
        let dst = tempfile::tempdir().unwrap();
        unpack(
            &packed(&top)[..],
            dst.path(),
            10 * MIB,
            UnpackOptions::default(),
        )
        .unwrap();
        assert_eq!(listing(&top), listing(&dst.path().join("tree")));
        // Again: a non-empty directory is in the way; nothing changes.
        let err = unpack(
            &packed(&top)[..],
            dst.path(),
            10 * MIB,
            UnpackOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidState, "{err}");
        assert_eq!(only_child(dst.path()), "tree");
    }

    #[test]
    fn a_file_replaces_a_file_and_takes_its_name() {
        let src = tempfile::tempdir().unwrap();
        let file = src.path().join("f.txt");
        fs::write(&file, b"new").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let dest = dst.path().join("renamed");
        fs::write(&dest, b"old").unwrap();
        unpack(&packed(&file)[..], &dest, 10, UnpackOptions::default()).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(mode_of(&dest), 0o640);
    }

    #[test]
    fn setid_bits_are_dropped_unless_kept() {
        let src = tempfile::tempdir().unwrap();
        let file = src.path().join("tool");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o6755)).unwrap();
        let dst = tempfile::tempdir().unwrap();
        unpack(
            &packed(&file)[..],
            &dst.path().join("a"),
            10,
            UnpackOptions::default(),
        )
        .unwrap();
        assert_eq!(mode_of(&dst.path().join("a")), 0o755);
        let keep = UnpackOptions {
            keep_setid: true,
            ..UnpackOptions::default()
        };
        unpack(&packed(&file)[..], &dst.path().join("b"), 10, keep).unwrap();
        assert_eq!(mode_of(&dst.path().join("b")), 0o6755);
    }

    #[test]
    fn packing_refuses_a_fifo_naming_it_and_a_missing_source() {
        let src = tempfile::tempdir().unwrap();
        let top = src.path().join("d");
        fs::create_dir(&top).unwrap();
        let fifo = top.join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = pack(&top, u64::MAX, io::sink()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        assert!(err.to_string().contains("d/pipe"), "{err}");
        let err = pack(&src.path().join("nope"), u64::MAX, io::sink()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    }

    #[test]
    fn packing_stops_at_the_limit() {
        let src = tempfile::tempdir().unwrap();
        let top = sample_tree(src.path());
        let err = pack(&top, 1000, io::sink()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::TooLarge, "{err}");
    }

    /// Only child of `dir` (panics unless exactly one).
    fn only_child(dir: &Path) -> String {
        let names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        names[0].clone()
    }

    /// One raw entry: a GNU header with `name` written as is (no checks).
    fn raw_entry(out: &mut Vec<u8>, name: &str, kind: EntryType, data: &[u8], link: &str) {
        let mut header = Header::new_gnu();
        {
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn archive(entries: &[(&str, EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data, link) in entries {
            raw_entry(&mut out, name, *kind, data, link);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    /// Unpacks `bytes` into a fresh directory: the error, after checking
    /// that nothing at all was left.
    fn refused(bytes: &[u8], max_bytes: u64) -> ArchiveError {
        let dst = tempfile::tempdir().unwrap();
        let err = unpack(
            bytes,
            &dst.path().join("out"),
            max_bytes,
            UnpackOptions::default(),
        )
        .unwrap_err();
        let left: Vec<_> = fs::read_dir(dst.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?} left after: {err}");
        err
    }

    use EntryType as E;

    #[test]
    fn hostile_archives_are_refused_and_leave_nothing() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "parent",
                archive(&[
                    ("top", E::Directory, b"", ""),
                    ("top/../x", E::Regular, b"x", ""),
                ]),
                "`..`",
            ),
            (
                "dotdot first",
                archive(&[("../x", E::Regular, b"x", "")]),
                "`..`",
            ),
            (
                "absolute",
                archive(&[("/abs", E::Regular, b"x", "")]),
                "absolute",
            ),
            (
                "through a link",
                archive(&[
                    ("top", E::Directory, b"", ""),
                    ("top/link", E::Symlink, b"", "/tmp"),
                    ("top/link/evil", E::Regular, b"x", ""),
                ]),
                "symbolic link",
            ),
            (
                "second top",
                archive(&[
                    ("top", E::Directory, b"", ""),
                    ("other", E::Regular, b"x", ""),
                ]),
                "single top-level",
            ),
            (
                "hard link",
                archive(&[
                    ("top", E::Directory, b"", ""),
                    ("top/pw", E::Link, b"", "/etc/passwd"),
                ]),
                "hard links",
            ),
            (
                "device",
                archive(&[
                    ("top", E::Directory, b"", ""),
                    ("top/dev", E::Char, b"", ""),
                ]),
                "Char",
            ),
            ("fifo", archive(&[("top", E::Fifo, b"", "")]), "Fifo"),
            (
                "under a file",
                archive(&[
                    ("top", E::Directory, b"", ""),
                    ("top/f", E::Regular, b"x", ""),
                    ("top/f/g", E::Regular, b"x", ""),
                ]),
                "through a file",
            ),
            (
                "twice",
                archive(&[
                    ("top", E::Directory, b"", ""),
                    ("top/f", E::Regular, b"x", ""),
                    ("top/f", E::Regular, b"y", ""),
                ]),
                "twice",
            ),
        ];
        for (what, bytes, expect) in cases {
            let err = refused(&bytes, MIB);
            assert_eq!(err.code(), ErrorCode::BadRequest, "{what}: {err}");
            assert!(err.to_string().contains(expect), "{what}: {err}");
        }
        assert!(!Path::new("/tmp/evil").exists());
    }

    #[test]
    fn an_oversize_header_is_refused_before_its_content() {
        // The header claims 1 MiB but no content follows: a check after
        // reading would fail to read, not refuse the size.
        let mut bytes = Vec::new();
        raw_entry(&mut bytes, "top", E::Directory, b"", "");
        let mut header = Header::new_gnu();
        header.set_path("top/big").unwrap();
        header.set_size(MIB);
        header.set_mode(0o644);
        header.set_cksum();
        bytes.extend_from_slice(header.as_bytes());
        let err = refused(&bytes, MIB - 1);
        assert_eq!(err.code(), ErrorCode::TooLarge, "{err}");
    }

    #[test]
    fn an_oversize_total_is_refused() {
        let bytes = archive(&[
            ("top", E::Directory, b"", ""),
            ("top/a", E::Regular, &[1u8; 600], ""),
            ("top/b", E::Regular, &[2u8; 600], ""),
        ]);
        let err = refused(&bytes, 1000);
        assert_eq!(err.code(), ErrorCode::TooLarge, "{err}");
        assert_eq!(err.to_string(), "the copy exceeds its limit of 1000 bytes");
    }

    #[test]
    fn a_truncated_or_empty_archive_is_refused() {
        let bytes = archive(&[("top", E::Regular, &[1u8; 2000], "")]);
        let err = refused(&bytes[..1024], MIB);
        assert_eq!(err.code(), ErrorCode::BadRequest, "{err}");
        let err = refused(&[0u8; 1024], MIB);
        assert_eq!(err.code(), ErrorCode::BadRequest, "{err}");
        // Cut between two entries: only the missing end marker tells.
        let bytes = archive(&[
            ("top", E::Directory, b"", ""),
            ("top/a", E::Regular, b"a", ""),
        ]);
        let err = refused(&bytes[..1536], MIB);
        assert!(
            format!("{err:?}").contains("without its end marker"),
            "{err:?}"
        );
        let dst = tempfile::tempdir().unwrap();
        unpack(
            &bytes[..],
            &dst.path().join("x"),
            MIB,
            UnpackOptions::default(),
        )
        .unwrap();
    }

    #[test]
    fn an_overlong_gnu_name_is_refused_before_it_is_read() {
        let mut bytes = Vec::new();
        let mut header = Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        header.set_entry_type(E::GNULongName);
        header.set_size(1 << 40);
        header.set_cksum();
        bytes.extend_from_slice(header.as_bytes());
        let err = refused(&bytes, MIB);
        assert!(err.to_string().contains("longer than 4096"), "{err}");
    }

    #[test]
    fn a_staged_archive_dropped_before_commit_leaves_nothing() {
        let src = tempfile::tempdir().unwrap();
        let top = sample_tree(src.path());
        let dst = tempfile::tempdir().unwrap();
        let staged = stage(&packed(&top)[..], dst.path(), MIB, UnpackOptions::default()).unwrap();
        assert_eq!(staged.destination(), dst.path().join("tree"));
        assert!(only_child(dst.path()).starts_with(STAGING_PREFIX));
        drop(staged);
        assert_eq!(fs::read_dir(dst.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_parent_is_not_found() {
        let dst = tempfile::tempdir().unwrap();
        let bytes = archive(&[("top", E::Regular, b"x", "")]);
        let err = unpack(
            &bytes[..],
            &dst.path().join("no/such"),
            MIB,
            UnpackOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    }
}
