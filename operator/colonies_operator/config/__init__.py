"""Configuration: the operator's own settings, and each ColonyExecutor's spec parsed into a
frozen `ExecutorConfig`.

Parsing happens once, here; the runtime receives plain values and never looks anything
up. A spec that cannot be used raises `ConfigError(field, message)`, which the kopf edge
turns into a Ready=False condition and a Warning Event instead of a crash loop.
"""

from colonies_operator.config.executor import (ExecutorConfig, LogSettings, default_executor_name,
                                                executor_config)
from colonies_operator.config.fields import ConfigError, SecretRef
from colonies_operator.config.settings import OperatorSettings

__all__ = ["ConfigError", "ExecutorConfig", "LogSettings", "OperatorSettings", "SecretRef",
           "default_executor_name", "executor_config"]
