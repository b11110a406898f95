//! `fovea model`: the layer table, where the network runs and where its
//! weights came from.

use super::Context;
use fovea_client::layers::{activation_text, kernel_text, pool_text, reads_text, residual_text};
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
    #[serde(skip_serializing_if = "Option::is_none")]
    residual: Option<Residual<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    norm_only: bool,
    #[serde(skip_serializing_if = "<[u32]>::is_empty")]
    sources: &'a [u32],
}

#[derive(Serialize)]
struct Residual<'a> {
    from_layer: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    projection: Option<Conv<'a>>,
    add_node: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    projection_node: &'a str,
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

impl<'a> Conv<'a> {
    fn of(c: &'a pb::ConvGeometry) -> Self {
        Conv {
            kernel: c.kernel,
            stride: c.stride,
            dilation: c.dilation,
            groups: c.groups,
            pads: &c.pads,
        }
    }
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
                    conv: l.conv.as_ref().map(Conv::of),
                    pool: l.pool.as_ref().map(|p| Pool {
                        kernel: p.kernel,
                        stride: p.stride,
                        pads: &p.pads,
                        ceil_mode: p.ceil_mode,
                        average: p.average,
                    }),
                    activation: l.activation.as_ref().map(Activation::of),
                    residual: l.residual.as_ref().map(|r| Residual {
                        from_layer: r.from_layer,
                        projection: r.projection.as_ref().map(Conv::of),
                        add_node: &r.add_node,
                        projection_node: &r.projection_node,
                    }),
                    norm_only: l.norm_only,
                    sources: &l.sources,
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
    let residuals = m.layers.iter().any(|l| l.residual.is_some());
    // Inception blocks: which layers each layer reads.
    let joins = m.layers.iter().any(|l| reads_text(l).is_some());
    // Module paths (`layer3.1.relu_1`) are longer than block names.
    let name_width = m
        .layers
        .iter()
        .map(|l| l.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, 40);
    let header = format!(
        "{:>3}  {:<name_width$} {:>16} {:>6} {:>6}  {:<13}  {:<18} {:<11} {:<18} {}",
        "#",
        "name",
        "C x H x W",
        "FOV",
        "stride",
        "pool",
        "conv",
        "activation",
        if residuals { "residual" } else { "" },
        if joins { "reads" } else { "" }
    );
    println!("{}", header.trim_end());
    for l in &m.layers {
        let row = format!(
            "{:>3}  {:<name_width$} {:>16} {:>6} {:>6}  {:<13}  {:<18} {:<11} {:<18} {}",
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
            kernel_text(l),
            l.activation
                .as_ref()
                .map(activation_text)
                .unwrap_or_default(),
            l.residual.as_ref().map(residual_text).unwrap_or_default(),
            reads_text(l)
                .map(|r| r.trim_start_matches("reads ").to_string())
                .unwrap_or_default()
        );
        println!("{}", row.trim_end());
    }
    let folded = m
        .layers
        .iter()
        .filter(|l| !l.folded_batch_norm.is_empty() && !l.norm_only)
        .count();
    if folded > 0 {
        let layers = if folded == 1 { "layer" } else { "layers" };
        println!("batch norm folded into the convolutions of {folded} {layers}");
    }
    let alone = m.layers.iter().filter(|l| l.norm_only).count();
    if alone > 0 {
        let norms = if alone == 1 {
            "batch norm"
        } else {
            "batch norms"
        };
        println!(
            "{alone} {norms} with no convolution before them (pre-activation), each a layer: its per-channel scale and shift"
        );
    }
    if !m.probe_stop.is_empty() {
        let probed = m.layers.iter().filter(|l| l.conv.is_some()).count();
        println!(
            "probed up to layer {probed}; the rest runs for the predictions only: {}",
            m.probe_stop
        );
    }
}
