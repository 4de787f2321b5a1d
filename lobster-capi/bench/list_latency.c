/* Latency of lobster_host_list + reading every name + lobster_tenant_list_free,
 * and of lobster_host_list_json, on the host named by argv[1]. Each figure is
 * the fastest of 10 batches (mean per call within a batch), which filters out
 * other load on a shared machine.
 * Usage: list_latency <config.json> [calls]   (prints numbers; asserts nothing) */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lobster.h"

enum { BATCHES = 10 };

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what, lobster_result r, lobster_error *err) {
  fprintf(stderr, "%s: %s: %s\n", what, lobster_result_name(r),
          err ? lobster_error_message(err) : "");
  exit(1);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <config.json> [calls]\n", argv[0]);
    return 2;
  }
  int calls = argc > 2 ? atoi(argv[2]) : 2000;
  lobster_error *err = NULL;
  lobster_host *host = NULL;
  lobster_result r = lobster_host_open(argv[1], &host, &err);
  if (r != LOBSTER_RESULT_OK) die("open", r, err);

  size_t tenants = 0, bytes = 0;
  int batch = calls / BATCHES > 0 ? calls / BATCHES : 1;
  double list_us = 1e30, json_us = 1e30;
  lobster_tenant_list *warm = NULL; /* the first call starts the runtime */
  r = lobster_host_list(host, &warm, &err);
  if (r != LOBSTER_RESULT_OK) die("list", r, err);
  lobster_tenant_list_free(warm);
  for (int b = 0; b < BATCHES; b++) {
    double start = now_us();
    for (int i = 0; i < batch; i++) {
      lobster_tenant_list *list = NULL;
      r = lobster_host_list(host, &list, &err);
      if (r != LOBSTER_RESULT_OK) die("list", r, err);
      tenants = lobster_tenant_list_len(list);
      for (size_t j = 0; j < tenants; j++)
        bytes += lobster_tenant_name(lobster_tenant_list_get(list, j))[0] != 0;
      lobster_tenant_list_free(list);
    }
    double us = (now_us() - start) / batch;
    if (us < list_us) list_us = us;

    start = now_us();
    for (int i = 0; i < batch; i++) {
      char *json = NULL;
      r = lobster_host_list_json(host, &json, &err);
      if (r != LOBSTER_RESULT_OK) die("list_json", r, err);
      lobster_string_free(json);
    }
    us = (now_us() - start) / batch;
    if (us < json_us) json_us = us;
  }
  printf("%8zu %10.1f %16.1f\n", tenants, list_us, json_us);
  lobster_host_free(host);
  return bytes == (size_t)-1; /* keep the reads */
}
