//! `fovea model`: the layer table, where the network runs and where its
//! weights came from.

use super::Context;
use fovea_client::v1 as pb;
use serde::Serialize;

#[derive(Serialize)]
struct View<'a> {
    name: &'a str,
    execution_provider: &'a str,
    onnxruntime_version: &'a str,
    runtime: Option<Runtime<'a>>,
    num_classes: u32,
    provenance: Provenance<'a>,
    preprocessing: Preprocessing<'a>,
    layers: Vec<Layer<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    probe_stop: &'a str,
}

#[derive(Serialize)]
struct Runtime<'a> {
    provider: &'a str,
    device: &'a str,
    driver_version: &'a str,
    cpu_reason: &'a str,
    onnxruntime_library: &'a str,
    cuda_libraries: &'a str,
    cudnn_version: &'a str,
}

#[derive(Serialize)]
struct Provenance<'a> {
    source: &'a str,
    origin: &'a str,
    path: &'a str,
    sha256: &'a str,
    size_bytes: u64,
}

#[derive(Serialize)]
struct Preprocessing<'a> {
    profile: &'a str,
    input_size: u32,
    layout: &'a str,
    channel_order: &'a str,
    scale: f32,
    mean: &'a [f32],
    std: &'a [f32],
}

#[derive(Serialize)]
struct Layer<'a> {
    number: u32,
    name: &'a str,
    kind: &'static str,
    channels: u32,
    height: u32,
    width: u32,
    pooled: bool,
    fov: u32,
    stride: u32,
    #[serde(skip_serializing_if = "str::is_empty")]
    folded_batch_norm: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    conv: Option<Conv<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<Pool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    activation: Option<Activation>,
}

#[derive(Serialize)]
struct Activation {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    slope: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ceiling: Option<f32>,
}

impl Activation {
    fn of(a: &pb::ActivationFunction) -> Activation {
        use pb::activation_function::Kind;
        let kind = Kind::try_from(a.kind).unwrap_or(Kind::Unspecified);
        Activation {
            kind: kind.as_str_name(),
            slope: (kind == Kind::LeakyRelu).then_some(a.slope),
            ceiling: (kind == Kind::ClippedRelu).then_some(a.ceiling),
        }
    }
}

#[derive(Serialize)]
struct Pool<'a> {
    kernel: u32,
    stride: u32,
    pads: &'a [u32],
    ceil_mode: bool,
    average: bool,
}

#[derive(Serialize)]
struct Conv<'a> {
    kernel: u32,
    stride: u32,
    dilation: u32,
    groups: u32,
    pads: &'a [u32],
}

impl<'a> View<'a> {
    fn of(m: &'a pb::ModelInfo, prov: &'a pb::Provenance, pre: &'a pb::Preprocessing) -> Self {
        View {
            name: &m.name,
            execution_provider: &m.execution_provider,
            onnxruntime_version: &m.onnxruntime_version,
            runtime: m.runtime.as_ref().map(|r| Runtime {
                provider: &r.provider,
                device: &r.device,
                driver_version: &r.driver_version,
                cpu_reason: &r.cpu_reason,
                onnxruntime_library: &r.onnxruntime_library,
                cuda_libraries: &r.cuda_libraries,
                cudnn_version: &r.cudnn_version,
            }),
            num_classes: m.num_classes,
            provenance: Provenance {
                source: &prov.source,
                origin: &prov.origin,
                path: &prov.path,
                sha256: &prov.sha256,
                size_bytes: prov.size_bytes,
            },
            preprocessing: Preprocessing {
                profile: &pre.profile,
                input_size: pre.input_size,
                layout: &pre.layout,
                channel_order: &pre.channel_order,
                scale: pre.scale,
                mean: &pre.mean,
                std: &pre.std,
            },
            layers: m
                .layers
                .iter()
                .map(|l| Layer {
                    number: l.number,
                    name: &l.name,
                    kind: pb::LayerKind::try_from(l.kind).map_or("?", |k| k.as_str_name()),
                    channels: l.channels,
                    height: l.height,
                    width: l.width,
                    pooled: l.pooled,
                    fov: l.fov,
                    stride: l.stride,
                    folded_batch_norm: &l.folded_batch_norm,
                    conv: l.conv.as_ref().map(|c| Conv {
                        kernel: c.kernel,
                        stride: c.stride,
                        dilation: c.dilation,
                        groups: c.groups,
                        pads: &c.pads,
                    }),
                    pool: l.pool.as_ref().map(|p| Pool {
                        kernel: p.kernel,
                        stride: p.stride,
                        pads: &p.pads,
                        ceil_mode: p.ceil_mode,
                        average: p.average,
                    }),
                    activation: l.activation.as_ref().map(Activation::of),
                })
                .collect(),
            probe_stop: &m.probe_stop,
        }
    }
}

pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    let m = ctx.client.model().await?;
    let prov = m.provenance.clone().unwrap_or_default();
    let pre = m.preprocessing.clone().unwrap_or_default();
    ctx.print(&View::of(&m, &prov, &pre), || print_text(&m, &prov, &pre));
    Ok(())
}

fn print_text(m: &pb::ModelInfo, prov: &pb::Provenance, pre: &pb::Preprocessing) {
    println!(
        "{} on {} (ONNX Runtime {})",
        m.name,
        fovea_client::runtime_summary(m),
        m.onnxruntime_version
    );
    if let Some(r) = m.runtime.as_ref().filter(|r| r.provider == "cuda") {
        println!(
            "cuda:    driver {}, cuDNN {}, libraries: {}",
            r.driver_version, r.cudnn_version, r.cuda_libraries
        );
    }
    println!("weights: {} ({}), {}", prov.origin, prov.source, prov.path);
    println!("sha256:  {}", prov.sha256);
    println!(
        "input:   {}x{} {}, {} order, value = (pixel * {} - mean {:?}) / std {:?} [{}]",
        pre.input_size,
        pre.input_size,
        pre.layout,
        pre.channel_order,
        pre.scale,
        pre.mean,
        pre.std,
        pre.profile
    );
    println!(
        "{:>3}  {:<8} {:>16} {:>6} {:>6}  {:<13}  {:<18} activation",
        "#", "name", "C x H x W", "FOV", "stride", "pool", "conv"
    );
    for l in &m.layers {
        let row = format!(
            "{:>3}  {:<8} {:>16} {:>6} {:>6}  {:<13}  {:<18} {}",
            l.number,
            l.name,
            format!("{}x{}x{}", l.channels, l.height, l.width),
            if l.fov > 0 {
                l.fov.to_string()
            } else {
                "all".into()
            },
            if l.stride > 0 {
                l.stride.to_string()
            } else {
                "-".into()
            },
            l.pool.as_ref().map(pool_text).unwrap_or_default(),
            l.conv.as_ref().map(conv_text).unwrap_or_default(),
            l.activation
                .as_ref()
                .map(activation_text)
                .unwrap_or_default()
        );
        println!("{}", row.trim_end());
    }
    let folded = m
        .layers
        .iter()
        .filter(|l| !l.folded_batch_norm.is_empty())
        .count();
    if folded > 0 {
        let layers = if folded == 1 { "layer" } else { "layers" };
        println!("batch norm folded into the convolutions of {folded} {layers}");
    }
    if !m.probe_stop.is_empty() {
        let probed = m.layers.iter().filter(|l| l.conv.is_some()).count();
        println!(
            "probed up to layer {probed}; the rest runs for the predictions only: {}",
            m.probe_stop
        );
    }
}

/// A convolution's geometry in a few characters: `7x7/2 p3`, `3x3 d2 g32
/// p2`, `3x3/2 p0,0,1,1` (stride, dilation and groups only when not 1;
/// pads as one number when equal on every side).
fn conv_text(c: &pb::ConvGeometry) -> String {
    let mut s = window_text(c.kernel, c.stride);
    if c.dilation > 1 {
        s += &format!(" d{}", c.dilation);
    }
    if c.groups > 1 {
        s += &format!(" g{}", c.groups);
    }
    s + &pads_text(&c.pads)
}

/// An activation as "relu", "leaky 0.1", "relu6" or "clip 0..4".
fn activation_text(a: &pb::ActivationFunction) -> String {
    use pb::activation_function::Kind;
    match Kind::try_from(a.kind) {
        Ok(Kind::Relu) => "relu".into(),
        Ok(Kind::LeakyRelu) => format!("leaky {}", a.slope),
        Ok(Kind::ClippedRelu) if a.ceiling == 6.0 => "relu6".into(),
        Ok(Kind::ClippedRelu) => format!("clip 0..{}", a.ceiling),
        _ => "?".into(),
    }
}

/// A pool as "3x3/2 p1 ceil" or "2x2/2 avg"; no padding is not written.
fn pool_text(p: &pb::PoolGeometry) -> String {
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
}
