"""HTML for the run report and the run comparison: one self-contained HTML5 page each.

Pages reference nothing outside themselves (no URLs, no scripts, no web fonts;
PNGs are base64 ``data:`` URIs, the CSS is inline) so they render the same
from a mail attachment, a ticket or an air-gapped cluster, and leak nothing
when opened. Every value from the data or the manifest is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import struct
from typing import Any, Iterable, Sequence

from skol_spark import __version__

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1000px; color: #1a1a1a; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; background: #fafafa; }
td.up { color: #1a7f37; } td.down { color: #c62828; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { background: #fff8e1; border-left: 4px solid #f2c94c; padding: 0.5em 0.8em; }
"""

RUN_FACTS = (("Run id", ("run_id",)), ("Model", ("model", "name")), ("Model version", ("model", "version")),
             ("Model checksum", ("model", "weights_sha256")), ("Started", ("started_at",)),
             ("Lines scored", ("output", "rows_written")), ("Documents scored", ("input", "documents")),
             ("Duration (s)", ("duration_seconds",)), ("Throughput (lines/s)", ("throughput", "lines_per_second")),
             ("Output", ("output", "path")))

CHART_CAPTIONS = {
    "confusion_matrix.png": "Confusion matrix: rows are true labels, columns predicted; each cell shows the "
                            "line count and its share of the true label's lines.",
    "class_metrics.png": "Precision, recall and F1 per label (0.0 where undefined).",
    "label_counts.png": "Lines per predicted label (and per true label, where known).",
    "confidence.png": "Confidence of each prediction, by predicted label (dashed line: median).",
}


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """Numbers for tables: ints with separators, floats to 3 places, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.3f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, total_rows: int = 0,
          classes: Sequence[Sequence[str]] | None = None) -> str:
    """An HTML table; numbers right-aligned; the last ``total_rows`` rows emphasised."""
    rows = [list(r) for r in rows]
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, value in enumerate(row):
            css = ["num"] if isinstance(value, (int, float)) or value is None else []
            css += list(classes[i][j].split()) if classes and classes[i][j] else []
            attr = f' class="{" ".join(css)}"' if css else ""
            cells.append(f"<td{attr}>{esc(fmt(value))}</td>")
        total = ' class="total"' if i >= len(rows) - total_rows else ""
        body.append(f"<tr{total}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image(name: str, png: bytes) -> str:
    """A figure embedding ``png`` as a data URI, with its pixel size from the PNG header."""
    width, height = struct.unpack(">II", png[16:24])
    data = base64.b64encode(png).decode("ascii")
    caption = CHART_CAPTIONS.get(name, name)
    return (f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
            f'alt="{esc(caption)}"><figcaption>{esc(name)}: {esc(caption)}</figcaption></figure>')


def page(title: str, body: str) -> str:
    """A complete HTML5 document with the inline stylesheet."""
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{esc(title)}</h1>\n"
            f"<p class=\"meta\">skol_spark {esc(__version__)}, generated {generated}</p>\n{body}\n</body>\n</html>\n")


def _lookup(manifest: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = manifest
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


WHOLE_NUMBER_FACTS = {"Throughput (lines/s)"}  # a rate of lines: its fraction is noise, not information


def run_facts(manifest: dict[str, Any] | None, metrics: dict[str, Any], facts: dict[str, Any]) -> str:
    rows = [(caption, _lookup(manifest, path)) for caption, path in RUN_FACTS] if manifest else []
    rows = [(caption, round(value) if caption in WHOLE_NUMBER_FACTS and isinstance(value, float) else value)
            for caption, value in rows if value is not None]
    rows += [("Lines in report", metrics["lines"]), ("Documents in report", facts.get("documents"))]
    return table(["fact", "value"], rows)


def _evaluation(metrics: dict[str, Any]) -> str:
    unknown = metrics["unknown_true_labels"]
    counts = (f"{metrics['labelled_lines']:,} of {metrics['lines']:,} lines carry a true label; "
              f"{metrics['unlabelled_lines']:,} have none; {unknown['count']:,} carry a label the model does not "
              "know (not scored).")
    if not metrics["evaluated_lines"]:
        return f'<p class="note">No true labels among the model labels, so no evaluation. {esc(counts)}</p>'
    labels = metrics["labels"]
    rows = [(name, *(metrics["per_class"][name][k] for k in ("precision", "recall", "f1", "support")),
             metrics["predicted_counts"][name]) for name in labels]
    rows += [(name, *(metrics[key][k] for k in ("precision", "recall", "f1", "support")), None)
             for name, key in (("macro avg", "macro"), ("weighted avg", "weighted"))]
    rows.append(("accuracy", None, None, metrics["accuracy"], metrics["evaluated_lines"], None))
    parts = [f"<p>{esc(counts)}</p>",
             table(["label", "precision", "recall", "F1", "support", "predicted"], rows, total_rows=3)]
    if unknown["count"]:
        parts.append("<h3>True labels the model does not know</h3>"
                     + table(["true label", "lines"], unknown["by_label"].items()))
    per_doc = metrics.get("per_document_accuracy")
    if per_doc and per_doc["documents"]:
        parts.append("<h3>Accuracy per document</h3>" + table(list(per_doc), [list(per_doc.values())]))
    return "\n".join(parts)


def _confidence(summary: dict[str, Any]) -> str:
    keys = ("count", "mean", "min", "p10", "median", "p90", "max")
    rows = [(name, *(values[k] for k in keys)) for name, values in summary["per_class"].items()]
    rows.append(("all lines", *(summary["all"][k] for k in keys)))
    return table(["predicted label", *keys], rows, total_rows=1)


def report_page(title: str, metrics: dict[str, Any], confidence: dict[str, Any], pngs: dict[str, bytes], *,
                manifest: dict[str, Any] | None, facts: dict[str, Any]) -> str:
    """The run report: run facts, evaluation tables, confidence table and every chart in ``pngs``."""
    body = ["<h2>Run</h2>", run_facts(manifest, metrics, facts), "<h2>Evaluation</h2>", _evaluation(metrics),
            "<h2>Confidence</h2>", _confidence(confidence), "<h2>Charts</h2>"]
    body += [image(name, png) for name, png in pngs.items()]
    return page(title, "\n".join(body))


def comparison_page(comparison: dict[str, Any], title: str, name_a: str, name_b: str, max_lines: int) -> str:
    """Run A against run B: line overlap, per-class F1 side by side, label transitions, changed lines."""
    c = comparison
    body = ["<h2>Runs</h2>", table(["", "value"], [
        (f"A: {name_a}", c["lines_a"]), (f"B: {name_b}", c["lines_b"]), ("lines in both", c["common_lines"]),
        ("only in A", c["only_a"]), ("only in B", c["only_b"]), ("label changed (of lines in both)", c["changed_count"]),
    ])]
    if c["f1"]:
        rows, classes = [], []
        for name, v in [*c["f1"]["per_class"].items(), ("macro F1", c["f1"]["macro"]), ("accuracy", c["f1"]["accuracy"])]:
            delta = v["delta"]
            rows.append((name, v["a"], v["b"], f"{delta:+.3f}"))
            classes.append(["", "", "", "num up" if delta > 0 else "num down" if delta < 0 else "num"])
        body += ["<h2>F1 per label (lines in both runs, delta = B − A)</h2>",
                 table(["label", f"A: {name_a}", f"B: {name_b}", "delta"], rows, total_rows=2, classes=classes)]
    else:
        body.append('<p class="note">No F1 comparison: true labels are missing from one of the runs.</p>')
    if c["transitions"]:
        body += ["<h2>Label changes A → B</h2>",
                 table(["label in A", "label in B", "lines"], [(t["a"], t["b"], t["count"]) for t in c["transitions"]])]
    shown = c["changed_lines"][:max_lines]
    body.append(f"<h2>Lines whose label changed ({c['changed_count']:,})</h2>")
    if len(shown) < c["changed_count"]:
        body.append(f'<p class="note">Showing the first {len(shown):,}; all are in changed_lines.csv.</p>')
    if shown:
        headers = list(shown[0])
        ids = {"doc_id", "line_number"}  # identifiers, not quantities: no thousands separators
        body.append(table(headers, [[str(row[h]) if h in ids else row[h] for h in headers] for row in shown]))
    return page(title, "\n".join(body))
