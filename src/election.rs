//! The leader election's pure core: given the Lease as read, the time, and
//! the timing, decide whether to create, take over, renew, or wait; and
//! whether this process leads right now.
//!
//! Owns: the rules. Must not touch: the API, clocks, tokio (the driver,
//! `source::kube::lease`, reads the Lease, reads the clocks and writes what
//! this decides).
//!
//! Expiry is measured the client-go way: on this process's monotonic clock,
//! from the moment it last saw the Lease record change. The `renewTime`
//! another node wrote is never compared with the local clock, so skew
//! between nodes (or a wall clock stepped by NTP) cannot make a Lease look
//! expired early.
//!
//! Why two leaders cannot overlap: a leader counts its deadline from the
//! instant it *sent* its last successful write, which is before the API
//! server stored it, which is before anyone else can have seen it; the
//! others wait `lease_duration` from when they saw it, and the leader gives
//! up after `renew_deadline < lease_duration`.

use std::time::{Duration, Instant, SystemTime};

use crate::config::LeaderElectionConfig;
use crate::config::leader_election::LEASE_DURATION_MAX;

/// The Lease's fields the election reads and writes
/// (`coordination.k8s.io/v1` `LeaseSpec`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Who holds the Lease; empty: nobody (released).
    pub holder: String,
    /// `leaseDurationSeconds` as the holder wrote it.
    pub lease_duration_seconds: i32,
    pub acquire_time: Option<SystemTime>,
    pub renew_time: Option<SystemTime>,
    pub transitions: i32,
}

/// The two clocks: the monotonic one decides, the wall clock only fills the
/// timestamps written for humans and other tools.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There has been no Lease for `lease_duration`: create it, held by
    /// this process.
    Create(Record),
    /// The Lease is free or its holder has expired: replace it (at the
    /// resourceVersion read, so that of two contenders one wins).
    Acquire(Record),
    /// The Lease is this process's: replace it with a fresh renew time.
    Renew(Record),
    /// Someone else holds a Lease that has not expired.
    Wait {
        holder: String,
        /// Until it expires if it is not renewed meanwhile.
        expires_in: Duration,
    },
}

/// One contender's view: the identity, the timing, the Lease as last seen
/// and since when, and when this process last renewed successfully.
#[derive(Clone, Debug)]
pub struct Election {
    identity: String,
    timing: LeaderElectionConfig,
    /// The record last read or written (`None` inside: the Lease did not
    /// exist), and when that last changed; `None`: nothing read yet.
    observed: Option<(Option<Record>, Instant)>,
    /// While this process holds the Lease: when its last successful write
    /// was sent.
    renewed: Option<Instant>,
}

impl Election {
    pub fn new(identity: impl Into<String>, timing: LeaderElectionConfig) -> Election {
        Election {
            identity: identity.into(),
            timing,
            observed: None,
            renewed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Decides from the Lease as read at `now` (`None`: it does not exist).
    pub fn decide(&mut self, read: Option<&Record>, now: Now) -> Decision {
        self.observe(read, now.mono);
        let Some(record) = read else {
            // Absent: never created, or deleted (by hand: herald's Role
            // grants no delete). A leader it was deleted under may believe
            // it leads until its next look, so an absent Lease is waited out
            // like an unchanged one, from when it was first seen absent.
            // This process, if it was that leader, stops now.
            self.renewed = None;
            let expiry = self.changed_at(now.mono) + self.timing.lease_duration;
            if now.mono < expiry {
                return Decision::Wait {
                    holder: String::new(),
                    expires_in: expiry - now.mono,
                };
            }
            return Decision::Create(self.claim(now, 0));
        };
        if record.holder == self.identity {
            // Also after a restart with the same identity: nobody else can
            // have taken it, or the holder would not be us.
            return Decision::Renew(Record {
                lease_duration_seconds: self.duration_seconds(),
                renew_time: Some(now.wall),
                acquire_time: record.acquire_time.or(Some(now.wall)),
                ..record.clone()
            });
        }
        // Someone else's, or free: whatever this process believed, it does
        // not hold it now.
        self.renewed = None;
        if !record.holder.is_empty() {
            let expiry = self.changed_at(now.mono)
                + honoured_duration(record.lease_duration_seconds, &self.timing);
            if now.mono < expiry {
                return Decision::Wait {
                    holder: record.holder.clone(),
                    expires_in: expiry - now.mono,
                };
            }
        }
        Decision::Acquire(self.claim(now, record.transitions.saturating_add(1)))
    }

    /// The write of a `Create`, `Acquire` or `Renew`, sent at `sent`, was
    /// stored as `stored` (what the API server answered) at `now`.
    pub fn written(&mut self, stored: Record, sent: Instant, now: Instant) {
        if stored.holder == self.identity {
            self.renewed = Some(sent);
        }
        self.observe(Some(&stored), now);
    }

    /// The write was refused because the Lease changed since it was read
    /// (409): someone else wrote it. The next read decides; until then a
    /// leader keeps leading only up to its deadline.
    pub fn conflict(&mut self) {}

    /// Whether this process leads at `now`: it holds the Lease and renewed it
    /// less than `renew_deadline` ago.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.leader_until().is_some_and(|until| now < until)
    }

    /// When this process stops leading unless it renews before.
    pub fn leader_until(&self) -> Option<Instant> {
        self.renewed.map(|at| at + self.timing.renew_deadline)
    }

    /// The holder as last seen (empty or `None`: nobody).
    pub fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|(record, _)| record.as_ref())
            .map(|record| record.holder.as_str())
            .filter(|holder| !holder.is_empty())
    }

    /// Giving the Lease up (a graceful stop): the record to write if this
    /// process holds it, with no holder, so that the next contender takes it
    /// at its next look instead of after `lease_duration`. This process stops
    /// leading at once, whether or not the write succeeds.
    pub fn release(&mut self, now: Now) -> Option<Record> {
        let held = self.renewed.take().is_some();
        let record = self.observed.as_ref()?.0.as_ref()?;
        (held && record.holder == self.identity).then(|| Record {
            holder: String::new(),
            lease_duration_seconds: 1,
            renew_time: Some(now.wall),
            ..record.clone()
        })
    }

    fn observe(&mut self, record: Option<&Record>, now: Instant) {
        if self.observed.as_ref().map(|(seen, _)| seen.as_ref()) != Some(record) {
            self.observed = Some((record.cloned(), now));
        }
    }

    /// When the Lease as last observed last changed.
    fn changed_at(&self, now: Instant) -> Instant {
        self.observed.as_ref().map_or(now, |(_, at)| *at)
    }

    fn claim(&self, now: Now, transitions: i32) -> Record {
        Record {
            holder: self.identity.clone(),
            lease_duration_seconds: self.duration_seconds(),
            acquire_time: Some(now.wall),
            renew_time: Some(now.wall),
            transitions,
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// How long another holder's Lease is honoured: what it wrote, but at most
/// the longest lease herald accepts (a holder cannot make the others wait
/// for days), and this process's own duration when it wrote nothing usable.
fn honoured_duration(seconds: i32, timing: &LeaderElectionConfig) -> Duration {
    match u64::try_from(seconds) {
        Ok(seconds) if seconds > 0 => Duration::from_secs(seconds).min(LEASE_DURATION_MAX),
        _ => timing.lease_duration,
    }
}

#[cfg(test)]
mod tests;
