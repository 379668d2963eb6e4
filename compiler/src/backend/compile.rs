//! The compile driver: passes, memory plan, kernels, link.

use super::jit::{Codegen, TableKernels};
use super::kernels::{self, Buf, Consts, Operands};
use super::memory::{self, Interval};
use super::BackendError;
use crate::ir::{Epilogue, Graph, NodeId, Op, SourceLoc};
use crate::passes;
use crate::stats;
use nnc_runtime::kernels::constants::Constant;
use nnc_runtime::kernels::gemm::MicroKernel;
use nnc_runtime::kernels::Base;
use nnc_runtime::{Binding, Executable, MemoryLimit, Step, WeightSet};
use rayon::prelude::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Compile-time choices.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Threads the work is split for (0: one per core). The executable runs
    /// with any pool; this only sizes the tasks.
    pub threads: usize,
    /// The native kernels' instruction set (`None`: the best this CPU
    /// has). Tests use it to run every implementation; one the CPU lacks
    /// is an error.
    pub micro_kernel: Option<MicroKernel>,
    /// The most memory the arena, the weights and the constants the
    /// kernels pack from them may take together (default: the machine's
    /// available memory). The arena and weights are checked before the
    /// kernels are built, and everything again before the executable is.
    pub max_memory: MemoryLimit,
}

/// One kernel of the compiled model, for `nnc compile`'s table.
#[derive(Clone, Debug)]
pub struct LayerReport {
    pub name: String,
    pub loc: Option<SourceLoc>,
    pub op: &'static str,
    /// How the op is computed (`im2col + gemm`, `separable: dw tile +
    /// gemm`); `dump-ir --pass=lower-conv` says why.
    pub algorithm: String,
    /// The fused epilogue (`add+relu`), if any.
    pub epilogue: String,
    /// The GEMM micro-kernel it calls, if any.
    pub micro_kernel: String,
    pub flops: u64,
    /// Bytes the kernel reads (operands, weights included) and writes (its
    /// output), each once: the traffic a roofline assumes.
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub shape: Vec<usize>,
    pub tasks: usize,
}

/// What compilation did and how long each phase took.
#[derive(Clone, Debug)]
pub struct Report {
    pub layers: Vec<LayerReport>,
    pub phases: Vec<(&'static str, Duration)>,
    /// Arena size, the naive sum of all buffers, and the liveness lower
    /// bound, in floats.
    pub arena_len: usize,
    pub naive_len: usize,
    pub lower_bound: usize,
    /// Bytes of packed weights and other constants the kernels read.
    pub const_bytes: usize,
    /// Bytes of the model's weights that the kernels read in place and the
    /// compiled model keeps; the others were packed (into `const_bytes`)
    /// and freed.
    pub kept_weight_bytes: usize,
}

impl Report {
    /// Total compile time.
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }
}

/// A compiled model.
pub struct Compiled {
    pub executable: Executable,
    pub report: Report,
    /// The graph after the pass pipeline, as the kernels implement it.
    pub graph: Graph,
}

/// Where a value lives before placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    Buffer(usize),
    Weight(NodeId),
}

struct Planned {
    node: NodeId,
    inputs: Vec<Loc>,
    out: usize,
    scratch: Option<usize>,
}

