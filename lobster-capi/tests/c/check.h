/* Tiny assertion helpers shared by the C tests. */
#ifndef LOBSTER_TEST_CHECK_H
#define LOBSTER_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lobster.h"

/* Fails the test with the location and the condition's text. */
#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,       \
              #cond);                                                        \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

/* Checks two C strings are equal, printing both when not. */
#define CHECK_STR(actual, expected)                                          \
  do {                                                                       \
    const char *a_ = (actual), *e_ = (expected);                             \
    if (a_ == NULL || strcmp(a_, e_) != 0) {                                 \
      fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__,    \
              __LINE__, #actual, a_ ? a_ : "(null)", e_);                    \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

/* Checks a call succeeded; on failure prints the code and, when the call
 * filled it, the error object `err`. */
#define CHECK_OK(call, err)                                                  \
  do {                                                                       \
    lobster_result r_ = (call);                                              \
    if (r_ != LOBSTER_RESULT_OK) {                                           \
      fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__,     \
              #call, lobster_result_name(r_),                                \
              (err) ? lobster_error_message(err) : "(no error object)");     \
      exit(1);                                                               \
    }                                                                        \
  } while (0)

/* Checks `call` failed with `code`, that the error object (`e_`, declared
 * here for `call` to fill) says so and that its message contains `needle`;
 * frees the error. */
#define CHECK_FAILS(call, code, needle)                                      \
  do {                                                                       \
    lobster_error *e_ = NULL;                                                \
    lobster_result r_ = (call);                                              \
    if (r_ != (code)) {                                                      \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s: %s\n", __FILE__,  \
              __LINE__, #call, lobster_result_name(r_),                      \
              lobster_result_name(code),                                     \
              e_ ? lobster_error_message(e_) : "(no error object)");         \
      exit(1);                                                               \
    }                                                                        \
    CHECK(e_ != NULL);                                                       \
    CHECK(lobster_error_code(e_) == (code));                                 \
    CHECK_STR(lobster_error_kind(e_), lobster_result_name(code));            \
    if (strstr(lobster_error_message(e_), (needle)) == NULL) {               \
      fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__,      \
              __LINE__, lobster_error_message(e_), (needle));                \
      exit(1);                                                               \
    }                                                                        \
    lobster_error_free(e_);                                                  \
  } while (0)

#endif
