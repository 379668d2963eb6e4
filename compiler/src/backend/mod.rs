//! Native code the JIT calls into: the packed SGEMM micro-kernels.
pub mod gemm;