/// A model lowered to kernels, ready for code generation: what the JIT
/// and an ahead-of-time bundle share.
pub(super) struct Lowered {
    pub graph: Graph,
    pub weights: WeightSet,
    /// Each step's kernel body and whether to optimise it.
    pub bodies: Vec<(super::jit::Body, bool)>,
    pub layers: Vec<LayerReport>,
    /// Each step's task count.
    pub tasks: Vec<usize>,
    pub consts: Consts,
    pub inputs: Vec<Binding>,
    pub outputs: Vec<Binding>,
    pub placement: memory::Placement,
    pub phases: Vec<(&'static str, Duration)>,
    /// Bytes of the arena and the weights, checked against the limit.
    pub arena_bytes: u128,
    pub weight_bytes: u128,
    /// The native kernels' instruction set.
    pub micro_kernel: MicroKernel,
}

/// Runs the pass pipeline on `graph` and compiles it.
pub fn compile(
    graph: Graph,
    weights: WeightSet,
    options: &Options,
) -> Result<Compiled, BackendError> {
    let Lowered {
        graph,
        weights,
        bodies,
        layers,
        tasks,
        consts,
        inputs,
        outputs,
        placement,
        mut phases,
        arena_bytes,
        weight_bytes,
        micro_kernel: _,
    } = lower(graph, weights, options)?;
    // `lower` timed its own phases; these start where it ended.
    let mut clock = Instant::now();
    let limit = options.max_memory;
    let mut lap = |name: &'static str, phases: &mut Vec<(&'static str, Duration)>| {
        let now = Instant::now();
        phases.push((name, now - clock));
        clock = now;
    };
    let mut jit = Codegen::jit()?;
    let mut weights = weights;
    let ids = codegen_freeing_packed(&mut jit, bodies, &consts, &mut weights)?;
    lap("codegen", &mut phases);
    let (code, entries) = jit.finish(&ids)?;
    lap("link", &mut phases);
    let steps: Vec<Step> = layers
        .iter()
        .zip(entries)
        .zip(&tasks)
        .map(|((l, kernel), &tasks)| Step {
            name: l.name.clone(),
            kernel,
            tasks,
            parallel: is_parallel(l),
        })
        .collect();
    let const_bytes = consts.bytes();
    // While compiling, the weights and their packed copies exist together
    // (the weights no kernel reads were dropped only now).
    limit.check(
        || "the arena with the weights and their packed copies".into(),
        arena_bytes + weight_bytes + const_bytes as u128,
    )?;
    let kept_weight_bytes = weights.iter().map(|(_, t)| 4 * t.len()).sum();
    // SAFETY: each kernel was generated for exactly this arena plan: it
    // reads and writes only the buffers placed above (inside `arena_len`)
    // and constants owned by `consts`, which the executable keeps alive
    // with the code; tasks of one kernel write disjoint output blocks.
    #[allow(unsafe_code)]
    let executable = unsafe {
        Executable::new(
            steps,
            placement.arena_len,
            inputs,
            outputs,
            Box::new((code, consts, weights)),
        )
    };
    Ok(Compiled {
        executable,
        report: Report {
            layers,
            phases,
            arena_len: placement.arena_len,
            naive_len: placement.naive_len,
            lower_bound: placement.lower_bound,
            const_bytes,
            kept_weight_bytes,
        },
        graph,
    })
}

/// Compiles the kernels and drops from `weights` every weight no kernel
/// reads in place: most are read as packed copies among `consts`, and
/// keeping the originals too would hold a model's weights twice while it
/// runs. Which ones the code reads is learnt as it is generated (the
/// addresses it holds, and those the descriptors it holds point into), as
/// a bundle learns which constants to save.
fn codegen_freeing_packed(
    jit: &mut Codegen,
    bodies: Vec<(super::jit::Body, bool)>,
    consts: &Consts,
    weights: &mut WeightSet,
) -> Result<Vec<cranelift_module::FuncId>, BackendError> {
    let items: Vec<&Constant> = consts.constants().iter().collect();
    let weight_data: Vec<&[f32]> = weights.iter().map(|(_, t)| t.data()).collect();
    let TableKernels { ids, needed, .. } = jit.kernels_over(bodies, &items, &weight_data, None)?;
    let unread: Vec<String> = weights
        .names()
        .enumerate()
        .filter(|&(i, _)| !needed[items.len() + i])
        .map(|(_, name)| name.to_string())
        .collect();
    for name in unread {
        let freed = weights.remove(&name);
        // Debug builds (the tests) poison what they free, so that a kernel
        // still reading it computes NaNs instead of stale values.
        if let Some(mut t) = freed.filter(|_| cfg!(debug_assertions)) {
            t.data_mut().fill(f32::NAN);
        }
    }
    Ok(ids)
}

