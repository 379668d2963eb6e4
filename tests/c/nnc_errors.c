/* Misuse of nnc's C API must give error codes and messages, never a
 * crash: the program the C API tests build with the system's `cc`.
 *
 *   nnc_errors MODEL
 *
 * MODEL is a valid one-input, one-output model. Prints one line per
 * check and exits 0 if every check passed, 1 at the first that did not. */
#include "nnc.h"

#include <stdio.h>
#include <string.h>

static int check(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok" : "FAILED", what);
    return ok;
}

/* The last message is not empty and contains `part`. */
static int says(const char *part) {
    const char *message = nnc_model_error(NULL);
    if (!message || !strstr(message, part)) {
        printf("  message: %s\n", message ? message : "(NULL)");
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 1;
    }
    int ok = 1;
    ok &= check(nnc_compile(NULL, NULL, 1) == NULL && says("NULL"), "a NULL model path");
    ok &= check(nnc_compile("no/such/model.nn", NULL, 1) == NULL && says("no/such/model.nn"),
                "a missing model file names the path");
    ok &= check(nnc_compile(argv[1], "no/such/weights.safetensors", 1) == NULL &&
                    says("no/such/weights.safetensors"),
                "a missing weights file names the path");
    ok &= check(nnc_compile(argv[1], NULL, -2) == NULL && says("threads"), "negative threads");
    ok &= check(nnc_model_num_inputs(NULL) == -1 && says("NULL"), "inputs of a NULL handle");
    ok &= check(nnc_model_run(NULL, NULL, NULL) == -1 && says("NULL"), "running a NULL handle");
    nnc_model_close(NULL);

    nnc_model *m = nnc_compile(argv[1], NULL, 1);
    if (!check(m != NULL, "the model compiles")) {
        printf("  message: %s\n", nnc_model_error(NULL));
        return 1;
    }
    ok &= check(nnc_model_num_inputs(m) == 1 && nnc_model_num_outputs(m) == 1, "one input and output");
    int rank = 7;
    ok &= check(nnc_model_input_shape(m, 1, &rank) == NULL && rank == 0 && says("no input 1"),
                "an input index out of range");
    ok &= check(nnc_model_output_len(m, -1) == 0 && says("no output -1"),
                "a negative output index");
    ok &= check(nnc_model_input_shape(m, 0, NULL) != NULL, "a NULL rank pointer is allowed");

    static float buffer[1 << 20];
    size_t in_len = nnc_model_input_len(m, 0), out_len = nnc_model_output_len(m, 0);
    if (!check(in_len + out_len <= sizeof buffer / sizeof buffer[0], "the model is small")) return 1;
    const float *inputs[1] = {buffer};
    float *outputs[1] = {buffer + in_len};
    const float *no_input[1] = {NULL};
    ok &= check(nnc_model_run(m, NULL, outputs) == -1 && says("NULL"), "a NULL input array");
    ok &= check(nnc_model_run(m, no_input, outputs) == -1 && says("input 0 is NULL"),
                "a NULL input pointer");
    ok &= check(nnc_model_run(m, inputs, NULL) == -1 && says("NULL"), "a NULL output array");
    const float *misaligned[1] = {(const float *)((const char *)buffer + 1)};
    ok &= check(nnc_model_run(m, misaligned, outputs) == -1 && says("aligned"),
                "a misaligned input pointer");
    ok &= check(nnc_model_run(m, inputs, outputs) == 0, "a valid run after the errors");
    nnc_model_close(m);
    return ok ? 0 : 1;
}
