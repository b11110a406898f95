//! The ONNX model format: its protobuf types ([`proto`], the whole schema,
//! generated from `proto/onnx.proto`), tensor and attribute access on parsed
//! models, and a small builder for the graphs Fovea generates.

/// The types of `proto/onnx.proto`. The Rust code is generated ahead of time
/// (and checked against the schema by this crate's tests) so that users of
/// the engine need no protobuf compiler at build time.
#[allow(clippy::doc_lazy_continuation, clippy::enum_variant_names)]
pub mod proto {
    include!("generated/onnx.rs");
}

use prost::Message;
use proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto, type_proto,
};

/// What is wrong with a model file or tensor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Model(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Opset of every generated graph.
pub const OPSET: i64 = 17;

pub fn decode_model(bytes: &[u8]) -> Result<ModelProto> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| Error::Model(format!("not an ONNX model file: {e}")))?;
    if model.graph.as_ref().is_none_or(|g| g.node.is_empty()) {
        return Err(Error::Model(
            "not an ONNX model file: it has no graph".into(),
        ));
    }
    Ok(model)
}

/// A float tensor's dims and values (float, double or float16 storage).
pub fn tensor_f32(t: &TensorProto) -> Result<(Vec<i64>, Vec<f32>)> {
    if t.data_location == 1 {
        return Err(Error::Model(format!(
            "tensor {} keeps its data in an external file; save the model with the weights inside",
            t.name
        )));
    }
    let n: i64 = t.dims.iter().product();
    let values: Vec<f32> = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Ok(DataType::Float) => t.float_data.clone(),
        Ok(DataType::Double) if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Ok(DataType::Double) => t.double_data.iter().map(|&v| v as f32).collect(),
        Ok(DataType::Float16) if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Ok(DataType::Float16) => t
            .int32_data
            .iter()
            .map(|&v| half::f16::from_bits(v as u16).to_f32())
            .collect(),
        _ => {
            return Err(Error::Model(format!(
                "tensor {} has element type {}, expected a float type",
                t.name, t.data_type
            )));
        }
    };
    if values.len() as i64 != n {
        return Err(Error::Model(format!(
            "tensor {} declares {n} values but holds {}",
            t.name,
            values.len()
        )));
    }
    Ok((t.dims.clone(), values))
}

/// An int64 tensor's values (raw or typed storage); None for another type
/// or a count that does not match its dims.
pub fn tensor_i64(t: &TensorProto) -> Option<Vec<i64>> {
    if DataType::try_from(t.data_type) != Ok(DataType::Int64) {
        return None;
    }
    let values: Vec<i64> = if t.raw_data.is_empty() {
        t.int64_data.clone()
    } else {
        t.raw_data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()
    };
    (values.len() as i64 == t.dims.iter().product::<i64>()).then_some(values)
}

pub fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

pub fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}

