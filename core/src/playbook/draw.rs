//! Pictures of a campaign: Graphviz DOT, Mermaid, and SVG drawn in-process (layout-rs, pure
//! Rust; no Graphviz needed). Steps are nodes shaped by kind, branch edges say yes/no, waits
//! say how long, and, when counts are given, edges say how many leads took them.

use petgraph::visit::EdgeRef;
use std::collections::HashMap;
use std::fmt::Write;

use super::{Action, Campaign, Edge, Wait};

/// Leads that took each edge, by (from step, to step).
pub type EdgeCounts = HashMap<(String, String), u64>;

/// The formats `nurture playbook graph` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dot,
    Mermaid,
    Svg,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dot" => Ok(Format::Dot),
            "mermaid" => Ok(Format::Mermaid),
            "svg" => Ok(Format::Svg),
            other => Err(format!("format {other:?} is not known; use dot, mermaid or svg")),
        }
    }
}

/// Draws the campaign in `format`, with counts on the edges and a line of figures under each
/// step's label when given (DOT and SVG; Mermaid draws the edges' counts only).
pub fn draw(
    campaign: &Campaign,
    format: Format,
    counts: Option<&EdgeCounts>,
    notes: Option<&StepNotes>,
) -> Result<String, String> {
    match format {
        Format::Dot => Ok(dot(campaign, counts, notes, Flavour::Graphviz)),
        Format::Mermaid => Ok(mermaid(campaign, counts)),
        Format::Svg => svg_drawn(campaign, counts, notes, None),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// Graphviz's full shape set.
    Graphviz,
    /// The shapes layout-rs draws (box, rounded record, circle, double circle).
    Layout,
}

/// Fill colour and shapes (Graphviz, layout-rs) per step kind.
fn look(action: &Action) -> (&'static str, &'static str, &'static str) {
    match action {
        Action::Send { .. } => ("#dbeafe", "box", "box"),
        Action::Wait(_) => ("#fef9c3", "ellipse", "Mrecord"),
        Action::Branch(_) => ("#fed7aa", "diamond", "circle"),
        Action::Split => ("#e9d5ff", "diamond", "circle"),
        Action::Tag { .. } | Action::Score(_) => ("#e5e7eb", "note", "box"),
        Action::Handoff { .. } => ("#bbf7d0", "doubleoctagon", "Mrecord"),
        Action::Enroll { .. } => ("#cffafe", "cds", "Mrecord"),
        Action::Exit { .. } => ("#fecaca", "doublecircle", "Mrecord"),
    }
}

/// What a step does, in a few words.
pub fn summary(action: &Action) -> String {
    match action {
        Action::Send {
            channel,
            template,
            variants,
            ..
        } => {
            let more = if variants.is_empty() {
                String::new()
            } else {
                format!(" (+{} variants)", variants.len())
            };
            format!("send {}: {template}{more}", channel.as_str())
        }
        Action::Wait(Wait::For(span)) => format!("wait {span}"),
        Action::Wait(Wait::At(moment)) => format!("wait until {moment}"),
        Action::Wait(Wait::Until { condition, timeout }) => {
            format!("wait until {} (at most {timeout})", condition.label())
        }
        Action::Branch(condition) => format!("{}?", condition.label()),
        Action::Split => "split".to_owned(),
        Action::Tag { add, remove } => {
            let mut parts: Vec<String> = add.iter().map(|t| format!("+{t}")).collect();
            parts.extend(remove.iter().map(|t| format!("-{t}")));
            format!("tag {}", parts.join(" "))
        }
        Action::Score(points) => format!("score {points:+}"),
        Action::Handoff { queue, .. } => format!("hand off to {queue}"),
        Action::Enroll { campaign } => format!("enroll in {campaign}"),
        Action::Exit { outcome } => format!("exit: {outcome}"),
    }
}

/// The campaign's edges as (from step, to step, label): `yes`/`no`, a split's share, or how
/// long a wait lasts.
pub fn edges(campaign: &Campaign) -> Vec<(String, String, String)> {
    campaign
        .graph
        .edge_references()
        .map(|edge| {
            (
                campaign.graph[edge.source()].id.clone(),
                campaign.graph[edge.target()].id.clone(),
                edge_label(campaign, &edge),
            )
        })
        .collect()
}

fn edge_label(campaign: &Campaign, edge: &petgraph::graph::EdgeReference<'_, Edge>) -> String {
    let from = &campaign.graph[edge.source()];
    match edge.weight() {
        Edge::Yes => "yes".to_owned(),
        Edge::No => "no".to_owned(),
        Edge::Split { weight } => {
            let total: u32 = campaign
                .graph
                .edges(edge.source())
                .map(|e| match e.weight() {
                    Edge::Split { weight } => *weight,
                    _ => 0,
                })
                .sum();
            format!("{}%", (f64::from(*weight) * 100.0 / f64::from(total.max(1))).round())
        }
        Edge::Next => match &from.action {
            Action::Wait(Wait::For(span)) => format!("after {span}"),
            Action::Wait(Wait::At(moment)) => format!("at {moment}"),
            Action::Wait(Wait::Until { timeout, .. }) => format!("when true, or after {timeout}"),
            _ => String::new(),
        },
    }
}

fn with_count(
    label: String,
    campaign: &Campaign,
    edge: &petgraph::graph::EdgeReference<'_, Edge>,
    counts: Option<&EdgeCounts>,
) -> String {
    let Some(counts) = counts else {
        return label;
    };
    let key = (
        campaign.graph[edge.source()].id.clone(),
        campaign.graph[edge.target()].id.clone(),
    );
    let n = counts.get(&key).copied().unwrap_or(0);
    if label.is_empty() {
        format!("{n} leads")
    } else {
        format!("{label} ({n})")
    }
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn entry_label(campaign: &Campaign) -> String {
    match (&campaign.entry.trigger, &campaign.entry.event) {
        (super::Trigger::Event, Some(event)) => format!("on {event}"),
        (super::Trigger::Segment, _) => match &campaign.entry.when {
            Some(when) => format!("when {}", when.label()),
            None => "segment".to_owned(),
        },
        (super::Trigger::Manual, _) => "manual".to_owned(),
        (super::Trigger::Event, None) => "event".to_owned(),
    }
}

/// `notes`: a line more under a step's label (its figures), by step id.
fn dot(campaign: &Campaign, counts: Option<&EdgeCounts>, notes: Option<&StepNotes>, flavour: Flavour) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&campaign.id));
    let _ = writeln!(
        out,
        "  label={};",
        quote(&format!("{} ({})", campaign.name, campaign.version))
    );
    let _ = writeln!(out, "  node [fontname=\"Helvetica\", fontsize=12];");
    let _ = writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=10];");
    let entry_shape = if flavour == Flavour::Graphviz {
        "plaintext"
    } else {
        "box"
    };
    let _ = writeln!(
        out,
        "  \"__entry\" [shape={entry_shape}, label={}];",
        quote(&format!("entry: {}", entry_label(campaign)))
    );
    for node in campaign.graph.node_indices() {
        let step = &campaign.graph[node];
        let (fill, graphviz, layout) = look(&step.action);
        let shape = if flavour == Flavour::Graphviz { graphviz } else { layout };
        let style = if flavour == Flavour::Graphviz && matches!(step.action, Action::Send { .. }) {
            "rounded,filled"
        } else {
            "filled"
        };
        let mut label = format!("{}\n{}", step.id, summary(&step.action));
        if let Some(note) = notes.and_then(|n| n.get(&step.id)) {
            label.push('\n');
            label.push_str(note);
        }
        if shape == "Mrecord" {
            // Record labels give these characters a meaning of their own.
            label = label
                .replace(['{', '<'], "(")
                .replace(['}', '>'], ")")
                .replace('|', "/");
        }
        let _ = writeln!(
            out,
            "  {} [shape={shape}, style={}, fillcolor=\"{fill}\", label={}];",
            quote(&step.id),
            quote(style),
            quote(&label)
        );
    }
    let _ = writeln!(out, "  \"__entry\" -> {};", quote(&campaign.graph[campaign.start].id));
    for edge in campaign.graph.edge_references() {
        let label = with_count(edge_label(campaign, &edge), campaign, &edge, counts);
        let from = quote(&campaign.graph[edge.source()].id);
        let to = quote(&campaign.graph[edge.target()].id);
        if label.is_empty() {
            let _ = writeln!(out, "  {from} -> {to};");
        } else {
            let _ = writeln!(out, "  {from} -> {to} [label={}];", quote(&label));
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid's flowchart, for Markdown documents and wikis.
fn mermaid(campaign: &Campaign, counts: Option<&EdgeCounts>) -> String {
    let id = |n: petgraph::graph::NodeIndex| format!("s{}", n.index());
    // Mermaid labels are quoted; it has no escape for '"', so it becomes '#quot;'.
    let text = |s: &str| s.replace('"', "#quot;").replace('\n', "<br/>");
    let mut out = String::from("flowchart TD\n");
    let _ = writeln!(
        out,
        "  entry([\"{}\"])",
        text(&format!("entry: {}", entry_label(campaign)))
    );
    for node in campaign.graph.node_indices() {
        let step = &campaign.graph[node];
        let label = text(&format!("{}\n{}", step.id, summary(&step.action)));
        let (open, close) = match step.action {
            Action::Send { .. } => ("[", "]"),
            Action::Wait(_) => ("([", "])"),
            Action::Branch(_) | Action::Split => ("{", "}"),
            Action::Tag { .. } | Action::Score(_) => ("[/", "/]"),
            Action::Handoff { .. } | Action::Enroll { .. } => ("[[", "]]"),
            Action::Exit { .. } => ("((", "))"),
        };
        let _ = writeln!(out, "  {}{open}\"{label}\"{close}", id(node));
    }
    let _ = writeln!(out, "  entry --> {}", id(campaign.start));
    for edge in campaign.graph.edge_references() {
        let label = with_count(edge_label(campaign, &edge), campaign, &edge, counts);
        if label.is_empty() {
            let _ = writeln!(out, "  {} --> {}", id(edge.source()), id(edge.target()));
        } else {
            let _ = writeln!(
                out,
                "  {} -->|\"{}\"| {}",
                id(edge.source()),
                text(&label),
                id(edge.target())
            );
        }
    }
    out
}

/// A link laid over each step of a drawing: where it goes and what it says.
pub type StepLink<'a> = &'a (dyn Fn(&str) -> (String, String) + Sync);

/// A line of figures under each step's label, by step id.
pub type StepNotes = HashMap<String, String>;

/// The campaign as SVG with each step a link: `link(step)` gives its address and its title
/// (what a pointer's tooltip and a screen reader say); `notes` a line under a step's label.
pub fn svg_linked(
    campaign: &Campaign,
    counts: Option<&EdgeCounts>,
    notes: &StepNotes,
    link: StepLink<'_>,
) -> Result<String, String> {
    svg_drawn(campaign, counts, Some(notes), Some(link))
}

fn svg_drawn(
    campaign: &Campaign,
    counts: Option<&EdgeCounts>,
    notes: Option<&StepNotes>,
    link: Option<StepLink<'_>>,
) -> Result<String, String> {
    use layout::backends::svg::SVGWriter;
    use layout::gv::{DotParser, GraphBuilder};
    let source = dot(campaign, counts, notes, Flavour::Layout);
    // layout-rs is trusted with text we generated ourselves; should it still fail, the
    // caller gets an error, not a crashed server.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut parser = DotParser::new(&source);
        let graph = parser
            .process()
            .map_err(|e| format!("the drawing's DOT did not parse: {e}"))?;
        let mut builder = GraphBuilder::new();
        builder.visit_graph(&graph);
        let mut visual = builder.get();
        let mut writer = SVGWriter::new();
        visual.do_it(false, false, false, &mut writer);
        let mut svg = writer.finalize();
        if let Some(link) = link {
            let links = step_links(campaign, &visual, link);
            if let Some(end) = svg.rfind("</svg>") {
                svg.insert_str(end, &links);
            }
        }
        Ok(svg)
    }))
    .map_err(|_| "drawing the campaign failed; use --format dot or mermaid instead".to_owned())?
}

