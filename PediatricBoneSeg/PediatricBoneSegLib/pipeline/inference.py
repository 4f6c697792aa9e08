"""The inference pipeline shared by the CLI and Slicer: an in-memory volume in, a
label volume with the input's exact geometry out. Reading and writing files is not done here.

canonical slicing -> normalization -> joint choice -> batched network inference -> logits back to
the slice grid -> argmax and its softmax probability per batch -> original array order -> anatomical
post-processing -> per-bone quality (``quality``). Memory is bounded by the slice batch: the float
probabilities of the whole volume never exist, only the uint8 argmax and its uint8 confidence.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..catalog import NUM_UNION_CLASSES, get_joint
from ..image_checks import check_volume
from ..labelmaps import tight_boxes
from ..network.modelfile import LoadedModel, ModelFileError, load_model
from ..options import SegmentOptions
from ..progress import CancelToken, ProgressCallback, check_cancelled, sub_progress
from ..resources import bundled_model_path
from .acceleration import (
    REDUCED_PRECISIONS,
    auto_precision,
    batch_limit,
    device_settings,
    prepare_network,
    slices_per_pass,
    to_device,
)
from .components import bone_components
from .detection import choose_joint
from .postprocess import clean_labels, plausibility_warnings
from .preprocessing import JointSlicings, SlicedVolume
from .quality import (
    DEFAULT_QUALITY,
    NetworkEvidence,
    QualityFeaturesError,
    QualityModel,
    assess_bones,
    quality_warnings,
)
from .results import InferenceResult

_model_cache: dict[tuple[str, int, int], LoadedModel] = {}


def get_model(path: str | Path | None = None) -> LoadedModel:
    """Load a model file (the bundled model when None), reusing the last one loaded while the file
    is unchanged: repeated runs in Slicer or a batch do not reload it."""
    path = Path(path) if path is not None else bundled_model_path()
    if path.is_dir():
        raise ModelFileError(path, "is a folder; give the model file (.safetensors) inside it")
    if not path.is_file():
        if path == bundled_model_path():
            raise FileNotFoundError(f"{path}: the bundled model is missing from this installation; give a model file")
        raise FileNotFoundError(f"{path}: model file not found")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _model_cache:
        _model_cache.clear()
        _model_cache[key] = load_model(path)
    return _model_cache[key]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    return auto_precision(device) if precision == "auto" else precision


def segment_image(
    image: sitk.Image,
    options: SegmentOptions,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    model: LoadedModel | None = None,
) -> InferenceResult:
    """Segment the bones of one 3D scalar volume. ``model``: an in-memory model (else
    ``options.model_path`` or the bundled model is loaded). Raises ``Cancelled`` when ``cancel``
    is set (checked between stages and slice batches), ValueError for invalid options or input."""
    if not isinstance(image, sitk.Image):
        raise TypeError(
            f"segment_image needs a SimpleITK.Image, got {type(image).__name__} (a NumPy array has no geometry: "
            "build the image with SimpleITK.GetImageFromArray and set its spacing, origin and direction)"
        )
    if not isinstance(options, SegmentOptions):
        raise TypeError(f"segment_image needs SegmentOptions, got {type(options).__name__}")
    problems = options.problems()
    if problems:
        raise ValueError("invalid options: " + "; ".join(problems))
    check_volume(image, "input volume")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    loaded = model if model is not None else get_model(options.model_path)
    scoring = quality_model(loaded)
    timings["load_model"] = time.perf_counter() - start
    device = resolve_device(options.device)
    precision = resolve_precision(options.precision, device)
    network = loaded.network
    was_training = network.training
    network.to(device).eval()
    try:
        report = sub_progress(progress, 0.0, 0.1)
        report(0.0, "preparing slices")
        start = time.perf_counter()
        sliced_for = model_slicings(loaded, image)

        timings["preprocess"] = time.perf_counter() - start
        check_cancelled(cancel)
        report(0.5, "detecting the joint" if options.joint == "auto" else "checking the joint")
        start = time.perf_counter()
        with device_settings(device):
            choice = choose_joint(loaded, options.joint.lower(), sliced_for, device)
        sliced = sliced_for(choice.joint)
        timings["detect_joint"] = time.perf_counter() - start
        check_cancelled(cancel)

        start = time.perf_counter()
        network_progress = sub_progress(progress, 0.1, 0.9)
        slice_labels, slice_confidence = predict_slices(
            loaded, sliced, choice.joint, device, precision, options.batch_size, network_progress, cancel
        )
        evidence = NetworkEvidence(sliced.restore(slice_labels), sliced.restore(slice_confidence))
        # Memory: the float volume is not needed after the network stage.
        sliced_for.release()
        del sliced, slice_labels, slice_confidence
        timings["network"] = time.perf_counter() - start
    finally:
        network.train(was_training)

    check_cancelled(cancel)
    report = sub_progress(progress, 0.9, 1.0)
    report(0.0, "anatomical post-processing" if options.postprocess else "checking the result")
    start = time.perf_counter()
    spacing_zyx = tuple(image.GetSpacing())[::-1]
    # One connected-component pass per bone, inside its box: the post-processing keeps pieces by
    # it, the quality measures the fragmentation by it.
    components = bone_components(evidence.labels, get_joint(choice.joint).num_classes)
    predicted_boxes = [None if parts is None else parts.box for parts in components]
    if options.postprocess:
        labels, warnings = clean_labels(evidence.labels, spacing_zyx, choice.joint, image.GetDirection(), components)
    else:
        labels = evidence.labels
        warnings = plausibility_warnings(labels, spacing_zyx, choice.joint, image.GetDirection(), predicted_boxes)
    output = sitk.GetImageFromArray(labels.astype(np.uint8, copy=False))
    output.CopyInformation(image)
    boxes = tight_boxes(labels, predicted_boxes)
    timings["postprocess"] = time.perf_counter() - start
    start = time.perf_counter()
    threshold = loaded.manifest.detection.threshold
    distance = (choice.novelty or 0.0) / threshold if threshold else 0.0
    quality = assess_bones(evidence.labels, labels, evidence, spacing_zyx, choice.joint, scoring, distance, components)
    del evidence, labels, components
    timings["quality"] = time.perf_counter() - start
    report(1.0, "done")
    return InferenceResult(
        labels=output,
        joint=choice.joint,
        auto_detected=choice.auto_detected,
        joint_confidence=choice.confidence,
        warnings=loaded.warnings + choice.warnings + warnings + quality_warnings(quality, choice.joint),
        timings=timings,
        model_name=loaded.manifest.name,
        model_version=loaded.manifest.version,
        joint_distances=choice.distances,
        joint_probabilities=choice.probabilities,
        joint_novelty=choice.novelty,
        device=str(device),
        precision=precision,
        quality=quality,
        boxes=boxes,
    )


def model_slicings(loaded: LoadedModel, image: sitk.Image) -> JointSlicings:
    """``image`` as each of the model's domains sees it (joint detection tries several)."""
    planes = {
        joint: loaded.manifest.planes.get(joint, get_joint(joint).usual_plane) for joint in loaded.manifest.joints
    }
    array = sitk.GetArrayViewFromImage(image)
    return JointSlicings(array, image.GetSpacing(), image.GetDirection(), loaded.manifest.preprocessing, planes)


