//! Figures as self-contained SVG (and PNG rendered from it): small line charts in a grid of
//! panels, one line per layer, coloured from dark (layer 1) to bright (top layer). The figures
//! of a run are in `run.rs`, those of a sweep report in `report/figures.rs`.

pub mod heatmap;
pub mod run;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use depthprobe_runfolder::write_atomic;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: String,
    pub dashed: bool,
}

pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range; otherwise fitted to the data.
    pub y_range: Option<(f64, f64)>,
    /// Integer ticks on x (layer indices).
    pub integer_x: bool,
}

/// Viridis-like colour for position t ∈ [0, 1].
pub fn layer_color(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] =
        [(68.0, 1.0, 84.0), (59.0, 82.0, 139.0), (33.0, 145.0, 140.0), (94.0, 201.0, 98.0), (253.0, 231.0, 37.0)];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Colour `i` of `n` spread evenly over the ramp (layer i+1 of n, or group i of n).
pub fn ramp_color(i: usize, n: usize) -> String {
    layer_color(if n > 1 { i as f64 / (n - 1) as f64 } else { 0.0 })
}

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() * step;
    let mut v = Vec::new();
    let mut t = start;
    while t <= hi + step * 1e-9 {
        v.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    v
}

fn fmt_tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e6 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

const PW: f64 = 420.0;
const PH: f64 = 300.0;
const LEGEND_W: f64 = 130.0;

/// A grid of panels, `cols` wide, with an overall title.
pub fn render_svg(title: &str, panels: &[Panel], cols: usize) -> String {
    let rows = panels.len().div_ceil(cols);
    // Wide enough for the title too: a one-panel figure is narrower than a long bold title
    // (about 10 px per character at 17 px), which would otherwise be clipped at both ends.
    let title_w = title.chars().count() as f64 * 10.0 + 40.0;
    let (w, h) = (((PW + LEGEND_W) * cols as f64 + 20.0).max(title_w), PH * rows as f64 + 50.0);
    let mut s = svg_open(w, h, title);
    for (i, p) in panels.iter().enumerate() {
        let (ox, oy) = ((i % cols) as f64 * (PW + LEGEND_W) + 10.0, (i / cols) as f64 * PH + 45.0);
        panel_svg(&mut s, p, ox, oy);
    }
    s.push_str("</svg>\n");
    s
}

/// A figure's opening: the SVG element of `w` × `h`, a white page and the bold title.
fn svg_open(w: f64, h: f64, title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Arial, sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="17" text-anchor="middle" font-weight="bold">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    s
}

fn panel_svg(s: &mut String, p: &Panel, ox: f64, oy: f64) {
    let (l, r, t, b) = (ox + 60.0, ox + PW - 10.0, oy + 25.0, oy + PH - 45.0);
    let pts = p.series.iter().flat_map(|se| se.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if let Some((a, bb)) = p.y_range {
        (y0, y1) = (a, bb);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
        y0 -= 1.0;
    } else if p.y_range.is_none() {
        let pad = (y1 - y0) * 0.05;
        y0 -= pad;
        y1 += pad;
    }
    let sx = |x: f64| l + (x - x0) / (x1 - x0) * (r - l);
    let sy = |y: f64| b - (y - y0) / (y1 - y0) * (b - t);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"#,
        (l + r) / 2.0,
        oy + 15.0,
        esc(&p.title)
    );
    let _ = writeln!(s, r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#444"/>"##, r - l, b - t);
    for ty in nice_ticks(y0, y1, 5) {
        let y = sy(ty);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>"##,
            l - 4.0,
            y + 4.0,
            fmt_tick(ty)
        );
    }
    let xt: Vec<f64> = if p.integer_x && x1 - x0 <= 12.0 {
        (x0.ceil() as i64..=x1.floor() as i64).map(|v| v as f64).collect()
    } else {
        nice_ticks(x0, x1, 6).into_iter().filter(|v| !p.integer_x || v.fract() == 0.0).collect()
    };
    for tx in xt {
        let x = sx(tx);
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{b}" x2="{x}" y2="{}" stroke="#444"/><text x="{x}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
            b + 4.0,
            b + 16.0,
            fmt_tick(tx)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
        (l + r) / 2.0,
        b + 34.0,
        esc(&p.x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="{x}" y="{y}" font-size="12" text-anchor="middle" transform="rotate(-90 {x} {y})">{}</text>"#,
        esc(&p.y_label),
        x = ox + 14.0,
        y = (t + b) / 2.0
    );
    for se in &p.series {
        let path: Vec<String> = se
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y.clamp(y0, y1))))
            .collect();
        if path.is_empty() {
            continue;
        }
        let dash = if se.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.8"{dash}/>"#,
            path.join(" "),
            se.color
        );
        if path.len() == 1 || se.points.len() <= 25 {
            for pt in &path {
                let (x, y) = pt.split_once(',').unwrap();
                let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="2.2" fill="{}"/>"#, se.color);
            }
        }
    }
    // Legend to the right; with many series, every other label is enough to read the colours.
    // A series without a name (e.g. the second line of a min/max pair) has no legend entry.
    let named: Vec<&Series> = p.series.iter().filter(|se| !se.name.is_empty()).collect();
    let n = named.len();
    let stride = if n > 14 { n.div_ceil(14) } else { 1 };
    let mut ly = t + 8.0;
    for (i, se) in named.into_iter().enumerate() {
        if i % stride != 0 && i != n - 1 && !se.dashed {
            continue;
        }
        let dash = if se.dashed { r#" stroke-dasharray="5 3""# } else { "" };
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2.5"{dash}/><text x="{}" y="{}" font-size="11">{}</text>"#,
            r + 8.0,
            r + 26.0,
            se.color,
            r + 30.0,
            ly + 4.0,
            esc(&se.name)
        );
        ly += 16.0;
    }
}

