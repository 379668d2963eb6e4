//! Tests of `.npy` reading and writing.

use std::path::PathBuf;

use super::*;

fn path() -> PathBuf {
    PathBuf::from("x.npy")
}

/// A version 1.0 `.npy` file: magic, version, little-endian header length,
/// the header dict padded with `padding` spaces and a newline, then `data`.
fn npy_v1(dict: &str, padding: usize, data: &[u8]) -> Vec<u8> {
    let header = format!("{dict}{}\n", " ".repeat(padding));
    let length = u16::try_from(header.len()).unwrap();
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    // numpy aligns the start of the data to 64 bytes.
    assert_eq!(bytes.len() % 64, 0);
    bytes.extend_from_slice(data);
    bytes
}

/// `np.array([[1, -2, 0.5], [3, 0.25, -1]], dtype='<f4')`, element by element.
const F32_2X3_DATA: [u8; 24] = [
    0x00, 0x00, 0x80, 0x3f, // 1.0 = 0x3f800000
    0x00, 0x00, 0x00, 0xc0, // -2.0 = 0xc0000000
    0x00, 0x00, 0x00, 0x3f, // 0.5 = 0x3f000000
    0x00, 0x00, 0x40, 0x40, // 3.0 = 0x40400000
    0x00, 0x00, 0x80, 0x3e, // 0.25 = 0x3e800000
    0x00, 0x00, 0x80, 0xbf, // -1.0 = 0xbf800000
];

fn f32_2x3_file() -> Vec<u8> {
    // The dict is 59 bytes; 10 + 59 + 58 + 1 = 128.
    npy_v1(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        58,
        &F32_2X3_DATA,
    )
}

#[test]
fn reads_a_hand_written_f32_array() {
    let bytes = f32_2x3_file();
    assert_eq!(bytes.len(), 128 + 24);
    let t = read_npy_bytes(&bytes, &path()).unwrap();
    assert_eq!(t.shape(), [2, 3]);
    assert_eq!(t.data(), [1.0, -2.0, 0.5, 3.0, 0.25, -1.0]);
}

#[test]
fn reads_a_hand_written_0d_f64_array() {
    // 1.5 = 0x3ff8000000000000. The dict is 55 bytes; 10 + 55 + 62 + 1 = 128.
    let data = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f];
    let bytes = npy_v1(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
        62,
        &data,
    );
    let t = read_npy_bytes(&bytes, &path()).unwrap();
    assert_eq!(t.shape(), [] as [usize; 0]);
    assert_eq!(t.data(), [1.5]);
}

#[test]
fn file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        Tensor::new(vec![2, 3], vec![1.0, -2.0, 0.5, 3.0, 0.25, -1.0]).unwrap(),
        Tensor::new(vec![], vec![7.5]).unwrap(),
        Tensor::new(vec![0, 3], vec![]).unwrap(),
        Tensor::new(
            vec![1, 2, 1, 2],
            vec![f32::MIN_POSITIVE, f32::MAX, -0.0, 1e-30],
        )
        .unwrap(),
    ];
    for (i, tensor) in cases.iter().enumerate() {
        let file = dir.path().join(format!("{i}.npy"));
        write_npy(&file, tensor).unwrap();
        let back = read_npy(&file).unwrap();
        assert_eq!(&back, tensor);
        let bits = |t: &Tensor| t.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(tensor));
    }
}

#[test]
fn writes_little_endian_f32_in_c_order() {
    let tensor = Tensor::new(vec![2, 3], vec![1.0, -2.0, 0.5, 3.0, 0.25, -1.0]).unwrap();
    let mut bytes = Vec::new();
    write_npy_to(&mut bytes, &tensor).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY\x01\x00"));
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    assert!(header.ends_with('\n'));
    assert_eq!((10 + header_len) % 64, 0);
    assert_eq!(bytes[10 + header_len..], F32_2X3_DATA);
}

#[test]
fn fortran_order_is_rejected() {
    let bytes = npy_v1(
        "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
        59,
        &F32_2X3_DATA,
    );
    let error = read_npy_bytes(&bytes, &path()).unwrap_err();
    assert!(matches!(error, NpyError::FortranOrder { .. }), "{error:?}");
    assert!(error.to_string().contains("fortran order"), "{error}");
}

