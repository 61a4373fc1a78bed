"""Open report pages in a real headless browser (Chromium through WebDriver) and check what a
reader sees: the page loads without script errors, every <img> decodes, every figure is an SVG
drawn at a visible size, every panel of every figure has something drawn inside its frame, and
every table has rows. A report.md's figures are loaded as images in the same browser.

    python tests/browser/check_reports.py REPORT_DIR...      (folders with index.html / report.md)
    python tests/browser/check_reports.py --self-test        (a broken page must be caught)

Exits non-zero, naming the page and what is wrong, on the first report that fails.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

# What the page looks like to a reader, measured in the browser.
PAGE_JS = r"""
const out = {images: [], figures: [], panels: [], tables: []};
for (const img of document.images) {
  out.images.push({src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0});
}
const figs = document.querySelectorAll('figure');
figs.forEach((f, i) => {
  const svg = f.querySelector('svg');
  const r = svg ? svg.getBoundingClientRect() : null;
  out.figures.push({i, svg: !!svg, w: r ? r.width : 0, h: r ? r.height : 0});
  if (!svg) return;
  const marks = [...svg.querySelectorAll('polyline, circle, path, line.bar, rect.cell')]
    .map(e => { try { return e.getBBox(); } catch (err) { return null; } })
    .filter(b => b && isFinite(b.x) && isFinite(b.y) && (b.width > 0 || b.height > 0));
  svg.querySelectorAll('rect[stroke="#444"]').forEach((frame, j) => {
    const fb = frame.getBBox();
    const inside = marks.filter(b => b.x + b.width >= fb.x && b.x <= fb.x + fb.width &&
                                     b.y + b.height >= fb.y && b.y <= fb.y + fb.height).length;
    out.panels.push({figure: i, panel: j, marks: inside});
  });
});
document.querySelectorAll('table').forEach((t, i) => out.tables.push({i, rows: t.rows.length}));
return out;
"""


def browser() -> webdriver.Chrome:
    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
              "--allow-file-access-from-files"):
        opts.add_argument(a)
    opts.binary_location = "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def problems_of(drv: webdriver.Chrome, page: Path, counts: dict | None = None) -> list[str]:
    drv.get(page.resolve().as_uri())
    seen = drv.execute_script(PAGE_JS)
    if counts is not None:
        counts.update({k: len(v) for k, v in seen.items()})
    bad = []
    errors = [e["message"] for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
    bad += [f"console error: {m}" for m in errors]
    bad += [f"image {i['src']} does not load" for i in seen["images"] if not i["ok"]]
    for f in seen["figures"]:
        if not f["svg"]:
            bad.append(f"figure {f['i'] + 1} holds no SVG")
        elif f["w"] < 100 or f["h"] < 100:
            bad.append(f"figure {f['i'] + 1} is drawn {f['w']:.0f}×{f['h']:.0f} px")
    bad += [f"figure {p['figure'] + 1} panel {p['panel'] + 1} is empty" for p in seen["panels"] if p["marks"] == 0]
    bad += [f"table {t['i'] + 1} has no rows under its header" for t in seen["tables"] if t["rows"] < 2]
    if not seen["figures"] and not seen["images"]:
        bad.append("no figure at all")
    return bad


def markdown_page(report_md: Path, tmp: Path) -> Path:
    """report.md's figures as <img> tags in a page beside them, so the browser decodes each PNG."""
    imgs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report_md.read_text())
    if not imgs:
        raise SystemExit(f"{report_md}: no figure referenced")
    page = tmp / f"md-{abs(hash(str(report_md)))}.html"
    tags = "".join(f'<img src="{(report_md.parent / i).resolve().as_uri()}">' for i in imgs)
    page.write_text(f"<!DOCTYPE html><html><body>{tags}</body></html>")
    return page


def check(dirs: list[Path]) -> int:
    drv = browser()
    failed = 0
    try:
        with tempfile.TemporaryDirectory() as t:
            for d in dirs:
                for page in [d / "index.html", markdown_page(d / "report.md", Path(t))]:
                    counts: dict = {}
                    bad = problems_of(drv, page, counts)
                    name = page if page.parent == d else d / "report.md"
                    if bad:
                        failed += 1
                        print(f"FAIL {name}:\n  " + "\n  ".join(bad))
                    else:
                        print(f"ok   {name}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    finally:
        drv.quit()
    return failed


def self_test() -> None:
    """A page with a missing image, an empty panel, an empty table and a tiny figure: each must
    be reported; a good page must pass."""
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        frame = '<rect x="10" y="10" width="200" height="150" fill="none" stroke="#444"/>'
        drawn = '<polyline points="20,20 100,80 180,40" fill="none" stroke="red"/>'
        good = (f'<figure><svg width="400" height="300">{frame}{drawn}</svg></figure>'
                '<table><tr><th>a</th></tr><tr><td>1</td></tr></table>')
        bad = (f'<figure><svg width="400" height="300">{frame}<polyline points="" stroke="red"/></svg></figure>'
               f'<figure><svg width="40" height="30">{frame}{drawn}</svg></figure>'
               '<img src="missing.png"><table><tr><th>a</th></tr></table>')
        (t / "good.html").write_text(f"<!DOCTYPE html><html><body>{good}</body></html>")
        (t / "bad.html").write_text(f"<!DOCTYPE html><html><body>{bad}</body></html>")
        drv = browser()
        try:
            assert problems_of(drv, t / "good.html") == [], problems_of(drv, t / "good.html")
            found = "\n".join(problems_of(drv, t / "bad.html"))
        finally:
            drv.quit()
        for want in ("image missing.png does not load", "figure 1 panel 1 is empty", "figure 2 is drawn 40×30 px",
                     "table 1 has no rows"):
            assert want in found, f"self-test: '{want}' not reported in:\n{found}"
    print("self-test: a broken page is caught, a good one passes")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", type=Path, help="report folders (index.html and report.md)")
    ap.add_argument("--self-test", action="store_true", help="check that a broken page is caught")
    a = ap.parse_args()
    if a.self_test:
        self_test()
    if a.dirs:
        sys.exit(1 if check(a.dirs) else 0)
