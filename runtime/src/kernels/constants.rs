//! The constant data compiled kernels point at: weights in the layout
//! their kernels read, index tables, and the native kernels' descriptors.
//!
//! JIT code has each constant's address as an immediate, so the compiled
//! model keeps its [`Constants`] alive with the code. An ahead-of-time
//! bundle cannot know addresses: its code loads each one from a table the
//! bundle fills when it is opened, and its image saves the constants
//! ([`Constant`] is serde data) for the runtime to load. Inside
//! descriptors, addresses of other constants ([`Base::Const`]) are saved
//! as a slot and an offset ([`ConstMap`] finds them) and turned back into
//! addresses as the image is loaded.

#![allow(unsafe_code)] // Floats viewed as bytes; addresses of boxed data.

use super::affine::Affine;
use super::bilinear::Bilinear;
use super::cell::PackedCell;
use super::depthwise_blocked::DepthwiseBlocked;
use super::depthwise_rows::DepthwiseRows;
use super::direct_conv::DirectConv;
use super::gemv::Gemv;
use super::im2col::Im2Col;
use super::pool_rows::PoolRows;
use super::tasks::{GemmTask, LinearRows, PanelGemm};
use super::winograd::{WinogradInput, WinogradOutput};
use super::Base;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// One constant. Its address (what kernels are given) is that of the
/// floats for [`Constant::Floats`], of the descriptor otherwise.
#[derive(Serialize, Deserialize)]
pub enum Constant {
    /// Weights in the layout a kernel reads, or a table of indices stored
    /// as the bit patterns of `f32`s.
    Floats(#[serde(with = "float_bytes")] Vec<f32>),
    /// A table of element offsets.
    Offsets(Vec<i64>),
    Gemm(GemmTask),
    Panel(PanelGemm),
    LinearRows(LinearRows),
    Gemv(Gemv),
    Cell(PackedCell),
    DepthwiseRows(DepthwiseRows),
    DepthwiseBlocked(DepthwiseBlocked),
    DirectConv(DirectConv),
    PoolRows(PoolRows),
    Im2Col(Im2Col),
    WinogradInput(WinogradInput),
    WinogradOutput(WinogradOutput),
    Affine(Affine),
    Bilinear(Bilinear),
}

macro_rules! from_descriptor {
    ($($variant:ident($t:ty)),*) => {
        $(impl From<$t> for Constant {
            fn from(d: $t) -> Constant {
                Constant::$variant(d)
            }
        })*
    };
}

from_descriptor!(
    Gemm(GemmTask),
    Panel(PanelGemm),
    LinearRows(LinearRows),
    Gemv(Gemv),
    Cell(PackedCell),
    DepthwiseRows(DepthwiseRows),
    DepthwiseBlocked(DepthwiseBlocked),
    DirectConv(DirectConv),
    PoolRows(PoolRows),
    Im2Col(Im2Col),
    WinogradInput(WinogradInput),
    WinogradOutput(WinogradOutput),
    Affine(Affine),
    Bilinear(Bilinear)
);

/// The address and size in bytes of `r`.
fn span<T>(r: &T) -> (usize, usize) {
    (r as *const T as usize, std::mem::size_of::<T>())
}

impl Constant {
    /// Where the constant's kernels find it, and how many bytes from there
    /// are its own.
    pub fn span(&self) -> (usize, usize) {
        match self {
            Constant::Floats(v) => (v.as_ptr() as usize, 4 * v.len()),
            Constant::Offsets(v) => (v.as_ptr() as usize, 8 * v.len()),
            Constant::Gemm(d) => span(d),
            Constant::Panel(d) => span(d),
            Constant::LinearRows(d) => span(d),
            Constant::Gemv(d) => span(d),
            Constant::Cell(d) => span(d),
            Constant::DepthwiseRows(d) => span(d),
            Constant::DepthwiseBlocked(d) => span(d),
            Constant::DirectConv(d) => span(d),
            Constant::PoolRows(d) => span(d),
            Constant::Im2Col(d) => span(d),
            Constant::WinogradInput(d) => span(d),
            Constant::WinogradOutput(d) => span(d),
            Constant::Affine(d) => span(d),
            Constant::Bilinear(d) => span(d),
        }
    }

