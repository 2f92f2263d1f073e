//! Charts drawn as SVG text on the server: a scatter of marks with each
//! series' Pareto frontier, and step lines for CDFs.
//!
//! The site must work from `file://` with nothing fetched, so no chart
//! library runs in the browser; these few shapes are all the site draws.
//! Colours are classes (`s0`..`s7`, the Okabe–Ito palette, defined in the
//! site's stylesheet, so dark mode can change them), and each series also
//! has its own marker shape, so colour is never the only cue. Every mark
//! carries a `<title>` (the tooltip) and a link.

use std::fmt::Write as _;

/// Series classes cycle after this many.
pub const PALETTE_SIZE: usize = 8;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 50.0;

/// Text for XML and HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The indices of the points on the Pareto frontier when both `x` and `y`
/// are to be maximised, ordered by increasing `x`. A point is left out when
/// another is at least as good on both and better on one; of points equal
/// on both, the first is kept. Non-finite points are never on it.
pub fn frontier(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    // Best x first; among equal x, best y first; among equals, first index.
    order.sort_by(|&a, &b| {
        points[b]
            .0
            .total_cmp(&points[a].0)
            .then(points[b].1.total_cmp(&points[a].1))
            .then(a.cmp(&b))
    });
    let mut best_y = f64::NEG_INFINITY;
    let mut out = Vec::new();
    for i in order {
        if points[i].1 > best_y {
            best_y = points[i].1;
            out.push(i);
        }
    }
    out.reverse();
    out
}

/// Round tick values covering `[lo, hi]`: steps of 1, 2 or 5 × 10^k, at
/// most `max` ticks, the first at or below `lo` and the last at or above
/// `hi`. A degenerate range is widened around its value.
pub fn ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let (mut lo, mut hi) = (lo.min(hi), lo.max(hi));
    if !lo.is_finite() || !hi.is_finite() {
        return vec![0.0, 1.0];
    }
    if hi - lo < f64::EPSILON * hi.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let max = max.max(2);
    let raw = (hi - lo) / (max - 1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = mag;
    for m in [1.0, 2.0, 5.0, 10.0] {
        step = m * mag;
        let n = ((hi / step).ceil() - (lo / step).floor()) as usize + 1;
        if n <= max {
            break;
        }
    }
    let first = (lo / step).floor() as i64;
    let last = (hi / step).ceil() as i64;
    (first..=last).map(|k| clean(k as f64 * step)).collect()
}

/// Removes float noise such as 0.30000000000000004.
fn clean(v: f64) -> f64 {
    let r = (v * 1e9).round() / 1e9;
    if r == 0.0 { 0.0 } else { r }
}

/// A tick label: no trailing zeros, thousands as `k`.
pub fn label(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// One point of a scatter chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub x: f64,
    pub y: f64,
    /// The tooltip (plain text; escaped here).
    pub title: String,
    /// Where a click goes (relative URL; escaped here).
    pub href: String,
}

/// A named set of marks with one colour and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub marks: Vec<Mark>,
}

/// A scatter chart; the frontier is drawn per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Scatter {
    /// The element id, for `aria-labelledby`.
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// When smaller `x` is better (latency), the frontier is computed on `-x`.
    pub x_lower_is_better: bool,
    pub series: Vec<Series>,
}

struct Frame {
    xs: Vec<f64>,
    ys: Vec<f64>,
}

impl Frame {
    fn new(xs: &[f64], ys: &[f64]) -> Frame {
        let range = |v: &[f64], from_zero: bool| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if lo.is_finite() {
                (if from_zero { lo.min(0.0) } else { lo }, hi)
            } else {
                (0.0, 1.0)
            }
        };
        let (x0, x1) = range(xs, true);
        let (y0, y1) = range(ys, true);
        Frame {
            xs: ticks(x0, x1, 8),
            ys: ticks(y0, y1, 7),
        }
    }

    fn px(&self, x: f64) -> f64 {
        let (lo, hi) = (self.xs[0], self.xs[self.xs.len() - 1]);
        LEFT + (x - lo) / (hi - lo) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        let (lo, hi) = (self.ys[0], self.ys[self.ys.len() - 1]);
        HEIGHT - BOTTOM - (y - lo) / (hi - lo) * (HEIGHT - TOP - BOTTOM)
    }

    fn axes(&self, out: &mut String, x_label: &str, y_label: &str) {
        let (x0, x1) = (LEFT, WIDTH - RIGHT);
        let (y0, y1) = (HEIGHT - BOTTOM, TOP);
        for &t in &self.xs {
            let x = self.px(t);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{y1:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                y0 + 16.0,
                label(t)
            );
        }
        for &t in &self.ys {
            let y = self.py(t);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                x0 - 6.0,
                y + 4.0,
                label(t)
            );
        }
        let _ = write!(
            out,
            r#"<line class="axis" x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}"/><line class="axis" x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/><text class="axis-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="axis-label" transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            HEIGHT - 8.0,
            esc(x_label),
            (y0 + y1) / 2.0,
            esc(y_label)
        );
    }
}

