//! `nnc compile --emit=bundle`: writes an ahead-of-time bundle (the model's
//! object file, `libnnc_runtime.a`, `nnc.h` and a README) into a directory.

use anyhow::{bail, Context, Result};
use nnc_compiler::backend::bundle::compile_bundle;
use nnc_compiler::backend::Options;
use nnc_compiler::driver::Model;
use nnc_runtime::{MemoryLimit, WeightSet};
use std::path::{Path, PathBuf};

/// What `nnc compile` produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// The compile report only.
    Report,
    /// An ahead-of-time bundle in `-o DIR`.
    Bundle,
}

/// The runtime library bundles link: `$NNC_RUNTIME_LIB`, else the newest
/// one cargo built beside this `nnc` binary (in `target/<profile>/` or its
/// `deps/`, there with a hash in the name).
fn runtime_lib() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("NNC_RUNTIME_LIB") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "NNC_RUNTIME_LIB names `{}`, which is not a file",
                path.display()
            );
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the nnc binary")?;
    let dir = exe.parent().context("the nnc binary's directory")?;
    // Cargo leaves one in `deps/` per build configuration, and copies one
    // up when the runtime itself is built: the newest is the one built
    // with this binary.
    let beside = std::fs::read_dir(dir)
        .into_iter()
        .chain(std::fs::read_dir(dir.join("deps")))
        .flatten()
        .flatten();
    let newest = beside
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name == "libnnc_runtime.a"
                || (name.starts_with("libnnc_runtime-") && name.ends_with(".a"))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    match newest {
        Some((_, path)) => Ok(path),
        None => bail!(
            "cannot find libnnc_runtime.a beside the nnc binary ({}); build it with `cargo build -p nnc-runtime` (same profile) or set NNC_RUNTIME_LIB",
            dir.display()
        ),
    }
}

/// Compiles `m` into a bundle in `dir`.
pub fn command(
    m: &Model,
    weights: WeightSet,
    threads: usize,
    limit: MemoryLimit,
    dir: &Path,
    prefix: &str,
) -> Result<()> {
    let start = std::time::Instant::now();
    let lib = runtime_lib()?;
    let bundle = compile_bundle(
        m.graph.clone(),
        weights,
        &Options {
            threads,
            max_memory: limit,
            ..Default::default()
        },
        prefix,
    )?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing `{}`", path.display()))?;
        Ok(path)
    };
    let object = write(&format!("{prefix}_model.o"), &bundle.object)?;
    let runtime = dir.join("libnnc_runtime.a");
    std::fs::copy(&lib, &runtime)
        .with_context(|| format!("copying `{}` to `{}`", lib.display(), runtime.display()))?;
    write("nnc.h", nnc_runtime::capi::HEADER.as_bytes())?;
    let mut files = vec![object.clone(), runtime, dir.join("nnc.h")];
    if prefix != "nnc" {
        files.push(write(
            &format!("{prefix}.h"),
            format!(
                "/* `{}` from nnc: open it with {open}. */\n#include \"nnc.h\"\n\nnnc_model *{open}(int threads);\n",
                m.graph.name,
                open = bundle.open_symbol
            )
            .as_bytes(),
        )?);
    }
    let link = format!(
        "cc app.c -I {d} {d}/*.o {d}/libnnc_runtime.a -lpthread -ldl -lm",
        d = dir.display()
    );
    files.push(write(
        "README",
        readme(&m.graph.name, &bundle.open_symbol, prefix, &link).as_bytes(),
    )?);
    println!(
        "bundled `{}` ({} kernels, {:.1} MiB object of which {:.1} MiB weights and plan) in {:.1} ms:",
        m.graph.name,
        bundle.layers.len(),
        bundle.object.len() as f64 / (1 << 20) as f64,
        bundle.image_bytes as f64 / (1 << 20) as f64,
        start.elapsed().as_secs_f64() * 1e3
    );
    for f in &files {
        println!("  {}", f.display());
    }
    println!("link it into a C program with:\n  {link}");
    Ok(())
}

fn readme(model: &str, open: &str, prefix: &str, link: &str) -> String {
    let header = if prefix == "nnc" {
        "nnc.h".to_string()
    } else {
        format!("{prefix}.h")
    };
    format!(
        "An nnc bundle of `{model}`: its kernels compiled for this CPU, with their weights.

Link it into a C program:

    {link}

and use it through `{header}` (the C API is documented in nnc.h):

    nnc_model *m = {open}(0);          /* 0 threads: one per core */
    if (!m) fprintf(stderr, \"%s\\n\", nnc_model_error(NULL));
    ...
    nnc_model_run(m, inputs, outputs);   /* float32 buffers, row-major */
    nnc_model_close(m);

The code uses the instruction set of the machine that compiled it; on a
CPU without it, {open} returns NULL with a message saying which feature
is missing.
"
    )
}
