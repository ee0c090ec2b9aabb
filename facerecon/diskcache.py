"""Arrays that take long to build but depend only on the head model and the code, kept on disk.

The packaged head model unpacked to float32, and what the bake and the GLB need from it (the atlas
layout at each texture size, the mirror map, the morph targets' position deltas) cost a process
about 0.8 s of CPU to build, which every batch worker paid at its start and on its first photo.
Built once, they are kept as ``.npz`` files in ``assets.cache_dir()`` and later processes load
them (about 0.1 s; 60 MB for the model and a 1024 atlas).

An entry's file is named by SHA-1 hashes of everything its arrays depend on: the source of the
core modules (``facerecon/*.py``, ``facerecon/render/*.py``) and the numpy, scipy and numba
versions (the code), then its name and what the caller names (the head model's arrays, the packed
model file's bytes, a texture size). A change to any of them makes a new entry; writing one removes
the entries of its name made by other code (the folder may be deleted at any time). Files are
written atomically; one that cannot be read is rebuilt, and where the folder cannot be written
every process builds the arrays itself. The arrays are the same either way (dtypes included).
"""
from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .assets import cache_dir

if TYPE_CHECKING:
    from .model import HeadModel

Arrays = dict[str, np.ndarray]
# The model's arrays the cached builds read (the identity basis is not among them).
_MODEL_FIELDS = ("neutral", "expression_basis", "landmarks68", "triangles", "triangles_uv", "uv", "triangle_part")


def cached_arrays(name: str, build: Callable[[], Arrays], *depends: object) -> Arrays:
    """``build()``'s arrays, from the cache folder when an earlier process built them from the
    same ``depends`` (head models, bytes, or values such as a texture size), code and libraries."""
    folder = cache_dir()
    if folder is None:
        return build()
    code = _code_key().hex()[:16]
    path = folder / f"{name}-{code}-{_key(name, depends)}.npz"
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        pass   # absent, or unreadable (a disk that filled up mid-write): build it again
    arrays = build()
    _store(path, arrays, name, code)
    return arrays


def _store(path: Path, arrays: Arrays, name: str, code: str) -> None:
    from .export import atomic_path   # imported here: export imports the modules that use this one
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            np.savez(temporary, **arrays)
        # Entries of this name made by other code are never read again: each edit of the core would
        # otherwise leave another set (about 90 MB) behind.
        for old in path.parent.glob(f"{name}-*.npz"):
            if old.name.split("-")[1] != code:
                old.unlink(missing_ok=True)
    except OSError:
        pass   # a read-only or full disk: the caller has its arrays, the next process builds them too


def _key(name: str, depends: tuple) -> str:
    from .model import HeadModel   # imported here: the model module uses this one
    digest = hashlib.sha1(name.encode())
    for item in depends:
        digest.update(_model_key(item) if isinstance(item, HeadModel)
                      else item if isinstance(item, bytes) else repr(item).encode())
    return digest.hexdigest()


def _model_key(model: HeadModel) -> bytes:
    key = model.extra.get("diskcache_key")
    if key is None:
        digest = hashlib.sha1()
        for field in _MODEL_FIELDS:
            array = np.ascontiguousarray(getattr(model, field))
            digest.update(f"{field} {array.dtype.str} {array.shape}".encode())
            digest.update(array.data)
        key = model.extra["diskcache_key"] = digest.digest()
    return key


@lru_cache(maxsize=1)
def _code_key() -> bytes:
    package = Path(__file__).resolve().parent
    digest = hashlib.sha1()
    for path in sorted([*package.glob("*.py"), *(package / "render").glob("*.py")]):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    for library in ("numpy", "scipy", "numba"):
        # The libraries' version files, found without importing them (scipy's import alone takes 0.2 s).
        spec = importlib.util.find_spec(library)
        folder = Path(spec.origin).parent if spec is not None and spec.origin else None
        for candidate in ("version.py", "_version.py"):
            if folder is not None and (folder / candidate).is_file():
                digest.update(library.encode())
                digest.update((folder / candidate).read_bytes())
    return digest.digest()
