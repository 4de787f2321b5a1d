// Package lobster is the Go binding of lobster: isolated microVM tenants on
// one host. It wraps the C ABI (lobster-capi/include/lobster.h) with cgo and
// links the static library cargo builds:
//
//	cargo build -p lobster-capi              # target/debug/liblobster.a (default)
//	cargo build -p lobster-capi --release    # then build Go with -tags lobster_release
//
// Open a host from its configuration and list its tenants:
//
//	host, err := lobster.Open("")            // $LOBSTERD_CONFIG or /etc/lobsterd/config.json
//	if err != nil { ... }
//	defer host.Close()
//	tenants, err := host.List()
//
// A Host's operations, by group:
//
//   - reading the registry: List, ListJSON, Get, Token (each Tenant a plain
//     value copied out of C);
//   - a tenant's life: Spawn (a TenantSpec: sizes, backend, env, secrets,
//     command, a snap to restore), Suspend, Resume, Evict and EvictWith
//     (EvictOptions), and SpawnWithProgress, SuspendWithProgress and
//     ResumeWithProgress, which report each step as a ProgressEvent;
//   - logs: Logs returns a log's tail, FollowLogs streams it on a channel
//     (a LogStream, ended by its context or Close);
//   - disks: Snap archives a tenant's overlay disk (a SnapReport), which
//     TenantSpec.FromSnap restores;
//   - health: Molt checks and repairs tenants (MoltReport), Overview is the
//     dashboard with the watchdog's view.
//
// A Host is safe for concurrent use. Errors are *Error values; compare
// them with errors.Is against the sentinels (ErrNotFound, ErrUnsupported,
// ...), one per lobster_result code.
package lobster

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#include <stdlib.h>
#include "lobster.h"
*/
import "C"

// Version is the version of the linked C library.
func Version() string {
	return C.GoString(C.lobster_version())
}
