/* Lines per second of a followed workload log through the C API, for
 * scripts/bench-follow.sh: follows NAME for SECONDS and counts the lines.
 * Usage: follow_rate <config.json> <name> <seconds>   (prints a number) */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lobster.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, lobster_result r, lobster_error *err) {
  fprintf(stderr, "%s: %s: %s\n", what, lobster_result_name(r),
          err ? lobster_error_message(err) : "");
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s <config.json> <name> <seconds>\n", argv[0]);
    return 2;
  }
  double span = atof(argv[3]);
  lobster_error *err = NULL;
  lobster_host *host = NULL;
  lobster_result r = lobster_host_open(argv[1], &host, &err);
  if (r != LOBSTER_RESULT_OK) die("open", r, err);
  lobster_log_follow *follow = NULL;
  r = lobster_host_follow_logs(host, argv[2], "workload", 0, &follow, &err);
  if (r != LOBSTER_RESULT_OK) die("follow", r, err);
  char *line = NULL;
  while (line == NULL) { /* the first line: the stream runs */
    r = lobster_log_follow_next(follow, 1000, &line, &err);
    if (r != LOBSTER_RESULT_OK) die("next", r, err);
  }
  lobster_string_free(line);
  long lines = 0;
  double start = now_s(), elapsed = 0;
  while ((elapsed = now_s() - start) < span) {
    line = NULL;
    r = lobster_log_follow_next(follow, 100, &line, &err);
    if (r != LOBSTER_RESULT_OK) die("next", r, err);
    if (line != NULL) lines++;
    lobster_string_free(line);
  }
  printf("%.0f\n", lines / elapsed);
  lobster_log_follow_free(follow);
  lobster_host_free(host);
  return 0;
}
