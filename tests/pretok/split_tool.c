/* Reads cases from stdin, each "KIND LEN\n" then LEN bytes of text, and
 * prints the byte lengths of the pieces em_pretok_split gives, one line per
 * case. The other half of diff_pretok.py. */
#include <stdio.h>
#include <stdlib.h>

#include "lib/tokenizer/pretok.h"

int main(void) {
    char kind[64];
    size_t len;
    while (scanf("%63s %zu", kind, &len) == 2 && getchar() == '\n') {
        int k = em_pretok_from_name(kind);
        char *text = malloc(len + 1);
        uint32_t *cps = malloc((len + 1) * sizeof *cps), *offs = malloc((len + 1) * sizeof *offs);
        em_piece *pieces = malloc((len + 1) * sizeof *pieces);
        if (k == EM_PRE_UNKNOWN || !text || !cps || !offs || !pieces ||
            fread(text, 1, len, stdin) != len) {
            fprintf(stderr, "bad case '%s'\n", kind);
            return 1;
        }
        size_t n = em_pretok_split(k, text, len, cps, offs, pieces);
        for (size_t i = 0; i < n; i++) printf(i ? " %u" : "%u", pieces[i].len);
        printf("\n");
        free(text);
        free(cps);
        free(offs);
        free(pieces);
    }
    return 0;
}
