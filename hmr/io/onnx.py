"""ONNX files written by hmr: export a torch module with a dynamic batch axis and string metadata, open them in
onnxruntime, and refuse files that are not ours with one line naming the file (docs/models.md, "ONNX export")."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from hmr.io.atomic import publish

FORMAT_KEY = "hmr.format"  # metadata key naming what the file holds: "hmr-network" or "hmr-body-model"
FORMAT_VERSION = "1"
OPSET = 18
# Weights above this go to ``FILE.onnx.data`` beside the file (protobuf holds at most 2 GB; torch's own limit).
EXTERNAL_DATA_BYTES = 1536 << 20


def export_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | os.PathLike, input_names: list[str],
                output_names: list[str], kind: str, metadata: dict[str, str]) -> Path:  # fmt: skip
    """Export ``module`` (eval mode, traced at the example ``inputs``, whose first axis becomes the dynamic
    ``batch``) to ``path``, with ``metadata`` plus ``hmr.format`` = ``kind`` and ``hmr.format_version`` in the
    model's ``metadata_props``. Checked with ``onnx.checker``; written atomically (the weights' ``.data`` file,
    when there is one, is moved in first)."""
    import onnx

    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: ONNX files are named .onnx")
    batch = torch.export.Dim("batch")
    meta = {FORMAT_KEY: kind, "hmr.format_version": FORMAT_VERSION, **metadata}
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            module.eval(), inputs, input_names=input_names, output_names=output_names, opset_version=OPSET,
            dynamo=True, dynamic_shapes=tuple({0: batch} for _ in inputs), verbose=False,
        )  # fmt: skip
    program.model.metadata_props.update(meta)
    size = sum(v.const_value.nbytes for v in program.model.graph.initializers.values() if v.const_value is not None)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        tmp, data = folder / path.name, folder / f"{path.name}.data"
        program.save(tmp, external_data=size > EXTERNAL_DATA_BYTES)
        onnx.checker.check_model(str(tmp))  # by path: works for external data and files over 2 GB
        if data.exists():
            publish(data, path.with_name(data.name))
        publish(tmp, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path


@contextlib.contextmanager
def _quiet_exporter():
    # Noise about torch's own internals: a warning per torchvision op it cannot register (hmr uses none), a
    # deprecation inside torch.export, and the shared "batch" axis of several inputs (which is what we want).
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)
            warnings.filterwarnings("ignore", ".*axis name: batch will not be used.*", UserWarning)
            yield
    finally:
        log.setLevel(level)


def open_session(path: str | os.PathLike, kind: str, threads: int | None = None):
    """(onnxruntime session on the CPU, metadata) of an hmr ONNX file holding ``kind``. ``threads``: intra-op
    threads (default ``torch.get_num_threads()``, so the session uses no more cores than torch is allowed)."""
    import onnxruntime as ort

    path = _existing(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for every unreadable file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a readable ONNX file ({first})") from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    check_kind(path, meta, kind)
    return session, meta


def max_differences(path: str | os.PathLike, kind: str, feeds: dict[str, torch.Tensor],
                    expected: dict[str, torch.Tensor]) -> dict[str, float]:  # fmt: skip
    """Largest |onnxruntime - expected| per output of the hmr ONNX file at ``path`` run on ``feeds``."""
    session, _ = open_session(path, kind)
    def numpy(t: torch.Tensor):
        return t.detach().cpu().float().numpy()

    got = session.run(list(expected), {k: numpy(v) for k, v in feeds.items()})
    return {k: float(abs(g - numpy(e)).max()) for (k, e), g in zip(expected.items(), got, strict=True)}


def read_metadata(path: str | os.PathLike, kind: str | None = None) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (weights in external data are not read), checked to be an hmr file
    (of ``kind`` when given)."""
    import onnx

    path = _existing(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's DecodeError and friends
        raise ValueError(f"{path}: not a readable ONNX file ({type(err).__name__})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    check_kind(path, meta, kind)
    return meta


def check_kind(path: Path, meta: dict[str, str], kind: str | None) -> None:
    found = meta.get(FORMAT_KEY)
    if found is None:
        raise ValueError(f"{path}: an ONNX file not made by hmr (no {FORMAT_KEY} in its metadata); export one with "
                         "hmr model export-onnx or hmr body export-onnx")  # fmt: skip
    if kind is not None and found != kind:
        raise ValueError(f"{path}: holds {found!r}, not {kind!r}")
    if meta.get("hmr.format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: hmr ONNX format version {meta.get('hmr.format_version')!r}; this hmr reads "
                         f"version {FORMAT_VERSION}: export it again")  # fmt: skip


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give the .onnx file inside it")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    return path
