//! Failover pictures: a client's new connections per node per 10 ms, and
//! the failed ones, around a fault, with the fault and the router's FIB
//! change marked, drawn as an SVG with plotters.
//!
//! What it owns: the binning of a [`TrafficReport`] into a [`Timeline`] (pure,
//! unit-tested) and the SVG file it writes. It must not touch the lab: the
//! tests measure, this only draws what they measured.
//!
//! plotters is built without a font engine: the SVG backend writes text as
//! `<text>` elements that the viewer renders, and lays labels out by an
//! estimate, so no font file is needed on the machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use plotters::prelude::*;

use crate::error::{LabError, Result};
use crate::traffic::TrafficReport;

/// The width of one bin.
pub const BIN: Duration = Duration::from_millis(10);

/// An instant worth a vertical line and a label (the fault, the FIB change).
#[derive(Debug, Clone)]
pub struct Marker {
    pub at: Instant,
    pub label: String,
}

impl Marker {
    pub fn new(at: Instant, label: impl Into<String>) -> Marker {
        Marker {
            at,
            label: label.into(),
        }
    }
}

/// A report binned around an origin: for each node and for the failed
/// requests, how many new connections each [`BIN`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The first bin's start, in milliseconds relative to the origin
    /// (negative: before it).
    pub start_ms: i64,
    /// Counts per bin, by series name: the node names, and `failed`.
    pub series: BTreeMap<String, Vec<u32>>,
    /// The markers, in milliseconds relative to the origin.
    pub markers: Vec<(i64, String)>,
}

/// The name of the failed requests' series.
pub const FAILED: &str = "failed";

impl Timeline {
    /// Bins the requests opened within `before` the origin to `after` it.
    pub fn new(
        report: &TrafficReport,
        origin: Instant,
        before: Duration,
        after: Duration,
        markers: &[Marker],
    ) -> Timeline {
        let start_ms = -(before.as_millis() as i64);
        let bins = (before + after).as_millis().div_ceil(BIN.as_millis()) as usize;
        let relative = |at: Instant| -> i64 {
            if at >= origin {
                at.duration_since(origin).as_millis() as i64
            } else {
                -(origin.duration_since(at).as_millis() as i64)
            }
        };
        let mut series: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        series.insert(FAILED.to_owned(), vec![0; bins]);
        for node in report.served_by().keys() {
            series.insert(node.clone(), vec![0; bins]);
        }
        for sample in &report.samples {
            let offset = relative(sample.at) - start_ms;
            if offset < 0 {
                continue;
            }
            let bin = (offset / BIN.as_millis() as i64) as usize;
            if bin >= bins {
                continue;
            }
            let name = sample.node().unwrap_or(FAILED);
            if let Some(counts) = series.get_mut(name) {
                counts[bin] += 1;
            }
        }
        Timeline {
            start_ms,
            series,
            markers: markers
                .iter()
                .map(|m| (relative(m.at), m.label.clone()))
                .collect(),
        }
    }

    /// The number of bins.
    pub fn bins(&self) -> usize {
        self.series.values().map(Vec::len).max().unwrap_or(0)
    }

    /// Requests counted in a series.
    pub fn total(&self, name: &str) -> u32 {
        self.series.get(name).map_or(0, |c| c.iter().sum())
    }

    /// Draws the timeline as a 1000 x 420 SVG.
    pub fn write_svg(&self, path: &Path, title: &str) -> Result<()> {
        let drawing_error = |e: String| LabError::Io {
            context: "cannot draw the timeline",
            path: path.to_owned(),
            source: std::io::Error::other(e),
        };
        let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| drawing_error(e.to_string()))?;
        let end_ms = self.start_ms + (self.bins() as i64) * BIN.as_millis() as i64;
        let peak = self
            .series
            .values()
            .flat_map(|c| c.iter().copied())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(
                (self.start_ms as f64 / 1000.0)..(end_ms as f64 / 1000.0),
                0u32..peak + 1 + peak / 3,
            )
            .map_err(|e| drawing_error(e.to_string()))?;
        // The marker at the origin names the axis ("seconds from drain").
        let x_desc = self
            .markers
            .iter()
            .find(|(ms, _)| *ms == 0)
            .map_or("seconds".to_string(), |(_, label)| {
                format!("seconds from {label}")
            });
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(format!("new connections per {} ms", BIN.as_millis()))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| drawing_error(e.to_string()))?;

        let palette = [
            RGBColor(31, 119, 180),
            RGBColor(44, 160, 44),
            RGBColor(148, 103, 189),
            RGBColor(255, 127, 14),
        ];
        let nodes = self.series.keys().filter(|name| *name != FAILED);
        for (i, name) in nodes.enumerate() {
            let color = palette[i % palette.len()];
            self.draw_series(&mut chart, name, color, 1)
                .map_err(drawing_error)?;
        }
        self.draw_series(&mut chart, FAILED, RED, 2)
            .map_err(drawing_error)?;

        for (i, (ms, label)) in self.markers.iter().enumerate() {
            let x = *ms as f64 / 1000.0;
            let top = peak + peak / 3;
            // Each label one line lower than the one before, so that close
            // markers (a fault and a fast FIB change) stay readable.
            let label_y = top.saturating_sub(i as u32 * (top / 12).max(1));
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0), (x, top)],
                    BLACK.stroke_width(1),
                )))
                .map_err(|e| drawing_error(e.to_string()))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{label} ({:+} ms)", ms),
                    (x, label_y),
                    ("sans-serif", 13).into_font(),
                )))
                .map_err(|e| drawing_error(e.to_string()))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| drawing_error(e.to_string()))?;
        root.present().map_err(|e| drawing_error(e.to_string()))?;
        Ok(())
    }

    fn draw_series<DB: DrawingBackend>(
        &self,
        chart: &mut ChartContext<
            '_,
            DB,
            Cartesian2d<
                plotters::coord::types::RangedCoordf64,
                plotters::coord::types::RangedCoordu32,
            >,
        >,
        name: &str,
        color: RGBColor,
        width: u32,
    ) -> std::result::Result<(), String> {
        let Some(counts) = self.series.get(name) else {
            return Ok(());
        };
        let start = self.start_ms;
        let points = counts.iter().enumerate().map(move |(i, count)| {
            let ms = start + (i as i64) * BIN.as_millis() as i64;
            (ms as f64 / 1000.0, *count)
        });
        let total: u32 = counts.iter().sum();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(width)))
            .map_err(|e| e.to_string())?
            .label(format!("{name} ({total})"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        Ok(())
    }
}

