//! `unsafe` blocks are allowed in lobster-capi only inside `src/ffi.rs`
//! (the crate allows the `unsafe_code` lint because `#[no_mangle]` needs it).

#[test]
fn unsafe_blocks_live_only_in_ffi_rs() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src dir") {
        let path = entry.expect("dir entry").path();
        if path.file_name().is_some_and(|n| n == "ffi.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
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
