//! Random faults (crashes, restarts, partitions, heals) among writes on
//! two and three trackers, then a heal: the trackers must converge on one
//! primary and one log.

use super::*;

fn random_run(seed: u64, n: u16) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut c = Cluster::new(n);
    c.run(2000);
    let mut id = 0;
    for _ in 0..60 {
        match rng.random_range(0..10) {
            0 => {
                let a = rng.random_range(1..=n);
                if c.is_up(a) && (1..=n).filter(|&i| c.is_up(i)).count() > 1 {
                    c.crash(a);
                }
            }
            1 => {
                let a = rng.random_range(1..=n);
                if !c.is_up(a) {
                    c.restart(a);
                }
            }
            2 => {
                let side: Vec<u16> = (1..=n).filter(|_| rng.random_bool(0.5)).collect();
                c.partition(&side);
            }
            3 => c.heal(),
            _ => {
                let a = rng.random_range(1..=n);
                if c.is_up(a) {
                    id += 1;
                    let _ = c.write(a, &format!("n{}", rng.random_range(0..30)), id);
                }
            }
        }
        c.run(rng.random_range(0..1500));
    }
    for i in 1..=n {
        if !c.is_up(i) {
            c.restart(i);
        }
    }
    c.heal();
    c.run(10_000);
    c.assert_converged();
    assert!(
        c.primary().is_some(),
        "no primary after healing\n{}",
        c.tail()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_faults_converge_two_trackers(seed in any::<u64>()) {
        random_run(seed, 2);
    }
    #[test]
    fn random_faults_converge_three_trackers(seed in any::<u64>()) {
        random_run(seed, 3);
    }
}
