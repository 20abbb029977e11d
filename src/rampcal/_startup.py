"""Load roman_datamodels and asdf's extensions once, with the C YAML parser.

asdf reads ~60 extension manifests and roman_datamodels its schemas with
``yaml.safe_load``, PyYAML's pure-Python parser: ~0.75 s of every process's start.
The same documents parse identically with libyaml's ``CSafeLoader``, so while they
load (and only then) ``yaml.safe_load`` is pointed at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["c_yaml_loader", "preload_asdf_extensions"]

_loaded = False


@contextmanager
def c_yaml_loader() -> Iterator[None]:
    """Within the block, ``yaml.safe_load`` uses libyaml (no-op without libyaml)."""
    import yaml

    if not getattr(yaml, "__with_libyaml__", False):
        yield
        return
    original = yaml.safe_load

    def safe_load(stream):
        return yaml.load(stream, Loader=yaml.CSafeLoader)

    yaml.safe_load = safe_load
    try:
        yield
    finally:
        yaml.safe_load = original


def preload_asdf_extensions() -> None:
    """Import roman_datamodels and build asdf's extension list (once per process)."""
    global _loaded
    if _loaded:
        return
    import asdf

    with c_yaml_loader():
        import roman_datamodels.datamodels  # noqa: F401

        _ = asdf.get_config().extensions  # parses every registered manifest
    _loaded = True
