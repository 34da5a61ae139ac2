"""Model bundles: a folder with a JSON manifest and safetensors weights. Loading never unpickles.

Layout::

    MODEL/manifest.json          what the model is (checked against a JSON Schema shipped
                                 with stimage): tiles (µm, px, stain), stain target, genes,
                                 encoder(s), members, classifier, training data and metrics
    MODEL/weights.safetensors    every array (feature pipelines, members, classifier)

A bundle of a newer format version than this stimage reads is refused with a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from stimage._version import __version__
from stimage.errors import ConfigError, InputFileNotFoundError, StimageError
from stimage.models._classifier import HighLowClassifier
from stimage.models._context import SpatialContext
from stimage.models._depth import DepthModel
from stimage.models._ensemble import ExpressionPrediction, NBEnsemble, NBEnsembleConfig
from stimage.models._linear import FeaturePipeline
from stimage.models._nb import NBGLM, NBGLMConfig
from stimage.models._nb_mlp import NBMLP, NBMLPConfig

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "RELIABLE_PCC",
    "ModelBundle",
    "UnknownGeneError",
    "load_bundle",
]

#: Held-out PCC below which a gene is marked unreliable wherever it is shown.
RELIABLE_PCC = 0.1
FORMAT = "stimage-model"
FORMAT_VERSION = 2
WEIGHTS = "weights.safetensors"


class UnknownGeneError(StimageError, KeyError):
    """Genes asked for that the model does not predict."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class Component:
    """The members of one encoder (an ensemble may mix encoders, as FSTImage)."""

    encoder: dict[str, Any]
    ensemble: NBEnsemble


