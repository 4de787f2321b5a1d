/* One `const lobster_host *` shared by several threads, each listing and
 * looking up tenants at once (the host is documented as thread-safe).
 * Usage: threads <config.json with tenants alice and bob> */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "check.h"

enum { THREADS = 4, ROUNDS = 25 };

static void *worker(void *arg) {
  const lobster_host *host = arg;
  for (int i = 0; i < ROUNDS; i++) {
    lobster_error *err = NULL;
    lobster_tenant_list *list = NULL;
    CHECK_OK(lobster_host_list(host, &list, &err), err);
    CHECK(lobster_tenant_list_len(list) == 2);
    CHECK_STR(lobster_tenant_name(lobster_tenant_list_get(list, 1)), "bob");
    lobster_tenant_list_free(list);

    lobster_tenant *missing = NULL;
    CHECK(lobster_host_get(host, "nobody", &missing, &err) == LOBSTER_RESULT_NOT_FOUND);
    CHECK(missing == NULL && err != NULL);
    lobster_error_free(err);
  }
  return NULL;
}

int main(int argc, char **argv) {
  CHECK(argc >= 2);
  lobster_error *err = NULL;
  lobster_host *host = NULL;
  CHECK_OK(lobster_host_open(argv[1], &host, &err), err);
  pthread_t threads[THREADS];
  for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&threads[i], NULL, worker, host) == 0);
  for (int i = 0; i < THREADS; i++) CHECK(pthread_join(threads[i], NULL) == 0);
  lobster_host_free(host);
  printf("threads: ok\n");
  return 0;
}
