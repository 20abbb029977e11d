"""Base classes of every rampcal step and pipeline (stpipe).

They open inputs with :mod:`rampcal.datamodels`, resolve reference files through
:mod:`rampcal.reference` (so ``override_<reftype>`` works and nothing touches the
network unless CRDS is configured), record ``meta.cal_step.<step>`` and
``meta.ref_file.<reftype>``, and save outputs atomically with the spec's suffixes.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from stpipe import Pipeline, Step
from stpipe.datamodel import AbstractDataModel

from rampcal import __version__
from rampcal._startup import preload_asdf_extensions
from rampcal.datamodels import open_model, save_atomic, strip_suffix
from rampcal.errors import InputFileError, ReferenceFileError
from rampcal.reference import DEFAULT_PREFIX, cache_dir, crds_configured, exposure_key, resolve

log = logging.getLogger(__name__)

preload_asdf_extensions()  # every step reads or writes Roman ASDF files

__all__ = ["RampcalPipeline", "RampcalStep", "load_reference"]


class RampcalStep(Step):
    """Base class of rampcal steps.

    Subclasses set ``class_alias`` to their ``meta.cal_step`` key (so stpipe's
    ``skip`` records SKIPPED there), ``reference_file_types``, a ``spec`` with their
    parameters and default ``suffix``, and implement ``process``.
    """

    spec = """
    output_ext = string(default='.asdf')  # Default type of output
    """

    #: ``meta.cal_step`` key this step records (defaults to ``class_alias``).
    cal_step_key: str | None = None

    # ---- stpipe hooks -------------------------------------------------------------------
    @classmethod
    def _datamodels_open(cls, init, **kwargs):
        # load arrays now: the kernels need real numpy arrays, updated in place, and a
        # lazily read block fails once stpipe has closed the input file
        kwargs.setdefault("lazy_load", False)
        return open_model(init, **kwargs)

    @classmethod
    def _get_crds_parameters(cls, dataset):
        # stpipe opens the whole input here only to build CRDS keywords: without CRDS
        # nothing uses them, and with it the header is enough (no arrays read)
        if not crds_configured():
            return {}, "roman"
        if isinstance(dataset, (str, os.PathLike)) and not os.fspath(dataset).endswith(".json"):
            with open_model(dataset, lazy_load=True) as model:
                return model.get_crds_parameters(), model.crds_observatory
        return super()._get_crds_parameters(dataset)

    @classmethod
    def get_config_from_reference(cls, dataset, disable=None, crds_observatory=None):
        """Step parameters from CRDS ``pars-*`` files: only when CRDS is configured."""
        if not crds_configured():
            return cls._empty_config()
        try:
            return super().get_config_from_reference(
                dataset, disable=disable, crds_observatory=crds_observatory
            )
        except Exception as exc:  # unreachable server: parameters stay the defaults
            log.warning("CRDS parameter lookup failed (%s); using default parameters", exc)
            return cls._empty_config()

    @staticmethod
    def remove_suffix(name):
        """Strip any known product suffix (``r1_uncal`` → ``r1``) so outputs replace it."""
        return strip_suffix(name), "_"

    def get_reference_file(self, input_file, reference_file_type):
        """Reference file path: override > CRDS (if configured) > built-in default."""
        override = self.get_ref_override(reference_file_type)
        if override is not None:
            if not isinstance(override, AbstractDataModel):
                text = str(override).strip()
                if text and text != "N/A" and not Path(text).is_file():
                    raise ReferenceFileError(
                        f"override_{reference_file_type}: no such reference file", path=text
                    )
            return super().get_reference_file(input_file, reference_file_type)
        path = resolve(input_file, reference_file_type)
        self._reference_files_used.append((reference_file_type, _provenance(path)))
        return path

    def finalize_result(self, result, reference_files_used):
        """Record reference files used and the software that made the product."""
        meta = getattr(result, "meta", None)
        if meta is None:
            return
        try:
            meta.calibration_software_name = "rampcal"
            meta.calibration_software_version = __version__
        except Exception:
            pass
        if reference_files_used and "ref_file" in meta:
            for reftype, name in reference_files_used:
                meta.ref_file[reftype] = str(name)

    def save_model(self, model, suffix=None, idx=None, output_file=None, force=False, **components):
        """Save with the step's naming scheme, atomically, never over the input file."""
        if output_file is None or output_file == "":
            output_file = self.output_file
        if not force and not self.save_results and not output_file:
            return None
        if not isinstance(model, AbstractDataModel):
            return super().save_model(
                model, suffix=suffix, idx=idx, output_file=output_file, force=force, **components
            )
        if self.output_use_model or (output_file is None and not self.search_output_file):
            output_file = model.meta.filename
            idx = None
        path = Path(
            self.make_output_path(basepath=output_file, suffix=suffix, idx=idx, **components)
        )
        source = self.search_attr("_input_filename")
        if source and _same_file(path, source, self.search_attr("input_dir")):
            raise InputFileError(
                f"output {path.name} would overwrite the input file; "
                "choose another --output_file or --suffix",
                path=source,
            )
        save_atomic(model, path)
        log.info("Saved model in %s", path)
        return str(path)

    # ---- helpers for subclasses ----------------------------------------------------------
    def record_step(self, model, status: str = "COMPLETE", *, reason: str | None = None) -> None:
        """Set ``meta.cal_step.<key>`` to ``status``, logging the reason when skipped."""
        key = self.cal_step_key or self.class_alias
        if key and "cal_step" in model.meta:
            model.meta.cal_step[key] = status
        if status != "COMPLETE":
            log.info("%s %s%s", key, status, f": {reason}" if reason else "")

    def reference_model(self, model, reftype: str, *, expect=None, check_shape: bool = True):
        """Resolve and open the ``reftype`` reference file for ``model`` (None if N/A)."""
        path = self.get_reference_file(model, reftype)
        return load_reference(path, model, reftype, expect=expect, check_shape=check_shape)


