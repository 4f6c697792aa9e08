"""Model files: one ``.safetensors`` file, tensors + a JSON manifest in its metadata.

Nothing is ever unpickled. The manifest records the architecture, the joints of each domain (with
their bones, checked against the catalog on load), preprocessing, joint-detection data, training
provenance and a SHA-256 checksum, so a truncated or modified file, an unknown format version or a
manifest that does not match the tensors each fail with one clear error naming the file.

Format 2 (written now): the checksum covers the manifest (canonical JSON, without the checksum
field) and the tensors, because the manifest steers the result as much as the weights do (an edited
out-of-distribution threshold silences its warning). Format 1 (older files): the checksum covers the
tensors only; such a file still loads, with a warning in ``LoadedModel.warnings`` that every
segmentation reports, until it is re-saved (``save_model``, or ``pbseg info MODEL --upgrade OUT``).
The checksum detects edits and corruption, not a forger who recomputes it: it is not a signature.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_file
from ..catalog import get_joint
from . import MultiDomainUNet, NetworkConfig
from .config import PreprocessingConfig

FORMAT_VERSION = 2
LEGACY_FORMAT_VERSION = 1  # checksum of the tensors only
CHECKSUM_KEY = "checksum_sha256"
MANIFEST_KEY = "pbseg_manifest"
CENTROIDS_KEY = "detection.centroids"
CLASSIFIER_PREFIX = "detection.classifier."
NETWORK_PREFIX = "network."
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")
_DETECTION_FIELDS = ("scale", "threshold", "metric", "method")  # the keys DetectionConfig types, in JSON order
DETECTION_METHODS = ("centroid", "classifier")


class ModelFileError(ValueError):
    """A model file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


@dataclass(frozen=True)
class DetectionConfig:
    """The manifest's joint-detection entry. ``method``: "classifier" (a ``JointClassifier`` on
    encoder statistics) or None / "centroid" (one embedding centroid per domain, older files).
    ``scale``: the features the detection data were computed with (``embedding.encoder_statistics``:
    "statistics:enc3+enc4"; ``embedding.volume_embedding``: a projection head such as "enc5", or
    "features:enc5"); None means the last projection scale. ``threshold``: distance beyond which a
    volume is out of distribution (None: no warning). ``metric``: the distance's name, for readers.
    ``extra``: keys this version does not know, kept so that re-saving a file keeps its manifest.

    The JSON is the flat object older versions wrote (absent fields are left out), so the checksum
    of an existing file still matches what ``to_json`` writes."""

    scale: str | None = None
    threshold: float | None = None
    metric: str | None = None
    method: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in DETECTION_METHODS:
            raise ValueError(f"detection method {self.method!r} is not one of {', '.join(DETECTION_METHODS)}")
        if self.scale is not None and not isinstance(self.scale, str):
            raise ValueError(f"detection scale {self.scale!r} is not a string")
        if self.threshold is not None and (
            isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float))
        ):
            raise ValueError(f"detection threshold {self.threshold!r} is not a number")
        if self.metric is not None and not isinstance(self.metric, str):
            raise ValueError(f"detection metric {self.metric!r} is not a string")
        clashes = sorted(set(self.extra) & set(_DETECTION_FIELDS))
        if clashes:
            raise ValueError(f"detection extra keys {clashes} are fields")

    def to_json(self) -> dict[str, Any]:
        known = {key: getattr(self, key) for key in _DETECTION_FIELDS if getattr(self, key) is not None}
        return {**known, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DetectionConfig:
        if not isinstance(data, dict):
            raise ValueError(f"detection {data!r} is not a JSON object")
        known = {key: data[key] for key in _DETECTION_FIELDS if key in data}
        return cls(**known, extra={key: value for key, value in data.items() if key not in _DETECTION_FIELDS})


@dataclass
class ModelManifest:
    """What a model file says about itself.

    ``joints``: joint key of each domain, in domain order. ``planes``: slicing plane per joint for
    near-isotropic volumes. ``detection``: how volumes are compared to the centroids
    (``DetectionConfig``). ``provenance``: free-form training facts (scheme, data, metrics, date,
    code version). ``quality``: the per-bone quality model's JSON (``pipeline.quality.QualityModel``;
    None: the file has none, and the conservative default applies). Written only when present, so
    older files keep their checksum."""

    name: str
    version: str
    architecture: NetworkConfig
    joints: list[str]
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    planes: dict[str, str] = field(default_factory=dict)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    provenance: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.quality is not None and not isinstance(self.quality, dict):
            raise ValueError(f"quality {self.quality!r} is not a JSON object")
        for joint in self.joints:
            self.planes.setdefault(joint, get_joint(joint).usual_plane)

    def to_json(self, checksum: str | None = None) -> dict[str, Any]:
        """The manifest as stored; without ``checksum``, the content that the checksum covers."""
        data = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture.to_json(),
            "joints": [{"key": j, "bones": [b.key for b in get_joint(j).bones]} for j in self.joints],
            "planes": self.planes,
            "preprocessing": self.preprocessing.to_json(),
            "detection": self.detection.to_json(),
            "provenance": self.provenance,
        }
        if self.quality is not None:
            data["quality"] = self.quality
        if checksum is not None:
            data[CHECKSUM_KEY] = checksum
        return data


