package lobster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"lobster.dev/lobster"
)

// tempHost writes a config rooted in a temporary directory and allocates
// a running tenant per name (see seed).
func tempHost(t *testing.T, names ...string) string {
	t.Helper()
	config, _ := seed(t, "running", names...)
	return config
}

// seededTenant is what the tests read back of a seeded registry record.
type seededTenant struct {
	CreatedAt    int64  `json:"created_at"`
	GatewayToken string `json:"gateway_token"`
}

// seed writes a config rooted in a temporary directory and has
// `lobster-testkit seed` allocate one tenant per name (in order: the first
// gets slot 0) through lobster-core's real allocator, each in status.
// Returns the config and the seeded records by name.
func seed(t *testing.T, status string, names ...string) (string, map[string]seededTenant) {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "config.json")
	write(t, config, `{"domain": "test.lobster", "paths": {"state_dir": "state"}}`)
	tenants := map[string]seededTenant{}
	if len(names) == 0 {
		return config, tenants
	}
	args := append([]string{"seed", config, "--status", status}, names...)
	out, err := exec.Command(testkit(t), args...).Output()
	if err != nil {
		t.Fatalf("lobster-testkit seed: %v: %s", err, stderrOf(err))
	}
	var records []struct {
		Name string `json:"name"`
		seededTenant
	}
	if err := json.Unmarshal(out, &records); err != nil {
		t.Fatalf("lobster-testkit seed printed %s: %v", out, err)
	}
	for _, r := range records {
		tenants[r.Name] = r.seededTenant
	}
	return config, tenants
}

var (
	testkitOnce sync.Once
	testkitPath string
	testkitErr  error
)

// testkit is the lobster-testkit command: $LOBSTER_TESTKIT, else built with
// cargo (once per test binary).
func testkit(t *testing.T) string {
	t.Helper()
	testkitOnce.Do(func() {
		if testkitPath = os.Getenv("LOBSTER_TESTKIT"); testkitPath != "" {
			return
		}
		build := exec.Command("cargo", "build", "--quiet", "--locked", "-p", "lobster-testkit",
			"--bin", "lobster-testkit", "--message-format=json")
		build.Dir = filepath.Join("..", "..")
		out, err := build.Output()
		if err != nil {
			testkitErr = fmt.Errorf("building lobster-testkit: %v: %s", err, stderrOf(err))
			return
		}
		for _, line := range strings.Split(string(out), "\n") {
			var message struct {
				Reason     string `json:"reason"`
				Executable string `json:"executable"`
			}
			if json.Unmarshal([]byte(line), &message) == nil &&
				message.Reason == "compiler-artifact" && message.Executable != "" {
				testkitPath = message.Executable
			}
		}
		if testkitPath == "" {
			testkitErr = errors.New("cargo built no lobster-testkit executable")
		}
	})
	if testkitErr != nil {
		t.Fatal(testkitErr)
	}
	return testkitPath
}

