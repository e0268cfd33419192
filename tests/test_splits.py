"""Split rules: by ratio with a seed (stable as the release grows), by metadata, by lists."""

from __future__ import annotations

import hashlib
import json
import math
import random
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from segments_torch import load_release, parse_release
from segments_torch.demo import RELEASE_PATH
from segments_torch.splits import (
    ListSplit,
    MetadataSplit,
    RatioSplit,
    SplitAssignment,
    SplitError,
    sample_keys,
    split_from_dict,
    unit_hash,
)
from tests.releases import (
    annotation,
    current_release,
    label,
    sample,
    sequence_release,
    sequence_sample,
    tasks_release,
)

DEMO_UUID_0 = "d5602f48-2ff7-5b0a-a8f4-2d61115552e3"  # shapes-000.jpg


def many_samples(count: int, *, start: int = 0, status: str = "LABELED") -> list[dict[str, Any]]:
    return [
        sample(
            f"img-{i:05d}.jpg",
            {"ground-truth": label(status, [annotation(1, 0)])},
            uuid=f"00000000-0000-4000-8000-{i:012d}",
        )
        for i in range(start, start + count)
    ]


def table_of(samples: list[dict[str, Any]]):
    return parse_release(current_release(samples)).samples


def split_of(table, assignment: SplitAssignment) -> dict[str, str]:
    """uuid -> split name (rows in no split left out)."""
    return {
        table.uuids[row]: assignment.names[code]
        for row, code in enumerate(assignment.codes.tolist())
        if code >= 0
    }


# -- the hash --------------------------------------------------------------------------------


def test_unit_hash_is_the_documented_formula():
    # The first 8 bytes of sha256("0:<uuid>"), big-endian, over 2**64: pinned, because a
    # change would move samples between splits for every user.
    assert unit_hash(DEMO_UUID_0, seed=0) == 0.04909857082333072
    expected = int.from_bytes(hashlib.sha256(f"1:{DEMO_UUID_0}".encode()).digest()[:8], "big")
    assert unit_hash(DEMO_UUID_0, seed=1) == expected / 2**64 == 0.5402704739977618
    assert unit_hash("x", seed=0) != unit_hash("x", seed=1)
    assert 0 <= unit_hash("", seed=0) < 1


def test_sample_keys_are_uuids_or_names_without_uuids():
    demo = load_release(RELEASE_PATH).samples
    assert sample_keys(demo)[0] == DEMO_UUID_0
    assert sample_keys(demo, [7, 0]) == ["52135053-b911-57f2-a799-fe3083c6a806", DEMO_UUID_0]
    oldest = parse_release(tasks_release()).samples  # the oldest layout has no uuids
    assert sample_keys(oldest) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


# -- RatioSplit ------------------------------------------------------------------------------


def test_ratio_split_of_the_demo_release_is_pinned():
    table = load_release(RELEASE_PATH).samples
    assignment = RatioSplit({"train": 0.75, "val": 0.25}, seed=0).assign(table)
    assert assignment.names == ("train", "val")
    assert assignment.codes.tolist() == [0, 1, 0, 0, 0, 1, 0, 0]
    assert assignment.counts() == {"train": 6, "val": 2}
    assert assignment.rows("val").tolist() == [1, 5]
    assert assignment.rows("val").dtype == np.int64
    assert assignment.unassigned == 0
    # Seed 3 puts four in each: seeds give independent splits.
    other = RatioSplit({"train": 0.75, "val": 0.25}, seed=3).assign(table)
    assert other.codes.tolist() == [0, 1, 1, 1, 0, 1, 0, 0]


def test_ratio_split_places_each_sample_by_its_hash():
    table = table_of(many_samples(50))
    assignment = RatioSplit({"a": 0.5, "b": 0.3, "c": 0.2}, seed=7).assign(table)
    for row, code in enumerate(assignment.codes.tolist()):
        u = unit_hash(table.uuids[row], 7)
        assert code == (0 if u < 0.5 else 1 if u < 0.8 else 2)