pub fn attr_str(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// A dimension of a generated graph's input or output.
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// A typed graph input or output; empty `dims` leaves the shape unknown.
pub fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: (!dims.is_empty()).then(|| TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| tensor_shape_proto::Dimension {
                            value: Some(match d {
                                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                                Dim::Named(n) => {
                                    tensor_shape_proto::dimension::Value::DimParam((*n).into())
                                }
                            }),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    }
}

pub fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    let mut raw = Vec::with_capacity(values.len() * 4);
    for v in values {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    TensorProto {
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        name: name.into(),
        raw_data: raw.into(),
        ..Default::default()
    }
}

pub fn i64_tensor(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: DataType::Int64 as i32,
        name: name.into(),
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// An attribute value for [`GraphBuilder::node`].
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(&'static str),
}

/// A node attribute.
pub fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut p = AttributeProto {
        name: name.into(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            p.r#type = AttributeType::Int as i32;
            p.i = i;
        }
        Attr::Ints(v) => {
            p.r#type = AttributeType::Ints as i32;
            p.ints = v;
        }
        Attr::Float(f) => {
            p.r#type = AttributeType::Float as i32;
            p.f = f;
        }
        Attr::Str(s) => {
            p.r#type = AttributeType::String as i32;
            p.s = s.as_bytes().to_vec();
        }
    }
    p
}

/// Builds the ONNX graphs the engine generates (recording, backward, ...).
#[derive(Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    counter: usize,
    prefix: String,
    up_scales: Option<(String, String)>,
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        GraphBuilder {
            graph: GraphProto {
                name: name.into(),
                ..Default::default()
            },
            counter: 0,
            prefix: String::new(),
            up_scales: None,
        }
    }

    /// Prefixes generated tensor and node names (for nodes added to a graph
    /// that has names of its own).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.prefix = prefix.into();
        self
    }

    pub fn input(&mut self, name: &str, elem: DataType, dims: &[Dim]) -> String {
        self.graph.input.push(value_info(name, elem, dims));
        name.into()
    }

    pub fn output(&mut self, name: &str, elem: DataType, dims: &[Dim]) {
        self.graph.output.push(value_info(name, elem, dims));
    }

    pub fn initializer(&mut self, tensor: TensorProto) -> String {
        let name = tensor.name.clone();
        self.graph.initializer.push(tensor);
        name
    }

    /// Adds a node with a fresh output name, returning it.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh_name(&op.to_lowercase());
        self.node_named(op, inputs, &out, attrs);
        out
    }

    /// A tensor name no other generated tensor has.
    pub fn fresh_name(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{}{stem}_{}", self.prefix, self.counter)
    }

    /// Adds a node whose output has the given name.
    pub fn node_named(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<(&str, Attr)>,
    ) {
        self.node_outputs(op, inputs, &[output], attrs);
    }

    /// Adds a node with several named outputs.
    pub fn node_outputs(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&str, Attr)>,
    ) {
        self.counter += 1;
        let attribute = attrs
            .into_iter()
            .map(|(name, a)| attribute(name, a))
            .collect();
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_string()).collect(),
            output: outputs.iter().map(|s| (*s).to_string()).collect(),
            name: format!("{}n{}", self.prefix, self.counter),
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
    }

    /// Adds a node as it is (copied from another graph, names already final).
    pub fn push_node(&mut self, node: NodeProto) {
        self.graph.node.push(node);
    }

    /// Nearest-neighbour upsampling by 2 on both spatial axes (every cell
    /// copied to its 2x2 block): unpooling before the switches are applied.
    pub fn upsample2(&mut self, x: &str) -> String {
        let (roi, scales) = match &self.up_scales {
            Some(s) => s.clone(),
            None => {
                // An empty roi rather than a missing one: opset 11 requires it.
                let roi = format!("{}up_roi", self.prefix);
                let roi = self.initializer(f32_tensor(&roi, &[0], &[]));
                let name = format!("{}up_scales", self.prefix);
                let s = self.initializer(f32_tensor(&name, &[4], &[1.0, 1.0, 2.0, 2.0]));
                self.up_scales = Some((roi.clone(), s.clone()));
                (roi, s)
            }
        };
        self.node(
            "Resize",
            &[x, &roi, &scales],
            vec![
                ("mode", Attr::Str("nearest")),
                ("coordinate_transformation_mode", Attr::Str("asymmetric")),
                ("nearest_mode", Attr::Str("floor")),
            ],
        )
    }

    /// Casts to float (0/1 masks fed as bytes or booleans).
    pub fn to_float(&mut self, x: &str) -> String {
        self.node(
            "Cast",
            &[x],
            vec![("to", Attr::Int(DataType::Float as i64))],
        )
    }

    pub fn finish(self) -> ModelProto {
        self.finish_with_opset(OPSET)
    }

    /// The model at another default-domain opset (for graphs that copy nodes
    /// of a model file, whose meaning depends on that file's opset).
    pub fn finish_with_opset(self, version: i64) -> ModelProto {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version,
            }],
            producer_name: "fovea".into(),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

pub fn encode(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}
