"""The report page: one self-contained HTML file, pictures embedded as data: URIs.

Every number on the page is written by :func:`~basisnet_deploy.report.html_cells.num` from
the report's JSON document and carries its JSON pointer (``data-key``) and format
(``data-fmt``), so a test can check that the page and ``report.json`` agree. A small inline script records, once the page has loaded, how many
images decoded (``<body data-images-loaded="n/m">``), for the browser test.
"""

from __future__ import annotations

from html import escape

from basisnet_deploy.report.html_cells import img, num, table
from basisnet_deploy.report.html_tables import cost_section, fidelity_section

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f5f5f5}td.t,th.t{text-align:left}img{max-width:100%;display:block;margin:8px 0}
.note{color:#555;font-size:13px}.flag{color:#c62828;font-weight:600}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images-loaded', ok.length + '/' + imgs.length);
});
"""


def _specialization(doc: dict, pictures: dict) -> str:
    s = doc["specialization"]
    rows = []
    for b, basis in enumerate(s["bases"]):
        for c, cls in enumerate(basis["classes"]):
            key = f"/specialization/bases/{b}/classes/{c}"
            rows.append([f"basis {basis['basis']}" if c == 0 else "", escape(cls["name"]),
                         num(f"{key}/mean_coefficient", cls["mean_coefficient"], "f4"),
                         num(f"{key}/images", cls["images"], "int")])
    return (f"<h2>Basis specialization ({escape(s['block'])})</h2>"
            f"<p class=note>For each basis of block {escape(s['block'])}, the classes whose images "
            "give it the highest mean coefficient, with the images of each that weigh it most "
            "(the paper's Figure 3).</p>" + img(pictures, "specialization.png", "specialization")
            + table(["basis", "class", "mean coefficient", "images"], rows))


def _similar(doc: dict, pictures: dict) -> str:
    s = doc["similar_classes"]
    why = ("chosen with --classes" if s["chosen_by"] == "user" else "the classes the lightweight "
           "model confuses most: mean probability it gives each to the other, summed both ways")
    rows = [[escape(pair.replace("|", " / ")), num(f"/similar_classes/confusion/{pair}", v, "f4")]
            for pair, v in s["confusion"].items()]
    return ("<h2>Coefficients for similar classes</h2>"
            f"<p class=note>Mean coefficient per non-shared block and basis for {len(s['classes'])} "
            f"classes, {escape(why)} (the paper's Figure 4).</p>"
            + img(pictures, "similar_classes.png", "similar classes")
            + table(["class pair", "LM confusion"], rows))


def _health(doc: dict, pictures: dict) -> str:
    h = doc["basis_health"]
    rows = [[escape(b), num(f"/basis_health/mean_entropy/{l}", h["mean_entropy"][l], "f4"),
             num(f"/basis_health/usage_entropy/{l}", h["usage_entropy"][l], "f4"),
             ", ".join(str(u["basis"]) for u in h["unused"] if u["block"] == b) or "none"]
            for l, b in enumerate(h["blocks"])]
    flag = (f'<p class=flag>{len(h["unused"])} basis slot(s) never the largest coefficient on any '
            "image: marked x in the right-hand map.</p>" if h["unused"]
            else "<p class=note>Every basis is the largest coefficient on at least one image.</p>")
    return ("<h2>Basis health</h2><p class=note>Entropy in nats; the uniform mix has "
            f"{num('/basis_health/max_entropy', h['max_entropy'], 'f4')} (log K). A basis is "
            "flagged unused in a block when it is never the largest coefficient there.</p>"
            + flag + img(pictures, "basis_health.png", "basis health")
            + table(["block", "mean entropy", "entropy of the mean", "unused bases"], rows))


def _early_exit(doc: dict, pictures: dict) -> str:
    e = doc["early_exit"]
    at, man = e["at_threshold"], e["manifest"]
    label = ("never exit (no threshold calibrated)" if e["threshold"] is None
             else f"threshold {num('/early_exit/threshold', e['threshold'], 'f4')}")
    rows = [["these images (fresh run)", num("/early_exit/at_threshold/accuracy", at["accuracy"], "pct"),
             num("/early_exit/at_threshold/exit_rate", at["exit_rate"], "pct"),
             num("/early_exit/at_threshold/avg_madds", at["avg_madds"], "m")]]
    if man.get("threshold") is not None:
        rows.append([f"calibration ({num('/early_exit/manifest/calibrated_on', man.get('calibrated_on'), 'int')}"
                     " images, manifest)",
                     num("/early_exit/manifest/accuracy", man.get("accuracy"), "pct"),
                     num("/early_exit/manifest/exit_rate", man.get("exit_rate"), "pct"),
                     num("/early_exit/manifest/avg_madds", man.get("avg_madds"), "m")])
    per = [[escape(n), num(f"/early_exit/per_class_exit_rate/{n}", v, "pct")]
           for n, v in e["per_class_exit_rate"].items()]
    return ("<h2>Early exit</h2>"
            f"<p class=note>Top-1 against average MAdds for every threshold on these images; the "
            f"manifest's calibrated point, {label}, is circled.</p>"
            + img(pictures, "early_exit.png", "early exit trade-off")
            + table(["at the manifest's threshold", "top-1", "exit rate", "avg MAdds"], rows)
            + img(pictures, "exit_per_class.png", "exit rate per class")
            + table(["class", "exit rate"], per))


def render_page(doc: dict, pictures: dict) -> str:
    """The whole page for the report JSON ``doc`` and its PNGs."""
    im = doc["images"]
    head = (f"<h1>BasisNet deployment report</h1><p>Export <code>{escape(doc['export'])}</code>; "
            f"{num('/images/count', im['count'], 'int')} images from {escape(im['source'])} "
            f"({num('/images/classes', im['classes'], 'int')} classes); written by "
            f"{escape(doc['generator'])} in {num('/seconds', doc['seconds'], 's')} s. Every number "
            "comes from this run on these images or from the export's manifest.json; all of them "
            "are in report.json.</p>")
    body = "".join([head, _specialization(doc, pictures), _similar(doc, pictures),
                    _health(doc, pictures), _early_exit(doc, pictures),
                    fidelity_section(doc), cost_section(doc, pictures)])
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>BasisNet report</title>"
            f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>{body}</body></html>\n")