class RampcalPipeline(Pipeline, RampcalStep):
    """Base class of rampcal pipelines: no CRDS prefetch unless CRDS is configured."""

    def _precache_references(self, input_file):
        if crds_configured():
            try:
                super()._precache_references(input_file)
            except Exception as exc:
                log.warning("CRDS prefetch failed (%s); continuing", exc)


def load_reference(path, model, reftype: str, *, expect=None, check_shape: bool = True):
    """Open a resolved reference file and check it fits the exposure.

    Returns None for ``"N/A"``. A model passed as override is returned as is (after checks).

    Raises
    ------
    ReferenceFileError
        Unreadable file, wrong model type, other detector, or wrong array shape.
    """
    if path is None or (isinstance(path, str) and path.strip() in ("", "N/A")):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = open_model(path)
    except InputFileError as exc:
        raise ReferenceFileError(f"{reftype} reference file: {exc}") from None
    name = path if isinstance(path, (str, os.PathLike)) else reftype
    if expect is not None and not isinstance(ref, expect):
        raise ReferenceFileError(
            f"is a {type(ref).__name__}, not a {reftype.upper()} reference file", path=name
        )
    detector, _, shape = exposure_key(model)
    ref_det = _get(ref, "meta.instrument.detector")
    if ref_det is not None and str(ref_det).upper() != detector:
        raise ReferenceFileError(
            f"{reftype.upper()} reference file is for detector {ref_det}, "
            f"the exposure is {detector}",
            path=name,
        )
    if check_shape:
        for key in ("data", "dq", "coeffs", "dark_slope"):
            arr = ref.get(key) if hasattr(ref, "get") else None
            has_plane = arr is not None and hasattr(arr, "shape") and len(arr.shape) >= 2
            if has_plane and tuple(arr.shape[-2:]) != tuple(shape):
                raise ReferenceFileError(
                    f"{reftype.upper()} reference array '{key}' has shape "
                    f"{tuple(arr.shape[-2:])}, the exposure needs {tuple(shape)}",
                    path=name,
                )
    return ref


def _get(model, dotted: str):
    node = model
    for part in dotted.split("."):
        try:
            node = (
                node[part] if hasattr(node, "__getitem__") and part in node else getattr(node, part)
            )
        except Exception:
            return None
    return node


def _provenance(path: str) -> str:
    if path == "N/A":
        return "N/A"
    p = Path(path)
    try:
        if p.parent.resolve() == cache_dir().resolve():
            return DEFAULT_PREFIX + p.name
    except OSError:
        pass
    return "crds://" + p.name


def _same_file(output: Path, source: str, input_dir: str | None) -> bool:
    src = Path(source)
    if not src.is_absolute() and input_dir:
        src = Path(input_dir) / src
    try:
        return output.resolve() == src.resolve()
    except OSError:
        return False
