/* nnc.h: the C API of a model compiled by nnc.
 *
 * The same header serves every model, whether linked in as an
 * ahead-of-time bundle (`nnc compile MODEL --emit=bundle -o DIR`: open it
 * with nnc_model_open) or compiled at run time by libnnc (nnc_compile).
 *
 * Tensors are dense, row-major float32. A handle runs one nnc_model_run at
 * a time; separate handles run concurrently, and the read-only functions
 * may be called from any thread. Errors work like errno: a failing call
 * returns -1, 0 or NULL, and nnc_model_error gives this thread's last
 * message. NULL handles and arrays give an error, never a crash; the
 * lengths of the buffers behind the pointers are the caller's promise.
 */
#ifndef NNC_H
#define NNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nnc_model nnc_model;

/* Bundles: opens the model linked into this program; NULL on failure.
 * 0 threads: one per core. (Renamed PREFIX_model_open by --prefix.) */
nnc_model *nnc_model_open(int threads);

/* libnnc: compiles the model at model_path (.nn or .onnx) for this CPU.
 * weights_path: a .safetensors file, or NULL for the ONNX file's own
 * weights or seeded ones (as `nnc run`). NULL on failure. */
nnc_model *nnc_compile(const char *model_path, const char *weights_path, int threads);

int nnc_model_num_inputs(const nnc_model *m);   /* -1 for a NULL handle */
int nnc_model_num_outputs(const nnc_model *m);
size_t nnc_model_input_len(const nnc_model *m, int i);   /* elements, f32; 0: no such input */
size_t nnc_model_output_len(const nnc_model *m, int i);
/* The dimensions (valid while m is open) and, in *rank, their count; NULL
 * and rank 0 if there is no such input or output. rank may be NULL. */
const int64_t *nnc_model_input_shape(const nnc_model *m, int i, int *rank);
const int64_t *nnc_model_output_shape(const nnc_model *m, int i, int *rank);

/* inputs[i]: nnc_model_input_len(m, i) floats; outputs[i]: room for
 * nnc_model_output_len(m, i). 0: ok; -1: see nnc_model_error. */
int nnc_model_run(nnc_model *m, const float *const *inputs, float *const *outputs);

/* This thread's last error message ("" before any); m may be NULL. */
const char *nnc_model_error(const nnc_model *m);

void nnc_model_close(nnc_model *m);   /* NULL is ignored */

#ifdef __cplusplus
}
#endif

#endif /* NNC_H */