/// Whether a step is worth handing to other threads: below about 100K
/// FLOPs and bytes moved (a few microseconds), waking them costs more than
/// it saves. (At a million, ResNet-18's last Winograd transforms, 0.1 ms
/// each, ran on one thread; 100K against 400K made vgg_cifar at 2 threads
/// 5% faster and left the LSTMs as they were.)
pub(super) fn is_parallel(l: &LayerReport) -> bool {
    l.flops + l.bytes_read + l.bytes_written >= 100_000
}

/// Runs the pass pipeline, plans the arena and builds every kernel.
pub(super) fn lower(
    mut graph: Graph,
    mut weights: WeightSet,
    options: &Options,
) -> Result<Lowered, BackendError> {
    let mut phases = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &'static str, phases: &mut Vec<(&'static str, Duration)>| {
        let now = Instant::now();
        phases.push((name, now - clock));
        clock = now;
    };
    let names: Vec<&str> = passes::pass_names().collect();
    passes::run_pipeline(&mut graph, &mut weights, &names, false)?;
    let problems = crate::verify::verify(&graph);
    if let Some(p) = problems.first() {
        return Err(BackendError::Codegen(p.to_string()));
    }
    lap("passes", &mut phases);

    let kernel = match options.micro_kernel {
        Some(k) if !k.is_available() => {
            return Err(BackendError::Codegen(format!(
                "this CPU cannot run the {} kernels",
                k.name()
            )))
        }
        Some(k) => k,
        None => MicroKernel::detect(),
    };
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.threads
    };

    let Plan {
        steps,
        offset,
        input_bufs,
        output_bufs,
        placement,
    } = plan(&graph, threads)?;
    // The arena is allocated per run and the weights are already here,
    // but both must fit beside each other before the kernels pack copies
    // of the weights.
    let limit = options.max_memory;
    let arena_bytes = 4 * placement.arena_len as u128;
    limit.check(|| "the arena".into(), arena_bytes)?;
    let weight_bytes: u128 = weights.iter().map(|(_, t)| 4 * t.len() as u128).sum();
    limit.check(
        || "the arena with the weights".into(),
        arena_bytes + weight_bytes,
    )?;
    lap("plan", &mut phases);

    // Kernels.
    let statistics = stats::stats(&graph);
    let flops: HashMap<NodeId, u64> = statistics.layers.iter().map(|l| (l.id, l.flops)).collect();
    let operands = steps
        .iter()
        .map(|step| operands(&graph, step, &offset, &weights, threads, kernel))
        .collect::<Result<Vec<_>, _>>()?;
    // Kernels are built on all cores (packing weights is most of the work),
    // each with its own constants, merged afterwards.
    let built: Vec<Result<(Option<kernels::Kernel>, Consts), BackendError>> = steps
        .par_iter()
        .zip(operands.into_par_iter())
        .map(|(step, ops)| {
            let mut consts = Consts::default();
            let kernel = kernels::build(graph.node(step.node), ops, &mut consts)?;
            Ok((kernel, consts))
        })
        .collect();
    let mut consts = Consts::default();
    let mut bodies = Vec::with_capacity(steps.len());
    let mut layers = Vec::with_capacity(steps.len());
    let mut tasks = Vec::with_capacity(steps.len());
    for (step, built) in steps.iter().zip(built) {
        let (kernel, own) = built?;
        consts.merge(own);
        let Some(kernel) = kernel else {
            continue;
        };
        let node = graph.node(step.node);
        let (before, then) = (kernel.before, kernel.then);
        if let Some(before) = before {
            // Its own step, before the op's: it prepares the op's scratch.
            bodies.push((before.body, before.optimize));
            tasks.push(before.tasks);
            layers.push(LayerReport {
                name: format!("{}.init", node.name),
                loc: node.loc,
                op: node.op.name(),
                algorithm: "prepares the op's scratch".into(),
                epilogue: String::new(),
                micro_kernel: String::new(),
                flops: 0,
                bytes_read: 0,
                bytes_written: 0,
                shape: node.ty.shape.clone(),
                tasks: before.tasks,
            });
        }
        bodies.push((kernel.body, kernel.optimize));
        tasks.push(kernel.tasks);
        layers.push(LayerReport {
            name: node.name.clone(),
            loc: node.loc,
            op: node.op.name(),
            algorithm: algorithm(&graph, step.node),
            epilogue: epilogue(&node.op),
            micro_kernel: kernel.micro_kernel.unwrap_or_default(),
            flops: flops.get(&step.node).copied().unwrap_or(0),
            bytes_read: 4 * node
                .inputs()
                .iter()
                .map(|&i| graph.node(i).ty.numel() as u64)
                .sum::<u64>(),
            bytes_written: 4 * node.ty.numel() as u64,
            shape: node.ty.shape.clone(),
            tasks: kernel.tasks,
        });
        if let Some(then) = then {
            // Its own step, named after the op: it reads the partial
            // results (the op's scratch: parts x output floats, one add
            // each) and writes the op's output.
            let parts = kernels::scratch_len(&node.op, &[], &node.ty.shape, threads) as u64;
            bodies.push((then.body, then.optimize));
            tasks.push(then.tasks);
            layers.push(LayerReport {
                name: format!("{}.sum", node.name),
                loc: node.loc,
                op: node.op.name(),
                algorithm: "sum of the split product's parts".into(),
                epilogue: node.op.epilogue().map(|e| e.describe()).unwrap_or_default(),
                micro_kernel: String::new(),
                flops: parts,
                bytes_read: 4 * parts,
                bytes_written: 4 * node.ty.numel() as u64,
                shape: node.ty.shape.clone(),
                tasks: then.tasks,
            });
        }
    }
    lap("kernels", &mut phases);
    let binding = |(id, b): &(NodeId, usize)| {
        let node = graph.node(*id);
        Binding {
            name: match &node.op {
                Op::Input(a) => a.name.clone(),
                _ => node.name.clone(),
            },
            offset: offset[*b],
            shape: node.ty.shape.clone(),
        }
    };
    let inputs: Vec<Binding> = graph
        .inputs()
        .iter()
        .filter_map(|i| input_bufs.iter().find(|(id, _)| id == i))
        .map(binding)
        .collect();
    let outputs: Vec<Binding> = output_bufs.iter().map(binding).collect();
    Ok(Lowered {
        graph,
        weights,
        bodies,
        layers,
        tasks,
        consts,
        inputs,
        outputs,
        placement,
        phases,
        arena_bytes,
        weight_bytes,
        micro_kernel: kernel,
    })
}

