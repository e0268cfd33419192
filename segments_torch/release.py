"""Reading a Segments.ai release file into one normalised model.

Three layouts exist and all load into the same :class:`Release`:

- ``Layout.TASKS`` (the oldest): top-level ``tasks`` list and ``samples``, labels keyed
  by task name.
- ``Layout.DATASET_TASKS``: ``dataset.tasks`` (a list, or a dict keyed by task name) and
  ``dataset.samples``, labels keyed by task name.
- ``Layout.LABELSETS`` (current): ``dataset.task_type``,
  ``dataset.task_attributes.categories`` and ``dataset.labelsets``, labels keyed by
  labelset name (``"ground-truth"``).

In the two older layouts a task plays the role of a labelset. Every field is checked as it
is read; a bad one raises :class:`~segments_torch.errors.ReleaseFormatError` naming the
file and the JSON path of the field, what was expected and what was found.

Example:
    >>> release = load_release("flowers-v1.0.json")  # doctest: +SKIP
    >>> release.task_type, [c.name for c in release.categories]  # doctest: +SKIP
    ('segmentation-bitmap', ['person', 'donut'])
"""

from __future__ import annotations

import contextlib
import enum
import gc
import gzip
import json
import math
import os
import posixpath
import re
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Union
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from .errors import ReleaseFormatError, ReleaseReadError
from .samples import (
    LABEL_STATUSES,
    SHAPE_TYPES,
    LabelColumns,
    SampleTable,
    SequenceColumns,
    ShapeColumns,
    StringColumn,
)
from .storage import Storage, StorageError, StorageSettings, make_storage
from .urls import display_url

if TYPE_CHECKING:
    from typing import Unpack

__all__ = [
    "BITMAP_TASK_TYPES",
    "SEQUENCE_TASK_TYPES",
    "TASK_TYPES",
    "VECTOR_TASK_TYPES",
    "Category",
    "Labelset",
    "Layout",
    "Release",
    "ReleaseSource",
    "load_release",
    "parse_release",
]

#: Every task type of the format, with the kind of sample it labels.
TASK_TYPES: Mapping[str, str] = {
    "segmentation-bitmap": "image",
    "segmentation-bitmap-highres": "image",
    "bboxes": "image",
    "vector": "image",
    "keypoints": "image",
    "image-segmentation-sequence": "image-sequence",
    "image-vector-sequence": "image-sequence",
    "pointcloud-cuboid": "pointcloud",
    "pointcloud-cuboid-sequence": "pointcloud-sequence",
    "pointcloud-segmentation": "pointcloud",
    "pointcloud-segmentation-sequence": "pointcloud-sequence",
    "pointcloud-vector": "pointcloud",
    "pointcloud-vector-sequence": "pointcloud-sequence",
    "multisensor-sequence": "multisensor",
    "text-named-entities": "text",
    "text-span-categorization": "text",
}
#: Task types whose labels (of each frame, for a sequence) are RGBA instance-id bitmaps.
BITMAP_TASK_TYPES = frozenset(
    {"segmentation-bitmap", "segmentation-bitmap-highres", "image-segmentation-sequence"}
)
#: Task types whose labels (of each frame, for a sequence) are shapes: boxes, polygons,
#: polylines, points.
VECTOR_TASK_TYPES = frozenset({"bboxes", "vector", "keypoints", "image-vector-sequence"})
#: Task types of image sequences: one label per frame, one release row per frame.
SEQUENCE_TASK_TYPES = frozenset({"image-segmentation-sequence", "image-vector-sequence"})
#: Task types whose bitmap ids hold within a frame and ``track_id`` across frames.
TRACKED_TASK_TYPES = frozenset({"image-segmentation-sequence"})
#: The largest instance id an RGB bitmap can hold (R + 256 G + 65536 B).
MAX_BITMAP_ID = 2**24 - 1
_INT32_MAX = 2**31 - 1

ReleaseSource = Union[str, "os.PathLike[str]", IO[bytes], Mapping[str, Any]]


class Layout(str, enum.Enum):
    """Which of the three release layouts a file uses."""

    TASKS = "tasks"
    DATASET_TASKS = "dataset-tasks"
    LABELSETS = "labelsets"


@dataclass(frozen=True)
class Category:
    """A category as the release defines it.

    Attributes:
        id: the release's own number; 0 is a real category.
        color: RGB or RGBA as in the release, or ``None`` where it sets none.
        has_instances: ``False`` for "stuff" categories (sky, road) labelled as one region.
        attributes: the release's attribute definitions (dicts), unchanged.
    """

    id: int
    name: str
    color: tuple[int, ...] | None = None
    has_instances: bool = True
    attributes: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Labelset:
    """A labelset (a task, in the older layouts) with its task type and categories."""

    name: str
    task_type: str
    categories: tuple[Category, ...]
    description: str = ""


@dataclass(frozen=True, eq=False)
class Release:
    """A loaded release: its metadata, labelsets and the :class:`SampleTable`.

    ``task_type`` and ``categories`` are the dataset's (current layout) or those of the
    first task (older layouts); ``labelsets[name]`` has each labelset's own.
    """

    source: str
    layout: Layout
    name: str
    description: str
    created_at: str
    dataset_name: str
    dataset_owner: str
    task_type: str
    categories: tuple[Category, ...]
    labelsets: Mapping[str, Labelset]
    samples: SampleTable

    @property
    def labelset_names(self) -> tuple[str, ...]:
        return tuple(self.labelsets)

    def labelset(self, name: str | None = None) -> Labelset:
        """The labelset called ``name``; ``None`` picks the default (see
        :meth:`SampleTable.resolve_labelset`)."""
        return self.labelsets[self.samples.resolve_labelset(name)]

    def __repr__(self) -> str:
        return (
            f"Release(source={self.source!r}, name={self.name!r}, layout={self.layout.value!r}, "
            f"task_type={self.task_type!r}, labelsets={list(self.labelsets)!r}, "
            f"samples={len(self.samples)})"
        )


