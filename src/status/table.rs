//! `herald status` output: the report as aligned text tables, one section per
//! part (think `birdc show protocols`).

use std::fmt::Write;

use super::{BfdState, StatusReport};

/// Renders `report`, with ages measured from `now` (Unix seconds).
pub(super) fn render(report: &StatusReport, now: u64) -> String {
    let mut out = String::new();
    let config = &report.config;
    let router_id = config
        .router_id
        .map_or_else(|| "node address".to_string(), |id| id.to_string());
    let _ = writeln!(
        out,
        "herald {} on {}: AS {}, router id {}, interface {}, up {}",
        report.version,
        report.node_name,
        config.asn,
        router_id,
        config.interface,
        age(Some(report.started_at), now),
    );

    section(&mut out, "Peers", {
        let mut table = Table::new(&[
            "NAME",
            "ADDRESS",
            "ASN",
            "STATE",
            "SINCE",
            "HOLD",
            "SENT",
            "LAST ERROR",
        ]);
        for peer in &report.peers {
            table.row(vec![
                peer.name.clone(),
                peer.address.clone(),
                peer.asn.to_string(),
                format!("{:?}", peer.state),
                age(peer.since, now),
                peer.hold_time.map_or("-".to_string(), |s| format!("{s}s")),
                peer.prefixes_sent.to_string(),
                or_dash(&peer.last_error),
            ]);
        }
        table
    });

    section(&mut out, "BFD sessions", {
        let mut table = Table::new(&[
            "PEER",
            "REMOTE",
            "LOCAL",
            "HOPS",
            "STATE",
            "REMOTE STATE",
            "SINCE",
            "TX",
            "DETECT",
            "DIAGNOSTIC",
        ]);
        for session in &report.bfd_sessions {
            table.row(vec![
                session.peer.clone(),
                session.remote_address.to_string(),
                session
                    .local_address
                    .map_or("-".to_string(), |a| a.to_string()),
                if session.multihop { "multi" } else { "single" }.to_string(),
                bfd_state(Some(session.state)),
                bfd_state(session.remote_state),
                age(session.since, now),
                micros(session.tx_interval_us),
                micros(session.detection_time_us),
                or_dash(&session.diagnostic),
            ]);
        }
        table
    });

    section(&mut out, "Announcements", {
        let mut table = Table::new(&["ADDRESS", "SERVICE", "POOL", "ANNOUNCED TO", "REASON"]);
        for announcement in &report.announcements {
            let to = if announcement.announced_to.is_empty() {
                "-".to_string()
            } else {
                announcement.announced_to.join(",")
            };
            table.row(vec![
                announcement.address.to_string(),
                announcement.service.clone(),
                or_dash(&announcement.pool),
                to,
                or_dash(&announcement.reason),
            ]);
        }
        table
    });

    section(&mut out, "Sources", {
        let mut table = Table::new(&["SOURCE", "HEALTHY", "LAST UPDATE", "DETAIL"]);
        for source in &report.sources {
            table.row(vec![
                source.name.clone(),
                if source.healthy { "yes" } else { "NO" }.to_string(),
                age(source.last_update, now),
                or_dash(&source.detail),
            ]);
        }
        table
    });
    out
}

fn section(out: &mut String, title: &str, table: Table) {
    let _ = writeln!(out, "\n{title}");
    if table.rows.is_empty() {
        let _ = writeln!(out, "  (none reported)");
    } else {
        out.push_str(&table.to_string());
    }
}

fn or_dash(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".to_string())
}

fn bfd_state(state: Option<BfdState>) -> String {
    state.map_or("-".to_string(), |s| format!("{s:?}"))
}

fn micros(value: Option<u64>) -> String {
    match value {
        None => "-".to_string(),
        Some(us) if us % 1000 == 0 => format!("{}ms", us / 1000),
        Some(us) => format!("{}us", us),
    }
}

/// "3d4h", "2h5m", "5m3s", "42s" since `then`; "-" when unknown.
fn age(then: Option<u64>, now: u64) -> String {
    let Some(then) = then else {
        return "-".to_string();
    };
    let s = now.saturating_sub(then);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// Left-aligned columns two spaces apart, indented by two.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::from(" ");
            for (cell, width) in row.iter().zip(&widths) {
                line.push(' ');
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 1));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::status::tests::peer;
    use crate::status::{AnnouncementStatus, BgpState, ConfigSummary, SourceStatus};

    fn report() -> StatusReport {
        StatusReport {
            node_name: "node-a".to_string(),
            version: "0.1.0".to_string(),
            started_at: 1_000,
            config: ConfigSummary {
                asn: 64601,
                interface: "lo".to_string(),
                ..ConfigSummary::default()
            },
            peers: vec![peer("r1", BgpState::Established)],
            bfd_sessions: vec![],
            announcements: vec![AnnouncementStatus {
                address: "198.51.100.7".parse().unwrap(),
                service: "default/web".to_string(),
                pool: None,
                announced_to: vec![],
                reason: Some("outside every pool".to_string()),
            }],
            sources: vec![SourceStatus {
                name: "kubernetes".to_string(),
                healthy: false,
                last_update: Some(1_000),
                detail: Some("watch failed: connection refused".to_string()),
            }],
            drain: None,
        }
    }

    #[test]
    fn the_table_shows_every_section_with_aligned_columns() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000 + 3 * 60 + 5);
        let text = report().render(now);
        assert!(
            text.starts_with("herald 0.1.0 on node-a: AS 64601, router id node address"),
            "{text}"
        );
        assert!(text.contains("up 3m5s"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.contains("NAME")).unwrap();
        let row = lines[header + 1];
        assert!(row.contains("r1") && row.contains("Established") && row.contains("9s"));
        // The STATE column starts at the same offset in header and row.
        assert_eq!(
            lines[header].find("STATE"),
            row.find("Established"),
            "{text}"
        );
        assert!(text.contains("BFD sessions\n  (none reported)"), "{text}");
        assert!(text.contains("198.51.100.7") && text.contains("outside every pool"));
        assert!(text.contains("kubernetes") && text.contains("NO"), "{text}");
    }

    #[test]
    fn ages_are_written_in_the_two_largest_units() {
        assert_eq!(age(Some(100), 142), "42s");
        assert_eq!(age(Some(0), 3 * 3600 + 120), "3h2m");
        assert_eq!(age(Some(0), 2 * 86400 + 3600), "2d1h");
        assert_eq!(age(None, 5), "-");
        assert_eq!(age(Some(10), 5), "0s");
        assert_eq!(micros(Some(150_000)), "150ms");
        assert_eq!(micros(Some(3_300)), "3300us");
    }
}
