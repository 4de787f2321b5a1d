//go:build lobster_release

package lobster

// Links target/release/liblobster.a: run `cargo build -p lobster-capi --release` first.

/*
#cgo LDFLAGS: ${SRCDIR}/../../target/release/liblobster.a -lpthread -ldl -lm
*/
import "C"