def load_release(
    source: ReleaseSource,
    *,
    storage: Storage | None = None,
    **storage_settings: Unpack[StorageSettings],
) -> Release:
    """Read and validate a release file.

    A URL is read as :class:`~segments_torch.dataset.SegmentsDataset` reads its assets,
    through ``storage`` (a :class:`~segments_torch.storage.Storage`; a dataset passes its
    own): through its ``url_map``, with its ``timeout`` per HTTP request, retrying
    connection failures, timeouts, HTTP 429 and 5xx as its ``retry`` says (never 403 or
    404). The release is never cached: a release file changes under the same URL.

    Args:
        source: a local path (``str`` or ``pathlib.Path``), any fsspec URL
            (``file://``, ``https://``, ``s3://``, ``memory://``, ...), a ``.json`` or
            gzip-compressed file (recognised by content, whatever its name), an open binary
            file, or an already parsed ``dict``.
        storage: how to read it; default ``Storage()``.
        storage_settings: instead of ``storage``, its settings as keywords
            (:class:`~segments_torch.storage.StorageSettings`): ``storage_options``
            (fsspec options per protocol, ``{"s3": {"profile": "training"}}``; the options
            of the source's own protocol alone, ``{"profile": "training"}``, work here
            too), ``url_map``, ``timeout``, ``retry``.

    Raises:
        ReleaseReadError: the file cannot be read; says the URL (without its query
            string) and why: ``not found (HTTP 404)``, ``access denied (HTTP 403)``,
            ``HTTP 500 after 5 attempts``, ``timed out after 5 attempts``, ...
        ReleaseFormatError: it is not a valid release; the message names the field.
        OptionError: ``storage`` and storage keywords given together.

    Example:
        >>> release = load_release("s3://bucket/flowers-v1.0.json.gz",
        ...                        storage_options={"s3": {"profile": "training"}},
        ...                        timeout=30)  # doctest: +SKIP
    """
    if isinstance(source, Mapping):
        return parse_release(source)
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "<file object>"))
        data = source.read()
    else:
        path = os.fspath(source)
        scheme = urlsplit(path).scheme
        settings: dict[str, Any] = dict(storage_settings)
        if settings.get("storage_options"):
            settings["storage_options"] = _per_protocol(settings["storage_options"], scheme)
        reader = make_storage(storage, settings, "load_release")
        if scheme in ("", "file") or len(scheme) == 1:  # a local file (C: on Windows)
            name, data = _read_path(path, reader.storage_options.get("file", {}))
        else:
            name, data = _fetch(path, reader)
    with _garbage_collection_paused():
        return parse_release(_decode_json(data, name), source=name)


def parse_release(document: Any, *, source: str = "<dict>") -> Release:
    """Validate an already parsed release document; ``source`` names it in errors."""
    return _Parser(source).release(document)


@contextlib.contextmanager
def _garbage_collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: decoding JSON creates millions of containers
    and no cycles, and the collector's passes over them cost three times the decoding
    itself on a large release (benchmarks/bench_release.py)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _per_protocol(
    storage_options: Mapping[str, Any] | None, scheme: str
) -> Mapping[str, Mapping[str, Any]]:
    """``storage_options`` keyed by protocol, as :class:`Storage` takes them: as given
    when every key names an fsspec protocol, else as the options of ``scheme`` alone."""
    if not storage_options:
        return {}
    from fsspec.registry import known_implementations, registry

    if all(key in known_implementations or key in registry for key in storage_options):
        return storage_options
    return {scheme or "file": storage_options}


def _fetch(url: str, storage: Storage) -> tuple[str, bytes]:
    """The bytes of a release at a URL, read as assets are (mirrors, timeouts, retries)."""
    name = display_url(url)
    try:
        return name, storage.fetch(url)
    except StorageError as exc:
        where = f" from {exc.url}" if exc.url != name else ""  # a url_map mirror
        # Where both URLs are named here, the note naming the original would repeat it.
        detail = str(exc).removesuffix(f"; {exc.note}") if where and exc.note else str(exc)
        raise ReleaseReadError(f"{name}: cannot read the release{where}: {detail}") from exc


def _read_path(path: str, storage_options: Mapping[str, Any]) -> tuple[str, bytes]:
    import fsspec  # deferred: fsspec imports its protocols' packages lazily anyway

    name = display_url(path)
    try:
        with fsspec.open(path, "rb", **storage_options) as f:
            return name, f.read()
    except FileNotFoundError:
        raise ReleaseReadError(f"{name}: no such file") from None
    except ImportError as exc:
        raise ReleaseReadError(
            f"{name}: reading this URL needs an optional package ({exc}); install the "
            "matching extra, e.g. pip install 'segments-torch[http]' or '[s3]' or '[gcs]'"
        ) from exc
    except (OSError, ValueError) as exc:
        folder = _folder_listing(path, storage_options)
        if folder is not None:
            raise ReleaseReadError(f"{name}: {folder}") from None
        raise ReleaseReadError(f"{name}: cannot read the release: {exc}") from exc


#: The names a release file has, as the Segments.ai web app and SDK download them.
_RELEASE_SUFFIXES = (".json", ".json.gz")


def _folder_listing(path: str, storage_options: Mapping[str, Any]) -> str | None:
    """Where ``path`` is a folder, what to say instead of "Is a directory": the release
    files in it (at most 10 named); ``None`` where it is no folder."""
    import fsspec

    try:
        fs, folder = fsspec.core.url_to_fs(path, **storage_options)
        if not fs.isdir(folder):
            return None
        names = sorted(
            posixpath.basename(entry.rstrip("/"))
            for entry in fs.ls(folder, detail=False)
            if entry.endswith(_RELEASE_SUFFIXES) and not fs.isdir(entry)
        )
    except (OSError, ValueError):
        return None
    if not names:
        patterns = ", ".join(f"*{suffix}" for suffix in _RELEASE_SUFFIXES)
        return f"is a folder, and holds no release file ({patterns})"
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"is a folder; name a release file in it: {shown}"


