//! Where a cold model goes, and what it displaces: a pure decision over a
//! picture of the fleet, so every rule is unit-tested without a neuron.
//!
//! Feasible nodes are up, have enough devices, are allowed by the model's
//! `pinned_on` affinity and are big enough. A node with free memory (as it
//! reports it now, plus loads already under way) wins over one that must
//! evict; among nodes that must evict, the one displacing the least
//! (lowest priority classes, fewest models) wins. Victims are chosen by the
//! eviction strategy; pinned models, models serving requests and models
//! loading or unloading are never victims.

use cortex_common::config::gateway::EvictionStrategy;

/// One node as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeCandidate {
    pub name: String,
    pub up: bool,
    pub devices: usize,
    pub total_bytes: u64,
    /// Taken now, including loads under way.
    pub used_bytes: u64,
    pub residents: Vec<Resident>,
}

/// A model resident on a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    pub model: String,
    pub bytes: u64,
    pub priority: u32,
    pub pinned: bool,
    pub in_flight: u32,
    pub last_used_ms: u64,
    /// Loaded and not already being unloaded (or loaded).
    pub settled: bool,
}

/// The model to place.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub model: String,
    pub bytes: u64,
    pub priority: u32,
    pub min_devices: usize,
    /// Only these nodes, when set (affinity, or an admin's explicit node).
    pub only_on: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Victim {
    pub model: String,
    pub bytes: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub node: String,
    pub evict: Vec<Victim>,
    /// Why this node, for the `placement_decided` event.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Place(Plan),
    /// Room could be made once busy residents go idle or loads finish: try
    /// again shortly.
    Wait(String),
    /// No node can take the model now (all down, too small, all pinned).
    Impossible(String),
}

/// What a node could do for the wanted model.
enum NodeOutcome {
    Fits { free_after: u64 },
    Evict { victims: Vec<Victim>, cost: u64 },
    Busy(String),
    No(String),
}

pub fn plan(nodes: &[NodeCandidate], want: &Want, strategy: EvictionStrategy) -> Decision {
    let mut best: Option<((u8, u64, usize, u64), Plan)> = None;
    let mut busy = Vec::new();
    let mut refused = Vec::new();
    for node in nodes {
        match consider(node, want, strategy) {
            NodeOutcome::Fits { free_after } => {
                let key = (0u8, 0u64, 0usize, u64::MAX - free_after);
                let plan = Plan {
                    node: node.name.clone(),
                    evict: Vec::new(),
                    reason: format!(
                        "fits on {} ({} MiB free after loading)",
                        node.name,
                        free_after >> 20
                    ),
                };
                if best.as_ref().is_none_or(|(k, _)| key < *k) {
                    best = Some((key, plan));
                }
            }
            NodeOutcome::Evict { victims, cost } => {
                let key = (1u8, cost, victims.len(), 0);
                let names: Vec<&str> = victims.iter().map(|v| v.model.as_str()).collect();
                let plan = Plan {
                    node: node.name.clone(),
                    reason: format!(
                        "{} must make room ({} strategy): evicting {}",
                        node.name,
                        strategy.as_str(),
                        names.join(", ")
                    ),
                    evict: victims,
                };
                if best.as_ref().is_none_or(|(k, _)| key < *k) {
                    best = Some((key, plan));
                }
            }
            NodeOutcome::Busy(r) => busy.push(r),
            NodeOutcome::No(r) => refused.push(r),
        }
    }
    if let Some((_, plan)) = best {
        return Decision::Place(plan);
    }
    if !busy.is_empty() {
        return Decision::Wait(busy.join("; "));
    }
    if refused.is_empty() {
        return Decision::Impossible("no neuron is configured".into());
    }
    Decision::Impossible(refused.join("; "))
}