def quality_model(loaded: LoadedModel) -> QualityModel:
    """The model file's calibrated quality model, or the conservative default when it has none,
    or one fitted on another version's features (then the model's warnings say so, once)."""
    if loaded.manifest.quality is None:
        return DEFAULT_QUALITY
    try:
        return QualityModel.from_json(loaded.manifest.quality)
    except QualityFeaturesError as error:
        warning = (
            f"{loaded.path}: its per-bone quality model was calibrated on the features of another version "
            f"({error}): the conservative default quality model is used; recalibrate it with "
            "python -m pbseg_training.calibrate_quality"
        )
        if warning not in loaded.warnings:
            loaded.warnings.append(warning)
        return DEFAULT_QUALITY
    except ValueError as error:
        raise ModelFileError(loaded.path, str(error)) from None


def predict_slices(
    loaded: LoadedModel,
    sliced: SlicedVolume,
    joint: str,
    device: torch.device,
    precision: str,
    batch_size: int,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The network stage: labels [N, H, W] uint8 of the N slices of ``sliced`` (slice grid) and
    their confidence [N, H, W] uint8 (the argmax's softmax probability x 255).
    Runs the fast path (``acceleration.prepare_network``: a BN-folded channels-last copy for this
    domain, one thread per free physical core, ``precision``'s autocast), ``batch_size`` slices at
    a time or fewer if memory is short (on a CUDA GPU: the whole volume at once when it fits,
    ``acceleration.slices_per_pass``; inputs through pinned memory). Logits of one batch at a time
    are resampled to the slice grid and reduced to their argmax and its probability."""
    domain = loaded.domain_of(joint)
    union = _union_lookup(loaded, joint, domain)
    count, height, width = sliced.slices.shape
    labels = np.empty((count, height, width), dtype=np.uint8)
    confidence = np.empty((count, height, width), dtype=np.uint8)
    network = prepare_network(loaded.network, domain, device)
    output_bytes = 2 * 4 * network.config.classes_per_domain[network.config.head_of(domain)] * height * width
    dtype = REDUCED_PRECISIONS.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    with torch.inference_mode(), autocast, device_settings(device):
        limit = batch_limit(network, domain, sliced.resampler.size, output_bytes, device)
        batch_size = slices_per_pass(device, batch_size, count, limit)
        for begin in range(0, count, batch_size):
            check_cancelled(cancel)
            stop = min(begin + batch_size, count)
            batch = to_device(sliced.network_input(begin, stop), device)
            logits = network(batch, domain).logits[domain]
            if union is not None:
                logits = logits[:, union]
            logits = sliced.resampler.from_network(logits.float())
            top, argmax = logits.max(dim=1)
            probability = 1.0 / torch.exp(logits - top[:, None]).sum(dim=1)  # softmax of the argmax
            labels[begin:stop] = argmax.to(torch.uint8).cpu().numpy()
            confidence[begin:stop] = (probability * 255).round_().to(torch.uint8).cpu().numpy()
            if progress is not None:
                progress(stop / count, f"segmenting slice {stop}/{count}")
    return labels, confidence


def _union_lookup(loaded: LoadedModel, joint: str, domain: int) -> torch.Tensor | None:
    """Channels of a shared (union) head that belong to ``joint``, in its label order; None when
    the domain has its own head."""
    architecture = loaded.manifest.architecture
    classes = architecture.classes_per_domain[architecture.head_of(domain)]
    spec = get_joint(joint)
    if architecture.shared and classes == NUM_UNION_CLASSES:
        return torch.tensor(spec.to_union())
    if classes == spec.num_classes:
        return None
    raise ValueError(f"{loaded.path}: the {joint} head has {classes} classes, the {joint} has {spec.num_classes}")
