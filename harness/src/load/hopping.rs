//! Which instance each request of a browser goes to.

use rand::Rng;

use crate::scenario::workload::Hopping;

/// One browser's place among the instances.
#[derive(Clone, Debug)]
pub struct Hop {
    policy: Hopping,
    instances: usize,
    /// Sticky policies: the browser's instance; round-robin: the next one.
    at: usize,
}

impl Hop {
    /// Browsers start spread over the instances by their number.
    pub fn new(policy: Hopping, instances: usize, browser: usize) -> Self {
        Self {
            policy,
            instances: instances.max(1),
            at: browser % instances.max(1),
        }
    }

    /// The instance (index) the next request goes to.
    pub fn next(&mut self, rng: &mut impl Rng) -> usize {
        match self.policy {
            Hopping::Sticky | Hopping::StickyFailover => self.at,
            Hopping::RoundRobin => {
                let now = self.at;
                self.at = (self.at + 1) % self.instances;
                now
            }
            Hopping::Random => rng.random_range(0..self.instances),
        }
    }

    /// `count` instances for requests sent at the same moment: the one the
    /// policy picks next, then the instances after it, so they differ while
    /// there are enough (with fewer, some repeat).
    pub fn spread(&mut self, rng: &mut impl Rng, count: usize) -> Vec<usize> {
        let first = self.next(rng);
        (0..count).map(|i| (first + i) % self.instances).collect()
    }

    /// The instance `failed` did not answer (refused, or 502/503/504): under
    /// sticky-failover the browser moves on to the next one and stays there.
    pub fn failed(&mut self, failed: usize) {
        if self.policy == Hopping::StickyFailover && failed == self.at {
            self.at = (self.at + 1) % self.instances;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn each_policy_picks_as_it_says() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut sticky = Hop::new(Hopping::Sticky, 3, 4);
        assert_eq!(
            (0..4).map(|_| sticky.next(&mut rng)).collect::<Vec<_>>(),
            [1, 1, 1, 1]
        );
        sticky.failed(1);
        assert_eq!(sticky.next(&mut rng), 1, "plain sticky never moves");
        let mut turns = Hop::new(Hopping::RoundRobin, 3, 0);
        assert_eq!(
            (0..4).map(|_| turns.next(&mut rng)).collect::<Vec<_>>(),
            [0, 1, 2, 0]
        );
        let mut failover = Hop::new(Hopping::StickyFailover, 3, 2);
        assert_eq!(failover.next(&mut rng), 2);
        failover.failed(2);
        assert_eq!(
            (0..3).map(|_| failover.next(&mut rng)).collect::<Vec<_>>(),
            [0, 0, 0]
        );
        let mut spread = Hop::new(Hopping::Sticky, 3, 2);
        assert_eq!(spread.spread(&mut rng, 3), [2, 0, 1]);
        assert_eq!(
            Hop::new(Hopping::Sticky, 2, 1).spread(&mut rng, 3),
            [1, 0, 1]
        );
        let mut random = Hop::new(Hopping::Random, 3, 0);
        let picks: Vec<usize> = (0..100).map(|_| random.next(&mut rng)).collect();
        assert!((0..3).all(|i| picks.contains(&i)));
    }
}
