//! Random small models for property tests: a chain of layers (convs with
//! random stride, padding, dilation and groups; batch norms; activations;
//! residual adds; pools; depthwise+pointwise pairs; transposed convs;
//! dropout; extra outputs) as `.nn` source, so the passes and the backend
//! are tested on the same generator.

use proptest::prelude::*;

/// One step of a random model; the numbers are raw draws that
/// [`random_model`] maps onto valid attributes for the current shape.
#[derive(Clone, Debug)]
pub enum Layer {
    Conv {
        out: u8,
        kernel: u8,
        stride: u8,
        pad: u8,
        dilation: u8,
        groups: u8,
        bias: bool,
    },
    BatchNorm,
    Activation(u8),
    Residual,
    Pool(bool),
    Separable {
        multiplier: u8,
        out: u8,
    },
    ConvTranspose {
        out: u8,
        groups: u8,
    },
    Dropout(bool),
    Identity,
    ExtraOutput,
}

pub fn layer() -> impl Strategy<Value = Layer> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<bool>()).prop_map(
            |(out, kernel, stride, pad, dilation, groups, bias)| Layer::Conv { out, kernel, stride, pad, dilation, groups, bias }
        ),
        3 => Just(Layer::BatchNorm),
        2 => any::<u8>().prop_map(Layer::Activation),
        2 => Just(Layer::Residual),
        1 => any::<bool>().prop_map(Layer::Pool),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(multiplier, out)| Layer::Separable { multiplier, out }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(out, groups)| Layer::ConvTranspose { out, groups }),
        1 => any::<bool>().prop_map(Layer::Dropout),
        1 => Just(Layer::Identity),
        1 => Just(Layer::ExtraOutput),
    ]
}

/// The `.nn` source of a chain of `layers` on an input `[1, c, h, h]`,
/// skipping layers that do not fit the current shape.
pub fn random_model(c: usize, h: usize, layers: &[Layer]) -> String {
    let mut body = vec![format!("    input x: f32[1, {c}, {h}, {h}]")];
    let (mut cur, mut c, mut h) = ("x".to_string(), c, h);
    let mut values: Vec<(String, usize, usize)> = vec![(cur.clone(), c, h)];
    let mut outputs: Vec<String> = Vec::new();
    let divisor = |a: usize, b: usize, pick: u8| {
        let common: Vec<usize> = (1..=a.min(b))
            .filter(|&g| a.is_multiple_of(g) && b.is_multiple_of(g))
            .collect();
        common[usize::from(pick) % common.len()]
    };
    for (i, layer) in layers.iter().enumerate() {
        let name = format!("l{i}");
        let mut line = |text: String| body.push(format!("    {text}"));
        match *layer {
            Layer::Conv {
                out,
                kernel,
                stride,
                pad,
                dilation,
                groups,
                bias,
            } => {
                let (out, k, s, p, d) = (
                    1 + usize::from(out) % 8,
                    1 + usize::from(kernel) % 3,
                    1 + usize::from(stride) % 2,
                    usize::from(pad) % 2,
                    1 + usize::from(dilation) % 2,
                );
                if h + 2 * p < d * (k - 1) + 1 {
                    continue;
                }
                let g = divisor(c, out, groups);
                line(format!(
                    "{name} = conv2d({cur}, out={out}, kernel={k}, stride={s}, pad={p}, dilation={d}, groups={g}, bias={bias})"
                ));
                (c, h) = (out, (h + 2 * p - d * (k - 1) - 1) / s + 1);
            }
            Layer::BatchNorm => line(format!("{name} = batch_norm({cur})")),
            Layer::Activation(which) => line(match which % 6 {
                0 => format!("{name} = relu({cur})"),
                1 => format!("{name} = relu6({cur})"),
                2 => format!("{name} = sigmoid({cur})"),
                3 => format!("{name} = tanh({cur})"),
                4 => format!("{name} = leaky_relu({cur}, negative_slope=0.1)"),
                _ => format!("{name} = clip({cur}, min=-0.5, max=0.5)"),
            }),
            Layer::Residual => {
                let Some((other, _, _)) = values
                    .iter()
                    .find(|(n, vc, vh)| *n != cur && *vc == c && *vh == h)
                else {
                    continue;
                };
                line(format!("{name} = add({cur}, {other})"));
            }
            Layer::Pool(max) => {
                if h < 2 {
                    continue;
                }
                let op = if max { "max_pool2d" } else { "avg_pool2d" };
                line(format!("{name} = {op}({cur}, kernel=2)"));
                h /= 2;
            }
            Layer::Separable { multiplier, out } => {
                let (dw, out) = (
                    c * (1 + usize::from(multiplier) % 2),
                    1 + usize::from(out) % 8,
                );
                line(format!(
                    "{name}_dw = conv2d({cur}, out={dw}, kernel=3, pad=1, groups={c}, bias=false)"
                ));
                line(format!("{name}_bn1 = batch_norm({name}_dw)"));
                line(format!("{name}_act = relu6({name}_bn1)"));
                line(format!(
                    "{name}_pw = conv2d({name}_act, out={out}, kernel=1, bias=false)"
                ));
                line(format!("{name} = batch_norm({name}_pw)"));
                c = out;
            }
            Layer::ConvTranspose { out, groups } => {
                if h > 8 {
                    continue;
                }
                let out = 1 + usize::from(out) % 6;
                let g = divisor(c, out, groups);
                line(format!("{name} = conv_transpose2d({cur}, out={out}, kernel=2, stride=2, groups={g}, bias=false)"));
                (c, h) = (out, h * 2);
            }
            Layer::Dropout(classic) => {
                let mode = if classic { "classic" } else { "inverted" };
                line(format!("{name} = dropout({cur}, p=0.25, mode=\"{mode}\")"));
            }
            Layer::Identity => line(format!("{name} = identity({cur})")),
            Layer::ExtraOutput => {
                if cur != "x" && !outputs.contains(&cur) {
                    outputs.push(cur.clone());
                }
                continue;
            }
        }
        cur = name;
        values.push((cur.clone(), c, h));
    }
    if !outputs.contains(&cur) {
        outputs.push(cur);
    }
    format!(
        "model random {{\n{}\n    output {}\n}}\n",
        body.join("\n"),
        outputs.join(", ")
    )
}
