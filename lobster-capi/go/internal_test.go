package lobster

// The machinery under FollowLogs and the *WithProgress calls, tested
// without a guest: a LogStream over a fake handle, and progress events
// delivered as the C trampoline does.

import (
	"context"
	"errors"
	"fmt"
	"runtime/cgo"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// fakeFollow is a logFollow whose next blocks until a line, a failure or
// a close comes (whatever the timeout: only a close may wake it). It
// records frees and any use after one.
type fakeFollow struct {
	lines  chan string
	fail   chan error
	closed chan struct{}

	mu        sync.Mutex
	closeOnce sync.Once
	frees     int
	misuse    []string
}

func newFakeFollow() *fakeFollow {
	return &fakeFollow{lines: make(chan string), fail: make(chan error, 1), closed: make(chan struct{})}
}

func (f *fakeFollow) live(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frees > 0 {
		f.misuse = append(f.misuse, op+" after free")
	}
}

func (f *fakeFollow) next(uint32) (string, bool, error) {
	f.live("next")
	select {
	case line := <-f.lines:
		return line, true, nil
	case err := <-f.fail:
		return "", false, err
	case <-f.closed:
		return "", false, &Error{Code: CodeInvalidState, Kind: "invalid_state", Message: "the log stream was closed"}
	}
}

func (f *fakeFollow) close() {
	f.live("close")
	f.closeOnce.Do(func() { close(f.closed) })
}

func (f *fakeFollow) free() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frees++
}

// check fails t unless the handle was freed exactly once and not used
// afterwards.
func (f *fakeFollow) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frees != 1 || len(f.misuse) != 0 {
		t.Fatalf("frees = %d, misuse = %v; want one free and nothing after it", f.frees, f.misuse)
	}
}

// drain reads s's lines until the channel closes (failing t after 10 s).
func drain(t *testing.T, s *LogStream) []string {
	t.Helper()
	var lines []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-s.Lines():
			if !ok {
				return lines
			}
			lines = append(lines, line)
		case <-timeout:
			t.Fatal("the stream's channel was never closed")
		}
	}
}

func TestLogStreamDeliversLinesAndCloseWakesAWaitingNext(t *testing.T) {
	follow := newFakeFollow()
	s := startLogStream(context.Background(), follow, nil)
	go func() {
		follow.lines <- "one"
		follow.lines <- "two"
	}()
	for _, want := range []string{"one", "two"} {
		if line := <-s.Lines(); line != want {
			t.Fatalf("line = %q; want %q", line, want)
		}
	}
	// The puller now waits in next, which only a close can wake.
	s.Close()
	s.Close()
	if lines := drain(t, s); len(lines) != 0 || s.Err() != nil {
		t.Fatalf("after Close: lines %v, Err() = %v; want none and nil", lines, s.Err())
	}
	follow.check(t)
}

func TestLogStreamEndsWithItsContext(t *testing.T) {
	follow := newFakeFollow()
	ctx, cancel := context.WithCancel(context.Background())
	s := startLogStream(ctx, follow, nil)
	cancel()
	if lines := drain(t, s); len(lines) != 0 || s.Err() != nil {
		t.Fatalf("after cancel: lines %v, Err() = %v; want none and nil", lines, s.Err())
	}
	s.Close()
	follow.check(t)
}

func TestLogStreamReportsTheFailureThatEndedIt(t *testing.T) {
	follow := newFakeFollow()
	s := startLogStream(context.Background(), follow, nil)
	broke := &Error{Code: CodeGuestFailure, Kind: "guest_failure", Message: "the agent closed the stream"}
	follow.lines <- "last"
	follow.fail <- broke
	if lines := drain(t, s); len(lines) != 1 || lines[0] != "last" {
		t.Fatalf("lines = %v; want [last]", lines)
	}
	if err := s.Err(); !errors.Is(err, ErrGuestFailure) {
		t.Fatalf("Err() = %v; want the failure", err)
	}
	s.Close()
	follow.check(t)
}

// Close from many goroutines, racing the stream's own end and a
// cancellation, while nobody reads the lines: each returns, the handle is
// freed once and never touched after.
func TestLogStreamCloseRacesItsEnd(t *testing.T) {
	for round := 0; round < 200; round++ {
		follow := newFakeFollow()
		ctx, cancel := context.WithCancel(context.Background())
		s := startLogStream(ctx, follow, nil)
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Close()
			}()
		}
		switch round % 3 {
		case 0:
			follow.fail <- errors.New("broke")
		case 1:
			cancel()
		case 2:
			select { // a line nobody reads
			case follow.lines <- "unread":
			case <-follow.closed:
			}
		}
		wg.Wait()
		drain(t, s)
		cancel()
		follow.check(t)
	}
}

// emit delivers one event document as the C trampoline does: through the
// handle whose address the C library got as its context.
func emit(context unsafe.Pointer, doc string) {
	(*(*cgo.Handle)(context)).Value().(*progressCall).deliver(doc)
}

func TestProgressEventsAreDecoded(t *testing.T) {
	var events []ProgressEvent
	tenant, err := withProgress(func(e ProgressEvent) { events = append(events, e) },
		func(fn progressFn, context unsafe.Pointer) (Tenant, error) {
			if fn == nil || context == nil {
				t.Fatal("no callback passed")
			}
			done := make(chan struct{})
			go func() { // as from a lobster thread
				defer close(done)
				emit(context, `{"operation":"spawn","tenant":"web","step":"overlay","phase":{"phase":"started"}}`)
				emit(context, `{"operation":"spawn","tenant":"web","step":"overlay","phase":{"phase":"done","elapsed":1234}}`)
			}()
			<-done
			return Tenant{Name: "web"}, nil
		})
	want := []ProgressEvent{
		{Operation: "spawn", Tenant: "web", Step: "overlay", Phase: "started"},
		{Operation: "spawn", Tenant: "web", Step: "overlay", Phase: "done", Elapsed: 1234 * time.Microsecond},
	}
	if tenant.Name != "web" || err != nil || fmt.Sprint(events) != fmt.Sprint(want) {
		t.Fatalf("withProgress = %+v, %v, events %+v; want %+v", tenant, err, events, want)
	}
}

func TestNilProgressPassesNoCallback(t *testing.T) {
	_, err := withProgress(nil, func(fn progressFn, context unsafe.Pointer) (Tenant, error) {
		if fn != nil || context != nil {
			t.Fatal("a callback passed for nil progress")
		}
		return Tenant{}, ErrNotFound
	})
	if err != ErrNotFound {
		t.Fatalf("error = %v", err)
	}
}

func TestAPanicInProgressIsRaisedOnTheCallerAfterTheCall(t *testing.T) {
	calls, returned := 0, false
	defer func() {
		if r := recover(); r != "boom" || calls != 1 || !returned {
			t.Fatalf("recovered %v after %d calls (call returned: %v); want boom after 1", r, calls, returned)
		}
	}()
	_, _ = withProgress(func(ProgressEvent) { calls++; panic("boom") },
		func(_ progressFn, context unsafe.Pointer) (Tenant, error) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < 3; i++ { // the later events are dropped
					emit(context, `{"operation":"resume","tenant":"web","step":"vm","phase":{"phase":"started"}}`)
				}
			}()
			<-done
			returned = true
			return Tenant{}, nil
		})
	t.Fatal("withProgress returned")
}
