//! Table tests of the election core: fresh Lease, expired holder, own renew,
//! conflict, clock jumps, release, and a hostile record.

use std::time::{Duration, Instant, SystemTime};

use super::{Decision, Election, Now, Record};
use crate::config::LeaderElectionConfig;

fn timing() -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    }
}

/// A clock for one test: the monotonic and the wall clock advance together
/// unless a test jumps the wall clock on its own.
struct Clock {
    start: Instant,
    wall0: SystemTime,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            // An hour ahead, so that the tests may look 15 s into the past.
            start: Instant::now() + Duration::from_secs(3600),
            wall0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    fn at(&self, secs: f64) -> Now {
        let d = Duration::from_secs_f64(secs);
        Now {
            mono: self.start + d,
            wall: self.wall0 + d,
        }
    }
}

fn held_by(holder: &str, renew: SystemTime) -> Record {
    Record {
        holder: holder.to_string(),
        lease_duration_seconds: 15,
        acquire_time: Some(renew),
        renew_time: Some(renew),
        transitions: 3,
    }
}

/// Reads an absent Lease at -15 s and 0 s: at 0 the elector creates it.
/// Returns the record it would write.
fn create(election: &mut Election, clock: &Clock) -> Record {
    let before = Now {
        mono: clock.start - Duration::from_secs(15),
        wall: clock.wall0 - Duration::from_secs(15),
    };
    assert!(matches!(
        election.decide(None, before),
        Decision::Wait { .. }
    ));
    match election.decide(None, clock.at(0.0)) {
        Decision::Create(record) => record,
        other => panic!("expected a Create, got {other:?}"),
    }
}

#[derive(Debug)]
enum Expect {
    Create,
    Acquire { transitions: i32 },
    Renew,
    Wait { secs: u64 },
}

fn check(what: &str, decision: &Decision, expect: &Expect, me: &str) {
    match (decision, expect) {
        (Decision::Create(r), Expect::Create) => {
            assert_eq!(r.holder, me, "{what}");
            assert_eq!(r.transitions, 0, "{what}");
            assert_eq!(r.lease_duration_seconds, 15, "{what}");
        }
        (Decision::Acquire(r), Expect::Acquire { transitions }) => {
            assert_eq!(r.holder, me, "{what}");
            assert_eq!(r.transitions, *transitions, "{what}");
        }
        (Decision::Renew(r), Expect::Renew) => assert_eq!(r.holder, me, "{what}"),
        (Decision::Wait { expires_in, .. }, Expect::Wait { secs }) => {
            assert_eq!(expires_in.as_secs_f64().round() as u64, *secs, "{what}")
        }
        _ => panic!("{what}: got {decision:?}, expected {expect:?}"),
    }
}

/// Reads of the Lease: (seconds since start, the Lease as read).
type Reads = Vec<(f64, Option<Record>)>;

