/* fuzz.h: what every fuzz target shares (STYLE.md section 9).
 *
 * Each tests/fuzz/fuzz-<target>.c defines LLVMFuzzerTestOneInput. Built
 * with -Dfuzz=true (clang) it links libFuzzer's main; in every build it
 * also links replay.c, whose main() runs the target over each file of
 * tests/fuzz/corpus/<target>/ under `meson test` (suite fuzz). */
#ifndef MC_FUZZ_H
#define MC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: print it and abort, which libFuzzer and the replay
 * main both report as a crash (with the input that caused it). */
#define FUZZ_CHECK(cond)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                       \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* Fragment sizes from the input's first byte (hiredis): the low 6 bits
 * give the size (1..64), so the incremental parsers see every split.
 * fuzz_split consumes the byte; *step is at least 1. */
static inline void fuzz_split(const uint8_t **data, size_t *size, size_t *step)
{
    *step = 1;
    if (*size == 0)
        return;
    *step = (size_t)((*data)[0] & 0x3f) + 1;
    (*data)++;
    (*size)--;
}

/* A NUL-terminated copy (the parsers that take C strings); NULL on OOM. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < size; i++)
        s[i] = (char)data[i];
    s[size] = '\0';
    return s;
}

#endif
