package lobster

/*
#include <stdlib.h>
#include <string.h>
#include "lobster.h"
*/
import "C"

import (
	"runtime"
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
	var path *C.char
	if configPath != "" {
		path = C.CString(configPath)
		defer C.free(unsafe.Pointer(path))
	}
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
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	err := call(h.ptr(), cname)
	runtime.KeepAlive(h)
	return err
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
	cspec, err := spec.cSpec()
	if err != nil {
		return Tenant{}, err
	}
	defer C.lobster_tenant_spec_free(cspec)
	var t *C.lobster_tenant
	var cerr *C.lobster_error
	code := C.lobster_host_spawn(h.ptr(), cspec, &t, &cerr)
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