    /// The address kernels are given.
    pub fn address(&self) -> usize {
        self.span().0
    }

    /// Addresses of other constants this one holds (a GEMM's operands that
    /// are weights rather than arena buffers).
    pub fn references(&self) -> Vec<usize> {
        match self {
            Constant::Gemm(t) => [Some(t.b), Some(t.c), t.epilogue.residual]
                .into_iter()
                .flatten()
                .filter_map(|b| match b {
                    Base::Const(p) => Some(p),
                    Base::Arena(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Bytes of weights it holds (for reports and memory limits).
    pub fn bytes(&self) -> usize {
        match self {
            Constant::Floats(v) => 4 * v.len(),
            Constant::Offsets(v) => 8 * v.len(),
            Constant::Gemm(t) => t.packed.iter().map(|a| 4 * a.m() * a.k()).sum(),
            Constant::Panel(p) => p.bytes(),
            Constant::LinearRows(l) => l.bytes(),
            Constant::Cell(c) => c.bytes(),
            Constant::DirectConv(c) => c.bytes(),
            _ => 0,
        }
    }
}

/// A compiled model's constants, each boxed so that its address (baked
/// into code) survives the list growing.
#[derive(Default)]
pub struct Constants {
    #[allow(clippy::vec_box)]
    items: Vec<Box<Constant>>,
}

// SAFETY: the raw addresses inside constants (`Base::Const`) point into
// other constants or weights the compiled model keeps alive, and nothing
// mutates a constant after compilation.
unsafe impl Send for Constants {}
// SAFETY: as for `Send`: shared, constants are only read.
unsafe impl Sync for Constants {}

impl Constants {
    /// Keeps `c` and returns the address kernels use for it.
    pub fn add(&mut self, c: impl Into<Constant>) -> usize {
        let boxed = Box::new(c.into());
        let address = boxed.address();
        self.items.push(boxed);
        address
    }

    /// Takes over `other`'s constants (whose addresses do not change).
    pub fn merge(&mut self, other: Constants) {
        self.items.extend(other.items);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Constant> {
        self.items.iter().map(|b| &**b)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of weights the constants hold.
    pub fn bytes(&self) -> usize {
        self.iter().map(Constant::bytes).sum()
    }

    /// The constants, unboxed (for saving).
    pub fn into_items(self) -> Vec<Constant> {
        self.items.into_iter().map(|b| *b).collect()
    }

    /// Boxes loaded constants, keeping their addresses from now on.
    pub fn from_boxed(items: Vec<Box<Constant>>) -> Constants {
        Constants { items }
    }
}

/// Where each constant of a bundle lies: address ranges, each a slot of
/// the table a bundle's code loads addresses from.
#[derive(Debug, Default)]
pub struct ConstMap {
    /// `(start, end, slot)`, sorted by `start`.
    ranges: Vec<(usize, usize, u32)>,
}

impl ConstMap {
    /// A map of `spans` (address, bytes), slot `i` for span `i`.
    pub fn new(spans: impl IntoIterator<Item = (usize, usize)>) -> ConstMap {
        let mut ranges: Vec<(usize, usize, u32)> = spans
            .into_iter()
            .enumerate()
            .map(|(i, (start, bytes))| (start, start + bytes, i as u32))
            .collect();
        ranges.sort_unstable();
        ConstMap { ranges }
    }

    /// The slot holding `address` and the offset into it: the last range
    /// starting at or before it, if it reaches that far (a pointer one
    /// past a buffer's end, or to an empty one, counts as the buffer's).
    /// Constants are separate allocations, so ranges do not overlap.
    pub fn locate(&self, address: usize) -> Option<(u32, usize)> {
        let after = self.ranges.partition_point(|r| r.0 <= address);
        let &(start, end, slot) = self.ranges[..after].last()?;
        (address <= end).then_some((slot, address - start))
    }
}

/// A saved [`Base`]: constants by slot and offset.
#[derive(Serialize, Deserialize)]
enum SavedBase {
    Arena(usize),
    Const { slot: u32, offset: usize },
}

thread_local! {
    /// While an image is saved: where constants lie.
    static SAVING: RefCell<Option<std::sync::Arc<ConstMap>>> = const { RefCell::new(None) };
    /// While an image is loaded: each slot's address once loaded (0 until
    /// then).
    static LOADING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` (which serialises constants) with `map` locating the
/// addresses inside them.
pub fn saving<T>(map: std::sync::Arc<ConstMap>, f: impl FnOnce() -> T) -> T {
    SAVING.with(|s| *s.borrow_mut() = Some(map));
    let result = f();
    SAVING.with(|s| *s.borrow_mut() = None);
    result
}

/// Sets slot `slot`'s address for the constants loaded after it.
pub fn loaded(slot: u32, address: usize) {
    LOADING.with(|l| {
        let mut l = l.borrow_mut();
        let slot = slot as usize;
        if l.len() <= slot {
            l.resize(slot + 1, 0);
        }
        l[slot] = address;
    });
}

/// Forgets the loaded slots' addresses (after loading an image).
pub fn done_loading() {
    LOADING.with(|l| l.borrow_mut().clear());
}

impl Serialize for Base {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let saved = match *self {
            Base::Arena(o) => SavedBase::Arena(o),
            Base::Const(p) => {
                let found = SAVING.with(|m| m.borrow().as_ref().and_then(|m| m.locate(p)));
                let (slot, offset) = found.ok_or_else(|| {
                    S::Error::custom(format!(
                        "the address {p:#x} is not one of the model's constants"
                    ))
                })?;
                SavedBase::Const { slot, offset }
            }
        };
        saved.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Base {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Base, D::Error> {
        use serde::de::Error;
        match SavedBase::deserialize(d)? {
            SavedBase::Arena(o) => Ok(Base::Arena(o)),
            SavedBase::Const { slot, offset } => {
                let address = LOADING.with(|l| l.borrow().get(slot as usize).copied().unwrap_or(0));
                if address == 0 {
                    return Err(D::Error::custom(format!(
                        "a constant refers to slot {slot}, which is not loaded before it"
                    )));
                }
                Ok(Base::Const(address + offset))
            }
        }
    }
}

/// `f32`s saved as one byte string: copied in one go rather than float by
/// float.
pub mod float_bytes {
    /// `v`'s little-endian bytes: borrowed on a little-endian machine.
    pub fn as_bytes(v: &[f32]) -> std::borrow::Cow<'_, [u8]> {
        #[cfg(target_endian = "little")]
        {
            // SAFETY: `f32` has no padding and `u8` no alignment; the bytes
            // are borrowed while `v` is.
            std::borrow::Cow::Borrowed(unsafe {
                std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), 4 * v.len())
            })
        }
        #[cfg(not(target_endian = "little"))]
        {
            std::borrow::Cow::Owned(v.iter().flat_map(|f| f.to_le_bytes()).collect())
        }
    }

    /// Saves `v` as its little-endian bytes.
    pub fn serialize<S: serde::Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&as_bytes(v))
    }

    /// Loads what [`serialize`] saved.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let bytes = <&[u8] as serde::Deserialize>::deserialize(d)?;
        let mut v = vec![0.0; bytes.len() / 4];
        copy_into(bytes, &mut v);
        Ok(v)
    }

    /// Copies little-endian float `bytes` into the start of `dst`.
    pub fn copy_into(bytes: &[u8], dst: &mut [f32]) {
        for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
}

/// Large float arrays of a bundle's image (packed weights), kept apart
/// from the rest and aligned to 64 bytes, so that opening the bundle
/// borrows them where they lie in its read-only data instead of copying.
pub mod blob {
    use serde::{Deserialize, Serialize};
    use std::cell::{Cell, RefCell};

    /// Bytes between arrays' starts are a multiple of this.
    pub const ALIGN: usize = 64;

    /// How an array is saved: its place in the blob, or (outside a
    /// bundle's saving) its bytes.
    #[derive(Serialize, Deserialize)]
    enum Saved<'a> {
        Place { offset: u64, floats: u64 },
        Inline(#[serde(borrow)] &'a [u8]),
    }

    thread_local! {
        /// While a bundle is saved: the blob so far.
        static SAVING: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
        /// While a bundle is opened: its image's blob.
        static LOADING: Cell<Option<&'static [u8]>> = const { Cell::new(None) };
    }

    /// Runs `f` (which saves constants), collecting their arrays into a
    /// blob; returns `f`'s result and the blob.
    pub fn collect<T>(f: impl FnOnce() -> T) -> (T, Vec<u8>) {
        SAVING.with(|s| *s.borrow_mut() = Some(Vec::new()));
        let result = f();
        let blob = SAVING.with(|s| s.borrow_mut().take()).unwrap_or_default();
        (result, blob)
    }

    /// Runs `f` (which loads constants) with `blob` the image's blob.
    pub fn loading<T>(blob: &'static [u8], f: impl FnOnce() -> T) -> T {
        LOADING.with(|l| l.set(Some(blob)));
        let result = f();
        LOADING.with(|l| l.set(None));
        result
    }

    /// Saves `floats`: into the blob being collected, else inline.
    pub fn save<S: serde::Serializer>(floats: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let bytes = super::float_bytes::as_bytes(floats);
        let place = SAVING.with(|b| {
            let mut b = b.borrow_mut();
            let blob = b.as_mut()?;
            blob.resize(blob.len().next_multiple_of(ALIGN), 0);
            let offset = blob.len() as u64;
            blob.extend_from_slice(&bytes);
            Some(offset)
        });
        match place {
            Some(offset) => Saved::Place {
                offset,
                floats: floats.len() as u64,
            },
            None => Saved::Inline(&bytes),
        }
        .serialize(s)
    }

    /// What [`load`] found: floats in place in the image (64-byte aligned,
    /// static), or a copy.
    pub enum Loaded {
        InPlace(&'static [f32]),
        Copied(Vec<f32>),
    }

    /// Loads what [`save`] saved.
    pub fn load<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Loaded, D::Error> {
        use serde::de::Error;
        match Saved::deserialize(d)? {
            Saved::Inline(bytes) => {
                let mut v = vec![0.0; bytes.len() / 4];
                super::float_bytes::copy_into(bytes, &mut v);
                Ok(Loaded::Copied(v))
            }
            Saved::Place { offset, floats } => {
                let blob = LOADING
                    .with(Cell::get)
                    .ok_or_else(|| D::Error::custom("weights in a blob, but no blob is loaded"))?;
                let (offset, floats) = (offset as usize, floats as usize);
                let bytes = floats
                    .checked_mul(4)
                    .and_then(|n| blob.get(offset..offset.checked_add(n)?))
                    .ok_or_else(|| D::Error::custom("weights beyond the image's blob"))?;
                if bytes.as_ptr().align_offset(ALIGN) == 0 && cfg!(target_endian = "little") {
                    // SAFETY: the bytes are static, 64-byte aligned (so
                    // aligned for `f32`), `4 * floats` long, and any bits
                    // are a valid `f32`.
                    let v =
                        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), floats) };
                    Ok(Loaded::InPlace(v))
                } else {
                    let mut v = vec![0.0; floats];
                    super::float_bytes::copy_into(bytes, &mut v);
                    Ok(Loaded::Copied(v))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_found_inside_their_range_or_at_its_end() {
        let map = ConstMap::new([(1000, 40), (2000, 0), (1040, 8)]);
        assert_eq!(map.locate(1000), Some((0, 0)));
        assert_eq!(map.locate(1039), Some((0, 39)));
        // 1040 starts slot 2 and ends slot 0: the range containing it wins.
        assert_eq!(map.locate(1040), Some((2, 0)));
        assert_eq!(map.locate(1048), Some((2, 8)));
        assert_eq!(map.locate(2000), Some((1, 0)));
        assert_eq!(map.locate(999), None);
        assert_eq!(map.locate(1049), None);
        assert_eq!(map.locate(3000), None);
    }
}
