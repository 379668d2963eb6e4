//! The op graph: nodes with ordered operands over petgraph.
//!
//! Passes and every other module use only the methods here; petgraph stays
//! an implementation detail. Each node produces exactly one tensor value, so
//! a node id is also a value id.

use super::op::Op;
use nnc_frontend::Span;
use nnc_runtime::{format_shape, DType};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The static type of a value: dtype and exact shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorType {
    /// An `f32` tensor type.
    pub fn f32(shape: Vec<usize>) -> TensorType {
        TensorType {
            dtype: DType::F32,
            shape,
        }
    }

    /// Number of elements (saturating; shapes are overflow-checked at lowering).
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }

    /// Rank.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.dtype, format_shape(&self.shape))
    }
}

/// Where in the `.nn` source a node came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceLoc {
    pub span: Span,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

/// Identifies a node (and the value it produces) in a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NodeIndex);

impl NodeId {
    /// The raw index, stable while the node lives.
    pub fn index(self) -> usize {
        self.0.index()
    }
}

/// One op application.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    /// Operands in order; kept in sync with the graph's edges by [`Graph`].
    inputs: Vec<NodeId>,
    /// The type of the value this node produces.
    pub ty: TensorType,
    /// The full dotted name of the binding (`layer1.0.conv1`), or the weight
    /// or input name.
    pub name: String,
    /// The source location, when the node came from a `.nn` file.
    pub loc: Option<SourceLoc>,
    /// Remarks passes leave for the reader (which algorithm `lower-conv`
    /// chose and why, why `fuse` left an op standalone); printed under the
    /// node as `# pass: remark`.
    pub notes: Vec<String>,
}

impl Node {
    /// A node ready to be added to a graph.
    pub fn new(op: Op, inputs: Vec<NodeId>, ty: TensorType, name: impl Into<String>) -> Node {
        Node {
            op,
            inputs,
            ty,
            name: name.into(),
            loc: None,
            notes: Vec::new(),
        }
    }

    /// Adds a remark (once: a pass that runs twice does not repeat it).
    pub fn note(&mut self, pass: &str, remark: impl std::fmt::Display) {
        let note = format!("{pass}: {remark}");
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Sets the source location.
    pub fn at(mut self, loc: Option<SourceLoc>) -> Node {
        self.loc = loc;
        self
    }

    /// The operands, in order.
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }
}

/// Errors from graph edits that would break its invariants.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("node {0:?} does not exist")]
    MissingNode(NodeId),
    #[error("node {0:?} still has users and cannot be removed")]
    HasUsers(NodeId),
}

/// A model as a graph of ops.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// The model name.
    pub name: String,
    graph: StableDiGraph<Node, usize>,
    inputs: Vec<NodeId>,
    outputs: Vec<NodeId>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// Adds a node; its operands must already be in the graph.
    pub fn add(&mut self, node: Node) -> Result<NodeId, GraphError> {
        for &input in &node.inputs {
            if !self.contains(input) {
                return Err(GraphError::MissingNode(input));
            }
        }
        let operands = node.inputs.clone();
        let is_input = matches!(node.op, Op::Input(_));
        let id = NodeId(self.graph.add_node(node));
        for (slot, input) in operands.into_iter().enumerate() {
            self.graph.add_edge(input.0, id.0, slot);
        }
        if is_input {
            self.inputs.push(id);
        }
        Ok(id)
    }

    /// True if the node exists.
    pub fn contains(&self, id: NodeId) -> bool {
        self.graph.contains_node(id.0)
    }

    /// The node, if it exists.
    pub fn get(&self, id: NodeId) -> Option<&Node> {
        self.graph.node_weight(id.0)
    }

    /// The node. Ids come from this graph, so a missing node is a compiler
    /// bug; callers that take ids from outside use [`Graph::get`].
    pub fn node(&self, id: NodeId) -> &Node {
        &self.graph[id.0]
    }

    /// The node, mutable (op, type, name and location; operands change only
    /// through [`Graph::set_inputs`]).
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.graph[id.0]
    }

    /// Replaces the operands of a node.
    pub fn set_inputs(&mut self, id: NodeId, inputs: Vec<NodeId>) -> Result<(), GraphError> {
        if !self.contains(id) {
            return Err(GraphError::MissingNode(id));
        }
        for &input in &inputs {
            if !self.contains(input) {
                return Err(GraphError::MissingNode(input));
            }
        }
        let old: Vec<_> = self
            .graph
            .edges_directed(id.0, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.graph.remove_edge(e);
        }
        for (slot, input) in inputs.iter().enumerate() {
            self.graph.add_edge(input.0, id.0, slot);
        }
        self.graph[id.0].inputs = inputs;
        Ok(())
    }

    /// The nodes that use `id` as an operand, each once, in id order.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut users: Vec<NodeId> = self
            .graph
            .neighbors_directed(id.0, Direction::Outgoing)
            .map(NodeId)
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// Makes every user of `old` (and the graph outputs) use `new` instead.
    pub fn replace_all_uses(&mut self, old: NodeId, new: NodeId) -> Result<(), GraphError> {
        for user in self.users(old) {
            let inputs = self
                .node(user)
                .inputs
                .iter()
                .map(|&i| if i == old { new } else { i })
                .collect();
            self.set_inputs(user, inputs)?;
        }
        for out in &mut self.outputs {
            if *out == old {
                *out = new;
            }
        }
        Ok(())
    }

    /// Removes a node that has no users and is not an output.
    pub fn remove(&mut self, id: NodeId) -> Result<Node, GraphError> {
        if !self.users(id).is_empty() || self.outputs.contains(&id) {
            return Err(GraphError::HasUsers(id));
        }
        self.inputs.retain(|&i| i != id);
        self.graph
            .remove_node(id.0)
            .ok_or(GraphError::MissingNode(id))
    }

    /// The model inputs, in declaration order.
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    /// The model outputs, in declaration order.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// Sets the model outputs.
    pub fn set_outputs(&mut self, outputs: Vec<NodeId>) {
        self.outputs = outputs;
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// All node ids in insertion order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.graph.node_indices().map(NodeId).collect()
    }

    /// A topological order, deterministic: among ready nodes the oldest
    /// (lowest id) comes first, so the order follows the source where it can.
    /// Nodes on a cycle (which the verifier reports) are left out.
    pub fn topo_order(&self) -> Vec<NodeId> {
        let mut pending: HashMap<NodeIndex, usize> = HashMap::new();
        let mut ready = BinaryHeap::new();
        for ix in self.graph.node_indices() {
            let n = self.graph.edges_directed(ix, Direction::Incoming).count();
            if n == 0 {
                ready.push(Reverse(ix));
            } else {
                pending.insert(ix, n);
            }
        }
        let mut order = Vec::with_capacity(self.graph.node_count());
        while let Some(Reverse(ix)) = ready.pop() {
            order.push(NodeId(ix));
            for edge in self.graph.edges_directed(ix, Direction::Outgoing) {
                let target = edge.target();
                if let Some(count) = pending.get_mut(&target) {
                    *count -= 1;
                    if *count == 0 {
                        pending.remove(&target);
                        ready.push(Reverse(target));
                    }
                }
            }
        }
        order
    }
}
