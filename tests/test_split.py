"""The validation split's two fixed halves (issue 21)."""
import pytest

from mlt_plugin.training import split


def test_halves_are_disjoint_and_cover_the_split():
    select, report = split.validation_names("select"), split.validation_names("report")
    assert not set(select) & set(report) and sorted(select + report) == sorted(split.validation_names())
    assert len(split.VALIDATION) >= 20 and min(len(select), len(report)) >= 10
    with pytest.raises(ValueError, match="unknown validation half"):
        split.validation_names("test")
    with pytest.raises(ValueError, match="unknown validation sequence"):
        split.validation_sequences(names=["nope"])


def test_validation_sequences_are_never_trained_on():
    assert all(split.is_validation(name) for name in split.VALIDATION) and split.is_validation("Biker470")
    assert not split.is_validation("blackswan")  # a DAVIS training video


def test_absent_folders_are_skipped_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(split, "TRAIN_LARGE", tmp_path / "none")
    monkeypatch.setattr(split, "TRAIN_DATA", tmp_path / "none")
    (tmp_path / "shared").mkdir()
    assert split.validation_sequences(tmp_path / "shared", half="report") == []
    assert "validation: parkour skipped" in capsys.readouterr().err
