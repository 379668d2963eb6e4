//! Tests of weights loading, saving and checking.

use std::path::PathBuf;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::*;

fn path() -> PathBuf {
    PathBuf::from("model.safetensors")
}

fn tensor(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::new(shape.to_vec(), data.to_vec()).unwrap()
}

/// A small model's weights with a scalar and an empty tensor among them.
fn sample_weights() -> WeightSet {
    let mut w = WeightSet::new();
    w.insert(
        "conv1.weight",
        tensor(&[2, 3], &[1.0, -2.0, 0.5, 3.25, -0.0, 1e-7]),
    );
    w.insert("conv1.bias", tensor(&[2], &[0.125, -8.0]));
    w.insert("scale", tensor(&[], &[2.5]));
    w.insert("empty", tensor(&[0, 4], &[]));
    w
}

/// Serialises raw tensors of any dtype, as PyTorch would write them.
fn raw_file(tensors: &[(&str, Dtype, &[usize], Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                *name,
                TensorView::new(*dtype, shape.to_vec(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn expected(entries: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    entries
        .iter()
        .map(|(name, shape)| (name.to_string(), shape.to_vec()))
        .collect()
}

#[test]
fn file_round_trip_preserves_names_shapes_and_bits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.safetensors");
    let weights = sample_weights();
    save_safetensors(&file, &weights).unwrap();
    let loaded = load_safetensors(&file).unwrap();
    assert_eq!(loaded, weights);
    // Equality of f32 treats -0.0 as 0.0, so compare the bits as well.
    let bits = |w: &WeightSet| -> Vec<u32> {
        w.iter()
            .flat_map(|(_, t)| t.data().iter().map(|x| x.to_bits()))
            .collect()
    };
    assert_eq!(bits(&loaded), bits(&weights));
    assert_eq!(
        loaded.names().collect::<Vec<_>>(),
        ["conv1.bias", "conv1.weight", "empty", "scale"]
    );
}

#[test]
fn bytes_round_trip() {
    let weights = sample_weights();
    let bytes = to_safetensors_bytes(&weights).unwrap();
    assert_eq!(load_safetensors_bytes(&bytes, &path()).unwrap(), weights);
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("absent.safetensors");
    let error = load_safetensors(&file).unwrap_err();
    assert!(matches!(&error, WeightError::Io(e) if e.path == file && e.action == "read"));
    assert!(error.to_string().starts_with("cannot read `"), "{error}");
}

#[test]
fn cutting_bytes_off_the_end_is_reported_as_truncation() {
    let bytes = to_safetensors_bytes(&sample_weights()).unwrap();
    let cut = &bytes[..bytes.len() - 3];
    match load_safetensors_bytes(cut, &path()) {
        Err(WeightError::Truncated {
            expected, found, ..
        }) => {
            assert_eq!(expected, bytes.len());
            assert_eq!(found, bytes.len() - 3);
        }
        other => panic!("expected a truncation error, got {other:?}"),
    }
}

#[test]
fn every_truncation_is_an_error_and_never_a_panic() {
    let bytes = to_safetensors_bytes(&sample_weights()).unwrap();
    for len in 0..bytes.len() {
        match load_safetensors_bytes(&bytes[..len], &path()) {
            // Once the length prefix and the opening brace are present the
            // file is recognisably a cut safetensors file.
            Err(WeightError::Truncated { found, .. }) => assert_eq!(found, len),
            Err(WeightError::NotSafetensors { .. }) => {
                assert!(len <= 8, "a cut at {len} bytes was not called truncated")
            }
            other => panic!("cut at {len} bytes: unexpected result {other:?}"),
        }
    }
}

#[test]
fn garbage_is_not_a_safetensors_file() {
    let garbage = b"this is certainly not a safetensors file".as_slice();
    let error = load_safetensors_bytes(garbage, &path()).unwrap_err();
    assert!(
        matches!(error, WeightError::NotSafetensors { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("`model.safetensors` is not a safetensors file: "),
        "{error}"
    );

    // A plausible length prefix followed by something that is not JSON.
    let mut bytes = 4u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"abcd");
    let error = load_safetensors_bytes(&bytes, &path()).unwrap_err();
    assert!(
        matches!(error, WeightError::NotSafetensors { .. }),
        "{error:?}"
    );
}

#[test]
fn trailing_bytes_are_not_truncation() {
    let mut bytes = to_safetensors_bytes(&sample_weights()).unwrap();
    bytes.extend_from_slice(&[0; 5]);
    let error = load_safetensors_bytes(&bytes, &path()).unwrap_err();
    match &error {
        WeightError::NotSafetensors { reason, .. } => {
            assert_eq!(reason, "5 unexpected bytes follow the last tensor")
        }
        other => panic!("expected not-safetensors, got {other:?}"),
    }
}

#[test]
fn num_batches_tracked_is_skipped_whatever_its_dtype() {
    let bytes = raw_file(&[
        (
            "bn.weight",
            Dtype::F32,
            &[2],
            [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        (
            "bn.num_batches_tracked",
            Dtype::I64,
            &[],
            7i64.to_le_bytes().to_vec(),
        ),
        (
            "layer1.0.bn1.num_batches_tracked",
            Dtype::I64,
            &[],
            7i64.to_le_bytes().to_vec(),
        ),
    ]);
    let weights = load_safetensors_bytes(&bytes, &path()).unwrap();
    assert_eq!(weights.names().collect::<Vec<_>>(), ["bn.weight"]);
    assert_eq!(weights.get("bn.weight").unwrap().data(), [1.0, 2.0]);
}

#[test]
fn other_integer_tensors_are_unsupported_and_named() {
    let bytes = raw_file(&[("step", Dtype::I64, &[1], 7i64.to_le_bytes().to_vec())]);
    let error = load_safetensors_bytes(&bytes, &path()).unwrap_err();
    assert!(
        matches!(&error, WeightError::UnsupportedDtype { name, dtype, .. } if name == "step" && dtype == "i64"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "tensor `step` in `model.safetensors` has dtype i64, which nnc cannot load; \
         save it as f32 (f64, f16 and bf16 are converted on load)"
    );
    // The suffix must be a whole name component.
    let bytes = raw_file(&[(
        "my_num_batches_tracked",
        Dtype::I64,
        &[],
        7i64.to_le_bytes().to_vec(),
    )]);
    assert!(load_safetensors_bytes(&bytes, &path()).is_err());
}

#[test]
fn wider_and_narrower_floats_are_converted() {
    let bytes = raw_file(&[
        (
            "double",
            Dtype::F64,
            &[2],
            [1.5f64, -0.1]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        // 1.0 and -2.0 in IEEE half precision.
        ("half", Dtype::F16, &[2], vec![0x00, 0x3c, 0x00, 0xc0]),
        // 1.0 and 3.0 in bfloat16.
        ("brain", Dtype::BF16, &[2], vec![0x80, 0x3f, 0x40, 0x40]),
    ]);
    let weights = load_safetensors_bytes(&bytes, &path()).unwrap();
    assert_eq!(weights.get("double").unwrap().data(), [1.5, -0.1f32]);
    assert_eq!(weights.get("half").unwrap().data(), [1.0, -2.0]);
    assert_eq!(weights.get("brain").unwrap().data(), [1.0, 3.0]);
}

#[test]
fn check_weights_accepts_matching_weights() {
    let weights = sample_weights();
    let want = expected(&[
        ("conv1.weight", &[2, 3]),
        ("conv1.bias", &[2]),
        ("scale", &[]),
        ("empty", &[0, 4]),
    ]);
    let problems = check_weights(&want, &weights);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn check_weights_reports_every_problem_sorted_by_name() {
    let weights = sample_weights();
    let want = expected(&[
        ("fc.weight", &[10, 4]),
        ("conv1.weight", &[2, 3, 1, 1]),
        ("conv1.bias", &[2]),
        ("empty", &[0, 4]),
        ("a.bias", &[3]),
    ]);
    let messages: Vec<String> = check_weights(&want, &weights)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        messages,
        [
            "tensor `a.bias` of shape [3] is missing from the weights file",
            "tensor `conv1.weight` has shape [2, 3] in the weights file but the model expects [2, 3, 1, 1]",
            "tensor `fc.weight` of shape [10, 4] is missing from the weights file",
            "the weights file has a tensor `scale` of shape [] that the model does not use",
        ]
    );
}

#[test]
fn shape_mismatch_message_matches_the_documented_form() {
    let mut weights = WeightSet::new();
    weights.insert("conv1.weight", Tensor::zeros(vec![64, 3, 7, 7]).unwrap());
    let problems = check_weights(&expected(&[("conv1.weight", &[64, 3, 3, 3])]), &weights);
    assert_eq!(problems.len(), 1);
    assert!(matches!(problems[0], WeightError::ShapeMismatch { .. }));
    assert_eq!(
        problems[0].to_string(),
        "tensor `conv1.weight` has shape [64, 3, 7, 7] in the weights file but the model expects [64, 3, 3, 3]"
    );
}

#[test]
fn weight_set_accessors() {
    let mut weights = sample_weights();
    assert_eq!(weights.len(), 4);
    assert!(weights.contains("scale"));
    weights.get_mut("scale").unwrap().data_mut()[0] = 4.0;
    assert_eq!(weights.get("scale").unwrap().data(), [4.0]);
    let removed = weights.remove("scale").unwrap();
    assert_eq!(removed.data(), [4.0]);
    assert!(weights.get("scale").is_none());
    assert_eq!(weights.clone().into_inner().len(), 3);
    assert!(WeightSet::new().is_empty());
}

#[test]
fn saving_into_a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no/such/dir/w.safetensors");
    let error = save_safetensors(&file, &sample_weights()).unwrap_err();
    assert!(matches!(&error, WeightError::Io(e) if e.action == "write" && e.path == file));
}

#[test]
fn tensors_over_the_memory_limit_are_refused_by_name_before_decoding() {
    let mut weights = WeightSet::new();
    weights.insert("a.weight", tensor(&[16, 16], &[0.5; 256]));
    weights.insert("b.weight", tensor(&[16, 16], &[0.25; 256]));
    let bytes = to_safetensors_bytes(&weights).unwrap();
    let load =
        |limit| load_safetensors_bytes_within(&bytes, &path(), MemoryLimit::from_bytes(limit));
    // Exactly enough for both.
    assert_eq!(load(2048).unwrap(), weights);
    // One tensor is over the limit: it is named with its shape.
    let err = load(1000).unwrap_err().to_string();
    assert_eq!(
        err,
        "tensor `a.weight` of shape [16, 16] needs 1.0 KiB (1024 bytes), more than the memory \
         limit of 1000 bytes; raise it with `--max-memory`"
    );
    // Each fits, the two together do not.
    let err = load(2047).unwrap_err().to_string();
    assert!(
        err.starts_with("the weights in `model.safetensors` needs 2.0 KiB (2048 bytes)"),
        "{err}"
    );
}