def test_ratio_split_is_stable_when_the_release_grows():
    split = RatioSplit({"train": 0.8, "val": 0.1, "test": 0.1}, seed=42)
    old_samples = many_samples(300)
    before = split_of(table_of(old_samples), split.assign(table_of(old_samples)))
    # The next release: 200 new samples inserted among the old ones, in shuffled order,
    # some old samples reviewed since (status does not matter), one old sample deleted.
    grown = old_samples[1:] + many_samples(200, start=300)
    for s in grown[::7]:
        s["labels"]["ground-truth"]["label_status"] = "REVIEWED"
    random.Random(0).shuffle(grown)
    grown_table = table_of(grown)
    after = split_of(grown_table, split.assign(grown_table))
    assert len(after) == 499
    kept = {uuid: after[uuid] for uuid in before if uuid in after}
    assert len(kept) == 299
    assert kept == {uuid: name for uuid, name in before.items() if uuid in after}
    # The new samples spread over the splits too.
    new = [after[s["uuid"]] for s in many_samples(200, start=300)]
    assert {"train", "val", "test"} <= set(new)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ratio_split_respects_the_ratios_on_1000_samples(seed):
    table = table_of(many_samples(1000))
    ratios = {"train": 0.7, "val": 0.2, "test": 0.1}
    counts = RatioSplit(ratios, seed=seed).assign(table).counts()
    assert sum(counts.values()) == 1000
    for name, p in ratios.items():
        sigma = math.sqrt(1000 * p * (1 - p))  # binomial spread: 14.5, 12.6, 9.5
        assert abs(counts[name] - 1000 * p) < 4 * sigma, (name, counts)


def test_ratio_split_seeds_are_independent():
    table = table_of(many_samples(1000))
    ratios = {"train": 0.5, "val": 0.5}
    a = RatioSplit(ratios, seed=0).assign(table).codes
    b = RatioSplit(ratios, seed=1).assign(table).codes
    # Independent halves agree on about half of the samples.
    assert 0.4 < np.mean(a == b) < 0.6
    assert np.array_equal(a, RatioSplit(ratios, seed=0).assign(table).codes)


def test_ratio_split_of_the_oldest_layout_hashes_names():
    table = parse_release(tasks_release()).samples
    codes = RatioSplit({"train": 0.5, "val": 0.5}, seed=0).assign(table).codes.tolist()
    assert codes == [
        int(unit_hash(name, 0) >= 0.5) for name in ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    ]


@pytest.mark.parametrize(
    ("ratios", "seed", "message"),
    [
        ({}, 0, "RatioSplit needs at least one split, e.g. {'train': 0.8, 'val': 0.2}"),
        (
            {"train": 0.8, "val": 0.1},
            0,
            "RatioSplit: the ratios sum to 0.9, not 1: train=0.8, val=0.1",
        ),
        ({"train": 1.2, "val": -0.2}, 0, "RatioSplit: the ratio of 'train' is 1.2, not in (0, 1]"),
        ({"train": 1.0, "val": 0}, 0, "RatioSplit: the ratio of 'val' is 0, not in (0, 1]"),
        (
            {"train": "0.5", "val": 0.5},
            0,
            "RatioSplit: the ratio of 'train' is '0.5', not a number",
        ),
        ({"": 1.0}, 0, "RatioSplit: split names are non-empty strings, not ''"),
        ({"train": 1.0}, "0", "RatioSplit: the seed is '0', not an integer"),
        ({"train": 1.0}, 1.5, "RatioSplit: the seed is 1.5, not an integer"),
    ],
)
def test_ratio_split_refuses_bad_rules(ratios, seed, message):
    with pytest.raises(SplitError) as info:
        RatioSplit(ratios, seed=seed)
    assert str(info.value) == message


def test_ratios_summing_to_one_through_rounding_are_accepted():
    split = RatioSplit({"a": 0.1, "b": 0.2, "c": 0.7}, seed=0)  # 0.1 + 0.2 != 0.3 in floats
    codes = split.assign(table_of(many_samples(200))).codes
    assert set(codes.tolist()) == {0, 1, 2}


# -- MetadataSplit ---------------------------------------------------------------------------


def test_metadata_split_by_value():
    table = parse_release(current_release()).samples  # split: train, val, (none), train
    assignment = MetadataSplit("split").assign(table)
    assert assignment.names == ("train", "val")
    assert assignment.codes.tolist() == [0, 1, -1, 0]
    assert assignment.counts() == {"train": 2, "val": 1}
    assert assignment.unassigned == 1
    demo = MetadataSplit().assign(load_release(RELEASE_PATH).samples)
    assert demo.rows("train").tolist() == [0, 1, 5]
    assert demo.rows("val").tolist() == [2, 6, 7]


