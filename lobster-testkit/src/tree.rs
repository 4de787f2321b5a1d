//! A small directory tree with distinct modes, a binary file spanning
//! several frames and a symbolic link, and a listing to compare two trees
//! by kind, mode and content: the fixture of every file-copy test.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// Entries of [`tree`]: `d`, `secret`, `run.sh`, `empty`, `blob.bin`, `link`.
pub const TREE_ENTRIES: u64 = 6;

/// File content bytes of [`tree`].
pub const TREE_BYTES: u64 = 10 + 18 + 65_536;

/// `root/d`: a 0700 directory holding a 0600 file, a 0755 script, an
/// empty 0750 directory, a 64 KiB binary file and a symbolic link to the
/// first file.
pub fn tree(root: &Path) -> PathBuf {
    let d = root.join("d");
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    fs::create_dir(&d).unwrap();
    fs::write(d.join("secret"), b"only mine\n").unwrap();
    mode(&d.join("secret"), 0o600);
    fs::write(d.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    mode(&d.join("run.sh"), 0o755);
    fs::create_dir(d.join("empty")).unwrap();
    mode(&d.join("empty"), 0o750);
    let blob: Vec<u8> = (0..65_536u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(d.join("blob.bin"), blob).unwrap();
    symlink("secret", d.join("link")).unwrap();
    mode(&d, 0o700);
    d
}

/// One entry of a [`listing`]: relative path, kind, mode, and content or
/// link target.
pub type Entry = (String, &'static str, u32, Vec<u8>);

/// Every entry under `dir` (itself included, as ""), sorted.
pub fn listing(dir: &Path) -> Vec<Entry> {
    fn walk(base: &Path, at: &Path, out: &mut Vec<Entry>) {
        let meta = fs::symlink_metadata(at).unwrap();
        let rel = at.strip_prefix(base).unwrap().display().to_string();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(at).unwrap();
            out.push((rel, "link", 0, target.into_os_string().into_encoded_bytes()));
        } else if meta.is_dir() {
            out.push((rel, "dir", mode, Vec::new()));
            for entry in fs::read_dir(at).unwrap() {
                walk(base, &entry.unwrap().path(), out);
            }
        } else {
            out.push((rel, "file", mode, fs::read(at).unwrap()));
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
