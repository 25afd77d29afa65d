"""Content-addressed embedding cache: chunk files of (image sha256, embedding) rows.

Layout under ``cache_dir``::

    <namespace>/                    sha256 of the model identity, precision and decode policy
        CACHEDIR.TAG                the marker of a folder the cache made (cachedir spec + cliplab line)
        model.txt                   that text, for people and ``cliplab cache info``
        chunk-<random>.safetensors  "hashes" uint8 (n, 32), "embeddings" float32 (n, d);
                                    metadata: format, rows, dim, sha256 of both tensors' bytes

A chunk is written to a temporary name and ``os.replace``d, so a chunk is either complete or absent;
several processes may add chunks to one namespace at once. There is no index file: the index is
rebuilt by scanning the chunk files each time a cache is opened. A chunk whose header, shapes or
checksum are wrong is reported in a ``CacheWarning`` naming the file, deleted, and its rows count as
misses (so they are recomputed).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cliplab.errors import InputError, warn
from cliplab.files import atomic_write

CHUNK_FORMAT = "cliplab.embedding-chunk"
CHUNK_VERSION = "1"
HASH_BYTES = 32
STALE_TMP_SECONDS = 24 * 3600
# The Cache Directory Tagging Specification (https://bford.info/cachedir/): backup tools skip a folder
# holding this file; the second line makes it cliplab's own, so no other tool's cache is taken for one.
MARKER = "CACHEDIR.TAG"
MARKER_TEXT = "Signature: 8a477f597d28d172789f06886806bc55\n# cliplab embedding cache namespace; see cliplab cache info\n"
LABEL = "model.txt"
_OWN_NAME = r"(?:CACHEDIR\.TAG|model\.txt|chunk-[0-9a-f]{32}\.safetensors)"
# what this module writes, and the temporary names cliplab.files.atomic_target gives them meanwhile
_OWN_FILE = re.compile(rf"{_OWN_NAME}|\.{_OWN_NAME}\.[A-Za-z0-9_]{{8}}\.tmp")


class CacheWarning(UserWarning):
    """Something in the embedding cache was damaged and has been dealt with."""


def namespace_key(identity: str, precision: str, decode: str = "") -> tuple[str, str]:
    """(folder name, description) for one model: the description names its identity, precision
    and decode policy (one per line); the folder name is its sha256."""
    text = f"{identity}\nprecision={precision}" + (f"\ndecode={decode}" if decode else "")
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), text


def content_hash(data: bytes) -> bytes:
    """The cache key of an image: sha256 of its encoded bytes (32 raw bytes)."""
    return hashlib.sha256(data).digest()


def _checksum(hashes: np.ndarray, embeddings: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(hashes).tobytes())
    h.update(np.ascontiguousarray(embeddings).tobytes())
    return h.hexdigest()


class ChunkCache:
    """The chunk files of one namespace. ``get_many`` reads embeddings; ``put`` adds a chunk."""

    def __init__(self, root: str | os.PathLike, namespace: str, dim: int | None = None, description: str = ""):
        self.root = Path(root)
        self.dir = self.root / namespace
        self.dim = dim
        self.dir.mkdir(parents=True, exist_ok=True)
        if not is_namespace_folder(self.dir):
            atomic_write(self.dir / MARKER, MARKER_TEXT)
        if description:
            label = self.dir / LABEL
            if not label.exists():
                atomic_write(label, description + "\n")
        self._index: dict[bytes, str] = {}  # content hash -> chunk file name
        self._rows: dict[str, int] = {}  # chunk file name -> rows
        self.discarded: list[Path] = []
        self.scan()

    # --- index --------------------------------------------------------------------------------------
    def scan(self) -> None:
        """Rebuild the index from the chunk files on disk (headers and hash lists only)."""
        self._index.clear()
        self._rows.clear()
        now = time.time()
        for path in sorted(self.dir.iterdir()):
            name = path.name
            if name.startswith(".") and name.endswith(".tmp"):  # left by a killed writer
                _remove_if_stale(path, now)
                continue
            if not (name.startswith("chunk-") and name.endswith(".safetensors")):
                continue
            try:
                hashes, _ = self._read(path, with_embeddings=False)
            except FileNotFoundError:
                continue  # removed by another process meanwhile
            except ChunkError as e:
                self._discard(path, str(e))
                continue
            for h in hashes:
                self._index.setdefault(bytes(h), name)
            self._rows[name] = len(hashes)

    def __contains__(self, key: bytes) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def chunk_files(self) -> list[Path]:
        return [self.dir / name for name in sorted(self._rows)]

    # --- reading --------------------------------------------------------------------------------------
    def get_many(self, keys: Iterable[bytes], _retry: bool = True) -> dict[bytes, np.ndarray]:
        """Embeddings for those ``keys`` that are cached, read from their chunks and checksum-verified.

        A chunk that fails verification is reported, deleted and dropped from the index: its keys are
        simply absent from the result.
        """
        by_chunk: dict[str, list[bytes]] = {}
        for key in set(keys):
            name = self._index.get(key)
            if name is not None:
                by_chunk.setdefault(name, []).append(key)
        found: dict[bytes, np.ndarray] = {}
        vanished: list[bytes] = []
        for name, wanted in by_chunk.items():
            path = self.dir / name
            try:
                hashes, embeddings = self._read(path, with_embeddings=True)
            except FileNotFoundError:  # merged into another chunk by a concurrent compact()
                self._forget(name)
                vanished.extend(wanted)
                continue
            except ChunkError as e:
                self._discard(path, str(e))
                continue
            row_of = {bytes(h): i for i, h in enumerate(hashes)}
            for key in wanted:
                found[key] = embeddings[row_of[key]]
        if vanished and _retry:
            self.scan()
            found.update(self.get_many(vanished, _retry=False))
        return found

    def _read(self, path: Path, with_embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                keys = set(f.keys())
                if keys != {"hashes", "embeddings"} or meta.get("format") != CHUNK_FORMAT:
                    raise ChunkError("not a cliplab embedding chunk")
                emb_slice = f.get_slice("embeddings")
                shape, dtype = tuple(emb_slice.get_shape()), emb_slice.get_dtype()
                hashes = f.get_tensor("hashes")
                embeddings = f.get_tensor("embeddings") if with_embeddings else None
        except FileNotFoundError:
            raise
        except ChunkError:
            raise
        except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
            raise ChunkError(f"unreadable ({type(e).__name__}: {str(e)[:120]})") from e
        rows = int(meta.get("rows", -1))
        if hashes.dtype != np.uint8 or hashes.shape != (rows, HASH_BYTES):
            raise ChunkError(f"hash list has shape {hashes.shape} {hashes.dtype}, expected ({rows}, {HASH_BYTES}) uint8")
        if dtype != "F32" or len(shape) != 2 or shape[0] != rows:
            raise ChunkError(f"embeddings have shape {shape} {dtype}, expected ({rows}, d) F32")
        if self.dim is not None and shape[1] != self.dim:
            raise ChunkError(f"embeddings have {shape[1]} dims, the model has {self.dim}")
        if embeddings is not None:
            if _checksum(hashes, embeddings) != meta.get("sha256"):
                raise ChunkError("checksum mismatch (damaged file)")
            if not np.isfinite(embeddings).all():
                raise ChunkError("non-finite values")
        return hashes, embeddings

    # --- writing --------------------------------------------------------------------------------------
    def put(self, keys: list[bytes], embeddings: np.ndarray) -> Path | None:
        """Write one chunk holding ``keys`` -> ``embeddings`` rows (atomically); returns its path."""
        if not keys:
            return None
        from safetensors.numpy import save

        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.shape[0] != len(keys) or embeddings.ndim != 2:
            raise InputError(f"{len(keys)} keys but embeddings of shape {embeddings.shape}")
        hashes = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), HASH_BYTES)
        meta = {
            "format": CHUNK_FORMAT,
            "version": CHUNK_VERSION,
            "rows": str(len(keys)),
            "dim": str(embeddings.shape[1]),
            "sha256": _checksum(hashes, embeddings),
        }
        blob = save({"hashes": hashes, "embeddings": embeddings}, metadata=meta)
        name = f"chunk-{uuid.uuid4().hex}.safetensors"
        atomic_write(self.dir / name, blob)
        for key in keys:
            self._index.setdefault(key, name)
        self._rows[name] = len(keys)
        return self.dir / name

    # --- damage -----------------------------------------------------------------------------------------
    def _discard(self, path: Path, reason: str) -> None:
        warn(
            f"embedding cache: {path} is corrupt ({reason}); removed it, its images will be recomputed",
            CacheWarning,
        )
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        self._forget(path.name)
        self.discarded.append(path)

    def _forget(self, name: str) -> None:
        self._rows.pop(name, None)
        for key in [k for k, v in self._index.items() if v == name]:
            del self._index[key]

    # --- housekeeping -----------------------------------------------------------------------------------
    def compact(self, chunk_rows: int, min_small: int = 8) -> int:
        """Merge chunks of fewer than ``chunk_rows // 2`` rows (left by small incremental runs) into
        full chunks, once there are at least ``min_small`` of them; returns the chunks removed.

        The merged chunks are written before the small ones are deleted, so an interruption leaves
        duplicates (harmless), never a loss.
        """
        small = [name for name, rows in self._rows.items() if rows < chunk_rows // 2]
        if len(small) < min_small:
            return 0
        keys: list[bytes] = []
        vectors: list[np.ndarray] = []
        seen: set[bytes] = set()
        merged = []
        for name in small:
            try:
                hashes, embeddings = self._read(self.dir / name, with_embeddings=True)
            except FileNotFoundError:
                self._forget(name)
                continue
            except ChunkError as e:
                self._discard(self.dir / name, str(e))
                continue
            merged.append(name)
            for h, v in zip(hashes, embeddings):
                key = bytes(h)
                if key not in seen:
                    seen.add(key)
                    keys.append(key)
                    vectors.append(v)
        for start in range(0, len(keys), chunk_rows):
            new = self.put(keys[start : start + chunk_rows], np.stack(vectors[start : start + chunk_rows]))
            for key in keys[start : start + chunk_rows]:
                self._index[key] = new.name
        for name in merged:
            try:
                (self.dir / name).unlink()
            except FileNotFoundError:
                pass
            self._rows.pop(name, None)
        return len(merged)


def is_namespace_folder(folder: Path) -> bool:
    """True for a folder the cache made: it holds the marker, or (made before the marker) its name
    is the sha256 of its ``model.txt`` text, as ``namespace_key`` names it."""
    try:
        if (folder / MARKER).read_text(encoding="utf-8") == MARKER_TEXT:
            return True
    except (OSError, UnicodeDecodeError):
        pass
    try:
        text = (folder / LABEL).read_bytes().removesuffix(b"\n")
    except OSError:
        return False
    return hashlib.sha256(text).hexdigest() == folder.name


def is_cache_file(name: str) -> bool:
    """True for a file name the cache writes in a namespace folder (temporary names included)."""
    return _OWN_FILE.fullmatch(name) is not None


class ChunkError(Exception):
    """A chunk file that is not what it should be."""


def _remove_if_stale(path: Path, now: float) -> None:
    """Delete a temporary file left by a killed writer, once it is old enough not to be in use."""
    try:
        if now - path.stat().st_mtime > STALE_TMP_SECONDS:
            path.unlink()
    except OSError:
        pass