def test_metadata_split_with_values():
    samples = many_samples(6)
    for s, value in zip(samples, ["training", "valid", "validation", 1, True, "1"], strict=True):
        s["metadata"] = {"fold": value}
    table = table_of(samples)
    split = MetadataSplit("fold", {"train": "training", "val": ["valid", "validation"], "one": 1})
    assignment = split.assign(table)
    assert assignment.names == ("train", "val", "one")
    # 1, True and "1" are three values, as in the JSON.
    assert assignment.codes.tolist() == [0, 1, 1, 2, -1, -1]
    # Without values, only strings name splits.
    assert MetadataSplit("fold").assign(table).names == ("training", "valid", "validation", "1")


def test_metadata_split_refuses_a_value_claimed_twice():
    with pytest.raises(SplitError) as info:
        MetadataSplit("split", {"train": ["a", "b"], "val": "b"})
    assert str(info.value) == "MetadataSplit: split='b' is claimed by both 'train' and 'val'"
    with pytest.raises(SplitError) as info:
        MetadataSplit("")
    assert str(info.value) == "MetadataSplit: the key is '', not a non-empty string"


# -- ListSplit -------------------------------------------------------------------------------


def test_list_split_by_names_and_uuids():
    table = load_release(RELEASE_PATH).samples
    split = ListSplit(
        {
            "train": ["shapes-000.jpg", "ff853224-4f45-5b24-884b-54ce12b38300"],
            "val": ["shapes-007.jpg"],
        }
    )
    assignment = split.assign(table)
    assert assignment.rows("train").tolist() == [0, 1]
    assert assignment.rows("val").tolist() == [7]
    assert assignment.unassigned == 5


def test_list_split_names_every_unknown_entry():
    table = parse_release(current_release(), source="flowers.json").samples
    with pytest.raises(SplitError) as info:
        ListSplit({"train": ["a.jpg", "zz.jpg"], "val": ["uuid-b.jpg", "nope"]}).assign(table)
    assert str(info.value) == (
        "flowers.json: ListSplit: 2 entries match no sample's uuid or name: "
        "'train: zz.jpg', 'val: nope'"
    )
    many = [f"missing-{i}" for i in range(12)]
    with pytest.raises(SplitError) as info:
        ListSplit({"val": many}).assign(table)
    assert str(info.value).endswith("'val: missing-9' and 2 more")


def test_list_split_refuses_a_sample_in_two_splits_and_ambiguous_names():
    table = parse_release(current_release(), source="flowers.json").samples
    with pytest.raises(SplitError) as info:
        ListSplit({"train": ["a.jpg"], "val": ["uuid-a.jpg"]}).assign(table)
    assert str(info.value) == (
        "flowers.json: ListSplit: sample 'a.jpg' (uuid 'uuid-a.jpg') is listed in both "
        "'train' and 'val'"
    )
    with pytest.raises(SplitError) as info:
        ListSplit({"train": ["b.jpg", "b.jpg"]}).assign(table)
    assert str(info.value) == (
        "flowers.json: ListSplit: sample 'b.jpg' (uuid 'uuid-b.jpg') is listed twice"
    )
    twins = parse_release(
        current_release([sample("x.jpg", {}, uuid="u1"), sample("x.jpg", {}, uuid="u2")]),
        source="twins.json",
    ).samples
    with pytest.raises(SplitError) as info:
        ListSplit({"val": ["x.jpg"]}).assign(twins)
    assert str(info.value) == (
        "twins.json: ListSplit: split 'val': 2 samples are named 'x.jpg'; name them by uuid"
    )
    assert ListSplit({"val": ["u2"]}).assign(twins).rows("val").tolist() == [1]


def test_list_split_refuses_bad_rules():
    with pytest.raises(SplitError) as info:
        ListSplit({"val": "a.jpg"})
    assert str(info.value) == "ListSplit: split 'val' is the string 'a.jpg', not a list of names"
    with pytest.raises(SplitError) as info:
        ListSplit({})
    assert str(info.value) == "ListSplit needs at least one split, e.g. {'val': ['a.jpg']}"


