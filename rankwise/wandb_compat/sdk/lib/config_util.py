"""``wandb.sdk.lib.config_util.ConfigError`` (transformers catches it around config updates)."""

from rankwise.errors import ConfigError

__all__ = ["ConfigError"]
