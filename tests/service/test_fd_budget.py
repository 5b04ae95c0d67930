"""The open-files budget (pdm/service/limits.py; docs/service.md, "Open files"): the stream
input gets what the limit holds beside the other surfaces and the descriptors kept for the
service's own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdm.config.load import load_pipeline
from pdm.errors import ConfigError
from pdm.service.limits import (
    InputLimits,
    fit_open_files,
    reserved_fds,
    service_surface_fds,
    surface_fds,
)

DEMO = Path(__file__).resolve().parents[2] / "pipelines" / "demo.toml"


def test_the_surfaces_are_counted_with_the_api_threads_that_may_still_be_leaving() -> None:
    # API: 32 requests + 4 x 32 pushed out, OPC UA and Modbus 32 each; each + listener + newcomer
    assert surface_fds(api_connections=32, opcua=True, modbus=True) == 162 + 34 + 34
    assert surface_fds(api_connections=None, opcua=False, modbus=False) == 0
    assert service_surface_fds(None, None) == 0
    assert service_surface_fds("127.0.0.1:8470", None) == 162


def test_a_stream_limit_that_fits_is_kept_and_one_that_does_not_is_cut_and_said() -> None:
    p = [load_pipeline(DEMO)]
    asked = InputLimits.sized(p, max_connections=1000)
    same, said = fit_open_files(asked, p, others=230, open_files=1 << 20)
    assert same == asked and said is None
    cut, said = fit_open_files(asked, p, others=230, open_files=400)
    room = 400 - reserved_fds(1) - 230 - 2
    assert cut.max_connections == cut.max_per_peer == room == 100
    assert cut.first_frame_s == asked.first_frame_s
    assert said is not None and "1000 connections asked" in said and "100 served" in said


def test_a_limit_without_a_connection_per_sensor_refuses_to_start() -> None:
    p = [load_pipeline(DEMO)]
    with pytest.raises(ConfigError, match="need one each: raise the hard limit"):
        fit_open_files(InputLimits.sized(p), p, others=230, open_files=300)
