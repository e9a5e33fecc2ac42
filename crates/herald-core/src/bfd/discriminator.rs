//! Local discriminators: random, non-zero and unique among the live sessions
//! of one runtime (RFC 5880 §6.8.1: bfd.LocalDiscr "MUST be unique across
//! all BFD sessions on this system, and nonzero. It SHOULD be set to a
//! random (but still unique) value to improve security.").
//!
//! Owns: the set of discriminators in use. Must not touch: sessions.

use std::collections::HashSet;

use rand::Rng;

/// The allocator the runtime owns.
#[derive(Debug, Default)]
pub struct DiscriminatorPool {
    in_use: HashSet<u32>,
}

impl DiscriminatorPool {
    /// A fresh discriminator drawn from `rng`: never 0, never one in use.
    pub fn allocate(&mut self, rng: &mut impl Rng) -> u32 {
        loop {
            // At most a few draws: the pool holds a handful of sessions out
            // of four billion values.
            let candidate: u32 = rng.random();
            if candidate != 0 && self.in_use.insert(candidate) {
                return candidate;
            }
        }
    }

    /// Give a discriminator back when its session is removed.
    pub fn release(&mut self, discriminator: u32) {
        self.in_use.remove(&discriminator);
    }

    pub fn len(&self) -> usize {
        self.in_use.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_use.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    /// Yields `start`, `start + 1`, ... as u32 draws.
    struct Counting(u32);

    impl RngCore for Counting {
        fn next_u32(&mut self) -> u32 {
            let value = self.0;
            self.0 = self.0.wrapping_add(1);
            value
        }
        fn next_u64(&mut self) -> u64 {
            self.next_u32().into()
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.iter_mut().for_each(|b| *b = self.next_u32() as u8);
        }
    }

    #[test]
    fn allocated_discriminators_are_unique_and_non_zero() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut pool = DiscriminatorPool::default();
        let all: HashSet<u32> = (0..10_000).map(|_| pool.allocate(&mut rng)).collect();
        assert_eq!(all.len(), 10_000);
        assert!(!all.contains(&0));
        assert_eq!(pool.len(), 10_000);
    }

    #[test]
    fn zero_and_taken_values_are_skipped() {
        let mut pool = DiscriminatorPool::default();
        // Yields 0, 1, 2, ...: 0 is never handed out.
        assert_eq!(pool.allocate(&mut Counting(0)), 1);
        // Yields 1, 2, ...: 1 is taken.
        assert_eq!(pool.allocate(&mut Counting(1)), 2);
    }

    #[test]
    fn released_discriminators_can_be_reused() {
        let mut pool = DiscriminatorPool::default();
        let only = pool.allocate(&mut Counting(5));
        assert_eq!(only, 5);
        pool.release(only);
        assert!(pool.is_empty());
        assert_eq!(pool.allocate(&mut Counting(5)), 5);
    }
}
