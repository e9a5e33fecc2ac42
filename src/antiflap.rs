//! Anti-flap: which of the desired announcements to announce now, holding
//! withdrawals back so that an address flapping in and out of the desired set
//! (a pod flapping readiness) does not make the routers rehash every few
//! seconds.
//!
//! Owns: the hold rules and their counters. Pure: the current time is passed
//! in, nothing here reads a clock, sleeps or spawns; the caller calls
//! [`AntiFlap::update`] whenever the desired set changes and again at
//! [`AntiFlap::next_deadline`]. Must not touch: netlink or BGP (the caller
//! applies the returned set) and the policy that made the desired set.
//!
//! # Rules
//!
//! For each address (an address may carry one announcement; the rules work
//! per address, so a change of attributes is not a flap):
//!
//! 1. An address that enters the desired set is announced at once.
//!    Announcements are never delayed: announcing an address with a ready
//!    endpoint cannot blackhole anything.
//! 2. While an address stays desired, its announcement follows the desired
//!    one at once (new communities, MED, local-pref pass through), except
//!    a change of its weight alone (the link-bandwidth community, weighted
//!    ECMP): that waits until `weight_delay` after the first such change
//!    the routers have not seen yet, then the latest weight goes out. While
//!    weight changes keep coming (a rollout), each wait is twice the one
//!    before, up to [`WEIGHT_BACKOFF`] times `weight_delay`; after that long
//!    without one, the next waits `weight_delay` again. So a lone pod
//!    reaches the routers in `weight_delay`, and a rollout of 50 pods over
//!    10 s costs them five UPDATEs per address, not 50 (nor 20); any other
//!    change, or the address's withdrawal, ends the wait at once.
//! 3. An address that leaves the desired set stays announced, with its last
//!    attributes, until the later of `left + withdraw_delay` and
//!    `announced + min_up` (`left`: when it left; `announced`: when it was
//!    last announced after being withdrawn). Then it is withdrawn.
//! 4. An address that comes back while its withdrawal is held is simply kept:
//!    the routers never saw it go (a suppressed withdrawal), and its
//!    `announced` time is unchanged.
//! 5. A new configuration applies to withdrawals already held: their release
//!    time is recomputed from the new values at the next `update`.
//!
//! See [`crate::config::AntiFlapConfig`] for why the defaults hold so little
//! (`externalTrafficPolicy: Local`: a held withdrawal blackholes traffic).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::config::AntiFlapConfig;
use crate::model::Announcement;

/// The anti-flap state: every address announced now, with when it was
/// announced and, if it left the desired set, when.
#[derive(Debug)]
pub struct AntiFlap {
    config: AntiFlapConfig,
    addresses: BTreeMap<IpAddr, Tracked>,
    counters: Counters,
    metrics: Metrics,
}

#[derive(Debug)]
struct Tracked {
    /// What is announced for this address (normally one announcement).
    announcements: BTreeSet<Announcement>,
    /// When it was announced after not being announced.
    announced: Instant,
    /// When it left the desired set, while its withdrawal is held.
    left: Option<Instant>,
    /// When a waiting weight-only change goes out (rule 2) and how long it
    /// waits in all, while one waits.
    weight_pending: Option<(Instant, Duration)>,
    /// When the last weight-only change went out and how long it had
    /// waited: the next one waits twice that while they keep coming.
    weight_sent: Option<(Instant, Duration)>,
}

/// The longest wait of a weight-only change, in units of `weight_delay`
/// (4 s at the default 500 ms), and the quiet time after which waits start
/// from `weight_delay` again.
pub const WEIGHT_BACKOFF: u32 = 8;

/// Why a withdrawal is held (shown in `/status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// The address has not yet been announced for `anti_flap.min_up`.
    MinUp,
    /// The address left the desired set less than `anti_flap.withdraw_delay`
    /// ago.
    WithdrawDelay,
}

