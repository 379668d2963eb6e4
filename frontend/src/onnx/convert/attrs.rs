//! A node's attributes, read by name with ONNX's defaults; attributes that
//! no converter read are reported, so nothing is silently ignored.

use crate::onnx::constant::Constant;
use crate::onnx::model::{tensor_to_constant, DataDir};
use crate::onnx::proto::{attribute_proto::AttributeType, AttributeProto};

/// The attributes of one node.
pub struct Attrs<'n> {
    attrs: &'n [AttributeProto],
    read: Vec<&'n str>,
}

impl<'n> Attrs<'n> {
    pub fn new(attrs: &'n [AttributeProto]) -> Attrs<'n> {
        Attrs {
            attrs,
            read: Vec::new(),
        }
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
                Ok(Some(a.ints.clone()))
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
