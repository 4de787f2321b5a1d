// Command list-tenants lists the tenants of a lobster host through the Go
// binding. Build the static library first (cargo build -p lobster-capi),
// then from examples/go:
//
//	go run ./list-tenants [CONFIG]
//
// CONFIG defaults to $LOBSTERD_CONFIG, then /etc/lobsterd/config.json.
package main

import (
	"errors"
	"fmt"
	"os"

	"lobster.dev/lobster"
)

func main() {
	config := ""
	if len(os.Args) > 1 {
		config = os.Args[1]
	}
	host, err := lobster.Open(config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "opening the host:", err)
		os.Exit(1)
	}
	defer host.Close()

	tenants, err := host.List()
	if err != nil {
		fmt.Fprintln(os.Stderr, "listing tenants:", err)
		os.Exit(1)
	}
	fmt.Printf("%d tenant(s)\n", len(tenants))
	for _, t := range tenants {
		fmt.Printf("  %-20s %-10s %-15s %s\n", t.Name, t.Status, t.GuestIP, t.Route)
	}

	if _, err := host.Get("no-such-tenant"); errors.Is(err, lobster.ErrNotFound) {
		fmt.Println("lookup failed as expected:", err)
	}
}