# -- assignments and serialisation -----------------------------------------------------------


def test_rows_of_an_unknown_split_names_the_splits():
    assignment = MetadataSplit().assign(parse_release(current_release()).samples)
    with pytest.raises(SplitError) as info:
        assignment.rows("test")
    assert str(info.value) == "no split 'test'; the splits are 'train', 'val'"


@pytest.mark.parametrize(
    "split",
    [
        RatioSplit({"train": 0.9, "val": 0.1}, seed=12),
        MetadataSplit("fold", {"train": ["a", "b"], "val": 3}),
        MetadataSplit(),
        ListSplit({"train": ["a.jpg"], "val": ("b.jpg", "c.jpg")}),
    ],
)
def test_to_dict_round_trips(split):
    data = split.to_dict()
    assert split_from_dict(data) == split
    assert split_from_dict(json.loads(json.dumps(data))) == split


def test_split_from_dict_refuses_unknown_kinds_and_fields():
    with pytest.raises(SplitError) as info:
        split_from_dict({"kind": "random"})
    assert str(info.value) == "unknown split kind 'random'; expected one of ratio, metadata, list"
    with pytest.raises(SplitError) as info:
        split_from_dict({"kind": "ratio", "ratio": {"train": 1.0}})
    assert str(info.value) == "a 'ratio' split takes other fields than ['ratio']"


def test_importing_splits_imports_neither_torch_nor_lightning():
    code = (
        "import sys, segments_torch.splits; "
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# -- sequences -------------------------------------------------------------------------------


def sequences_table(count: int, frames: int = 3, **fields: Any):
    """A vector sequence release of ``count`` sequences of ``frames`` frames."""
    samples = []
    for i in range(count):
        entry = sequence_sample(
            f"seq-{i:03d}",
            [{} for _ in range(frames)],
            [{"annotations": []} for _ in range(frames)],
            metadata={"split": "val" if i % 3 == 0 else "train"},
        )
        entry.update(fields)
        samples.append(entry)
    return parse_release(sequence_release(samples)).samples


def splits_of_sequences(table, assignment: SplitAssignment) -> dict[int, set[int]]:
    """sequence -> the split codes of its frames."""
    assert table.sequences is not None
    found: dict[int, set[int]] = {}
    for row, code in enumerate(assignment.codes.tolist()):
        found.setdefault(int(table.sequences.sequence[row]), set()).add(code)
    return found


def test_sample_keys_of_frames_are_their_sequences():
    table = sequences_table(2, frames=2)
    assert sample_keys(table) == ["uuid-seq-000"] * 2 + ["uuid-seq-001"] * 2
    assert sample_keys(table, [3, 0]) == ["uuid-seq-001", "uuid-seq-000"]
    nameless = sequences_table(2, frames=2, uuid="")
    assert sample_keys(nameless) == ["seq-000", "seq-000", "seq-001", "seq-001"]


@pytest.mark.parametrize(
    "split",
    [
        RatioSplit({"train": 0.5, "val": 0.5}, seed=3),
        MetadataSplit("split"),
        ListSplit({"train": ["seq-001", "uuid-seq-002"], "val": ["seq-000"]}),
    ],
    ids=["ratio", "metadata", "list"],
)
def test_every_rule_keeps_the_frames_of_a_sequence_in_one_split(split):
    table = sequences_table(40)
    assignment = split.assign(table)
    by_sequence = splits_of_sequences(table, assignment)
    assert len(by_sequence) == 40
    assert all(len(codes) == 1 for codes in by_sequence.values()), by_sequence
    codes = set().union(*by_sequence.values())
    assert {0, 1} <= codes  # both splits hold sequences: nothing trivially passes
    if isinstance(split, ListSplit):
        assert assignment.rows("train").tolist() == [3, 4, 5, 6, 7, 8]
        assert assignment.rows("val").tolist() == [0, 1, 2]


def test_list_split_refuses_a_sequence_in_two_splits():
    table = sequences_table(2)
    with pytest.raises(SplitError) as info:
        ListSplit({"train": ["seq-001"], "val": ["uuid-seq-001"]}).assign(table)
    assert str(info.value) == (
        "<dict>: ListSplit: sample 'seq-001' (uuid 'uuid-seq-001') is listed in both "
        "'train' and 'val'"
    )