func stderrOf(err error) string {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(exit.Stderr)
	}
	return ""
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
	config, seeded := seed(t, "running", "carol", "alice", "bob")
	tenants, err := open(t, config).List()
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
	if carol.VCPUs != 2 || carol.MemoryMiB != 1024 || carol.HostPort != 20000 || carol.CreatedAt.Unix() != seeded["carol"].CreatedAt {
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
	config, seeded := seed(t, "running", "alice", "bob")
	host := open(t, config)
	bob, err := host.Get("bob")
	if err != nil || bob.GuestIP != "10.200.0.6" {
		t.Fatalf("Get(bob) = %+v, %v", bob, err)
	}
	token, err := host.Token("alice")
	if err != nil || token != seeded["alice"].GatewayToken {
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

func TestSuspendAndResumeRefuseTenantsInTheWrongState(t *testing.T) {
	host := open(t, tempHost(t, "alice"))
	calls := map[string]struct {
		call  func(string) (lobster.Tenant, error)
		needs string
	}{
		"suspend": {host.Suspend, "suspend needs running with a VM"},
		"resume":  {host.Resume, "resume needs suspended"},
	}
	for name, c := range calls {
		// alice runs with no VM (seeded): neither can act on her.
		tenant, err := c.call("alice")
		if !errors.Is(err, lobster.ErrInvalidState) || !strings.Contains(err.Error(), c.needs) || tenant.Name != "" {
			t.Errorf("%s(alice) = %+v, %v; want invalid_state: %s", name, tenant, err, c.needs)
		}
		if _, err := c.call("nobody"); !errors.Is(err, lobster.ErrNotFound) {
			t.Errorf("%s(nobody) error = %v", name, err)
		}
	}
	if alice, err := host.Get("alice"); err != nil || alice.Status != "running" {
		t.Errorf("alice after the refusals = %+v, %v; want unchanged", alice, err)
	}
	if err := host.Evict("nobody"); !errors.Is(err, lobster.ErrNotFound) {
		t.Errorf("Evict(nobody) error = %v", err)
	}
}

func TestRestoreFromABadArchiveIsRefusedBeforeAnythingIsMade(t *testing.T) {
	// Guest images exist (empty files), so the spawn gets to the archive.
	dir := t.TempDir()
	paths := map[string]string{"state_dir": filepath.Join(dir, "state")}
	for _, image := range []string{"kernel", "initrd", "rootfs"} {
		paths[image] = filepath.Join(dir, image)
		write(t, paths[image], "")
	}
	document, _ := json.Marshal(map[string]any{"paths": paths})
	config := filepath.Join(dir, "config.json")
	write(t, config, string(document))
	host := open(t, config)
	notes := filepath.Join(dir, "notes.txt")
	write(t, notes, "not an archive")
	cases := []struct {
		archive string
		kind    error
		needle  string
	}{
		{filepath.Join(dir, "absent.ext4.zst"), lobster.ErrNotFound, "from_snap"},
		{notes, lobster.ErrInvalidArgument, "not a zstd stream"},
	}
	for _, c := range cases {
		_, err := host.Spawn(lobster.TenantSpec{Name: "alice", FromSnap: c.archive})
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.needle) || !strings.Contains(err.Error(), c.archive) {
			t.Errorf("Spawn(from %s) error = %v; want %v naming %q and the path", c.archive, err, c.kind, c.needle)
		}
	}
	if tenants, err := host.List(); err != nil || len(tenants) != 0 {
		t.Fatalf("List() after refused restores = %v, %v; want nothing", tenants, err)
	}
}

// Molt only meets hosts where it has nothing to repair: on seeded running
// tenants it would repair this host's network for real (the T2 tests do
// that inside a namespace).
func TestMoltOnAnEmptyHostReportsNothing(t *testing.T) {
	reports, err := open(t, tempHost(t)).Molt("")
	if err != nil || reports == nil || len(reports) != 0 {
		t.Fatalf("Molt(all) = %#v, %v; want an empty list", reports, err)
	}
}

func TestMoltOfAMissingTenantIsErrNotFound(t *testing.T) {
	reports, err := open(t, tempHost(t, "alice")).Molt("nope")
	if !errors.Is(err, lobster.ErrNotFound) || !strings.Contains(err.Error(), "nope") || reports != nil {
		t.Fatalf("Molt(nope) = %v, %v; want not_found naming it", reports, err)
	}
}

func TestMoltSkipsTenantsThatShouldNotRun(t *testing.T) {
	config, _ := seed(t, "stopped", "alice", "bob")
	host := open(t, config)
	if _, err := host.Molt("alice"); !errors.Is(err, lobster.ErrInvalidState) {
		t.Fatalf("Molt(stopped alice) error = %v; want invalid_state", err)
	}
	reports, err := host.Molt("")
	if err != nil || len(reports) != 0 {
		t.Fatalf("Molt(all stopped) = %v, %v; want an empty list", reports, err)
	}
}

func TestOverviewWithoutAWatchdog(t *testing.T) {
	overview, err := open(t, tempHost(t, "bob", "alice")).Overview()
	if err != nil {
		t.Fatal(err)
	}
	if overview.Watchdog != nil || overview.TakenMs < 1_700_000_000_000 || len(overview.Tenants) != 2 {
		t.Fatalf("Overview() = %+v", overview)
	}
	alice := overview.Tenants[0]
	want := lobster.TenantOverview{
		Name: "alice", Status: "running", State: "", Health: "-", IP: "10.200.0.6",
		VCPUs: 2, MemoryMiB: 1024,
	}
	if alice != want {
		t.Fatalf("alice = %+v; want %+v", alice, want)
	}
	if overview.Tenants[1].Name != "bob" {
		t.Fatalf("tenants = %+v; want sorted by name", overview.Tenants)
	}
}

func TestOverviewShowsWhatTheWatchdogWrote(t *testing.T) {
	config := tempHost(t, "alice", "bob")
	watch := map[string]any{
		"pid": os.Getpid(), "started_ms": 1_700_000_000_000, "updated_ms": 1_700_000_060_000,
		"tick": 12, "interval_ms": 5000,
		"repairs": map[string]any{"restart_vm": map[string]any{"ok": 3, "failed": 1}},
		"tenants": map[string]any{
			"alice": map[string]any{
				"state": "degraded", "attempts": 2,
				"checks": []map[string]any{
					{"check": "disk.overlay", "verdict": "ok"},
					{"check": "vm.process", "verdict": "failed", "detail": "the VM process is gone"},
				},
				"last_event": "repair restart_vm failed", "last_event_ms": 1_700_000_050_000,
			},
		},
	}
	doc, err := json.Marshal(watch)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(filepath.Dir(config), "state", "watch.json"), string(doc))
	overview, err := open(t, config).Overview()
	if err != nil {
		t.Fatal(err)
	}
	wd := overview.Watchdog
	if wd == nil || wd.PID != uint32(os.Getpid()) || !wd.Alive || wd.Tick != 12 || wd.UpdatedMs != 1_700_000_060_000 {
		t.Fatalf("watchdog = %+v", wd)
	}
	if wd.Repairs["restart_vm"] != (lobster.RepairCount{OK: 3, Failed: 1}) {
		t.Fatalf("watchdog repairs = %+v", wd.Repairs)
	}
	alice, bob := overview.Tenants[0], overview.Tenants[1]
	if alice.State != "degraded" || alice.Health != "vm.process" ||
		alice.LastEvent != "repair restart_vm failed" || alice.LastEventMs != 1_700_000_050_000 {
		t.Fatalf("alice = %+v", alice)
	}
	if bob.State != "" || bob.Health != "-" {
		t.Fatalf("bob = %+v; want unchecked", bob)
	}
}