fn consider(node: &NodeCandidate, want: &Want, strategy: EvictionStrategy) -> NodeOutcome {
    let name = &node.name;
    if let Some(only) = &want.only_on
        && !only.iter().any(|n| n == name)
    {
        return NodeOutcome::No(format!("{name} is not among {}", only.join(", ")));
    }
    if !node.up {
        return NodeOutcome::No(format!("{name} is down"));
    }
    if node.devices < want.min_devices {
        return NodeOutcome::No(format!(
            "{name} has {} devices, {} needed",
            node.devices, want.min_devices
        ));
    }
    if node.total_bytes < want.bytes {
        return NodeOutcome::No(format!(
            "{name} has {} MiB in all, {} needs {} MiB",
            node.total_bytes >> 20,
            want.model,
            want.bytes >> 20
        ));
    }
    let free = node.total_bytes.saturating_sub(node.used_bytes);
    if free >= want.bytes {
        return NodeOutcome::Fits {
            free_after: free - want.bytes,
        };
    }
    let missing = want.bytes - free;
    let eligible = |r: &&Resident| {
        !r.pinned
            && r.model != want.model
            && match strategy {
                EvictionStrategy::Lru => true,
                // Classes: a model displaces its own class or lower (>=).
                EvictionStrategy::Priority => want.priority >= r.priority,
            }
    };
    let mut ready: Vec<&Resident> = node
        .residents
        .iter()
        .filter(eligible)
        .filter(|r| r.settled && r.in_flight == 0)
        .collect();
    order_victims(&mut ready, strategy);
    let mut victims = Vec::new();
    let mut gained = 0u64;
    for r in ready {
        if gained >= missing {
            break;
        }
        gained += r.bytes;
        victims.push(Victim {
            model: r.model.clone(),
            bytes: r.bytes,
            reason: victim_reason(r, strategy),
        });
    }
    if gained >= missing {
        let cost = victims
            .iter()
            .map(|v| {
                node.residents
                    .iter()
                    .find(|r| r.model == v.model)
                    .map(|r| r.priority as u64)
                    .unwrap_or(0)
            })
            .sum();
        return NodeOutcome::Evict { victims, cost };
    }
    // Would waiting help? Count what busy (serving, loading) eligible
    // residents would free once they settle.
    let later: u64 = node
        .residents
        .iter()
        .filter(eligible)
        .filter(|r| !(r.settled && r.in_flight == 0))
        .map(|r| r.bytes)
        .sum();
    if gained + later >= missing {
        return NodeOutcome::Busy(format!(
            "{name} needs {} MiB more; the residents that could give it are busy",
            missing >> 20
        ));
    }
    NodeOutcome::No(format!(
        "{name} cannot free {} MiB: the rest is pinned{}",
        missing >> 20,
        match strategy {
            EvictionStrategy::Priority => " or of a higher priority class",
            EvictionStrategy::Lru => "",
        }
    ))
}

/// Victims first-to-go first.
pub fn order_victims(residents: &mut [&Resident], strategy: EvictionStrategy) {
    match strategy {
        EvictionStrategy::Lru => residents.sort_by(|a, b| {
            a.last_used_ms
                .cmp(&b.last_used_ms)
                .then(b.bytes.cmp(&a.bytes))
                .then(a.model.cmp(&b.model))
        }),
        EvictionStrategy::Priority => residents.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then(a.last_used_ms.cmp(&b.last_used_ms))
                .then(a.model.cmp(&b.model))
        }),
    }
}

