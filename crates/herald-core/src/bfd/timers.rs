//! The BFD thread's timer queue: every session's transmit and detection
//! deadlines in one binary heap.
//!
//! Owns: ordering deadlines and telling which are due. Must not touch:
//! sessions, sockets or the clock (time comes in as arguments), so it is
//! tested with plain `Instant`s.
//!
//! A detection deadline moves later with every received packet (about
//! 3,600 times a second with 64 sessions at 20 ms). Pushing a heap entry
//! each time would fill the heap with stale entries. Instead the queue keeps
//! each timer's deadline beside the heap and at most one heap entry per
//! timer that is not later than it: moving a deadline later costs no heap
//! operation, and a stale entry that reaches the top is pushed again at the
//! timer's current deadline before anyone sleeps on it, so a stale entry
//! never causes a wake-up.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

/// A map keyed by discriminators (or timers named by them), hashed with
/// [`DiscriminatorHasher`].
pub type DiscriminatorMap<K, V> = HashMap<K, V, BuildHasherDefault<DiscriminatorHasher>>;

/// The hasher of the BFD thread's maps, whose keys are small integers:
/// local discriminators (random, non-zero, chosen by herald) and timer keys
/// made of them. One multiplication per word instead of SipHash, which took
/// a few percent of the thread's time at 3,600 packets a second each way.
/// SipHash's resistance to chosen keys is not needed: herald chooses every
/// stored key at random, and a received Your Discriminator is only looked
/// up, never inserted, so a peer cannot fill a bucket.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscriminatorHasher(u64);

impl DiscriminatorHasher {
    /// The odd constant closest to 2^64 divided by the golden ratio: a
    /// multiplication by it spreads every input bit over the high bits,
    /// which hashbrown reads first.
    const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::SPREAD).rotate_left(26);
    }
}

impl Hasher for DiscriminatorHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(n.into());
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// When the timer fires.
    deadline: Instant,
    /// The earliest heap entry for this timer, if any.
    queued: Option<Instant>,
}

/// Deadlines by key (in the runtime: discriminator and timer kind).
#[derive(Debug)]
pub struct TimerQueue<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    timers: DiscriminatorMap<K, Slot>,
}

impl<K: Copy + Ord + Hash> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            timers: DiscriminatorMap::default(),
        }
    }
}

impl<K: Copy + Ord + Hash> TimerQueue<K> {
    /// Set `key` to fire at `at`, replacing its previous deadline.
    pub fn arm(&mut self, key: K, at: Instant) {
        let slot = self.timers.entry(key).or_insert(Slot {
            deadline: at,
            queued: None,
        });
        slot.deadline = at;
        if slot.queued.is_none_or(|queued| queued > at) {
            self.heap.push(Reverse((at, key)));
            slot.queued = Some(at);
        }
    }

    /// Cancel `key`; its heap entries are discarded when they surface.
    pub fn stop(&mut self, key: K) {
        self.timers.remove(&key);
    }

    /// The deadline of `key`, if armed.
    pub fn deadline(&self, key: K) -> Option<Instant> {
        self.timers.get(&key).map(|slot| slot.deadline)
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.timers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// The earliest deadline of any armed timer, with its key. Stale heap
    /// entries on top are dropped or moved to their timer's deadline first.
    pub fn earliest(&mut self) -> Option<(K, Instant)> {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            let Some(slot) = self.timers.get_mut(&key) else {
                // Stopped, or fired.
                self.heap.pop();
                continue;
            };
            if slot.queued != Some(at) {
                // A later duplicate: an earlier entry replaced it.
                self.heap.pop();
                continue;
            }
            if slot.deadline > at {
                // Moved later since it was queued.
                self.heap.pop();
                self.heap.push(Reverse((slot.deadline, key)));
                slot.queued = Some(slot.deadline);
                continue;
            }
            return Some((key, at));
        }
        None
    }

    /// Remove and return the earliest timer if `is_due(key, deadline)`
    /// says so.
    pub fn pop_if(&mut self, is_due: impl FnOnce(K, Instant) -> bool) -> Option<(K, Instant)> {
        let (key, at) = self.earliest()?;
        if !is_due(key, at) {
            return None;
        }
        self.heap.pop();
        self.timers.remove(&key);
        Some((key, at))
    }

    /// Heap entries, stale ones included (for tests of the bookkeeping).
    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn the_discriminator_hasher_tells_apart_keys_that_differ_in_one_bit() {
        let hash = |key: u32| {
            let mut hasher = DiscriminatorHasher::default();
            hasher.write_u32(key);
            hasher.finish()
        };
        let hashes: std::collections::HashSet<u64> =
            (0..32).map(|bit| hash(1 << bit)).chain([hash(0)]).collect();
        assert_eq!(hashes.len(), 33);
        // hashbrown picks the control byte from the top 7 bits: single-bit
        // keys must not all share it.
        let tops: std::collections::HashSet<u64> =
            (0..32).map(|bit| hash(1 << bit) >> 57).collect();
        assert!(tops.len() > 16, "top bits barely vary: {tops:?}");
    }

