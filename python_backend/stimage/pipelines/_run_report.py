"""One self-contained HTML report per run: what was run, its numbers, pictures and warnings.

A :class:`RunReport` collects, for one run of ``predict-slide`` or ``demo``:

* the model: its name, its held-out accuracy by gene set, and for the genes of the run each
  gene's held-out Pearson, interval coverage and whether it is reliable
  (:func:`model_section`);
* the numbers (tiles, kept, objects, seconds, µm per pixel ...) and the settings;
* the pictures, embedded in the file as data URIs (so the report opens anywhere, mailed or
  moved, with nothing beside it), each bounded in size before it is embedded
  (:data:`MAX_EMBED_PX`, :data:`MAX_EMBED_BYTES`);
* plain warnings, first on the page: genes below the reliability threshold, a slide that was
  in the model's training data, an explanation whose local model fits poorly, cell types that
  are mostly uncertain.

Links to the run's data files are relative, for when the report sits beside them. The page
has no script and loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stimage.models import Cells, ModelBundle, Predictor
    from stimage.pipelines._slide_files import SlideFiles

__all__ = [
    "MAX_EMBED_BYTES",
    "MAX_EMBED_PX",
    "RunReport",
    "cells_section",
    "explanation_warnings",
    "model_section",
    "slide_report",
    "training_overlap",
]

#: Pictures larger than this on their long side are scaled down before embedding.
MAX_EMBED_PX = 2400
#: Pictures larger than this (bytes) are re-encoded as JPEG before embedding.
MAX_EMBED_BYTES = 1_000_000
#: Share of uncertain cells from which the report warns.
UNCERTAIN_SHARE_WARN = 0.5

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:1em 1.5em;"
    "color:#222;line-height:1.4;overflow-wrap:anywhere}h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid "
    "#ccc}table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #bbb;padding:"
    "3px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}td.n{text-align:right;"
    "font-variant-numeric:tabular-nums}.warn{background:#fff4d6;border:1px solid #c98a00;"
    "padding:.5em 1em;margin:1em 0}.warn li{margin:.2em 0}figure{margin:1.4em 0}figure img"
    "{max-width:100%;height:auto;border:1px solid #ddd}figcaption{color:#555;font-size:.92em}"
    "code{background:#f4f4f4;padding:0 3px;word-break:break-all}table{max-width:100%}.muted{color:#666;font-size:.9em}"
)


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.{digits}f}"
    return str(v)


def _data_uri(path: Path) -> str:
    """The picture as a data URI, scaled down / re-encoded when over the bounds."""
    from PIL import Image

    raw = path.read_bytes()
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        path.suffix.lower(), "image/png"
    )
    with Image.open(io.BytesIO(raw)) as opened:
        big = max(opened.size) > MAX_EMBED_PX
        if big or len(raw) > MAX_EMBED_BYTES:
            im = opened.convert("RGB")
            if big:
                f = MAX_EMBED_PX / max(im.size)
                im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=88)
            raw, mime = buf.getvalue(), "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(raw).decode("ascii")


@dataclass
class RunReport:
    """A report being put together; :meth:`write` makes the HTML file.

    Attributes:
        title: Page title.
        intro: A sentence or two on what the run did (plain text).
        numbers: ``(label, value)`` rows: tiles, kept, seconds ...
        settings: The run's settings (command-line options), shown as given.
        warnings: Plain-language warnings, shown first.
        sections: HTML blocks built by this module's helpers (model, cells).
        figures: ``(picture, caption)``: embedded.
        files: ``(path, what)``: the run's outputs, linked relative to the report.
    """

    title: str
    intro: str = ""
    numbers: list[tuple[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)
    files: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, section: tuple[str, list[str]]) -> None:
        """Add a section and its warnings (what :func:`model_section` and kin return)."""
        block, warns = section
        self.sections.append(block)
        self.warnings.extend(w for w in warns if w not in self.warnings)

    def html(self, where: Path) -> str:
        """The page; file links are made relative to ``where`` (the report's folder)."""
        parts = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{_esc(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{_esc(self.title)}</h1>",
        ]
        if self.intro:
            parts.append(f"<p>{_esc(self.intro)}</p>")
        if self.warnings:
            items = "".join(f"<li>{_esc(w)}</li>" for w in self.warnings)
            parts.append(f"<div class='warn'><b>Read with care</b><ul>{items}</ul></div>")
        if self.numbers:
            rows = "".join(
                f"<tr><th>{_esc(k)}</th><td class='n'>{_esc(_fmt(v))}</td></tr>"
                for k, v in self.numbers
            )
            parts.append(f"<h2>The run</h2><table>{rows}</table>")
        parts.extend(self.sections)
        if self.figures:
            parts.append("<h2>Pictures</h2>")
            for p, cap in self.figures:
                if Path(p).is_file():
                    parts.append(
                        f"<figure><img src='{_data_uri(Path(p))}' alt='{_esc(cap)}'>"
                        f"<figcaption>{_esc(cap)}</figcaption></figure>"
                    )
        if self.files:
            links = []
            for p, what in self.files:
                rel = os.path.relpath(Path(p).resolve(), where.resolve())
                links.append(
                    f"<li><a href='{_esc(Path(rel).as_posix())}'>{_esc(Path(p).name)}</a>: "
                    f"{_esc(what)}</li>"
                )
            parts.append(f"<h2>Files</h2><ul>{''.join(links)}</ul>")
        if self.settings:
            rows = "".join(
                f"<tr><th>{_esc(k)}</th><td><code>{_esc(_setting(v))}</code></td></tr>"
                for k, v in self.settings.items()
            )
            parts.append(f"<h2>Settings</h2><table>{rows}</table>")
        from stimage._version import __version__

        parts.append(f"<p class='muted'>stimage {_esc(__version__)}</p></body></html>")
        return "".join(parts)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the page atomically (a temporary file, then a rename)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(self.html(out.parent), encoding="utf-8")
        os.replace(tmp, out)
        return out


#: A setting's list is shown up to this many items.
MAX_LIST_ITEMS = 40


def _setting(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        shown = ", ".join(str(x) for x in v[:MAX_LIST_ITEMS]) or "(none)"
        return shown + (f" ... ({len(v)} in all)" if len(v) > MAX_LIST_ITEMS else "")
    return "(not set)" if v is None else str(v)


def model_section(bundle: ModelBundle, genes: Sequence[str]) -> tuple[str, list[str]]:
    """HTML on the model and the genes of the run, and the warnings it raises.

    Held-out accuracy by gene set (``metrics["cv"]``, when the bundle has it) and, for each
    gene of ``genes`` the model has, its held-out PCC, interval coverage and whether it is
    reliable (PCC at or above the bundle's threshold). Genes under it give a warning.
    """
    from stimage.models import RELIABLE_PCC

    rel = bundle.gene_reliability()
    shown = [g for g in dict.fromkeys(genes) if g in rel]
    cv = (bundle.metrics.get("cv") or {}).get("by_gene_set") or {}
    parts = [
        "<h2>The model</h2>",
        f"<p><code>{_esc(bundle.name)}</code>: {_esc(bundle.description)}</p>",
    ]
    if cv:
        rows = "".join(
            f"<tr><td>{_esc(k)}</td><td class='n'>{_fmt(v.get('mean_pcc'))}</td></tr>"
            for k, v in sorted(cv.items())
        )
        parts.append(
            "<p>Held-out accuracy (leave one section out; mean Pearson correlation per gene "
            f"set):</p><table><tr><th>gene set</th><th>mean PCC</th></tr>{rows}</table>"
        )
    else:
        parts.append("<p>This model records no held-out accuracy by gene set.</p>")
    warns: list[str] = []
    if shown:
        rows = "".join(
            f"<tr><td>{_esc(g)}</td><td class='n'>{_fmt(rel[g]['pcc'], 2)}</td>"
            f"<td class='n'>{_fmt(rel[g]['coverage'], 2)}</td><td>"
            + ("yes" if rel[g]["reliable"] else "<b>no: read with caution</b>")
            + "</td></tr>"
            for g in shown
        )
        parts.append(
            f"<p>The genes of this run (held-out PCC, 90% interval coverage; genes under PCC "
            f"{RELIABLE_PCC} are unreliable):</p><table><tr><th>gene</th><th>held-out PCC</th>"
            f"<th>coverage</th><th>reliable</th></tr>{rows}</table>"
        )
        weak = [g for g in shown if not rel[g]["reliable"]]
        if weak:
            warns.append(
                f"{len(weak)} of the {len(shown)} genes shown are below the model's reliability "
                f"threshold (held-out PCC < {RELIABLE_PCC}): {', '.join(weak[:12])}"
                + (" ..." if len(weak) > 12 else "")
                + ". Their maps mostly show noise."
            )
    return "".join(parts), warns


def training_overlap(
    bundle: ModelBundle, slide: str | os.PathLike[str], sample_id: str | None = None
) -> str | None:
    """The training sample a slide seems to come from, by name; None when none matches.

    Matches ``sample_id`` or a folder or file stem of the slide's path against the model's
    training samples (``training["samples"]``), and the slide's file name against recorded
    training slide files (``training["slides"]``, when the bundle has them). A name match is
    a heuristic: it cannot see a renamed copy.
    """
    samples = [str(s) for s in bundle.training.get("samples", []) or []]
    files = {Path(str(s)).name for s in bundle.training.get("slides", []) or []}
    p = Path(slide)
    names = {p.stem, *(part for part in p.parent.parts[-3:])}
    if sample_id is not None:
        names.add(str(sample_id))
    if p.name in files:
        return p.name
    for s in samples:
        if s in names:
            return s
    return None


def cells_section(cells: Cells, where: str = "") -> tuple[str, list[str]]:
    """HTML on detected cells (composition, uncertainty) and the warnings it raises."""
    import numpy as np

    from stimage.pipelines._cells import UNCERTAIN_ENTROPY

    n = len(cells)
    comp = cells.composition()
    rows = "".join(
        f"<tr><td>{_esc(k)}</td><td class='n'>{v:.0%}</td></tr>" for k, v in comp.items()
    )
    warns: list[str] = []
    ent_txt = ""
    t = cells.types
    if t is not None and len(t) and "entropy" in t.columns:
        e = np.asarray(t["entropy"], np.float64)
        unsure = float((e >= UNCERTAIN_ENTROPY).mean())
        ent_txt = (
            f" Mean type entropy {float(np.nanmean(e)):.2f} (0 certain, 1 uniform); "
            f"{unsure:.0%} of the cells at or above {UNCERTAIN_ENTROPY} (dashed outlines)."
        )
        if unsure >= UNCERTAIN_SHARE_WARN:
            warns.append(
                f"{unsure:.0%} of the cells{(' ' + where) if where else ''} have uncertain types "
                f"(entropy >= {UNCERTAIN_ENTROPY}): read the cell types as a composition, not "
                "as a diagnosis of each cell."
            )
    block = (
        f"<h2>Cells</h2><p>{n} nuclei segmented{(' ' + _esc(where)) if where else ''}.{ent_txt}</p>"
        + (f"<table><tr><th>type</th><th>share</th></tr>{rows}</table>" if rows else "")
    )
    return block, warns


def explanation_warnings(r2: Mapping[str, float]) -> list[str]:
    """Warnings for explained genes (name -> local R²) whose local model fits poorly."""
    from stimage.pipelines._explain import LOW_R2

    low = [(g, v) for g, v in r2.items() if v == v and v < LOW_R2]
    return [
        f"The LIME explanation of {g} fits its local model poorly (R² {v:.2f} < {LOW_R2}): "
        "its nucleus scores are a rough guide only."
        for g, v in low
    ]


def slide_report(
    predictor: Predictor,
    slide: str | os.PathLike[str],
    res: SlideFiles,
    seconds: float,
    settings: Mapping[str, Any],
    *,
    region_given: bool,
) -> RunReport:
    """The report of one slide predicted by ``predict-slide`` (or one slide of a cohort).

    Write it with ``report.write(res.h5ad.with_suffix(".report.html"))``: beside the GeoJSON,
    so that its links to the outputs hold wherever the folder is moved.
    """
    state = res.job.state
    b = predictor.bundle
    name = Path(slide).name
    heat_genes = [p.stem for p in res.heatmaps]
    area = "the region given" if region_given else "the tissue"
    status = {
        "predicted": "predicted",
        "rewritten": "outputs rewritten from the stored predictions",
    }.get(res.status, res.status)
    report = RunReport(
        title=f"STImage: predicted expression on {name}",
        intro=(
            f"Expression of {len(b.genes)} genes predicted with aleatoric and epistemic "
            f"uncertainty on {predictor.tile_um:g} µm grid tiles over {area} of {name}, by "
            f"the model {b.name}. The GeoJSON holds {len(res.geojson_genes)} of them (drag it "
            "onto the image in QuPath); the AnnData holds all."
        ),
        numbers=[
            ("tiles predicted", int(state.get("n_tiles", 0))),
            ("QuPath objects", res.n_objects),
            ("genes predicted (in the GeoJSON)", f"{len(b.genes)} ({len(res.geojson_genes)})"),
            ("µm per pixel", f"{float(state.get('mpp', float('nan'))):.4g}"),
            ("tile size (µm)", f"{predictor.tile_um:g}"),
            ("seconds (this run)", f"{seconds:.1f}"),
            ("status", status),
        ],
        settings=dict(settings),
        figures=[
            (p, f"{p.stem}: predicted mean and epistemic sd (log1p counts per 10k)")
            for p in res.heatmaps
        ],
        files=[
            (res.geojson, "QuPath objects: tiles with measurements"),
            (res.h5ad, "every gene, as AnnData"),
            *[(p, f"heatmap of {p.stem}") for p in res.heatmaps],
        ],
    )
    seen = training_overlap(b, slide)
    if seen is not None:
        report.warnings.append(
            f"This slide looks like the training sample {seen} of the model (by its name): the "
            "maps show what the model learnt there, not how it does on new tissue; the "
            "held-out accuracy below is the honest measure."
        )
    report.add(model_section(b, [*res.geojson_genes, *heat_genes]))
    if res.default_genes and len(b.genes) > len(res.geojson_genes):
        report.warnings.append(
            f"The GeoJSON holds the model's first {len(res.geojson_genes)} genes only (--genes "
            "chooses them); the AnnData holds all."
        )
    return report
