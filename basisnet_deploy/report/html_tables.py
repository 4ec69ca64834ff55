"""The report page's fidelity and cost sections (see :mod:`basisnet_deploy.report.html`)."""

from __future__ import annotations

from html import escape

from basisnet_deploy.report.html_cells import img, num, table


def fidelity_section(doc: dict) -> str:
    f = doc["fidelity"]
    rows = []
    for i, r in enumerate(f["manifest_table"]):
        k = f"/fidelity/manifest_table/{i}"
        rows.append([escape(r["artifact"]), num(f"{k}/top1_agreement", r["top1_agreement"], "pct"),
                     num(f"{k}/accuracy", r["accuracy"], "pct"),
                     num(f"{k}/accuracy_drop", r["accuracy_drop"], "pct"),
                     num(f"{k}/logits_max_rel", r["logits_max_rel"], "e"),
                     num(f"{k}/coefficients_max_abs", r["coefficients_max_abs"], "e")])
    v = f["manifest"] or {}
    stored = (table(["artifact", "top-1 agreement", "accuracy", "drop vs float model",
                      "logit max rel err", "coefficient max abs err"], rows)
              if rows else "<p class=flag>The manifest records no verification.</p>")
    fresh = []
    for role, s in f["fresh"].items():
        if role == "presynth_vs_coefficient":
            continue
        k = f"/fidelity/fresh/{role}"
        agree = ("(itself)" if role == "lightweight"
                 else num(f"{k}/agreement_with_lightweight", s["agreement_with_lightweight"], "pct"))
        fresh.append([escape(role), num(f"{k}/accuracy", s["accuracy"], "pct"), agree])
    pvc = f["fresh"].get("presynth_vs_coefficient")
    extra = "" if pvc is None else (
        "<p>Pre-synthesized vs coefficient-input specialist on these images: top-1 agreement "
        f"{num('/fidelity/fresh/presynth_vs_coefficient/top1_agreement', pvc['top1_agreement'], 'pct')}, "
        f"logit max abs difference {num('/fidelity/fresh/presynth_vs_coefficient/logits_max_abs', pvc['logits_max_abs'], 'e')}"
        f" (max rel {num('/fidelity/fresh/presynth_vs_coefficient/logits_max_rel', pvc['logits_max_rel'], 'e')}).</p>")
    source = ("" if not v else f" on {num('/fidelity/manifest/images', v.get('images'), 'int')} "
              f"{escape(str(v.get('source')))} images")
    return ("<h2>Fidelity</h2><p class=note>Stored at export time, against the float TensorFlow "
            f"model{source} (manifest.json; this report runs without TensorFlow, so the float "
            "model is not re-run):</p>" + stored
            + "<p class=note>Fresh run on this page's images: each exported artifact against the "
            "labels and against the exported lightweight model (end to end, the exported LM's "
            "coefficients drive the specialist):</p>"
            + table(["artifact", "accuracy", "top-1 agreement with the LM"], fresh) + extra)


def cost_section(doc: dict, pictures: dict) -> str:
    c = doc["cost"]
    rows = [[escape(n), num(f"/cost/stages/{n}/madds", s["madds"], "m"),
             num(f"/cost/stages/{n}/params", s["params"], "m")] for n, s in c["stages"].items()]
    rows.append(["whole pipeline (no early exit)", num("/cost/madds", c["madds"], "m"),
                 num("/cost/params", c["params"], "m")])
    out = ("<h2>Cost</h2><p class=note>MAdds and parameters from the manifest's cost model"
           + ("; latencies measured by <code>bench</code>" if c["bench"] else
              "; no --bench file was given, so no latencies are shown") + ".</p>"
           + img(pictures, "cost.png", "cost") + table(["stage", "MAdds", "parameters"], rows))
    b = c["bench"]
    if b:
        lat = [[escape(n), *(num(f"/cost/bench/stages/{n}/{p}", s.get(p), "ms")
                             for p in ("p50", "p90", "p99"))] for n, s in b["stages"].items()]
        for key, label in (("with_session_recreation_ms", "synthesis + re-create"),
                           ("to_first_output_ms", "synthesis + first run")):
            extra = (b.get("synthesis") or {}).get(key)
            if extra:
                lat.append([label, *(num(f"/cost/bench/synthesis/{key}/{p}", extra.get(p), "ms")
                                     for p in ("p50", "p90", "p99"))])
        run = [[escape(n), num(f"/cost/bench/runners/{n}/throughput_fps", r["throughput_fps"], "s"),
                num(f"/cost/bench/runners/{n}/latency_ms/p50", r["latency_ms"]["p50"], "ms"),
                num(f"/cost/bench/runners/{n}/early_exit_rate", r["early_exit_rate"], "pct"),
                num(f"/cost/bench/runners/{n}/avg_madds", r["avg_madds"], "m")]
               for n, r in b["runners"].items()]
        fallback = ("" if not b.get("fallback") else
                    f" <span class=flag>(not run: FALLBACK: {escape(str(b['fallback']))})</span>")
        ran = (b.get("processors") or {}).get("specialist")
        ran = "" if not ran else f" (the specialist ran on {escape(str(ran))})"
        out += (f"<p class=note>bench: {escape(str(b['runtime']))}, delegate "
                f"{escape(str(b['delegate']))}{fallback}{ran}, specialist {escape(str(b['specialist_form']))}."
                + ("" if not b.get("synthesis") else
                   " Synthesis is the mix alone; each re-synthesis also re-creates the specialist's "
                   "session (+ re-create), and its first run follows (+ first run).")
                + "</p>"
                + table(["stage", "p50 ms", "p90 ms", "p99 ms"], lat)
                + table(["runner", "frames/s", "p50 ms", "exit rate", "avg MAdds"], run))
    return out
