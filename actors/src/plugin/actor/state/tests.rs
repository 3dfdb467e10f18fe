//! The plugin's life without actix: phases, deferred failures, the budget and backoff.

use std::time::{Duration, Instant};

use super::*;

fn policy(max_restarts: u32) -> SupervisionPolicy {
    SupervisionPolicy {
        restart_backoff_min: Duration::from_millis(100),
        restart_backoff_max: Duration::from_millis(400),
        max_restarts,
        restart_window: Duration::from_secs(60),
        ..SupervisionPolicy::default()
    }
}

/// A plugin booted and running since `now`.
fn running(max_restarts: u32, now: Instant) -> PluginLife {
    let mut life = PluginLife::new(&policy(max_restarts));
    life.installed();
    assert!(life.may_start_supervising());
    assert_eq!(life.now_running(now), None);
    life
}

fn delay_of(verdict: Verdict) -> Duration {
    match verdict {
        Verdict::Restart { delay, .. } => delay,
        other => panic!("expected a restart, got {other:?}"),
    }
}

fn within_jitter(delay: Duration, base_ms: u64) -> bool {
    let base = Duration::from_millis(base_ms);
    delay >= base.mul_f64(0.8) && delay <= base.mul_f64(1.2)
}

#[test]
fn failures_before_boot_while_stopping_or_failed_are_ignored() {
    let now = Instant::now();
    let mut life = PluginLife::new(&policy(5));
    assert_eq!(life.fail("early", now), Verdict::Ignore);
    assert!(!life.may_start_supervising(), "nothing installed yet");

    let mut life = running(5, now);
    life.stopping();
    assert_eq!(life.fail("expected while stopping", now), Verdict::Ignore);
    assert!(!life.may_restart());
}

#[test]
fn a_failure_while_starting_is_held_until_the_plugin_runs() {
    let now = Instant::now();
    let mut life = PluginLife::new(&policy(5));
    life.installed();
    assert_eq!(life.fail("first", now), Verdict::Defer);
    assert_eq!(life.fail("second", now), Verdict::Defer);
    assert_eq!(life.phase(), Phase::Booting);
    assert_eq!(
        life.now_running(now),
        Some("first".to_owned()),
        "the first reason wins"
    );
    assert_eq!(life.phase(), Phase::Running);
    assert_eq!(life.now_running(now), None, "acted on once");
}

#[test]
fn releasing_an_incarnation_forgets_its_held_failure() {
    let now = Instant::now();
    let mut life = PluginLife::new(&policy(5));
    life.installed();
    assert_eq!(life.fail("held", now), Verdict::Defer);
    life.released();
    assert_eq!(life.fail("after release", now), Verdict::Ignore);
    life.installed();
    assert_eq!(life.now_running(now), None);
}

#[test]
fn restarts_back_off_doubling_until_the_budget_is_spent_then_the_plugin_is_given_up() {
    let t0 = Instant::now();
    let mut life = running(3, t0);
    let mut delays = Vec::new();
    for i in 0..3u64 {
        let now = t0 + Duration::from_secs(i);
        match life.fail("crash", now) {
            Verdict::Restart { delay, attempt } => {
                assert_eq!(attempt, i as usize + 1);
                delays.push(delay);
            }
            other => panic!("restart {i}: {other:?}"),
        }
        assert!(life.may_restart());
        life.released();
        life.installed();
        assert_eq!(life.now_running(now), None);
    }
    assert!(within_jitter(delays[0], 100), "{delays:?}");
    assert!(within_jitter(delays[1], 200), "{delays:?}");
    assert!(within_jitter(delays[2], 400), "{delays:?}");
    assert_eq!(
        life.fail("once too often", t0 + Duration::from_secs(4)),
        Verdict::GiveUp
    );
    assert_eq!(life.phase(), Phase::Failed);
    assert_eq!(life.fail("after the end", t0), Verdict::Ignore);
}

#[test]
fn a_plugin_healthy_for_a_whole_window_starts_again_from_the_shortest_backoff() {
    let t0 = Instant::now();
    let mut life = running(10, t0);
    delay_of(life.fail("a", t0));
    life.installed();
    life.now_running(t0);
    let second = delay_of(life.fail("b", t0));
    assert!(within_jitter(second, 200), "{second:?}");
    life.installed();
    life.now_running(t0);
    let later = t0 + Duration::from_secs(61);
    let reset = delay_of(life.fail("c", later));
    assert!(within_jitter(reset, 100), "{reset:?}");
}

#[test]
fn a_failed_restart_counts_and_is_retried() {
    let t0 = Instant::now();
    let mut life = running(2, t0);
    delay_of(life.fail("crash", t0));
    let verdict = life.restart_failed("no such file", t0);
    assert!(
        matches!(verdict, Verdict::Restart { attempt: 2, .. }),
        "{verdict:?}"
    );
    assert_eq!(life.restart_failed("again", t0), Verdict::GiveUp);
}

#[test]
fn generations_tell_incarnations_apart() {
    let mut life = PluginLife::new(&policy(5));
    let first = life.installed();
    assert!(life.is_current(first));
    let second = life.installed();
    assert!(!life.is_current(first) && life.is_current(second));
}

#[test]
fn one_ping_at_a_time_and_only_while_running() {
    let now = Instant::now();
    let mut life = PluginLife::new(&policy(5));
    assert!(!life.ping_due(), "not running yet");
    let mut life = running(5, now);
    assert!(life.ping_due());
    assert!(!life.ping_due(), "one in flight");
    life.ping_done();
    assert!(life.ping_due());
    assert_eq!(life.after_restart(None, now), AfterPanic::Nothing);
    assert!(life.ping_due(), "a restart drops the ping in flight");
}

#[test]
fn a_panic_fails_a_running_plugin_and_tears_down_one_that_is_not_supervised() {
    let now = Instant::now();
    let mut life = running(5, now);
    let after = life.after_restart(Some("boom".into()), now);
    assert!(
        matches!(
            after,
            AfterPanic::Failed(Verdict::Restart { attempt: 1, .. })
        ),
        "{after:?}"
    );
    let mut booting = PluginLife::new(&policy(5));
    assert_eq!(
        booting.after_restart(Some("boom".into()), now),
        AfterPanic::TearDown
    );
}
