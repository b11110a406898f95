//! A conv layer's activation in generated graphs: its value and slope at a
//! pre-activation, the deconvnet's rectification of a backward signal, and
//! the slope and constant of recorded gate states.

use crate::model::network::Activation;
use fovea_onnx::proto::tensor_proto::DataType;
use fovea_onnx::{Attr, GraphBuilder, f32_tensor};

fn scalar(g: &mut GraphBuilder, value: f32) -> String {
    let name = g.fresh_name("scalar");
    g.initializer(f32_tensor(&name, &[], &[value]))
}

impl Activation {
    /// The activation of pre-activation `z` (Min and Max rather than Clip,
    /// whose bounds are inputs or attributes depending on the opset of the
    /// file whose head a graph copies).
    pub(crate) fn node(self, g: &mut GraphBuilder, z: &str) -> String {
        match self {
            Activation::Relu => g.node("Relu", &[z], vec![]),
            Activation::Leaky(alpha) => {
                g.node("LeakyRelu", &[z], vec![("alpha", Attr::Float(alpha))])
            }
            Activation::Clip(c) => {
                let r = g.node("Relu", &[z], vec![]);
                let cap = scalar(g, c);
                g.node("Min", &[&r, &cap], vec![])
            }
            Activation::Linear => z.to_string(),
        }
    }

    /// The slope at pre-activation `z` (0 at a ReLU's kink and a clipped
    /// unit's ceiling, the leaky slope at 0).
    pub(crate) fn slope(self, g: &mut GraphBuilder, z: &str) -> String {
        let zero = scalar(g, 0.0);
        if self == Activation::Linear {
            // Ones shaped like `z`.
            let none = g.node("Mul", &[z, &zero], vec![]);
            let one = scalar(g, 1.0);
            return g.node("Add", &[&none, &one], vec![]);
        }
        let pos = g.node("Greater", &[z, &zero], vec![]);
        match self {
            Activation::Relu => g.to_float(&pos),
            Activation::Leaky(alpha) => {
                let (one, alpha) = (scalar(g, 1.0), scalar(g, alpha));
                g.node("Where", &[&pos, &one, &alpha], vec![])
            }
            Activation::Clip(c) => {
                let cap = scalar(g, c);
                let below = g.node("Less", &[z, &cap], vec![]);
                let on = g.node("And", &[&pos, &below], vec![]);
                g.to_float(&on)
            }
            Activation::Linear => pos,
        }
    }

    /// A backward signal rectified as the deconvnet rectifies it: the
    /// activation's slopes chosen by the signal's sign rather than the
    /// pre-activation's (a ReLU for ReLUs and clipped ReLUs, whose ceiling
    /// has no meaning at the signal's scale; nothing for a linear layer).
    pub(crate) fn rectify(self, g: &mut GraphBuilder, signal: &str) -> String {
        match self {
            Activation::Leaky(alpha) => {
                g.node("LeakyRelu", &[signal], vec![("alpha", Attr::Float(alpha))])
            }
            Activation::Relu | Activation::Clip(_) => g.node("Relu", &[signal], vec![]),
            Activation::Linear => signal.to_string(),
        }
    }

    /// The slope of each unit of `gate`, uint8 gate states.
    pub(crate) fn gate_slope(self, g: &mut GraphBuilder, gate: &str) -> String {
        match self {
            // States 0 and 1 only: the state is the slope.
            Activation::Relu => g.to_float(gate),
            _ => lookup(g, gate, self.slopes()),
        }
    }

    /// The constant each unit of `gate` adds, when the activation has one.
    pub(crate) fn gate_offset(self, g: &mut GraphBuilder, gate: &str) -> Option<String> {
        let offsets = self.offsets();
        (offsets != [0.0; 3]).then(|| lookup(g, gate, offsets))
    }
}

/// `table[state]` for every unit of uint8 `states`.
fn lookup(g: &mut GraphBuilder, states: &str, table: [f32; 3]) -> String {
    let name = g.fresh_name("state_table");
    let table = g.initializer(f32_tensor(&name, &[3], &table));
    let index = g.node(
        "Cast",
        &[states],
        vec![("to", Attr::Int(DataType::Int32 as i64))],
    );
    g.node("Gather", &[&table, &index], vec![])
}
