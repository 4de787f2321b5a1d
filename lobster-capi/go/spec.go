package lobster

/*
#include <stdlib.h>
#include "lobster.h"
*/
import "C"

import "unsafe"

// TenantSpec is what a spawn asks for. Zero sizes and an empty Backend
// follow the host's defaults; lobster validates every field when the spec
// is used and names the first bad one (ErrInvalidArgument).
type TenantSpec struct {
	Name           string
	VCPUs          uint8  // 1..=32; 0 = host default
	MemoryMiB      uint32 // 128..=262144; 0 = host default
	OverlaySizeMiB uint32 // 64..=1048576; 0 = host default
	Backend        string // "auto", "firecracker" or "qemu"; "" = host's
	Env            map[string]string
	Secrets        map[string]string // never logged or printed
	// Command is the workload to run instead of the default (the OpenClaw
	// gateway): Command[0] the program, the rest its arguments. Empty = the
	// default workload.
	Command []string
	// FromSnap restores the disk of this `snap` archive instead of a blank
	// overlay (its size included); tokens and secrets are made afresh.
	// "" = a fresh overlay.
	FromSnap string
}

// cSpec builds and validates the C spec; the caller frees it with
// C.lobster_tenant_spec_free.
func (s TenantSpec) cSpec() (*C.lobster_tenant_spec, error) {
	var builder *C.lobster_tenant_spec_builder
	var cerr *C.lobster_error
	name, err := cString("name", s.Name)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(name))
	if err := errorFrom(C.lobster_tenant_spec_builder_new(name, &builder, &cerr), cerr); err != nil {
		return nil, err
	}
	if err := s.configure(builder); err != nil {
		C.lobster_tenant_spec_builder_free(builder)
		return nil, err
	}
	var spec *C.lobster_tenant_spec
	// _build consumes the builder whatever the outcome.
	if err := errorFrom(C.lobster_tenant_spec_builder_build(builder, &spec, &cerr), cerr); err != nil {
		return nil, err
	}
	return spec, nil
}

func (s TenantSpec) configure(b *C.lobster_tenant_spec_builder) error {
	var cerr *C.lobster_error
	if s.VCPUs != 0 {
		if err := errorFrom(C.lobster_tenant_spec_builder_set_vcpus(b, C.uint8_t(s.VCPUs), &cerr), cerr); err != nil {
			return err
		}
	}
	if s.MemoryMiB != 0 {
		if err := errorFrom(C.lobster_tenant_spec_builder_set_memory_mib(b, C.uint32_t(s.MemoryMiB), &cerr), cerr); err != nil {
			return err
		}
	}
	if s.OverlaySizeMiB != 0 {
		if err := errorFrom(C.lobster_tenant_spec_builder_set_overlay_size_mib(b, C.uint32_t(s.OverlaySizeMiB), &cerr), cerr); err != nil {
			return err
		}
	}
	if s.Backend != "" {
		backend, err := cString("backend", s.Backend)
		if err != nil {
			return err
		}
		defer C.free(unsafe.Pointer(backend))
		if err := errorFrom(C.lobster_tenant_spec_builder_set_backend(b, backend, &cerr), cerr); err != nil {
			return err
		}
	}
	if len(s.Command) > 0 {
		// A Go array of C pointers: it holds no Go pointer, so C may read it.
		argv := make([]*C.char, len(s.Command))
		for i, arg := range s.Command {
			carg, err := cString("command", arg)
			if err != nil {
				return err
			}
			argv[i] = carg
			defer C.free(unsafe.Pointer(carg))
		}
		if err := errorFrom(C.lobster_tenant_spec_builder_set_command(b, &argv[0], C.size_t(len(argv)), &cerr), cerr); err != nil {
			return err
		}
	}
	if s.FromSnap != "" {
		archive, err := cString("fromSnap", s.FromSnap)
		if err != nil {
			return err
		}
		defer C.free(unsafe.Pointer(archive))
		if err := errorFrom(C.lobster_tenant_spec_builder_set_from_snap(b, archive, &cerr), cerr); err != nil {
			return err
		}
	}
	add := func(m map[string]string, secret bool) error {
		for k, v := range m {
			field := "env"
			if secret {
				field = "secrets"
			}
			key, err := cString(field, k)
			if err != nil {
				return err
			}
			value, err := cString(field, v)
			if err != nil {
				C.free(unsafe.Pointer(key))
				return err
			}
			var code C.lobster_result
			if secret {
				code = C.lobster_tenant_spec_builder_add_secret(b, key, value, &cerr)
			} else {
				code = C.lobster_tenant_spec_builder_add_env(b, key, value, &cerr)
			}
			C.free(unsafe.Pointer(key))
			C.free(unsafe.Pointer(value))
			if err := errorFrom(code, cerr); err != nil {
				return err
			}
		}
		return nil
	}
	if err := add(s.Env, false); err != nil {
		return err
	}
	return add(s.Secrets, true)
}
