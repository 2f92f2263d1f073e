//! Which faults (and which early stop) a request gets, as a pure function of
//! the fault seed and the request's sequence number, so a test or a
//! calibration run can predict exactly which requests misbehave.

use hyper::StatusCode;

use super::Faults;
use crate::rng::Rng;

/// The faults drawn for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Draw {
    /// Answer at once with this status instead of generating.
    pub fail: Option<StatusCode>,
    pub stall: bool,
    pub malformed: bool,
    pub disconnect: bool,
    /// The length at which generation would stop at an end-of-sequence token,
    /// when `eos_after` is configured.
    pub eos_tokens: Option<u32>,
}

impl Draw {
    /// Draws in a fixed order, every draw taken whatever the rates, so that
    /// changing one rate never moves another fault to different requests.
    pub fn for_request(faults: &Faults, eos_after: Option<u32>, seq: u64) -> Draw {
        let mut rng = Rng::new(faults.seed, seq);
        let fail_u = rng.next_f64();
        let fail_503 = rng.next_u64() & 1 == 1;
        let stall_u = rng.next_f64();
        let malformed_u = rng.next_f64();
        let disconnect_u = rng.next_f64();
        // Last, because rejection sampling may take a variable number of draws.
        let eos_tokens = eos_after.map(|n| {
            // `n` fits in u32, so the drawn value does too.
            u32::try_from(rng.range_inclusive(1, u64::from(n.max(1)))).unwrap_or(n)
        });
        let fail = (fail_u < faults.fail_rate).then_some(if fail_503 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        });
        Draw {
            fail,
            stall: stall_u < faults.stall_rate,
            malformed: malformed_u < faults.malformed_rate,
            disconnect: disconnect_u < faults.disconnect_rate,
            eos_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(seed: u64, rate: f64) -> Faults {
        Faults {
            seed,
            fail_rate: rate,
            stall_rate: rate,
            malformed_rate: rate,
            disconnect_rate: rate,
            ..Faults::default()
        }
    }

    #[test]
    fn same_seed_and_sequence_give_the_same_faults() {
        let a: Vec<Draw> = (0..200)
            .map(|s| Draw::for_request(&faults(7, 0.3), Some(50), s))
            .collect();
        let b: Vec<Draw> = (0..200)
            .map(|s| Draw::for_request(&faults(7, 0.3), Some(50), s))
            .collect();
        assert_eq!(a, b);
        let c: Vec<Draw> = (0..200)
            .map(|s| Draw::for_request(&faults(8, 0.3), Some(50), s))
            .collect();
        assert_ne!(a, c, "another seed must pick other requests");
    }

    #[test]
    fn rates_zero_and_one_are_exact() {
        for seq in 0..500 {
            let none = Draw::for_request(&faults(1, 0.0), None, seq);
            assert_eq!(
                (none.fail, none.stall, none.malformed, none.disconnect),
                (None, false, false, false)
            );
            let all = Draw::for_request(&faults(1, 1.0), None, seq);
            assert!(all.fail.is_some() && all.stall && all.malformed && all.disconnect);
        }
    }

    #[test]
    fn share_of_faulted_requests_follows_the_rate() {
        // 2000 Bernoulli(0.25) draws: mean 500, sd ~19; ±100 is > 5 sd.
        let n = (0..2000)
            .filter(|&s| Draw::for_request(&faults(3, 0.25), None, s).stall)
            .count();
        assert!((400..=600).contains(&n), "{n} stalls of 2000 at rate 0.25");
        let fails: Vec<StatusCode> = (0..2000)
            .filter_map(|s| Draw::for_request(&faults(3, 1.0), None, s).fail)
            .collect();
        assert!(fails.contains(&StatusCode::INTERNAL_SERVER_ERROR));
        assert!(fails.contains(&StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn changing_one_rate_does_not_move_another_fault() {
        let only_stall = Faults {
            seed: 5,
            stall_rate: 0.3,
            ..Faults::default()
        };
        let stall_and_fail = Faults {
            fail_rate: 0.6,
            ..only_stall.clone()
        };
        for seq in 0..300 {
            let a = Draw::for_request(&only_stall, Some(9), seq);
            let b = Draw::for_request(&stall_and_fail, Some(9), seq);
            assert_eq!((a.stall, a.eos_tokens), (b.stall, b.eos_tokens));
        }
    }

    #[test]
    fn eos_length_stays_in_range() {
        let lens: Vec<u32> = (0..500)
            .filter_map(|s| Draw::for_request(&faults(2, 0.0), Some(4), s).eos_tokens)
            .collect();
        assert_eq!(lens.len(), 500);
        assert!(lens.iter().all(|&n| (1..=4).contains(&n)));
        assert!(lens.contains(&1) && lens.contains(&4));
    }
}