@dataclass
class ModelBundle:
    """A trained expression model with everything needed to predict from tiles.

    Attributes:
        name: Model name.
        genes: Genes predicted, in output order.
        tiles: Tile settings (``tile_um``, ``tile_px``, ``stain``, ``min_coverage``...).
        stain_target: The stain normaliser's target fit (``StainNormalizer.to_dict()``).
        components: One NB ensemble per encoder.
        classifier: High/low classifier on the first component's features, or None.
        training: Provenance (samples, patients, spots, gene selection).
        metrics: Training and validation metrics.
        description: Free text.
        context: Spatial context of the features (None: each tile alone).
    """

    name: str
    genes: list[str]
    tiles: dict[str, Any]
    stain_target: dict[str, Any] | None
    components: list[Component]
    classifier: HighLowClassifier | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    path: Path | None = None
    #: Fine-tuned encoder weights by component index (name -> array), saved in the bundle.
    encoder_states: dict[int, dict[str, Any]] = field(default_factory=dict)
    context: SpatialContext | None = None

    # -- use ---------------------------------------------------------------------------
    @property
    def encoders(self) -> list[str]:
        """Encoder names, one per component."""
        return [c.encoder["name"] for c in self.components]

    def check_genes(self, genes: list[str] | None) -> list[str]:
        """The genes asked for, checked against the model's (all when None).

        Raises:
            UnknownGeneError: Naming the unknown genes and a few the model has.
        """
        if not genes:
            return list(self.genes)
        unknown = [g for g in genes if g not in self.genes]
        if unknown:
            raise UnknownGeneError(
                f"model {self.name!r} does not predict {unknown}; it predicts {len(self.genes)} genes, "
                f"e.g. {self.genes[:8]} (see `stimage models show`)"
            )
        return list(genes)

    def gene_reliability(self, threshold: float = RELIABLE_PCC) -> dict[str, dict[str, Any]]:
        """Each gene's held-out accuracy and interval coverage, and whether to trust it.

        From the bundle's metrics (leave-one-section-out within training, see
        :class:`~stimage.models.HeldOut`): ``{"pcc", "coverage", "reliable"}`` per gene;
        ``reliable`` is False below ``threshold`` (a held-out PCC of 0.1 by default) and None
        for models saved without per-gene metrics.
        """
        per_gene = self.metrics.get("genes") or {}
        out: dict[str, dict[str, Any]] = {}
        for g in self.genes:
            m = per_gene.get(g) or {}
            pcc = m.get("pcc")
            out[g] = {
                "pcc": pcc,
                "coverage": m.get("coverage"),
                "reliable": None if pcc is None else bool(pcc >= threshold),
            }
        return out

    def output_metadata(self, genes: list[str] | None = None) -> dict[str, Any]:
        """What outputs record of the model (GeoJSON ``"stimage"`` member, reports).

        The model, its spatial context and, per gene given, the held-out PCC, interval
        coverage and whether it is reliable, with the genes marked unreliable.
        """
        rel = self.gene_reliability()
        genes = list(self.genes if genes is None else genes)
        return {
            "model": self.name,
            "context": None if self.context is None else self.context.to_dict(),
            "reliable_pcc": RELIABLE_PCC,
            "genes": {g: rel[g] for g in genes if g in rel},
            "unreliable_genes": [g for g in genes if rel.get(g, {}).get("reliable") is False],
        }

    def unreliable_genes(self, threshold: float = RELIABLE_PCC) -> list[str]:
        """Genes whose held-out PCC is below ``threshold`` (empty without per-gene metrics)."""
        return [g for g, r in self.gene_reliability(threshold).items() if r["reliable"] is False]

    def predict_features(self, features: dict[str, np.ndarray]) -> ExpressionPrediction:
        """The mixture over all components' members, from features keyed by encoder name."""
        parts = []
        for c in self.components:
            name = c.encoder["name"]
            if name not in features:
                raise ConfigError(f"features of encoder {name!r} are needed by this model")
            parts.append(c.ensemble.predict(features[name]))
        if len(parts) == 1:
            return parts[0]
        depths = [p.log_depth for p in parts if p.log_depth is not None]
        novelty = [p.novelty for p in parts if p.novelty is not None]
        clipped = [p.clipped for p in parts if p.clipped is not None]
        return ExpressionPrediction(
            list(self.genes),
            np.concatenate([p.log_rate for p in parts]),
            np.concatenate([p.theta for p in parts]),
            np.mean(depths, axis=0) if depths else None,
            np.max(novelty, axis=0) if novelty else None,
            np.mean(clipped, axis=0) if clipped else None,
        )

    def predict_high(self, features: dict[str, np.ndarray]) -> np.ndarray | None:
        """P(high) per tile and classifier gene, or None without a classifier."""
        if self.classifier is None:
            return None
        c0 = self.components[0]
        assert c0.ensemble.pipeline is not None
        return self.classifier.predict_proba(
            c0.ensemble.pipeline.transform(features[c0.encoder["name"]])
        )

    # -- saving ------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the bundle folder.

        Raises:
            ConfigError: The folder holds a bundle and ``overwrite`` is False.
        """
        from safetensors.numpy import save_file

        out = Path(folder)
        if (out / "manifest.json").exists() and not overwrite:
            raise ConfigError(
                f"{out}: a model already exists there; use --overwrite or another folder"
            )
        out.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, np.ndarray] = {}
        comps = []
        for i, c in enumerate(self.components):
            e = c.ensemble
            assert e.pipeline is not None
            for k, v in e.pipeline.state().items():
                tensors[f"c{i}.pipeline.{k}"] = v
            if e.depth is not None:
                for k, v in e.depth.state().items():
                    tensors[f"c{i}.depth.{k}"] = v
            first = e.members[0]
            per_gene_l2 = getattr(first, "l2", None)
            if per_gene_l2 is not None:
                tensors[f"c{i}.l2"] = np.asarray(per_gene_l2, np.float64)
            for j, m in enumerate(e.members):
                if isinstance(m, NBMLP):
                    for k, v in m.state().items():
                        tensors[f"c{i}.m{j}.mlp.{k}"] = v
                    continue
                tensors[f"c{i}.m{j}.weight"] = np.asarray(m.weight, np.float32)
                tensors[f"c{i}.m{j}.bias"] = np.asarray(m.bias, np.float32)
                tensors[f"c{i}.m{j}.log_theta"] = np.asarray(m.log_theta, np.float32)
                if m.theta_weight is not None:
                    tensors[f"c{i}.m{j}.theta_weight"] = np.asarray(m.theta_weight, np.float32)
                if m.theta_scale is not None:
                    tensors[f"c{i}.m{j}.theta_scale"] = np.asarray(m.theta_scale, np.float32)
            comps.append(
                {
                    "encoder": c.encoder,
                    "members": len(e.members),
                    "pca_dim": e.pipeline.n_components,
                    "dispersion": e.config.glm.dispersion,
                    "l2": float(getattr(first, "l2_chosen", float("nan"))),
                    "bootstrap": e.config.bootstrap,
                    "depth": e.depth is not None,
                    **(
                        {"hidden": int(first.config.hidden), "steps": int(first.steps)}
                        if isinstance(first, NBMLP)
                        else {}
                    ),
                }
            )
        for i, state in self.encoder_states.items():
            for k, v in state.items():
                arr = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
                tensors[f"c{i}.encoder.{k}"] = arr
        clf = None
        if self.classifier is not None:
            hl = self.classifier
            for name in ("mean", "scale", "coef", "intercept"):
                tensors[f"classifier.{name}"] = np.asarray(getattr(hl, name), np.float32)
            clf = {"genes": hl.genes, "c": hl.c, "l1_ratio": hl.l1_ratio, "component": 0}
        tmp = out / (WEIGHTS + ".tmp")
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, out / WEIGHTS)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "stimage_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "name": self.name,
            "description": self.description,
            "tiles": self.tiles,
            "context": None if self.context is None else self.context.to_dict(),
            "stain_target": self.stain_target,
            "genes": self.genes,
            "components": comps,
            "classifier": clf,
            "training": self.training,
            "metrics": self.metrics,
            "weights": {"file": WEIGHTS, "sha256": _sha256(out / WEIGHTS)},
        }
        _validate(manifest, out)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=_json_default))
        self.path = out
        return out


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _schema() -> dict[str, Any]:
    return json.loads(
        resources.files("stimage").joinpath("schemas/model_manifest.schema.json").read_text()
    )


def _validate(manifest: dict[str, Any], where: Path) -> None:
    import jsonschema

    try:
        jsonschema.validate(manifest, _schema())
    except jsonschema.ValidationError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise ConfigError(f"{where}/manifest.json: invalid at {path}: {e.message}") from e


def load_bundle(folder: str | os.PathLike[str]) -> ModelBundle:
    """Load a model bundle (JSON + safetensors; nothing is unpickled).

    Raises:
        InputFileNotFoundError: No bundle there.
        ConfigError: The manifest is invalid or of a newer format version.
        StimageError: The weights file is damaged.
    """
    root = Path(folder).expanduser()
    manifest = _read_manifest(root)
    t = _read_weights(root, manifest)
    genes = list(manifest["genes"])
    comps = [_component(i, c, genes, t) for i, c in enumerate(manifest["components"])]
    states: dict[int, dict[str, Any]] = {}
    for key, v in t.items():
        if ".encoder." in key:
            ci, _, name = key.partition(".encoder.")
            states.setdefault(int(ci[1:]), {})[name] = v
    clf = None
    if manifest.get("classifier"):
        k = manifest["classifier"]
        clf = HighLowClassifier(
            c=float(k["c"]),
            l1_ratio=float(k["l1_ratio"]),
            genes=list(k["genes"]),
            mean=t["classifier.mean"].astype(np.float64),
            scale=t["classifier.scale"].astype(np.float64),
            coef=t["classifier.coef"].astype(np.float64),
            intercept=t["classifier.intercept"].astype(np.float64),
        )
    return ModelBundle(
        name=manifest["name"],
        genes=genes,
        tiles=manifest["tiles"],
        stain_target=manifest.get("stain_target"),
        components=comps,
        classifier=clf,
        training=manifest.get("training", {}),
        metrics=manifest.get("metrics", {}),
        description=manifest.get("description", ""),
        path=root,
        encoder_states=states,
        context=SpatialContext.from_dict(manifest.get("context")),
    )


def _read_manifest(root: Path) -> dict[str, Any]:
    """The checked manifest of a bundle folder."""
    mp = root / "manifest.json"
    if not mp.exists():
        raise InputFileNotFoundError(
            f"{root}: not a model bundle (no manifest.json); train one with `stimage train` or give the folder of one"
        )
    try:
        manifest = json.loads(mp.read_text())
    except ValueError as e:
        raise ConfigError(f"{mp}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise ConfigError(f"{mp}: not a stimage model (format {fmt!r})")
    version = manifest.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ConfigError(
            f"{mp}: model format version {version} is newer than this stimage ({__version__}) reads "
            f"(up to {FORMAT_VERSION}); update stimage"
        )
    _validate(manifest, root)
    return manifest


def _read_weights(root: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every array of the bundle, after its checksum is checked."""
    from safetensors.numpy import load_file

    wp = root / manifest["weights"]["file"]
    if not wp.exists():
        raise InputFileNotFoundError(
            f"{wp}: the model's weights file is missing; copy the whole model folder"
        )
    if _sha256(wp) != manifest["weights"]["sha256"]:
        raise StimageError(
            f"{wp}: checksum differs from the manifest; the file is damaged - copy the model again"
        )
    try:
        return dict(load_file(str(wp)))
    except Exception as e:
        raise StimageError(f"{wp}: cannot read the weights ({e})") from e


