"""The exception hierarchy: one tree, defined in one module, importable from the old places."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import pytest

import segments_torch
from segments_torch import errors


def package_modules() -> list[str]:
    """Every module of the package (lightning's only where the extra is installed)."""
    names = [segments_torch.__name__]
    for module in pkgutil.walk_packages(segments_torch.__path__, f"{segments_torch.__name__}."):
        if module.name.endswith(".lightning") and importlib.util.find_spec("lightning") is None:
            continue
        names.append(module.name)
    return names


def test_every_error_class_derives_from_segments_torch_error():
    classes = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(cls, errors.SegmentsTorchError) for cls in classes)
    assert sorted(errors.__all__) == [
        "AssetError",
        "CategorySelectionError",
        "DecodeError",
        "ExportError",
        "MissingExtraError",
        "OptionError",
        "OutputError",
        "ReleaseFormatError",
        "ReleaseReadError",
        "SegmentsTorchError",
        "SelectionError",
        "SourceUnavailableError",
        "SplitError",
        "StorageError",
        "UnknownLabelsetError",
        "UnsupportedTaskError",
    ]


def test_no_module_but_errors_defines_an_exception_class():
    defined = {}
    for name in package_modules():
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
            ):
                defined[f"{name}.{attribute}"] = value
    assert sorted(defined) == [f"segments_torch.errors.{name}" for name in sorted(errors.__all__)]


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("segments_torch.dataset", "UnsupportedTaskError"),
        ("segments_torch.samples", "SelectionError"),
        ("segments_torch.categories", "CategorySelectionError"),
        ("segments_torch.splits", "SplitError"),
        ("segments_torch.storage", "StorageError"),
        ("segments_torch", "UnsupportedTaskError"),
        ("segments_torch", "CategorySelectionError"),
        ("segments_torch", "ExportError"),
        ("segments_torch", "OutputError"),
        ("segments_torch", "MissingExtraError"),
    ],
)
def test_errors_import_from_their_old_places_too(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_the_package_root_exports_every_error():
    assert set(errors.__all__) <= set(segments_torch.__all__)
    for name in errors.__all__:
        assert getattr(segments_torch, name) is getattr(errors, name)


@pytest.mark.parametrize(
    "cls", [errors.UnsupportedTaskError, errors.SelectionError, errors.SplitError]
)
def test_moved_errors_are_value_errors_and_pickle(cls):
    error = cls("flowers.json: no sample selected")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == "flowers.json: no sample selected"
