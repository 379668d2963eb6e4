/* Two bundles in one program, and the life of their handles: the program
 * the bundle tests (compiler/tests/bundle.rs) link with two bundles made
 * with --prefix first and --prefix second, each of one input and one
 * output, and one libnnc_runtime.a.
 *
 *   bundle_two FIRST_IN FIRST_OUT SECOND_IN SECOND_OUT
 *
 * Opens `first` twice and `second` once, closes the first handle of
 * `first` before running its second one (they share the loaded weights),
 * runs both models on their inputs (raw float32) and writes their outputs;
 * also checks that a negative thread count is refused with a message.
 * Exits 0 if everything worked, 1 otherwise. */
#include "nnc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nnc_model *first_model_open(int threads);
nnc_model *second_model_open(int threads);

static int run(nnc_model *m, const char *in, const char *out) {
    size_t n = nnc_model_input_len(m, 0), k = nnc_model_output_len(m, 0);
    float *x = malloc(n * sizeof(float) + 1), *y = malloc(k * sizeof(float) + 1);
    FILE *f = fopen(in, "rb");
    int ok = x && y && f && fread(x, sizeof(float), n, f) == n;
    if (f) fclose(f);
    const float *inputs[1] = {x};
    float *outputs[1] = {y};
    if (ok && nnc_model_run(m, inputs, outputs) != 0) {
        fprintf(stderr, "run failed: %s\n", nnc_model_error(m));
        ok = 0;
    }
    f = ok ? fopen(out, "wb") : NULL;
    ok = ok && f && fwrite(y, sizeof(float), k, f) == k;
    if (f) fclose(f);
    free(x);
    free(y);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s FIRST_IN FIRST_OUT SECOND_IN SECOND_OUT\n", argv[0]);
        return 1;
    }
    if (first_model_open(-1) != NULL || !strstr(nnc_model_error(NULL), "threads")) {
        fprintf(stderr, "a negative thread count was not refused\n");
        return 1;
    }
    nnc_model *a = first_model_open(1), *again = first_model_open(2), *b = second_model_open(0);
    if (!a || !again || !b) {
        fprintf(stderr, "open failed: %s\n", nnc_model_error(NULL));
        return 1;
    }
    nnc_model_close(a);
    int ok = run(again, argv[1], argv[2]) && run(b, argv[3], argv[4]);
    nnc_model_close(again);
    nnc_model_close(b);
    /* Opened again after every handle closed: loads the weights anew. */
    nnc_model *later = first_model_open(1);
    ok = ok && later && nnc_model_num_inputs(later) == 1;
    nnc_model_close(later);
    return ok ? 0 : 1;
}