impl HoldReason {
    /// The reason in words, for logs and `herald status`.
    pub fn describe(self) -> &'static str {
        match self {
            HoldReason::MinUp => "announced less than anti_flap.min_up ago",
            HoldReason::WithdrawDelay => {
                "left the desired set less than anti_flap.withdraw_delay ago"
            }
        }
    }
}

/// An address still announced although it is no longer desired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldAddress {
    pub address: IpAddr,
    /// When it is withdrawn unless it comes back before.
    pub until: Instant,
    /// The rule that holds it until then (the later of the two).
    pub reason: HoldReason,
}

impl HeldAddress {
    /// How long it stays held after `now` (for `/status`, which shows
    /// durations, not instants).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.until.saturating_duration_since(now)
    }
}

/// What anti-flap did since it was created (for tests and `/status`; the
/// same counts go to [`Metrics`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Withdrawals that were held back instead of sent at once.
    pub withdrawals_delayed: u64,
    /// Held withdrawals that never happened: the address came back first.
    pub withdrawals_suppressed: u64,
}

impl AntiFlap {
    /// Anti-flap with its own (unregistered) metrics.
    pub fn new(config: AntiFlapConfig) -> Self {
        AntiFlap::with_metrics(config, Metrics::default())
    }

    /// Anti-flap counting into `metrics` (from [`Metrics::register`]).
    pub fn with_metrics(config: AntiFlapConfig, metrics: Metrics) -> Self {
        AntiFlap {
            config,
            addresses: BTreeMap::new(),
            counters: Counters::default(),
            metrics,
        }
    }

    /// Replaces the settings; withdrawals already held are re-timed with the
    /// new values at the next [`update`](Self::update) (call it now).
    pub fn set_config(&mut self, config: AntiFlapConfig) {
        self.config = config;
    }

    /// The settings in force.
    pub fn config(&self) -> &AntiFlapConfig {
        &self.config
    }

    /// Takes the desired set at `now` and returns what to announce now: the
    /// desired set plus the addresses whose withdrawal is held.
    pub fn update(
        &mut self,
        now: Instant,
        desired: &BTreeSet<Announcement>,
    ) -> BTreeSet<Announcement> {
        let mut by_address: BTreeMap<IpAddr, BTreeSet<Announcement>> = BTreeMap::new();
        for announcement in desired {
            by_address
                .entry(announcement.address)
                .or_default()
                .insert(announcement.clone());
        }
        // Rule 3 and 5: addresses no longer desired are held or released.
        let mut delayed = 0;
        self.addresses.retain(|address, tracked| {
            if by_address.contains_key(address) {
                return true;
            }
            let newly_left = tracked.left.is_none();
            let left = *tracked.left.get_or_insert(now);
            let (until, _) = release(&self.config, tracked.announced, left);
            let keep = until > now;
            if keep && newly_left {
                delayed += 1;
            }
            keep
        });
        // Rules 1, 2 and 4: desired addresses are announced as desired.
        let mut suppressed = 0;
        for (address, announcements) in by_address {
            match self.addresses.get_mut(&address) {
                Some(tracked) => {
                    if tracked.left.take().is_some() {
                        suppressed += 1;
                    }
                    if tracked.announcements == announcements {
                        tracked.weight_pending = None;
                    } else if weight_only_change(&tracked.announcements, &announcements)
                        && !self.config.weight_delay.is_zero()
                    {
                        let base = self.config.weight_delay;
                        let longest = base.saturating_mul(WEIGHT_BACKOFF);
                        let (due, wait) = *tracked.weight_pending.get_or_insert_with(|| {
                            // Still in a run of weight changes: twice the
                            // last wait; after a quiet spell: the base.
                            let wait = match tracked.weight_sent {
                                Some((sent, waited))
                                    if now.saturating_duration_since(sent) < longest =>
                                {
                                    waited.saturating_mul(2).min(longest)
                                }
                                _ => base,
                            };
                            (after(now, wait), wait)
                        });
                        if due <= now {
                            tracked.announcements = announcements;
                            tracked.weight_pending = None;
                            tracked.weight_sent = Some((now, wait));
                        }
                    } else {
                        tracked.announcements = announcements;
                        tracked.weight_pending = None;
                    }
                }
                None => {
                    self.addresses.insert(
                        address,
                        Tracked {
                            announcements,
                            announced: now,
                            left: None,
                            weight_pending: None,
                            weight_sent: None,
                        },
                    );
                }
            }
        }
        self.count(delayed, suppressed);
        self.announced()
    }