/// The buffers a step's kernel reads and writes: arena offsets for computed
/// values, the weight set's own memory for weights (kept alive with the
/// code; a tensor's data does not move when the set does).
fn operands<'w>(
    graph: &Graph,
    step: &Planned,
    offset: &[usize],
    weights: &'w WeightSet,
    threads: usize,
    kernel: MicroKernel,
) -> Result<Operands<'w>, BackendError> {
    let node = graph.node(step.node);
    let mut inputs = Vec::with_capacity(step.inputs.len());
    let mut values = Vec::with_capacity(step.inputs.len());
    for (&operand, l) in node.inputs().iter().zip(&step.inputs) {
        let shape = graph.node(operand).ty.shape.clone();
        match *l {
            Loc::Buffer(b) => {
                inputs.push(Buf {
                    base: Base::Arena(offset[b]),
                    shape,
                });
                values.push(None);
            }
            Loc::Weight(w) => {
                let name = match &graph.node(w).op {
                    Op::Weight(a) => a.name.as_str(),
                    _ => "",
                };
                let data = weights.get(name).map(|t| t.data()).ok_or_else(|| {
                    BackendError::Codegen(format!("weight `{name}` has no tensor"))
                })?;
                inputs.push(Buf {
                    base: Base::Const(data.as_ptr() as usize),
                    shape,
                });
                values.push(Some(data));
            }
        }
    }
    Ok(Operands {
        inputs,
        values,
        out: Buf {
            base: Base::Arena(offset[step.out]),
            shape: node.ty.shape.clone(),
        },
        scratch: step.scratch.map(|b| Base::Arena(offset[b])),
        threads,
        kernel,
        out_channel_parts: out_channel_parts(graph, step.node, threads),
    })
}

