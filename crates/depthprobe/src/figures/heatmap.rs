//! Layer × layer heatmaps (CKA), side by side, one colour scale from 0 to 1 shared by all, the
//! layers at and above an effective depth outlined.

use std::fmt::Write as _;

use super::{esc, layer_color, svg_open};

pub struct Heatmap {
    pub title: String,
    /// Row a, column b: the value between layers a + 1 and b + 1 (None: undefined, drawn grey).
    pub values: Vec<Vec<Option<f64>>>,
    /// Outline the block of layers from this one (1-based) to the top.
    pub block_from: Option<usize>,
}

const SIDE: f64 = 260.0;
const MARGIN: f64 = 46.0;
const CELL_W: f64 = SIDE + MARGIN + 24.0;
const CELL_H: f64 = SIDE + MARGIN + 40.0;

/// A grid of heatmaps `cols` wide under `title`, with a colour bar for 0..1 at the right.
pub fn render_heatmaps(title: &str, maps: &[Heatmap], cols: usize) -> String {
    let cols = cols.max(1).min(maps.len().max(1));
    let rows = maps.len().div_ceil(cols).max(1);
    let bar_w = 70.0;
    let w = (CELL_W * cols as f64 + bar_w + 20.0).max(title.chars().count() as f64 * 10.0 + 40.0);
    let h = CELL_H * rows as f64 + 50.0;
    let mut s = svg_open(w, h, title);
    for (i, m) in maps.iter().enumerate() {
        let (ox, oy) = ((i % cols) as f64 * CELL_W + 10.0, (i / cols) as f64 * CELL_H + 45.0);
        one(&mut s, m, ox, oy);
    }
    // The colour bar.
    let (bx, by, bh) = (CELL_W * cols as f64 + 20.0, 70.0, 200.0);
    for k in 0..50 {
        let t = k as f64 / 49.0;
        let _ = writeln!(
            s,
            r#"<rect x="{bx}" y="{:.1}" width="18" height="{:.1}" fill="{}"/>"#,
            by + bh - (k + 1) as f64 * bh / 50.0,
            bh / 50.0 + 0.5,
            layer_color(t)
        );
    }
    for (v, y) in [(1.0, by), (0.5, by + bh / 2.0), (0.0, by + bh)] {
        let _ = writeln!(s, r#"<text x="{}" y="{}" font-size="11">{v}</text>"#, bx + 24.0, y + 4.0);
    }
    let _ = writeln!(s, r#"<text x="{bx}" y="{}" font-size="12">CKA</text>"#, by - 10.0);
    s.push_str("</svg>\n");
    s
}

fn one(s: &mut String, m: &Heatmap, ox: f64, oy: f64) {
    let n = m.values.len().max(1);
    let cell = SIDE / n as f64;
    let (l, t) = (ox + MARGIN, oy + 24.0);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"#,
        l + SIDE / 2.0,
        oy + 14.0,
        esc(&m.title)
    );
    for (a, row) in m.values.iter().enumerate() {
        for (b, v) in row.iter().enumerate() {
            let fill = v.filter(|v| v.is_finite()).map_or("#dddddd".to_string(), layer_color);
            // Layer 1 at the bottom left, as the axes of a plot read.
            let _ = writeln!(
                s,
                r#"<rect class="cell" x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{fill}"/>"#,
                l + b as f64 * cell,
                t + (n - 1 - a) as f64 * cell,
                cell + 0.3,
                cell + 0.3
            );
        }
    }
    let _ = writeln!(s, r##"<rect x="{l}" y="{t}" width="{SIDE}" height="{SIDE}" fill="none" stroke="#444"/>"##);
    let stride = n.div_ceil(12);
    for i in (0..n).filter(|i| i % stride == 0 || *i == n - 1) {
        let c = (i as f64 + 0.5) * cell;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"#,
            l + c,
            t + SIDE + 13.0,
            i + 1,
            l - 4.0,
            t + SIDE - c + 3.5,
            i + 1
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">layer</text>"#,
        l + SIDE / 2.0,
        t + SIDE + 30.0
    );
    if let Some(d) = m.block_from.filter(|&d| d >= 1 && d <= n) {
        let k = (n - d + 1) as f64 * cell;
        let _ = writeln!(
            s,
            r##"<rect x="{:.2}" y="{t:.2}" width="{k:.2}" height="{k:.2}" fill="none" stroke="#d62728" stroke-width="2.5"/>"##,
            l + (d - 1) as f64 * cell
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_outline_and_grey_for_undefined() {
        let m = Heatmap {
            title: "L = 3".into(),
            values: vec![
                vec![Some(1.0), Some(0.5), None],
                vec![Some(0.5), Some(1.0), Some(0.9)],
                vec![None, Some(0.9), Some(1.0)],
            ],
            block_from: Some(2),
        };
        let svg = render_heatmaps("t", &[m], 4);
        // 9 cells + 50 colour-bar steps, one outline of the 2×2 block, two grey cells.
        assert_eq!(svg.matches(r#"<rect class="cell""#).count(), 9);
        assert_eq!(svg.matches("<rect x=").count(), 50 + 2);
        assert_eq!(svg.matches("#dddddd").count(), 2);
        assert_eq!(svg.matches("#d62728").count(), 1);
        assert!(crate::figures::svg_to_png(&svg).is_ok());
    }
}