def _with_prefix(t: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}


def _component(i: int, c: dict[str, Any], genes: list[str], t: dict[str, np.ndarray]) -> Component:
    """Component ``i`` of a manifest (its pipeline, members and depth model) from the arrays."""
    pipe = FeaturePipeline.from_state(_with_prefix(t, f"c{i}.pipeline."))
    glm = NBGLMConfig(l2=float(c.get("l2", 1.0)), dispersion=c["dispersion"])
    per_gene_l2 = t.get(f"c{i}.l2")
    members: list[NBGLM | NBMLP] = []
    for j in range(int(c["members"])):
        g = f"c{i}.m{j}."
        if c.get("hidden"):
            members.append(
                NBMLP.from_state(_with_prefix(t, g + "mlp."), NBMLPConfig(hidden=int(c["hidden"])))
            )
            continue
        members.append(
            NBGLM(
                glm,
                weight=t[g + "weight"].astype(np.float64),
                bias=t[g + "bias"].astype(np.float64),
                log_theta=t[g + "log_theta"].astype(np.float64),
                theta_weight=t[g + "theta_weight"].astype(np.float64)
                if g + "theta_weight" in t
                else None,
                l2_chosen=float(c.get("l2", float("nan"))),
                l2=None if per_gene_l2 is None else per_gene_l2.astype(np.float64),
                theta_scale=t[g + "theta_scale"].astype(np.float64)
                if g + "theta_scale" in t
                else None,
            )
        )
    depth = DepthModel.from_state(_with_prefix(t, f"c{i}.depth.")) if c.get("depth") else None
    cfg = NBEnsembleConfig(
        members=len(members),
        pca_dim=c["pca_dim"],
        glm=glm,
        bootstrap=bool(c.get("bootstrap", True)),
        depth=depth is not None,
        hidden=int(c["hidden"]) if c.get("hidden") else None,
    )
    return Component(c["encoder"], NBEnsemble(cfg, genes, pipe, members, depth))
