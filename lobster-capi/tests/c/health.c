/* Molt, overview and the watchdog log: documents out, freed with lobster_string_free.
 * Molt only meets hosts where it has nothing to repair (an empty host, a
 * missing tenant): on seeded running tenants it would repair the host's
 * network for real, which the T2 tests do inside a namespace.
 * Usage: health <good config: alice, bob, a watchdog status for alice and a log>
 *               <bad config> <config with corrupt registry> <empty config> */
#include "check.h"

/* Checks `haystack` contains `needle`, printing both when not. */
#define CHECK_HAS(haystack, needle)                                          \
  do {                                                                       \
    if (strstr((haystack), (needle)) == NULL) {                              \
      fprintf(stderr, "%s:%d: \"%s\" lacks \"%s\"\n", __FILE__, __LINE__,    \
              (haystack), (needle));                                         \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

int main(int argc, char **argv) {
  CHECK(argc >= 5);
  lobster_error *err = NULL;
  lobster_host *host = NULL;
  CHECK_OK(lobster_host_open(argv[1], &host, &err), err);

  /* The watchdog's log: its last lines, each ending in a newline. */
  char *tail = NULL;
  CHECK_OK(lobster_host_watchdog_log(host, 2, &tail, &err), err);
  CHECK_STR(tail, "tick 2\ntick 3\n");
  lobster_string_free(tail);

  /* Overview: every tenant, sorted, with what the watchdog wrote. */
  char *json = NULL;
  CHECK_OK(lobster_host_overview(host, &json, &err), err);
  CHECK(json[0] == '{');
  CHECK_HAS(json, "\"watchdog\":{\"pid\":");
  CHECK_HAS(json, "\"alive\":true");
  const char *alice = strstr(json, "\"name\":\"alice\"");
  const char *bob = strstr(json, "\"name\":\"bob\"");
  CHECK(alice != NULL && bob != NULL && alice < bob);
  CHECK_HAS(alice, "\"state\":\"degraded\"");
  CHECK_HAS(alice, "\"last_event\":\"repair restart_vm failed\"");
  CHECK_HAS(bob, "\"state\":null");
  CHECK_HAS(bob, "\"health\":\"-\"");
  CHECK(strstr(json, "token") == NULL);
  lobster_string_free(json);

  /* Molt of a missing tenant: NOT_FOUND naming it, output untouched. */
  char *sentinel = (char *)&err;
  json = sentinel;
  lobster_error *e = NULL;
  CHECK(lobster_host_molt(host, "nobody", &json, &e) == LOBSTER_RESULT_NOT_FOUND);
  CHECK(json == sentinel && e != NULL);
  CHECK_HAS(lobster_error_message(e), "nobody");
  lobster_error_free(e);

  /* NULL and non-UTF-8 arguments are named. */
  CHECK_FAILS(lobster_host_molt(host, "alice", NULL, &e_), LOBSTER_RESULT_NULL_PARAMETER, "");
  CHECK_FAILS(lobster_host_molt(host, "\xff", &json, &e_), LOBSTER_RESULT_INVALID_UTF8, "");
  CHECK_FAILS(lobster_host_molt(NULL, NULL, &json, &e_), LOBSTER_RESULT_NULL_PARAMETER, "");
  CHECK_FAILS(lobster_host_overview(NULL, &json, &e_), LOBSTER_RESULT_NULL_PARAMETER, "");
  CHECK_FAILS(lobster_host_overview(host, NULL, &e_), LOBSTER_RESULT_NULL_PARAMETER, "");
  CHECK(json == sentinel);
  lobster_host_free(host);

  /* An empty host: molt of every tenant reports nothing; the overview is
     empty and no watchdog has written its status. */
  CHECK_OK(lobster_host_open(argv[4], &host, &err), err);
  json = NULL;
  CHECK_OK(lobster_host_molt(host, NULL, &json, &err), err);
  CHECK_STR(json, "[]");
  lobster_string_free(json);
  CHECK_OK(lobster_host_overview(host, &json, &err), err);
  CHECK_HAS(json, "\"watchdog\":null");
  CHECK_HAS(json, "\"tenants\":[]");
  lobster_string_free(json);
  lobster_host_free(host);

  /* A corrupt registry: CORRUPT, as for list. */
  CHECK_OK(lobster_host_open(argv[3], &host, &err), err);
  json = sentinel;
  CHECK_FAILS(lobster_host_overview(host, &json, &e_), LOBSTER_RESULT_CORRUPT, "");
  CHECK(json == sentinel);
  lobster_host_free(host);

  printf("health: ok\n");
  return 0;
}