/// A transparent link over each laid-out step (found by the step id its label starts with).
fn step_links(campaign: &Campaign, visual: &layout::topo::layout::VisualGraph, link: StepLink<'_>) -> String {
    use layout::std_shapes::shapes::{RecordDef, ShapeKind};
    fn first_text(record: &RecordDef) -> Option<&str> {
        match record {
            RecordDef::Text(text, _) => Some(text),
            RecordDef::Array(items) => items.first().and_then(first_text),
        }
    }
    let steps: std::collections::HashSet<&str> = campaign.graph.node_weights().map(|s| s.id.as_str()).collect();
    let mut out = String::new();
    for node in visual.iter_nodes() {
        let element = visual.element(node);
        let label = match &element.shape {
            ShapeKind::Box(text) | ShapeKind::Circle(text) | ShapeKind::DoubleCircle(text) => Some(text.as_str()),
            ShapeKind::Record(record) => first_text(record),
            _ => None,
        };
        let Some(step) = label.and_then(|l| l.lines().next()).map(str::trim) else {
            continue;
        };
        if !steps.contains(step) {
            continue;
        }
        let (href, title) = link(step);
        let (top_left, _) = element.pos.bbox(false);
        let size = element.pos.size(false);
        let _ = write!(
            out,
            "<a class=\"step\" href=\"{}\" aria-label=\"{}\"><title>{}</title>\
             <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"transparent\"/></a>",
            attribute(&href),
            attribute(&title),
            attribute(&title),
            top_left.x,
            top_left.y,
            size.x,
            size.y
        );
    }
    out
}

/// Text made safe inside an XML attribute or element.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
