"""Operator settings from the environment: defaults, and bad values named."""

from __future__ import annotations

import pytest

from adf_operator.config import OperatorConfig


def test_defaults_watch_everything_with_the_project_image() -> None:
    config = OperatorConfig.from_env({})
    assert config.namespaces == ()
    assert config.default_image.startswith("active-data-flow:")
    assert (config.log_format, config.watch_server_timeout, config.workers) == ("full", 300, 20)
    assert config.follow_interval == 30


def test_values_are_read() -> None:
    config = OperatorConfig.from_env(
        {
            "ADF_NAMESPACES": " shop, warehouse ,",
            "ADF_DEFAULT_IMAGE": "mine:2",
            "ADF_LOG_FORMAT": "json",
            "ADF_WORKERS": "4",
        }
    )
    assert config.namespaces == ("shop", "warehouse")
    assert (config.default_image, config.log_format, config.workers) == ("mine:2", "json", 4)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ADF_LOG_FORMAT", "xml"), ("ADF_WORKERS", "0"), ("ADF_FOLLOW_INTERVAL", "soon")],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        OperatorConfig.from_env({variable: value})