def _decode_json(data: bytes, name: str) -> Any:
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ReleaseFormatError(
                name, "", f"not a valid gzip file ({exc}): is it truncated?"
            ) from None
    if not data.strip():
        raise ReleaseFormatError(name, "", "not valid JSON: the file is empty")
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise ReleaseFormatError(name, "", f"not valid JSON: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        # A string still open at the end is reported where it starts.
        ends_early = exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated")
        hint = " (the file ends early: is it truncated?)" if ends_early else ""
        what = exc.msg.removesuffix(" at")  # "Unterminated string starting at"
        raise ReleaseFormatError(
            name, "", f"not valid JSON: {what} at line {exc.lineno} column {exc.colno}{hint}"
        ) from None
    except RecursionError:
        raise _nesting_error(data, name) from None
    except ValueError as exc:  # an integer longer than Python reads from text
        raise _long_number_error(data, name, exc) from None


def _text(data: bytes | str) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


#: A JSON string (escapes included) or a bracket: what the nesting scan steps over.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _nesting_error(data: bytes, name: str) -> ReleaseFormatError:
    """What json's RecursionError was about: how deep the document nests, and where it
    first gets that deep (found only after the failure: a scan of the whole text)."""
    text = _text(data)
    depth = deepest = where = 0
    for token in _TOKEN.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, token.start()
        elif bracket in "]}":
            depth -= 1
    line = text.count("\n", 0, where) + 1
    column = where - (text.rfind("\n", 0, where) + 1) + 1
    return ReleaseFormatError(
        name,
        "",
        f"not valid JSON for Python: lists and objects nested {deepest} deep at line {line} "
        f"column {column}; Python's json module reads about {sys.getrecursionlimit()}",
    )


@dataclass(frozen=True)
class _LongNumber:
    """Stands in for an integer longer than Python reads from text (a second parse)."""

    digits: int


def _long_number_error(data: bytes, name: str, exc: ValueError) -> ReleaseFormatError:
    """The JSON path of the first integer too long for Python, found by parsing again
    with such integers left as :class:`_LongNumber` (only after the first parse failed)."""
    limit = sys.get_int_max_str_digits()

    def parse_int(digits: str) -> int | _LongNumber:
        length = len(digits.lstrip("-"))
        return _LongNumber(length) if limit and length > limit else int(digits)

    try:
        found = _find(json.loads(data, parse_int=parse_int), "", _is_long_number)
    except (ValueError, RecursionError):  # the number was not what failed, or more fails
        found = None
    if found is None:
        return ReleaseFormatError(name, "", f"not valid JSON for Python: {exc}")
    path, number = found
    return ReleaseFormatError(
        name,
        path,
        f"expected a number Python can read (at most {limit} digits), "
        f"found a number of {number.digits} digits",
    )


def _is_long_number(value: Any) -> bool:
    return isinstance(value, _LongNumber)


def _has_decimal(value: int) -> bool:
    """Whether Python converts ``value`` to decimal digits (sys.get_int_max_str_digits)."""
    try:
        str(value)
    except ValueError:
        return False
    return True


#: What json.dumps writes (tuples as lists).
_JSON_TYPES = (dict, list, tuple, str, int, float, bool, type(None))


def _find(value: Any, path: str, match: Callable[[Any], bool]) -> tuple[str, Any] | None:
    """The JSON path and value of the first item in ``value`` (document order) that
    ``match`` accepts, or ``None``. Iterative, so the depth of the document does not
    matter; containers seen once are not entered again (a dict given to parse_release can
    hold itself)."""
    pending: list[tuple[str, Any]] = [(path, value)]
    seen: set[int] = set()
    while pending:
        where, item = pending.pop()
        if match(item):
            return where, item
        if id(item) in seen:
            continue
        if isinstance(item, dict):
            children = [(_join(where, _printable(str(k))), v) for k, v in item.items()]
        elif isinstance(item, list):
            children = [(_join(where, i), v) for i, v in enumerate(item)]
        else:
            continue
        seen.add(id(item))
        pending.extend(reversed(children))
    return None


def _printable(text: str) -> str:
    """``text`` with any lone surrogate escaped (``\\ud800``), so that a message naming it
    can itself be printed and written anywhere."""
    return text if _encodes(text) else text.encode("utf-8", "backslashreplace").decode()


def _encodes(text: str) -> bool:
    """Whether UTF-8 can encode ``text``: JSON can spell a lone surrogate (``"\\ud800"``),
    which is no character, and no file or terminal can hold it."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


_MISSING: Any = object()


def _describe(value: Any) -> str:
    """A short rendering of a found value for error messages."""
    if value is _MISSING:
        return "nothing (the field is missing)"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    try:
        text = json.dumps(value)
    except ValueError:  # an int of more digits than Python converts (a dict's, not a file's)
        return f"an integer of {value.bit_length()} bits"
    except TypeError:  # not a JSON value at all (a dict's, not a file's)
        return f"a Python {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is a subclass of int but never a valid id


class _Parser:
    """One pass over a release document; holds the file name for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, expected: str, found: Any) -> ReleaseFormatError:
        return ReleaseFormatError(
            self.source, path, f"expected {expected}, found {_describe(found)}"
        )

    # -- typed field readers ---------------------------------------------------------
    def get(
        self,
        obj: Mapping[str, Any],
        path: str,
        key: str,
        expected: str,
        check: Callable[[Any], bool],
        default: Any = _MISSING,
    ) -> Any:
        value = obj.get(key, _MISSING)
        if value is _MISSING and default is not _MISSING:
            return default
        if not check(value):
            raise self.fail(_join(path, key), expected, value)
        return value

    def string(self, obj: Mapping[str, Any], path: str, key: str, default: Any = _MISSING) -> Any:
        value = self.get(obj, path, key, "a string", lambda v: isinstance(v, str), default)
        return self.text(value, _join(path, key))

    def optional_text(self, obj: Mapping[str, Any], path: str, key: str) -> str:
        """A descriptive string field that may be absent or null."""
        value = self.get(
            obj, path, key, "a string or null", lambda v: v is None or isinstance(v, str), None
        )
        return self.text(value, _join(path, key)) or ""

    def text(self, value: Any, path: str) -> Any:
        """``value``, unless it is a string that UTF-8 cannot encode (the library writes
        these strings: to the terminal, to exports)."""
        if isinstance(value, str) and not _encodes(value):
            raise self.text_error(path, value)
        return value

    def text_error(self, path: str, value: str) -> ReleaseFormatError:
        return ReleaseFormatError(
            self.source,
            path,
            f"expected text, found {_describe(value)}: a lone surrogate (\\ud800 to \\udfff) "
            "is no Unicode character, and no file or terminal can hold it",
        )

    def column(self, strings: list[str], path_of: Callable[[int], str]) -> StringColumn:
        """``strings`` as a :class:`StringColumn`; ``path_of(row)`` names the field of a
        string that UTF-8 cannot encode, looked for only once encoding them all failed."""
        try:
            return StringColumn.from_strings(strings)
        except UnicodeEncodeError:
            row = next(i for i, text in enumerate(strings) if not _encodes(text))
            raise self.text_error(path_of(row), strings[row]) from None

    def obj(self, obj: Mapping[str, Any], path: str, key: str, default: Any = _MISSING) -> Any:
        return self.get(obj, path, key, "an object", lambda v: isinstance(v, dict), default)

    def array(self, obj: Mapping[str, Any], path: str, key: str) -> list[Any]:
        return self.get(obj, path, key, "a list", lambda v: isinstance(v, list))  # type: ignore[no-any-return]

    # -- the document ----------------------------------------------------------------
    def release(self, document: Any) -> Release:
        if not isinstance(document, dict):
            raise self.fail("", "a JSON object (a release)", document)
        dataset = document.get("dataset", _MISSING)
        if dataset is not _MISSING:
            if not isinstance(dataset, dict):
                raise self.fail("dataset", "an object", dataset)
            root, prefix = dataset, "dataset"
            is_current = "labelsets" in dataset or "task_type" in dataset
            layout = Layout.LABELSETS if is_current else Layout.DATASET_TASKS
        elif "tasks" in document or "samples" in document:
            root, prefix, layout = document, "", Layout.TASKS
        else:
            keys = ", ".join(json.dumps(k) for k in list(document)[:8]) or "none"
            raise ReleaseFormatError(
                self.source,
                "",
                'expected a release: an object with "dataset" (or with "tasks" and '
                f'"samples"), found an object with the keys {keys}',
            )

        if layout is Layout.LABELSETS:
            labelsets = self.current_labelsets(root, prefix)
        else:
            labelsets = self.tasks(root, prefix)
        first = next(iter(labelsets.values()))
        owner = root.get("owner") if layout is not Layout.TASKS else None
        if isinstance(owner, dict):  # the API's form: {"username": ..., ...}
            owner = self.string(owner, _join(prefix, "owner"), "username", "")
        elif owner is not None and not isinstance(owner, str):
            raise self.fail(_join(prefix, "owner"), "a string or an object", owner)
        self.text(owner, _join(prefix, "owner"))
        return Release(
            source=self.source,
            layout=layout,
            name=self.optional_text(document, "", "name"),
            description=self.optional_text(document, "", "description"),
            created_at=self.optional_text(document, "", "created_at"),
            dataset_name=self.optional_text(root, prefix, "name") if prefix else "",
            dataset_owner=owner or "",
            task_type=first.task_type,
            categories=first.categories,
            labelsets=labelsets,
            samples=self.samples(root, prefix, labelsets),
        )

    def task_type(self, obj: Mapping[str, Any], path: str) -> str:
        value = self.string(obj, path, "task_type")
        if value not in TASK_TYPES:
            raise self.fail(
                _join(path, "task_type"), f"a task type ({', '.join(TASK_TYPES)})", value
            )
        return value  # type: ignore[no-any-return]

    def current_labelsets(self, root: Mapping[str, Any], prefix: str) -> dict[str, Labelset]:
        task_type = self.task_type(root, prefix)
        attributes_path = _join(prefix, "task_attributes")
        categories = self.categories(self.obj(root, prefix, "task_attributes"), attributes_path)
        labelsets: dict[str, Labelset] = {}
        path = _join(prefix, "labelsets")
        entries = self.array(root, prefix, "labelsets")
        for i, entry in enumerate(entries):
            entry_path = _join(path, i)
            if not isinstance(entry, dict):
                raise self.fail(entry_path, "an object", entry)
            name = self.string(entry, entry_path, "name")
            if name in labelsets:
                raise self.fail(_join(entry_path, "name"), "a name no other labelset has", name)
            description = self.optional_text(entry, entry_path, "description")
            labelsets[name] = Labelset(name, task_type, categories, description)
        if not labelsets:
            raise self.fail(path, "at least one labelset", entries)
        return labelsets

    def tasks(self, root: Mapping[str, Any], prefix: str) -> dict[str, Labelset]:
        path = _join(prefix, "tasks")
        tasks = root.get("tasks", _MISSING)
        if isinstance(tasks, list):
            named = []
            for i, task in enumerate(tasks):
                if not isinstance(task, dict):
                    raise self.fail(_join(path, i), "an object", task)
                named.append((self.string(task, _join(path, i), "name"), _join(path, i), task))
        elif isinstance(tasks, dict):
            named = [
                (name, _join(path, _printable(str(name))), task) for name, task in tasks.items()
            ]
        else:
            raise self.fail(path, "a list or an object of tasks", tasks)
        labelsets: dict[str, Labelset] = {}
        for name, task_path, task in named:
            self.text(name, task_path)
            if not isinstance(task, dict):
                raise self.fail(task_path, "an object", task)
            if name in labelsets:
                raise self.fail(_join(task_path, "name"), "a name no other task has", name)
            attributes = self.obj(task, task_path, "attributes")
            categories = self.categories(attributes, _join(task_path, "attributes"))
            description = self.optional_text(task, task_path, "description")
            labelsets[name] = Labelset(
                name, self.task_type(task, task_path), categories, description
            )
        if not labelsets:
            raise self.fail(path, "at least one task", tasks)
        return labelsets

    def categories(self, attributes: Mapping[str, Any], path: str) -> tuple[Category, ...]:
        entries = self.array(attributes, path, "categories")
        path = _join(path, "categories")
        result: dict[int, Category] = {}
        for i, entry in enumerate(entries):
            entry_path = _join(path, i)
            if not isinstance(entry, dict):
                raise self.fail(entry_path, "an object", entry)
            category_id = self.get(
                entry,
                entry_path,
                "id",
                "an integer",
                lambda v: _is_int(v) and -(2**31) <= v <= _INT32_MAX,
            )
            if category_id in result:
                raise self.fail(_join(entry_path, "id"), "an id no other category has", category_id)
            color = self.get(
                entry,
                entry_path,
                "color",
                "null or a list of 3 or 4 integers from 0 to 255",
                _is_color,
                None,
            )
            has_instances = self.get(
                entry,
                entry_path,
                "has_instances",
                "true or false",
                lambda v: isinstance(v, bool),
                True,
            )
            attribute_definitions = self.get(
                entry, entry_path, "attributes", "null or a list of objects", _is_object_list, None
            )
            result[category_id] = Category(
                id=category_id,
                name=self.string(entry, entry_path, "name"),
                color=tuple(color) if color is not None else None,
                has_instances=has_instances,
                attributes=tuple(attribute_definitions or ()),
            )
        return tuple(result.values())

    # -- samples ---------------------------------------------------------------------
    def samples(
        self, root: Mapping[str, Any], prefix: str, labelsets: Mapping[str, Labelset]
    ) -> SampleTable:
        samples_path = _join(prefix, "samples")
        samples = self.array(root, prefix, "samples")
        kinds = {TASK_TYPES[ls.task_type] for ls in labelsets.values()}
        needs_image = "image" in kinds
        # A sequence release has one row per frame (see SampleTable).
        frames = _FrameLists() if "image-sequence" in kinds else None
        names: list[str] = []
        uuids: list[str] = []
        image_urls: list[str] = []
        metadata: list[str] = []
        labels = {
            name: _LabelLists(
                vector=ls.task_type in VECTOR_TASK_TYPES,
                tracks=ls.task_type in TRACKED_TASK_TYPES,
                frames=frames is not None,
            )
            for name, ls in labelsets.items()
        }
        status_codes = {name: code for code, name in enumerate(LABEL_STATUSES)}
        known_labelsets = ", ".join(repr(name) for name in labelsets)

        for i, sample in enumerate(samples):
            if type(sample) is not dict:
                raise self.fail(_join(samples_path, i), "an object", sample)
            path = f"{samples_path}[{i}]"
            name = sample.get("name")
            if type(name) is not str:
                name = self.string(sample, path, "name")
            uuid = sample.get("uuid", "")
            if type(uuid) is not str:
                uuid = self.string(sample, path, "uuid")
            meta = self.json_text(sample.get("metadata"), _join(path, "metadata"))
            if frames is None:
                count = 1
                names.append(name)
                image_urls.append(self.image_url(sample, path) if needs_image else "")
            else:
                frame_names, frame_urls = frames.add(self, name, sample, path)
                count = len(frame_names)
                names += frame_names
                image_urls += frame_urls
            uuids += [uuid] * count
            metadata += [meta] * count

            sample_labels = sample.get("labels", _MISSING)
            if type(sample_labels) is not dict:
                raise self.fail(_join(path, "labels"), "an object", sample_labels)
            for key in sample_labels:
                if key not in labels:
                    raise ReleaseFormatError(
                        self.source,
                        _join(path, "labels"),
                        f"expected labels keyed by the release's labelsets ({known_labelsets}), "
                        f"found the key {json.dumps(key)}",
                    )
            for labelset, lists in labels.items():
                label = sample_labels.get(labelset)
                if label is None:
                    lists.add_empty(status_codes["UNLABELED"], count)
                    continue
                label_path = f"{path}.labels.{labelset}"
                if type(label) is not dict:
                    raise self.fail(label_path, "an object or null", label)
                status = label.get("label_status", _MISSING)
                code = status_codes.get(status.upper()) if type(status) is str else None
                if code is None:
                    raise self.fail(
                        _join(label_path, "label_status"),
                        f"a label status ({', '.join(LABEL_STATUSES)})",
                        status,
                    )
                attributes = label.get("attributes")
                if attributes is None or attributes == {}:  # SKIPPED labels carry {}
                    lists.add_empty(code, count)
                    continue
                if type(attributes) is not dict:
                    raise self.fail(
                        _join(label_path, "attributes"), "an object or null", attributes
                    )
                attributes_path = f"{label_path}.attributes"
                if frames is None:
                    lists.add(self, code, attributes, attributes_path)
                    continue
                for j, frame in enumerate(self.label_frames(attributes, attributes_path, count)):
                    lists.add(self, code, frame, f"{attributes_path}.frames[{j}]")

        sequences = frames.columns(self) if frames is not None else None

        def sample_of(row: int) -> tuple[int, int | None]:
            """The sample of a row, and its frame in a sequence release."""
            if sequences is None:
                return row, None
            return int(sequences.sequence[row]), int(sequences.frame_index[row])

        def label_of(labelset: str) -> Callable[[int], tuple[str, Any]]:
            def located(row: int) -> tuple[str, Any]:
                sample, frame = sample_of(row)
                path = f"{samples_path}[{sample}].labels.{labelset}.attributes"
                attributes = samples[sample]["labels"][labelset]["attributes"]
                if frame is None:
                    return path, attributes
                return f"{path}.frames[{frame}]", attributes["frames"][frame]

            return located

        def image_path(row: int) -> str:
            sample, frame = sample_of(row)
            where = "attributes" if frame is None else f"attributes.frames[{frame}]"
            return f"{samples_path}[{sample}].{where}.image.url"

        label_columns = {
            name: lists.columns(
                self, labelsets[name].task_type, labelsets[name].categories, label_of(name)
            )
            for name, lists in labels.items()
        }
        return SampleTable(
            names=self.column(names, lambda row: f"{samples_path}[{sample_of(row)[0]}].name"),
            uuids=self.column(uuids, lambda row: f"{samples_path}[{sample_of(row)[0]}].uuid"),
            image_urls=self.column(image_urls, image_path),
            metadata_json=StringColumn.from_strings(metadata),  # JSON text: ASCII
            labels=label_columns,
            source=self.source,
            sequences=sequences,
        )

    def label_frames(self, attributes: Mapping[str, Any], path: str, count: int) -> list[Any]:
        """A sequence label's ``frames``: objects, one per frame of the sample."""
        frames = attributes.get("frames", _MISSING)
        if type(frames) is not list or len(frames) != count:
            expected = f"a list of {count} frame{'' if count == 1 else 's'} (one per sample frame)"
            raise self.fail(_join(path, "frames"), expected, frames)
        for j, frame in enumerate(frames):
            if type(frame) is not dict:
                raise self.fail(_join(_join(path, "frames"), j), "an object", frame)
        return frames

    def json_text(self, value: Any, path: str) -> str:
        """An object field (metadata, attributes) kept as JSON text; ``""`` for null or
        an empty object."""
        if value is None or value == {}:
            return ""
        if type(value) is not dict:
            raise self.fail(path, "an object or null", value)
        try:
            return json.dumps(value, separators=(",", ":"))
        except (RecursionError, ValueError, TypeError) as exc:
            raise self.metadata_error(value, path, exc) from None

    def metadata_error(self, metadata: Any, path: str, exc: Exception) -> ReleaseFormatError:
        """Why a sample's metadata cannot be kept as JSON text (json.dumps raised ``exc``),
        naming the field where it can be found; only a parsed dict can hold most of these."""
        if isinstance(exc, RecursionError):
            return ReleaseFormatError(
                self.source,
                path,
                f"expected JSON that Python can write, found lists and objects nested more "
                f"than about {sys.getrecursionlimit()} deep",
            )
        if isinstance(exc, TypeError):
            found = _find(metadata, path, lambda v: not isinstance(v, _JSON_TYPES))
            if found is not None:
                return self.fail(found[0], "a JSON value", found[1])
        else:
            found = _find(metadata, path, lambda v: type(v) is int and not _has_decimal(v))
            if found is not None:
                return ReleaseFormatError(
                    self.source,
                    found[0],
                    f"expected a number Python can write (at most "
                    f"{sys.get_int_max_str_digits()} digits), found {_describe(found[1])}",
                )
        return ReleaseFormatError(self.source, path, f"expected JSON that Python can write: {exc}")

    def image_url(self, sample: Mapping[str, Any], path: str) -> str:
        attributes = sample.get("attributes")
        image = attributes.get("image") if type(attributes) is dict else None
        url = image.get("url") if type(image) is dict else None
        if type(url) is str:
            return url
        attributes = self.obj(sample, path, "attributes")
        image = self.obj(attributes, _join(path, "attributes"), "image")
        return self.string(image, _join(path, "attributes.image"), "url")  # type: ignore[no-any-return]

    def annotation_error(self, annotations: list[Any], path: str) -> ReleaseFormatError:
        """The precise error for a list of annotations the fast path could not read."""
        for j, annotation in enumerate(annotations):
            annotation_path = _join(path, j)
            if not isinstance(annotation, dict):
                return self.fail(annotation_path, "an object", annotation)
            for key in ("id", "category_id"):
                if key not in annotation:
                    return self.fail(_join(annotation_path, key), "an integer", _MISSING)
        raise AssertionError("annotation_error called on readable annotations")


