/* Times a bundle from C: the program `bench/bundle.py` links with each
 * model's bundle (-DNNC_OPEN=<prefix>_model_open).
 *
 *   bundle_bench THREADS RUNS
 *
 * Opens the model, runs it once on inputs uniform in [-1, 1) (the first
 * result), then
 * RUNS more times, and prints one line of JSON: the time to open, to the
 * first result (open included), and every later run's time, in ms. With
 * RUNS 0 it stops after the first result: the process's whole life is then
 * what a user waits for. */
#include "nnc.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef NNC_OPEN
#define NNC_OPEN nnc_model_open
#endif
nnc_model *NNC_OPEN(int threads);

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s THREADS RUNS\n", argv[0]);
        return 1;
    }
    double start = now_ms();
    nnc_model *m = NNC_OPEN(atoi(argv[1]));
    if (!m) {
        fprintf(stderr, "open failed: %s\n", nnc_model_error(NULL));
        return 2;
    }
    double opened = now_ms();
    int ni = nnc_model_num_inputs(m), no = nnc_model_num_outputs(m);
    const float **inputs = calloc((size_t)ni + 1, sizeof(float *));
    float **outputs = calloc((size_t)no + 1, sizeof(float *));
    for (int i = 0; i < ni; i++) {
        size_t n = nnc_model_input_len(m, i);
        float *x = malloc(n * sizeof(float) + 1);
        unsigned s = 12345u + (unsigned)i;
        for (size_t j = 0; j < n; j++) {
            s = s * 1664525u + 1013904223u; /* an LCG: any spread of values does */
            x[j] = (float)(s >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
        }
        inputs[i] = x;
    }
    for (int i = 0; i < no; i++) outputs[i] = malloc(nnc_model_output_len(m, i) * sizeof(float) + 1);
    if (nnc_model_run(m, inputs, outputs) != 0) {
        fprintf(stderr, "run failed: %s\n", nnc_model_error(m));
        return 3;
    }
    double first = now_ms();
    int runs = atoi(argv[2]);
    printf("{\"open_ms\": %.3f, \"first_ms\": %.3f, \"times_ms\": [", opened - start, first - start);
    for (int r = 0; r < runs; r++) {
        double t = now_ms();
        nnc_model_run(m, inputs, outputs);
        printf("%s%.4f", r ? ", " : "", now_ms() - t);
    }
    printf("]}\n");
    nnc_model_close(m);
    return 0;
}
