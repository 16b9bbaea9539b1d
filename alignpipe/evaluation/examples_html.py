"""A self-contained HTML page of retrieval examples, to look at what the model finds."""

from __future__ import annotations

import base64
import html
import io

from PIL import Image

from alignpipe import fs
from alignpipe.evaluation.evaluate import EvalResult

THUMBNAIL_PX = 112

_STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; }
.query { margin: 18px 0; padding-bottom: 12px; border-bottom: 1px solid #ddd; }
.row { display: flex; gap: 10px; align-items: flex-start; flex-wrap: wrap; }
figure { margin: 0; text-align: center; font-size: 12px; width: 124px; }
img { border: 4px solid #ccc; border-radius: 4px; }
.hit img { border-color: #2a2; } li.hit { color: #181; font-weight: bold; }
ol { margin: 0; } .score { color: #777; font-size: 11px; }
"""


def write_retrieval_examples_html(result: EvalResult, path: str) -> None:
    """Writes `result.examples` as one HTML file with the images embedded (data URIs), a section
    per retrieval set under a table of every set's metrics.

    Correct results (the query's own image or captions) are marked green.

    Args:
        result: from `evaluate`.
        path: the output file (local path or URI).
    """
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Retrieval examples</title>"
        f"<style>{_STYLE}</style></head><body><h1>Retrieval examples</h1>",
        _metrics_table(result),
    ]
    for name, examples in result.examples.items():
        parts.append(f"<h2>{html.escape(name)}: text to image, the 5 nearest images of a caption</h2>")
        for example in examples.get("text_to_image", []):
            figures = "".join(
                f"<figure class='{'hit' if r['correct'] else ''}'>{_img(r['image'])}"
                f"<figcaption class='score'>{r['score']:.3f}</figcaption></figure>"
                for r in example["results"]
            )
            parts.append(
                f"<div class='query'><p><b>{html.escape(example['query'])}</b></p>"
                f"<div class='row'>{figures}</div></div>"
            )
        parts.append(f"<h2>{html.escape(name)}: image to text, the 5 nearest captions of an image</h2>")
        for example in examples.get("image_to_text", []):
            items = "".join(
                f"<li class='{'hit' if r['correct'] else ''}'>{html.escape(r['caption'])} "
                f"<span class='score'>{r['score']:.3f}</span></li>"
                for r in example["results"]
            )
            parts.append(
                f"<div class='query row'><figure>{_img(example['query'])}</figure><ol>{items}</ol></div>"
            )
    parts.append("</body></html>")
    fs.write_text(path, "\n".join(parts))


def _metrics_table(result: EvalResult) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{value:.4f}</td></tr>"
        for key, value in sorted(result.metrics.items())
    )
    return f"<table>{rows}</table>"


def _img(path: str) -> str:
    """An `<img>` holding a PNG thumbnail of the image file at `path`."""
    image = Image.open(io.BytesIO(fs.read_bytes(path))).convert("RGB")
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' title='{html.escape(path, quote=True)}'>"
