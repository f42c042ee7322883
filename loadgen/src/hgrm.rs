//! `--hgrm FILE`: the latency histogram in HdrHistogram's standard percentile-distribution format (what
//! `HistogramLogProcessor`, HdrHistogram's online plotter and `hdr-plot` read), and an SVG plot of the
//! percentile curve beside it (`FILE.svg`).
//!
//! The text layout is the one `AbstractHistogram.outputPercentileDistribution` writes with 5 ticks per
//! half distance, values scaled from nanoseconds to microseconds.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

/// Nanoseconds per reported unit (µs).
const SCALE: f64 = 1000.0;
/// Percentile iteration steps per halving of the distance to 100%, as HdrHistogram's default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Writes `path` (.hgrm text) and `path` + ".svg"; returns the SVG's path.
pub fn write_files(path: &Path, h: &Histogram<u64>) -> io::Result<PathBuf> {
    std::fs::write(path, percentile_distribution(h))?;
    let mut svg = path.as_os_str().to_owned();
    svg.push(".svg");
    let svg = PathBuf::from(svg);
    std::fs::write(&svg, svg_plot(h))?;
    Ok(svg)
}

/// The percentile distribution, one line per step: value (µs), percentile (0..1), count at or below,
/// 1/(1-percentile); then the mean/max/count footer.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {q:2.12} {:10} {:14.2}",
                    total_count(&v, h),
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {:10}", total_count(&v, h));
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / SCALE,
            h.stdev() / SCALE,
            h.highest_equivalent(h.max()) as f64 / SCALE,
        )
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count for a precision: the power of two covering 2 × 10^digits.
fn sub_bucket_count(significant_digits: u8) -> u64 {
    (2 * 10u64.pow(u32::from(significant_digits))).next_power_of_two()
}

/// Cumulative count up to the current step (what the `TotalCount` column holds): the iterator's
/// quantile is count-at-or-below / total, turned back into the count.
fn total_count(v: &hdrhistogram::iterators::IterationValue<u64>, h: &Histogram<u64>) -> u64 {
    (v.quantile() * h.len() as f64).round() as u64
}

/// The percentile curve: x = percentile on HdrHistogram's usual log scale of 1/(1-p) (0%, 90%, 99%,
/// 99.9%, ...), y = latency in µs.
pub fn svg_plot(h: &Histogram<u64>) -> String {
    const W: f64 = 800.0;
    const H: f64 = 450.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 50.0;
    // Decades of 1/(1-p) shown: 1 (0%) to 10^6 (99.9999%).
    const DECADES: f64 = 6.0;
    let mut points: Vec<(f64, f64)> = Vec::new();
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 {
                DECADES
            } else {
                (1.0 / (1.0 - q)).log10().min(DECADES)
            };
            let y = h.highest_equivalent(v.value_iterated_to()) as f64 / SCALE;
            points.push((x, y));
        }
    }
    let y_max = nice_ceiling(points.iter().map(|p| p.1).fold(0.0, f64::max));
    let px = |x: f64| LEFT + x / DECADES * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y_max * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">Latency by percentile ({} samples)</text>"#,
        W / 2.0,
        h.len()
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = px(i as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 18.0
        );
    }
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            trim_number(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        W / 2.0,
        H - 8.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">latency (µs)</text>"#,
        H / 2.0,
        H / 2.0
    );
    let path: Vec<String> = points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##,
        path.join(" ")
    );
    s.push_str("</svg>\n");
    s
}

/// A round axis maximum at or above `v` (1, 2 or 5 times a power of ten).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn trim_number(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for i in 1..=10_000u64 {
            h.record(i * 1000).unwrap(); // 1 µs .. 10 ms
        }
        h
    }

    #[test]
    fn distribution_has_the_hdr_layout() {
        let text = percentile_distribution(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("Value") && lines[0].contains("1/(1-Percentile)"));
        assert!(lines[1].is_empty());
        let rows: Vec<Vec<&str>> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(rows.len() > 20, "{} rows", rows.len());
        // Values and percentiles rise; the counts end at the total; the last row is 100%.
        let mut last = (0.0f64, 0.0f64, 0u64);
        for r in &rows {
            let v: f64 = r[0].parse().unwrap();
            let q: f64 = r[1].parse().unwrap();
            let c: u64 = r[2].parse().unwrap();
            assert!(v >= last.0 && q >= last.1 && c >= last.2, "{r:?}");
            last = (v, q, c);
        }
        assert_eq!(last.1, 1.0);
        assert_eq!(last.2, 10_000);
        assert!((last.0 - 10_000.0).abs() < 10.0, "max {} µs", last.0);
        assert!(text.contains("#[Max     ="));
        assert!(text.contains("Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
        // The median row sits near 5 ms.
        let median = rows
            .iter()
            .find(|r| r[1].parse::<f64>().unwrap() >= 0.5)
            .unwrap();
        let v: f64 = median[0].parse().unwrap();
        assert!((4990.0..5010.0).contains(&v), "p50 {v}");
    }

    #[test]
    fn empty_histogram_still_has_header_and_footer() {
        let h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        let text = percentile_distribution(&h);
        assert!(text.starts_with("       Value"));
        assert!(text.contains("Total count    =            0]"));
    }

    #[test]
    fn svg_is_a_plot_of_the_curve() {
        let svg = svg_plot(&sample());
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<polyline") && svg.contains("99.9%"));
        assert!(svg.contains("10000 samples"));
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(500.0), 500.0);
    }
}
