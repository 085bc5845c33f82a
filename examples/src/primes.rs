//! A long computation as a cosmic task: the sum and count of the primes below a limit, by a
//! segmented sieve, one segment per step. Its whole state is where it stands and what it has
//! summed, so it can stop at any step and resume on another host with the same answer.

use cosmic::prelude::*;

/// The computation's state.
#[derive(Migratable, Debug, Clone, PartialEq)]
pub struct PrimeSum {
    /// Sum the primes below this.
    pub limit: u64,
    /// The next segment starts here.
    pub next: u64,
    /// Numbers per segment (per step).
    pub segment: u64,
    /// Primes found so far.
    pub count: u64,
    /// Their sum so far.
    pub sum: u64,
    /// Steps done.
    pub steps: u64,
}

/// What the computation returns.
#[derive(Migratable, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimeTotal {
    /// Primes below the limit.
    pub count: u64,
    /// Their sum.
    pub sum: u64,
    /// Steps it took.
    pub steps: u64,
}

impl PrimeSum {
    /// The primes below `limit`, `segment` numbers per step.
    pub fn new(limit: u64, segment: u64) -> PrimeSum {
        PrimeSum {
            limit,
            next: 2,
            segment: segment.max(1),
            count: 0,
            sum: 0,
            steps: 0,
        }
    }

    /// Sieves the next segment; true once the limit is reached.
    pub fn advance(&mut self) -> bool {
        let low = self.next;
        let high = (low + self.segment).min(self.limit);
        if low < high {
            let mut composite = vec![false; (high - low) as usize];
            let mut p = 2u64;
            while p * p < high {
                let first = (low.div_ceil(p) * p).max(p * p);
                let mut multiple = first;
                while multiple < high {
                    composite[(multiple - low) as usize] = true;
                    multiple += p;
                }
                p += 1;
            }
            for (offset, is_composite) in composite.iter().enumerate() {
                if !is_composite {
                    self.count += 1;
                    self.sum += low + offset as u64;
                }
            }
        }
        self.next = high;
        self.steps += 1;
        self.next >= self.limit
    }

    /// The answer, computed here without the runtime: what a run that never moved gives.
    pub fn reference(limit: u64, segment: u64) -> PrimeTotal {
        let mut task = PrimeSum::new(limit, segment);
        while !task.advance() {}
        task.total()
    }

    fn total(&self) -> PrimeTotal {
        PrimeTotal {
            count: self.count,
            sum: self.sum,
            steps: self.steps,
        }
    }
}

#[async_trait]
impl Task for PrimeSum {
    type Output = PrimeTotal;

    async fn step(&mut self, _cx: &mut StepContext) -> Result<Step<PrimeTotal>, TaskError> {
        if self.advance() {
            Ok(Step::Done(self.total()))
        } else {
            Ok(Step::Continue)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sieve_counts_the_primes_below_a_hundred() {
        assert_eq!(
            PrimeSum::reference(100, 7),
            PrimeTotal {
                count: 25,
                sum: 1060,
                steps: 14
            }
        );
    }
}