/// [`Operands::out_channel_parts`]: the channel parts of the node's only
/// reader, if it reads the node as its (depthwise) input.
fn out_channel_parts(graph: &Graph, id: NodeId, threads: usize) -> usize {
    match graph.users(id).as_slice() {
        [user] => {
            let reader = graph.node(*user);
            let inputs = reader.inputs();
            if inputs.first() == Some(&id) && !inputs[1..].contains(&id) {
                kernels::channel_parts(&reader.op, &reader.ty.shape, threads)
            } else {
                1
            }
        }
        _ => 1,
    }
}

/// Where every value lives and which steps run: the arena layout.
struct Plan {
    steps: Vec<Planned>,
    /// Arena offset of each buffer, in floats.
    offset: Vec<usize>,
    /// `(node, buffer)` of each model input and output.
    input_bufs: Vec<(NodeId, usize)>,
    output_bufs: Vec<(NodeId, usize)>,
    placement: memory::Placement,
}

/// Plans the arena: one buffer per computed value (views share their
/// operand's), live from the step that writes it to the last that reads it;
/// elementwise ops write over a first operand nothing reads later; then
/// [`memory::place`] assigns offsets.
fn plan(graph: &Graph, threads: usize) -> Result<Plan, BackendError> {
    // Every value's buffer, and the steps.
    let mut bufs: Vec<Interval> = Vec::new();
    let mut loc: HashMap<NodeId, Loc> = HashMap::new();
    let mut steps: Vec<Planned> = Vec::new();
    let mut input_bufs = Vec::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        match &node.op {
            Op::Input(_) => {
                bufs.push(Interval {
                    len: node.ty.numel(),
                    first: 0,
                    last: 0,
                });
                loc.insert(id, Loc::Buffer(bufs.len() - 1));
                input_bufs.push((id, bufs.len() - 1));
            }
            Op::Weight(_) => {
                loc.insert(id, Loc::Weight(id));
            }
            op if kernels::is_view(op) => {
                let source = node.inputs()[0];
                let l = loc
                    .get(&source)
                    .copied()
                    .ok_or_else(|| missing(graph, source))?;
                loc.insert(id, l);
            }
            op => {
                let s = steps.len();
                let inputs = node
                    .inputs()
                    .iter()
                    .map(|i| loc.get(i).copied().ok_or_else(|| missing(graph, *i)))
                    .collect::<Result<Vec<_>, _>>()?;
                for l in &inputs {
                    if let Loc::Buffer(b) = l {
                        bufs[*b].last = bufs[*b].last.max(s);
                    }
                }
                bufs.push(Interval {
                    len: kernels::output_len(op, &node.ty),
                    first: s,
                    last: s,
                });
                let out = bufs.len() - 1;
                let types: Vec<&[usize]> = node
                    .inputs()
                    .iter()
                    .map(|&i| graph.node(i).ty.shape.as_slice())
                    .collect();
                let scratch = match kernels::scratch_len(op, &types, &node.ty.shape, threads) {
                    0 => None,
                    len => {
                        bufs.push(Interval {
                            len,
                            first: s,
                            last: s,
                        });
                        Some(bufs.len() - 1)
                    }
                };
                loc.insert(id, Loc::Buffer(out));
                steps.push(Planned {
                    node: id,
                    inputs,
                    out,
                    scratch,
                });
            }
        }
    }
    let end = steps.len();
    let mut output_bufs = Vec::new();
    for &o in graph.outputs() {
        match loc.get(&o) {
            Some(Loc::Buffer(b)) => {
                bufs[*b].last = end;
                output_bufs.push((o, *b));
            }
            _ => {
                return Err(BackendError::Unsupported {
                    node: graph.node(o).name.clone(),
                    what: "an output that is a weight".into(),
                })
            }
        }
    }

    let model_inputs: Vec<usize> = input_bufs.iter().map(|&(_, b)| b).collect();
    let (parent, elided) = concat_in_place(graph, &steps, &mut bufs, &model_inputs);

    // Elementwise ops write over their first operand when nothing reads it
    // later: `alias[b]` is the buffer `b` shares.
    let mut alias: Vec<usize> = (0..bufs.len()).collect();
    for (s, step) in steps.iter().enumerate() {
        let node = graph.node(step.node);
        if !kernels::can_run_in_place(&node.op) {
            continue;
        }
        let Some(Loc::Buffer(first)) = step.inputs.first().copied() else {
            continue;
        };
        let root = find(&alias, first);
        // A slice of a concat's buffer, or an op whose result is one, keeps
        // its own place: writing over the operand would change the concat's
        // value, and aliasing the result would move it out of the concat.
        if parent[root].is_some() || parent[step.out].is_some() {
            continue;
        }
        let same_shape = node
            .inputs()
            .iter()
            .zip(&step.inputs)
            .filter(|(_, l)| matches!(l, Loc::Buffer(b) if find(&alias, *b) == root))
            .all(|(&i, _)| graph.node(i).ty.shape == node.ty.shape);
        if bufs[root].last == s && bufs[root].len == bufs[step.out].len && same_shape {
            alias[step.out] = root;
            bufs[root].last = bufs[step.out].last;
            bufs[step.out].len = 0;
        }
    }
    // Only root buffers take space; merged ones get their root's offset,
    // and a concat's slices their place in its buffer.
    let roots: Vec<usize> = (0..bufs.len())
        .filter(|&b| alias[b] == b && parent[b].is_none())
        .collect();
    let placement = memory::place(&roots.iter().map(|&b| bufs[b]).collect::<Vec<_>>());
    let mut offset = vec![0usize; bufs.len()];
    for (i, &b) in roots.iter().enumerate() {
        offset[b] = placement.offsets[i];
    }
    for b in 0..bufs.len() {
        let mut at = find(&alias, b);
        let mut delta = 0;
        while let Some((p, d)) = parent[at] {
            delta += d;
            at = find(&alias, p);
        }
        offset[b] = offset[at] + delta;
    }
    // Every kernel's operands are addressed from these offsets: in debug
    // builds, check that each buffer lies inside the arena before any code
    // is generated that writes it.
    debug_assert!(
        (0..bufs.len()).all(|b| offset[b] + bufs[b].len <= placement.arena_len),
        "a buffer lies outside the arena of {} floats",
        placement.arena_len
    );
    let steps = steps
        .into_iter()
        .enumerate()
        .filter(|(s, _)| !elided.contains(s))
        .map(|(_, step)| step)
        .collect();
    Ok(Plan {
        steps,
        offset,
        input_bufs,
        output_bufs,
        placement,
    })
}

