//go:build !lobster_release

package lobster

// Links target/debug/liblobster.a: run `cargo build -p lobster-capi` first.

/*
#cgo LDFLAGS: ${SRCDIR}/../../target/debug/liblobster.a -lpthread -ldl -lm
*/
import "C"
