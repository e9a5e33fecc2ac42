//! The `herald.dev/*` annotations a Service may carry, parsed and checked.
//!
//! Owns: the annotation names and their syntax. Must not touch: pools or
//! endpoints (the policy applies the parsed values). Parsing never panics on
//! any annotation text; a bad value becomes an [`AnnotationError`] naming the
//! annotation and the reason.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::AnyCommunity;

pub use crate::config::AddressKind;

/// `"true"` selects the Service, `"false"` keeps it out even when the config
/// would select it.
pub const ADVERTISE: &str = "herald.dev/advertise";
/// Comma-separated [`AddressKind`] names, e.g. `"cluster,external,load-balancer"`.
pub const ADDRESS_KINDS: &str = "herald.dev/address-kinds";
/// Comma-separated communities, standard (`65000:100`) or large (`65000:1:2`).
pub const COMMUNITIES: &str = "herald.dev/communities";
/// LOCAL_PREF, a decimal number from 0 to 4294967295.
pub const LOCAL_PREF: &str = "herald.dev/local-pref";
/// MULTI_EXIT_DISC, a decimal number from 0 to 4294967295.
pub const MED: &str = "herald.dev/med";

/// A sharing key (the MetalLB convention): Services of one namespace with the
/// same key may announce the same address; without it an address belongs to
/// the oldest Service that claims it.
pub const ALLOW_SHARED_IP: &str = "herald.dev/allow-shared-ip";

/// The pool a `type: LoadBalancer` Service wants its address from (read by
/// the allocator, `crate::allocation`, not by the announcement policy).
pub const POOL: &str = "herald.dev/pool";
/// Comma-separated addresses, at most one per family, a Service asks the
/// allocator for (read by the allocator only).
pub const LOAD_BALANCER_IPS: &str = "herald.dev/load-balancer-ips";

/// Every annotation the announcement policy reads; the source's watchers
/// keep only these.
pub const ALL: [&str; 6] = [
    ADVERTISE,
    ADDRESS_KINDS,
    COMMUNITIES,
    LOCAL_PREF,
    MED,
    ALLOW_SHARED_IP,
];

/// An annotation whose value herald cannot use.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error, serde::Serialize,
)]
#[error("annotation {annotation}: {reason}")]
pub struct AnnotationError {
    pub annotation: &'static str,
    pub reason: String,
}

impl AnnotationError {
    fn new(annotation: &'static str, reason: impl Into<String>) -> Self {
        AnnotationError {
            annotation,
            reason: reason.into(),
        }
    }
}

/// A Service's herald annotations, each parsed or refused on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAnnotations {
    pub advertise: Result<Option<bool>, AnnotationError>,
    pub address_kinds: Result<Option<BTreeSet<AddressKind>>, AnnotationError>,
    /// The BGP attribute annotations; checked against the pool later.
    pub attributes: Result<AttributeAnnotations, AnnotationError>,
}

/// The values of the attribute annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttributeAnnotations {
    pub communities: Vec<AnyCommunity>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
}

impl ServiceAnnotations {
    /// Reads the annotations of one Service.
    pub fn parse(annotations: &BTreeMap<String, String>) -> Self {
        ServiceAnnotations {
            advertise: parse_advertise(annotations.get(ADVERTISE)),
            address_kinds: parse_address_kinds(annotations.get(ADDRESS_KINDS)),
            attributes: parse_attributes(annotations),
        }
    }
}

fn parse_advertise(value: Option<&String>) -> Result<Option<bool>, AnnotationError> {
    match value.map(|v| v.trim()) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(AnnotationError::new(
            ADVERTISE,
            format!("{other:?} is neither \"true\" nor \"false\""),
        )),
    }
}

fn parse_address_kinds(
    value: Option<&String>,
) -> Result<Option<BTreeSet<AddressKind>>, AnnotationError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let mut kinds = BTreeSet::new();
    for part in value.split(',') {
        let kind = part
            .parse::<AddressKind>()
            .map_err(|reason| AnnotationError::new(ADDRESS_KINDS, reason))?;
        kinds.insert(kind);
    }
    Ok(Some(kinds))
}