func TestOverviewOfACorruptRegistryIsErrCorrupt(t *testing.T) {
	config := tempHost(t, "alice")
	write(t, filepath.Join(filepath.Dir(config), "state", "registry.json"), "{")
	if _, err := open(t, config).Overview(); !errors.Is(err, lobster.ErrCorrupt) {
		t.Fatalf("Overview() error = %v", err)
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

func TestUseAfterCloseOfTheNewerCallsPanics(t *testing.T) {
	host, err := lobster.Open(tempHost(t))
	if err != nil {
		t.Fatal(err)
	}
	host.Close()
	progress := func(lobster.ProgressEvent) {}
	calls := map[string]func(){
		"EvictWith":           func() { _ = host.EvictWith("alice", lobster.EvictOptions{}) },
		"Logs":                func() { _, _ = host.Logs("alice", lobster.LogWorkload, 5) },
		"FollowLogs":          func() { _, _ = host.FollowLogs(context.Background(), "alice", "", 5) },
		"Snap":                func() { _, _ = host.Snap("alice", "") },
		"SpawnWithProgress":   func() { _, _ = host.SpawnWithProgress(lobster.TenantSpec{Name: "alice"}, progress) },
		"SuspendWithProgress": func() { _, _ = host.SuspendWithProgress("alice", progress) },
		"ResumeWithProgress":  func() { _, _ = host.ResumeWithProgress("alice", nil) },
		"RotateTokens":        func() { _, _ = host.RotateTokens("alice") },
		"WatchdogLog":         func() { _, _ = host.WatchdogLog(5) },
	}
	for name, call := range calls {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s() after Close() did not panic", name)
				}
			}()
			call()
		}()
	}
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

func TestConcurrentListsDuringASpawn(t *testing.T) {
	host := open(t, tempHost(t, "alice", "bob"))
	const listers = 32
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, listers)
	for i := 0; i < listers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tenants, err := host.List()
			if err == nil && len(tenants) != 2 {
				err = fmt.Errorf("got %d tenants", len(tenants))
			}
			errs <- err
		}()
	}
	spawned := make(chan error, 1)
	go func() {
		<-start
		// No guest images on this host: the spawn fails, and says why.
		_, err := host.SpawnWithProgress(lobster.TenantSpec{Name: "carol", VCPUs: 1}, func(lobster.ProgressEvent) {})
		spawned <- err
	}()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("List() during the spawn: %v", err)
		}
	}
	if err := <-spawned; !errors.Is(err, lobster.ErrNotFound) || !strings.Contains(err.Error(), "kernel image") {
		t.Fatalf("Spawn() error = %v; want not_found naming the kernel image", err)
	}
}

