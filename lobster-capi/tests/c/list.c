/* Opens a host, lists its tenants (seeded: alice, bob), reads every field,
 * fetches one tenant and a token, and frees everything.
 * Usage: list <config.json> */
#include "check.h"

int main(int argc, char **argv) {
  CHECK(argc >= 2);
  lobster_error *err = NULL;
  lobster_host *host = NULL;
  CHECK_OK(lobster_host_open(argv[1], &host, &err), err);
  CHECK(host != NULL && err == NULL);

  lobster_tenant_list *list = NULL;
  CHECK_OK(lobster_host_list(host, &list, &err), err);
  CHECK(lobster_tenant_list_len(list) == 2);
  const char *names[] = {"alice", "bob"};
  const char *guest_ips[] = {"10.200.0.2", "10.200.0.6"};
  for (size_t i = 0; i < 2; i++) {
    const lobster_tenant *t = lobster_tenant_list_get(list, i);
    CHECK(t != NULL);
    CHECK_STR(lobster_tenant_name(t), names[i]);
    CHECK_STR(lobster_tenant_status(t), "creating");
    CHECK_STR(lobster_tenant_guest_ip(t), guest_ips[i]);
    CHECK(strlen(lobster_tenant_id(t)) == 8);
    CHECK(strncmp(lobster_tenant_tap(t), "lob-", 4) == 0);
    CHECK(strncmp(lobster_tenant_mac(t), "06:00:", 6) == 0);
    CHECK(lobster_tenant_vcpus(t) == 2);
    CHECK(lobster_tenant_memory_mib(t) == 1024);
    CHECK(lobster_tenant_overlay_size_mib(t) == 4096);
    CHECK(lobster_tenant_host_port(t) == 20000 + i);
    CHECK(lobster_tenant_jail_uid(t) == 10000 + i);
    CHECK(lobster_tenant_created_at(t) > 1700000000u);
    CHECK(lobster_tenant_backend(t) == NULL);    /* follows the host */
    CHECK(lobster_tenant_last_error(t) == NULL); /* nothing failed */
    CHECK(lobster_tenant_vm_pid(t) == 0);        /* no VM yet */
  }
  CHECK_STR(lobster_tenant_route(lobster_tenant_list_get(list, 0)), "alice.test.lobster");
  CHECK_STR(lobster_tenant_host_ip(lobster_tenant_list_get(list, 1)), "10.200.0.5");
  CHECK_STR(lobster_tenant_subnet(lobster_tenant_list_get(list, 1)), "10.200.0.4");
  CHECK(lobster_tenant_list_get(list, 2) == NULL);
  CHECK(lobster_tenant_list_get(NULL, 0) == NULL);
  CHECK(lobster_tenant_list_len(NULL) == 0);
  CHECK(lobster_tenant_name(NULL) == NULL && lobster_tenant_vcpus(NULL) == 0);
  CHECK(lobster_tenant_backend(NULL) == NULL && lobster_tenant_last_error(NULL) == NULL);
  CHECK(lobster_tenant_vm_pid(NULL) == 0);
  lobster_tenant_list_free(list);

  char *json = NULL;
  CHECK_OK(lobster_host_list_json(host, &json, &err), err);
  CHECK(json[0] == '[' && strstr(json, "\"name\":\"alice\"") && strstr(json, "\"name\":\"bob\""));
  CHECK(strstr(json, "token") == NULL);
  lobster_string_free(json);

  lobster_tenant *bob = NULL;
  CHECK_OK(lobster_host_get(host, "bob", &bob, &err), err);
  CHECK_STR(lobster_tenant_name(bob), "bob");
  CHECK_OK(lobster_tenant_json(bob, &json, &err), err);
  CHECK(strstr(json, "\"route\":\"bob.test.lobster\"") != NULL);
  lobster_string_free(json);
  lobster_tenant_free(bob);

  char *token = NULL;
  CHECK_OK(lobster_host_token(host, "alice", &token, &err), err);
  CHECK(strlen(token) == 64);
  lobster_string_free(token);

  lobster_host_free(host);
  /* Frees of NULL are no-ops. */
  lobster_host_free(NULL);
  lobster_tenant_list_free(NULL);
  lobster_tenant_free(NULL);
  lobster_string_free(NULL);
  lobster_error_free(NULL);
  printf("list: ok\n");
  return 0;
}