class _LabelLists:
    """One labelset's labels, gathered as Python lists during the pass over samples
    (with ``vector``, their shapes too: see :class:`_ShapeLists`; with ``tracks``, the
    track id of each annotation of a segmentation sequence; with ``frames``, each label is
    a sequence's frame)."""

    def __init__(self, *, vector: bool = False, tracks: bool = False, frames: bool = False) -> None:
        self.status: list[int] = []
        self.bitmap_urls: list[str] = []
        self.counts: list[int] = []
        self.annotation_ids: list[Any] = []
        self.category_ids: list[Any] = []
        self.track_ids: list[Any] | None = [] if tracks else None
        self.shapes = _ShapeLists() if vector else None
        self.frames = frames

    def add_empty(self, status: int, count: int = 1) -> None:
        """``count`` rows (a sample's frames) without annotations."""
        self.status += [status] * count
        self.bitmap_urls += [""] * count
        self.counts += [0] * count
        if self.shapes is not None:
            self.shapes.add_empty(count)

    def add(self, parser: _Parser, status: int, attributes: Mapping[str, Any], path: str) -> None:
        annotations = attributes.get("annotations")
        if annotations is None:
            annotations = []
        elif type(annotations) is not list:
            raise parser.fail(_join(path, "annotations"), "a list", annotations)
        try:
            if self.shapes is None:
                ids = [a["id"] for a in annotations]
            else:  # a vector annotation is its track; older files name it by id alone
                ids = [a["track_id"] if "track_id" in a else a["id"] for a in annotations]
            categories = [a["category_id"] for a in annotations]
        except (TypeError, KeyError):
            raise parser.annotation_error(annotations, _join(path, "annotations")) from None
        if self.track_ids is not None:  # a sequence's frame: tracks link frames
            self.track_ids += [a["track_id"] if "track_id" in a else a["id"] for a in annotations]
        if self.frames:
            _check_keyframes(parser, annotations, _join(path, "annotations"))
        if self.shapes is not None:
            self.shapes.add(parser, attributes, annotations, ids, path)
        bitmap = attributes.get("segmentation_bitmap")
        url = bitmap.get("url") if type(bitmap) is dict else bitmap
        if url is None:
            url = ""
        elif type(url) is not str:
            where = "segmentation_bitmap.url" if type(bitmap) is dict else "segmentation_bitmap"
            raise parser.fail(_join(path, where), "an object with a URL string, or null", url)
        self.status.append(status)
        self.bitmap_urls.append(url)
        self.counts.append(len(ids))
        self.annotation_ids += ids
        self.category_ids += categories

    def columns(
        self,
        parser: _Parser,
        task_type: str,
        categories: tuple[Category, ...],
        label_of: Callable[[int], tuple[str, Any]],
    ) -> LabelColumns:
        """The labels as columns, after the checks that need them all; ``label_of(row)``
        gives the JSON path and the object of a row's label ``attributes`` (a frame's, in
        a sequence), for error messages."""
        offsets = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=offsets[1:])

        def fail_at(
            position: int, key: str, expected: str, found: Any, note: str = ""
        ) -> ReleaseFormatError:
            row = int(np.searchsorted(offsets, position, side="right")) - 1
            path = f"{label_of(row)[0]}.annotations[{position - offsets[row]}].{key}"
            error = parser.fail(path, expected, found)
            return ReleaseFormatError(error.source, path, error.detail + note) if note else error

        bitmaps = task_type in BITMAP_TASK_TYPES
        low, high = (1, MAX_BITMAP_ID) if bitmaps else (0, _INT32_MAX)
        expected_id = f"an integer from {low} to {high}"
        ids = _int32_array(
            self.annotation_ids, lambda p, v: fail_at(p, "id", expected_id, v), low, high
        )
        known = np.array(sorted(c.id for c in categories), dtype=np.int64)
        listing = ", ".join(str(c.id) for c in categories)
        expected_category = f"one of the category ids ({listing})"
        category_ids = _int32_array(
            self.category_ids,
            lambda p, v: fail_at(p, "category_id", expected_category, v),
            -(2**31),
            _INT32_MAX,
        )
        unknown = np.flatnonzero(~np.isin(category_ids, known))
        if unknown.size:
            position = int(unknown[0])
            raise fail_at(position, "category_id", expected_category, int(category_ids[position]))

        rows = np.repeat(np.arange(len(self.counts), dtype=np.int64), self.counts)
        unique = [("id", ids, "an id")]
        track_ids = None
        if self.track_ids is not None:
            expected_track = f"an integer from 1 to {MAX_BITMAP_ID}"
            track_ids = _int32_array(
                self.track_ids,
                lambda p, v: fail_at(p, "track_id", expected_track, v),
                1,
                MAX_BITMAP_ID,
            )
            unique.append(("track_id", track_ids, "a track id"))
        for key, values, what in unique:
            repeated = _first_repeat(rows, values)
            if repeated is not None:
                position, earlier = repeated
                row = int(rows[position])
                raise fail_at(
                    position,
                    key,
                    f"{what} no other annotation of this label has",
                    int(values[position]),
                    f" (annotations[{earlier - offsets[row]}] has it too)",
                )

        def bitmap_path(row: int) -> str:
            path, attributes = label_of(row)
            url = ".url" if type(attributes["segmentation_bitmap"]) is dict else ""
            return f"{path}.segmentation_bitmap{url}"

        return LabelColumns(
            status=np.asarray(self.status, dtype=np.int8),
            bitmap_urls=parser.column(self.bitmap_urls, bitmap_path),
            annotation_offsets=offsets,
            annotation_ids=ids,
            category_ids=category_ids,
            shapes=self.shapes.columns() if self.shapes is not None else None,
            track_ids=track_ids,
        )


