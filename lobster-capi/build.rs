//! Gives the shared library its soname (`liblobster.so.<major>`), as a
//! C library installed by scripts/install-capi.sh is expected to have.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblobster.so.{major}");
}