@dataclass(frozen=True)
class JointClassifier:
    """Joint detection data of a "classifier" model file. A volume's features are the encoder
    statistics under every domain, concatenated in domain order: [F] = domains x per-domain.
    ``mean``, ``scale``: [F] standardization; ``weight`` [domains, F] and ``bias`` [domains]: the
    linear classifier on the standardized features (softmax = probability of each joint);
    ``reference``: [cases, F] the training cases' raw features, L2-normalized, from which a volume's
    novelty is measured (cosine distance to the nearest)."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    reference: torch.Tensor

    FIELDS = ("weight", "bias", "mean", "scale", "reference")

    def __post_init__(self) -> None:
        features = self.mean.shape[0]
        shapes = {
            "weight": (self.bias.shape[0], features),
            "scale": (features,),
            "reference": (self.reference.shape[0], features),
        }
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape or self.mean.ndim != 1 or self.bias.ndim != 1:
                raise ValueError(
                    f"detection classifier {name} has shape {tuple(getattr(self, name).shape)}, not {shape}"
                )

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            CLASSIFIER_PREFIX + name: getattr(self, name).detach().float().cpu().contiguous() for name in self.FIELDS
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> JointClassifier | None:
        """The classifier stored in a file's tensors, None when there is none."""
        names = [CLASSIFIER_PREFIX + name for name in cls.FIELDS]
        if not any(name in tensors for name in names):
            return None
        missing = [name for name in names if name not in tensors]
        if missing:
            raise ValueError(f"detection classifier tensors missing: {', '.join(missing)}")
        return cls(*(tensors[name].float() for name in names))


@dataclass
class LoadedModel:
    """A ready-to-run network (eval mode, CPU) with its manifest. Detection data (None when the
    file has none): ``classifier``, or, in older files, ``centroids`` [domains, dim], the embedding
    centroid of each domain. ``warnings``: reasons not to trust the file fully (an old format),
    repeated in every segmentation's report."""

    network: MultiDomainUNet
    manifest: ModelManifest
    centroids: torch.Tensor | None
    path: Path
    warnings: list[str] = field(default_factory=list)
    classifier: JointClassifier | None = None

    def domain_of(self, joint: str) -> int:
        try:
            return self.manifest.joints.index(joint)
        except ValueError:
            raise ValueError(
                f"{self.path}: the model has no {joint!r} domain (it knows {self.manifest.joints})"
            ) from None


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """The format-1 checksum: the tensors only."""
    return _hash_tensors(hashlib.sha256(), tensors).hexdigest()