def _first_repeat(
    rows: npt.NDArray[np.int64], values: npt.NDArray[np.int32]
) -> tuple[int, int] | None:
    """The first annotation (by position) whose value another annotation of the same row
    has before it, and that earlier one; ``None`` where values are unique per row."""
    keys = (rows << 32) | values.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    repeated = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if not repeated.size:
        return None
    later = order[repeated + 1]
    pick = int(np.argmin(later))
    return int(later[pick]), int(order[repeated[pick]])


def _check_keyframes(parser: _Parser, annotations: list[Any], path: str) -> None:
    """A sequence frame's annotations' ``is_keyframe``: true, false or absent."""
    for j, annotation in enumerate(annotations):
        flag = annotation.get("is_keyframe", False)
        if type(flag) is not bool:
            raise parser.fail(_join(_join(path, j), "is_keyframe"), "true or false", flag)


class _FrameLists:
    """The frames of a sequence release's samples, gathered during the pass."""

    def __init__(self) -> None:
        self.counts: list[int] = []
        self.sample_names: list[str] = []
        self.frame_names: list[str] = []
        self.timestamps: list[str] = []

    def add(
        self, parser: _Parser, name: str, sample: Mapping[str, Any], path: str
    ) -> tuple[list[str], list[str]]:
        """Check and keep one sample's frames; return their row names and image URLs."""
        parser.text(name, _join(path, "name"))  # kept twice: in the row names and here
        attributes = parser.obj(sample, path, "attributes")
        frames_path = _join(path, "attributes.frames")
        frames = parser.array(attributes, _join(path, "attributes"), "frames")
        names, urls = [], []
        for j, frame in enumerate(frames):
            frame_path = _join(frames_path, j)
            if type(frame) is not dict:
                raise parser.fail(frame_path, "an object", frame)
            image = parser.obj(frame, frame_path, "image")
            urls.append(parser.string(image, _join(frame_path, "image"), "url"))
            frame_name = parser.optional_text(frame, frame_path, "name")
            timestamp = parser.get(
                frame,
                frame_path,
                "timestamp",
                "a string, an integer or null",
                lambda v: v is None or type(v) in (str, int),
                None,
            )
            parser.text(timestamp, _join(frame_path, "timestamp"))
            names.append(f"{name}/{frame_name or j}")
            self.frame_names.append(frame_name)
            self.timestamps.append("" if timestamp is None else str(timestamp))
        self.counts.append(len(frames))
        self.sample_names.append(name)
        return names, urls

    def columns(self, parser: _Parser) -> SequenceColumns:
        counts = np.asarray(self.counts, dtype=np.int64)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        sequence = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        frame_index = np.arange(int(offsets[-1]), dtype=np.int64) - offsets[:-1][sequence]
        return SequenceColumns(
            offsets=offsets,
            sequence=sequence,
            frame_index=frame_index.astype(np.int32),
            frame_names=StringColumn.from_strings(self.frame_names),
            timestamps=StringColumn.from_strings(self.timestamps),
            sample_names=StringColumn.from_strings(self.sample_names),
        )