/// Each row: a sequence of (seconds since start, the Lease as read), and
/// what the last read decides.
#[test]
fn decisions_from_the_lease_as_read() {
    let clock = Clock::new();
    let wall = |s: u64| clock.wall0 + Duration::from_secs(s);
    let other = |s: u64| Some(held_by("node-b", wall(s)));
    let greedy = Some(Record {
        lease_duration_seconds: 86_400,
        ..held_by("node-b", wall(0))
    });
    let rows: Vec<(&str, Reads, Expect)> = vec![
        (
            "no Lease, just seen absent",
            vec![(0.0, None)],
            Expect::Wait { secs: 15 },
        ),
        (
            "no Lease for 15 s",
            vec![(0.0, None), (15.0, None)],
            Expect::Create,
        ),
        (
            "released Lease (no holder)",
            vec![(0.0, Some(held_by("", wall(0))))],
            Expect::Acquire { transitions: 4 },
        ),
        (
            "another holder, just seen",
            vec![(0.0, other(0))],
            Expect::Wait { secs: 15 },
        ),
        (
            "another holder, unchanged for 14.6 s",
            vec![(0.0, other(0)), (14.6, other(0))],
            Expect::Wait { secs: 0 },
        ),
        (
            "another holder, unchanged for 15 s: expired",
            vec![(0.0, other(0)), (15.0, other(0))],
            Expect::Acquire { transitions: 4 },
        ),
        (
            "another holder that renews keeps it",
            vec![(0.0, other(0)), (10.0, other(10)), (20.0, other(10))],
            Expect::Wait { secs: 5 },
        ),
        (
            "own Lease: renew",
            vec![(0.0, Some(held_by("node-a", wall(0))))],
            Expect::Renew,
        ),
        (
            // The holder's clock is an hour ahead: its renewTime lies in
            // our future. Expiry is still 15 s after we saw it change.
            "holder's clock an hour ahead",
            vec![(0.0, other(3600)), (14.0, other(3600))],
            Expect::Wait { secs: 1 },
        ),
        (
            // An hour behind: its renewTime looks long expired, but the
            // record just changed.
            "holder's clock an hour behind",
            vec![(
                0.0,
                Some(held_by("node-b", clock.wall0 - Duration::from_secs(3600))),
            )],
            Expect::Wait { secs: 15 },
        ),
        (
            "a holder that wrote no duration gets ours",
            vec![(
                0.0,
                Some(Record {
                    lease_duration_seconds: 0,
                    ..held_by("node-b", wall(0))
                }),
            )],
            Expect::Wait { secs: 15 },
        ),
        (
            "a holder that wrote a day is honoured at most 5 minutes",
            vec![(0.0, greedy.clone()), (300.0, greedy)],
            Expect::Acquire { transitions: 4 },
        ),
        (
            // Its holder may lead until its next look: wait it out.
            "the Lease deleted under its holder",
            vec![(0.0, other(0)), (10.0, None), (24.0, None)],
            Expect::Wait { secs: 1 },
        ),
        (
            "the Lease deleted 15 s ago",
            vec![(0.0, other(0)), (10.0, None), (25.0, None)],
            Expect::Create,
        ),
    ];
    for (what, reads, expect) in rows {
        let mut election = Election::new("node-a", timing());
        let mut last = None;
        for (at, read) in &reads {
            last = Some(election.decide(read.as_ref(), clock.at(*at)));
        }
        check(what, &last.unwrap(), &expect, "node-a");
    }
}

#[test]
fn a_leader_leads_until_its_renew_deadline_from_when_it_sent_the_write() {
    let clock = Clock::new();
    let mut election = Election::new("node-a", timing());
    let record = create(&mut election, &clock);
    assert!(
        !election.is_leader(clock.at(0.0).mono),
        "not before the write"
    );
    // The write was sent at 0 and answered at 0.5.
    election.written(record.clone(), clock.at(0.0).mono, clock.at(0.5).mono);
    assert!(election.is_leader(clock.at(0.5).mono));
    assert_eq!(election.holder(), Some("node-a"));
    assert!(election.is_leader(clock.at(9.9).mono));
    assert!(
        !election.is_leader(clock.at(10.0).mono),
        "renew_deadline counts from the send, not the answer"
    );
    // A renew read at 2 and written at 2 moves the deadline to 12.
    let Decision::Renew(renewed) = election.decide(Some(&record), clock.at(2.0)) else {
        panic!("own Lease is renewed")
    };
    assert_eq!(
        renewed.acquire_time, record.acquire_time,
        "acquireTime kept"
    );
    assert_eq!(renewed.transitions, record.transitions);
    election.written(renewed, clock.at(2.0).mono, clock.at(2.1).mono);
    assert!(election.is_leader(clock.at(11.9).mono));
    assert!(!election.is_leader(clock.at(12.0).mono));
}

#[test]
fn the_leader_steps_down_before_anyone_else_may_take_over() {
    // A leader whose renews all fail after its last success at t=0, and a
    // follower that saw that write at the earliest possible moment (t=0).
    let clock = Clock::new();
    let mut a = Election::new("node-a", timing());
    let mut b = Election::new("node-b", timing());
    let record = create(&mut a, &clock);
    a.written(record.clone(), clock.at(0.0).mono, clock.at(0.0).mono);
    for tenth in 0..400 {
        let t = f64::from(tenth) / 10.0;
        let b_acts = matches!(b.decide(Some(&record), clock.at(t)), Decision::Acquire(_));
        assert!(
            !(b_acts && a.is_leader(clock.at(t).mono)),
            "two leaders at {t} s"
        );
        if b_acts {
            assert!(t >= 15.0, "took over at {t} s");
            return;
        }
    }
    panic!("the follower never took over");
}

