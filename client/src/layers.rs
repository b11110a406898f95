//! A layer's geometry and activation in a few characters, as `fovea model`
//! lists them and the TUI titles the selected layer.

use fovea_proto::v1 as pb;

/// The layers read (when not the one before), pool, convolution, residual
/// sum and activation of a conv layer, joined by " · " (`2x2/2 · 3x3 p1 ·
/// relu`, `3x3 p1 · + in 2 · relu`, `reads 2+4 · 1x1 · relu`); empty for
/// the input and dense layers.
pub fn layer_text(l: &pb::Layer) -> String {
    [
        reads_text(l),
        l.pool.as_ref().map(pool_text),
        l.conv.as_ref().map(|_| kernel_text(l)),
        l.residual.as_ref().map(residual_text),
        l.activation.as_ref().map(activation_text),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" · ")
}

/// The layers a conv layer reads when it is not just the one before it
/// (an Inception block's branches and the layer joining them): "reads 1",
/// "reads 2+4+6+7" (their outputs concatenated in this order).
pub fn reads_text(l: &pb::Layer) -> Option<String> {
    match l.sources.as_slice() {
        [] => None,
        [s] if *s + 1 == l.number => None,
        sources => Some(format!(
            "reads {}",
            sources
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("+")
        )),
    }
}

/// What a conv layer computes before its activation: its convolution's
/// geometry ([`conv_text`]), or "batch norm" for a batch norm on its own.
pub fn kernel_text(l: &pb::Layer) -> String {
    match (&l.conv, l.norm_only) {
        (_, true) => "batch norm".into(),
        (Some(c), false) => conv_text(c),
        (None, false) => String::new(),
    }
}

/// A convolution's geometry in a few characters: `7x7/2 p3`, `3x3 d2 g32
/// p2`, `3x3/2 p0,0,1,1` (stride, dilation and groups only when not 1;
/// pads as one number when equal on every side).
pub fn conv_text(c: &pb::ConvGeometry) -> String {
    let mut s = window_text(c.kernel, c.stride);
    if c.dilation > 1 {
        s += &format!(" d{}", c.dilation);
    }
    if c.groups > 1 {
        s += &format!(" g{}", c.groups);
    }
    s + &pads_text(&c.pads)
}

/// An activation as "relu", "leaky 0.1", "relu6", "clip 0..4" or "linear".
pub fn activation_text(a: &pb::ActivationFunction) -> String {
    use pb::activation_function::Kind;
    match Kind::try_from(a.kind) {
        Ok(Kind::Relu) => "relu".into(),
        Ok(Kind::LeakyRelu) => format!("leaky {}", a.slope),
        Ok(Kind::ClippedRelu) if a.ceiling == 6.0 => "relu6".into(),
        Ok(Kind::ClippedRelu) => format!("clip 0..{}", a.ceiling),
        Ok(Kind::Linear) => "linear".into(),
        _ => "?".into(),
    }
}

/// A pool as "3x3/2 p1 ceil" or "2x2/2 avg"; no padding is not written.
/// A residual sum: "+ in 2" (the input of layer 2 as it is) or
/// "+ 1x1/2 p0 of in 4" (through a projection).
pub fn residual_text(r: &pb::Residual) -> String {
    match &r.projection {
        Some(c) => format!("+ {} of in {}", conv_text(c), r.from_layer),
        None => format!("+ in {}", r.from_layer),
    }
}

pub fn pool_text(p: &pb::PoolGeometry) -> String {
    let mut s = window_text(p.kernel, p.stride);
    if p.pads.iter().any(|&v| v > 0) {
        s += &pads_text(&p.pads);
    }
    if p.ceil_mode {
        s += " ceil";
    }
    if p.average {
        s += " avg";
    }
    s
}

/// "5x5/2" (a stride of 1 not written).
fn window_text(kernel: u32, stride: u32) -> String {
    let mut s = format!("{kernel}x{kernel}");
    if stride > 1 {
        s += &format!("/{stride}");
    }
    s
}