    fn count(&mut self, delayed: u64, suppressed: u64) {
        self.counters.withdrawals_delayed += delayed;
        self.counters.withdrawals_suppressed += suppressed;
        self.metrics.withdrawals_delayed.inc_by(delayed);
        self.metrics.withdrawals_suppressed.inc_by(suppressed);
        let held = self.addresses.values().filter(|t| t.left.is_some()).count();
        self.metrics
            .held_addresses
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// What is announced now (the result of the last `update`).
    pub fn announced(&self) -> BTreeSet<Announcement> {
        self.addresses
            .values()
            .flat_map(|tracked| tracked.announcements.iter().cloned())
            .collect()
    }

    /// When the next held withdrawal or waiting weight change is due: call
    /// `update` again then (with the same desired set if nothing changed).
    /// `None` while nothing is held or waits.
    pub fn next_deadline(&self) -> Option<Instant> {
        let weights = self
            .addresses
            .values()
            .filter_map(|tracked| tracked.weight_pending.map(|(due, _)| due));
        self.held()
            .into_iter()
            .map(|held| held.until)
            .chain(weights)
            .min()
    }

    /// How many addresses have a weight change waiting (rule 2).
    pub fn weights_pending(&self) -> usize {
        self.addresses
            .values()
            .filter(|tracked| tracked.weight_pending.is_some())
            .count()
    }

    /// The addresses announced although no longer desired, with until when
    /// and why, in address order.
    pub fn held(&self) -> Vec<HeldAddress> {
        self.addresses
            .iter()
            .filter_map(|(address, tracked)| {
                let left = tracked.left?;
                let (until, reason) = release(&self.config, tracked.announced, left);
                Some(HeldAddress {
                    address: *address,
                    until,
                    reason,
                })
            })
            .collect()
    }

    /// What anti-flap did so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

/// Whether two announcement sets of one address differ in nothing but
/// their link bandwidth (rule 2).
fn weight_only_change(before: &BTreeSet<Announcement>, after: &BTreeSet<Announcement>) -> bool {
    let without = |set: &BTreeSet<Announcement>| -> BTreeSet<Announcement> {
        set.iter()
            .map(|a| {
                let mut a = a.clone();
                a.attributes.link_bandwidth = None;
                a
            })
            .collect()
    };
    without(before) == without(after)
}

/// When an address announced at `announced` that left at `left` is
/// withdrawn, and which rule decides it (rule 3).
fn release(config: &AntiFlapConfig, announced: Instant, left: Instant) -> (Instant, HoldReason) {
    let by_min_up = after(announced, config.min_up);
    let by_delay = after(left, config.withdraw_delay);
    if by_min_up > by_delay {
        (by_min_up, HoldReason::MinUp)
    } else {
        (by_delay, HoldReason::WithdrawDelay)
    }
}

/// `at + wait`, saturating far in the future instead of panicking.
fn after(at: Instant, wait: Duration) -> Instant {
    at.checked_add(wait).unwrap_or(at)
}

/// Anti-flap's metrics (catalogue: docs/metrics.md).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub withdrawals_delayed: Counter,
    pub withdrawals_suppressed: Counter,
    pub held_addresses: Gauge,
}

impl Metrics {
    /// Registers anti-flap's metrics on the `herald`-prefixed registry.
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics::default();
        registry.register(
            "antiflap_withdrawals_delayed",
            "Withdrawals held back by anti_flap (min_up or withdraw_delay) instead of sent at once",
            metrics.withdrawals_delayed.clone(),
        );
        registry.register(
            "antiflap_withdrawals_suppressed",
            "Held withdrawals that never reached the routers because the address became desired again",
            metrics.withdrawals_suppressed.clone(),
        );
        registry.register(
            "antiflap_held_addresses",
            "Addresses announced although no longer desired, while anti_flap holds their withdrawal",
            metrics.held_addresses.clone(),
        );
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Community, RouteAttributes};

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn config(min_up: u64, withdraw_delay: u64) -> AntiFlapConfig {
        AntiFlapConfig {
            min_up: secs(min_up),
            withdraw_delay: secs(withdraw_delay),
            weight_delay: Duration::ZERO,
        }
    }