#[test]
fn of_two_contenders_the_one_whose_write_lands_leads() {
    let clock = Clock::new();
    let free = held_by("", clock.wall0);
    let mut a = Election::new("node-a", timing());
    let mut b = Election::new("node-b", timing());
    let Decision::Acquire(a_record) = a.decide(Some(&free), clock.at(0.0)) else {
        panic!()
    };
    let Decision::Acquire(_) = b.decide(Some(&free), clock.at(0.0)) else {
        panic!()
    };
    // a's replace lands; b's carries the old resourceVersion: 409.
    a.written(a_record.clone(), clock.at(0.0).mono, clock.at(0.1).mono);
    b.conflict();
    assert!(a.is_leader(clock.at(0.2).mono));
    assert!(!b.is_leader(clock.at(0.2).mono));
    // b's next read sees a's Lease and waits its whole duration.
    assert_eq!(
        b.decide(Some(&a_record), clock.at(2.0)),
        Decision::Wait {
            holder: "node-a".to_string(),
            expires_in: Duration::from_secs(15)
        }
    );
    assert_eq!(b.holder(), Some("node-a"));
}

#[test]
fn a_leader_that_sees_another_holder_stops_at_once() {
    let clock = Clock::new();
    let mut a = Election::new("node-a", timing());
    let record = create(&mut a, &clock);
    a.written(record, clock.at(0.0).mono, clock.at(0.0).mono);
    assert!(a.is_leader(clock.at(1.0).mono));
    let taken = held_by("node-b", clock.wall0);
    assert!(matches!(
        a.decide(Some(&taken), clock.at(2.0)),
        Decision::Wait { .. }
    ));
    assert!(!a.is_leader(clock.at(2.0).mono));
}

#[test]
fn a_wall_clock_jump_changes_nothing() {
    // The wall clock steps back a day between two reads of an unchanged
    // Lease held by another node: the decision follows the monotonic clock.
    let clock = Clock::new();
    let mut b = Election::new("node-b", timing());
    let record = held_by("node-a", clock.wall0);
    b.decide(Some(&record), clock.at(0.0));
    let mut jumped = clock.at(10.0);
    jumped.wall -= Duration::from_secs(86_400);
    assert!(matches!(
        b.decide(Some(&record), jumped),
        Decision::Wait { expires_in, .. } if expires_in == Duration::from_secs(5)
    ));
    let mut jumped = clock.at(15.0);
    jumped.wall += Duration::from_secs(86_400 * 2);
    assert!(matches!(
        b.decide(Some(&record), jumped),
        Decision::Acquire(_)
    ));
}

#[test]
fn release_frees_the_lease_only_for_its_holder() {
    let clock = Clock::new();
    let mut a = Election::new("node-a", timing());
    assert_eq!(a.release(clock.at(0.0)), None, "nothing held");
    let record = create(&mut a, &clock);
    a.written(record.clone(), clock.at(0.0).mono, clock.at(0.0).mono);
    let released = a.release(clock.at(1.0)).expect("the holder releases");
    assert_eq!(released.holder, "");
    assert_eq!(released.lease_duration_seconds, 1);
    assert_eq!(released.transitions, record.transitions);
    assert!(!a.is_leader(clock.at(1.0).mono), "stops leading at once");
    // The next contender takes it at its first look.
    let mut b = Election::new("node-b", timing());
    assert!(matches!(
        b.decide(Some(&released), clock.at(1.5)),
        Decision::Acquire(r) if r.transitions == record.transitions + 1
    ));
    // A follower has nothing to release.
    let mut c = Election::new("node-c", timing());
    c.decide(Some(&record), clock.at(0.0));
    assert_eq!(c.release(clock.at(1.0)), None);
}
