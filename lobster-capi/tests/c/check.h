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

#endif
