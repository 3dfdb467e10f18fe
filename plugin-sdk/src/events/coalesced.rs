//! The count of a watcher's updates merged while they waited, and its reports to the
//! host.
//!
//! While the host is slower than a watcher, its updates wait in the sender's backlog,
//! latest per node: a node's update that a later one replaces there never goes out on
//! its own. That is by design (the final state is right), but it is worth knowing, so
//! the sender counts those updates (a full list that replaces a waiting one counts the
//! nodes it replaced too) and the SDK reports the running total to the host with a
//! `Coalesced` notice, which the host keeps in the endpoint's stats.
//!
//! Reports cost no idle wake-ups: the sender's flusher, which runs only while updates
//! wait, reports once the backlog has drained, at most once per [`REPORT_EVERY`] (a
//! report held back by that limit is sent when it is due, by one timed wait); the last
//! total goes when the endpoint ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where reports go: a function taking the running total.
pub(crate) type Report = Arc<dyn Fn(u64) + Send + Sync>;

/// The least time between two reports.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What a sender merged, and what it has told.
#[derive(Default)]
pub(crate) struct Coalesced {
    total: u64,
    reported: u64,
    last: Option<Instant>,
    report: Option<Report>,
}

/// What [`Coalesced::poll`] says to do.
pub(crate) enum ReportNow {
    /// Nothing to report.
    Nothing,
    /// A report is owed, due at this instant.
    Later(Instant),
    /// Report this total now, with this function.
    Now(Report, u64),
}

impl Coalesced {
    /// Sets where reports go.
    pub(crate) fn set_report(&mut self, report: Report) {
        self.report = Some(report);
    }

    /// Counts `n` updates merged.
    pub(crate) fn add(&mut self, n: u64) {
        self.total += n;
    }

    /// The running total.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Whether the host has not heard the latest total.
    pub(crate) fn is_owed(&self) -> bool {
        self.report.is_some() && self.total != self.reported
    }

    /// What to report at `now`, within the rate limit; a report taken is counted as
    /// sent.
    pub(crate) fn poll(&mut self, now: Instant) -> ReportNow {
        if !self.is_owed() {
            return ReportNow::Nothing;
        }
        match self.last.map(|last| last + REPORT_EVERY) {
            Some(due) if due > now => ReportNow::Later(due),
            _ => self.take(now),
        }
    }

    /// The report owed, if any, regardless of the rate limit (the endpoint is ending).
    pub(crate) fn take_final(&mut self) -> Option<(Report, u64)> {
        match self.is_owed().then(|| self.take(Instant::now())) {
            Some(ReportNow::Now(report, total)) => Some((report, total)),
            _ => None,
        }
    }

    fn take(&mut self, now: Instant) -> ReportNow {
        let Some(report) = self.report.clone() else {
            return ReportNow::Nothing;
        };
        self.reported = self.total;
        self.last = Some(now);
        ReportNow::Now(report, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_owed_after_a_change_and_rate_limited() {
        let mut c = Coalesced::default();
        c.add(3);
        assert!(
            matches!(c.poll(Instant::now()), ReportNow::Nothing),
            "nowhere to report"
        );
        c.set_report(Arc::new(|_| {}));
        let t0 = Instant::now();
        assert!(matches!(c.poll(t0), ReportNow::Now(_, 3)));
        assert!(matches!(c.poll(t0), ReportNow::Nothing), "told already");
        c.add(2);
        match c.poll(t0 + Duration::from_millis(10)) {
            ReportNow::Later(due) => assert_eq!(due, t0 + REPORT_EVERY),
            _ => panic!("the second report waits for its turn"),
        }
        assert!(matches!(c.poll(t0 + REPORT_EVERY), ReportNow::Now(_, 5)));
        c.add(1);
        assert!(
            matches!(c.take_final(), Some((_, 6))),
            "the last one ignores the limit"
        );
        assert!(c.take_final().is_none());
    }
}
