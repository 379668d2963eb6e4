/* Runs a model through nnc's C API and nothing else: the program the
 * C API tests (tests/tests/c_api.rs) build with the system's `cc`.
 *
 *   nnc_run MODEL WEIGHTS|- THREADS IN_1 .. IN_n OUT_1 .. OUT_m
 *
 * compiles MODEL with libnnc (WEIGHTS `-`: the model's own or seeded
 * weights), reads input i as raw little-endian float32 from IN_i and
 * writes output i to OUT_i the same way. Built with -DNNC_BUNDLE it opens
 * the bundle linked into it instead (with NNC_OPEN, nnc_model_open unless
 * defined otherwise, e.g. -DNNC_OPEN=lenet5_model_open for a bundle made
 * with --prefix lenet5), and takes no MODEL or WEIGHTS:
 *
 *   nnc_run THREADS IN_1 .. IN_n OUT_1 .. OUT_m
 *
 * Prints each input's and output's shape; exits 0 on success, 2 if the
 * model cannot be opened, 3 if a run fails, 1 on a usage or I/O error. */
#include "nnc.h"

#ifndef NNC_OPEN
#define NNC_OPEN nnc_model_open
#endif
nnc_model *NNC_OPEN(int threads);

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    float *data = malloc(n * sizeof(float) + 1);
    size_t got = data ? fread(data, sizeof(float), n, f) : 0;
    int extra = fgetc(f);
    fclose(f);
    if (got != n || extra != EOF) {
        fprintf(stderr, "%s does not hold exactly %zu floats\n", path, n);
        free(data);
        return NULL;
    }
    return data;
}

static int write_floats(const char *path, const float *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, sizeof(float), n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        if (f) fclose(f);
        return -1;
    }
    return fclose(f);
}

static void print_shape(const char *what, int i, const int64_t *dims, int rank) {
    printf("%s %d:", what, i);
    for (int d = 0; d < rank; d++) printf("%s%lld", d ? "x" : " ", (long long)dims[d]);
    printf("\n");
}

int main(int argc, char **argv) {
#ifdef NNC_BUNDLE
    const int first = 2;
    if (argc < first) {
        fprintf(stderr, "usage: %s THREADS IN.. OUT..\n", argv[0]);
        return 1;
    }
    nnc_model *m = NNC_OPEN(atoi(argv[1]));
#else
    const int first = 4;
    if (argc < first) {
        fprintf(stderr, "usage: %s MODEL WEIGHTS|- THREADS IN.. OUT..\n", argv[0]);
        return 1;
    }
    nnc_model *m = nnc_compile(argv[1], strcmp(argv[2], "-") ? argv[2] : NULL, atoi(argv[3]));
#endif
    if (!m) {
        fprintf(stderr, "cannot open the model: %s\n", nnc_model_error(NULL));
        return 2;
    }
    int ni = nnc_model_num_inputs(m), no = nnc_model_num_outputs(m);
    if (argc != first + ni + no) {
        fprintf(stderr, "the model has %d inputs and %d outputs; %d files given\n", ni, no,
                argc - first);
        nnc_model_close(m);
        return 1;
    }
    float **inputs = calloc((size_t)ni + 1, sizeof(float *));
    float **outputs = calloc((size_t)no + 1, sizeof(float *));
    int status = 0;
    for (int i = 0; i < ni && status == 0; i++) {
        int rank = 0;
        const int64_t *dims = nnc_model_input_shape(m, i, &rank);
        print_shape("input", i, dims, rank);
        inputs[i] = read_floats(argv[first + i], nnc_model_input_len(m, i));
        if (!inputs[i]) status = 1;
    }
    for (int i = 0; i < no && status == 0; i++) {
        int rank = 0;
        const int64_t *dims = nnc_model_output_shape(m, i, &rank);
        print_shape("output", i, dims, rank);
        outputs[i] = malloc(nnc_model_output_len(m, i) * sizeof(float) + 1);
        if (!outputs[i]) status = 1;
    }
    if (status == 0 && nnc_model_run(m, (const float *const *)inputs, outputs) != 0) {
        fprintf(stderr, "run failed: %s\n", nnc_model_error(m));
        status = 3;
    }
    for (int i = 0; i < no && status == 0; i++) {
        if (write_floats(argv[first + ni + i], outputs[i], nnc_model_output_len(m, i)) != 0)
            status = 1;
    }
    for (int i = 0; i < ni; i++) free(inputs[i]);
    for (int i = 0; i < no; i++) free(outputs[i]);
    free(inputs);
    free(outputs);
    nnc_model_close(m);
    return status;
}