/// Write `stem.svg` and `stem.png` (the PNG rendered from the SVG with the system fonts).
pub fn write_figure(dir: &Path, stem: &str, svg: &str) -> Result<()> {
    write_atomic(&dir.join(format!("{stem}.svg")), svg.as_bytes())?;
    let png = svg_to_png(svg).with_context(|| format!("rendering {stem}.png"))?;
    write_atomic(&dir.join(format!("{stem}.png")), &png)
}

/// The faces the figures use (their font-family list, regular and bold), read into memory once
/// per process. A database of system font *files* opens and maps a file for every text run it
/// shapes: ~2,300 opens per run's figures, 74,000 for a 32-run batched group (strace). All
/// system fonts are the fallback when none of these families is installed.
fn figure_fonts() -> resvg::usvg::fontdb::Database {
    use resvg::usvg::fontdb::{Database, Family, Query, Source, Weight};
    let mut system = Database::new();
    system.load_system_fonts();
    if system.is_empty() {
        // Seen on a bare GPU machine: PNGs then carry no text at all. Say so once.
        eprintln!(
            "warning: no system fonts found: PNG figures will have no text (the SVG figures are complete); \
             install a font package such as fonts-dejavu-core"
        );
    }
    let mut mem = Database::new();
    let mut read: Vec<std::path::PathBuf> = Vec::new();
    let mut first_family = None;
    for family in [Family::Name("DejaVu Sans"), Family::Name("Arial"), Family::SansSerif] {
        for weight in [Weight::NORMAL, Weight::BOLD] {
            let q = Query { families: &[family], weight, ..Query::default() };
            let Some(id) = system.query(&q) else { continue };
            if first_family.is_none() {
                first_family = system.face(id).and_then(|f| f.families.first().map(|(n, _)| n.clone()));
            }
            if let Some((Source::File(path), _)) = system.face_source(id) {
                if !read.contains(&path) {
                    if let Ok(bytes) = std::fs::read(&path) {
                        mem.load_font_data(bytes);
                        read.push(path);
                    }
                }
            }
        }
    }
    match first_family {
        Some(name) if !mem.is_empty() => {
            mem.set_sans_serif_family(name);
            mem
        }
        _ => system,
    }
}

pub fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    static FONTS: std::sync::OnceLock<std::sync::Arc<usvg::fontdb::Database>> = std::sync::OnceLock::new();
    let opt = usvg::Options {
        fontdb: FONTS.get_or_init(|| std::sync::Arc::new(figure_fonts())).clone(),
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &opt).context("parsing SVG")?;
    let size = tree.size().to_int_size();
    let mut pix = tiny_skia::Pixmap::new(size.width(), size.height()).context("allocating PNG canvas")?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pix.as_mut());
    pix.encode_png().context("encoding PNG")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_cover_range_with_round_steps() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        let t = nice_ticks(3.0, 97.0, 6);
        assert!(t.first().unwrap() >= &3.0 && t.last().unwrap() <= &97.0 && t.len() >= 4);
    }

    #[test]
    fn svg_has_one_polyline_per_series_and_renders() {
        let p = Panel {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: (0..3)
                .map(|i| Series {
                    name: format!("s{i}"),
                    points: vec![(0.0, i as f64), (1.0, 2.0)],
                    color: layer_color(i as f64 / 2.0),
                    dashed: false,
                })
                .collect(),
            y_range: None,
            integer_x: false,
        };
        let svg = render_svg("T", &[p], 1);
        assert_eq!(svg.matches("<polyline").count(), 3);
        let png = svg_to_png(&svg).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
