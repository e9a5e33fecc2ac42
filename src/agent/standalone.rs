//! The standalone source (`--services FILE`), pure: the services file, the
//! pools and the health verdicts in, the desired announcements and a
//! [`Candidate`] per address out.
//!
//! Owns: the rules for the file's addresses: an address outside every pool
//! is never announced (PRODUCT.md, the security boundary); a service whose
//! check fails is withdrawn; attributes are the pool's communities plus the
//! service's, with its MED and LOCAL_PREF. Must not touch: running the
//! checks (`health.rs`) or the interface.

use std::collections::{BTreeMap, BTreeSet};

use super::health::HealthState;
use super::report::Candidate;
use crate::config::Config;
use crate::model::{Announcement, RouteAttributes};
use crate::services::ServicesFile;

/// The source's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StandaloneDesired {
    pub announcements: BTreeSet<Announcement>,
    pub candidates: Vec<Candidate>,
}

/// The desired set, or `None` while a health check has not reported its
/// first result (announcing before would send End-of-RIB with services
/// missing that are healthy).
pub fn desired(
    config: &Config,
    services: &ServicesFile,
    health: &BTreeMap<String, HealthState>,
) -> Option<StandaloneDesired> {
    let mut out = StandaloneDesired::default();
    for service in &services.services {
        let verdict = match &service.check {
            None => Ok(()),
            Some(_) => match health.get(&service.name).and_then(HealthState::healthy) {
                None => return None,
                Some(true) => Ok(()),
                Some(false) => Err(format!(
                    "health check failing: {}",
                    health
                        .get(&service.name)
                        .and_then(HealthState::last_failure)
                        .unwrap_or("failed")
                )),
            },
        };
        for address in &service.addresses {
            let pool = config.pool_for(*address);
            let refusal = match (pool, &verdict) {
                (None, _) => Some("outside every configured pool".to_string()),
                (Some(_), Err(why)) => Some(why.clone()),
                (Some(pool), Ok(())) => {
                    let mut attributes = RouteAttributes {
                        med: service.med,
                        local_pref: service.local_pref,
                        ..RouteAttributes::default()
                    };
                    for community in pool.communities.iter().chain(&service.communities) {
                        attributes.add_community(*community);
                    }
                    out.announcements.insert(Announcement {
                        address: *address,
                        attributes,
                    });
                    None
                }
            };
            out.candidates.push(Candidate {
                address: *address,
                service: service.name.clone(),
                pool: pool.map(|p| p.name.clone()),
                refusal,
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::health::RunResult;
    use crate::model::Community;

    fn config() -> Config {
        Config::from_yaml(
            "asn: 64601\npools:\n  - name: public\n    cidrs: [203.0.113.0/24]\n    communities: [\"65000:100\"]\n",
        )
        .unwrap()
    }

    fn services(check: bool) -> ServicesFile {
        let check = if check {
            "    check: {command: [\"true\"]}\n"
        } else {
            ""
        };
        ServicesFile::from_yaml(&format!(
            "services:\n  - name: web\n    addresses: [203.0.113.10, 198.51.100.7]\n    communities: [\"65000:200\"]\n    med: 5\n{check}"
        ))
        .unwrap()
    }

    #[test]
    fn an_address_in_a_pool_carries_the_pool_and_service_communities() {
        let out = desired(&config(), &services(false), &BTreeMap::new()).unwrap();
        let a = out.announcements.iter().next().unwrap();
        assert_eq!(a.address.to_string(), "203.0.113.10");
        assert_eq!(
            a.attributes.communities,
            BTreeSet::from([Community::new(65000, 100), Community::new(65000, 200)])
        );
        assert_eq!(a.attributes.med, Some(5));
    }

    #[test]
    fn an_address_outside_every_pool_is_refused_with_the_reason() {
        let out = desired(&config(), &services(false), &BTreeMap::new()).unwrap();
        assert_eq!(out.announcements.len(), 1);
        let refused = &out.candidates[1];
        assert_eq!(refused.address.to_string(), "198.51.100.7");
        assert_eq!(
            refused.refusal.as_deref(),
            Some("outside every configured pool")
        );
        assert_eq!(refused.pool, None);
    }

    #[test]
    fn nothing_is_desired_until_every_check_has_a_first_result() {
        assert_eq!(desired(&config(), &services(true), &BTreeMap::new()), None);
    }

    #[test]
    fn a_failing_check_withdraws_the_service_and_says_why() {
        let mut health = BTreeMap::new();
        let mut state = HealthState::new(2, 2);
        state.record(&RunResult::Failed("exit status: 1".to_string()));
        health.insert("web".to_string(), state);
        let out = desired(&config(), &services(true), &health).unwrap();
        assert!(out.announcements.is_empty());
        assert_eq!(
            out.candidates[0].refusal.as_deref(),
            Some("health check failing: exit status: 1")
        );
    }

    #[test]
    fn a_passing_check_announces_the_service() {
        let mut health = BTreeMap::new();
        let mut state = HealthState::new(2, 2);
        state.record(&RunResult::Passed);
        health.insert("web".to_string(), state);
        let out = desired(&config(), &services(true), &health).unwrap();
        assert_eq!(out.announcements.len(), 1);
    }
}