#[test]
fn fortran_order_of_a_vector_is_the_same_layout() {
    let bytes = npy_v1(
        "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 6), }",
        59,
        &F32_2X3_DATA,
    );
    let t = read_npy_bytes(&bytes, &path()).unwrap();
    assert_eq!(t.shape(), [1, 6]);
    assert_eq!(t.data()[5], -1.0);
}

#[test]
fn integer_arrays_are_unsupported_and_named() {
    let bytes = npy_v1(
        "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }",
        60,
        &7i64.to_le_bytes(),
    );
    let error = read_npy_bytes(&bytes, &path()).unwrap_err();
    assert!(
        matches!(&error, NpyError::UnsupportedDtype { dtype, .. } if dtype == "<i8"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "`x.npy` holds an array of dtype `<i8` but nnc reads only float32 (`<f4`) and float64 (`<f8`) arrays"
    );
}

#[test]
fn short_data_is_truncation() {
    let bytes = f32_2x3_file();
    let error = read_npy_bytes(&bytes[..bytes.len() - 4], &path()).unwrap_err();
    assert!(
        matches!(
            error,
            NpyError::Truncated {
                expected: 24,
                found: 20,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn every_cut_is_an_error_and_never_a_panic() {
    let bytes = f32_2x3_file();
    for len in 0..bytes.len() {
        let error = read_npy_bytes(&bytes[..len], &path()).unwrap_err();
        assert!(
            matches!(error, NpyError::NotNpy { .. } | NpyError::Truncated { .. }),
            "cut at {len}: {error:?}"
        );
    }
}

#[test]
fn other_files_are_not_npy() {
    let error = read_npy_bytes(b"PK\x03\x04 a zip file", &path()).unwrap_err();
    assert!(matches!(error, NpyError::NotNpy { .. }), "{error:?}");
    let error = read_npy_bytes(&npy_v1("not a dict at all", 100, &[]), &path()).unwrap_err();
    assert!(matches!(error, NpyError::NotNpy { .. }), "{error:?}");
}

/// The padding after `dict` that aligns the data to 64 bytes.
fn aligning(dict: &str) -> usize {
    (64 - (10 + dict.len() + 1) % 64) % 64
}

/// Found by the `npy_read` fuzz target: npyz's header parser took minutes
/// on a header with 70 nested `{`. Deep nesting is an error at once; the
/// headers numpy writes, structured dtypes included, are not affected.
#[test]
fn deeply_nested_headers_are_rejected_quickly() {
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': {}False, 'shape': (2, 3), }}",
        "{".repeat(70)
    );
    let start = std::time::Instant::now();
    let error = read_npy_bytes(&npy_v1(&dict, aligning(&dict), &[]), &path()).unwrap_err();
    assert!(
        matches!(&error, NpyError::NotNpy { reason, .. } if reason.contains("nests brackets")),
        "{error:?}"
    );
    assert!(start.elapsed().as_secs() < 1, "{:?}", start.elapsed());
    // The fuzzer's second find: brackets after an unclosed quote count
    // too. A structured dtype's header nests four deep (dict, list, tuple,
    // shape), which is allowed (and then unsupported as a dtype).
    let quoted = format!("{{'descr': '<f4', 'for\\'d)dscr': {}", "{".repeat(70));
    let error = read_npy_bytes(&npy_v1(&quoted, aligning(&quoted), &[]), &path()).unwrap_err();
    assert!(
        matches!(&error, NpyError::NotNpy { reason, .. } if reason.contains("nests brackets")),
        "{error:?}"
    );
    let record = "{'descr': [('a', '<f4', (2,))], 'fortran_order': False, 'shape': (1,), }";
    let error = read_npy_bytes(&npy_v1(record, aligning(record), &[0; 8]), &path()).unwrap_err();
    assert!(
        matches!(error, NpyError::UnsupportedDtype { .. }),
        "{error:?}"
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("absent.npy");
    let error = read_npy(&file).unwrap_err();
    assert!(
        matches!(&error, NpyError::Io(e) if e.path == file),
        "{error:?}"
    );
}
