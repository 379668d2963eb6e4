//! A node's attributes, read by name with ONNX's defaults; attributes that
//! no converter read are reported, so nothing is silently ignored.

use crate::onnx::constant::Constant;
use crate::onnx::model::{tensor_to_constant, DataDir};
use crate::onnx::proto::{attribute_proto::AttributeType, AttributeProto};

/// The attributes of one node.
pub struct Attrs<'n> {
    attrs: &'n [AttributeProto],
    read: Vec<&'n str>,
    /// Read the per-spatial-dim lists of a 1-D window op as those of the
    /// equivalent 2-D op over `[N, C, 1, L]`.
    lift_1d: bool,
}

impl<'n> Attrs<'n> {
    pub fn new(attrs: &'n [AttributeProto]) -> Attrs<'n> {
        Attrs {
            attrs,
            read: Vec::new(),
            lift_1d: false,
        }
    }

    /// From now on, lists of one value per spatial dim gain a leading unit
    /// dim: `kernel_shape=[k]` reads as `[1, k]`, `pads=[b, e]` as
    /// `[0, b, 0, e]`, `output_padding=[p]` as `[0, p]`.
    pub fn lift_1d(&mut self) {
        self.lift_1d = true;
    }

    fn get(&mut self, name: &str) -> Option<&'n AttributeProto> {
        let a = self.attrs.iter().find(|a| a.name() == name)?;
        self.read.push(a.name());
        Some(a)
    }

    /// Marks an attribute as handled without reading it (training-only
    /// attributes such as BatchNormalization's `momentum`).
    pub fn ignore(&mut self, name: &str) {
        let _ = self.get(name);
    }

    /// True if the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.attrs.iter().any(|a| a.name() == name)
    }

    pub fn int(&mut self, name: &str, default: i64) -> Result<i64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(a) if a.r#type() == AttributeType::Int || a.i.is_some() => Ok(a.i()),
            Some(_) => Err(format!("attribute `{name}` must be an int")),
        }
    }

    /// An int attribute that has no default (`None` when absent).
    pub fn optional_int(&mut self, name: &str) -> Result<Option<i64>, String> {
        if self.has(name) {
            self.int(name, 0).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A float attribute that has no default (`None` when absent).
    pub fn optional_float(&mut self, name: &str) -> Result<Option<f32>, String> {
        if self.has(name) {
            self.float(name, 0.0).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn float(&mut self, name: &str, default: f32) -> Result<f32, String> {
        match self.get(name) {
            None => Ok(default),
            Some(a) if a.f().is_nan() => Err(format!("attribute `{name}` is NaN")),
            Some(a) if a.r#type() == AttributeType::Float || a.f.is_some() => Ok(a.f()),
            Some(_) => Err(format!("attribute `{name}` must be a float")),
        }
    }

    pub fn ints(&mut self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if matches!(a.r#type(), AttributeType::Ints | AttributeType::Undefined) => {
                let mut v = a.ints.clone();
                if self.lift_1d {
                    match (name, v.len()) {
                        ("pads", 2) => v = vec![0, v[0], 0, v[1]],
                        ("kernel_shape" | "strides" | "dilations", 1) => v.insert(0, 1),
                        ("output_padding", 1) => v.insert(0, 0),
                        ("output_shape", n) if n >= 1 => v.insert(n - 1, 1),
                        _ => {}
                    }
                }
                Ok(Some(v))
            }
            Some(_) => Err(format!("attribute `{name}` must be a list of ints")),
        }
    }

    pub fn floats(&mut self, name: &str) -> Result<Option<Vec<f32>>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if matches!(a.r#type(), AttributeType::Floats | AttributeType::Undefined) => {
                Ok(Some(a.floats.clone()))
            }
            Some(_) => Err(format!("attribute `{name}` must be a list of floats")),
        }
    }

    pub fn string(&mut self, name: &str, default: &str) -> Result<String, String> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(a) => Ok(String::from_utf8_lossy(a.s()).into_owned()),
        }
    }

    pub fn strings(&mut self, name: &str) -> Result<Option<Vec<String>>, String> {
        Ok(self.get(name).map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        }))
    }

    pub fn tensor(&mut self, name: &str, data_dir: &DataDir) -> Result<Option<Constant>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => match &a.t {
                Some(t) => tensor_to_constant(t, data_dir).map(Some),
                None => Err(format!("attribute `{name}` must be a tensor")),
            },
        }
    }

    /// The attributes present that no one read.
    pub fn unread(&self) -> Vec<&'n str> {
        self.attrs
            .iter()
            .map(AttributeProto::name)
            .filter(|n| !self.read.contains(n))
            .collect()
    }
}