func TestNewerTenantFieldsOfASeededTenant(t *testing.T) {
	host := open(t, tempHost(t, "alice"))
	tenants, err := host.List()
	if err != nil || len(tenants) != 1 {
		t.Fatalf("List() = %+v, %v", tenants, err)
	}
	alice, err := host.Get("alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []lobster.Tenant{tenants[0], alice} {
		if tenant.Backend != "" || tenant.VMPid != 0 || tenant.LastError != "" {
			t.Errorf("alice = %+v; want no backend of her own, no VM pid, no last error", tenant)
		}
	}
}

func TestLogsOfABadSourceIsErrInvalidArgumentNamingIt(t *testing.T) {
	config, _ := seed(t, "creating", "alice")
	host := open(t, config)
	lines, err := host.Logs("alice", "stderr", 5)
	if !errors.Is(err, lobster.ErrInvalidArgument) || !strings.Contains(err.Error(), "source") || lines != nil {
		t.Errorf("Logs(alice, stderr) = %v, %v; want invalid_argument naming source", lines, err)
	}
	stream, err := host.FollowLogs(context.Background(), "alice", "stderr", 5)
	if !errors.Is(err, lobster.ErrInvalidArgument) || !strings.Contains(err.Error(), "source") || stream != nil {
		t.Errorf("FollowLogs(alice, stderr) = %v, %v; want invalid_argument naming source", stream, err)
	}
}

func TestLogsOfATenantWithoutAVMIsErrInvalidState(t *testing.T) {
	config, _ := seed(t, "creating", "alice")
	host := open(t, config)
	for _, source := range []lobster.LogSource{"", lobster.LogWorkload, lobster.LogAgent} {
		lines, err := host.Logs("alice", source, 5)
		if !errors.Is(err, lobster.ErrInvalidState) || !strings.Contains(err.Error(), "creating") || lines != nil {
			t.Errorf("Logs(alice, %q) = %v, %v; want invalid_state", source, lines, err)
		}
		stream, err := host.FollowLogs(context.Background(), "alice", source, 5)
		if !errors.Is(err, lobster.ErrInvalidState) || stream != nil {
			t.Errorf("FollowLogs(alice, %q) = %v, %v; want invalid_state", source, stream, err)
		}
	}
	if _, err := host.Logs("nobody", lobster.LogAgent, 5); !errors.Is(err, lobster.ErrNotFound) {
		t.Errorf("Logs(nobody) error = %v", err)
	}
	if _, err := host.FollowLogs(context.Background(), "nobody", "", 5); !errors.Is(err, lobster.ErrNotFound) {
		t.Errorf("FollowLogs(nobody) error = %v", err)
	}
}

