package lobster_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"lobster.dev/lobster"
)

// tempHost writes a config rooted in a temporary directory and, for each
// name, a tenant record in the registry schema (version 1) the core reads.
func tempHost(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "config.json")
	write(t, config, `{"domain": "test.lobster", "paths": {"state_dir": "state"}}`)
	if len(names) > 0 {
		tenants := map[string]any{}
		for slot, name := range names {
			tenants[name] = record(name, slot)
		}
		doc, err := json.Marshal(map[string]any{"schema_version": 1, "tenants": tenants})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, "state", "registry.json"), string(doc))
	}
	return config
}

func record(name string, slot int) map[string]any {
	ip := func(offset int) string { return fmt.Sprintf("10.200.%d.%d", (4*slot+offset)/256, (4*slot+offset)%256) }
	id := fmt.Sprintf("%08x", slot)
	return map[string]any{
		"name": name, "id": id, "status": "running",
		"resources": map[string]any{"vcpus": 2, "memory_mib": 1024, "overlay_size_mib": 4096},
		"allocation": map[string]any{
			"slot": slot, "subnet": ip(0), "host_ip": ip(1), "guest_ip": ip(2),
			"mac": "06:00:0a:c8:00:02", "tap": "lob-" + id,
			"host_port": 20000 + slot, "jail_uid": 10000 + slot,
		},
		"created_at":    1700000000 + slot,
		"agent_token":   "agent-" + name,
		"gateway_token": "gateway-" + name,
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, config string) *lobster.Host {
	t.Helper()
	host, err := lobster.Open(config)
	if err != nil {
		t.Fatalf("open %s: %v", config, err)
	}
	t.Cleanup(host.Close)
	return host
}

func TestListEmpty(t *testing.T) {
	tenants, err := open(t, tempHost(t)).List()
	if err != nil || len(tenants) != 0 {
		t.Fatalf("List() = %v, %v; want empty", tenants, err)
	}
}

func TestListSeeded(t *testing.T) {
	tenants, err := open(t, tempHost(t, "carol", "alice", "bob")).List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tenant := range tenants {
		names = append(names, tenant.Name)
	}
	if strings.Join(names, ",") != "alice,bob,carol" {
		t.Fatalf("names = %v", names)
	}
	carol := tenants[2]
	if carol.Route != "carol.test.lobster" || carol.GuestIP != "10.200.0.2" || carol.Status != "running" {
		t.Fatalf("carol = %+v", carol)
	}
	if carol.VCPUs != 2 || carol.MemoryMiB != 1024 || carol.HostPort != 20000 || carol.CreatedAt.Unix() != 1700000000 {
		t.Fatalf("carol = %+v", carol)
	}
}

func TestListJSONHasNoTokens(t *testing.T) {
	doc, err := open(t, tempHost(t, "alice")).ListJSON()
	if err != nil {
		t.Fatal(err)
	}
	var tenants []map[string]any
	if err := json.Unmarshal(doc, &tenants); err != nil {
		t.Fatalf("%v: %s", err, doc)
	}
	if len(tenants) != 1 || tenants[0]["name"] != "alice" || strings.Contains(string(doc), "token") {
		t.Fatalf("ListJSON() = %s", doc)
	}
}

func TestGetAndToken(t *testing.T) {
	host := open(t, tempHost(t, "alice", "bob"))
	bob, err := host.Get("bob")
	if err != nil || bob.GuestIP != "10.200.0.6" {
		t.Fatalf("Get(bob) = %+v, %v", bob, err)
	}
	token, err := host.Token("alice")
	if err != nil || token != "gateway-alice" {
		t.Fatalf("Token(alice) = %q, %v", token, err)
	}
}

func TestMissingTenantIsErrNotFound(t *testing.T) {
	host := open(t, tempHost(t, "alice"))
	_, err := host.Get("nobody")
	if !errors.Is(err, lobster.ErrNotFound) || errors.Is(err, lobster.ErrCorrupt) {
		t.Fatalf("Get(nobody) error = %v", err)
	}
	var lerr *lobster.Error
	if !errors.As(err, &lerr) || lerr.Kind != "not_found" || lerr.Code != lobster.CodeNotFound {
		t.Fatalf("error = %#v", err)
	}
	if !strings.Contains(err.Error(), "nobody") {
		t.Fatalf("message %q does not name the tenant", err)
	}
	if _, err := host.Token("nobody"); !errors.Is(err, lobster.ErrNotFound) {
		t.Fatalf("Token(nobody) error = %v", err)
	}
}

func TestBadConfigIsErrInvalidArgumentNamingTheField(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config.json")
	write(t, config, `{"tenant_defaults": {"vcpus": 0}}`)
	_, err := lobster.Open(config)
	if !errors.Is(err, lobster.ErrInvalidArgument) || !strings.Contains(err.Error(), "tenant_defaults.vcpus") {
		t.Fatalf("Open(bad config) error = %v", err)
	}
	if _, err := lobster.Open(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, lobster.ErrNotFound) {
		t.Fatalf("Open(missing) error = %v", err)
	}
}

func TestCorruptRegistryIsErrCorrupt(t *testing.T) {
	config := tempHost(t, "alice")
	registry := filepath.Join(filepath.Dir(config), "state", "registry.json")
	write(t, registry, `{"schema_version": 1, "tenants": {`)
	if _, err := open(t, config).List(); !errors.Is(err, lobster.ErrCorrupt) {
		t.Fatalf("List() error = %v", err)
	}
}

func TestSpawnWithoutImagesIsNotFound(t *testing.T) {
	host := open(t, tempHost(t))
	spec := lobster.TenantSpec{
		Name: "alice", VCPUs: 1, MemoryMiB: 512, Backend: "qemu",
		Env: map[string]string{"MODE": "dev"}, Secrets: map[string]string{"API_KEY": "sk"},
	}
	_, err := host.Spawn(spec)
	if !errors.Is(err, lobster.ErrNotFound) || !strings.Contains(err.Error(), "kernel image") {
		t.Fatalf("Spawn() error = %v; want not_found naming the kernel image", err)
	}
}

func TestSpecValidationNamesTheField(t *testing.T) {
	host := open(t, tempHost(t))
	cases := map[string]lobster.TenantSpec{
		"`name`":       {Name: "Bad_Name"},
		"`vcpus`":      {Name: "a", VCPUs: 64},
		"`memory_mib`": {Name: "a", MemoryMiB: 1},
		"`backend`":    {Name: "a", Backend: "vmware"},
		"`env`":        {Name: "a", Env: map[string]string{"1X": "v"}},
	}
	for field, spec := range cases {
		_, err := host.Spawn(spec)
		if !errors.Is(err, lobster.ErrInvalidArgument) || !strings.Contains(err.Error(), field) {
			t.Errorf("Spawn(%+v) error = %v; want invalid_argument naming %s", spec, err, field)
		}
	}
}

func TestLifecycleIsUnsupportedForNow(t *testing.T) {
	host := open(t, tempHost(t, "alice"))
	calls := map[string]func(string) error{
		"suspend": host.Suspend, "resume": host.Resume, "molt": host.Molt,
	}
	for name, call := range calls {
		if err := call("alice"); !errors.Is(err, lobster.ErrUnsupported) {
			t.Errorf("%s(alice) error = %v", name, err)
		}
		if err := call("nobody"); !errors.Is(err, lobster.ErrNotFound) {
			t.Errorf("%s(nobody) error = %v", name, err)
		}
	}
	if err := host.Molt(""); !errors.Is(err, lobster.ErrUnsupported) {
		t.Errorf("Molt(all) error = %v", err)
	}
	if err := host.Evict("nobody"); !errors.Is(err, lobster.ErrNotFound) {
		t.Errorf("Evict(nobody) error = %v", err)
	}
}

func TestCloseIsIdempotentAndUseAfterClosePanics(t *testing.T) {
	host, err := lobster.Open(tempHost(t))
	if err != nil {
		t.Fatal(err)
	}
	host.Close()
	host.Close()
	defer func() {
		if recover() == nil {
			t.Fatal("List() after Close() did not panic")
		}
	}()
	_, _ = host.List()
}

func TestConcurrentUse(t *testing.T) {
	host := open(t, tempHost(t, "alice", "bob"))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tenants, err := host.List()
			if err == nil && len(tenants) != 2 {
				err = fmt.Errorf("got %d tenants", len(tenants))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestCodeNamesAndVersion(t *testing.T) {
	if lobster.CodeNotFound.String() != "not_found" || lobster.Code(7).String() != "unknown" {
		t.Fatal("code names")
	}
	if lobster.Version() == "" {
		t.Fatal("empty version")
	}
}
