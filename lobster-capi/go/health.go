package lobster

/*
#include <string.h>
#include "lobster.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"unsafe"
)

// The health documents Molt and Overview return, decoded from the JSON the
// C library hands over (the `lobsterd molt --json` and `lobsterd tank
// --json` documents). A JSON null becomes the Go zero value unless zero is
// a meaningful value, in which case the field is a pointer.

// CheckResult is one health check's verdict.
type CheckResult struct {
	Check   string `json:"check"`            // disk.overlay, net.tap, net.firewall, vm.process, vm.api, guest.agent, guest.workload, proxy.route
	Verdict string `json:"verdict"`          // ok, failed or skipped (a check it depends on failed)
	Detail  string `json:"detail,omitempty"` // what was wrong, or why it was skipped
}

// RepairOutcome is how one repair went.
type RepairOutcome struct {
	Repair    string `json:"repair"` // ensure_tap, apply_firewall, resume_vm, restart_vm, relaunch_workload or put_route
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"` // why it failed
	ElapsedMs uint64 `json:"elapsed_ms"`
}

// MoltReport is what Molt found and did for one tenant.
type MoltReport struct {
	Tenant  string          `json:"tenant"`
	Status  string          `json:"status"`  // the registry status afterwards
	Checks  []CheckResult   `json:"checks"`  // before any repair
	Repairs []RepairOutcome `json:"repairs"` // in the order they ran
	After   []CheckResult   `json:"after"`   // after the repairs (empty when none ran)
	Healthy bool            `json:"healthy"` // every check passes now
	Note    string          `json:"note"`    // why it was not checked, or why repairs cannot help
}

// WatchdogInfo is the watchdog daemon as seen from its status file.
type WatchdogInfo struct {
	PID       uint32 `json:"pid"`
	Alive     bool   `json:"alive"` // that process still runs
	Tick      uint64 `json:"tick"`
	UpdatedMs uint64 `json:"updated_ms"` // ms since the Unix epoch
	// Repairs it carried out since it started, by repair name.
	Repairs map[string]RepairCount `json:"repairs"`
}

// RepairCount is how often one repair succeeded and failed.
type RepairCount struct {
	OK     uint64 `json:"ok"`
	Failed uint64 `json:"failed"`
}

// TenantOverview is one dashboard row.
type TenantOverview struct {
	Name          string  `json:"name"`
	Status        string  `json:"status"` // registry status
	State         string  `json:"state"`  // the watchdog's: healthy, degraded, ...; "" until one checked it
	Health        string  `json:"health"` // "ok", the failing checks joined by commas, or "-" when unchecked
	IP            string  `json:"ip"`
	PID           int32   `json:"pid"` // the VMM's, 0 while none runs
	VCPUs         uint8   `json:"vcpus"`
	MemoryMiB     uint32  `json:"memory_mib"`
	MemoryUsedMiB *uint64 `json:"memory_used_mib"` // resident memory of the VMM, nil while none runs
	UptimeS       *uint64 `json:"uptime_s"`        // seconds since the VMM started, nil while none runs
	LastEvent     string  `json:"last_event"`      // the watchdog's last event about it
	LastEventMs   uint64  `json:"last_event_ms"`   // when (ms since the Unix epoch), 0 if none
}

// Overview is every tenant, sorted by name, with the watchdog's view.
type Overview struct {
	TakenMs  uint64           `json:"taken_ms"` // ms since the Unix epoch
	Watchdog *WatchdogInfo    `json:"watchdog"` // nil when no watchdog has written its status
	Tenants  []TenantOverview `json:"tenants"`
}

// decodeOwned decodes the owned JSON string out into v and frees it.
func decodeOwned(out *C.char, v any) error {
	defer C.lobster_string_free(out)
	doc := C.GoBytes(unsafe.Pointer(out), C.int(C.strlen(out)))
	if err := json.Unmarshal(doc, v); err != nil {
		return fmt.Errorf("lobster: decoding %T: %w", v, err)
	}
	return nil
}
