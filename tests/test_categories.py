from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segments_torch.categories import CategoryMap, CategorySelectionError
from segments_torch.errors import SegmentsTorchError
from segments_torch.release import Category

# Given out of release-id order on purpose; 0 is a real category.
CATEGORIES = (
    Category(100, "sky", (0, 0, 255, 255), has_instances=False),
    Category(3, "car", (255, 0, 0)),
    Category(0, "person"),
    Category(7, "truck", (0, 255, 0, 128)),
)
ALL_IDS = [0, 3, 7, 100]


def test_default_labels_are_contiguous_in_release_id_order():
    cmap = CategoryMap(CATEGORIES)
    assert [e.category.id for e in cmap.entries] == ALL_IDS
    assert [e.label for e in cmap.entries] == [0, 1, 2, 3]
    assert cmap.num_labels == 4
    assert len(cmap) == 4
    assert cmap.ignore_index == 255
    assert cmap.label_names == ["person", "car", "truck", "sky"]
    labels = cmap.labels_for(np.array([100, 0, 7, 3, 0]))
    assert labels.dtype == np.int64
    assert labels.tolist() == [3, 0, 2, 1, 0]


def test_labels_for_accepts_lists_and_scalars_shape():
    cmap = CategoryMap(CATEGORIES)
    assert cmap.labels_for([7, 7, 100]).tolist() == [2, 2, 3]
    assert cmap.labels_for([]).tolist() == []
    assert cmap.labels_for(np.array([[0, 3], [7, 100]])).tolist() == [[0, 1], [2, 3]]


def test_list_selection_is_a_subset_labelled_by_order():
    cmap = CategoryMap(CATEGORIES, ["truck", "person"])
    assert [e.label for e in cmap.entries] == [1, None, 0, None]
    assert cmap.num_labels == 2
    assert cmap.label_names == ["truck", "person"]
    labels = cmap.labels_for(np.array(ALL_IDS))
    assert labels.dtype == np.int64
    assert labels.tolist() == [1, -1, 0, -1]


def test_tuple_selection():
    cmap = CategoryMap(CATEGORIES, ("sky",))
    assert cmap.labels_for(ALL_IDS).tolist() == [-1, -1, -1, 0]
    assert cmap.num_labels == 1


def test_empty_selection():
    cmap = CategoryMap(CATEGORIES, [])
    assert cmap.num_labels == 0
    assert cmap.label_names == []
    assert cmap.label_colors == []
    assert cmap.labels_for(ALL_IDS).tolist() == [-1, -1, -1, -1]


def test_dict_selection_with_shared_labels():
    cmap = CategoryMap(CATEGORIES, {"truck": 0, "car": 0, "person": 2})
    assert cmap.labels_for(ALL_IDS).tolist() == [2, 0, 0, -1]
    assert cmap.num_labels == 3
    # Shared labels join their names in release-id order; label 1 is unused.
    assert cmap.label_names == ["car|truck", "", "person"]
    assert len(cmap) == 3


def test_things_for():
    cmap = CategoryMap(CATEGORIES, ["car"])
    things = cmap.things_for(np.array([100, 0, 3, 7, 100]))
    assert things.dtype == np.bool_
    assert things.tolist() == [False, True, True, True, False]


