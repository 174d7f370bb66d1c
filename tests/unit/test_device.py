"""sipd.device: one parser of device settings; what the daemon, training and sessions make of it."""

from __future__ import annotations

import logging

import pytest

from sipd.device import DeviceSetting, parse_device, resolve_device, torch_device
from sipd.errors import InvalidArgument
from sipd.inference import SessionCache, load_model


@pytest.mark.parametrize(
    ("setting", "kind", "index", "text"),
    [("auto", "auto", 0, "auto"), ("cpu", "cpu", 0, "cpu"), (" CPU ", "cpu", 0, "cpu"),
     ("cuda", "cuda", 0, "cuda:0"), ("cuda:3", "cuda", 3, "cuda:3")],
)
def test_accepted_settings(setting, kind, index, text):
    parsed = parse_device(setting)
    assert parsed == DeviceSetting(kind, index) and str(parsed) == text


@pytest.mark.parametrize("setting", ["gpu", "cuda:", "cuda:x", "cuda:-1", "", "tpu:0"])
def test_refused_settings_say_what_is_accepted(setting):
    with pytest.raises(InvalidArgument, match=r"is not one of: auto, cpu, cuda, cuda:N"):
        parse_device(setting)


def test_every_user_refuses_a_bad_setting_the_same_way(tmp_path):
    for use in (resolve_device, torch_device, lambda s: SessionCache(device=s),
                lambda s: load_model(tmp_path, device=s)):
        with pytest.raises(InvalidArgument, match="not one of: auto, cpu, cuda, cuda:N"):
            use("gpu0")


def test_cpu_needs_no_gpu_and_a_missing_gpu_falls_back_with_a_warning(caplog):
    assert resolve_device("cpu") == "cpu"
    assert str(torch_device("cpu")) == "cpu"
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU works here")
    caplog.set_level(logging.WARNING, logger="sipd.device")
    assert str(torch_device("cuda:0")) == "cpu"
    assert str(torch_device("auto")) == "cpu"
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "cuda:0" in caplog.records[0].getMessage()