/// Concatenation without copies: when every operand of a `concat` is a
/// buffer its producer writes whole and nothing else claims, and the
/// operands are contiguous slices of the result (every dim before the
/// concat dim is 1), each producer writes straight into its slice of the
/// concat's buffer and the concat step disappears. Returns, per buffer,
/// the buffer it is a slice of and where (in floats), and the steps left
/// out. A slice's lifetime joins its concat's; a concat can itself be a
/// slice of a later one (DenseNet's blocks chain them).
fn concat_in_place(
    graph: &Graph,
    steps: &[Planned],
    bufs: &mut [Interval],
    model_inputs: &[usize],
) -> (Vec<Option<(usize, usize)>>, Vec<usize>) {
    let mut parent: Vec<Option<(usize, usize)>> = vec![None; bufs.len()];
    let mut elided = Vec::new();
    for (s, step) in steps.iter().enumerate() {
        let node = graph.node(step.node);
        let Op::Concat(a) = &node.op else {
            continue;
        };
        if node.ty.shape[..a.dim].iter().product::<usize>() != 1 {
            continue;
        }
        let mut slices: Vec<(usize, usize)> = Vec::new();
        let mut delta = 0;
        for (&operand, l) in node.inputs().iter().zip(&step.inputs) {
            let len = graph.node(operand).ty.numel();
            let claimable = match *l {
                Loc::Buffer(b) => (!model_inputs.contains(&b)
                    && parent[b].is_none()
                    && bufs[b].len == len
                    && !slices.iter().any(|&(c, _)| c == b))
                .then_some(b),
                Loc::Weight(_) => None,
            };
            match claimable {
                Some(b) => slices.push((b, delta)),
                None => break,
            }
            delta += len;
        }
        if slices.len() != node.inputs().len() {
            continue;
        }
        for (b, at) in slices {
            parent[b] = Some((step.out, at));
            bufs[step.out].first = bufs[step.out].first.min(bufs[b].first);
            bufs[step.out].last = bufs[step.out].last.max(bufs[b].last);
            bufs[b].len = 0;
        }
        elided.push(s);
    }
    (parent, elided)
}

