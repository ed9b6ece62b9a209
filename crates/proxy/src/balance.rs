//! Choosing among a route's weighted upstream endpoints, with passive outlier detection.
//!
//! A [`Balancer`] is a cheap handle (an `Arc`) shared by every task serving the route. Picking
//! costs a few atomic operations; nothing is locked on the request path except an ejection
//! decision, which is rare.
//!
//! - [`Policy::RoundRobin`]: smooth weighted round-robin (nginx's sequence, computed once and
//!   walked with an atomic cursor), so that weights 5:1:1 give `a a b a c a a`, not `a a a a a b c`.
//! - [`Policy::LeastRequest`]: two endpoints drawn at random by weight; the one with fewer active
//!   requests per unit of weight wins (power of two choices).
//! - [`Policy::Random`]: one endpoint drawn at random by weight.
//!
//! Outlier detection follows Envoy's `consecutive_5xx` and `consecutive_gateway_failure`: after
//! that many failures in a row (5xx responses, or failures to get one) an endpoint is ejected for
//! `base_ejection_time × times ejected` (capped by `max_ejection_time`), unless that would eject
//! more than `max_ejection_percent` of the endpoints (one may always be ejected). Ejections end
//! lazily, when their time is up, rather than at the next `interval` tick; the ejection count
//! decays by one for every `interval` an endpoint stays in service. When fewer than
//! `healthy_panic_threshold` percent of endpoints are in service, ejections are ignored, as
//! Envoy's panic mode does.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest smooth round-robin sequence kept; larger weight sums are scaled down to fit.
const MAX_SCHEDULE_LENGTH: u64 = 4096;

/// How to choose an endpoint (Pomerium's `load_balancing_policy`; `ring_hash` and `maglev` are
/// not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Smooth weighted round-robin (Envoy's default).
    #[default]
    RoundRobin,
    /// Power of two choices by active requests per weight.
    LeastRequest,
    /// Weighted random.
    Random,
}

/// Envoy-style passive outlier detection. Defaults are Envoy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive failures (5xx or no response) that eject an endpoint; 0 turns this off.
    pub consecutive_5xx: u32,
    /// Consecutive gateway failures (502, 503, 504 or no response) that eject; 0 turns this off.
    pub consecutive_gateway_failure: u32,
    /// How often the ejection count of an endpoint in service decays by one.
    pub interval: Duration,
    /// Ejection time per ejection so far.
    pub base_ejection_time: Duration,
    /// The longest ejection.
    pub max_ejection_time: Duration,
    /// The most endpoints, in percent, that may be ejected at once (one always may).
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

/// How a balancer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalancerOptions {
    /// The choice among endpoints.
    pub policy: Policy,
    /// Passive outlier detection, if any.
    pub outlier_detection: Option<OutlierDetection>,
    /// Below this percentage of endpoints in service, ejections are ignored (Envoy: 50).
    pub healthy_panic_threshold: u32,
}

impl Default for BalancerOptions {
    fn default() -> Self {
        Self { policy: Policy::RoundRobin, outlier_detection: None, healthy_panic_threshold: 50 }
    }
}

/// How a request to an endpoint ended, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status.
    Status(u16),
    /// No response: connect failure, reset, timeout (Envoy's locally originated errors).
    NoResponse,
}

impl Outcome {
    fn is_5xx(self) -> bool {
        match self {
            Self::Status(status) => (500..600).contains(&status),
            Self::NoResponse => true,
        }
    }

    fn is_gateway_failure(self) -> bool {
        match self {
            Self::Status(status) => matches!(status, 502..=504),
            Self::NoResponse => true,
        }
    }
}

/// Chooses endpoints for one route. Clone it freely: clones share state.
#[derive(Debug, Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    weights: Vec<u64>,
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    endpoints: Vec<EndpointState>,
    options: BalancerOptions,
    epoch: Instant,
    ejection: Mutex<()>,
}

