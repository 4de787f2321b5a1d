//go:build debug

package lobster

import "runtime"

// maybeGC runs a collection before every C call in debug builds, so a
// missing runtime.KeepAlive shows up as a crash in tests instead of rarely
// in production.
func maybeGC() { runtime.GC() }