/// A marker of series `s` at `(x, y)`: circle, square, triangle, diamond.
fn marker(s: usize, x: f64, y: f64) -> String {
    let class = format!("mark s{}", s % PALETTE_SIZE);
    match (s / PALETTE_SIZE + s) % 4 {
        0 => format!(r#"<circle class="{class}" cx="{x:.1}" cy="{y:.1}" r="5">"#),
        1 => format!(
            r#"<rect class="{class}" x="{:.1}" y="{:.1}" width="9" height="9">"#,
            x - 4.5,
            y - 4.5
        ),
        2 => format!(
            r#"<polygon class="{class}" points="{x:.1},{:.1} {:.1},{:.1} {:.1},{:.1}">"#,
            y - 6.0,
            x + 5.5,
            y + 4.0,
            x - 5.5,
            y + 4.0
        ),
        _ => format!(
            r#"<polygon class="{class}" points="{x:.1},{:.1} {:.1},{y:.1} {x:.1},{:.1} {:.1},{y:.1}">"#,
            y - 6.0,
            x + 6.0,
            y + 6.0,
            x - 6.0
        ),
    }
}

fn closing(s: usize) -> &'static str {
    match (s / PALETTE_SIZE + s) % 4 {
        0 => "</circle>",
        1 => "</rect>",
        _ => "</polygon>",
    }
}

impl Scatter {
    /// The chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.marks.iter().map(|m| m.x))
            .collect();
        let ys: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.marks.iter().map(|m| m.y))
            .collect();
        let frame = Frame::new(&xs, &ys);
        let mut out = format!(
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-t"><title id="{id}-t">{}</title>"#,
            esc(&self.title),
            id = esc(&self.id)
        );
        frame.axes(&mut out, &self.x_label, &self.y_label);
        for (s, series) in self.series.iter().enumerate() {
            let pts: Vec<(f64, f64)> = series
                .marks
                .iter()
                .map(|m| (if self.x_lower_is_better { -m.x } else { m.x }, m.y))
                .collect();
            let front = frontier(&pts);
            if front.len() > 1 {
                let _ = write!(
                    out,
                    r#"<polyline class="frontier s{}" points=""#,
                    s % PALETTE_SIZE
                );
                let mut line: Vec<&Mark> = front.iter().map(|&i| &series.marks[i]).collect();
                line.sort_by(|a, b| a.x.total_cmp(&b.x));
                for m in line {
                    let _ = write!(out, "{:.1},{:.1} ", frame.px(m.x), frame.py(m.y));
                }
                let _ = write!(
                    out,
                    r#""><title>{} frontier</title></polyline>"#,
                    esc(&series.name)
                );
            }
            for m in &series.marks {
                let _ = write!(
                    out,
                    r#"<a href="{}">{}<title>{}</title>{}</a>"#,
                    esc(&m.href),
                    marker(s, frame.px(m.x), frame.py(m.y)),
                    esc(&m.title),
                    closing(s)
                );
            }
        }
        out.push_str("</svg>");
        out
    }
}

/// Cumulative distributions as step lines: `values` are quantiles at
/// evenly spaced probabilities from 0 to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Cdf {
    pub id: String,
    pub title: String,
    pub x_label: String,
    /// (name, quantiles, link)
    pub lines: Vec<(String, Vec<f64>, String)>,
}

