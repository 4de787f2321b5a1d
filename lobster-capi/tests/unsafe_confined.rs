//! `unsafe` blocks are allowed in lobster-capi only inside `src/ffi.rs`
//! (the crate allows the `unsafe_code` lint because `#[no_mangle]` needs it).

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, subdirectories included.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn unsafe_blocks_live_only_in_ffi_rs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let ffi = src.join("ffi.rs");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.contains(&ffi), "no {} among {files:?}", ffi.display());
    let mut offenders = Vec::new();
    for path in files.iter().filter(|p| **p != ffi) {
        let text = std::fs::read_to_string(path).expect("read source");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("unsafe {")
                || code.contains("unsafe fn")
                || code.contains("unsafe impl")
            {
                offenders.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe outside ffi.rs:\n{}",
        offenders.join("\n")
    );
}
