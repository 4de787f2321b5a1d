/* List the tenants of a lobster host through the C API.
 *
 * Build (after `cargo build -p lobster-capi`), from the repository root:
 *   gcc -std=c11 -I lobster-capi/include examples/c/list_tenants.c \
 *       target/debug/liblobster.a -lpthread -ldl -lm -o list_tenants
 * Run: ./list_tenants [CONFIG]   (default: $LOBSTERD_CONFIG, then /etc/lobsterd/config.json) */
#include <stdio.h>

#include "lobster.h"

/* Prints an error object and frees it; returns the exit status. */
static int report(const char *what, lobster_result code, lobster_error *err) {
  fprintf(stderr, "%s failed (%s): %s\n", what, lobster_result_name(code),
          err ? lobster_error_message(err) : "no details");
  lobster_error_free(err);
  return 1;
}

int main(int argc, char **argv) {
  const char *config = argc > 1 ? argv[1] : NULL; /* NULL: the default */
  lobster_error *err = NULL;
  lobster_host *host = NULL;
  lobster_result code = lobster_host_open(config, &host, &err);
  if (code != LOBSTER_RESULT_OK) return report("opening the host", code, err);

  lobster_tenant_list *list = NULL;
  code = lobster_host_list(host, &list, &err);
  if (code != LOBSTER_RESULT_OK) {
    lobster_host_free(host);
    return report("listing tenants", code, err);
  }
  size_t n = lobster_tenant_list_len(list);
  printf("%zu tenant(s)\n", n);
  for (size_t i = 0; i < n; i++) {
    const lobster_tenant *t = lobster_tenant_list_get(list, i); /* borrowed */
    printf("  %-20s %-10s %-15s %s\n", lobster_tenant_name(t), lobster_tenant_status(t),
           lobster_tenant_guest_ip(t), lobster_tenant_route(t));
  }
  lobster_tenant_list_free(list); /* also frees the borrowed tenants */

  lobster_tenant *missing = NULL;
  code = lobster_host_get(host, "no-such-tenant", &missing, &err);
  if (code == LOBSTER_RESULT_NOT_FOUND) {
    printf("lookup failed as expected: %s\n", lobster_error_message(err));
    lobster_error_free(err);
  }
  lobster_host_free(host);
  return 0;
}
