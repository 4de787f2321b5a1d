/* A tenant's whole life through the C API: spawn with a secret and a
 * command of its own (its progress reported step by step), follow its log
 * until the workload's line appears, tail the agent's log, snap its disk
 * into a file, evict it. Every object is freed: CI runs it with real
 * guests, built with AddressSanitizer and its leak checker
 * (lobster-cli/tests/t2_bindings.rs; valgrind 3.19 lacks pidfd_open).
 *
 * Build (after `cargo build -p lobster-capi`), from the repository root:
 *   gcc -std=c11 -I lobster-capi/include examples/c/lifecycle.c \
 *       target/debug/liblobster.a -lpthread -ldl -lm -o lifecycle
 * or, with the library installed (scripts/install-capi.sh):
 *   gcc -std=c11 examples/c/lifecycle.c $(pkg-config --cflags --libs lobster)
 * Run: ./lifecycle CONFIG NAME SCRATCH_DIR   (as root: it spawns a real VM) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lobster.h"

/* Prints what failed, and the error object if there is one, then exits. */
static void die(const char *what, lobster_result code, lobster_error *err) {
  fprintf(stderr, "lifecycle: %s failed (%s): %s\n", what, lobster_result_name(code),
          err ? lobster_error_message(err) : "no details");
  lobster_error_free(err);
  exit(1);
}

/* Exits with `why` unless `ok`. */
static void expect(int ok, const char *why) {
  if (!ok) {
    fprintf(stderr, "lifecycle: %s\n", why);
    exit(1);
  }
}

#define TRY(what, call)                        \
  do {                                         \
    lobster_error *err_ = NULL;                \
    lobster_result code_ = (call);             \
    if (code_ != LOBSTER_RESULT_OK) die(what, code_, err_); \
  } while (0)

/* The spawn's finished steps, one after another: "allocate overlay ...". */
static char steps[512];

/* Progress callback: collects each step that finished. */
static void on_progress(const char *event, void *context) {
  (void)context;
  const char *step = strstr(event, "\"step\":\"");
  if (step == NULL || strstr(event, "\"phase\":\"done\"") == NULL) return;
  step += strlen("\"step\":\"");
  size_t len = strcspn(step, "\"");
  size_t used = strlen(steps);
  if (used + len + 2 < sizeof steps) {
    memcpy(steps + used, step, len);
    steps[used + len] = ' ';
    steps[used + len + 1] = '\0';
  }
}

int main(int argc, char **argv) {
  expect(argc == 4, "usage: lifecycle CONFIG NAME SCRATCH_DIR");
  const char *name = argv[2];
  lobster_host *host = NULL;
  TRY("opening the host", lobster_host_open(argv[1], &host, &err_));

  /* Spawn: one vCPU, 256 MiB, a secret the workload shows only by length. */
  const char *command[] = {"/bin/sh", "-c",
                           "while true; do echo \"tick secret-len ${#API_KEY}\"; sleep 1; done"};
  lobster_tenant_spec_builder *builder = NULL;
  lobster_tenant_spec *spec = NULL;
  TRY("a spec", lobster_tenant_spec_builder_new(name, &builder, &err_));
  TRY("vcpus", lobster_tenant_spec_builder_set_vcpus(builder, 1, &err_));
  TRY("memory", lobster_tenant_spec_builder_set_memory_mib(builder, 256, &err_));
  TRY("the secret", lobster_tenant_spec_builder_add_secret(builder, "API_KEY", "s3cret", &err_));
  TRY("the command", lobster_tenant_spec_builder_set_command(builder, command, 3, &err_));
  TRY("building the spec", lobster_tenant_spec_builder_build(builder, &spec, &err_));
  lobster_tenant *tenant = NULL;
  TRY("spawning", lobster_host_spawn_with_progress(host, spec, on_progress, NULL, &tenant, &err_));
  lobster_tenant_spec_free(spec);
  expect(strcmp(lobster_tenant_status(tenant), "running") == 0, "the tenant is not running");
  expect(lobster_tenant_vm_pid(tenant) != 0, "the running tenant has no VM pid");
  expect(strstr(steps, "vm ") && strstr(steps, "agent ") && strstr(steps, "workload "),
         "the progress lacks the vm, agent or workload step");
  lobster_tenant_free(tenant);

  /* Follow the workload's log until the line comes (120 s at most). */
  lobster_log_follow *follow = NULL;
  TRY("following the log", lobster_host_follow_logs(host, name, "workload", 5, &follow, &err_));
  char followed[256] = "";
  for (int waited = 0; followed[0] == '\0' && waited < 120; waited++) {
    char *line = NULL;
    TRY("reading the log", lobster_log_follow_next(follow, 1000, &line, &err_));
    if (line != NULL && strstr(line, "tick") != NULL) snprintf(followed, sizeof followed, "%s", line);
    lobster_string_free(line);
  }
  lobster_log_follow_close(follow);
  char *after = NULL;
  lobster_error *closed = NULL;
  expect(lobster_log_follow_next(follow, 10, &after, &closed) == LOBSTER_RESULT_INVALID_STATE,
         "a closed log stream still reads");
  lobster_error_free(closed);
  lobster_log_follow_free(follow);
  size_t len = strlen(followed);
  expect(len >= 12 && strcmp(followed + len - 12, "secret-len 6") == 0,
         "no `tick secret-len 6` line in the workload's log");

  char *tail = NULL;
  TRY("the agent's log", lobster_host_logs(host, name, "agent", 5, &tail, &err_));
  expect(tail[0] != '\0', "the agent's log is empty");
  lobster_string_free(tail);

  /* Snap into a file: a zstd stream of the size reported. */
  char archive[4096];
  snprintf(archive, sizeof archive, "%s/%s.ext4.zst", argv[3], name);
  char *report = NULL;
  TRY("snap", lobster_host_snap(host, name, archive, &report, &err_));
  FILE *file = fopen(archive, "rb");
  expect(file != NULL, "the archive is missing");
  unsigned char magic[4] = {0};
  expect(fread(magic, 1, 4, file) == 4, "the archive is shorter than 4 bytes");
  expect(magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd,
         "the archive is not a zstd stream");
  fseek(file, 0, SEEK_END);
  char size[64];
  snprintf(size, sizeof size, "\"archive_bytes\":%ld", ftell(file));
  fclose(file);
  expect(strstr(report, size) != NULL, "the archive's size is not the one reported");

  /* Evict, keeping nothing: the tenant is gone. */
  TRY("evict", lobster_host_evict_with(host, name, 0, &err_));
  lobster_tenant *gone = NULL;
  lobster_error *err = NULL;
  expect(lobster_host_get(host, name, &gone, &err) == LOBSTER_RESULT_NOT_FOUND,
         "an evicted tenant is still found");
  lobster_error_free(err);

  printf("{\"steps\":\"%s\",\"followed\":\"%s\",\"snap\":%s,\"evicted\":true}\n", steps, followed,
         report);
  lobster_string_free(report);
  lobster_host_free(host);
  return 0;
}
