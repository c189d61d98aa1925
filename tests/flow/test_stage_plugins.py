"""Flow stages are plugins: a new stage is one FlowStage subclass plus its registration."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from focusing.core.config import ConfigError, resolve_setup
from focusing.core.plugin_system import FlowStage, get_registry, hookimpl, register_plugin
from focusing.core.plugin_system import unregister_plugin
from focusing.flow.config import resolve_flow_setup
from focusing.flow.stages import build_stage
from focusing.flow.train import (
    LATENT_SHAPE_KEYS, STRUCTURE_SHAPE_KEYS, LatentFlowStage, StructureFlowStage, flow_stage,
)


class _EchoStage(FlowStage):
    """A stage from outside the project: a linear map of the encoder's tokens (it receives the
    typed flow setup and the shape VAE's typed Setup)."""

    name = "echo-test"

    def build(self, setup, vae, encoder):
        return nn.Linear(encoder.out_channels, vae.model.latent_channels)


@pytest.fixture
def echo_plugin():
    module = types.ModuleType("echo_stage_plugin")

    @hookimpl
    def focusing_flow_stages():
        return [_EchoStage]

    module.focusing_flow_stages = focusing_flow_stages
    register_plugin(module)
    yield module
    unregister_plugin(module)


def test_the_built_in_stages_are_registered_with_their_shape_keys():
    registry = get_registry("flow_stage")
    assert {"structure", "latent"} <= set(registry.names())
    assert isinstance(flow_stage("structure"), StructureFlowStage)
    assert isinstance(flow_stage("latent"), LatentFlowStage)
    assert StructureFlowStage.shape_keys == STRUCTURE_SHAPE_KEYS
    assert LatentFlowStage.shape_keys == LATENT_SHAPE_KEYS and LatentFlowStage.needs_latents


def test_an_outside_stage_is_built_by_name_without_editing_the_flow_package(echo_plugin):
    setup = resolve_flow_setup(['stage="echo-test"', 'encoder.name="cnn"'])
    module = build_stage(setup, resolve_setup("focusing", ["model.latent_channels=5"]))
    assert isinstance(module, nn.Linear) and module.out_features == 5
    assert module(torch.zeros(2, module.in_features)).shape == (2, 5)


def test_an_unknown_stage_names_the_registered_ones(echo_plugin):
    with pytest.raises(ConfigError) as err:
        flow_stage("nope")
    msg = str(err.value)
    assert "'nope'" in msg and "structure" in msg and "latent" in msg and "echo-test" in msg