func TestFollowLogsWithADoneContextOpensNothing(t *testing.T) {
	host := open(t, tempHost(t, "alice"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if stream, err := host.FollowLogs(ctx, "alice", "", 5); !errors.Is(err, context.Canceled) || stream != nil {
		t.Fatalf("FollowLogs(cancelled) = %v, %v; want context.Canceled", stream, err)
	}
}

func TestEvictWithAndSnapOfAMissingTenantAreErrNotFound(t *testing.T) {
	host := open(t, tempHost(t, "alice"))
	for _, opts := range []lobster.EvictOptions{{}, {KeepOverlay: true}} {
		if err := host.EvictWith("nobody", opts); !errors.Is(err, lobster.ErrNotFound) || !strings.Contains(err.Error(), "nobody") {
			t.Errorf("EvictWith(nobody, %+v) error = %v", opts, err)
		}
	}
	archive := filepath.Join(t.TempDir(), "nobody.ext4.zst")
	for _, output := range []string{"", archive} {
		report, err := host.Snap("nobody", output)
		if !errors.Is(err, lobster.ErrNotFound) || !strings.Contains(err.Error(), "nobody") || report != (lobster.SnapReport{}) {
			t.Errorf("Snap(nobody, %q) = %+v, %v; want not_found", output, report, err)
		}
	}
	if _, err := os.Stat(archive); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused snap left %s: %v", archive, err)
	}
	if tenants, err := host.List(); err != nil || len(tenants) != 1 {
		t.Errorf("List() after the refusals = %+v, %v; want alice alone", tenants, err)
	}
}

func TestANULInAStringIsErrInvalidArgumentNamingItNotCutShort(t *testing.T) {
	config := tempHost(t, "alice")
	host := open(t, config)
	calls := map[string]func() error{
		"name":   func() error { _, err := host.Get("alice\x00bob"); return err },
		"output": func() error { _, err := host.Snap("alice", "/tmp/x\x00y"); return err },
		"source": func() error { _, err := host.Logs("alice", "agent\x00", 5); return err },
		"command": func() error {
			_, err := host.Spawn(lobster.TenantSpec{Name: "carol", Command: []string{"/bin/sh", "a\x00b"}})
			return err
		},
		"secrets": func() error {
			_, err := host.Spawn(lobster.TenantSpec{Name: "carol", Secrets: map[string]string{"K": "v\x00w"}})
			return err
		},
		"configPath": func() error { _, err := lobster.Open(config + "\x00.bak"); return err },
	}
	for field, call := range calls {
		if err := call(); !errors.Is(err, lobster.ErrInvalidArgument) || !strings.Contains(err.Error(), "`"+field+"`") {
			t.Errorf("a NUL in %s: %v; want invalid_argument naming it", field, err)
		}
	}
}

func TestRotateTokensOfAMissingTenantIsErrNotFound(t *testing.T) {
	host := open(t, tempHost(t, "alice"))
	if tenant, err := host.RotateTokens("nobody"); !errors.Is(err, lobster.ErrNotFound) || tenant.Name != "" {
		t.Errorf("RotateTokens(nobody) = %+v, %v; want not_found", tenant, err)
	}
}

func TestWatchdogLogTail(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config.json")
	write(t, config, `{"paths": {"state_dir": "state", "logs_dir": "logs"}}`)
	host := open(t, config)
	if lines, err := host.WatchdogLog(5); !errors.Is(err, lobster.ErrNotFound) || lines != nil {
		t.Errorf("WatchdogLog without a log = %q, %v; want not_found", lines, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "logs", "watch.log"), "tick 1\ntick 2\ntick 3\n")
	lines, err := host.WatchdogLog(2)
	if err != nil || strings.Join(lines, "|") != "tick 2|tick 3" {
		t.Errorf("WatchdogLog(2) = %q, %v; want the last two lines", lines, err)
	}
}

func TestProgressCallsRefuseAsThePlainOnesDo(t *testing.T) {
	host := open(t, tempHost(t, "alice"))
	var events []lobster.ProgressEvent
	progress := func(e lobster.ProgressEvent) { events = append(events, e) }
	_, err := host.SpawnWithProgress(lobster.TenantSpec{Name: "Bad_Name"}, progress)
	if !errors.Is(err, lobster.ErrInvalidArgument) || !strings.Contains(err.Error(), "`name`") {
		t.Errorf("SpawnWithProgress(bad name) error = %v", err)
	}
	if _, err := host.SpawnWithProgress(lobster.TenantSpec{Name: "bob"}, nil); !errors.Is(err, lobster.ErrNotFound) {
		t.Errorf("SpawnWithProgress(no images, nil) error = %v", err)
	}
	if tenant, err := host.SuspendWithProgress("alice", progress); !errors.Is(err, lobster.ErrInvalidState) || tenant.Name != "" {
		t.Errorf("SuspendWithProgress(alice) = %+v, %v; want invalid_state", tenant, err)
	}
	if _, err := host.ResumeWithProgress("alice", progress); !errors.Is(err, lobster.ErrInvalidState) {
		t.Errorf("ResumeWithProgress(alice) error = %v; want invalid_state", err)
	}
	if _, err := host.ResumeWithProgress("nobody", progress); !errors.Is(err, lobster.ErrNotFound) {
		t.Errorf("ResumeWithProgress(nobody) error = %v", err)
	}
	// Refused before any step started.
	if len(events) != 0 {
		t.Errorf("events = %+v; want none", events)
	}
}
