"""Target presets: shipped thresholds differ where the scenes do; users add targets in TOML."""

import pytest

from s2vdata.targets import SHIPPED, THRESHOLDS, format_targets, get_target, load_targets, target_rows


def test_shipped_targets_are_the_papers_four_and_differ_where_scenes_do():
    assert set(SHIPPED) == {"mouth", "hand", "fireworks", "sea"}
    # sea waves move everywhere and roar on: its camera and sound thresholds are looser
    assert SHIPPED["sea"].camera_shift_max > SHIPPED["hand"].camera_shift_max
    assert SHIPPED["sea"].unrelated_audio_max > SHIPPED["hand"].unrelated_audio_max
    assert SHIPPED["fireworks"].av_sync_min != SHIPPED["mouth"].av_sync_min


def test_user_target_from_toml_starts_from_its_base(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(
        '[targets.drums]\nbase = "hand"\ndescription = "a drum kit"\nav_sync_min = 0.5\nav_lag_max_frames = 4\n'
        "[targets.sea]\ncamera_shift_max = 1\n"
    )
    targets = load_targets(path)
    drums = targets["drums"]
    assert drums.av_sync_min == 0.5 and drums.av_lag_max_frames == 4
    assert drums.camera_shift_max == SHIPPED["hand"].camera_shift_max
    assert targets["sea"].camera_shift_max == 1.0 and isinstance(targets["sea"].camera_shift_max, float)
    assert get_target("drums", path).description == "a drum kit"


def test_default_targets_file_is_read_from_the_environment_location(tmp_path, monkeypatch):
    import s2vdata.targets as targets_module

    path = tmp_path / "s2v-targets.toml"
    path.write_text("[targets.bells]\nmotion_min = 0.01\n")
    monkeypatch.setattr(targets_module, "DEFAULT_TARGETS_FILE", path)
    assert load_targets()["bells"].motion_min == 0.01


@pytest.mark.parametrize(
    "text, match",
    [
        ("[targets.x]\nav_sync_minimum = 1\n", "unknown settings.*av_sync_minimum"),
        ("[targets.x]\nav_sync_min = 'high'\n", "av_sync_min = 'high' must be float"),
        ("[targets.x]\nav_lag_max_frames = 2.5\n", "must be int"),
        ("[targets.x]\nbase = 'violin'\n", "base 'violin'.*not a known target"),
        ("[targets.x\n", "cannot read targets file"),
    ],
)
def test_bad_targets_files_are_rejected_naming_the_file_and_problem(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        load_targets(path)
    assert str(path) in str(e.value)


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(ValueError, match="known targets are fireworks, hand, mouth, sea"):
        get_target("violin")


def test_format_targets_lists_every_threshold_of_every_target(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[targets.drums]\nbase = "hand"\nav_sync_min = 0.55\n')
    text = format_targets(path)
    lines = text.splitlines()
    assert lines[0].split() == ["setting", "mouth", "hand", "fireworks", "sea", "drums"]
    for name in THRESHOLDS:
        assert any(line.startswith(name) for line in lines)
    sync = next(line for line in lines if line.startswith("av_sync_min")).split()
    assert sync[-1] == "0.55"
    assert [r["name"] for r in target_rows(path)][-1] == "drums"
