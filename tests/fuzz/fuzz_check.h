/* fuzz_check: the fuzz targets' assertion. Always evaluated (unlike assert, whose argument
 * must have no side effects, and which NDEBUG removes); a failure aborts, which libFuzzer
 * reports with the input. */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif /* FUZZ_CHECK_H */