#: How many points each shape has: exactly (bbox, point) or at least (polygon, polyline).
_SHAPE_POINTS = {"bbox": (2, 2), "polygon": (3, None), "polyline": (2, None), "point": (1, 1)}
_SHAPE_CODES = {name: code for code, name in enumerate(SHAPE_TYPES)}


class _ShapeLists:
    """The shapes of a vector labelset's annotations, gathered during the pass."""

    def __init__(self) -> None:
        self.types: list[int] = []
        self.counts: list[int] = []
        self.coordinates: list[float] = []
        self.attributes: list[str] = []
        self.image_attributes: list[str] = []
        self.links: list[str] = []

    def add_empty(self, count: int) -> None:
        """``count`` labels without shapes."""
        self.image_attributes += [""] * count
        self.links += [""] * count

    def add(
        self,
        parser: _Parser,
        label: Mapping[str, Any],
        annotations: list[Any],
        track_ids: list[Any],
        path: str,
    ) -> None:
        """Check and keep the shapes of one label's ``annotations`` (already known to be
        objects with ids and category ids; ``track_ids`` are theirs), and its links."""
        for j, annotation in enumerate(annotations):
            where = _join(_join(path, "annotations"), j)
            kind = annotation.get("type", _MISSING)
            if kind not in _SHAPE_POINTS:
                raise parser.fail(
                    _join(where, "type"), f"a shape type ({', '.join(SHAPE_TYPES)})", kind
                )
            points = _points(parser, annotation.get("points", _MISSING), _join(where, "points"))
            least, most = _SHAPE_POINTS[kind]
            if len(points) < least or (most is not None and len(points) > most):
                count = f"{least}" if least == most else f"at least {least}"
                raise parser.fail(_join(where, "points"), f"{count} points for a {kind}", points)
            if kind == "bbox":  # two corners, in any order: top-left first
                (x0, y0), (x1, y1) = points
                points = [[min(x0, x1), min(y0, y1)], [max(x0, x1), max(y0, y1)]]
            self.types.append(_SHAPE_CODES[kind])
            self.counts.append(len(points))
            self.coordinates += [c for point in points for c in point]
            self.attributes.append(
                parser.json_text(annotation.get("attributes"), _join(where, "attributes"))
            )
        self.image_attributes.append(
            parser.json_text(label.get("image_attributes"), _join(path, "image_attributes"))
        )
        self.links.append(_links_text(parser, label.get("links"), track_ids, _join(path, "links")))

    def columns(self) -> ShapeColumns:
        offsets = np.zeros(len(self.counts) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=offsets[1:])
        return ShapeColumns(
            types=np.asarray(self.types, dtype=np.int8),
            point_offsets=offsets,
            points=np.asarray(self.coordinates, dtype=np.float32).reshape(-1, 2),
            attributes_json=StringColumn.from_strings(self.attributes),
            image_attributes_json=StringColumn.from_strings(self.image_attributes),
            links_json=StringColumn.from_strings(self.links),
        )