impl Cdf {
    pub fn render(&self) -> String {
        let xs: Vec<f64> = self
            .lines
            .iter()
            .flat_map(|l| l.1.iter().copied())
            .collect();
        let mut frame = Frame::new(&xs, &[0.0, 1.0]);
        frame.ys = vec![0.0, 0.25, 0.5, 0.75, 1.0];
        let mut out = format!(
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-t"><title id="{id}-t">{}</title>"#,
            esc(&self.title),
            id = esc(&self.id)
        );
        frame.axes(&mut out, &self.x_label, "fraction of requests");
        for (s, (name, q, href)) in self.lines.iter().enumerate() {
            if q.len() < 2 {
                continue;
            }
            let n = q.len() - 1;
            let mut pts = String::new();
            for (i, v) in q.iter().enumerate() {
                let p = i as f64 / n as f64;
                let _ = write!(pts, "{:.1},{:.1} ", frame.px(*v), frame.py(p));
            }
            let _ = write!(
                out,
                r#"<a href="{}"><polyline class="cdf s{}" points="{}"><title>{}: median {} ms, max {} ms</title></polyline></a>"#,
                esc(href),
                s % PALETTE_SIZE,
                pts.trim_end(),
                esc(name),
                label(q[n / 2]),
                label(q[n])
            );
        }
        out.push_str("</svg>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_keeps_only_undominated_points_in_x_order() {
        let pts = [(1.0, 5.0), (2.0, 4.0), (1.5, 3.0), (3.0, 1.0), (2.0, 2.0)];
        assert_eq!(frontier(&pts), vec![0, 1, 3]);
    }

    #[test]
    fn frontier_ties_keep_the_first_of_equal_points_and_the_best_of_equal_x() {
        // Equal on both: only the first. Equal x: only the higher y.
        let pts = [(1.0, 1.0), (1.0, 1.0), (2.0, 0.5), (2.0, 0.7)];
        assert_eq!(frontier(&pts), vec![0, 3]);
        // Equal y: only the larger x.
        assert_eq!(frontier(&[(1.0, 2.0), (3.0, 2.0)]), vec![1]);
    }

    #[test]
    fn non_finite_points_are_never_on_the_frontier() {
        let pts = [(f64::NAN, 9.0), (1.0, f64::INFINITY), (1.0, 1.0)];
        assert_eq!(frontier(&pts), vec![2]);
        assert!(frontier(&[]).is_empty());
    }

    #[test]
    fn ticks_are_round_cover_the_range_and_stay_within_the_count() {
        assert_eq!(
            ticks(0.0, 97.0, 8),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(ticks(0.0, 1.0, 6), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        let t = ticks(3.2, 1234.0, 7);
        assert!(
            t.len() <= 7 && t[0] <= 3.2 && *t.last().unwrap() >= 1234.0,
            "{t:?}"
        );
        assert_eq!(t, vec![0.0, 500.0, 1000.0, 1500.0]);
        // A single value gets a range around it.
        let t = ticks(5.0, 5.0, 5);
        assert!(t[0] < 5.0 && *t.last().unwrap() > 5.0, "{t:?}");
        assert_eq!(label(0.30000000000000004), "0.3");
        assert_eq!(label(25_000.0), "25k");
    }

    #[test]
    fn text_from_the_tree_is_escaped_in_titles_and_links() {
        let chart = Scatter {
            id: "c\"1".into(),
            title: "<script>alert(1)</script>".into(),
            x_label: "a & b".into(),
            y_label: "y".into(),
            x_lower_is_better: false,
            series: vec![Series {
                name: "s<1>".into(),
                marks: vec![
                    Mark {
                        x: 1.0,
                        y: 2.0,
                        title: "it's \"x\" <b>".into(),
                        href: "p.html?a=1&b=\"2\"".into(),
                    },
                    Mark {
                        x: 2.0,
                        y: 1.0,
                        title: "t".into(),
                        href: "q.html".into(),
                    },
                ],
            }],
        };
        let svg = chart.render();
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains("it&#39;s &quot;x&quot; &lt;b&gt;"));
        assert!(svg.contains(r#"href="p.html?a=1&amp;b=&quot;2&quot;""#));
        assert!(svg.contains("a &amp; b") && svg.contains("s&lt;1&gt; frontier"));
        assert_eq!(svg.matches("<a href=").count(), 2);
    }

    #[test]
    fn a_latency_axis_draws_the_frontier_of_lower_x() {
        let mark = |x: f64, y: f64| Mark {
            x,
            y,
            title: format!("{x},{y}"),
            href: "#".into(),
        };
        let chart = Scatter {
            id: "c".into(),
            title: "t".into(),
            x_label: "ms".into(),
            y_label: "tok/s".into(),
            x_lower_is_better: true,
            series: vec![Series {
                name: "s".into(),
                marks: vec![mark(10.0, 5.0), mark(20.0, 4.0), mark(30.0, 9.0)],
            }],
        };
        let svg = chart.render();
        // (20, 4) is dominated: slower and less throughput than (10, 5).
        let line = svg.split("<polyline").nth(1).unwrap();
        let points = line.split('"').nth(3).unwrap();
        assert_eq!(points.split_whitespace().count(), 2, "{points}");
    }
}
