//! Rise and fall: how a run of check results becomes a node's reported status.
//!
//! A node starts unknown. It is reported up after `rise` consecutive passes and down
//! after `fall` consecutive failures; a result that does not complete such a run changes
//! nothing, so one lost packet does not flap a node. Only real changes come out: a node
//! already up that passes again reports nothing. An unknown node that fails `fall` times
//! is reported down (the host may still hold it up from an earlier run of the plugin).

use plugin_sdk::NodeStatus;

/// One node's run of results and the status last reported.
#[derive(Debug, Clone)]
pub struct Health {
    rise: u32,
    fall: u32,
    reported: Option<NodeStatus>,
    passes: u32,
    failures: u32,
}

impl Health {
    /// A node not yet reported; `rise` and `fall` are at least 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        Health {
            rise: rise.max(1),
            fall: fall.max(1),
            reported: None,
            passes: 0,
            failures: 0,
        }
    }

    /// Records one check result; returns the new status when it changes.
    pub fn record(&mut self, passed: bool) -> Option<NodeStatus> {
        let (next, run, needed) = if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            (NodeStatus::Up, self.passes, self.rise)
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            (NodeStatus::Down, self.failures, self.fall)
        };
        if run >= needed && self.reported != Some(next) {
            self.reported = Some(next);
            return Some(next);
        }
        None
    }

    /// The status last reported, if any.
    pub fn reported(&self) -> Option<NodeStatus> {
        self.reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeStatus::{Down, Up};

    fn run(rise: u32, fall: u32, results: &str) -> Vec<Option<NodeStatus>> {
        let mut h = Health::new(rise, fall);
        results.chars().map(|c| h.record(c == '+')).collect()
    }

    #[test]
    fn up_after_rise_passes_down_after_fall_failures_only_on_flips() {
        assert_eq!(
            run(2, 2, "++++--+-++"),
            [
                None,
                Some(Up),
                None,
                None,
                None,
                Some(Down),
                None,
                None,
                None,
                Some(Up)
            ]
        );
    }

    #[test]
    fn nothing_is_up_before_the_first_rise_passes() {
        assert_eq!(run(3, 2, "+-++-"), [None; 5]);
        assert_eq!(run(3, 2, "+-+++")[4], Some(Up));
    }

    #[test]
    fn an_unknown_node_that_keeps_failing_is_reported_down_once() {
        assert_eq!(run(2, 3, "-----"), [None, None, Some(Down), None, None]);
        assert_eq!(run(1, 1, "+-+"), [Some(Up), Some(Down), Some(Up)]);
    }
}
