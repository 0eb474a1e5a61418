//! SVG charts (plotters, SVG backend, no system fonts: the SVG viewer
//! renders the text). Horizontal grouped bars for per-peer figures, lines
//! for throughput against thread count.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::Results;

/// Series colours, in order.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One bar series: a name and one optional value per category.
pub type Series = (String, Vec<Option<f64>>);

/// A chart that was written: its file name and title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// File name inside the chart directory.
    pub file: String,
    /// Title (used as the image's alt text).
    pub title: String,
}

/// `1.2G`, `34.5M`, `12.3k`, `123`, `0.45`.
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("chart drawing failed: {e:?}")
}

/// Horizontal grouped bars: one band per category (top to bottom), one bar
/// per series. With `log`, the value axis is log10 (for latencies spanning
/// decades).
pub fn hbars(
    path: &Path,
    title: &str,
    axis: &str,
    categories: &[String],
    series: &[Series],
    log: bool,
) -> Result<(), String> {
    let n = categories.len().max(1);
    let height = (90 + n * (14 + 12 * series.len().max(1))).clamp(220, 1200) as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let tx = |v: f64| if log { v.max(1.0).log10() } else { v };
    let values = || {
        series
            .iter()
            .flat_map(|(_, vs)| vs.iter().flatten())
            .map(|v| tx(*v))
    };
    let max = values().fold(0.0_f64, f64::max);
    // On a log axis, start a decade below the smallest value instead of at 1.
    let lo = if log {
        values()
            .fold(f64::INFINITY, f64::min)
            .floor()
            .max(0.0)
            .min(max)
    } else {
        0.0
    };
    let hi = if max > 0.0 {
        lo + (max - lo) * 1.45
    } else {
        1.0
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(170)
        .build_cartesian_2d(lo..hi, 0f64..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(if log {
            (hi - lo).ceil() as usize + 1
        } else {
            10
        })
        .x_desc(axis)
        .x_label_formatter(&|x| if log { si(10f64.powf(*x)) } else { si(*x) })
        .draw()
        .map_err(err)?;
    let band = 0.8 / series.len().max(1) as f64;
    for (s, (name, values)) in series.iter().enumerate() {
        let colour = COLOURS[s % COLOURS.len()];
        let bars = values.iter().enumerate().filter_map(|(i, v)| {
            let v = (*v)?;
            let top = (n - 1 - i) as f64 + 0.9 - s as f64 * band;
            Some(Rectangle::new(
                [(0.0, top - band), (tx(v), top)],
                colour.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        let labels = values.iter().enumerate().filter_map(|(i, v)| {
            let v = (*v)?;
            let top = (n - 1 - i) as f64 + 0.9 - s as f64 * band;
            Some(Text::new(
                si(v),
                (tx(v), top - band / 2.0),
                ("sans-serif", 11)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))
        });
        chart.draw_series(labels).map_err(err)?;
    }
    for (i, name) in categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(lo, (n - 1 - i) as f64 + 0.5));
        root.draw(&Text::new(
            name.clone(),
            (px - 8, py),
            ("sans-serif", 13)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(err)?;
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Lines of a figure against thread count, one per variant.
pub fn lines(
    path: &Path,
    title: &str,
    axis: &str,
    series: &[(String, Vec<(usize, f64)>)],
) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let max_x = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .max()
        .unwrap_or(1)
        .max(2);
    let max_y = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.0_f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.8f64..max_x as f64 + 0.2, 0f64..(max_y * 1.1).max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(max_x)
        .x_desc("threads")
        .y_desc(axis)
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| si(*y))
        .draw()
        .map_err(err)?;
    for (s, (name, points)) in series.iter().enumerate() {
        let colour = Palette99::pick(s).to_rgba();
        let pts: Vec<(f64, f64)> = points.iter().map(|(x, y)| (*x as f64, *y)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Every chart the results allow; returns what was written.
pub fn draw_all(r: &Results, dir: &Path) -> Result<Vec<Chart>, String> {
    let mut out = Vec::new();
    let mut add = |file: &str,
                   title: &str,
                   f: &dyn Fn(&Path, &str) -> Result<(), String>|
     -> Result<(), String> {
        f(&dir.join(file), title)?;
        out.push(Chart {
            file: file.to_string(),
            title: title.to_string(),
        });
        Ok(())
    };

    if !r.incident.is_empty() {
        let names = unique(r.incident.iter().map(|x| x.variant.clone()));
        let pick = |refresh: bool,
                    f: &dyn Fn(&crate::workloads::incident::Row) -> f64|
         -> Vec<Option<f64>> {
            names
                .iter()
                .map(|n| {
                    r.incident
                        .iter()
                        .find(|x| &x.variant == n && x.refresh == refresh)
                        .map(f)
                })
                .collect()
        };
        let reads = vec![
            ("no refresh".to_string(), pick(false, &|x| x.reads_per_sec)),
            ("refreshing".to_string(), pick(true, &|x| x.reads_per_sec)),
        ];
        add(
            "incident-reads.svg",
            "Incident: reads per second, all readers",
            &|p, t| hbars(p, t, "reads/s", &names, &reads, false),
        )?;
        let p999 = vec![
            ("no refresh".to_string(), pick(false, &|x| x.p999_ns as f64)),
            ("refreshing".to_string(), pick(true, &|x| x.p999_ns as f64)),
        ];
        add(
            "incident-p999.svg",
            "Incident: p99.9 read latency (ns, log scale)",
            &|p, t| hbars(p, t, "ns (log scale)", &names, &p999, true),
        )?;
        let miss = vec![(
            "refreshing".to_string(),
            pick(true, &|x| x.miss_rate * 100.0),
        )];
        add(
            "incident-misses.svg",
            "Incident: reads that missed during refreshes (%)",
            &|p, t| hbars(p, t, "% of reads", &names, &miss, false),
        )?;
    }

    for w in crate::workloads::mixes::WORKLOADS {
        let rows: Vec<_> = r.mixes.iter().filter(|x| x.workload == w).collect();
        if rows.is_empty() {
            continue;
        }
        let series: Vec<(String, Vec<(usize, f64)>)> =
            unique(rows.iter().map(|x| x.variant.clone()))
                .into_iter()
                .map(|v| {
                    let pts = rows
                        .iter()
                        .filter(|x| x.variant == v)
                        .map(|x| (x.threads, x.ops_per_sec))
                        .collect();
                    (v, pts)
                })
                .collect();
        let file = format!("mixes-{w}.svg");
        add(
            &file,
            &format!("Mixes: {w}, operations per second"),
            &|p, t| lines(p, t, "ops/s", &series),
        )?;
    }

    if !r.delete_cost.is_empty() {
        let names = unique(r.delete_cost.iter().map(|x| x.variant.clone()));
        let ns = vec![(
            "ns per delete".to_string(),
            r.delete_cost.iter().map(|x| Some(x.ns_per_op)).collect(),
        )];
        add(
            "delete-cost.svg",
            "Delete cost: nanoseconds per delete",
            &|p, t| hbars(p, t, "ns/op", &names, &ns, false),
        )?;
    }

    if !r.memory.is_empty() {
        let names = unique(r.memory.iter().map(|x| x.variant.clone()));
        let mem = vec![
            (
                "full".to_string(),
                r.memory.iter().map(|x| Some(x.bytes_per_entry)).collect(),
            ),
            (
                "after removing 90 % (per original entry)".to_string(),
                r.memory
                    .iter()
                    .map(|x| Some(x.after_delete_90_bytes as f64 / x.entries.max(1) as f64))
                    .collect(),
            ),
        ];
        add("memory.svg", "Memory: resident bytes per entry", &|p, t| {
            hbars(p, t, "bytes/entry", &names, &mem, false)
        })?;
    }

    if !r.server.is_empty() {
        let cats = unique(r.server.iter().map(|x| {
            format!(
                "{} ({})",
                x.server,
                if x.durable { "durable" } else { "relaxed" }
            )
        }));
        let series: Vec<Series> = ["get", "put", "delete"]
            .iter()
            .map(|op| {
                let vals = cats
                    .iter()
                    .map(|c| {
                        r.server
                            .iter()
                            .find(|x| {
                                x.op == *op
                                    && *c
                                        == format!(
                                            "{} ({})",
                                            x.server,
                                            if x.durable { "durable" } else { "relaxed" }
                                        )
                            })
                            .map(|x| x.rps)
                    })
                    .collect();
                (op.to_string(), vals)
            })
            .collect();
        add(
            "server-rps.svg",
            "Servers over loopback: requests per second",
            &|p, t| hbars(p, t, "req/s", &cats, &series, false),
        )?;
    }
    Ok(out)
}

/// The distinct values in first-seen order.
pub fn unique(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in it {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn si_formats() {
        assert_eq!(si(1.25e9), "1.2G");
        assert_eq!(si(34_500_000.0), "34.5M");
        assert_eq!(si(12_345.0), "12k");
        assert_eq!(si(1_234.0), "1.2k");
        assert_eq!(si(123.0), "123");
        assert_eq!(si(0.456), "0.46");
        assert_eq!(si(1.0), "1");
    }

    #[test]
    fn bars_and_lines_write_svg_with_their_labels() {
        let dir = std::env::temp_dir().join(format!("safemap-bench-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("b.svg");
        let cats = vec!["safemap".to_string(), "papaya-remove-insert".to_string()];
        hbars(
            &p,
            "t",
            "x",
            &cats,
            &[
                ("a".into(), vec![Some(3.0), None]),
                ("b".into(), vec![Some(1e6), Some(2.0)]),
            ],
            false,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.contains("papaya-remove-insert") && svg.contains("<svg"));
        hbars(
            &p,
            "t",
            "x",
            &cats,
            &[("a".into(), vec![Some(30.0), Some(9000.0)])],
            true,
        )
        .unwrap();
        let q = dir.join("l.svg");
        lines(
            &q,
            "t",
            "ops/s",
            &[("dashmap".into(), vec![(1, 2e6), (2, 3e6)])],
        )
        .unwrap();
        assert!(std::fs::read_to_string(&q).unwrap().contains("dashmap"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
