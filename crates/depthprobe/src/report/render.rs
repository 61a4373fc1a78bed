//! Rendering the report: Markdown (figures as PNG files beside it) and a self-contained HTML
//! page (the same figures inline as SVG).

use std::fmt::Write as _;

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Markdown table as HTML (the report's tables are simple: no pipes inside cells).
pub fn md_table_html(md: &str) -> String {
    let mut s = String::from("<table>\n");
    for (i, line) in md.lines().enumerate() {
        if i == 1 {
            continue;
        }
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
        let tag = if i == 0 { "th" } else { "td" };
        s.push_str("<tr>");
        for c in cells {
            let c = html_escape(c);
            let c = match c.strip_prefix("**").and_then(|c| c.strip_suffix("**")) {
                Some(b) => format!("<b>{b}</b>"),
                None => c,
            };
            let _ = write!(s, "<{tag}>{c}</{tag}>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}

pub fn md_inline_html(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in html_escape(s).split("**").enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<b>{part}</b>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Everything a report page shows.
pub struct Page<'a> {
    pub name: &'a str,
    pub status_line: String,
    pub failed: Vec<String>,
    pub checks: &'a [String],
    pub figures: &'a [super::figures::Figure],
    pub tables: &'a [(String, String)],
    pub provenance: Vec<String>,
    pub bound_table: bool,
    pub sweep_src: String,
}

const FILES: &str = "`results.csv` / `results.parquet`: one row per run (effective depth −1 = not separable); `layers.csv` / `layers.parquet`: final per-layer values of every run";

/// report.md, the figures referenced as the PNG files beside it.
pub fn markdown(p: &Page) -> String {
    let mut md = format!("# Sweep report: {}\n\n{}\n\n", p.name, p.status_line);
    if !p.failed.is_empty() {
        md.push_str("Failed runs:\n\n");
        for f in &p.failed {
            let _ = writeln!(md, "- {f}");
        }
        md.push('\n');
    }
    if !p.checks.is_empty() {
        md.push_str("## Checks of the paper's claims\n\n");
        for c in p.checks {
            let _ = write!(md, "{c}\n\n");
        }
    }
    md.push_str("## Figures\n\n");
    for f in p.figures {
        let _ = write!(md, "![{0}]({0}.png)\n\n{1}\n\n", f.stem, f.caption);
    }
    for (title, t) in p.tables {
        let _ = write!(md, "## {title}\n\n{t}\n");
    }
    md.push_str("## Provenance\n\n");
    for l in &p.provenance {
        let _ = write!(md, "{l}\n\n");
    }
    let _ = write!(
        md,
        "## Files\n\n{FILES}{}.\n\n## Sweep file\n\n```toml\n{}```\n",
        if p.bound_table { "; `bound.csv`: the bound table" } else { "" },
        p.sweep_src
    );
    md
}

/// The start of a self-contained report page (sweep or run): head, style and title.
pub fn page_head(kind: &str, name: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>depthprobe report: {0}</title><style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}figure{{margin:1em 0}}svg{{max-width:100%;height:auto}}</style></head><body>\n<h1>{kind}: {0}</h1>\n",
        html_escape(name)
    )
}

/// index.html: self-contained, the figures inline as SVG.
pub fn html(p: &Page) -> String {
    let mut html = page_head("Sweep report", p.name);
    let _ = writeln!(html, "<p>{}</p>", html_escape(&p.status_line));
    if !p.failed.is_empty() {
        html.push_str("<p>Failed runs:</p><ul>");
        for f in &p.failed {
            let _ = write!(html, "<li>{}</li>", html_escape(f));
        }
        html.push_str("</ul>\n");
    }
    if !p.checks.is_empty() {
        html.push_str("<h2>Checks of the paper's claims</h2>\n");
        for c in p.checks {
            let _ = writeln!(html, "<p>{}</p>", md_inline_html(c));
        }
    }
    html.push_str("<h2>Figures</h2>\n");
    for f in p.figures {
        let _ = writeln!(html, "<figure>{}<figcaption>{}</figcaption></figure>", f.svg, html_escape(&f.caption));
    }
    for (title, t) in p.tables {
        let _ = write!(html, "<h2>{}</h2>\n{}", html_escape(title), md_table_html(t));
    }
    html.push_str("<h2>Provenance</h2>\n");
    for l in &p.provenance {
        let _ = writeln!(html, "<p>{}</p>", md_inline_html(&l.replace('`', "")));
    }
    let _ = write!(html, "<h2>Sweep file</h2><pre>{}</pre>\n</body></html>\n", html_escape(&p.sweep_src));
    html
}