fn parse_attributes(
    annotations: &BTreeMap<String, String>,
) -> Result<AttributeAnnotations, AnnotationError> {
    let mut attributes = AttributeAnnotations::default();
    if let Some(value) = annotations.get(COMMUNITIES) {
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let community = part
                .parse::<AnyCommunity>()
                .map_err(|e| AnnotationError::new(COMMUNITIES, e.to_string()))?;
            attributes.communities.push(community);
        }
    }
    attributes.local_pref = parse_number(LOCAL_PREF, annotations.get(LOCAL_PREF))?;
    attributes.med = parse_number(MED, annotations.get(MED))?;
    Ok(attributes)
}

fn parse_number(
    annotation: &'static str,
    value: Option<&String>,
) -> Result<Option<u32>, AnnotationError> {
    value
        .map(|v| {
            v.trim().parse::<u32>().map_err(|_| {
                AnnotationError::new(
                    annotation,
                    format!("{v:?} is not a number from 0 to 4294967295"),
                )
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn absent_annotations_change_nothing() {
        let parsed = ServiceAnnotations::parse(&BTreeMap::new());
        assert_eq!(parsed.advertise, Ok(None));
        assert_eq!(parsed.address_kinds, Ok(None));
        assert_eq!(parsed.attributes, Ok(AttributeAnnotations::default()));
    }

    #[test]
    fn well_formed_annotations_are_read() {
        let parsed = ServiceAnnotations::parse(&annotations(&[
            (ADVERTISE, "true"),
            (ADDRESS_KINDS, "cluster, load-balancer"),
            (COMMUNITIES, "65000:100, 65000:1:2,"),
            (LOCAL_PREF, "200"),
            (MED, " 0 "),
        ]));
        assert_eq!(parsed.advertise, Ok(Some(true)));
        assert_eq!(
            parsed.address_kinds,
            Ok(Some(BTreeSet::from([
                AddressKind::Cluster,
                AddressKind::LoadBalancer
            ])))
        );
        let attributes = parsed.attributes.unwrap();
        assert_eq!(attributes.communities.len(), 2);
        assert_eq!(attributes.local_pref, Some(200));
        assert_eq!(attributes.med, Some(0));
    }

    #[test]
    fn malformed_annotations_name_the_annotation_and_the_reason() {
        let cases: [(&str, &str, &str); 7] = [
            (ADVERTISE, "yes", "neither"),
            (ADDRESS_KINDS, "cluster,nodeport", "\"nodeport\""),
            (ADDRESS_KINDS, "", "\"\""),
            (COMMUNITIES, "65000:100,65536:1", "0 to 65535"),
            (COMMUNITIES, "no-export", "not a community"),
            (LOCAL_PREF, "-1", "not a number"),
            (MED, "4294967296", "not a number"),
        ];
        for (name, value, needle) in cases {
            let parsed = ServiceAnnotations::parse(&annotations(&[(name, value)]));
            let err = match name {
                ADVERTISE => parsed.advertise.unwrap_err(),
                ADDRESS_KINDS => parsed.address_kinds.unwrap_err(),
                _ => parsed.attributes.unwrap_err(),
            };
            assert_eq!(err.annotation, name);
            let text = err.to_string();
            assert!(text.starts_with(&format!("annotation {name}: ")), "{text}");
            assert!(text.contains(needle), "{name}={value}: {text}");
        }
    }

    #[test]
    fn random_annotation_text_never_panics() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let alphabet: Vec<char> = "0123456789:,. -abtrueflsxé\u{0}".chars().collect();
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..(rng % 24) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                text.push(alphabet[(rng % alphabet.len() as u64) as usize]);
            }
            let pairs: Vec<(&str, &str)> = ALL.iter().map(|name| (*name, text.as_str())).collect();
            let _ = ServiceAnnotations::parse(&annotations(&pairs));
        }
    }
}
