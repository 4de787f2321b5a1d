package lobster

// This file has an //export, so its preamble may only declare: the
// trampoline is defined in progress_trampoline.go.

/*
#include "lobster.h"

void lobsterProgressTrampoline(const char *event, void *context);
*/
import "C"

import (
	"encoding/json"
	"runtime/cgo"
	"time"
	"unsafe"
)

// ProgressEvent is one step of a spawn, suspend or resume starting or
// ending, as the *WithProgress calls report it (the steps `lobsterd spawn`
// prints).
//
// The progress func runs on a thread of lobster's, one event at a time,
// and every call returns before the operation does. It must be quick and
// must not call into lobster (no Host method). If it panics, the operation
// still runs to its end, later events are dropped, and the panic is raised
// again on the goroutine that called the *WithProgress method, once that
// operation has returned.
type ProgressEvent struct {
	Operation string        // spawn, suspend or resume
	Tenant    string        // the tenant's name
	Step      string        // allocate, overlay, network, vm, agent, workload, ...
	Phase     string        // started, done or failed
	Elapsed   time.Duration // how long the step ran (done and failed); 0 when started
}

// progressCall is one *WithProgress call's callback and the panic it
// raised, if any. The C library calls it from its own threads, never
// twice at once, and only before the call returns.
type progressCall struct {
	progress func(ProgressEvent)
	panicked bool
	value    any // what it panicked with
}

// progressFn is a lobster_progress_fn: the C callback withProgress passes.
type progressFn = C.lobster_progress_fn

// withProgress runs call with the C callback and context that deliver
// events to progress (NULL and NULL when progress is nil). A panic in
// progress does not cross into C: it is recovered, later events are
// dropped, and once the call has returned it is raised again here, on the
// calling goroutine.
func withProgress(progress func(ProgressEvent), call func(progressFn, unsafe.Pointer) (Tenant, error)) (Tenant, error) {
	if progress == nil {
		return call(nil, nil)
	}
	state := &progressCall{progress: progress}
	handle := cgo.NewHandle(state)
	defer handle.Delete()
	// C gets the handle's address, valid for the call: it keeps no copy.
	tenant, err := call(progressFn(C.lobsterProgressTrampoline), unsafe.Pointer(&handle))
	if state.panicked {
		panic(state.value)
	}
	return tenant, err
}

// lobsterGoProgress is the Go end of lobsterProgressTrampoline: context
// is the address of the call's handle.
//
//export lobsterGoProgress
func lobsterGoProgress(event *C.char, context unsafe.Pointer) {
	state := (*(*cgo.Handle)(context)).Value().(*progressCall)
	state.deliver(C.GoString(event))
}

// deliver decodes one event and hands it to the callback, recovering a
// panic (see withProgress).
func (c *progressCall) deliver(doc string) {
	if c.panicked {
		return
	}
	var event struct {
		Operation string `json:"operation"`
		Tenant    string `json:"tenant"`
		Step      string `json:"step"`
		Phase     struct {
			Phase   string `json:"phase"`
			Elapsed uint64 `json:"elapsed"` // microseconds
		} `json:"phase"`
	}
	if json.Unmarshal([]byte(doc), &event) != nil {
		return // the library's events always decode; nothing to report otherwise
	}
	returned := false
	defer func() {
		if !returned { // a panic, even panic(nil)
			c.panicked, c.value = true, recover()
		}
	}()
	c.progress(ProgressEvent{
		Operation: event.Operation,
		Tenant:    event.Tenant,
		Step:      event.Step,
		Phase:     event.Phase.Phase,
		Elapsed:   time.Duration(event.Phase.Elapsed) * time.Microsecond,
	})
	returned = true
}
