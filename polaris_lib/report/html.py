"""Self-contained HTML for the run report: plain string templates, images embedded as base64.

No template engine and no external asset: one file that opens anywhere and can be mailed.
A small inline script marks each image loaded or broken (`data-ok`) and counts them on <body>
(`data-images-ok` / `data-images-total`), which the headless-browser test reads back.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

from polaris_lib import artifacts

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1180px; padding: 1.2em 2em 4em; color: #1d1d1f; }}
h1 {{ font-size: 1.6em; margin-bottom: 0.2em; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }}
.sub {{ color: #555; margin-top: 0; }}
nav a {{ margin-right: 1em; font-size: 0.9em; }}
figure {{ margin: 1em 0; }}
.figs {{ display: flex; flex-wrap: wrap; gap: 0.5em 1.5em; align-items: flex-start; }}
.figs figure {{ max-width: 48%; margin: 0.4em 0; }}
.figs figure.wide {{ max-width: 100%; flex-basis: 100%; }}
figure.wide img {{ width: 100%; }}
figure img {{ max-width: 100%; border: 1px solid #eee; }}
img[data-ok="0"] {{ border: 3px solid #c00; min-width: 40px; min-height: 40px; }}
figcaption {{ font-size: 0.85em; color: #555; }}
table.tbl {{ border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }}
table.tbl th, table.tbl td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
table.tbl th {{ background: #f5f5f5; }}
.notrun {{ background: #fff6e0; border-left: 4px solid #e0a000; padding: 0.5em 1em; }}
.note {{ font-size: 0.9em; color: #333; }}
pre {{ background: #f7f7f7; padding: 0.6em; font-size: 0.8em; overflow-x: auto; }}
details summary {{ cursor: pointer; color: #225; }}
.card {{ border: 1px solid #cfd8e3; border-radius: 6px; background: #f7fafd; padding: 0.8em 1.2em; }}
.card .verdict {{ font-size: 1.15em; font-weight: 600; margin: 0.2em 0 0.6em; }}
.card .cells {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr));
              gap: 0.6em 1.6em; }}
.card .wide {{ grid-column: 1 / -1; }}
.card h4 {{ margin: 0.3em 0; font-size: 0.85em; text-transform: uppercase; color: #456; }}
.card p {{ margin: 0.2em 0; font-size: 0.9em; }}
.card .big {{ font-size: 1.35em; }}
.card .ci {{ color: #555; font-size: 0.85em; }}
.card .proto {{ color: #555; font-size: 0.8em; }}
.expect {{ color: #7a5b00; font-size: 0.85em; }}
.card-tbl td, .card-tbl th {{ padding: 1px 14px 1px 0; text-align: left; font-size: 0.9em;
                              vertical-align: top; white-space: nowrap; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="sub">{subtitle}</p>
<nav>{nav}</nav>
{body}
<script>
window.addEventListener("load", function () {{
  var imgs = document.querySelectorAll("img"), ok = 0;
  imgs.forEach(function (im) {{
    var good = im.complete && im.naturalWidth > 0;
    im.dataset.ok = good ? "1" : "0";
    if (good) ok += 1;
  }});
  document.body.dataset.imagesOk = String(ok);
  document.body.dataset.imagesTotal = String(imgs.length);
}});
</script>
</body></html>
"""


def write_page(path: Path, text: str) -> Path:
    """Write the page atomically (artifacts' one writer): a reader never sees half of it, and a
    failed write (a full disk) leaves neither half a page nor a temporary file behind."""
    # mode 0o644: a report is meant to be shared (mkstemp alone makes it owner-only)
    return artifacts.write_text(path, text, mode=0o644)


def esc(text) -> str:
    """HTML-escape any value."""
    return html.escape(str(text))


def png_of(fig, dpi: int = 110) -> bytes:
    """A matplotlib Figure as PNG bytes (closed afterwards: reports make many figures)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


WIDE_PX, WIDE_RATIO = 900, 2.2
"""A figure at least this many pixels wide, or this much wider than tall (several panels), takes
the page's full width: at half width its text would shrink below ~8 px on a laptop screen."""


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; (0, 0) when it is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return 0, 0
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def figure(png: bytes | Path, fig_id: str, caption: str = "") -> str:
    """<figure> with the PNG embedded as a data URI; multi-panel (wide) figures get class wide."""
    data = png.read_bytes() if isinstance(png, Path) else png
    b64 = base64.b64encode(data).decode("ascii")
    w, h = png_size(data)
    wide = ' class="wide"' if h and (w >= WIDE_PX or w / h >= WIDE_RATIO) else ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return (
        f'<figure{wide}><img data-figure="{esc(fig_id)}" alt="{esc(fig_id)}" '
        f'src="data:image/png;base64,{b64}">{cap}</figure>'
    )


def table(df: pd.DataFrame | None, floatfmt: str = "{:.3f}") -> str:
    """A tidy table as HTML (floats formatted, index dropped)."""
    if df is None or df.empty:
        return '<p class="note">(empty table)</p>'
    fmt = {c: floatfmt.format for c in df.columns if pd.api.types.is_float_dtype(df[c])}
    return df.to_html(index=False, classes="tbl", border=0, formatters=fmt, na_rep="–")


def kv_table(items: dict) -> str:
    """Two-column key/value table."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items.items())
    return f'<table class="tbl">{rows}</table>'


def not_run(what: str, why: str = "not run") -> str:
    """The placeholder for a step whose artifacts are missing: the report never crashes on it."""
    return f'<p class="notrun"><b>{esc(what)}</b>: {esc(why)}</p>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def details(summary: str, body: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document; sections are (anchor, heading, body html)."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h, _ in sections)
    body = "\n".join(f'<h2 id="{esc(a)}">{esc(h)}</h2>\n{b}' for a, h, b in sections)
    return PAGE.format(title=esc(title), subtitle=subtitle, nav=nav, body=body)