def _links_text(parser: _Parser, links: Any, track_ids: list[Any], path: str) -> str:
    """A label's ``links`` (``[{from_id, to_id, attributes?}]``: relations between its
    annotations, by track id) as JSON text after checking them; ``""`` for none."""
    if links is None or links == []:
        return ""
    if type(links) is not list:
        raise parser.fail(path, "a list of links or null", links)
    known = set(track_ids)
    for k, link in enumerate(links):
        where = _join(path, k)
        if type(link) is not dict:
            raise parser.fail(where, "an object", link)
        for key in ("from_id", "to_id"):
            value = link.get(key, _MISSING)
            if type(value) is not int or value not in known:
                raise parser.fail(
                    _join(where, key), "the track id of an annotation of this label", value
                )
        parser.json_text(link.get("attributes"), _join(where, "attributes"))
    return json.dumps(links, separators=(",", ":"))


def _points(parser: _Parser, value: Any, path: str) -> list[list[float]]:
    """``[[x, y], ...]`` after checking each is a pair of finite numbers."""
    if type(value) is not list:
        raise parser.fail(path, "a list of [x, y] points", value)
    for k, point in enumerate(value):
        if (
            type(point) is not list
            or len(point) != 2
            or not all(type(c) in (int, float) and math.isfinite(c) for c in point)
        ):
            raise parser.fail(_join(path, k), "a point [x, y] of two finite numbers", point)
    return value


def _int32_array(
    values: list[Any], fail: Callable[[int, Any], ReleaseFormatError], low: int, high: int
) -> npt.NDArray[np.int32]:
    """``values`` as int32 after checking each is an integer in ``[low, high]``."""
    if values and set(map(type, values)) != {int}:
        position = next(p for p, v in enumerate(values) if type(v) is not int)
        raise fail(position, values[position])
    try:
        array = np.array(values, dtype=np.int64) if values else np.zeros(0, np.int64)
    except OverflowError:  # beyond int64: find it in Python
        position = next(p for p, v in enumerate(values) if not low <= v <= high)
        raise fail(position, values[position]) from None
    outside = np.flatnonzero((array < low) | (array > high))
    if outside.size:
        position = int(outside[0])
        raise fail(position, values[position])
    return array.astype(np.int32)


def _is_color(value: Any) -> bool:
    return value is None or (
        isinstance(value, list)
        and len(value) in (3, 4)
        and all(_is_int(c) and 0 <= c <= 255 for c in value)
    )


def _is_object_list(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, dict) for v in value))