/// Where the tests write their pictures: `$HERALD_PICTURES_DIR`, else
/// `target/pictures` of the repository.
pub fn pictures_dir() -> PathBuf {
    std::env::var_os("HERALD_PICTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::cluster::repository().join("target/pictures"))
}

/// Writes `timeline` as `<pictures_dir>/<name>.svg` and returns the path.
pub fn write_picture(timeline: &Timeline, name: &str, title: &str) -> Result<PathBuf> {
    let dir = pictures_dir();
    std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
        context: "cannot create the pictures directory",
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(format!("{name}.svg"));
    timeline.write_svg(&path, title)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Outcome, Sample};

    fn sample(origin: Instant, ms: i64, outcome: Outcome) -> Sample {
        let at = if ms >= 0 {
            origin + Duration::from_millis(ms as u64)
        } else {
            origin - Duration::from_millis((-ms) as u64)
        };
        Sample {
            at,
            latency: Duration::from_millis(1),
            outcome,
        }
    }

    fn report(origin: Instant) -> TrafficReport {
        let served = |n: &str| Outcome::Served(n.to_owned());
        TrafficReport::new(
            origin - Duration::from_secs(2),
            vec![
                sample(origin, -1500, served("n1")), // before the window
                sample(origin, -1000, served("n1")), // first bin
                sample(origin, -995, served("n2")),
                sample(origin, -1, served("n2")), // last bin before the origin
                sample(origin, 0, Outcome::Failed("timeout".into())),
                sample(origin, 9, Outcome::Failed("reset".into())),
                sample(origin, 10, served("n1")),
                sample(origin, 1999, served("n3")), // last bin
                sample(origin, 2000, served("n3")), // after the window
            ],
        )
    }

    #[test]
    fn requests_fall_into_10_ms_bins_around_the_origin_and_outside_ones_are_left_out() {
        let origin = Instant::now() + Duration::from_secs(10);
        let timeline = Timeline::new(
            &report(origin),
            origin,
            Duration::from_secs(1),
            Duration::from_secs(2),
            &[Marker::new(origin + Duration::from_millis(150), "FIB")],
        );
        assert_eq!(timeline.start_ms, -1000);
        assert_eq!(timeline.bins(), 300);
        assert_eq!(timeline.series["n1"][0], 1);
        assert_eq!(timeline.series["n2"][0], 1);
        assert_eq!(timeline.series["n2"][99], 1);
        assert_eq!(timeline.series[FAILED][100], 2);
        assert_eq!(timeline.series["n1"][101], 1);
        assert_eq!(timeline.series["n3"][299], 1);
        assert_eq!(timeline.total("n1"), 2);
        assert_eq!(timeline.total("n3"), 1);
        assert_eq!(timeline.total(FAILED), 2);
        assert_eq!(timeline.markers, vec![(150, "FIB".to_owned())]);
    }

    #[test]
    fn the_svg_names_every_series_and_marker() {
        let origin = Instant::now() + Duration::from_secs(10);
        let timeline = Timeline::new(
            &report(origin),
            origin,
            Duration::from_secs(1),
            Duration::from_secs(2),
            &[
                Marker::new(origin, "link down"),
                Marker::new(origin + Duration::from_millis(150), "r1 drops n2"),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.svg");
        timeline.write_svg(&path, "node death").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in [
            "node death",
            "seconds from link down",
            "n1 (2)",
            "n2 (2)",
            "n3 (1)",
            "failed (2)",
            "link down (+0 ms)",
            "r1 drops n2 (+150 ms)",
        ] {
            assert!(svg.contains(text), "the picture lacks {text:?}");
        }
    }
}