    fn ann(address: &str) -> Announcement {
        Announcement {
            address: address.parse().unwrap(),
            attributes: RouteAttributes::default(),
        }
    }

    fn with_community(address: &str, community: u32) -> Announcement {
        let mut a = ann(address);
        a.attributes.communities.insert(Community(community));
        a
    }

    fn set(items: &[Announcement]) -> BTreeSet<Announcement> {
        items.iter().cloned().collect()
    }

    const A: &str = "203.0.113.10";
    const B: &str = "2001:db8:ffff::10";

    #[test]
    fn a_new_desired_address_is_announced_at_once() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(60, 60));
        let desired = set(&[ann(A), ann(B)]);
        assert_eq!(flap.update(t0, &desired), desired);
        assert_eq!(flap.next_deadline(), None);
        assert_eq!(flap.held(), vec![]);
    }

    #[test]
    fn an_address_up_longer_than_min_up_is_withdrawn_at_once_without_withdraw_delay() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(5, 0));
        flap.update(t0, &set(&[ann(A)]));
        assert_eq!(flap.update(t0 + secs(5), &set(&[])), set(&[]));
        assert_eq!(flap.counters(), Counters::default());
        assert_eq!(flap.next_deadline(), None);
    }

    #[test]
    fn a_withdrawal_before_min_up_is_held_until_min_up_has_passed() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(5, 0));
        flap.update(t0, &set(&[ann(A)]));
        assert_eq!(flap.update(t0 + secs(2), &set(&[])), set(&[ann(A)]));
        assert_eq!(flap.next_deadline(), Some(t0 + secs(5)));
        assert_eq!(
            flap.held(),
            vec![HeldAddress {
                address: A.parse().unwrap(),
                until: t0 + secs(5),
                reason: HoldReason::MinUp,
            }]
        );
        assert_eq!(flap.held()[0].remaining(t0 + secs(3)), secs(2));
        // Called early: still held.
        assert_eq!(flap.update(t0 + secs(4), &set(&[])), set(&[ann(A)]));
        // At the deadline: withdrawn.
        assert_eq!(flap.update(t0 + secs(5), &set(&[])), set(&[]));
        assert_eq!(flap.next_deadline(), None);
        assert_eq!(flap.counters().withdrawals_delayed, 1);
        assert_eq!(flap.counters().withdrawals_suppressed, 0);
    }

    #[test]
    fn withdraw_delay_holds_an_address_after_it_left_the_desired_set() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(0, 3));
        flap.update(t0, &set(&[ann(A), ann(B)]));
        let left = t0 + secs(100);
        assert_eq!(flap.update(left, &set(&[ann(B)])), set(&[ann(A), ann(B)]));
        let held = flap.held();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].until, left + secs(3));
        assert_eq!(held[0].reason, HoldReason::WithdrawDelay);
        assert_eq!(flap.update(left + secs(3), &set(&[ann(B)])), set(&[ann(B)]));
    }

    #[test]
    fn the_later_of_min_up_and_withdraw_delay_decides_and_is_named() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(10, 3));
        flap.update(t0, &set(&[ann(A)]));
        flap.update(t0 + secs(1), &set(&[]));
        assert_eq!(flap.held()[0].until, t0 + secs(10));
        assert_eq!(flap.held()[0].reason, HoldReason::MinUp);
        flap.update(t0 + secs(10), &set(&[]));
        // Up for long now; the withdraw delay decides.
        flap.update(t0 + secs(20), &set(&[ann(A)]));
        flap.update(t0 + secs(40), &set(&[]));
        assert_eq!(flap.held()[0].until, t0 + secs(43));
        assert_eq!(flap.held()[0].reason, HoldReason::WithdrawDelay);
    }

    #[test]
    fn an_address_that_comes_back_while_held_is_never_withdrawn_and_counts_as_suppressed() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(5, 0));
        flap.update(t0, &set(&[ann(A)]));
        assert_eq!(flap.update(t0 + secs(1), &set(&[])), set(&[ann(A)]));
        assert_eq!(flap.update(t0 + secs(2), &set(&[ann(A)])), set(&[ann(A)]));
        assert_eq!(flap.held(), vec![]);
        assert_eq!(
            flap.counters(),
            Counters {
                withdrawals_delayed: 1,
                withdrawals_suppressed: 1,
            }
        );
    }

    #[test]
    fn coming_back_while_held_keeps_the_first_announcement_time() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(5, 0));
        flap.update(t0, &set(&[ann(A)]));
        flap.update(t0 + secs(1), &set(&[]));
        flap.update(t0 + secs(2), &set(&[ann(A)]));
        // Up since t0 (never withdrawn): leaving at 6 s is past min_up.
        assert_eq!(flap.update(t0 + secs(6), &set(&[])), set(&[]));
    }

    #[test]
    fn an_address_withdrawn_and_desired_again_starts_a_new_min_up() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(5, 0));
        flap.update(t0, &set(&[ann(A)]));
        flap.update(t0 + secs(10), &set(&[]));
        assert_eq!(flap.update(t0 + secs(11), &set(&[ann(A)])), set(&[ann(A)]));
        assert_eq!(flap.update(t0 + secs(12), &set(&[])), set(&[ann(A)]));
        assert_eq!(flap.next_deadline(), Some(t0 + secs(16)));
    }

    #[test]
    fn an_attribute_change_of_an_address_that_stays_desired_passes_through_at_once() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(60, 60));
        flap.update(t0, &set(&[with_community(A, 1)]));
        let changed = set(&[with_community(A, 2)]);
        assert_eq!(flap.update(t0 + secs(1), &changed), changed);
        assert_eq!(flap.held(), vec![]);
        assert_eq!(flap.counters(), Counters::default());
    }

    #[test]
    fn a_held_address_keeps_its_last_attributes() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(5, 0));
        flap.update(t0, &set(&[with_community(A, 1)]));
        flap.update(t0 + secs(1), &set(&[with_community(A, 2)]));
        assert_eq!(
            flap.update(t0 + secs(2), &set(&[])),
            set(&[with_community(A, 2)])
        );
    }

    #[test]
    fn a_new_config_retimes_withdrawals_already_held() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(60, 0));
        flap.update(t0, &set(&[ann(A)]));
        flap.update(t0 + secs(1), &set(&[]));
        assert_eq!(flap.next_deadline(), Some(t0 + secs(60)));
        flap.set_config(config(0, 2));
        assert_eq!(flap.next_deadline(), Some(t0 + secs(3)));
        assert_eq!(flap.update(t0 + secs(2), &set(&[])), set(&[ann(A)]));
        flap.set_config(config(0, 0));
        assert_eq!(flap.update(t0 + secs(2), &set(&[])), set(&[]));
        // Re-timing is not a second delayed withdrawal.
        assert_eq!(flap.counters().withdrawals_delayed, 1);
    }

    #[test]
    fn zero_settings_follow_the_desired_set_exactly() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(0, 0));
        let sequence = [
            set(&[ann(A)]),
            set(&[]),
            set(&[ann(A), ann(B)]),
            set(&[with_community(B, 7)]),
            set(&[]),
        ];
        for (i, desired) in sequence.iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64);
            assert_eq!(&flap.update(now, desired), desired, "step {i}");
        }
        assert_eq!(flap.counters(), Counters::default());
    }

    #[test]
    fn the_next_deadline_is_the_earliest_held_withdrawal() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(config(5, 0));
        flap.update(t0, &set(&[ann(A)]));
        flap.update(t0 + secs(2), &set(&[ann(A), ann(B)]));
        flap.update(t0 + secs(3), &set(&[]));
        assert_eq!(flap.held().len(), 2);
        assert_eq!(flap.next_deadline(), Some(t0 + secs(5)));
        assert_eq!(flap.update(t0 + secs(5), &set(&[])), set(&[ann(B)]));
        assert_eq!(flap.next_deadline(), Some(t0 + secs(7)));
    }

    #[test]
    fn metrics_count_delayed_and_suppressed_withdrawals_and_the_held_addresses() {
        let mut registry = crate::metrics::MetricsRegistry::new();
        let metrics = Metrics::register(registry.registry());
        let t0 = Instant::now();
        let mut flap = AntiFlap::with_metrics(config(5, 0), metrics);
        flap.update(t0, &set(&[ann(A), ann(B)]));
        flap.update(t0 + secs(1), &set(&[]));
        flap.update(t0 + secs(2), &set(&[ann(A)]));
        let text = registry.encode();
        for line in [
            "herald_antiflap_withdrawals_delayed_total 2",
            "herald_antiflap_withdrawals_suppressed_total 1",
            "herald_antiflap_held_addresses 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn the_default_config_holds_only_addresses_announced_moments_ago() {
        let t0 = Instant::now();
        let mut flap = AntiFlap::new(AntiFlapConfig::default());
        flap.update(t0, &set(&[ann(A), ann(B)]));
        flap.update(t0 + secs(60), &set(&[ann(B)]));
        assert_eq!(
            flap.announced(),
            set(&[ann(B)]),
            "up for a minute: withdrawn at once"
        );
        flap.update(t0 + secs(61), &set(&[ann(A), ann(B)]));
        flap.update(t0 + secs(62), &set(&[ann(B)]));
        assert_eq!(flap.held()[0].until, t0 + secs(66));
    }

    fn weighted(address: &str, units: u32) -> Announcement {
        let mut a = ann(address);
        a.attributes.link_bandwidth = Some(crate::model::LinkBandwidth::new(
            64601,
            units * 1_000_000,
            true,
        ));
        a
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn weight_delay(delay: Duration) -> AntiFlap {
        AntiFlap::new(AntiFlapConfig {
            weight_delay: delay,
            ..config(0, 0)
        })
    }

    #[test]
    fn weight_changes_wait_weight_delay_from_the_first_and_the_latest_goes_out() {
        let t0 = Instant::now();
        let mut flap = weight_delay(ms(500));
        flap.update(t0, &set(&[weighted(A, 1), weighted(B, 1)]));
        // A rollout: the weight of A climbs every 20 ms.
        for step in 1..=20u32 {
            let now = t0 + ms(20 * u64::from(step));
            let out = flap.update(now, &set(&[weighted(A, 1 + step), weighted(B, 1)]));
            assert_eq!(
                out,
                set(&[weighted(A, 1), weighted(B, 1)]),
                "step {step}: still the weight the routers have"
            );
            assert_eq!(flap.next_deadline(), Some(t0 + ms(20) + ms(500)));
        }
        assert_eq!(flap.weights_pending(), 1);
        // The timer fires: the latest weight, once.
        let out = flap.update(t0 + ms(520), &set(&[weighted(A, 21), weighted(B, 1)]));
        assert_eq!(out, set(&[weighted(A, 21), weighted(B, 1)]));
        assert_eq!(flap.next_deadline(), None);
        assert_eq!(flap.weights_pending(), 0);
    }

    #[test]
    fn a_long_rollout_backs_off_and_a_lone_change_after_it_waits_the_base_again() {
        let t0 = Instant::now();
        let mut flap = weight_delay(ms(500));
        flap.update(t0, &set(&[weighted(A, 1)]));
        // 50 pods become ready on this node, one every 200 ms (10 s), and
        // the caller also calls back at every deadline, as the agent does.
        let mut sent = Vec::new();
        let mut last = flap.announced();
        let mut now = t0;
        let mut pods = 1;
        let end = t0 + secs(20);
        while now < end {
            let next_pod = (pods < 51).then(|| t0 + ms(200 * u64::from(pods)));
            let next = [next_pod, flap.next_deadline()].into_iter().flatten().min();
            let Some(next) = next else { break };
            now = next;
            if Some(now) == next_pod {
                pods += 1;
            }
            let out = flap.update(now, &set(&[weighted(A, pods)]));
            if out != last {
                sent.push(now - t0);
                last = out;
            }
        }
        assert_eq!(last, set(&[weighted(A, 51)]), "the final weight went out");
        // Waits of 0.5, 1, 2, 4 and 4 s, each from the first pod after the
        // previous UPDATE: five UPDATEs for 50 pods, the last 2.4 s after
        // the last pod.
        assert_eq!(
            sent,
            [ms(700), ms(1_800), ms(4_000), ms(8_200), ms(12_400)],
            "{sent:?}"
        );
        // Quiet for the longest wait: a lone change waits the base again.
        let later = t0 + secs(30);
        flap.update(later, &set(&[weighted(A, 52)]));
        assert_eq!(flap.next_deadline(), Some(later + ms(500)));
    }

    #[test]
    fn address_changes_and_other_attributes_never_wait_for_weights() {
        let t0 = Instant::now();
        let mut flap = weight_delay(ms(500));
        flap.update(t0, &set(&[weighted(A, 1)]));
        flap.update(t0 + ms(10), &set(&[weighted(A, 2)]));
        // A new address goes out at once; A's weight still waits.
        let out = flap.update(t0 + ms(20), &set(&[weighted(A, 3), weighted(B, 1)]));
        assert_eq!(out, set(&[weighted(A, 1), weighted(B, 1)]));
        // A community change on A goes out at once, with the latest weight.
        let mut changed = weighted(A, 4);
        changed.attributes.communities.insert(Community(7));
        let out = flap.update(t0 + ms(30), &set(&[changed.clone(), weighted(B, 1)]));
        assert_eq!(out, set(&[changed.clone(), weighted(B, 1)]));
        assert_eq!(flap.next_deadline(), None);
        // A withdrawal goes out at once too, whatever waits.
        flap.update(t0 + ms(40), &set(&[changed, weighted(B, 2)]));
        let out = flap.update(t0 + ms(50), &set(&[weighted(B, 2)]));
        assert_eq!(out, set(&[weighted(B, 1)]));
    }

    #[test]
    fn a_weight_that_returns_before_the_deadline_sends_nothing() {
        let t0 = Instant::now();
        let mut flap = weight_delay(ms(500));
        flap.update(t0, &set(&[weighted(A, 2)]));
        flap.update(t0 + ms(100), &set(&[weighted(A, 3)]));
        assert!(flap.next_deadline().is_some());
        let out = flap.update(t0 + ms(200), &set(&[weighted(A, 2)]));
        assert_eq!(out, set(&[weighted(A, 2)]));
        assert_eq!(flap.next_deadline(), None);
    }

    #[test]
    fn a_zero_weight_delay_passes_weights_through_at_once() {
        let t0 = Instant::now();
        let mut flap = weight_delay(Duration::ZERO);
        flap.update(t0, &set(&[weighted(A, 2)]));
        assert_eq!(
            flap.update(t0, &set(&[weighted(A, 3)])),
            set(&[weighted(A, 3)])
        );
        assert_eq!(flap.next_deadline(), None);
    }
}