fn victim_reason(r: &Resident, strategy: EvictionStrategy) -> String {
    match strategy {
        EvictionStrategy::Lru => {
            format!("least recently used (last used at {} ms)", r.last_used_ms)
        }
        EvictionStrategy::Priority => format!(
            "lowest priority class ({}), least recently used within it",
            r.priority
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn resident(model: &str, priority: u32, last_used_ms: u64) -> Resident {
        Resident {
            model: model.into(),
            bytes: 100 * MIB,
            priority,
            pinned: false,
            in_flight: 0,
            last_used_ms,
            settled: true,
        }
    }

    fn node(name: &str, total_mb: u64, residents: Vec<Resident>) -> NodeCandidate {
        NodeCandidate {
            name: name.into(),
            up: true,
            devices: 1,
            total_bytes: total_mb * MIB,
            used_bytes: residents.iter().map(|r| r.bytes).sum(),
            residents,
        }
    }

    fn want(model: &str, priority: u32) -> Want {
        Want {
            model: model.into(),
            bytes: 100 * MIB,
            priority,
            min_devices: 1,
            only_on: None,
        }
    }

    fn victims(d: &Decision) -> Vec<String> {
        match d {
            Decision::Place(p) => p.evict.iter().map(|v| v.model.clone()).collect(),
            other => panic!("expected a placement, got {other:?}"),
        }
    }

    #[test]
    fn lru_and_priority_choose_different_victims() {
        // `old` is the least recently used but of a high class; `cheap` was
        // used just now but is of a low class.
        let nodes = vec![node(
            "a",
            250,
            vec![resident("old", 200, 1_000), resident("cheap", 50, 9_000)],
        )];
        let w = want("new", 100);
        assert_eq!(
            victims(&plan(&nodes, &w, EvictionStrategy::Lru)),
            vec!["old"]
        );
        assert_eq!(
            victims(&plan(&nodes, &w, EvictionStrategy::Priority)),
            vec!["cheap"]
        );
    }

    #[test]
    fn equal_priority_classes_can_swap() {
        let nodes = vec![node("a", 150, vec![resident("x", 100, 1)])];
        let d = plan(&nodes, &want("y", 100), EvictionStrategy::Priority);
        assert_eq!(victims(&d), vec!["x"]);
    }

    #[test]
    fn lower_class_cannot_displace_higher() {
        let nodes = vec![node("a", 150, vec![resident("x", 200, 1)])];
        let d = plan(&nodes, &want("y", 100), EvictionStrategy::Priority);
        assert!(matches!(d, Decision::Impossible(_)), "{d:?}");
        // LRU ignores classes.
        let d = plan(&nodes, &want("y", 100), EvictionStrategy::Lru);
        assert_eq!(victims(&d), vec!["x"]);
    }

    #[test]
    fn pinned_models_are_never_victims() {
        let mut pinned = resident("keep", 0, 0);
        pinned.pinned = true;
        let nodes = vec![node("a", 250, vec![pinned, resident("go", 500, 10)])];
        for s in [EvictionStrategy::Lru, EvictionStrategy::Priority] {
            let d = plan(&nodes, &want("new", 1000), s);
            assert_eq!(victims(&d), vec!["go"], "{s:?}");
        }
        let mut only = resident("keep", 0, 0);
        only.pinned = true;
        let nodes = vec![node("a", 150, vec![only])];
        let d = plan(&nodes, &want("new", 1000), EvictionStrategy::Lru);
        assert!(matches!(d, Decision::Impossible(_)), "{d:?}");
    }

    #[test]
    fn busy_residents_mean_wait_not_impossible() {
        let mut serving = resident("busy", 1, 1);
        serving.in_flight = 2;
        let nodes = vec![node("a", 150, vec![serving])];
        let d = plan(&nodes, &want("new", 100), EvictionStrategy::Lru);
        assert!(matches!(d, Decision::Wait(_)), "{d:?}");
    }

    #[test]
    fn free_memory_beats_eviction_and_more_free_wins() {
        let nodes = vec![
            node("full", 200, vec![resident("x", 1, 1), resident("y", 1, 2)]),
            node("roomy", 1000, vec![]),
            node("tight", 300, vec![resident("z", 1, 1)]),
        ];
        match plan(&nodes, &want("new", 100), EvictionStrategy::Lru) {
            Decision::Place(p) => {
                assert_eq!(p.node, "roomy");
                assert!(p.evict.is_empty());
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn cheapest_displacement_wins() {
        let nodes = vec![
            node("a", 100, vec![resident("hi", 90, 1)]),
            node("b", 100, vec![resident("lo", 10, 1)]),
        ];
        match plan(&nodes, &want("new", 100), EvictionStrategy::Priority) {
            Decision::Place(p) => assert_eq!(
                (p.node.as_str(), victims(&Decision::Place(p.clone()))),
                ("b", vec!["lo".to_string()])
            ),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn down_small_and_excluded_nodes_are_refused() {
        let mut down = node("down", 1000, vec![]);
        down.up = false;
        let small = node("small", 50, vec![]);
        let other = node("other", 1000, vec![]);
        let mut w = want("new", 100);
        w.only_on = Some(vec!["down".into(), "small".into()]);
        match plan(&[down, small, other], &w, EvictionStrategy::Lru) {
            Decision::Impossible(r) => {
                assert!(r.contains("down is down"), "{r}");
                assert!(r.contains("small has 50 MiB"), "{r}");
            }
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            plan(&[], &w, EvictionStrategy::Lru),
            Decision::Impossible(_)
        ));
    }
}
