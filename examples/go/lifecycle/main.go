// Command lifecycle lives a tenant's whole life through the Go binding:
// spawn with a secret and a command of its own (its progress reported step
// by step) while 32 goroutines list the tenants, follow its log until the
// workload's line appears, tail the agent's log, snap its disk into a
// file, evict it. A failed check exits non-zero saying what failed (and
// evicts the tenant if it was spawned); on success it prints one JSON line:
//
//	{"steps":[...],"followed":"tick secret-len 6","archive_bytes":N,"evicted":true}
//
// Build the static library first (cargo build -p lobster-capi), then from
// examples/go, as root (it spawns a real VM):
//
//	go run ./lifecycle CONFIG NAME
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"lobster.dev/lobster"
)

// listers is how many goroutines list the tenants while the spawn runs.
const listers = 32

// zstdMagic starts every zstd stream, so every snap archive.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// result is the JSON line printed on success.
type result struct {
	Steps        []string `json:"steps"`    // the spawn's steps that finished, in order
	Followed     string   `json:"followed"` // the workload's line
	ArchiveBytes uint64   `json:"archive_bytes"`
	Evicted      bool     `json:"evicted"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: lifecycle CONFIG NAME")
		os.Exit(2)
	}
	host, err := lobster.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "lifecycle: opening the host:", err)
		os.Exit(1)
	}
	said, err := live(host, os.Args[2])
	host.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lifecycle:", err)
		os.Exit(1)
	}
	line, err := json.Marshal(said)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lifecycle:", err)
		os.Exit(1)
	}
	fmt.Println(string(line))
}

// live runs the whole life of tenant name; a failure after the spawn
// evicts it.
func live(host *lobster.Host, name string) (r result, err error) {
	spawned := make(chan struct{})
	listed := listUntil(host, spawned)
	tenant, err := host.SpawnWithProgress(spec(name), func(e lobster.ProgressEvent) {
		if e.Phase == "done" {
			r.Steps = append(r.Steps, e.Step)
		}
	})
	close(spawned)
	listErr := <-listed
	if err != nil {
		return r, fmt.Errorf("spawning %s: %w", name, err)
	}
	defer func() {
		if !r.Evicted {
			if err := host.Evict(name); err != nil {
				fmt.Fprintf(os.Stderr, "lifecycle: evicting %s after the failure: %v\n", name, err)
			}
		}
	}()
	if listErr != nil {
		return r, fmt.Errorf("listing during the spawn: %w", listErr)
	}
	if tenant.Status != "running" || tenant.VMPid == 0 {
		return r, fmt.Errorf("the spawned tenant is %s with VM pid %d; want running with a VM", tenant.Status, tenant.VMPid)
	}
	for _, step := range []string{"vm", "agent", "workload"} {
		if !contains(r.Steps, step) {
			return r, fmt.Errorf("the spawn's progress lacks the %s step (done: %s)", step, strings.Join(r.Steps, " "))
		}
	}

	if r.Followed, err = follow(host, name); err != nil {
		return r, err
	}
	tail, err := host.Logs(name, lobster.LogAgent, 5)
	if err != nil {
		return r, fmt.Errorf("the agent's log: %w", err)
	}
	if len(tail) == 0 {
		return r, errors.New("the agent's log is empty")
	}
	if r.ArchiveBytes, err = snap(host, name); err != nil {
		return r, err
	}

	if err := host.EvictWith(name, lobster.EvictOptions{}); err != nil {
		return r, fmt.Errorf("evict: %w", err)
	}
	r.Evicted = true
	tenants, err := host.List()
	if err != nil {
		return r, fmt.Errorf("listing after the evict: %w", err)
	}
	for _, t := range tenants {
		if t.Name == name {
			return r, fmt.Errorf("the evicted tenant is still listed (%s)", t.Status)
		}
	}
	if _, err := host.Get(name); !errors.Is(err, lobster.ErrNotFound) {
		return r, fmt.Errorf("Get after the evict gave %v; want not found", err)
	}
	return r, nil
}

// spec is name's: one vCPU, 256 MiB, a secret the workload shows only by
// its length, once a second.
func spec(name string) lobster.TenantSpec {
	return lobster.TenantSpec{
		Name:      name,
		VCPUs:     1,
		MemoryMiB: 256,
		Secrets:   map[string]string{"API_KEY": "s3cret"},
		Command:   []string{"/bin/sh", "-c", `while true; do echo "tick secret-len ${#API_KEY}"; sleep 1; done`},
	}
}

// listUntil starts listers goroutines that list the tenants until stop is
// closed, each at least once; the channel it returns gets the first
// failure, or nil, once they all finished.
func listUntil(host *lobster.Host, stop <-chan struct{}) <-chan error {
	errs := make(chan error, listers)
	var wg sync.WaitGroup
	for i := 0; i < listers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := host.List(); err != nil {
					errs <- err
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}
	first := make(chan error, 1)
	go func() {
		wg.Wait()
		close(errs)
		first <- <-errs // nil when the channel is empty
	}()
	return first
}

// follow follows name's workload log (120 s at most) until a line with
// "tick" comes, and checks the workload saw the whole secret; it returns
// that line.
func follow(host *lobster.Host, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	stream, err := host.FollowLogs(ctx, name, lobster.LogWorkload, 5)
	if err != nil {
		return "", fmt.Errorf("following the log: %w", err)
	}
	defer stream.Close()
	for line := range stream.Lines() {
		if !strings.Contains(line, "tick") {
			continue
		}
		if !strings.HasSuffix(line, "secret-len 6") {
			return "", fmt.Errorf("the workload's line is %q; want it to end with secret-len 6", line)
		}
		return line, nil
	}
	if err := stream.Err(); err != nil {
		return "", fmt.Errorf("the log stream broke: %w", err)
	}
	return "", fmt.Errorf("no tick line in the workload's log: %w", ctx.Err())
}

// snap snaps name's disk into a file in a temporary directory and checks
// that it is a zstd stream of the size reported; it returns that size.
func snap(host *lobster.Host, name string) (uint64, error) {
	dir, err := os.MkdirTemp("", "lifecycle-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	archive := filepath.Join(dir, name+".ext4.zst")
	report, err := host.Snap(name, archive)
	if err != nil {
		return 0, fmt.Errorf("snap: %w", err)
	}
	file, err := os.Open(archive)
	if err != nil {
		return 0, fmt.Errorf("the archive: %w", err)
	}
	defer file.Close()
	magic := make([]byte, len(zstdMagic))
	if _, err := io.ReadFull(file, magic); err != nil {
		return 0, fmt.Errorf("reading the archive: %w", err)
	}
	if !bytes.Equal(magic, zstdMagic) {
		return 0, fmt.Errorf("the archive is not a zstd stream (it starts % x)", magic)
	}
	info, err := file.Stat()
	if err != nil {
		return 0, fmt.Errorf("the archive: %w", err)
	}
	if uint64(info.Size()) != report.ArchiveBytes {
		return 0, fmt.Errorf("the archive has %d bytes; the report says %d", info.Size(), report.ArchiveBytes)
	}
	return report.ArchiveBytes, nil
}

func contains(list []string, s string) bool {
	for _, item := range list {
		if item == s {
			return true
		}
	}
	return false
}