    #[test]
    fn a_discriminator_map_finds_what_was_stored() {
        let mut map = DiscriminatorMap::default();
        for key in (1..=1000u32).map(|k| k.wrapping_mul(2_654_435_761)) {
            map.insert(key, key ^ 1);
        }
        assert_eq!(map.len(), 1000);
        assert!(
            (1..=1000u32)
                .map(|k| k.wrapping_mul(2_654_435_761))
                .all(|key| map.get(&key) == Some(&(key ^ 1)))
        );
        assert_eq!(map.get(&0), None);
    }

    fn drain(queue: &mut TimerQueue<u32>, until: Instant) -> Vec<(u32, Instant)> {
        std::iter::from_fn(|| queue.pop_if(|_, deadline| deadline <= until)).collect()
    }

    #[test]
    fn timers_come_due_in_deadline_order() {
        let t0 = Instant::now();
        let mut queue = TimerQueue::default();
        queue.arm(1, at(t0, 30));
        queue.arm(2, at(t0, 10));
        queue.arm(3, at(t0, 20));
        assert_eq!(queue.earliest(), Some((2, at(t0, 10))));
        assert_eq!(
            drain(&mut queue, at(t0, 25)),
            vec![(2, at(t0, 10)), (3, at(t0, 20))]
        );
        assert_eq!(drain(&mut queue, at(t0, 100)), vec![(1, at(t0, 30))]);
        assert!(queue.is_empty() && queue.earliest().is_none());
    }

    #[test]
    fn moving_a_deadline_later_pushes_nothing_and_fires_only_at_the_new_one() {
        let t0 = Instant::now();
        let mut queue = TimerQueue::default();
        queue.arm(7, at(t0, 60));
        for ms in 61..200 {
            queue.arm(7, at(t0, ms));
        }
        assert_eq!(queue.heap_len(), 1, "one entry despite 140 re-arms");
        // The stale entry surfaces as the real deadline, so nobody wakes
        // at 60 ms.
        assert_eq!(queue.earliest(), Some((7, at(t0, 199))));
        assert!(drain(&mut queue, at(t0, 198)).is_empty());
        assert_eq!(drain(&mut queue, at(t0, 199)), vec![(7, at(t0, 199))]);
    }

    #[test]
    fn moving_a_deadline_earlier_fires_at_the_earlier_one_once() {
        let t0 = Instant::now();
        let mut queue = TimerQueue::default();
        queue.arm(7, at(t0, 60));
        queue.arm(7, at(t0, 20));
        assert_eq!(drain(&mut queue, at(t0, 100)), vec![(7, at(t0, 20))]);
    }

    #[test]
    fn a_stopped_timer_never_fires_and_can_be_armed_again() {
        let t0 = Instant::now();
        let mut queue = TimerQueue::default();
        queue.arm(1, at(t0, 10));
        queue.arm(2, at(t0, 15));
        queue.stop(1);
        assert_eq!(queue.deadline(1), None);
        assert_eq!(drain(&mut queue, at(t0, 50)), vec![(2, at(t0, 15))]);
        queue.arm(1, at(t0, 10));
        queue.stop(1);
        queue.arm(1, at(t0, 40));
        assert_eq!(drain(&mut queue, at(t0, 100)), vec![(1, at(t0, 40))]);
    }

    #[test]
    fn pop_if_leaves_a_timer_that_is_not_due() {
        let t0 = Instant::now();
        let mut queue = TimerQueue::default();
        queue.arm(1, at(t0, 10));
        assert_eq!(queue.pop_if(|_, deadline| deadline <= at(t0, 5)), None);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.deadline(1), Some(at(t0, 10)));
    }

    #[test]
    fn random_arms_and_stops_fire_exactly_the_last_deadline_of_each_armed_timer() {
        use rand::{Rng, SeedableRng};
        let t0 = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5880);
        let mut queue = TimerQueue::default();
        let mut expected: HashMap<u32, Instant> = HashMap::new();
        for _ in 0..10_000 {
            let key = rng.random_range(0..50u32);
            if rng.random_bool(0.1) {
                queue.stop(key);
                expected.remove(&key);
            } else {
                let deadline = at(t0, rng.random_range(0..1000));
                queue.arm(key, deadline);
                expected.insert(key, deadline);
            }
        }
        let mut fired = drain(&mut queue, at(t0, 1000));
        let mut wanted: Vec<(u32, Instant)> = expected.into_iter().collect();
        fired.sort();
        wanted.sort();
        assert_eq!(fired, wanted);
        assert_eq!(queue.heap_len(), 0);
    }
}
