/* Error objects and codes: missing tenant, NULL and non-UTF-8 arguments,
 * bad config, corrupt registry, spec validation, restores from bad
 * archives, and suspend/resume of tenants in the wrong state (molt:
 * health.c).
 * Usage: errors <good config> <bad config> <config with corrupt registry>
 *        <empty config> <config with guest images> */
#include "check.h"

int main(int argc, char **argv) {
  CHECK(argc >= 6);
  lobster_error *err = NULL;
  lobster_host *host = NULL;
  CHECK_OK(lobster_host_open(argv[1], &host, &err), err);

  /* A missing tenant: NOT_FOUND, the error names it, the output is untouched. */
  lobster_tenant *sentinel = (lobster_tenant *)&err;
  lobster_tenant *tenant = sentinel;
  CHECK_FAILS(lobster_host_get(host, "nobody", &tenant, &e_), LOBSTER_RESULT_NOT_FOUND, "nobody");
  CHECK(tenant == sentinel);
  CHECK_STR(lobster_result_name(LOBSTER_RESULT_NOT_FOUND), "not_found");
  /* err_out may be NULL: the code alone comes back. */
  CHECK(lobster_host_get(host, "nobody", &tenant, NULL) == LOBSTER_RESULT_NOT_FOUND);
  CHECK(tenant == sentinel);
  char *token = NULL;
  CHECK_FAILS(lobster_host_token(host, "nobody", &token, &e_), LOBSTER_RESULT_NOT_FOUND, "nobody");
  CHECK(token == NULL);

  /* NULL and non-UTF-8 arguments are named. */
  lobster_tenant_list *list = NULL;
  CHECK_FAILS(lobster_host_list(NULL, &list, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`host`");
  CHECK_FAILS(lobster_host_list(host, NULL, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`out`");
  CHECK_FAILS(lobster_host_get(host, NULL, &tenant, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`name`");
  CHECK_FAILS(lobster_host_get(host, "\xff\xfe", &tenant, &e_), LOBSTER_RESULT_INVALID_UTF8, "`name`");
  CHECK(list == NULL && tenant == sentinel);
  CHECK(lobster_error_code(NULL) == LOBSTER_RESULT_NULL_PARAMETER);
  CHECK(lobster_error_message(NULL) == NULL);

  /* Config and registry errors. */
  lobster_host *other = NULL;
  CHECK_FAILS(lobster_host_open(argv[2], &other, &e_), LOBSTER_RESULT_INVALID_ARGUMENT, "tenant_defaults.vcpus");
  CHECK_FAILS(lobster_host_open("/nonexistent/lobster.json", &other, &e_), LOBSTER_RESULT_NOT_FOUND, "/nonexistent/lobster.json");
  CHECK(other == NULL);
  CHECK_OK(lobster_host_open(argv[3], &other, &err), err);
  CHECK_FAILS(lobster_host_list(other, &list, &e_), LOBSTER_RESULT_CORRUPT, "corrupt");
  lobster_host_free(other);

  /* Spec builder: a valid spec builds; spawn refuses without guest images
     (the temporary host has none) before making anything. */
  lobster_tenant_spec_builder *builder = NULL;
  CHECK_OK(lobster_tenant_spec_builder_new("carol", &builder, &err), err);
  CHECK_OK(lobster_tenant_spec_builder_set_vcpus(builder, 1, &err), err);
  CHECK_OK(lobster_tenant_spec_builder_set_memory_mib(builder, 512, &err), err);
  CHECK_OK(lobster_tenant_spec_builder_set_overlay_size_mib(builder, 1024, &err), err);
  CHECK_OK(lobster_tenant_spec_builder_set_backend(builder, "qemu", &err), err);
  CHECK_OK(lobster_tenant_spec_builder_add_env(builder, "MODE", "dev", &err), err);
  CHECK_OK(lobster_tenant_spec_builder_add_secret(builder, "API_KEY", "sk-secret", &err), err);
  lobster_tenant_spec *spec = NULL;
  CHECK_OK(lobster_tenant_spec_builder_build(builder, &spec, &err), err);
  CHECK_FAILS(lobster_host_spawn(host, spec, &tenant, &e_), LOBSTER_RESULT_NOT_FOUND, "kernel image");
  CHECK(tenant == sentinel);
  lobster_tenant_spec_free(spec);

  /* Validation names the field; build consumes the builder even on failure. */
  CHECK_OK(lobster_tenant_spec_builder_new("carol", &builder, &err), err);
  CHECK_OK(lobster_tenant_spec_builder_set_vcpus(builder, 0, &err), err);
  spec = NULL;
  CHECK_FAILS(lobster_tenant_spec_builder_build(builder, &spec, &e_), LOBSTER_RESULT_INVALID_ARGUMENT, "`vcpus`");
  CHECK(spec == NULL);
  CHECK_OK(lobster_tenant_spec_builder_new("Bad_Name", &builder, &err), err);
  CHECK_FAILS(lobster_tenant_spec_builder_build(builder, &spec, &e_), LOBSTER_RESULT_INVALID_ARGUMENT, "`name`");
  CHECK_OK(lobster_tenant_spec_builder_new("carol", &builder, &err), err);
  CHECK_FAILS(lobster_tenant_spec_builder_set_backend(builder, "vmware", &e_), LOBSTER_RESULT_INVALID_ARGUMENT, "`backend`");
  CHECK_FAILS(lobster_tenant_spec_builder_add_env(builder, "MODE", NULL, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`value`");
  lobster_tenant_spec_builder_free(builder);
  CHECK_FAILS(lobster_tenant_spec_builder_build(NULL, &spec, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`builder`");
  /* A command: NULL array, NULL or non-UTF-8 item are named (what the
     program is, the guest's agent checks when the workload starts). */
  CHECK_OK(lobster_tenant_spec_builder_new("carol", &builder, &err), err);
  const char *bad_argv[2] = {"/bin/sh", "\xff"};
  CHECK_FAILS(lobster_tenant_spec_builder_set_command(builder, NULL, 1, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`argv`");
  CHECK_FAILS(lobster_tenant_spec_builder_set_command(builder, bad_argv, 2, &e_), LOBSTER_RESULT_INVALID_UTF8, "`argv`");
  bad_argv[1] = NULL;
  CHECK_FAILS(lobster_tenant_spec_builder_set_command(builder, bad_argv, 2, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`argv`");
  CHECK_OK(lobster_tenant_spec_builder_set_command(builder, NULL, 0, &err), err);
  const char *empty_argv[1] = {""};
  CHECK_OK(lobster_tenant_spec_builder_set_command(builder, empty_argv, 1, &err), err);
  CHECK_OK(lobster_tenant_spec_builder_build(builder, &spec, &err), err);
  lobster_tenant_spec_free(spec);
  spec = NULL;

  CHECK_OK(lobster_tenant_spec_builder_new("carol", &builder, &err), err);
  CHECK_FAILS(lobster_tenant_spec_builder_set_from_snap(builder, NULL, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`archive`");
  CHECK_OK(lobster_tenant_spec_builder_set_from_snap(builder, "", &err), err);
  CHECK_FAILS(lobster_tenant_spec_builder_build(builder, &spec, &e_), LOBSTER_RESULT_INVALID_ARGUMENT, "`from_snap`");

  /* A restore checks its archive before making anything (on a host whose
     guest images exist, so the spawn gets that far). */
  lobster_host *imaged = NULL;
  CHECK_OK(lobster_host_open(argv[5], &imaged, &err), err);
  const char *archives[2] = {"/nonexistent/alice.ext4.zst", argv[2] /* a JSON file */};
  const lobster_result codes[2] = {LOBSTER_RESULT_NOT_FOUND, LOBSTER_RESULT_INVALID_ARGUMENT};
  const char *needles[2] = {"from_snap", "not a zstd stream"};
  for (int i = 0; i < 2; i++) {
    CHECK_OK(lobster_tenant_spec_builder_new("carol", &builder, &err), err);
    CHECK_OK(lobster_tenant_spec_builder_set_from_snap(builder, archives[i], &err), err);
    CHECK_OK(lobster_tenant_spec_builder_build(builder, &spec, &err), err);
    CHECK_FAILS(lobster_host_spawn(imaged, spec, &tenant, &e_), codes[i], needles[i]);
    CHECK(tenant == sentinel);
    lobster_tenant_spec_free(spec);
  }
  CHECK_OK(lobster_host_list(imaged, &list, &err), err);
  CHECK(lobster_tenant_list_len(list) == 0); /* nothing was allocated */
  lobster_tenant_list_free(list);
  lobster_host_free(imaged);

  /* Lifecycle calls: suspend and resume of a tenant in the wrong state
     (alice is allocated, with no VM) are INVALID_STATE, of a missing one
     NOT_FOUND; the output is written only on success. (Evicting an existing
     tenant acts on the host's network; the T2 tests cover it inside a
     namespace.) */
  CHECK_FAILS(lobster_host_suspend(host, "alice", &tenant, &e_), LOBSTER_RESULT_INVALID_STATE, "suspend needs running with a VM");
  CHECK_FAILS(lobster_host_resume(host, "alice", &tenant, &e_), LOBSTER_RESULT_INVALID_STATE, "resume needs suspended");
  CHECK_FAILS(lobster_host_suspend(host, "nobody", &tenant, &e_), LOBSTER_RESULT_NOT_FOUND, "nobody");
  CHECK_FAILS(lobster_host_resume(host, "nobody", &tenant, &e_), LOBSTER_RESULT_NOT_FOUND, "nobody");
  CHECK_FAILS(lobster_host_suspend(host, "alice", NULL, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`out`");
  CHECK(tenant == sentinel);
  CHECK_FAILS(lobster_host_evict(host, "nobody", &e_), LOBSTER_RESULT_NOT_FOUND, "nobody");
  CHECK_FAILS(lobster_host_evict_with(host, "alice", 6, &e_), LOBSTER_RESULT_INVALID_ARGUMENT, "`flags`: unknown flag bits 0x6");
  CHECK_FAILS(lobster_host_evict_with(host, "nobody", LOBSTER_EVICT_KEEP_OVERLAY, &e_), LOBSTER_RESULT_NOT_FOUND, "nobody");

  /* Logs and snap: a bad source is named before anything is asked of the
     guest; a tenant with no VM is INVALID_STATE; outputs stay untouched. */
  char *text = NULL;
  lobster_log_follow *follow = NULL;
  CHECK_FAILS(lobster_host_logs(host, "alice", "kernel", 10, &text, &e_), LOBSTER_RESULT_INVALID_ARGUMENT, "`source`: `kernel` is not `workload` or `agent`");
  CHECK_FAILS(lobster_host_logs(host, "nobody", NULL, 10, &text, &e_), LOBSTER_RESULT_NOT_FOUND, "nobody");
  CHECK_FAILS(lobster_host_logs(host, "alice", "agent", 10, &text, &e_), LOBSTER_RESULT_INVALID_STATE, "creating");
  CHECK_FAILS(lobster_host_follow_logs(host, "alice", "\xff", 10, &follow, &e_), LOBSTER_RESULT_INVALID_UTF8, "`source`");
  CHECK_FAILS(lobster_host_follow_logs(host, "alice", NULL, 10, &follow, &e_), LOBSTER_RESULT_INVALID_STATE, "creating");
  CHECK_FAILS(lobster_host_snap(host, "nobody", NULL, &text, &e_), LOBSTER_RESULT_NOT_FOUND, "nobody");
  CHECK_FAILS(lobster_host_snap(host, "alice", "/tmp/x.snap", NULL, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`out`");
  CHECK(text == NULL && follow == NULL);
  CHECK_FAILS(lobster_log_follow_next(NULL, 10, &text, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`follow`");
  CHECK_FAILS(lobster_host_rotate_tokens(host, "nobody", &tenant, &e_), LOBSTER_RESULT_NOT_FOUND, "nobody");
  CHECK_FAILS(lobster_host_watchdog_log(host, 5, NULL, &e_), LOBSTER_RESULT_NULL_PARAMETER, "`out`");
  CHECK(tenant == sentinel && text == NULL);
  lobster_log_follow_close(NULL);
  lobster_log_follow_free(NULL);
  CHECK_OK(lobster_host_list(host, &list, &err), err);
  CHECK(lobster_tenant_list_len(list) == 2); /* nothing was half-done */
  lobster_tenant_list_free(list);

  /* Names of codes and the version. */
  CHECK_STR(lobster_result_name(LOBSTER_RESULT_OK), "ok");
  CHECK_STR(lobster_result_name(LOBSTER_RESULT_PANIC), "panic");
  CHECK_STR(lobster_result_name(7), "unknown");
  char version[32];
  snprintf(version, sizeof version, "%d.%d.%d", LOBSTER_VERSION_MAJOR, LOBSTER_VERSION_MINOR,
           LOBSTER_VERSION_PATCH);
  CHECK_STR(lobster_version(), version);

  lobster_host_free(host);
  printf("errors: ok\n");
  return 0;
}
