//! The nnc compiler: the typed op graph (IR), AST-to-IR lowering with shape
//! inference, the verifier, the IR printer, model statistics, lints, the
//! reference interpreter, the optimisation passes, the Cranelift backend,
//! and the `nnc` binary.
//!
//! Architecture invariant: this is the only crate that knows petgraph and
//! Cranelift. It depends on `nnc-frontend` for syntax and
//! diagnostics and on `nnc-runtime` for tensors and weights; neither of them
//! depends on it.
//!
//! # Embedding nnc
//!
//! Compile a model once, then run it on tensors from any number of threads
//! (a compiled model is `Send + Sync`; each run uses its own arena):
//!
//! ```
//! use nnc_compiler::{backend, driver, weights};
//! use nnc_frontend::SourceFile;
//! use nnc_runtime::{Pool, Tensor};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let text = "model tiny {\n input x: f32[1, 4]\n y = linear(x, out=2)\n z = relu(y)\n output z\n}";
//! let source = SourceFile::new("tiny.nn", text.to_string());
//! // `driver::load(path)` reads a file; diagnostics render with the source.
//! let graph = driver::compile_source(&source)
//!     .map_err(|d| nnc_frontend::diagnostic::render_all(&d, &source))?;
//! // Seeded weights; `weights::load_weights(&graph, path, limit)` reads safetensors.
//! let w = weights::seeded_weights(&graph, 0)?;
//! let compiled = backend::compile(graph, w, &backend::Options::default())?;
//! let pool = Pool::new(0)?; // one thread per core
//! let x = Tensor::new(vec![1, 4], vec![1.0, 2.0, 3.0, 4.0])?;
//! let outputs = compiled.executable.run(&[x], &pool)?;
//! assert_eq!(outputs[0].shape(), &[1, 2]);
//! assert!(outputs[0].data().iter().all(|&v| v >= 0.0));
//! // A wrong input is an error, never undefined behaviour.
//! assert!(compiled.executable.run(&[Tensor::zeros(vec![4])?], &pool).is_err());
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod driver;
pub mod interp;
pub mod ir;
pub mod limits;
pub mod lint;
pub mod lower;
pub mod passes;
pub mod shape;
pub mod stats;
pub mod verify;
pub mod weights;
