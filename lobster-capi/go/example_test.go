package lobster_test

// These examples need a real host (root, guest images): they are compiled,
// not run.

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"lobster.dev/lobster"
)

func ExampleOpen() {
	// "" reads $LOBSTERD_CONFIG, else /etc/lobsterd/config.json.
	host, err := lobster.Open("")
	if err != nil {
		log.Fatal(err)
	}
	defer host.Close()
	fmt.Println("lobster", lobster.Version())
}

func ExampleHost_List() {
	host, err := lobster.Open("")
	if err != nil {
		log.Fatal(err)
	}
	defer host.Close()
	tenants, err := host.List()
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range tenants {
		fmt.Printf("%-20s %-10s %s\n", t.Name, t.Status, t.Route)
	}
	if _, err := host.Get("nobody"); errors.Is(err, lobster.ErrNotFound) {
		fmt.Println("no tenant nobody")
	}
}

func ExampleHost_FollowLogs() {
	host, err := lobster.Open("")
	if err != nil {
		log.Fatal(err)
	}
	defer host.Close()
	// The stream ends with the context, on Close, or when the log breaks.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := host.FollowLogs(ctx, "web", lobster.LogWorkload, 10)
	if err != nil {
		log.Fatal(err)
	}
	defer stream.Close()
	for line := range stream.Lines() {
		fmt.Println(line)
		if strings.Contains(line, "ready") {
			break
		}
	}
	if err := stream.Err(); err != nil {
		log.Fatal(err)
	}
}

func ExampleHost_SpawnWithProgress() {
	host, err := lobster.Open("")
	if err != nil {
		log.Fatal(err)
	}
	defer host.Close()
	spec := lobster.TenantSpec{
		Name:      "web",
		VCPUs:     1,
		MemoryMiB: 256,
		Secrets:   map[string]string{"API_KEY": "s3cret"},
		Command:   []string{"/bin/sh", "-c", "while true; do date; sleep 1; done"},
	}
	tenant, err := host.SpawnWithProgress(spec, func(e lobster.ProgressEvent) {
		if e.Phase != "started" {
			fmt.Printf("%-10s %-6s %v\n", e.Step, e.Phase, e.Elapsed)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tenant.Name, tenant.Status, tenant.GuestIP)
}