/// " p1" when every side has the same padding, else " p0,0,1,1".
fn pads_text(pads: &[u32]) -> String {
    match pads {
        [p, rest @ ..] if rest.iter().all(|q| q == p) => format!(" p{p}"),
        pads => {
            let all: Vec<String> = pads.iter().map(u32::to_string).collect();
            format!(" p{}", all.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_geometry_reads_in_a_few_characters() {
        let conv = |kernel, stride, dilation, groups, pads: [u32; 4]| pb::ConvGeometry {
            kernel,
            stride,
            dilation,
            groups,
            pads: pads.to_vec(),
        };
        assert_eq!(conv_text(&conv(3, 1, 1, 1, [1; 4])), "3x3 p1");
        assert_eq!(conv_text(&conv(7, 2, 1, 1, [3; 4])), "7x7/2 p3");
        assert_eq!(conv_text(&conv(3, 1, 2, 32, [2; 4])), "3x3 d2 g32 p2");
        assert_eq!(conv_text(&conv(3, 2, 1, 1, [0, 0, 1, 1])), "3x3/2 p0,0,1,1");
    }

    #[test]
    fn activations_read_in_a_few_characters() {
        use pb::activation_function::Kind;
        let a = |kind: Kind, slope, ceiling| pb::ActivationFunction {
            kind: kind as i32,
            slope,
            ceiling,
        };
        assert_eq!(activation_text(&a(Kind::Relu, 0.0, 0.0)), "relu");
        assert_eq!(activation_text(&a(Kind::LeakyRelu, 0.1, 0.0)), "leaky 0.1");
        assert_eq!(activation_text(&a(Kind::ClippedRelu, 0.0, 6.0)), "relu6");
        assert_eq!(
            activation_text(&a(Kind::ClippedRelu, 0.0, 4.5)),
            "clip 0..4.5"
        );
        assert_eq!(activation_text(&a(Kind::Linear, 0.0, 0.0)), "linear");
    }

    #[test]
    fn pool_geometry_reads_in_a_few_characters() {
        let pool = |kernel, stride, pads: [u32; 4], ceil_mode| pb::PoolGeometry {
            kernel,
            stride,
            pads: pads.to_vec(),
            ceil_mode,
            average: false,
        };
        assert_eq!(pool_text(&pool(2, 2, [0; 4], false)), "2x2/2");
        assert_eq!(pool_text(&pool(3, 2, [1; 4], false)), "3x3/2 p1");
        assert_eq!(pool_text(&pool(3, 2, [0; 4], true)), "3x3/2 ceil");
        assert_eq!(
            pool_text(&pool(2, 2, [0, 0, 1, 1], true)),
            "2x2/2 p0,0,1,1 ceil"
        );
        let average = pb::PoolGeometry {
            average: true,
            ..pool(3, 1, [1; 4], false)
        };
        assert_eq!(pool_text(&average), "3x3 p1 avg");
    }

    #[test]
    fn a_layer_reads_as_pool_conv_and_activation() {
        let layer = pb::Layer {
            conv: Some(pb::ConvGeometry {
                kernel: 3,
                stride: 1,
                dilation: 1,
                groups: 1,
                pads: vec![1; 4],
            }),
            pool: Some(pb::PoolGeometry {
                kernel: 2,
                stride: 2,
                pads: vec![0; 4],
                ..Default::default()
            }),
            activation: Some(pb::ActivationFunction {
                kind: pb::activation_function::Kind::Relu as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(layer_text(&layer), "2x2/2 · 3x3 p1 · relu");
        assert_eq!(layer_text(&pb::Layer::default()), "");
        let projection = pb::ConvGeometry {
            kernel: 1,
            stride: 2,
            pads: vec![0; 4],
            ..layer.conv.clone().unwrap_or_default()
        };
        let summed = |projection| pb::Layer {
            pool: None,
            residual: Some(pb::Residual {
                from_layer: 4,
                projection,
                ..Default::default()
            }),
            ..layer.clone()
        };
        assert_eq!(layer_text(&summed(None)), "3x3 p1 · + in 4 · relu");
        assert_eq!(
            layer_text(&summed(Some(projection))),
            "3x3 p1 · + 1x1/2 p0 of in 4 · relu"
        );
    }
}
