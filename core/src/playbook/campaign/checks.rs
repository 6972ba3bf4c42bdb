//! The checks that need the whole graph: reachability, loops without a wait, and message
//! conditions that only hold after their send (dominators).

use super::*;
use petgraph::algo::{dominators, tarjan_scc};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, NodeFiltered};
use std::collections::{BTreeSet, HashMap};

use crate::channel::Channel;
use crate::condition::{MessageKind, MessageRef};
use crate::playbook::Issue;

impl Builder<'_> {
    /// Checks that need the whole graph: reachability, loops without a wait, and that each
    /// message condition names a send step that comes before it on every path.
    ///
    /// Long on purpose: the graph checks in turn (reachability, loops without a wait, message
    /// conditions before their send), sharing one traversal's results.
    pub(super) fn check_graph(
        &mut self,
        graph: &DiGraph<Step, Edge>,
        index: &StepIndex,
        start: NodeIndex,
        start_id: &str,
        messages: &[(NodeIndex, MessageRef)],
    ) {
        let mut reached = vec![false; graph.node_count()];
        let mut dfs = Dfs::new(graph, start);
        while let Some(n) = dfs.next(graph) {
            reached[n.index()] = true;
        }
        let unreached = graph
            .node_indices()
            .filter(|n| !reached[n.index()] && !self.missing_next);
        for n in unreached.collect::<Vec<_>>() {
            let step = &graph[n];
            self.issues.push(Issue::at(
                self.file,
                step.position,
                format!(
                    "step {:?} is never reached from `start` ({start_id}); lead to it with `next`, `then` or `else`, or remove it",
                    step.id
                ),
            ));
        }

        // A loop that passes no wait would run a lead round it at once, forever.
        let no_waits = NodeFiltered::from_fn(graph, |n| !matches!(graph[n].action, Action::Wait(_)));
        for scc in tarjan_scc(&no_waits) {
            let looped = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
            if !looped {
                continue;
            }
            let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
            let first = *members.iter().next().unwrap_or(&scc[0]);
            let path = loop_path(graph, first, &members);
            let names: Vec<&str> = path.iter().map(|&n| graph[n].id.as_str()).collect();
            self.issues.push(Issue::at(
                self.file,
                graph[first].position,
                format!(
                    "steps loop without a wait: [ {} ]; a lead would go round at once, forever: put a `wait` in the loop",
                    names.join(" -> ")
                ),
            ));
        }

        let dominators = dominators::simple_fast(graph, start);
        for (node, message) in messages {
            let question = message.question.as_str();
            let Some(&target) = index.get(&message.step) else {
                let ids = index.keys();
                self.issues.push(Issue::at(
                    self.file,
                    message.position,
                    format!(
                        "`{question}: {}` names a step that does not exist{}",
                        message.step,
                        suggest(&message.step, ids)
                    ),
                ));
                continue;
            };
            let Action::Send { channel, .. } = graph[target].action else {
                self.issues.push(Issue::at(
                    self.file,
                    message.position,
                    format!(
                        "`{question}: {}` names a {} step; it must name a `send` step",
                        message.step,
                        graph[target].action.kind()
                    ),
                ));
                continue;
            };
            if message.question == MessageKind::Opened && channel != Channel::Email {
                self.issues.push(Issue::at(
                    self.file,
                    message.position,
                    format!(
                        "`opened: {}` asks about a {} message, which reports no opens; ask `responded` instead",
                        message.step,
                        channel.as_str()
                    ),
                ));
                continue;
            }
            if !reached[node.index()] {
                continue;
            }
            let precedes = *node != target
                && dominators
                    .dominators(*node)
                    .is_some_and(|mut chain| chain.any(|d| d == target));
            let group: Vec<NodeIndex> = message
                .any_of
                .iter()
                .filter_map(|step| index.get(step).copied())
                .filter(|n| n != node)
                .collect();
            if !precedes && group.len() > 1 {
                if passes_one_of(graph, start, *node, &group) {
                    continue;
                }
                let names: Vec<String> = message.any_of.iter().map(|s| format!("{s:?}")).collect();
                self.issues.push(Issue::at(
                    self.file,
                    message.position,
                    format!(
                        "`{question}: {}` in step {:?}: not every path to this step passes one of {} first, so none of their messages may have been sent; ask only about sends every path passes one of",
                        message.step,
                        graph[*node].id,
                        names.join(", ")
                    ),
                ));
                continue;
            }
            if !precedes {
                self.issues.push(Issue::at(
                    self.file,
                    message.position,
                    format!(
                        "`{question}: {}` in step {:?}: not every path to this step passes {:?} first, so its message may never have been sent; ask only about a send every path passes",
                        message.step, graph[*node].id, message.step
                    ),
                ));
            }
        }
    }
}

/// Whether every path from `start` to `node` passes one of `through`: `node` cannot be reached
/// once they are taken out of the graph.
fn passes_one_of(graph: &DiGraph<Step, Edge>, start: NodeIndex, node: NodeIndex, through: &[NodeIndex]) -> bool {
    if through.contains(&start) {
        return true;
    }
    let mut seen = vec![false; graph.node_count()];
    let mut pending = vec![start];
    seen[start.index()] = true;
    while let Some(at) = pending.pop() {
        if at == node {
            return false;
        }
        for next in graph.neighbors(at) {
            if !seen[next.index()] && !through.contains(&next) {
                seen[next.index()] = true;
                pending.push(next);
            }
        }
    }
    true
}

/// A loop through `members` starting and ending at `first`, following edges inside the set.
pub(super) fn loop_path(
    graph: &DiGraph<Step, Edge>,
    first: NodeIndex,
    members: &BTreeSet<NodeIndex>,
) -> Vec<NodeIndex> {
    // Breadth-first from `first` back to itself, so the loop shown is a shortest one.
    let mut came_from: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([first]);
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph.neighbors(n).filter(|m| members.contains(m)).collect();
        next.sort();
        for m in next {
            if m == first {
                let mut path = vec![n];
                let mut at = n;
                while at != first {
                    at = came_from[&at];
                    path.push(at);
                }
                path.reverse();
                path.push(first);
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = came_from.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    vec![first, first]
}
