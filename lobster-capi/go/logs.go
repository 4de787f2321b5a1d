package lobster

/*
#include <stdlib.h>
#include "lobster.h"
*/
import "C"

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// LogSource names one of a tenant's logs.
type LogSource string

// The logs of a tenant; "" means LogWorkload.
const (
	LogWorkload LogSource = "workload" // the workload's output
	LogAgent    LogSource = "agent"    // the in-guest agent's own log
)

// followPoll is how long one lobster_log_follow_next waits for a line. A
// Close or cancelled context wakes it at once; this only bounds the wait.
const followPoll = 500 // ms

// Logs returns the last lines lines of a tenant's log (sanitised for a
// terminal: no control characters). A suspended tenant is resumed for the
// read; a tenant that is not running, suspended or failed is
// ErrInvalidState.
func (h *Host) Logs(name string, source LogSource, lines uint32) ([]string, error) {
	var tail []string
	err := h.withName(name, func(host *C.lobster_host, cname *C.char) error {
		csource, err := optCString("source", string(source))
		if err != nil {
			return err
		}
		defer C.free(unsafe.Pointer(csource))
		var out *C.char
		var cerr *C.lobster_error
		if err := errorFrom(C.lobster_host_logs(host, cname, csource, C.uint32_t(lines), &out, &cerr), cerr); err != nil {
			return err
		}
		tail = linesOwned(out)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return tail, nil
}

// WatchdogLog returns the last lines of the detached watchdog's log
// (ErrNotFound when no watchdog has written one).
func (h *Host) WatchdogLog(lines uint32) ([]string, error) {
	var out *C.char
	var cerr *C.lobster_error
	code := C.lobster_host_watchdog_log(h.ptr(), C.uint32_t(lines), &out, &cerr)
	runtime.KeepAlive(h)
	if err := errorFrom(code, cerr); err != nil {
		return nil, err
	}
	return linesOwned(out), nil
}

// linesOwned splits an owned C string of lines, each followed by "\n",
// and frees it; an empty text is no lines.
func linesOwned(out *C.char) []string {
	text := C.GoString(out)
	C.lobster_string_free(out)
	if text == "" {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

// LogStream is a followed log (see FollowLogs). Its methods are safe for
// concurrent use.
type LogStream struct {
	host  *Host // keeps the host from being finalized while the stream lives
	lines chan string
	ended chan struct{} // closed once the handle is freed and err is final

	stopOnce sync.Once
	stopped  chan struct{} // closed by stop: ended by Close or the context

	mu     sync.Mutex
	follow logFollow // nil once freed
	err    error
}

// logFollow is what a LogStream does with its handle: an interface so that
// the stream's concurrency can be tested without a guest.
type logFollow interface {
	// next waits at most timeoutMs for a line; ok is false if none came.
	// Only the stream's goroutine calls it.
	next(timeoutMs uint32) (line string, ok bool, err error)
	// close makes a waiting next, and every later one, fail at once. Safe
	// from any goroutine while the handle lives.
	close()
	// free releases the handle; nothing may use it afterwards.
	free()
}

// cLogFollow is a lobster_log_follow.
type cLogFollow struct{ ptr *C.lobster_log_follow }

func (f cLogFollow) next(timeoutMs uint32) (string, bool, error) {
	var out *C.char
	var cerr *C.lobster_error
	if err := errorFrom(C.lobster_log_follow_next(f.ptr, C.uint32_t(timeoutMs), &out, &cerr), cerr); err != nil {
		return "", false, err
	}
	if out == nil {
		return "", false, nil
	}
	defer C.lobster_string_free(out)
	return C.GoString(out), true, nil
}

func (f cLogFollow) close() { C.lobster_log_follow_close(f.ptr) }
func (f cLogFollow) free()  { C.lobster_log_follow_free(f.ptr) }

// FollowLogs follows a tenant's log: its last lines lines, then new ones as
// they come, on Lines. A suspended tenant is resumed and held awake while
// the stream lives. The stream ends when ctx is done, when Close is called
// or when the log breaks (Err says why); call Close or cancel ctx when
// done with it, or its goroutine and the guest's hold live on.
func (h *Host) FollowLogs(ctx context.Context, name string, source LogSource, lines uint32) (*LogStream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var follow *C.lobster_log_follow
	err := h.withName(name, func(host *C.lobster_host, cname *C.char) error {
		csource, err := optCString("source", string(source))
		if err != nil {
			return err
		}
		defer C.free(unsafe.Pointer(csource))
		var cerr *C.lobster_error
		return errorFrom(C.lobster_host_follow_logs(host, cname, csource, C.uint32_t(lines), &follow, &cerr), cerr)
	})
	if err != nil {
		return nil, err
	}
	return startLogStream(ctx, cLogFollow{follow}, h), nil
}

// lineBuffer is how many lines a LogStream holds for a slow reader: the
// pulling goroutine keeps reading from the guest meanwhile, so a reader
// that pauses briefly is not dropped by the agent as one fallen behind.
const lineBuffer = 1024

// startLogStream starts the goroutine that pulls follow's lines, and one
// that stops the stream when ctx is done.
func startLogStream(ctx context.Context, follow logFollow, host *Host) *LogStream {
	s := &LogStream{
		host:    host,
		lines:   make(chan string, lineBuffer),
		ended:   make(chan struct{}),
		stopped: make(chan struct{}),
		follow:  follow,
	}
	go s.pull(ctx, follow)
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				s.stop()
			case <-s.ended:
			}
		}()
	}
	return s
}

// Lines delivers the log's lines; it is closed when the stream ends.
func (s *LogStream) Lines() <-chan string { return s.lines }

// Err is the error that ended the stream: nil while it runs, and when it
// was ended by Close or its context.
func (s *LogStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the stream, waking a wait for the next line, and returns once
// the stream has released the log (and its hold on the guest). It is
// idempotent and safe from any goroutine.
func (s *LogStream) Close() {
	s.stop()
	<-s.ended
}

// stop ends the stream without waiting: closing the handle makes a waiting
// (and every later) next return at once. The lock keeps it from racing the
// puller's free.
func (s *LogStream) stop() {
	s.stopOnce.Do(func() {
		close(s.stopped)
		s.mu.Lock()
		if s.follow != nil {
			s.follow.close()
		}
		s.mu.Unlock()
	})
}

// pull is the stream's goroutine: the only one to wait on follow, and the
// one that frees it, after its last use.
func (s *LogStream) pull(ctx context.Context, follow logFollow) {
	err := s.relay(ctx, follow)
	s.mu.Lock()
	s.follow = nil // from now on stop leaves it alone
	s.err = err
	s.mu.Unlock()
	follow.free()
	close(s.ended)
	close(s.lines)
}

// relay sends follow's lines on s.lines until the stream breaks or is
// stopped; it returns the failure, nil when stopped.
func (s *LogStream) relay(ctx context.Context, follow logFollow) error {
	for {
		line, ok, err := follow.next(followPoll)
		if err != nil {
			select {
			case <-s.stopped: // the failure is the close's
				return nil
			case <-ctx.Done():
				return nil
			default:
				return err
			}
		}
		if !ok {
			continue // no line came in time
		}
		select {
		case s.lines <- line:
		case <-s.stopped:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