def test_label_colors():
    cmap = CategoryMap(CATEGORIES)
    # person has no color: grey; RGBA colors lose their alpha.
    assert cmap.label_colors == [(128, 128, 128), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert all(type(c) is int for color in cmap.label_colors for c in color)


def test_label_colors_shared_and_unused_labels():
    # A shared label takes its first (lowest release id) category with a color.
    cmap = CategoryMap(CATEGORIES, {"person": 1, "truck": 1, "car": 1, "sky": 3})
    assert cmap.label_colors == [(128, 128, 128), (255, 0, 0), (128, 128, 128), (0, 0, 255)]
    cmap = CategoryMap(CATEGORIES, {"person": 0, "sky": 1})
    assert cmap.label_colors == [(128, 128, 128), (0, 0, 255)]


def test_str_default():
    assert str(CategoryMap(CATEGORIES)) == (
        "release id  name    label  color\n"
        "0           person  0      -\n"
        "3           car     1      (255, 0, 0)\n"
        "7           truck   2      (0, 255, 0, 128)\n"
        "100         sky     3      (0, 0, 255, 255)\n"
        "ignore index: 255"
    )


def test_str_selection_and_custom_ignore_index():
    cmap = CategoryMap(CATEGORIES, {"car": 0, "truck": 0}, ignore_index=-1)
    assert str(cmap) == (
        "release id  name    label  color\n"
        "0           person  -      -\n"
        "3           car     0      (255, 0, 0)\n"
        "7           truck   0      (0, 255, 0, 128)\n"
        "100         sky     -      (0, 0, 255, 255)\n"
        "ignore index: -1"
    )


def test_repr():
    assert repr(CategoryMap(CATEGORIES)) == (
        "CategoryMap({'person': 0, 'car': 1, 'truck': 2, 'sky': 3}, ignore_index=255)"
    )
    assert repr(CategoryMap(CATEGORIES, ["sky", "car"], ignore_index=100)) == (
        "CategoryMap({'person': None, 'car': 1, 'truck': None, 'sky': 0}, ignore_index=100)"
    )


def raises(selection: object, **kwargs: int) -> str:
    with pytest.raises(CategorySelectionError) as info:
        CategoryMap(CATEGORIES, selection, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, SegmentsTorchError)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_unknown_names_list_the_release_names():
    assert raises(["bus", "car", "tram"]) == (
        "unknown categories 'bus', 'tram'; the release has: 'sky', 'car', 'person', 'truck'"
    )
    assert raises({"Car": 0}) == (
        "unknown categories 'Car'; the release has: 'sky', 'car', 'person', 'truck'"
    )


def test_name_twice_in_a_list():
    assert raises(["car", "sky", "car"]) == (
        "categories= names a category twice: ['car', 'sky', 'car']"
    )


def test_plain_string_instead_of_a_list():
    assert raises("car") == (
        "categories= takes a list of names or a dict name -> label, not the string 'car'"
    )


@pytest.mark.parametrize(
    ("label", "shown"),
    [
        (-1, "-1"),
        (1.0, "1.0"),
        ("1", "'1'"),
        (True, "True"),
        (None, "None"),
    ],
)
def test_negative_or_non_int_label(label, shown):
    assert raises({"car": 0, "truck": label}) == (
        f"category 'truck': expected a label >= 0, found {shown}"
    )


def test_label_equal_to_the_ignore_index():
    assert raises({"car": 255}) == (
        "category 'car' has label 255, which is the ignore index; pass another ignore_index"
    )
    assert raises({"car": 0, "sky": 7}, ignore_index=7) == (
        "category 'sky' has label 7, which is the ignore index; pass another ignore_index"
    )
    # List selections get their labels from the order.
    assert raises(["truck", "car"], ignore_index=1) == (
        "category 'car' has label 1, which is the ignore index; pass another ignore_index"
    )
    # The default selection too.
    assert raises(None, ignore_index=0) == (
        "category 'person' has label 0, which is the ignore index; pass another ignore_index"
    )
    cmap = CategoryMap(CATEGORIES, {"car": 255}, ignore_index=-100)
    assert cmap.num_labels == 256
    assert cmap.labels_for([3]).tolist() == [255]


@given(st.permutations(list(CATEGORIES)), st.lists(st.sampled_from(ALL_IDS), max_size=12))
def test_labels_do_not_depend_on_the_category_order(categories, ids):
    cmap = CategoryMap(categories)
    default = {0: 0, 3: 1, 7: 2, 100: 3}
    assert cmap.labels_for(np.array(ids, dtype=np.int64)).tolist() == [default[i] for i in ids]
    assert cmap.label_names == ["person", "car", "truck", "sky"]
    assert repr(cmap) == repr(CategoryMap(CATEGORIES))
    assert str(cmap) == str(CategoryMap(CATEGORIES))


def test_numpy_integer_labels_are_accepted():
    cmap = CategoryMap(CATEGORIES, {"car": np.int64(2), "truck": np.int32(0)})
    assert cmap.labels_for(np.array([3, 7, 0])).tolist() == [2, 0, -1]
    assert cmap.num_labels == 3
    assert cmap.entries[1].label == 2
    assert type(cmap.entries[1].label) is int


# -- a background class ---------------------------------------------------------------------


def test_a_background_takes_label_0_and_the_categories_follow():
    cmap = CategoryMap(CATEGORIES, background="background")
    assert (cmap.background, cmap.background_label) == ("background", 0)
    assert cmap.label_names == ["background", "person", "car", "truck", "sky"]
    assert cmap.num_labels == 5
    assert cmap.labels_for(np.array([0, 3, 7, 100])).tolist() == [1, 2, 3, 4]
    assert cmap.label_colors[0] == (0, 0, 0)
    assert cmap.label_colors[2] == (255, 0, 0)
    assert str(cmap).splitlines()[1].split() == ["-", "background", "0", "(0,", "0,", "0)"]
    assert repr(cmap).endswith("ignore_index=255, background='background')")


def test_a_background_shifts_lists_and_mappings_by_one():
    listed = CategoryMap(CATEGORIES, ["car", "person"], background="bg")
    assert listed.labels_for(np.array([3, 0, 7])).tolist() == [1, 2, -1]
    assert listed.label_names == ["bg", "car", "person"]
    mapped = CategoryMap(CATEGORIES, {"car": 0, "truck": 0, "sky": 2}, background="bg")
    assert mapped.labels_for(np.array([3, 7, 100])).tolist() == [1, 1, 3]
    assert mapped.label_names == ["bg", "car|truck", "", "sky"]
    assert CategoryMap(CATEGORIES, [], background="bg").num_labels == 1


def test_a_background_named_as_a_category_or_meeting_the_ignore_index_is_refused():
    with pytest.raises(CategorySelectionError) as info:
        CategoryMap(CATEGORIES, background="car")
    assert str(info.value) == (
        "background='car' names a category of the release: give the unlabelled pixels "
        "another name, or select that category"
    )
    with pytest.raises(CategorySelectionError, match="category 'sky' has label 4, which is the"):
        CategoryMap(CATEGORIES, background="bg", ignore_index=4)
    assert CategoryMap(CATEGORIES).background_label is None
