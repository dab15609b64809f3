"""Outputs across sites, checked before anything starts: an actor's declared ``outputs`` read
on another site need a bridge from the emitting site (else both domains keep a stream)."""

from __future__ import annotations

import pytest

from diaspora import Actor, Message
from diaspora.errors import ConfigError
from diaspora.workflow import parse_config
from tests.sites_rig import TWO_SITES


class Calibrate(Actor):
    """Reads raw frames, emits calibrated ones (a declared output)."""

    inputs = ("edge.raw",)
    outputs = ("edge.calibrated",)

    async def handle(self, msg: Message) -> None:
        await self.emit("edge.calibrated", msg.data)


class Recalibrate(Calibrate):
    inputs = ("hpc.raw",)


class Store(Actor):
    async def handle(self, msg: Message) -> None:
        return None


EMIT_ON_EDGE_READ_ON_HPC = """
[supervisor]
site = "hpc"
[[supervisor.children]]
id = "calibrate"
site = "edge"
actor = "tests.test_site_outputs:Calibrate"
[[supervisor.children]]
id = "store"
actor = "tests.test_site_outputs:Store"
inputs = ["edge.calibrated"]
"""
BRIDGE = """
[[bridges]]
subject = "edge.calibrated"
from = "{source}"
to = "{target}"
"""


def test_an_output_read_on_another_site_without_a_bridge_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(TWO_SITES + EMIT_ON_EDGE_READ_ON_HPC, source="wf.toml")
    assert str(caught.value) == (
        "wf.toml: actor 'root.calibrate' on site 'edge' emits 'edge.calibrated', which actor "
        "'root.store' reads on site 'hpc', and no bridge joins them (each site would keep a "
        "stream of its own); add a [[bridges]] entry with subject = 'edge.calibrated', "
        "from = 'edge', to = 'hpc', or place both actors on one site"
    )


def test_an_output_bridged_from_its_site_to_its_reader_is_accepted() -> None:
    text = TWO_SITES + BRIDGE.format(source="edge", target="hpc") + EMIT_ON_EDGE_READ_ON_HPC
    config = parse_config(text, source="wf.toml")
    assert config.subject_sites()["edge.calibrated"] == "edge"
    same_site = EMIT_ON_EDGE_READ_ON_HPC.replace('id = "store"\n', 'id = "store"\nsite = "edge"\n')
    parse_config(TWO_SITES + same_site, source="wf.toml")  # read where it is emitted: no bridge


def test_an_output_emitted_away_from_its_bridges_origin_is_refused() -> None:
    text = TWO_SITES + BRIDGE.format(source="hpc", target="edge") + EMIT_ON_EDGE_READ_ON_HPC
    text = text.replace('inputs = ["edge.calibrated"]', 'inputs = ["hpc.other"]')
    with pytest.raises(ConfigError, match=r"^wf\.toml: actor 'root\.calibrate' on site 'edge' "):
        parse_config(text, source="wf.toml")


def test_one_output_emitted_on_two_sites_is_refused() -> None:
    text = TWO_SITES + EMIT_ON_EDGE_READ_ON_HPC.replace(
        'actor = "tests.test_site_outputs:Store"\ninputs = ["edge.calibrated"]',
        'actor = "tests.test_site_outputs:Recalibrate"',
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="wf.toml")
    assert str(caught.value).startswith(
        "wf.toml: actor 'root.store' on site 'hpc' emits 'edge.calibrated', which actor "
        "'root.calibrate' emits on site 'edge'"
    )


def test_a_declared_stream_nobody_reads_lives_on_the_site_that_emits_it() -> None:
    text = TWO_SITES + EMIT_ON_EDGE_READ_ON_HPC.replace(
        'inputs = ["edge.calibrated"]', 'inputs = ["hpc.other"]'
    )
    text += '[streams."edge.calibrated"]\nlimits = { max_age = 3600.0 }\n'
    assert parse_config(text, source="wf.toml").subject_sites()["edge.calibrated"] == "edge"
