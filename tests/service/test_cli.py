"""The `triage` command: help texts, synth, info."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from service.cli import main
from tests.packages import make_package


@pytest.mark.parametrize(
    "command",
    [
        "predict",
        "synth",
        "train",
        "info",
        "serve",
        "worklist",
        "evaluate",
        "listen",
        "work",
        "demo",
    ],
)
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: triage {command}" in text
    if command == "predict":
        assert "TRIAGE_MODEL" in text and "results.json" in text


def test_environment_variables_set_defaults(tmp_path, monkeypatch, capsys):
    package = make_package(tmp_path / "pkg")
    monkeypatch.setenv("TRIAGE_MODEL", str(package.path))
    assert main(["info"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "ptx-unit-test"


def test_synth_writes_studies_with_masks(tmp_path, capsys):
    out = tmp_path / "phantoms"
    assert (
        main(
            [
                "synth",
                "--out",
                str(out),
                "--studies",
                "3",
                "--seed",
                "5",
                "--prevalence",
                "1.0",
                "--max-size",
                "600",
            ]
        )
        == 0
    )
    assert "3 studies" in capsys.readouterr().out
    studies = [p for p in out.iterdir() if p.is_dir()]
    assert len(studies) == 3
    masks = list(out.rglob("*.mask.png"))
    assert masks, "every frontal image has a mask"
    for mask in masks:
        dicom = mask.with_name(mask.name.removesuffix(".mask.png") + ".dcm")
        assert dicom.is_file()
        assert Image.open(mask).getextrema()[1] == 255  # prevalence 1: all positive


def test_train_says_which_option_a_dataset_needs(tmp_path, capsys):
    assert main(["train", "--dataset", "siim-dicom", "--data", str(tmp_path), "--out",
                 str(tmp_path / "p")]) == 2  # fmt: skip
    assert "needs --labels CSV" in capsys.readouterr().err
    assert main(["train", "--dataset", "siim-png", "--data", str(tmp_path / "none"), "--out",
                 str(tmp_path / "p")]) == 2  # fmt: skip
    assert "expected the SIIM PNG layout" in capsys.readouterr().err


def test_worklist_without_a_service_says_what_to_do(tmp_path, capsys):
    assert main(["worklist", "--data-dir", str(tmp_path / "none")]) == 2
    assert "triage serve" in capsys.readouterr().err


def test_worklist_prints_studies_by_priority(tmp_path, capsys):
    from service.db.engine import make_engine, make_sessionmaker, sqlite_url
    from service.db.migrate import upgrade
    from service.db.models import Study
    from service.worklist import FIELDS

    engine = make_engine(sqlite_url(tmp_path / "triage.db"))
    upgrade(engine)
    with make_sessionmaker(engine)() as session:
        session.add_all(
            [
                Study(study_instance_uid="1.2.1", state="negative", priority=0.0),
                Study(
                    study_instance_uid="1.2.2", state="positive", priority=88.0, probability=0.99
                ),
                Study(study_instance_uid="1.2.3", state="positive", priority=61.0, probability=0.7),
            ]
        )
        session.commit()
    engine.dispose()
    assert main(["worklist", "--data-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["study_instance_uid"] for r in rows] == ["1.2.2", "1.2.3", "1.2.1"]
    assert set(rows[0]) == set(FIELDS)
    assert main(["worklist", "--data-dir", str(tmp_path), "--state", "positive"]) == 0
    table = capsys.readouterr().out
    assert "88.0" in table and "1.2.1" not in table


def test_settings_file_is_read_and_flags_and_environment_win(tmp_path, monkeypatch):
    from service.cli import apply_config, build_parser

    config = tmp_path / "triage.toml"
    config.write_text(
        'data-dir = "/srv/a"\nport = 2000\nstable_age = 9.5\ndestination = ["PACS@h:104"]\n'
    )
    monkeypatch.setenv("TRIAGE_PORT", "3000")
    parser = build_parser()
    apply_config(parser, str(config))
    args = parser.parse_args(["serve", "--config", str(config), "--stable-age", "1"])
    assert args.data_dir == "/srv/a"
    assert args.port == 3000  # environment over file
    assert args.stable_age == 1.0  # flag over file
    assert args.destination == ["PACS@h:104"]


def test_settings_file_with_a_typo_is_refused(tmp_path, capsys):
    config = tmp_path / "triage.toml"
    config.write_text('data_dri = "/srv/a"\n')
    assert main(["worklist", "--config", str(config)]) == 2
    assert "did you mean data_dir" in capsys.readouterr().err


def test_example_settings_file_names_only_real_options():
    from pathlib import Path

    from service.cli import apply_config, build_parser

    example = Path(__file__).resolve().parents[2] / "deploy" / "triage.example.toml"
    parser = build_parser()
    apply_config(parser, str(example))
    args = parser.parse_args(["serve"])
    assert args.destination == ["PACS@pacs.hospital.example:104"]
    assert args.allow_ae == ["PACS", "CR_ROOM1"]
