package lobster

/*
#include "lobster.h"
*/
import "C"

import "time"

// Tenant is one tenant as the registry last recorded it: a plain value,
// copied out of the C snapshot (nothing to free).
type Tenant struct {
	Name           string
	ID             string
	Status         string // creating, running, suspended, stopped, failed or evicting
	Route          string // <name>.<domain>
	GuestIP        string
	HostIP         string
	Subnet         string
	MAC            string
	TAP            string
	VCPUs          uint8
	MemoryMiB      uint32
	OverlaySizeMiB uint32
	HostPort       uint16
	JailUID        uint32
	CreatedAt      time.Time
	Backend        string // the VMM backend chosen for it ("firecracker", "qemu" or "auto"); "" = the host's
	VMPid          uint32 // process id of its VMM as last recorded; 0 while none runs
	LastError      string // why it failed, or what its last operation reported; "" if nothing
}

// tenantFrom copies a C tenant; t must stay alive for the call.
func tenantFrom(t *C.lobster_tenant) Tenant {
	return Tenant{
		Name:           C.GoString(C.lobster_tenant_name(t)),
		ID:             C.GoString(C.lobster_tenant_id(t)),
		Status:         C.GoString(C.lobster_tenant_status(t)),
		Route:          C.GoString(C.lobster_tenant_route(t)),
		GuestIP:        C.GoString(C.lobster_tenant_guest_ip(t)),
		HostIP:         C.GoString(C.lobster_tenant_host_ip(t)),
		Subnet:         C.GoString(C.lobster_tenant_subnet(t)),
		MAC:            C.GoString(C.lobster_tenant_mac(t)),
		TAP:            C.GoString(C.lobster_tenant_tap(t)),
		VCPUs:          uint8(C.lobster_tenant_vcpus(t)),
		MemoryMiB:      uint32(C.lobster_tenant_memory_mib(t)),
		OverlaySizeMiB: uint32(C.lobster_tenant_overlay_size_mib(t)),
		HostPort:       uint16(C.lobster_tenant_host_port(t)),
		JailUID:        uint32(C.lobster_tenant_jail_uid(t)),
		CreatedAt:      time.Unix(int64(C.lobster_tenant_created_at(t)), 0).UTC(),
		Backend:        C.GoString(C.lobster_tenant_backend(t)),
		VMPid:          uint32(C.lobster_tenant_vm_pid(t)),
		LastError:      C.GoString(C.lobster_tenant_last_error(t)),
	}
}