#[derive(Debug, Default)]
struct EndpointState {
    active: AtomicU64,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// Milliseconds since the epoch until which the endpoint is ejected; 0 when never ejected.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
}

impl Balancer {
    /// A balancer over endpoints of these weights (in the order of the route's `to`). A weight
    /// of 0 counts as 1: configuration rejects it before it gets here.
    pub fn new(weights: &[u32], options: BalancerOptions) -> Self {
        let weights: Vec<u64> = weights.iter().map(|&weight| u64::from(weight.max(1))).collect();
        let inner = Inner {
            schedule: smooth_schedule(&weights),
            cursor: AtomicUsize::new(0),
            endpoints: weights.iter().map(|_| EndpointState::default()).collect(),
            weights,
            options,
            epoch: Instant::now(),
            ejection: Mutex::new(()),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Chooses an endpoint, or `None` when there is none to choose (no endpoints).
    pub fn pick(&self) -> Option<Pick> {
        let now = self.inner.now_millis();
        let honour_ejections = self.inner.enough_in_service(now);
        let eligible = |index: usize| !honour_ejections || !self.inner.is_ejected(index, now);
        let index = match self.inner.options.policy {
            Policy::RoundRobin => self.inner.next_in_schedule(&eligible),
            Policy::Random => self.inner.weighted_random(&eligible),
            Policy::LeastRequest => self.inner.least_of_two(&eligible),
        }?;
        let endpoint = self.inner.endpoints.get(index)?;
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        Some(Pick { inner: Arc::clone(&self.inner), index, finished: false })
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.inner.endpoints.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.inner.endpoints.is_empty()
    }

    /// Whether an endpoint is ejected now.
    pub fn is_ejected(&self, index: usize) -> bool {
        self.inner.is_ejected(index, self.inner.now_millis())
    }

    /// Requests in flight to an endpoint.
    pub fn active_requests(&self, index: usize) -> u64 {
        self.inner.endpoints.get(index).map_or(0, |endpoint| endpoint.active.load(Ordering::Relaxed))
    }
}

/// A chosen endpoint. Counts as an active request until it is finished or dropped; a dropped
/// pick (the client went away) records no outcome.
#[derive(Debug)]
pub struct Pick {
    inner: Arc<Inner>,
    index: usize,
    finished: bool,
}

impl Pick {
    /// The endpoint's index in the route's `to` list.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Records how the request ended.
    pub fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.release();
        self.inner.record(self.index, outcome);
    }

    fn release(&self) {
        if let Some(endpoint) = self.inner.endpoints.get(self.index) {
            endpoint.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        if !self.finished {
            self.release();
        }
    }
}

impl Inner {
    fn now_millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn is_ejected(&self, index: usize, now: u64) -> bool {
        self.endpoints.get(index).is_some_and(|endpoint| endpoint.ejected_until.load(Ordering::Relaxed) > now)
    }

    fn ejected_count(&self, now: u64) -> usize {
        (0..self.endpoints.len()).filter(|&index| self.is_ejected(index, now)).count()
    }

    fn enough_in_service(&self, now: u64) -> bool {
        if self.options.outlier_detection.is_none() {
            return true;
        }
        let total = self.endpoints.len();
        let in_service = total - self.ejected_count(now);
        in_service * 100 >= total * usize::try_from(self.options.healthy_panic_threshold).unwrap_or(usize::MAX)
    }

    fn next_in_schedule(&self, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let length = self.schedule.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..length)
            .filter_map(|offset| self.schedule.get(start.wrapping_add(offset) % length).copied())
            .find(|&i| eligible(i))
    }

    fn weighted_random(&self, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let total: u64 = self.weights.iter().enumerate().filter(|&(i, _)| eligible(i)).map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut point = fastrand::u64(..total);
        for (index, &weight) in self.weights.iter().enumerate().filter(|&(i, _)| eligible(i)) {
            if point < weight {
                return Some(index);
            }
            point -= weight;
        }
        None
    }

    fn least_of_two(&self, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let first = self.weighted_random(eligible)?;
        let Some(second) = self.weighted_random(eligible) else { return Some(first) };
        // Compare active/weight without division: a/wa <= b/wb ⇔ a·wb <= b·wa.
        let load = |index: usize| {
            let active = self.endpoints.get(index).map_or(0, |e| e.active.load(Ordering::Relaxed));
            (active, self.weights.get(index).copied().unwrap_or(1))
        };
        let ((active_a, weight_a), (active_b, weight_b)) = (load(first), load(second));
        let first_wins = u128::from(active_a) * u128::from(weight_b) <= u128::from(active_b) * u128::from(weight_a);
        Some(if first_wins { first } else { second })
    }

    fn record(&self, index: usize, outcome: Outcome) {
        let (Some(detection), Some(endpoint)) = (self.options.outlier_detection, self.endpoints.get(index)) else {
            return;
        };
        let tripped_5xx = count_failure(&endpoint.consecutive_5xx, outcome.is_5xx(), detection.consecutive_5xx);
        let tripped_gateway = count_failure(
            &endpoint.consecutive_gateway,
            outcome.is_gateway_failure(),
            detection.consecutive_gateway_failure,
        );
        if tripped_5xx || tripped_gateway {
            self.eject(index, &detection);
        }
    }

    fn eject(&self, index: usize, detection: &OutlierDetection) {
        let Some(endpoint) = self.endpoints.get(index) else { return };
        // Ejections are rare; the lock keeps the percentage check and the ejection together.
        let Ok(_guard) = self.ejection.lock() else { return };
        let now = self.now_millis();
        if self.is_ejected(index, now) {
            return;
        }
        let ejected = self.ejected_count(now);
        let percent_after = (ejected + 1) * 100 / self.endpoints.len().max(1);
        let allowed = usize::try_from(detection.max_ejection_percent).unwrap_or(usize::MAX);
        if ejected > 0 && percent_after > allowed {
            return;
        }
        let previous_end = endpoint.ejected_until.load(Ordering::Relaxed);
        let interval = millis(detection.interval).max(1);
        let decay = if previous_end == 0 { 0 } else { now.saturating_sub(previous_end) / interval };
        let ejections = u64::from(endpoint.ejections.load(Ordering::Relaxed)).saturating_sub(decay) + 1;
        endpoint.ejections.store(u32::try_from(ejections).unwrap_or(u32::MAX), Ordering::Relaxed);
        let max_time = millis(detection.max_ejection_time).max(millis(detection.base_ejection_time));
        let duration = millis(detection.base_ejection_time).saturating_mul(ejections).min(max_time);
        endpoint.ejected_until.store(now.saturating_add(duration), Ordering::Relaxed);
        endpoint.consecutive_5xx.store(0, Ordering::Relaxed);
        endpoint.consecutive_gateway.store(0, Ordering::Relaxed);
    }
}

/// Counts a failure (or resets on success); true when the count reaches `threshold` (0: never).
fn count_failure(counter: &AtomicU32, failed: bool, threshold: u32) -> bool {
    if !failed {
        counter.store(0, Ordering::Relaxed);
        return false;
    }
    let count = counter.fetch_add(1, Ordering::Relaxed).saturating_add(1);
    threshold > 0 && count >= threshold
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// nginx's smooth weighted round-robin sequence for these weights: each step, every endpoint
/// gains its weight, the richest is chosen and pays the total.
fn smooth_schedule(weights: &[u64]) -> Vec<usize> {
    let divisor = weights.iter().copied().fold(0, gcd).max(1);
    let mut reduced: Vec<u64> = weights.iter().map(|weight| weight / divisor).collect();
    let total: u64 = reduced.iter().sum();
    if total > MAX_SCHEDULE_LENGTH {
        reduced = reduced.iter().map(|weight| (weight * MAX_SCHEDULE_LENGTH / total).max(1)).collect();
    }
    let total: u64 = reduced.iter().sum();
    let as_signed = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let mut current = vec![0i64; reduced.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (credit, weight) in current.iter_mut().zip(&reduced) {
            *credit += as_signed(*weight);
        }
        let Some((chosen, credit)) =
            current.iter_mut().enumerate().max_by_key(|(index, credit)| (**credit, usize::MAX - index))
        else {
            break;
        };
        *credit -= as_signed(total);
        schedule.push(chosen);
    }
    schedule
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    fn counts(balancer: &Balancer, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; balancer.len()];
        for _ in 0..picks {
            let pick = balancer.pick().unwrap();
            counts[pick.index()] += 1;
        }
        counts
    }

    #[test]
    fn smooth_round_robin_interleaves() {
        assert_eq!(smooth_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_schedule(&[1, 1, 1]), [0, 1, 2]);
        assert_eq!(smooth_schedule(&[10, 20]), [1, 0, 1]);
        let long = smooth_schedule(&[1_000_000, 1]);
        assert!(long.len() <= usize::try_from(MAX_SCHEDULE_LENGTH).unwrap() + 1);
        assert!(long.contains(&1));
        let balancer = Balancer::new(&[3, 1], BalancerOptions::default());
        assert_eq!(counts(&balancer, 400), [300, 100]);
    }

    #[test]
    fn random_follows_weights() {
        let balancer = Balancer::new(&[9, 1], BalancerOptions { policy: Policy::Random, ..BalancerOptions::default() });
        let counts = counts(&balancer, 10_000);
        assert!(counts[0] > 8_500 && counts[1] > 500, "{counts:?}");
    }

    #[test]
    fn least_request_avoids_the_busy_endpoint() {
        let balancer =
            Balancer::new(&[1, 1], BalancerOptions { policy: Policy::LeastRequest, ..BalancerOptions::default() });
        let held: Vec<Pick> = std::iter::repeat_with(|| balancer.pick().unwrap()).take(20).collect();
        // Make endpoint 0 busy: release only the picks of endpoint 1.
        let busy: Vec<Pick> = held.into_iter().filter(|pick| pick.index() == 0).collect();
        assert_eq!(balancer.active_requests(1), 0);
        let counts = counts(&balancer, 200);
        assert!(counts[1] > counts[0], "{counts:?} with {} busy", busy.len());
        drop(busy);
        assert_eq!(balancer.active_requests(0), 0);
    }

    #[test]
    fn picks_count_as_active_until_finished_or_dropped() {
        let balancer = Balancer::new(&[1], BalancerOptions::default());
        let pick = balancer.pick().unwrap();
        assert_eq!(balancer.active_requests(0), 1);
        pick.finish(Outcome::Status(200));
        assert_eq!(balancer.active_requests(0), 0);
        drop(balancer.pick().unwrap());
        assert_eq!(balancer.active_requests(0), 0);
    }

    #[test]
    fn no_endpoints_no_pick() {
        assert!(Balancer::new(&[], BalancerOptions::default()).pick().is_none());
    }

    fn with_detection(weights: &[u32], detection: OutlierDetection, panic: u32) -> Balancer {
        let options = BalancerOptions {
            outlier_detection: Some(detection),
            healthy_panic_threshold: panic,
            ..BalancerOptions::default()
        };
        Balancer::new(weights, options)
    }

    fn fail(balancer: &Balancer, index: usize, outcome: Outcome, times: usize) {
        for _ in 0..times {
            let pick = Pick { inner: Arc::clone(&balancer.inner), index, finished: false };
            balancer.inner.endpoints[index].active.fetch_add(1, Ordering::Relaxed);
            pick.finish(outcome);
        }
    }

    #[test]
    fn consecutive_5xx_ejects_and_success_resets() {
        let detection =
            OutlierDetection { consecutive_5xx: 3, max_ejection_percent: 50, ..OutlierDetection::default() };
        let balancer = with_detection(&[1, 1, 1, 1], detection, 0);
        fail(&balancer, 0, Outcome::Status(500), 2);
        fail(&balancer, 0, Outcome::Status(200), 1);
        fail(&balancer, 0, Outcome::NoResponse, 2);
        assert!(!balancer.is_ejected(0), "a success in between resets the count");
        fail(&balancer, 0, Outcome::Status(503), 1);
        assert!(balancer.is_ejected(0));
        assert_eq!(counts(&balancer, 30)[0], 0, "ejected endpoints are skipped");
    }

    #[test]
    fn max_ejection_percent_is_respected_but_one_may_go() {
        let detection =
            OutlierDetection { consecutive_5xx: 1, max_ejection_percent: 10, ..OutlierDetection::default() };
        let balancer = with_detection(&[1, 1, 1], detection, 0);
        fail(&balancer, 0, Outcome::Status(500), 1);
        fail(&balancer, 1, Outcome::Status(500), 1);
        assert!(balancer.is_ejected(0), "one endpoint may always be ejected");
        assert!(!balancer.is_ejected(1), "a second would exceed 10%");
    }

    #[test]
    fn gateway_failures_count_separately() {
        let detection = OutlierDetection {
            consecutive_5xx: 0,
            consecutive_gateway_failure: 2,
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let balancer = with_detection(&[1, 1], detection, 0);
        fail(&balancer, 0, Outcome::Status(500), 5);
        assert!(!balancer.is_ejected(0), "500 is not a gateway failure");
        fail(&balancer, 0, Outcome::Status(502), 2);
        assert!(balancer.is_ejected(0));
    }

    #[test]
    fn ejections_end_and_grow() {
        let detection = OutlierDetection {
            consecutive_5xx: 1,
            base_ejection_time: Duration::from_millis(40),
            interval: Duration::from_secs(60),
            max_ejection_percent: 100,
            ..OutlierDetection::default()
        };
        let balancer = with_detection(&[1, 1], detection, 0);
        let before_first = balancer.inner.now_millis();
        fail(&balancer, 0, Outcome::Status(500), 1);
        let first_end = balancer.inner.endpoints[0].ejected_until.load(Ordering::Relaxed);
        let after_first = balancer.inner.now_millis();
        assert!((before_first + 40..=after_first + 40).contains(&first_end));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!balancer.is_ejected(0), "the ejection ended");
        let before_second = balancer.inner.now_millis();
        fail(&balancer, 0, Outcome::Status(500), 1);
        let second_end = balancer.inner.endpoints[0].ejected_until.load(Ordering::Relaxed);
        assert_eq!(balancer.inner.endpoints[0].ejections.load(Ordering::Relaxed), 2);
        assert!(second_end >= before_second + 80, "the second ejection lasts twice as long");
    }

    #[test]
    fn panic_mode_ignores_ejections() {
        let detection =
            OutlierDetection { consecutive_5xx: 1, max_ejection_percent: 100, ..OutlierDetection::default() };
        let single = with_detection(&[1], detection, 50);
        fail(&single, 0, Outcome::Status(500), 1);
        assert!(single.is_ejected(0));
        assert_eq!(single.pick().unwrap().index(), 0, "panic: every endpoint is eligible");
        let strict = with_detection(&[1], detection, 0);
        fail(&strict, 0, Outcome::Status(500), 1);
        assert!(strict.pick().is_none(), "no panic threshold: nothing to choose");
    }

    #[test]
    fn shared_across_threads() {
        let balancer =
            Balancer::new(&[1, 2, 3], BalancerOptions { policy: Policy::LeastRequest, ..BalancerOptions::default() });
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let balancer = balancer.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        balancer.pick().unwrap().finish(Outcome::Status(200));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!((0..3).all(|index| balancer.active_requests(index) == 0));
    }
}
