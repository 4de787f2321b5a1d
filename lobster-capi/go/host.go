package lobster

/*
#include <stdlib.h>
#include <string.h>
#include "lobster.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"
)

// Host is an open lobster host. It is safe for concurrent use; call Close
// when done (a finalizer frees it otherwise, at some later GC).
type Host struct {
	_ptr *C.lobster_host
}

// Open opens the host described by configPath, else $LOBSTERD_CONFIG,
// else /etc/lobsterd/config.json (configPath "" means "not given").
func Open(configPath string) (*Host, error) {
	path, err := optCString("configPath", configPath)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(path))
	var ptr *C.lobster_host
	var cerr *C.lobster_error
	if err := errorFrom(C.lobster_host_open(path, &ptr, &cerr), cerr); err != nil {
		return nil, err
	}
	h := &Host{_ptr: ptr}
	runtime.SetFinalizer(h, (*Host).Close)
	return h, nil
}

// Close frees the host. It is idempotent; using the host afterwards panics.
// Do not call it while another goroutine still uses the host.
func (h *Host) Close() {
	if h._ptr == nil {
		return
	}
	C.lobster_host_free(h._ptr)
	h._ptr = nil
	runtime.SetFinalizer(h, nil)
}

func (h *Host) ptr() *C.lobster_host {
	if h._ptr == nil {
		panic("lobster: Host used after Close")
	}
	maybeGC()
	return h._ptr
}

// withName runs a C call that takes the host and a C copy of name.
func (h *Host) withName(name string, call func(*C.lobster_host, *C.char) error) error {
	cname, err := cString("name", name)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cname))
	err = call(h.ptr(), cname)
	runtime.KeepAlive(h)
	return err
}

// cString is a C copy of the argument field's value s, freed by the
// caller with C.free. A NUL inside s, where C would cut it short, is
// ErrInvalidArgument naming field: nothing is passed on cut.
func cString(field, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{
			Code:    CodeInvalidArgument,
			Kind:    CodeInvalidArgument.String(),
			Message: fmt.Sprintf("lobster: `%s` contains a NUL byte", field),
		}
	}
	return C.CString(s), nil
}

// optCString is cString, or NULL when s is "" ("not given"); C.free
// ignores NULL.
func optCString(field, s string) (*C.char, error) {
	if s == "" {
		return nil, nil
	}
	return cString(field, s)
}

// List returns every tenant, sorted by name.
func (h *Host) List() ([]Tenant, error) {
	var list *C.lobster_tenant_list
	var cerr *C.lobster_error
	code := C.lobster_host_list(h.ptr(), &list, &cerr)
	runtime.KeepAlive(h)
	if err := errorFrom(code, cerr); err != nil {
		return nil, err
	}
	defer C.lobster_tenant_list_free(list)
	n := int(C.lobster_tenant_list_len(list))
	tenants := make([]Tenant, 0, n)
	for i := 0; i < n; i++ {
		tenants = append(tenants, tenantFrom(C.lobster_tenant_list_get(list, C.size_t(i))))
	}
	return tenants, nil
}

// ListJSON returns every tenant as a JSON array (the `lobsterd list --json`
// document, without tokens).
func (h *Host) ListJSON() ([]byte, error) {
	var out *C.char
	var cerr *C.lobster_error
	code := C.lobster_host_list_json(h.ptr(), &out, &cerr)
	runtime.KeepAlive(h)
	if err := errorFrom(code, cerr); err != nil {
		return nil, err
	}
	defer C.lobster_string_free(out)
	return C.GoBytes(unsafe.Pointer(out), C.int(C.strlen(out))), nil
}

// Get returns one tenant by name (ErrNotFound if there is none).
func (h *Host) Get(name string) (Tenant, error) {
	return h.tenantCall(name, func(host *C.lobster_host, cname *C.char, t **C.lobster_tenant, cerr **C.lobster_error) C.lobster_result {
		return C.lobster_host_get(host, cname, t, cerr)
	})
}

// tenantCall runs a C call that takes a tenant name and, on success,
// writes an owned tenant, which it converts and frees.
func (h *Host) tenantCall(name string, call func(*C.lobster_host, *C.char, **C.lobster_tenant, **C.lobster_error) C.lobster_result) (Tenant, error) {
	var tenant Tenant
	err := h.withName(name, func(host *C.lobster_host, cname *C.char) error {
		var t *C.lobster_tenant
		var cerr *C.lobster_error
		if err := errorFrom(call(host, cname, &t, &cerr), cerr); err != nil {
			return err
		}
		tenant = tenantFrom(t)
		C.lobster_tenant_free(t)
		return nil
	})
	return tenant, err
}

// Token returns the token clients present to a tenant's gateway (a secret).
func (h *Host) Token(name string) (string, error) {
	var token string
	err := h.withName(name, func(host *C.lobster_host, cname *C.char) error {
		var out *C.char
		var cerr *C.lobster_error
		if err := errorFrom(C.lobster_host_token(host, cname, &out, &cerr), cerr); err != nil {
			return err
		}
		token = C.GoString(out)
		C.lobster_string_free(out)
		return nil
	})
	return token, err
}

// Spawn creates and starts a tenant.
func (h *Host) Spawn(spec TenantSpec) (Tenant, error) {
	return h.spawnCall(spec, func(host *C.lobster_host, cspec *C.lobster_tenant_spec, t **C.lobster_tenant, cerr **C.lobster_error) C.lobster_result {
		return C.lobster_host_spawn(host, cspec, t, cerr)
	})
}

// SpawnWithProgress is Spawn, calling progress with each step as it
// starts and ends (see ProgressEvent for how); nil progress reports
// nothing.
func (h *Host) SpawnWithProgress(spec TenantSpec, progress func(ProgressEvent)) (Tenant, error) {
	return withProgress(progress, func(fn progressFn, context unsafe.Pointer) (Tenant, error) {
		return h.spawnCall(spec, func(host *C.lobster_host, cspec *C.lobster_tenant_spec, t **C.lobster_tenant, cerr **C.lobster_error) C.lobster_result {
			return C.lobster_host_spawn_with_progress(host, cspec, fn, context, t, cerr)
		})
	})
}

// spawnCall builds spec, runs a C call that takes the host and the spec
// and, on success, writes an owned tenant, which it converts and frees.
func (h *Host) spawnCall(spec TenantSpec, call func(*C.lobster_host, *C.lobster_tenant_spec, **C.lobster_tenant, **C.lobster_error) C.lobster_result) (Tenant, error) {
	cspec, err := spec.cSpec()
	if err != nil {
		return Tenant{}, err
	}
	defer C.lobster_tenant_spec_free(cspec)
	var t *C.lobster_tenant
	var cerr *C.lobster_error
	code := call(h.ptr(), cspec, &t, &cerr)
	runtime.KeepAlive(h)
	if err := errorFrom(code, cerr); err != nil {
		return Tenant{}, err
	}
	defer C.lobster_tenant_free(t)
	return tenantFrom(t), nil
}

// Evict removes a tenant and everything it holds.
func (h *Host) Evict(name string) error {
	return h.withName(name, func(host *C.lobster_host, cname *C.char) error {
		var cerr *C.lobster_error
		return errorFrom(C.lobster_host_evict(host, cname, &cerr), cerr)
	})
}

// EvictOptions adjusts an eviction; the zero value is Evict's.
type EvictOptions struct {
	// KeepOverlay leaves the tenant's overlay disk in place.
	KeepOverlay bool
}

// EvictWith removes a tenant as Evict does, adjusted by opts.
func (h *Host) EvictWith(name string, opts EvictOptions) error {
	var flags C.uint32_t
	if opts.KeepOverlay {
		flags |= C.LOBSTER_EVICT_KEEP_OVERLAY
	}
	return h.withName(name, func(host *C.lobster_host, cname *C.char) error {
		var cerr *C.lobster_error
		return errorFrom(C.lobster_host_evict_with(host, cname, flags, &cerr), cerr)
	})
}

// SnapReport is what Snap wrote (the `lobsterd snap --json` document).
type SnapReport struct {
	Path         string `json:"path"`          // the archive
	DiskBytes    uint64 `json:"disk_bytes"`    // the overlay disk's data copied
	ArchiveBytes uint64 `json:"archive_bytes"` // the archive's size
	PausedMs     uint64 `json:"paused_ms"`     // how long the VM was paused for the copy
}

// Snap writes a crash-consistent, sparse, zstd-compressed copy of a
// tenant's overlay disk (its VM paused for the copy only) to the file
// output, or into the host's snapshots directory when output is "". A
// TenantSpec's FromSnap restores it.
func (h *Host) Snap(name, output string) (SnapReport, error) {
	var report SnapReport
	err := h.withName(name, func(host *C.lobster_host, cname *C.char) error {
		coutput, err := optCString("output", output)
		if err != nil {
			return err
		}
		defer C.free(unsafe.Pointer(coutput))
		var out *C.char
		var cerr *C.lobster_error
		if err := errorFrom(C.lobster_host_snap(host, cname, coutput, &out, &cerr), cerr); err != nil {
			return err
		}
		return decodeOwned(out, &report)
	})
	return report, err
}

// Molt health-checks one tenant, or every tenant that should run when name
// is "", and repairs what failed; one report per tenant checked.
func (h *Host) Molt(name string) ([]MoltReport, error) {
	var out *C.char
	var cerr *C.lobster_error
	var code C.lobster_result
	if name == "" {
		code = C.lobster_host_molt(h.ptr(), nil, &out, &cerr)
		runtime.KeepAlive(h)
	} else {
		_ = h.withName(name, func(host *C.lobster_host, cname *C.char) error {
			code = C.lobster_host_molt(host, cname, &out, &cerr)
			return nil
		})
	}
	if err := errorFrom(code, cerr); err != nil {
		return nil, err
	}
	reports := []MoltReport{}
	if err := decodeOwned(out, &reports); err != nil {
		return nil, err
	}
	return reports, nil
}

// Overview returns a snapshot of every tenant with the watchdog's view. It
// only reads.
func (h *Host) Overview() (Overview, error) {
	var out *C.char
	var cerr *C.lobster_error
	code := C.lobster_host_overview(h.ptr(), &out, &cerr)
	runtime.KeepAlive(h)
	if err := errorFrom(code, cerr); err != nil {
		return Overview{}, err
	}
	var overview Overview
	if err := decodeOwned(out, &overview); err != nil {
		return Overview{}, err
	}
	return overview, nil
}

// Suspend writes a running tenant's memory and device state to disk and
// stops its VM; it returns the suspended tenant.
func (h *Host) Suspend(name string) (Tenant, error) {
	return h.tenantCall(name, func(host *C.lobster_host, cname *C.char, t **C.lobster_tenant, cerr **C.lobster_error) C.lobster_result {
		return C.lobster_host_suspend(host, cname, t, cerr)
	})
}

// Resume starts a suspended tenant again from its snapshot; it returns the
// running tenant.
func (h *Host) Resume(name string) (Tenant, error) {
	return h.tenantCall(name, func(host *C.lobster_host, cname *C.char, t **C.lobster_tenant, cerr **C.lobster_error) C.lobster_result {
		return C.lobster_host_resume(host, cname, t, cerr)
	})
}

// RotateTokens gives a running tenant new agent and gateway tokens (the
// guest and its gateway refuse the old ones afterwards); it returns the
// tenant.
func (h *Host) RotateTokens(name string) (Tenant, error) {
	return h.tenantCall(name, func(host *C.lobster_host, cname *C.char, t **C.lobster_tenant, cerr **C.lobster_error) C.lobster_result {
		return C.lobster_host_rotate_tokens(host, cname, t, cerr)
	})
}

// SuspendWithProgress is Suspend, calling progress with each step as it
// starts and ends (see ProgressEvent for how); nil progress reports
// nothing.
func (h *Host) SuspendWithProgress(name string, progress func(ProgressEvent)) (Tenant, error) {
	return withProgress(progress, func(fn progressFn, context unsafe.Pointer) (Tenant, error) {
		return h.tenantCall(name, func(host *C.lobster_host, cname *C.char, t **C.lobster_tenant, cerr **C.lobster_error) C.lobster_result {
			return C.lobster_host_suspend_with_progress(host, cname, fn, context, t, cerr)
		})
	})
}

// ResumeWithProgress is Resume, calling progress with each step as it
// starts and ends (see ProgressEvent for how); nil progress reports
// nothing.
func (h *Host) ResumeWithProgress(name string, progress func(ProgressEvent)) (Tenant, error) {
	return withProgress(progress, func(fn progressFn, context unsafe.Pointer) (Tenant, error) {
		return h.tenantCall(name, func(host *C.lobster_host, cname *C.char, t **C.lobster_tenant, cerr **C.lobster_error) C.lobster_result {
			return C.lobster_host_resume_with_progress(host, cname, fn, context, t, cerr)
		})
	})
}