fn find(alias: &[usize], mut b: usize) -> usize {
    while alias[b] != b {
        b = alias[b];
    }
    b
}

fn missing(graph: &Graph, id: NodeId) -> BackendError {
    BackendError::Codegen(format!(
        "`{}` is used before it is computed",
        graph.node(id).name
    ))
}

/// How the kernel of `id` computes its op, in a few words.
fn algorithm(graph: &Graph, id: NodeId) -> String {
    let node = graph.node(id);
    let groups = |g: usize| {
        if g > 1 {
            format!(", {g} groups")
        } else {
            String::new()
        }
    };
    if let Op::Gemm(a) = &node.op {
        let source = &graph.node(node.inputs()[0]).op;
        let kind = if matches!(source, Op::Im2Col(_)) {
            "im2col + gemm"
        } else if matches!(source, Op::WinogradInput(_)) {
            "winograd gemm"
        } else if graph
            .users(id)
            .iter()
            .any(|&u| matches!(graph.node(u).op, Op::Col2Im(_)))
        {
            "gemm to columns"
        } else {
            "gemm on the input (1x1)"
        };
        format!("{kind}{}", groups(a.groups))
    } else if matches!(node.op, Op::Conv2d(_)) {
        "direct (few input channels)".into()
    } else if matches!(node.op, Op::DepthwiseConv2d(_)) {
        "depthwise, direct".into()
    } else if let Op::SeparableConv2d(a) = &node.op {
        if a.expand.is_some() {
            "separable: expansion + dw tile + gemm".into()
        } else {
            "separable: dw tile + gemm".into()
        }
    } else if matches!(node.op, Op::Col2Im(_)) {
        "col2im scatter-add".into()
    } else if matches!(node.op, Op::WinogradInput(_)) {
        "winograd input transform".into()
    } else if matches!(node.op, Op::WinogradOutput(_)) {
        "winograd output transform".into()
    } else if let Op::Linear(a) = &node.op {
        let x = &graph.node(node.inputs()[0]).ty.shape;
        let k = x.last().copied().unwrap_or(1);
        if kernels::linear_over_rows(a, x) {
            "gemm over the rows".into()
        } else if kernels::gemv_in_place(a.out_features, k) {
            "gemv per row, in place".into()
        } else {
            "gemv per row".into()
        }
    } else {
        String::new()
    }
}

/// The fused work of an op, as `nnc compile` prints it.
fn epilogue(op: &Op) -> String {
    if let Op::SeparableConv2d(a) = op {
        let expand = a.expand.as_ref().and_then(|e| e.activation).map(|act| {
            Epilogue {
                residual: false,
                activation: Some(act),
            }
            .describe()
        });
        let dw = a.depthwise.epilogue.describe();
        let parts: Vec<String> = [
            expand.map(|e| format!("expand {e}")),
            (!dw.is_empty()).then(|| format!("dw {dw}")),
            Some(a.epilogue.describe()).filter(|pw| !pw.is_empty()),
        ]
        .into_iter()
        .flatten()
        .collect();
        return parts.join("; ");
    }
    op.epilogue().map(|e| e.describe()).unwrap_or_default()
}
