//! Builders of the ONNX graphs the engine runs: pure functions from the
//! model (and a layer) to a [`ModelProto`](fovea_onnx::proto::ModelProto),
//! with no session or recording in sight.

pub mod activation;
pub mod ascent;
pub mod head;
pub mod objective;
pub mod record;
pub mod transposed;

/// The kinds of generated graph kept per layer in the session cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GraphKind {
    /// Trained weights, rectified (deconvnet, masked) or not (linear filter).
    Trained {
        linear: bool,
    },
    /// Random weights from a seed, rectified.
    Random(u64),
    Affine,
    /// The affine map's pre-activations at every layer, for linear regions.
    Region,
    /// Forward + gradient over the FOV window, for maximization.
    Ascent,
    /// Forward over the whole image through the head, back from a dense
    /// unit by a rule (reconstructions and attributions of dense neurons).
    Head(head::HeadBackward),
    /// A feature-visualisation objective over conv layers (keyed by the
    /// hash of its layout).
    Objective(u64),
}

impl GraphKind {
    /// Whether requests can ask for new graphs of this kind without bound
    /// (a seed, an objective's layout), so only a few are kept.
    pub fn per_request(self) -> bool {
        match self {
            GraphKind::Random(_) | GraphKind::Objective(_) => true,
            GraphKind::Head(h) => h.random.is_some(),
            _ => false,
        }
    }

    /// The file name of a layer's graph of this kind (for `--dump-graphs`).
    pub fn file_name(self, layer: usize) -> String {
        match self {
            GraphKind::Trained { linear: false } => format!("backward_l{layer}"),
            GraphKind::Trained { linear: true } => format!("backward_l{layer}_linear"),
            GraphKind::Random(seed) => format!("backward_l{layer}_random{seed}"),
            GraphKind::Affine => format!("affine_l{layer}"),
            GraphKind::Region => format!("region_l{layer}"),
            GraphKind::Ascent => format!("ascent_l{layer}"),
            GraphKind::Head(h) => {
                let rule = format!("{:?}", h.rule).to_lowercase();
                let random = h.random.map(|s| format!("_random{s}")).unwrap_or_default();
                let cam = h.cam_layer.map(|k| format!("_cam{k}")).unwrap_or_default();
                format!("head_l{layer}_{rule}{random}{cam}")
            }
            GraphKind::Objective(key) => format!("objective_l{layer}_{key:016x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphs::ascent::Rule;
    use crate::graphs::head::HeadBackward;

    #[test]
    fn only_graphs_a_request_can_vary_without_bound_are_evicted() {
        let head = HeadBackward::gradient(0);
        assert!(GraphKind::Random(3).per_request());
        assert!(GraphKind::Objective(7).per_request());
        assert!(
            GraphKind::Head(HeadBackward {
                rule: Rule::Guided,
                random: Some(1),
                ..head
            })
            .per_request()
        );
        assert!(!GraphKind::Head(head).per_request());
        assert!(!GraphKind::Trained { linear: true }.per_request());
        assert!(!GraphKind::Ascent.per_request());
    }
}
