//! Generates Rust types for `onnx.proto` with prost-build.
//! Usage: onnx-proto-gen <path/to/onnx.proto> <out-dir>

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, proto, out] = args.as_slice() else {
        return Err("usage: onnx-proto-gen <onnx.proto> <out-dir>".into());
    };
    let proto = std::path::Path::new(proto);
    let include = proto.parent().ok_or("the proto path has no parent")?;
    std::fs::create_dir_all(out)?;
    prost_build::Config::new()
        .out_dir(out)
        // Decoded from a mapped file, a tensor's raw data is a slice of the
        // map, not a copy (frontend/src/onnx/mod.rs).
        .bytes([".onnx.TensorProto.raw_data"])
        .compile_protos(&[proto], &[include])?;
    Ok(())
}
