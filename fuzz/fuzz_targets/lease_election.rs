//! Fuzz the allocation Lease's election core: three contenders and a
//! simulated API server that stores a write only at the resourceVersion it
//! was read at (as the real one does), driven by random sequences of clock
//! steps, looks at the Lease, writes that land late, are refused, or are
//! lost after landing, graceful releases, restarts, and the Lease deleted
//! by hand.
//!
//! Invariants, checked after every step:
//! - no panic (arithmetic overflow included: run with `-a`);
//! - never two leaders at the same instant, unless the Lease was deleted
//!   by hand after the earlier leader's last write (a leader learns of a
//!   deletion only at its next look; herald's Role grants no delete, and
//!   docs/allocation.md states the limit);
//! - a contender only ever writes itself as the holder, and a release
//!   writes none and ends its leadership at once.
//!
//! `LEASE_TRACE=1` prints every step (to read a crash input).
#![no_main]

use std::time::{Duration, Instant, SystemTime};

use herald::config::LeaderElectionConfig;
use herald::election::{Decision, Election, Now, Record};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzzer's bytes; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((first, rest)) => {
                self.0 = rest;
                *first
            }
            None => 0,
        }
    }

    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// The API server's copy of the Lease: the record and its resourceVersion
/// (0: never written; `None` record: absent).
struct Server {
    record: Option<Record>,
    version: u64,
}

/// A write on its way: what was decided, the version it was read at, and
/// when it was sent.
struct Pending {
    record: Record,
    create: bool,
    version: u64,
    sent: Instant,
}

struct Contender {
    election: Election,
    identity: String,
    /// The resourceVersion last read or written (what a release carries).
    version: u64,
    pending: Option<Pending>,
}

fn timing(bytes: &mut Bytes) -> LeaderElectionConfig {
    let lease = 2 + u64::from(bytes.u8() % 19);
    let lease_ms = lease * 1000;
    let renew_ms = 200 + u64::from(bytes.u8()) * 100 % (lease_ms - 200);
    let retry_ms = 100 + u64::from(bytes.u8()) * 10 % (renew_ms - 100).max(1);
    LeaderElectionConfig {
        lease_duration: Duration::from_millis(lease_ms),
        renew_deadline: Duration::from_millis(renew_ms),
        retry_period: Duration::from_millis(retry_ms.min(renew_ms - 1)),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes(data);
    let timing = timing(&mut bytes);
    let start = Instant::now();
    let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut elapsed = Duration::ZERO;
    let mut server = Server {
        record: None,
        version: 0,
    };
    let new = |i: usize| Contender {
        election: Election::new(format!("node-{i}"), timing.clone()),
        identity: format!("node-{i}"),
        version: 0,
        pending: None,
    };
    let mut contenders: Vec<Contender> = (0..3).map(new).collect();
    let mut deleted: Option<Instant> = None;
    let mut steps = 0;
    while !bytes.done() && steps < 2000 {
        steps += 1;
        let op = bytes.u8();
        let i = usize::from(bytes.u8() % 3);
        let now = Now {
            mono: start + elapsed,
            wall: wall0 + elapsed,
        };
        match op % 8 {
            // The clock advances (0 to 2.55 s, or 0 to 25.5 s).
            0 | 1 => {
                let step = u64::from(bytes.u8()) * if op % 2 == 0 { 10 } else { 100 };
                elapsed += Duration::from_millis(step);
            }
            // A look at the Lease, and the write it calls for (sent now,
            // landing later).
            2 | 3 => {
                let c = &mut contenders[i];
                if c.pending.is_some() {
                    continue;
                }
                c.version = server.version;
                let decision = c.election.decide(server.record.as_ref(), now);
                if std::env::var_os("LEASE_TRACE").is_some() {
                    eprintln!("  {} decides {decision:?} at {elapsed:?}", c.identity);
                }
                let (record, create) = match decision {
                    Decision::Wait { .. } => continue,
                    Decision::Create(record) => (record, true),
                    Decision::Acquire(record) | Decision::Renew(record) => (record, false),
                };
                assert_eq!(record.holder, c.identity);
                c.pending = Some(Pending {
                    record,
                    create,
                    version: server.version,
                    sent: now.mono,
                });
            }
            // The pending write reaches the server: stored if the Lease is
            // as it was read (create: still absent), else 409. Answered, or
            // (op 5) lost after it was stored or not.
            4 | 5 => {
                let c = &mut contenders[i];
                let Some(pending) = c.pending.take() else {
                    continue;
                };
                let fits = if pending.create {
                    server.record.is_none()
                } else {
                    server.record.is_some() && server.version == pending.version
                };
                let lost = op % 8 == 5;
                let stored = fits && !(lost && bytes.u8() % 2 == 0);
                if stored {
                    server.record = Some(pending.record.clone());
                    server.version += 1;
                }
                if stored && !lost {
                    c.version = server.version;
                    c.election.written(pending.record, pending.sent, now.mono);
                } else {
                    c.election.conflict();
                }
            }
            // A graceful stop: released at the version last known, then
            // the process starts again with the same identity.
            6 => {
                let c = &mut contenders[i];
                c.pending = None;
                if let Some(record) = c.election.release(now) {
                    assert!(!c.election.is_leader(now.mono));
                    assert!(record.holder.is_empty());
                    if server.record.is_some() && server.version == c.version {
                        server.record = Some(record);
                        server.version += 1;
                    }
                }
                contenders[i] = new(i);
            }
            // The Lease deleted by hand, or a process killed and started
            // again (no release).
            _ => {
                if bytes.u8() % 2 == 0 {
                    server.record = None;
                    server.version += 1;
                    deleted = Some(now.mono);
                } else {
                    contenders[i] = new(i);
                }
            }
        }
        if std::env::var_os("LEASE_TRACE").is_some() {
            eprintln!(
                "op {} i {i} at {elapsed:?}: server v{} {:?}; leaders {:?}",
                op % 8,
                server.version,
                server.record.as_ref().map(|r| r.holder.clone()),
                contenders
                    .iter()
                    .map(|c| (
                        c.election.is_leader(start + elapsed),
                        c.election.leader_until().map(|u| u - start)
                    ))
                    .collect::<Vec<_>>()
            );
        }
        let at = start + elapsed;
        let leaders: Vec<&Contender> = contenders
            .iter()
            .filter(|c| c.election.is_leader(at))
            .collect();
        if leaders.len() > 1 {
            // When the earliest of them last wrote successfully.
            let earliest = leaders
                .iter()
                .filter_map(|c| c.election.leader_until())
                .min()
                .expect("a leader has a deadline")
                - timing.renew_deadline;
            let names: Vec<&str> = leaders.iter().map(|c| c.identity.as_str()).collect();
            assert!(
                deleted.is_some_and(|d| d >= earliest),
                "two leaders at {elapsed:?} with no deletion under them: {names:?}"
            );
        }
    }
});
