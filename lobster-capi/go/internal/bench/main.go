// Command bench measures the Go binding for scripts/bench-bindings.sh and
// scripts/bench-follow.sh; it prints numbers and asserts nothing.
//
//	bench list CONFIG CALLS          microseconds per List (fastest of 10 batches)
//	bench follow CONFIG NAME SECONDS lines per second of a followed workload log
package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"lobster.dev/lobster"
)

const batches = 10

func main() {
	if len(os.Args) < 4 {
		fail(fmt.Errorf("usage: bench list CONFIG CALLS | bench follow CONFIG NAME SECONDS"))
	}
	host, err := lobster.Open(os.Args[2])
	if err != nil {
		fail(err)
	}
	defer host.Close()
	switch {
	case os.Args[1] == "list" && len(os.Args) == 4:
		calls, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fail(err)
		}
		fmt.Printf("%.1f\n", listMicros(host, calls))
	case os.Args[1] == "follow" && len(os.Args) == 5:
		seconds, err := strconv.ParseFloat(os.Args[4], 64)
		if err != nil {
			fail(err)
		}
		fmt.Printf("%.0f\n", followRate(host, os.Args[3], time.Duration(seconds*float64(time.Second))))
	default:
		fail(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}

func listMicros(host *lobster.Host, calls int) float64 {
	if _, err := host.List(); err != nil { // warm up
		fail(err)
	}
	batch := calls / batches
	if batch < 1 {
		batch = 1
	}
	best := math.Inf(1)
	for b := 0; b < batches; b++ {
		start := time.Now()
		for i := 0; i < batch; i++ {
			if _, err := host.List(); err != nil {
				fail(err)
			}
		}
		best = math.Min(best, float64(time.Since(start).Microseconds())/float64(batch))
	}
	return best
}

func followRate(host *lobster.Host, name string, span time.Duration) float64 {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := host.FollowLogs(ctx, name, lobster.LogWorkload, 0)
	if err != nil {
		fail(err)
	}
	defer stream.Close()
	<-stream.Lines() // the stream runs
	lines, start, done := 0, time.Now(), time.After(span)
	for {
		select {
		case _, ok := <-stream.Lines():
			if !ok {
				fail(fmt.Errorf("the stream ended: %v", stream.Err()))
			}
			lines++
		case <-done:
			return float64(lines) / time.Since(start).Seconds()
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