def model_checksum(manifest: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """The format-2 checksum: the manifest as JSON (``checksum_sha256`` left out, keys sorted, no
    whitespace, so the way the JSON text was written does not matter, only its content) and then
    the tensors."""
    content = {key: value for key, value in manifest.items() if key != CHECKSUM_KEY}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(b"pbseg-model-2\n" + canonical.encode("ascii") + b"\n")
    return _hash_tensors(digest, tensors).hexdigest()


def _hash_tensors(digest: Any, tensors: dict[str, torch.Tensor]) -> Any:
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest


def save_model(
    path: str | Path,
    network: MultiDomainUNet,
    manifest: ModelManifest,
    centroids: torch.Tensor | None = None,
    classifier: JointClassifier | None = None,
) -> Path:
    """Write atomically (temporary file + rename): a crash never leaves a half-written model."""
    path = Path(path)
    tensors = {NETWORK_PREFIX + k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    if centroids is not None:
        tensors[CENTROIDS_KEY] = centroids.detach().float().cpu().contiguous()
    if classifier is not None:
        tensors.update(classifier.tensors())
    # Checksummed as a reader will parse it (tuples become lists, keys strings).
    content = json.loads(json.dumps(manifest.to_json()))
    content[CHECKSUM_KEY] = model_checksum(content, tensors)
    metadata = {"format": "pt", MANIFEST_KEY: json.dumps(content)}
    return save_safetensors_atomically(path, tensors, metadata)


def resave_model(loaded: LoadedModel, path: str | Path, manifest: ModelManifest | None = None) -> Path:
    """Write a loaded model again, with ``manifest`` (default: its own), its detection data kept."""
    return save_model(path, loaded.network, manifest or loaded.manifest, loaded.centroids, loaded.classifier)


def save_safetensors_atomically(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """A safetensors file written atomically: readers never see a half-written model."""
    from safetensors.torch import save_file

    with atomic_file(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The raw manifest (JSON dict) of a model file, after the format checks."""
    return _read(Path(path))[1]


def load_model(path: str | Path) -> LoadedModel:
    path = Path(path)
    tensors, raw = _read(path)
    warnings: list[str] = []
    if raw["format_version"] == LEGACY_FORMAT_VERSION:
        if raw.get(CHECKSUM_KEY) != tensors_checksum(tensors):
            raise ModelFileError(path, "checksum mismatch: the tensors were modified after the file was written")
        warnings.append(
            f"{path}: format-1 model file: its manifest (joints, preprocessing, out-of-distribution threshold) "
            "is not covered by the checksum, so an edit to it would go unnoticed; re-export the model, or check "
            "its manifest with `pbseg info MODEL` and re-save it with `pbseg info MODEL --upgrade NEW.safetensors`"
        )
    elif raw.get(CHECKSUM_KEY) != model_checksum(raw, tensors):
        raise ModelFileError(
            path, "checksum mismatch: the manifest or the tensors were modified after the file was written"
        )
    try:
        architecture = NetworkConfig.from_json(raw["architecture"])
        joints = [entry["key"] for entry in raw["joints"]]
        for entry in raw["joints"]:
            expected = [b.key for b in get_joint(entry["key"]).bones]
            if entry["bones"] != expected:
                raise ValueError(f"joint {entry['key']!r} lists bones {entry['bones']}, the catalog has {expected}")
        manifest = ModelManifest(
            name=raw["name"],
            version=raw["version"],
            architecture=architecture,
            joints=joints,
            preprocessing=PreprocessingConfig.from_json(raw["preprocessing"]),
            planes=dict(raw["planes"]),
            detection=DetectionConfig.from_json(raw.get("detection", {})),
            provenance=dict(raw.get("provenance", {})),
            quality=raw.get("quality"),
        )
        classifier = JointClassifier.from_tensors(tensors)
        if (manifest.detection.method == "classifier") != (classifier is not None):
            raise ValueError(f"detection method {manifest.detection.method!r} does not match the detection tensors")
        if classifier is not None and classifier.bias.shape[0] != len(joints):
            raise ValueError(f"the joint classifier has {classifier.bias.shape[0]} outputs for {len(joints)} joints")
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(path, f"invalid manifest ({error})") from error
    if len(joints) != architecture.num_domains:
        raise ModelFileError(path, f"manifest lists {len(joints)} joints for {architecture.num_domains} domains")
    network = MultiDomainUNet(architecture)
    state = {k[len(NETWORK_PREFIX) :]: v for k, v in tensors.items() if k.startswith(NETWORK_PREFIX)}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise ModelFileError(path, f"the tensors do not match the manifest's architecture ({first_line} ...)") from None
    network.eval()
    return LoadedModel(network, manifest, tensors.get(CENTROIDS_KEY), path, warnings, classifier)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    if not path.is_file():
        raise ModelFileError(path, "model file not found")
    with path.open("rb") as stream:
        head = stream.read(8)
    if path.suffix.lower() in _PICKLE_SUFFIXES or head[:2] in (
        b"PK",
        b"\x80\x02",
        b"\x80\x03",
        b"\x80\x04",
        b"\x80\x05",
    ):
        raise ModelFileError(
            path,
            "this is a pickled PyTorch file; model files must be .safetensors because unpickling can run "
            "arbitrary code (convert it with safetensors.torch.save_file)",
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:
        raise ModelFileError(path, f"not a readable safetensors file, truncated or corrupt ({error})") from None
    if MANIFEST_KEY not in metadata:
        raise ModelFileError(path, "safetensors file without a PediatricBoneSeg manifest")
    try:
        raw = json.loads(metadata[MANIFEST_KEY])
    except json.JSONDecodeError as error:
        raise ModelFileError(path, f"manifest is not valid JSON ({error})") from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version not in (LEGACY_FORMAT_VERSION, FORMAT_VERSION) or isinstance(version, bool):
        raise ModelFileError(
            path,
            f"model format version {version} is not supported (this PediatricBoneSeg reads "
            f"{LEGACY_FORMAT_VERSION} and {FORMAT_VERSION})",
        )
    return tensors, raw
