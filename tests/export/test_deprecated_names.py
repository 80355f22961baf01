"""kzoo.export's names of the previous release: still importable for one release, with a DeprecationWarning naming
the new function, and the same function."""

import importlib

import pytest

import kzoo.export

RENAMED = {
    "run_tflite_classifier": "run_classifier_tflite",
    "detect_photos_tflite": "run_mask_rcnn_tflite_on_photos",
    "write_warmup_requests": "write_classifier_warmup_requests",
}


@pytest.mark.parametrize("old, new", sorted(RENAMED.items()))
def test_old_name_warns_and_gives_the_new_function(old, new):
    with pytest.warns(DeprecationWarning, match=f"kzoo.export.{old} is deprecated .* use kzoo.export.{new}"):
        function = getattr(kzoo.export, old)
    assert function is getattr(kzoo.export, new)
    with pytest.warns(DeprecationWarning, match=old):
        namespace: dict = {}
        exec(f"from kzoo.export import {old}", namespace)
    assert namespace[old] is getattr(kzoo.export, new)


def test_new_names_do_not_warn_and_old_names_are_not_in_all(recwarn):
    for new in RENAMED.values():
        assert new in kzoo.export.__all__
        getattr(kzoo.export, new)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
    assert not set(RENAMED) & set(kzoo.export.__all__)
    assert kzoo.export.DEPRECATED_NAMES == RENAMED


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="has no attribute 'no_such_function'"):
        kzoo.export.no_such_function  # noqa: B018
    with pytest.raises(ImportError):
        exec("from kzoo.export import no_such_function", {})


@pytest.mark.parametrize(
    "module", ["common", "litert", "saved_model", "classifier_tflite", "mask_rcnn_saved_model", "mask_rcnn_tflite"]
)
def test_old_modules_are_gone(module):
    """Internal module paths moved without shims: serving, tflite, classifier and mask_rcnn replace them."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"kzoo.export.{module}")
